//! The inventory as people read it (`-w table`): the members, the files each uses, then every
//! risk with its fix. Values read from hosts are shown with control characters escaped.

use super::Inventory;
use pki::inspect::escape_control as esc;

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| if i + 1 == r.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) }).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn table(inv: &Inventory) -> String {
    let leader = inv.members.iter().find(|m| m.is_leader).map(|m| m.name.as_str()).unwrap_or("none");
    let mut out = format!("cluster {}: {} members, leader {}\n\n", inv.cluster_id, inv.members.len(), esc(leader));
    let mut rows = vec![["MEMBER", "HOST", "PID", "RUN BY", "SETTINGS", "VERSION", "DATA DIR", "SERVES"].map(String::from).to_vec()];
    for m in &inv.members {
        let p = m.process.as_ref();
        rows.push(vec![
            esc(&m.name),
            esc(&m.host),
            p.map(|p| p.pid.to_string()).unwrap_or_else(|| "-".into()),
            p.map(|p| esc(&super::supervisor_word(&p.supervisor))).unwrap_or_else(|| "-".into()),
            m.config.as_ref().map(|c| c.given_by().to_string()).unwrap_or_else(|| "-".into()),
            m.version.clone().unwrap_or_else(|| "?".into()),
            m.data_dir.as_ref().map(|d| esc(&d.display().to_string())).unwrap_or_else(|| "-".into()),
            m.served.as_ref().map(|c| format!("{} until {}", esc(&c.subject), c.not_after)).unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&columns(&rows));
    let mut files = vec![["MEMBER", "FILE", "OWNER", "MODE", "SHA-256"].map(String::from).to_vec()];
    for m in &inv.members {
        for f in &m.files {
            files.push(vec![esc(&m.name), esc(&f.path.display().to_string()), esc(&f.owner), f.mode.clone(), f.sha256.chars().take(16).collect()]);
        }
    }
    if files.len() > 1 {
        out.push('\n');
        out.push_str(&columns(&files));
    }
    if inv.findings.is_empty() {
        out.push_str("\nno risks found\n");
    } else {
        out.push_str(&format!("\nrisks ({}):\n", inv.findings.len()));
        for f in &inv.findings {
            let who = f.member.as_deref().map(|m| format!("{}: ", esc(m))).unwrap_or_default();
            out.push_str(&format!("  {who}{}\n    fix: {}\n", esc(&f.what), f.fix));
        }
    }
    out
}
