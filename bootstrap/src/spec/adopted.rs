//! What a spec says of a cluster this toolkit did not build (`adopt -o SPEC` writes it): the
//! operator's client files and CA key at the top, and for each member how it runs as found — its
//! supervisor, how its settings are given, its binary and command line, and each TLS file at its
//! own path. Operations that support an adopted cluster work on those files in place and never
//! rewrite a unit, an environment file, a config file or a flag.

use crate::spec::rules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The settings that name TLS files.
pub const TLS_FILE_SETTINGS: &[&str] =
    &["cert-file", "key-file", "trusted-ca-file", "client-crl-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file", "peer-crl-file"];

/// What runs an adopted member's etcd (serialized in the spec, found by `adopt`'s probe).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum AdoptedSupervisor {
    /// A systemd unit (its name and file).
    Systemd { unit: String, fragment: String },
    /// kubelet, from a static-pod manifest (kubeadm's stacked etcd, etcdadm's kubelet mode).
    StaticPod { manifest: String },
    /// A container runtime outside kubelet (kubespray's docker mode).
    Container,
    /// A plain process (no unit or pod found).
    Process,
}

/// `adopted:` at the top of the spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdoptedCluster {
    /// etcd's cluster ID (hex) when it was adopted: endpoints that answer with another are refused.
    pub cluster_id: String,
    /// The operator's client files, as given to `adopt` (absolute paths on this machine).
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's private key (cfssl's ca-key.pem, or any format `pki` loads); its certificate is
    /// `cacert`. Without it, operations that sign (rotate certs) refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<PathBuf>,
}

/// `adopted:` in a member: how it runs, as found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdoptedMember {
    /// The process's supervisor: a systemd unit (name and file), a static pod, a container, or
    /// a plain process.
    pub supervisor: AdoptedSupervisor,
    /// `flags`, `environment`, `flags and environment` or `config file`.
    pub settings_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The running binary (as /proc/PID/exe names it) and the version etcd reported.
    pub binary: PathBuf,
    pub version: String,
    /// etcd's setting (`cert-file`, `peer-key-file`, ...) -> the file, absolute on the host.
    pub tls: BTreeMap<String, PathBuf>,
    /// etcd's command line after the binary, verbatim: the operator's flags (never rewritten).
    #[serde(default)]
    pub command_line: Vec<String>,
    /// Its working directory (relative paths, the default data dir), and for a plain process its
    /// `ETCD_*` (and `GO*`) environment: what starting it again needs.
    #[serde(default = "root_dir")]
    pub working_dir: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

fn root_dir() -> PathBuf {
    "/".into()
}

impl AdoptedMember {
    pub fn tls_file(&self, setting: &str) -> Option<&PathBuf> {
        self.tls.get(setting)
    }

    /// The certificate/key pairs it serves with: (cert setting, key setting), server first; a
    /// peer pair on the same files as the server pair is listed once.
    pub fn leaf_pairs(&self) -> Vec<(&'static str, &'static str)> {
        let mut pairs = Vec::new();
        for (c, k) in [("cert-file", "key-file"), ("peer-cert-file", "peer-key-file")] {
            if let (Some(cert), Some(key)) = (self.tls.get(c), self.tls.get(k))
                && !pairs.iter().any(|(pc, pk): &(&str, &str)| self.tls.get(*pc) == Some(cert) && self.tls.get(*pk) == Some(key))
            {
                pairs.push((c, k));
            }
        }
        pairs
    }
}

/// The problems of an adopted section (`who`: `adopted` or `members[NAME].adopted`).
pub fn check_cluster(a: &AdoptedCluster) -> Vec<String> {
    let mut p = Vec::new();
    if a.cluster_id.is_empty() || !a.cluster_id.chars().all(|c| c.is_ascii_hexdigit()) || a.cluster_id.len() > 16 {
        p.push(format!("adopted.cluster_id: {:?} is not etcd's hex cluster ID", a.cluster_id));
    }
    for (path, what) in [(Some(&a.cacert), "cacert"), (Some(&a.cert), "cert"), (Some(&a.key), "key"), (a.ca_key.as_ref(), "ca_key")] {
        if let Some(path) = path
            && let Err(e) = rules::no_control(&path.display().to_string())
        {
            p.push(format!("adopted.{what}: {e}"));
        }
    }
    p
}

pub fn check_member(name: &str, a: &AdoptedMember) -> Vec<String> {
    let who = format!("members[{name}].adopted");
    let mut p = Vec::new();
    for (k, path) in &a.tls {
        if !TLS_FILE_SETTINGS.contains(&k.as_str()) {
            p.push(format!("{who}.tls.{k}: not one of etcd's TLS file settings ({})", TLS_FILE_SETTINGS.join(", ")));
        }
        if let Err(e) = rules::member_path(path) {
            p.push(format!("{who}.tls.{k}: {e}"));
        }
    }
    for (path, what) in [(Some(&a.binary), "binary"), (a.config_file.as_ref(), "config_file")] {
        if let Some(path) = path
            && let Err(e) = rules::member_path(path)
        {
            p.push(format!("{who}.{what}: {e}"));
        }
    }
    if let Err(e) = rules::member_path_format(&a.working_dir) {
        p.push(format!("{who}.working_dir: {e}"));
    }
    for k in a.environment.keys() {
        if !(k.starts_with("ETCD_") || k.starts_with("GO")) || !k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            p.push(format!("{who}.environment.{k}: only etcd's ETCD_* (and Go's GO*) variables are kept"));
        }
    }
    let words = [a.settings_from.as_str(), a.version.as_str()]
        .into_iter()
        .chain(a.command_line.iter().map(String::as_str))
        .chain(a.environment.values().map(String::as_str));
    let words = words.chain(match &a.supervisor {
        AdoptedSupervisor::Systemd { unit, fragment } => vec![unit.as_str(), fragment.as_str()],
        AdoptedSupervisor::StaticPod { manifest } => vec![manifest.as_str()],
        AdoptedSupervisor::Container | AdoptedSupervisor::Process => vec![],
    });
    for w in words {
        if let Err(e) = rules::no_control(w) {
            p.push(format!("{who}: {e}"));
        }
    }
    p
}
