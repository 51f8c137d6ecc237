//! Checking a spec: every problem at once, in sections (top level, PKI, members, Kubernetes), and
//! the typed values the plan uses, parsed here once (key algorithm, validities, Kubernetes
//! version) so that nothing downstream parses a spec string again or falls back silently.

use crate::spec::rules;
use crate::spec::versions::Version;
use crate::spec::{KubernetesSpec, MemberSpec, Spec, Supervisor, cidrs_overlap, dns_label, node_name, parse_cidr, split_host_port};
use pki::keys::KeyAlgorithm;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

/// The spec's values that are strings in the file, as the types the plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Typed {
    pub algorithm: KeyAlgorithm,
    pub validity: time::Duration,
    pub ca_validity: time::Duration,
    pub kubernetes: Version,
}

/// Problems (the spec is refused) and warnings (it is used, and they are shown).
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Findings {
    fn problem(&mut self, field: &str, e: impl std::fmt::Display) {
        self.problems.push(format!("{field}: {e}"));
    }
}

impl Spec {
    /// Every problem at once; `Ok` carries the warnings.
    pub fn validate(&self) -> std::result::Result<Vec<String>, Vec<String>> {
        self.check().map(|(warnings, _)| warnings)
    }

    /// Every problem at once; `Ok` carries the warnings and the typed values.
    pub fn check(&self) -> std::result::Result<(Vec<String>, Typed), Vec<String>> {
        let mut f = Findings::default();
        self.check_top(&mut f);
        let pki = self.check_pki(&mut f);
        self.check_members(&mut f);
        self.check_adopted(&mut f);
        let kubernetes = if self.kubernetes.is_absent() && self.adopted.is_some() {
            // an adopted cluster without a control plane in the spec: nothing uses the version
            Some(crate::spec::versions::Version(0, 0, 0))
        } else if self.kubernetes.is_absent() {
            f.problem("kubernetes", "missing: give the control plane (version, control_plane_endpoint, control_plane_nodes)");
            None
        } else {
            check_control_plane_nodes(&self.kubernetes, &mut f);
            check_kubernetes(&self.kubernetes, &mut f)
        };
        match (pki, kubernetes) {
            (Some((algorithm, validity, ca_validity)), Some(kubernetes)) if f.problems.is_empty() => {
                Ok((f.warnings, Typed { algorithm, validity, ca_validity, kubernetes }))
            }
            _ => Err(f.problems),
        }
    }

    fn check_top(&self, f: &mut Findings) {
        if let Err(e) = dns_label(&self.name) {
            f.problem("name", e);
        }
        if let Some(t) = &self.token
            && let Err(e) = rules::cluster_token(t)
        {
            f.problem("token", e);
        }
        if let Err(e) = rules::binary(&self.etcd_binary) {
            f.problem("etcd_binary", e);
        }
        let ports: Vec<u16> = self.members.iter().flat_map(|m| [m.client_port, m.peer_port]).collect();
        let (tp, tw) = self.etcd.validate(&ports);
        f.problems.extend(tp);
        f.warnings.extend(tw);
        if let Some(a) = &self.etcd_archive
            && let Err(e) = rules::etcd_archive(a)
        {
            f.problem("etcd_archive", e);
        }
        if let Some(h) = &self.etcd_sha256 {
            if let Err(e) = rules::sha256(h) {
                f.problem("etcd_sha256", e);
            }
            if self.etcd_archive.is_none() {
                f.problem("etcd_sha256", "set, but there is no etcd_archive to check");
            }
        }
    }

    /// The key algorithm and the two validities, parsed once.
    fn check_pki(&self, f: &mut Findings) -> Option<(KeyAlgorithm, time::Duration, time::Duration)> {
        let algorithm = self
            .pki
            .algorithm
            .parse::<KeyAlgorithm>()
            .map_err(|_| f.problem("pki.algorithm", format!("unknown {:?}; use {}", self.pki.algorithm, KeyAlgorithm::NAMES)))
            .ok();
        let mut validity = |field: &str, v: &str| pki::validity::parse_validity(v, field).map_err(|e| f.problems.push(e.to_string())).ok();
        let leaf = validity("pki.validity", &self.pki.validity);
        let ca = validity("pki.ca_validity", &self.pki.ca_validity);
        Some((algorithm?, leaf?, ca?))
    }

    fn check_members(&self, f: &mut Findings) {
        let n = self.members.len();
        if n == 0 {
            f.problem("members", "at least one member is needed (3 or 5 for production)");
        } else if n.is_multiple_of(2) {
            f.warnings.push(format!(
                "{n} members tolerate {} failure(s), the same as {}: an even size adds load and no fault tolerance; use {} or {}",
                n - (n / 2 + 1),
                n - 1,
                n - 1,
                n + 1
            ));
        }
        if n > 7 {
            f.warnings.push(format!("{n} members: each write waits for {} of them; etcd recommends at most 7 (5 for most clusters)", n / 2 + 1));
        }
        let mut names = HashSet::new();
        let mut sockets: HashMap<(IpAddr, u16), String> = HashMap::new();
        for m in &self.members {
            let who = format!("members[{}]", if m.name.is_empty() { "?" } else { &m.name });
            if let Err(e) = dns_label(&m.name) {
                f.problem(&format!("{who}.name"), e);
            } else if !names.insert(m.name.clone()) {
                f.problem(&format!("{who}.name"), "duplicate member name");
            }
            check_member_addresses(m, &who, &mut sockets, f);
            check_member_paths(m, &who, f);
        }
        self.check_shared_dirs(f);
    }

    /// An adopted cluster: every member adopted (and no member adopted in a built cluster).
    fn check_adopted(&self, f: &mut Findings) {
        if let Some(a) = &self.adopted {
            f.problems.extend(crate::spec::adopted::check_cluster(a));
        }
        for m in &self.members {
            match (&self.adopted, &m.adopted) {
                (Some(_), Some(am)) => f.problems.extend(crate::spec::adopted::check_member(&m.name, am)),
                (Some(_), None) => {
                    f.problem(&format!("members[{}]", m.name), "not adopted, in an adopted cluster's spec: run `etcd-bootstrap adopt -o SPEC` again")
                }
                (None, Some(_)) => {
                    f.problem(&format!("members[{}].adopted", m.name), "set, but the spec has no top-level `adopted:` (the operator's client files)")
                }
                (None, None) => {}
            }
        }
    }

    /// Data or pki dirs shared by two members on one host: one would overwrite the other's.
    /// (An adopted member's files are where its operator put them: only its data dir counts.)
    fn check_shared_dirs(&self, f: &mut Findings) {
        let mut dirs: HashMap<(String, PathBuf), String> = HashMap::new();
        let mut pkis: HashMap<(String, PathBuf), String> = HashMap::new();
        for m in &self.members {
            if let Some(other) = dirs.insert((m.host.clone(), m.data_dir.clone()), m.name.clone()) {
                f.problems.push(format!("members[{}].data_dir: {} on {} is also the data dir of {other}", m.name, m.data_dir.display(), m.host));
            }
            if m.adopted.is_none()
                && let Some(other) = pkis.insert((m.host.clone(), m.pki_dir.clone()), m.name.clone())
            {
                f.problems.push(format!("members[{}].pki_dir: {} on {} is also the pki_dir of {other}", m.name, m.pki_dir.display(), m.host));
            }
        }
    }
}

fn check_member_addresses(m: &MemberSpec, who: &str, sockets: &mut HashMap<(IpAddr, u16), String>, f: &mut Findings) {
    if m.address.is_unspecified() {
        f.problem(&format!("{who}.address"), format!("{} cannot be advertised; give the member's real address", m.address));
    }
    for d in &m.dns_names {
        if let Err(e) = pki::hosts::validate_host_name(d) {
            f.problem(&format!("{who}.dns_names"), e);
        }
    }
    for (port, what) in [(m.client_port, "client_port"), (m.peer_port, "peer_port")] {
        if port == 0 {
            f.problem(&format!("{who}.{what}"), "0 is not a port");
        }
        if let Some(other) = sockets.insert((m.address, port), format!("{who}.{what}")) {
            f.problem(&format!("{who}.{what}"), format!("{}:{port} is also {other}", m.address));
        }
    }
}

fn check_member_paths(m: &MemberSpec, who: &str, f: &mut Findings) {
    for (path, what) in [(&m.data_dir, "data_dir"), (&m.pki_dir, "pki_dir"), (&m.run_dir, "run_dir")] {
        if let Err(e) = rules::member_path(path) {
            f.problem(&format!("{who}.{what}"), e);
        }
    }
    // purging the data dir must never take keys or the ownership marker with it
    for (other, what) in [(&m.pki_dir, "pki_dir"), (&m.run_dir, "run_dir")] {
        if other.starts_with(&m.data_dir) {
            f.problems.push(format!("{who}.{what} {} is inside data_dir {}; give the data dir its own directory", other.display(), m.data_dir.display()));
        }
    }
    if m.pki_dir == m.run_dir {
        f.problems.push(format!("{who}.pki_dir and run_dir are both {}; give each its own directory", m.pki_dir.display()));
    }
    if let Err(e) = rules::member_path_format(&m.bin_dir) {
        f.problem(&format!("{who}.bin_dir"), e);
    }
    if let Err(e) = rules::ssh_destination(&m.host) {
        f.problem(&format!("{who}.host"), e);
    }
    if let Err(e) = rules::ssh_options(&m.ssh_options) {
        f.problem(&format!("{who}.ssh_options"), e);
    }
    if m.is_local() && m.become_with == Some(crate::spec::Become::Sudo) {
        f.problem(&format!("{who}.become"), "sudo is for a member reached over SSH as a user other than root; a `local` member runs as this process");
    }
    if m.is_local() && m.supervisor == Some(Supervisor::Systemd) {
        f.warnings.push(format!("{who}: systemd supervision of local members writes units to /etc/systemd/system"));
    }
}

/// The Kubernetes section but its nodes; returns the version, parsed once.
fn check_kubernetes(k: &KubernetesSpec, f: &mut Findings) -> Option<Version> {
    let version = match rules::kubernetes_version(&k.version) {
        Ok((a, b, c)) => Some(Version(a, b, c)).filter(|v| crate::spec::versions::release_for(*v).map_err(|e| f.problem("kubernetes.version", e)).is_ok()),
        Err(e) => {
            f.problem("kubernetes.version", e);
            None
        }
    };
    match k.cri_socket.as_deref().map(|c| c.strip_prefix("unix://")) {
        None => {}
        Some(Some(path)) if rules::member_path(std::path::Path::new(path)).is_ok() => {}
        Some(_) => f.problem(
            "kubernetes.cri_socket",
            format!(
                "{:?} is not unix:///ABSOLUTE/PATH (containerd: unix:///var/run/containerd/containerd.sock, CRI-O: unix:///var/run/crio/crio.sock)",
                k.cri_socket
            ),
        ),
    }
    for san in &k.cert_sans {
        if san.parse::<IpAddr>().is_err()
            && let Err(e) = pki::hosts::validate_dns_name(san)
        {
            f.problem("kubernetes.cert_sans", e);
        }
    }
    match split_host_port(&k.control_plane_endpoint) {
        Some((host, _)) => {
            if host.parse::<IpAddr>().is_err()
                && let Err(e) = pki::hosts::validate_dns_name(&host)
            {
                f.problem("kubernetes.control_plane_endpoint", e);
            }
        }
        None => f.problem(
            "kubernetes.control_plane_endpoint",
            format!("{:?} must be HOST:PORT of the API load balancer (e.g. lb.example.com:6443)", k.control_plane_endpoint),
        ),
    }
    check_subnets(k, f);
    if let Err(e) = pki::hosts::validate_dns_name(&k.dns_domain) {
        f.problem("kubernetes.dns_domain", e);
    }
    if let Err(e) = rules::haproxy_path(&k.load_balancer_ca_file) {
        f.problem("kubernetes.load_balancer_ca_file", e);
    }
    version
}

fn check_subnets(k: &KubernetesSpec, f: &mut Findings) {
    let service = parse_cidr(&k.service_subnet);
    if service.is_none() {
        f.problem("kubernetes.service_subnet", format!("{:?} is not a CIDR", k.service_subnet));
    }
    if let Some(pod) = &k.pod_subnet {
        match (parse_cidr(pod), service) {
            (None, _) => f.problem("kubernetes.pod_subnet", format!("{pod:?} is not a CIDR")),
            (Some(a), Some(b)) if cidrs_overlap(a, b) => f.problems.push(format!("kubernetes.pod_subnet {pod} overlaps service_subnet {}", k.service_subnet)),
            _ => {}
        }
    }
}

fn check_control_plane_nodes(k: &KubernetesSpec, f: &mut Findings) {
    if k.control_plane_nodes.is_empty() {
        f.problem("kubernetes.control_plane_nodes", "at least one node is needed (the first runs kubeadm init)");
    }
    let mut node_names = HashSet::new();
    let mut node_addrs = HashSet::new();
    for node in &k.control_plane_nodes {
        let who = format!("kubernetes.control_plane_nodes[{}]", node.name);
        if let Err(e) = node_name(&node.name) {
            f.problem(&format!("{who}.name"), e);
        } else if !node_names.insert(node.name.clone()) {
            f.problem(&format!("{who}.name"), "duplicate node name");
        }
        if !node_addrs.insert(node.address) {
            f.problem(&format!("{who}.address"), format!("{} is used by another node", node.address));
        }
        if let Some(h) = &node.host
            && let Err(e) = rules::ssh_destination(h)
        {
            f.problem(&format!("{who}.host"), e);
        }
        if let Err(e) = rules::ssh_options(&node.ssh_options) {
            f.problem(&format!("{who}.ssh_options"), e);
        }
        if let Some((host, port)) = split_host_port(&k.control_plane_endpoint)
            && host.parse::<IpAddr>().ok() == Some(node.address)
            && port == node.bind_port
            && !k.without_load_balancer()
        {
            f.problems.push(format!(
                "{who}: the load balancer {} cannot bind the port the API server on the same address binds; use another address or port",
                k.control_plane_endpoint
            ));
        }
    }
    if k.without_load_balancer() {
        f.warnings.push(format!(
            "kubernetes.control_plane_endpoint {} is {}'s own API server: no load balancer; a second control-plane node later needs one (kubeadm cannot change controlPlaneEndpoint afterwards)",
            k.control_plane_endpoint, k.control_plane_nodes[0].name
        ));
    }
    if k.control_plane_nodes.len() == 2 {
        f.warnings.push("2 control-plane nodes: the API stays up if one fails, but kubeadm's stacked control plane usually runs 3".into());
    }
}
