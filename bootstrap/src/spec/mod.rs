//! The cluster spec: one YAML (or JSON) file describing the etcd members, how to reach them, the
//! Kubernetes control plane that will use them, and the PKI. [`Spec::load`] parses it strictly
//! (unknown keys are errors) and [`Spec::validate`] explains every problem at once.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Cluster name (kubeadm's clusterName; default token prefix).
    pub name: String,
    /// etcd's --initial-cluster-token (default: NAME-etcd). Unique per cluster: member and
    /// cluster IDs repeat across re-creations with the same token.
    #[serde(default)]
    pub token: Option<String>,
    /// The etcd binary on the members (absolute path, or a name on PATH); ignored when
    /// `etcd_archive` is set (members then run `bin_dir/etcd`).
    #[serde(default = "default_etcd")]
    pub etcd_binary: String,
    /// etcd to deliver to the members: an official `etcd-vX.Y.Z-linux-amd64.tar.gz` (path or
    /// https URL) or a folder holding etcd, etcdctl (and etcdutl).
    #[serde(default)]
    pub etcd_archive: Option<String>,
    /// The archive's sha256 (required for an archive; for a folder, of its etcd binary).
    #[serde(default)]
    pub etcd_sha256: Option<String>,
    #[serde(default)]
    pub pki: PkiSpec,
    /// The etcd flags operators tune (see [`crate::spec::tuning`]).
    #[serde(default)]
    pub etcd: crate::spec::tuning::EtcdTuning,
    /// Where kubeadm configs, haproxy.cfg and control-plane folders go (relative to the spec file).
    #[serde(default = "default_output")]
    pub output_dir: PathBuf,
    pub members: Vec<MemberSpec>,
    /// The control plane; a spec of an adopted cluster may leave it out (no kubeadm outputs).
    #[serde(default, skip_serializing_if = "KubernetesSpec::is_absent")]
    pub kubernetes: KubernetesSpec,
    /// Set by `adopt -o`: the cluster was built elsewhere and is managed in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<crate::spec::adopted::AdoptedCluster>,
    /// How scripts run on every SSH host unless a member or node says otherwise: `sudo` when the
    /// SSH user is not root (a cloud image's `ubuntu`, `PermitRootLogin no`).
    #[serde(default, rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_with: Option<Become>,
}

/// How the scripts on an SSH host get root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Become {
    /// The SSH user is root (`root@HOST`).
    #[default]
    None,
    /// Every script through `sudo -n` (passwordless sudo; one that asks for a password is
    /// refused before any change).
    Sudo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PkiSpec {
    /// The operator's PKI directory (relative to the spec file); the CA key stays here.
    #[serde(default = "default_pki_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default = "default_validity")]
    pub validity: String,
    #[serde(default = "default_ca_validity")]
    pub ca_validity: String,
}

impl Default for PkiSpec {
    fn default() -> Self {
        PkiSpec { dir: default_pki_dir(), algorithm: default_algorithm(), validity: default_validity(), ca_validity: default_ca_validity() }
    }
}

/// How a member's etcd is kept running.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    /// A background process with a pid file and a log (hosts without systemd, local clusters).
    Process,
    /// A systemd unit `etcd-NAME.service`.
    Systemd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    pub name: String,
    /// The IP address the member advertises (client and peer URLs).
    pub address: IpAddr,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default = "default_client_port")]
    pub client_port: u16,
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
    /// etcd's data dir on the member (absolute). Never deleted except by `down --purge`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The member's /etc/kubernetes/pki (absolute): etcd/ca.crt, etcd/server.*, etcd/peer.*.
    #[serde(default = "default_member_pki")]
    pub pki_dir: PathBuf,
    /// Where the pid file, log and bootstrap marker go (absolute).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// Where a delivered etcd (`etcd_archive`) goes on the member (absolute).
    #[serde(default = "default_bin_dir")]
    pub bin_dir: PathBuf,
    /// `local`, or an SSH destination (`root@10.0.0.11`, an alias from ~/.ssh/config).
    #[serde(default = "default_host")]
    pub host: String,
    /// Extra options for ssh (`["-p", "2222"]`, `["-J", "bastion"]`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// Default: process on `local`, systemd over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Supervisor>,
    /// `sudo`: the SSH user is not root (default: the spec's top-level `become`).
    #[serde(default, rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_with: Option<Become>,
    /// How a member this toolkit did not start runs, as `adopt` found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<crate::spec::adopted::AdoptedMember>,
}

impl MemberSpec {
    pub fn is_local(&self) -> bool {
        self.host == "local"
    }
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.unwrap_or(if self.is_local() { Supervisor::Process } else { Supervisor::Systemd })
    }
    pub fn url_host(&self) -> String {
        match self.address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    }
    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.url_host(), self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.url_host(), self.peer_port)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// `vX.Y.Z`: picks kubeadm's config API and its minimum etcd (see `versions`).
    pub version: String,
    /// The API load balancer, `host:port` (kubeadm's controlPlaneEndpoint).
    pub control_plane_endpoint: String,
    #[serde(default)]
    pub cert_sans: Vec<String>,
    #[serde(default)]
    pub pod_subnet: Option<String>,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: String,
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
    pub control_plane_nodes: Vec<NodeSpec>,
    /// Where the load balancer finds the Kubernetes CA to verify the API servers' certificates.
    #[serde(default = "default_lb_ca_file")]
    pub load_balancer_ca_file: PathBuf,
    /// The container runtime's socket on the nodes (kubeadm's nodeRegistration.criSocket);
    /// absent, kubeadm finds the runtime itself (containerd, CRI-O or cri-dockerd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_socket: Option<String>,
    /// Accept an etcd older than kubeadm's MinExternalEtcdVersion (a lab cluster): preflight
    /// warns instead of refusing, and the kubeadm configs skip kubeadm's ExternalEtcdVersion check.
    #[serde(default)]
    pub allow_old_etcd: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub address: IpAddr,
    #[serde(default = "default_api_port")]
    pub bind_port: u16,
    /// How to reach the node (an ssh destination, or `local`); optional: with it, `check lb` also
    /// checks the load balancer from the node, and `rotate ca --continue` waits for it.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// `sudo`: the SSH user is not root (default: the spec's top-level `become`).
    #[serde(default, rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_with: Option<Become>,
}

fn default_etcd() -> String {
    "etcd".into()
}
fn default_output() -> PathBuf {
    "out".into()
}
fn default_pki_dir() -> PathBuf {
    "pki".into()
}
fn default_algorithm() -> String {
    "ecdsa-p256".into()
}
fn default_validity() -> String {
    "1y".into()
}
fn default_ca_validity() -> String {
    "10y".into()
}
fn default_client_port() -> u16 {
    2379
}
fn default_peer_port() -> u16 {
    2380
}
fn default_api_port() -> u16 {
    6443
}
fn default_data_dir() -> PathBuf {
    "/var/lib/etcd".into()
}
fn default_member_pki() -> PathBuf {
    "/etc/kubernetes/pki".into()
}
fn default_run_dir() -> PathBuf {
    "/var/lib/etcd-bootstrap".into()
}
fn default_bin_dir() -> PathBuf {
    "/usr/local/bin".into()
}
fn default_host() -> String {
    "local".into()
}
fn default_service_subnet() -> String {
    "10.96.0.0/12".into()
}
fn default_dns_domain() -> String {
    "cluster.local".into()
}
fn default_lb_ca_file() -> PathBuf {
    "/etc/haproxy/kubernetes-ca.crt".into()
}

impl KubernetesSpec {
    /// Left out of the spec (only an adopted cluster's spec may).
    pub fn is_absent(&self) -> bool {
        *self == KubernetesSpec::default()
    }

    /// One control-plane node whose own API address is the control-plane endpoint: no load
    /// balancer (kubeadm accepts it; more control-plane nodes later need one).
    pub fn without_load_balancer(&self) -> bool {
        match (self.control_plane_nodes.as_slice(), split_host_port(&self.control_plane_endpoint)) {
            ([node], Some((host, port))) => host.parse::<IpAddr>().ok() == Some(node.address) && port == node.bind_port,
            _ => false,
        }
    }
}

impl Spec {
    /// Parses spec text: bounded in size and depth, no control character in any string, then
    /// strictly typed (unknown keys are errors; a value of the wrong type names its field).
    pub fn parse(text: &str) -> std::result::Result<Spec, String> {
        match Spec::parse_all(text) {
            (Some(spec), problems) if problems.is_empty() => Ok(spec),
            (_, problems) => Err(problems.join("; ")),
        }
    }

    /// The spec, when the text has its shape, and the problems of the text: size and depth,
    /// control characters (all of them), or the first value of the wrong type, by its path.
    pub(crate) fn parse_all(text: &str) -> (Option<Spec>, Vec<String>) {
        if let Err(e) = crate::spec::rules::spec_text(text) {
            return (None, vec![e]);
        }
        let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => return (None, vec![e.to_string()]),
        };
        let mut found = Vec::new();
        crate::spec::rules::strings_with_control(&value, "", &mut found);
        match serde_path_to_error::deserialize::<_, Spec>(value) {
            Ok(spec) => (Some(spec), found),
            Err(e) => {
                found.push(type_error(&e));
                (None, found)
            }
        }
    }

    pub fn token(&self) -> String {
        self.token.clone().unwrap_or_else(|| format!("{}-etcd", self.name))
    }
}

/// `members[1].client_port: expected a port number, got string "abc"`: the field by its path, and
/// serde's words made plain.
fn type_error(e: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> String {
    let inner = e.inner().to_string();
    let plain = match inner.strip_prefix("invalid type: ").and_then(|rest| rest.split_once(", expected ")) {
        Some((got, want)) => format!("expected {}, got {got}", plain_type(want)),
        None => inner.clone(),
    };
    let path = e.path().to_string();
    if path == "." { plain } else { format!("{path}: {plain}") }
}

fn plain_type(serde_words: &str) -> &str {
    match serde_words {
        "u16" => "a port number (1-65535)",
        "u8" | "u32" | "u64" | "usize" => "a whole number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        other => other,
    }
}

/// A member or cluster name: one DNS label (it names files, a systemd unit, a CN and a SAN).
pub(crate) fn dns_label(name: &str) -> std::result::Result<(), String> {
    pki::hosts::validate_host_name(name)?;
    if name.contains('.') {
        return Err(format!("{name:?}: use one DNS label (letters, digits, '-'), without dots"));
    }
    Ok(())
}

/// A Kubernetes node name: a lowercase DNS subdomain, no wildcard (kubelet refuses others).
pub(crate) fn node_name(name: &str) -> std::result::Result<(), String> {
    pki::hosts::validate_host_name(name)?;
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("{name:?}: Kubernetes node names are lowercase"));
    }
    Ok(())
}

/// `host:port` / `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port: u16 = p.parse().ok().filter(|p| *p > 0)?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

/// An IPv4 or IPv6 CIDR as (address bits, prefix, is_v6).
pub fn parse_cidr(s: &str) -> Option<(u128, u8, bool)> {
    let (a, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    match a.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if len <= 32 => Some((u32::from(v4) as u128, len, false)),
        IpAddr::V6(v6) if len <= 128 => Some((u128::from(v6), len, true)),
        _ => None,
    }
}

pub(crate) fn cidrs_overlap(a: (u128, u8, bool), b: (u128, u8, bool)) -> bool {
    if a.2 != b.2 {
        return false;
    }
    let width = if a.2 { 128 } else { 32 };
    let len = a.1.min(b.1) as u32;
    let shift = width - len;
    let mask = |x: u128| if shift >= 128 { 0 } else { x >> shift };
    mask(a.0) == mask(b.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BootError;

    pub(crate) fn example() -> Spec {
        serde_yaml_ng::from_str(
            r#"
name: prod
members:
  - {name: etcd-1, address: 10.0.0.11, host: root@10.0.0.11}
  - {name: etcd-2, address: 10.0.0.12, host: root@10.0.0.12}
  - {name: etcd-3, address: 10.0.0.13, host: root@10.0.0.13}
kubernetes:
  version: v1.31.2
  control_plane_endpoint: lb.example.com:6443
  pod_subnet: 10.244.0.0/16
  control_plane_nodes:
    - {name: cp-1, address: 10.0.0.21}
    - {name: cp-2, address: 10.0.0.22}
    - {name: cp-3, address: 10.0.0.23}
"#,
        )
        .unwrap()
    }

    #[test]
    fn become_sudo_is_the_default_of_every_ssh_host_a_member_may_override_and_local_refuses_it() {
        let text = serde_yaml_ng::to_string(&example()).unwrap().replace("name: prod\n", "name: prod\nbecome: sudo\n");
        let mut spec: Spec = serde_yaml_ng::from_str(&text).unwrap();
        spec.members[2].become_with = Some(Become::None);
        let loaded = spec.clone().into_loaded("cluster.yaml", std::path::Path::new(".")).unwrap();
        let got: Vec<Option<Become>> = loaded.spec.members.iter().map(|m| m.become_with).collect();
        assert_eq!(got, [Some(Become::Sudo), Some(Become::Sudo), Some(Become::None)]);
        assert!(loaded.spec.kubernetes.control_plane_nodes.iter().all(|n| n.become_with == Some(Become::Sudo)));
        spec.members[0].host = "local".into();
        spec.members[0].become_with = Some(Become::Sudo);
        let problems = spec.validate().unwrap_err();
        assert!(problems.iter().any(|p| p.contains("members[0].become") || p.contains("etcd-1") && p.contains("sudo")), "{problems:?}");
    }

    #[test]
    fn become_takes_only_its_words_and_a_user_stays_a_word_never_an_option() {
        let text = serde_yaml_ng::to_string(&example()).unwrap();
        for hostile in ["sudo -s", "sudo; touch /tmp/x", "root", "'sudo'\nx: y"] {
            let t = text.replace("name: prod\n", &format!("name: prod\nbecome: {hostile:?}\n"));
            assert!(serde_yaml_ng::from_str::<Spec>(&t).is_err(), "become: {hostile:?} must be refused");
        }
        for host in ["-oProxyCommand=touch /tmp/x@10.0.0.11", "ubuntu@-oProxyCommand=x", "ubu ntu@10.0.0.11", "-l root 10.0.0.11"] {
            let mut spec = example();
            spec.become_with = Some(Become::Sudo);
            spec.members[0].host = host.into();
            assert!(spec.validate().is_err(), "host {host:?} under become: sudo must be refused");
        }
        let flags = crate::adopt::flags::Flags {
            endpoints: vec!["https://10.0.0.11:2379".into()],
            cacert: "ca.pem".into(),
            cert: "c.pem".into(),
            key: "k.pem".into(),
            hosts: vec!["etcd-1=-oProxyCommand=touch /tmp/x".into()],
            ssh_options: vec![],
            output: None,
            ca_key: None,
            become_with: Become::Sudo,
        };
        assert!(flags.check().is_err(), "adopt --host with an option for a destination is refused");
    }

    #[test]
    fn a_good_spec_has_no_problems() {
        assert_eq!(example().validate(), Ok(vec![]));
    }

    #[test]
    fn every_problem_at_once() {
        let mut s = example();
        s.members[1].name = "etcd-1".into();
        s.members[2].address = s.members[0].address;
        s.members[2].data_dir = "var/lib/etcd".into();
        s.members[1].host = "local".into();
        s.members[0].host = "local".into();
        s.kubernetes.pod_subnet = Some("10.96.0.0/16".into());
        s.kubernetes.control_plane_endpoint = "lb.example.com".into();
        s.kubernetes.version = "1.31".into();
        let problems = s.validate().unwrap_err();
        let all = problems.join("\n");
        for want in [
            "members[etcd-1].name: duplicate member name",
            "10.0.0.11:2379 is also members[etcd-1].client_port",
            "data_dir: var/lib/etcd is relative",
            "overlaps service_subnet",
            "must be HOST:PORT",
            "kubernetes.version",
            "members[etcd-1].data_dir: /var/lib/etcd on local is also the data dir of etcd-1",
            "pki_dir: /etc/kubernetes/pki on local is also the pki_dir of etcd-1",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn even_and_large_sizes_warn() {
        let mut s = example();
        s.members.pop();
        let w = s.validate().unwrap();
        assert!(w[0].contains("2 members tolerate 0 failure(s), the same as 1"), "{w:?}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = serde_yaml_ng::from_str::<Spec>(
            "name: x\nmembers: []\nkubernetes: {version: v1.0.0, control_plane_endpoint: a:1, control_plane_nodes: []}\nmember: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `member`"), "{e}");
    }

    #[test]
    fn lb_on_a_node_port_is_refused() {
        let mut s = example();
        s.kubernetes.control_plane_endpoint = "10.0.0.21:6443".into();
        assert!(s.validate().unwrap_err().join("\n").contains("cannot bind the port"));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field_in_plain_words() {
        let text = "name: prod\nmembers:\n  - {name: etcd-1, address: 10.0.0.11}\n  - {name: etcd-2, address: 10.0.0.12, client_port: abc}\nkubernetes: {version: v1.31.2, control_plane_endpoint: 'lb:6443', control_plane_nodes: [{name: cp-1, address: 10.0.0.21}]}\n";
        let e = Spec::parse(text).unwrap_err();
        assert_eq!(e, "members[1].client_port: expected a port number (1-65535), got string \"abc\"");
        let e = Spec::parse(&text.replace("client_port: abc", "client_port: 2379").replace("version: v1.31.2", "version: v1.31.2, allow_old_etcd: maybe"))
            .unwrap_err();
        assert_eq!(e, "kubernetes.allow_old_etcd: expected true or false, got string \"maybe\"");
    }

    #[test]
    fn a_control_character_is_reported_with_every_other_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = "name: prod\nmembers:\n  - {name: etcd-1, address: 10.0.0.11, dns_names: [\"a\\u0007b\"]}\npki: {validity: 3 fortnights}\nkubernetes: {version: v1.31.2, control_plane_endpoint: 'lb:6443', control_plane_nodes: [{name: cp-1, address: 10.0.0.21}]}\n";
        std::fs::write(&path, text).unwrap();
        let e = Spec::load(&path).unwrap_err();
        let BootError::InvalidSpec { problems, .. } = &e else { panic!("{e}") };
        assert!(problems.iter().any(|p| p.starts_with("members[0].dns_names[0]") && p.contains("control character")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("pki.validity")), "{problems:?}");
    }

    #[test]
    fn one_node_serving_its_own_endpoint_needs_no_load_balancer() {
        let mut s = example();
        s.kubernetes.control_plane_nodes.truncate(1);
        let node = &s.kubernetes.control_plane_nodes[0];
        s.kubernetes.control_plane_endpoint = format!("{}:{}", node.address, node.bind_port);
        assert!(s.kubernetes.without_load_balancer());
        let w = s.validate().unwrap();
        assert!(w.iter().any(|w| w.contains("no load balancer") && w.contains("a second control-plane node later needs one")), "{w:?}");
        let text = crate::kube::kubeadm::runbook(&s, "spec.yaml", std::path::Path::new("/out"));
        assert!(text.contains("## 1. No load balancer") && !text.contains("HAProxy, then copy"), "{text}");
        // another port on that address is a load balancer again, and it cannot share the node
        s.kubernetes.control_plane_endpoint = format!("{}:7443", node.address);
        assert!(!s.kubernetes.without_load_balancer());
    }
}

pub mod adopted;
pub mod check;
pub mod load;
pub mod local;
pub mod rules;
pub mod tuning;
pub mod versions;
