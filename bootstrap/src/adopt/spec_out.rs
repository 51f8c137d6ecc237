//! `adopt -o SPEC`: the spec of what is there. Each member's address and ports from the URLs it
//! advertises, its data dir and how it runs as found (supervisor, how settings are given, binary,
//! command line, each TLS file at its own path), and the operator's client files and CA key at
//! the top. Pure, from the inventory; refused, with every reason at once, when something it
//! needs was not read. The file is created new (never over an existing one).

use super::{Inventory, Member, Request, url_host_port};
use crate::error::{BootError, Result};
use crate::spec::adopted::{AdoptedCluster, AdoptedMember};
use crate::spec::{MemberSpec, Spec};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The spec of the inventory's cluster, named `name` (default: its initial-cluster-token when
/// that is a DNS label, else `adopted`).
pub fn spec_of(inv: &Inventory, req: &Request, ca_key: Option<&Path>, name: Option<&str>) -> std::result::Result<Spec, Vec<String>> {
    let mut problems = Vec::new();
    let mut members = Vec::new();
    for m in &inv.members {
        match member_spec(m, req) {
            Ok(ms) => members.push(ms),
            Err(why) => problems.push(format!("{}: {why}", m.name)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let token = inv
        .members
        .iter()
        .find_map(|m| m.config.as_ref()?.get("initial-cluster-token").map(String::from))
        .filter(|t| crate::spec::rules::cluster_token(t).is_ok());
    let name = match name {
        Some(n) => n.to_string(),
        None => token.clone().filter(|t| crate::spec::dns_label(t).is_ok()).unwrap_or_else(|| "adopted".into()),
    };
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut spec: Spec = serde_yaml_ng::from_str("name: x\nmembers: []\n").map_err(|e| vec![e.to_string()])?;
    spec.name = name;
    spec.token = token;
    spec.members = members;
    spec.adopted = Some(AdoptedCluster {
        cluster_id: inv.cluster_id.clone(),
        cacert: abs(&req.cacert),
        cert: abs(&req.cert),
        key: abs(&req.key),
        ca_key: ca_key.map(abs),
    });
    spec.check().map(|_| spec)
}

fn member_spec(m: &Member, req: &Request) -> std::result::Result<MemberSpec, String> {
    let (Some(p), Some(config)) = (&m.process, &m.config) else {
        return Err(m.problem.clone().unwrap_or_else(|| "its host was not read".into()));
    };
    let client = m.client_urls.first().ok_or("it advertises no client URL")?;
    let peer = m.peer_urls.first().ok_or("it advertises no peer URL")?;
    for url in [client, peer] {
        if !url.starts_with("https://") {
            return Err(format!("{url} is plain HTTP; the toolkit manages TLS members only (give it TLS first)"));
        }
    }
    let (host, client_port) = url_host_port(client).ok_or_else(|| format!("{client}: no host:port"))?;
    let (peer_host, peer_port) = url_host_port(peer).ok_or_else(|| format!("{peer}: no host:port"))?;
    let address: IpAddr = host.parse().map_err(|_| format!("{client} names a host, not an IP address; the spec needs the member's address"))?;
    if peer_host.parse::<IpAddr>().ok() != Some(address) {
        return Err(format!("its peer URL {peer} is on another address than its client URL {client}"));
    }
    let tls = config.tls_files().into_iter().collect();
    let adopted = AdoptedMember {
        supervisor: p.supervisor.clone(),
        settings_from: config.given_by().to_string(),
        config_file: config.config_file.clone(),
        binary: PathBuf::from(&p.exe),
        version: m.version.clone().unwrap_or_default(),
        tls,
        command_line: p.argv.iter().skip(1).cloned().collect(),
        working_dir: p.cwd.clone(),
        // a unit or a pod carries its own environment; a plain process's is kept to start it again
        environment: match p.supervisor {
            crate::spec::adopted::AdoptedSupervisor::Process => {
                p.environ.iter().filter(|(k, _)| k.starts_with("ETCD_") || k.starts_with("GO")).cloned().collect()
            }
            _ => Default::default(),
        },
    };
    let mut spec: MemberSpec = serde_yaml_ng::from_str(&format!("{{name: x, address: {address}}}")).map_err(|e| e.to_string())?;
    spec.name = m.name.clone();
    spec.client_port = client_port;
    spec.peer_port = peer_port;
    spec.data_dir = m.data_dir.clone().unwrap_or_else(|| config.data_dir());
    // the toolkit's own files for this member (a pid file and log once it starts it, a parked
    // manifest, a snapshot being restored) beside its data dir: /var/lib/etcd-bootstrap
    spec.run_dir = spec.data_dir.parent().unwrap_or(Path::new("/var/lib")).join("etcd-bootstrap");
    if m.host != "local" {
        spec.host = m.host.clone();
        spec.ssh_options = req.ssh_options.clone();
        spec.become_with = (req.become_with == crate::spec::Become::Sudo).then_some(crate::spec::Become::Sudo);
    }
    spec.adopted = Some(adopted);
    Ok(spec)
}

/// The spec's YAML without the values that are defaults (nothing an adopted cluster uses):
/// what is left is what was found.
pub fn text(spec: &Spec) -> std::result::Result<String, String> {
    use serde_yaml_ng::Value;
    let defaults: Spec = serde_yaml_ng::from_str("name: x\nmembers: []\n").map_err(|e| e.to_string())?;
    let member_defaults: MemberSpec = serde_yaml_ng::from_str("{name: x, address: 127.0.0.1}").map_err(|e| e.to_string())?;
    let strip = |v: &mut Value, d: &Value, keep: &[&str]| {
        if let (Value::Mapping(m), Value::Mapping(d)) = (v, d) {
            m.retain(|k, v| keep.iter().any(|x| k.as_str() == Some(x)) || (!v.is_null() && d.get(k) != Some(v)));
        }
    };
    let mut all = value(spec)?;
    strip(&mut all, &value(&defaults)?, &["name", "members"]);
    let md = value(&member_defaults)?;
    if let Some(Value::Sequence(members)) = all.get_mut("members") {
        for m in members {
            strip(m, &md, &["name", "address"]);
        }
    }
    serde_yaml_ng::to_string(&all).map_err(|e| e.to_string())
}

fn value<T: serde::Serialize>(v: &T) -> std::result::Result<serde_yaml_ng::Value, String> {
    serde_yaml_ng::to_value(v).map_err(|e| e.to_string())
}

/// Writes `spec` to `path`, created new: an existing file is never replaced.
pub fn write_new(spec: &Spec, path: &Path) -> Result<()> {
    let text = format!(
        "# Written by `etcd-bootstrap adopt`: the cluster as it was found. Operations work on it in\n# place and never rewrite a member's unit, environment, config file or flags.\n{}",
        text(spec).map_err(|reason| BootError::SpecFile { file: path.display().to_string(), reason })?
    );
    let bad = |e: std::io::Error| BootError::SpecFile {
        file: path.display().to_string(),
        reason: if e.kind() == std::io::ErrorKind::AlreadyExists { "exists; adopt never replaces a spec: give another -o path".into() } else { e.to_string() },
    };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(bad)?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| {
        // ours, created just now: no half-written spec is left behind
        let _ = std::fs::remove_file(path);
        bad(e)
    })
}

/// Rewrites the `adopted:` section of the spec file `file` (the toolkit's own file, written by
/// `adopt -o`): atomically, the rest of the spec as it is.
pub fn update(file: &std::path::Path, change: impl FnOnce(&mut crate::spec::adopted::AdoptedCluster)) -> crate::error::Result<()> {
    let bad = |reason: String| crate::error::BootError::SpecFile { file: file.display().to_string(), reason };
    let old = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let mut spec = crate::spec::Spec::parse(&old).map_err(bad)?;
    let a = spec.adopted.as_mut().ok_or_else(|| bad("has no `adopted:` section".into()))?;
    change(a);
    let header: String = old.lines().take_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    let body = text(&spec).map_err(bad)?;
    pki::files::write_atomic(file, format!("{header}{body}").as_bytes(), 0o644).map_err(|e| bad(e.to_string()))
}
