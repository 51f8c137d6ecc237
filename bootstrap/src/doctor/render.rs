//! `doctor`'s outputs: a table people read, JSON, Prometheus text (for node_exporter's textfile
//! collector: HELP and TYPE lines, no timestamps, label values escaped), and a Nagios/Icinga
//! plugin line with perfdata.

use super::{Level, Report};
use pki::inspect::escape_control as esc;

pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let width = r.checks.iter().map(|c| label(c).chars().count()).max().unwrap_or(0);
    for c in &r.checks {
        out.push_str(&format!("{:<7} {:<width$}  {}\n", c.level.word(), label(c), esc(&c.evidence)));
        if !c.fix.is_empty() {
            out.push_str(&format!("{:<7} {:<width$}  fix: {}\n", "", "", c.fix));
        }
    }
    let (w, f, u) = counts(r);
    out.push_str(&format!("\n{}: {} checks, {w} WARN, {f} FAIL, {u} UNKNOWN\n", r.level().word(), r.checks.len()));
    out
}

fn label(c: &super::Check) -> String {
    match &c.member {
        Some(m) => format!("{} {}", c.name, esc(m)),
        None => c.name.clone(),
    }
}

fn counts(r: &Report) -> (usize, usize, usize) {
    let n = |l: Level| r.checks.iter().filter(|c| c.level == l).count();
    (n(Level::Warn), n(Level::Fail), n(Level::Unknown))
}

/// A label value in the exposition format: backslash, double quote and newline escaped.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        // six decimals at most: perfdata and text stay short, nothing real is lost
        format!("{}", (v * 1e6).round() / 1e6)
    }
}

pub fn prometheus(r: &Report) -> String {
    let mut out =
        String::from("# HELP etcd_bootstrap_check The result of each doctor check: 0 OK, 1 WARN, 2 FAIL, 3 UNKNOWN.\n# TYPE etcd_bootstrap_check gauge\n");
    let mut seen = std::collections::HashSet::new();
    for c in &r.checks {
        let key = (c.name.clone(), c.member.clone().unwrap_or_default());
        // one series per check and member (the first wins; repeated names would be a duplicate series)
        if seen.insert(key.clone()) {
            out.push_str(&format!("etcd_bootstrap_check{} {}\n", labels(&[("check", key.0), ("member", key.1)]), c.level.code()));
        }
    }
    let mut names: Vec<&'static str> = Vec::new();
    for g in &r.gauges {
        if !names.contains(&g.name) {
            names.push(g.name);
        }
    }
    for name in names {
        let help = r.gauges.iter().find(|g| g.name == name).map(|g| g.help).unwrap_or("");
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        let mut series = std::collections::HashSet::new();
        for g in r.gauges.iter().filter(|g| g.name == name) {
            let l = labels(&g.labels);
            if series.insert(l.clone()) {
                out.push_str(&format!("{name}{l} {}\n", number(g.value)));
            }
        }
    }
    out
}

/// The plugin API: one status line `ETCD DOCTOR STATE - summary | perfdata`, then one line per
/// check that is not OK. Perfdata labels are quoted when they hold spaces or quotes.
pub fn nagios(r: &Report) -> String {
    let level = r.level();
    let word = match level {
        Level::Ok => "OK",
        Level::Warn => "WARNING",
        Level::Fail => "CRITICAL",
        Level::Unknown => "UNKNOWN",
    };
    let (w, f, u) = counts(r);
    let summary = match r.checks.iter().filter(|c| c.level == level).map(|c| format!("{} {}", label(c), esc(&c.evidence))).next() {
        Some(first) if level != Level::Ok => format!("{f} FAIL, {w} WARN, {u} UNKNOWN; {first}"),
        _ => format!("{} checks OK", r.checks.len()),
    };
    let perf: Vec<String> = r
        .gauges
        .iter()
        .filter(|g| g.name != "x509_cert_not_after")
        .map(|g| {
            let suffix: Vec<String> = g.labels.iter().map(|(_, v)| v.clone()).collect();
            let name = if suffix.is_empty() {
                g.name.trim_start_matches("etcd_bootstrap_").to_string()
            } else {
                format!("{}_{}", g.name.trim_start_matches("etcd_bootstrap_"), suffix.join("_"))
            };
            let name = name.replace(['\'', '='], "_");
            format!("'{name}'={}", number(g.value))
        })
        .collect();
    let mut out = format!("ETCD DOCTOR {word} - {} | {}\n", summary.replace('|', "/"), perf.join(" "));
    for c in r.checks.iter().filter(|c| c.level != Level::Ok) {
        out.push_str(&format!("{} {}: {}\n", c.level.word(), label(c), esc(&c.evidence).replace('|', "/")));
    }
    out
}

/// Writes `etcd_bootstrap.prom` into `dir` as node_exporter's textfile collector requires: a
/// temporary file in the same directory, then a rename, so a scrape never reads half a file.
/// The directory is checked first (root writes here every minute from a timer), and the mode is
/// set on the open file before the rename: nothing is ever changed by path afterwards.
pub fn write_textfile(dir: &std::path::Path, text: &str) -> crate::error::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    crate::spec::rules::trusted_dir("--textfile", dir, pki::safe_fs::Writes::ReplaceByRename)?;
    let path = dir.join("etcd_bootstrap.prom");
    let fail = |e: std::io::Error| crate::error::io("write", &path)(e);
    let mut tmp = tempfile::Builder::new().prefix(".etcd_bootstrap.prom.").tempfile_in(dir).map_err(fail)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(&path).map_err(|e| fail(e.error))?;
    Ok(path)
}

/// The report in `format` (table, json, prometheus or nagios).
pub fn render(r: &Report, format: crate::format::Format) -> crate::error::Result<String> {
    use crate::format::Format;
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(r).map_err(|e| crate::error::BootError::Verification(e.to_string()))? + "\n",
        Format::Prometheus => prometheus(r),
        Format::Nagios => nagios(r),
        _ => table(r),
    })
}
