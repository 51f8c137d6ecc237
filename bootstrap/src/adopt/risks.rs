//! Every risk an adopted cluster carries, each with its fix. Pure: judged from the inventory
//! (what etcd's API and the hosts showed) and the time.

use super::{CertSummary, Inventory, Member};
use serde::Serialize;

/// Certificates that expire within this many days are a risk.
pub const EXPIRY_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The member it concerns (`None`: the cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub what: String,
    pub fix: String,
}

fn risk(member: Option<&str>, what: String, fix: &str) -> Finding {
    Finding { member: member.map(String::from), what, fix: fix.to_string() }
}

pub fn findings(inv: &Inventory, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    cluster_findings(inv, &mut out);
    for m in &inv.members {
        member_findings(m, now, &mut out);
    }
    out
}

fn cluster_findings(inv: &Inventory, out: &mut Vec<Finding>) {
    for a in &inv.alarms {
        out.push(risk(None, format!("alarm raised: {a}"), "free space (etcd-bootstrap maintain once adopted, or etcdctl compact + defrag + alarm disarm)"));
    }
    let mut versions: Vec<&str> = inv.members.iter().filter_map(|m| m.version.as_deref()).collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        out.push(risk(None, format!("members run different etcd versions ({})", versions.join(", ")), "finish the upgrade: every member on the same version"));
    }
    let min = crate::spec::versions::Version(3, 5, 24);
    let old: Vec<String> = inv
        .members
        .iter()
        .filter(|m| m.version.as_deref().and_then(crate::spec::versions::Version::parse).is_some_and(|v| v < min))
        .map(|m| format!("{} ({})", m.name, m.version.as_deref().unwrap_or("")))
        .collect();
    if !old.is_empty() {
        out.push(risk(None, format!("below kubeadm's minimum etcd {min}: {}", old.join(", ")), "upgrade to the newest 3.5 patch"));
    }
    // one certificate (or key) for several members: a stolen key impersonates all of them
    let shared = shared_credentials(inv);
    let server_shared = shared.iter().any(|f| f.what.starts_with("the server"));
    out.extend(shared);
    let served: Vec<&str> = inv.members.iter().filter_map(|m| m.served.as_ref().map(|c| c.sha256.as_str())).collect();
    if !server_shared && inv.members.len() > 1 && served.len() == inv.members.len() && served.iter().all(|s| *s == served[0]) {
        out.push(risk(
            None,
            "every member serves the same certificate".into(),
            "issue a server and a peer certificate per member (rotate certs can split it once adopted)",
        ));
    }
}

/// Per role (server, peer), members whose certificates share a public key or whose key files
/// are the same bytes, named with the files each uses.
fn shared_credentials(inv: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    for (role, cert_key, key_key) in [("server", "cert-file", "key-file"), ("peer", "peer-cert-file", "peer-key-file")] {
        // (member, cert path, public key hash, key file hash)
        let used: Vec<(&str, String, String, String)> = inv
            .members
            .iter()
            .filter_map(|m| {
                let setting = |k: &str| m.config.as_ref().and_then(|c| c.settings.get(k)).map(|s| s.value.clone());
                let cert = m.certs.iter().find(|(k, _)| k == cert_key).map(|(_, c)| c.public_key_sha256.clone()).filter(|h| !h.is_empty())?;
                let key_path = setting(key_key).unwrap_or_default();
                let key = m.files.iter().find(|f| f.path.display().to_string() == key_path).map(|f| f.sha256.clone()).unwrap_or_default();
                Some((m.name.as_str(), setting(cert_key).unwrap_or_default(), cert, key))
            })
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in 0..used.len() {
            let same = |j: usize| used[i].2 == used[j].2 || (!used[i].3.is_empty() && used[i].3 == used[j].3);
            match groups.iter_mut().find(|g| same(g[0])) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        for g in groups.into_iter().filter(|g| g.len() > 1) {
            let files: Vec<String> = g.iter().map(|&i| format!("{} on {}", used[i].1, used[i].0)).collect();
            let by = if g.iter().all(|&i| used[i].2 == used[g[0]].2) { "one public key" } else { "one key file" };
            out.push(risk(
                None,
                format!("the {role} certificate's key is shared by {} members ({by}: {}): a stolen key impersonates each of them", g.len(), files.join(", ")),
                &format!("issue a {role} certificate and key per member (etcd-bootstrap rotate certs --split once adopted)"),
            ));
        }
    }
    out
}

fn member_findings(m: &Member, now: i64, out: &mut Vec<Finding>) {
    let name = Some(m.name.as_str());
    if let Some(why) = &m.problem {
        out.push(risk(name, format!("its host could not be read: {why}"), "run adopt as root on the member's host, or give --host NAME=DEST"));
    }
    // what the next minor refuses or silently drops, each where the operator wrote it
    if let (Some(v), Some(config)) = (m.version.as_deref().and_then(crate::spec::versions::Version::parse), &m.config) {
        let (next, found) = super::next_minor::breaking(v, config);
        for b in found {
            out.push(risk(name, format!("{}: {} (before upgrading to {}.{})", b.written, b.effect, next.0, next.1), &b.fix));
        }
    }
    let mut certs: Vec<(String, &CertSummary)> = m.certs.iter().map(|(k, c)| (k.clone(), c)).collect();
    if let Some(s) = &m.served {
        certs.push(("served certificate".into(), s));
    }
    for (what, c) in &certs {
        let days = (c.not_after_unix - now).div_euclid(86_400);
        if c.not_after_unix <= now {
            out.push(risk(name, format!("{what} ({}) expired on {}", c.subject, c.not_after), "renew it now (rotate certs once adopted)"));
        } else if days < EXPIRY_DAYS {
            out.push(risk(name, format!("{what} ({}) expires in {days} days", c.subject), "renew it (rotate certs once adopted)"));
        }
    }
    let url_host = |u: &str| super::url_host_port(u).map(|(h, _)| h).unwrap_or_default();
    if let Some(s) = &m.served {
        for u in m.client_urls.iter().filter(|u| u.starts_with("https://")) {
            if !s.covers(&url_host(u)) {
                out.push(risk(name, format!("its serving certificate does not cover {u}"), "re-issue it with that address among its SANs"));
            }
        }
    }
    if let Some((_, peer)) = m.certs.iter().find(|(k, _)| k == "peer-cert-file") {
        for u in m.peer_urls.iter().filter(|u| u.starts_with("https://")) {
            if !peer.covers(&url_host(u)) {
                out.push(risk(name, format!("its peer certificate does not cover {u}"), "re-issue it with that address among its SANs"));
            }
        }
        if !peer.ext_key_usage.iter().any(|e| e == "Client Auth") {
            out.push(risk(name, "its peer certificate lacks clientAuth (etcd 3.5+ peers need it)".into(), "re-issue it with server and client auth"));
        }
    }
    let ca = m.certs.iter().find(|(k, _)| k == "trusted-ca-file").map(|(_, c)| c);
    let leaf_end = m.certs.iter().filter(|(k, _)| k.ends_with("cert-file")).map(|(_, c)| c.not_after_unix).max();
    if let (Some(ca), Some(end)) = (ca, leaf_end)
        && ca.not_after_unix < end
    {
        out.push(risk(
            name,
            format!("its CA ({}) expires on {}, before its certificates", ca.subject, ca.not_after),
            "rotate the CA (rotate ca once adopted) before it expires",
        ));
    }
    if let Some(c) = &m.config {
        settings_findings(m, c, out);
    }
    let own_keys: Vec<std::path::PathBuf> = m.config.iter().flat_map(|c| c.tls_files()).filter(|(k, _)| k.contains("key-file")).map(|(_, p)| p).collect();
    for k in m.private_keys.iter().filter(|k| !own_keys.contains(k)) {
        out.push(risk(
            name,
            format!("{} holds a private key etcd does not use (the CA key?)", k.display()),
            "keep the CA key off the members: move it to the operator's machine",
        ));
    }
    for f in &m.files {
        if own_keys.contains(&f.path) && f.mode.chars().last().is_some_and(|c| c != '0') {
            out.push(risk(name, format!("{} is readable by everyone (mode {})", f.path.display(), f.mode), "chmod 600 it"));
        }
    }
    for p in &m.missing {
        out.push(risk(name, format!("{} is named in its settings but missing", p.display()), "the next restart fails: restore the file"));
    }
}

fn settings_findings(m: &Member, c: &super::effective::Effective, out: &mut Vec<Finding>) {
    let name = Some(m.name.as_str());
    for key in ["listen-client-urls", "listen-peer-urls"] {
        let plain: Vec<String> = c.urls(key).into_iter().filter(|u| u.starts_with("http://")).collect();
        if !plain.is_empty() {
            out.push(risk(
                name,
                format!("{key} has plain-HTTP listeners: {}", plain.join(", ")),
                "serve only https (a plain listener on 127.0.0.1 still lets every local user in)",
            ));
        }
    }
    if c.urls("listen-client-urls").iter().any(|u| u.starts_with("https://")) && !c.is_on("client-cert-auth", false) {
        out.push(risk(
            name,
            "client TLS without client-certificate auth (--client-cert-auth off)".into(),
            "turn --client-cert-auth on: without it any client reaches the data",
        ));
    }
    if c.urls("listen-peer-urls").iter().any(|u| u.starts_with("https://")) && !c.is_on("peer-client-cert-auth", false) {
        out.push(risk(
            name,
            "peer TLS without client-certificate auth (--peer-client-cert-auth off)".into(),
            "turn --peer-client-cert-auth on: without it anyone can join as a peer",
        ));
    }
    let v35 = m.version.as_deref().and_then(crate::spec::versions::Version::parse).is_some_and(|v| v >= crate::spec::versions::Version(3, 5, 0));
    if !c.is_on("pre-vote", v35) {
        out.push(risk(name, "pre-vote is off (etcd 3.4's default)".into(), "set --pre-vote: a member that was cut off then disrupts the leader"));
    }
    if c.is_on("enable-v2", false) {
        out.push(risk(name, "it serves the v2 API (--enable-v2)".into(), "turn it off: etcd 3.6 removes it and will not start with v2 data"));
    }
    if c.get("data-dir").is_none() && c.config_file.is_none() {
        out.push(risk(
            name,
            format!("no --data-dir: etcd keeps its data in {} (relative to its working directory)", c.data_dir().display()),
            "set --data-dir explicitly",
        ));
    }
    drift_findings(m, out);
}

/// Settings the next restart would change: the unit's environment files say otherwise than the
/// running process got.
fn drift_findings(m: &Member, out: &mut Vec<Finding>) {
    let Some(p) = &m.process else { return };
    for file in super::environment_files(p) {
        let Some(text) = m.files.iter().find(|f| f.path == file).and_then(|f| f.content.as_ref()) else { continue };
        let now = env_file(&String::from_utf8_lossy(text));
        for (k, v) in now.iter().filter(|(k, _)| k.starts_with("ETCD_")) {
            let running = p.environ.iter().find(|(rk, _)| rk == k).map(|(_, rv)| rv.as_str());
            if running != Some(v.as_str()) {
                out.push(risk(
                    Some(&m.name),
                    format!("{} sets {k}={v}, but etcd runs with {}", file.display(), running.map(|r| format!("{k}={r}")).unwrap_or_else(|| "it unset".into())),
                    "the next restart changes it: make the file say what you want before any restart",
                ));
            }
        }
    }
}

/// `KEY=value` lines of an environment file (systemd's EnvironmentFile syntax: comments,
/// optional quotes).
pub fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').trim_matches('\'').to_string()))
        .collect()
}
