//! The pure plan: from a validated spec to exactly what `up` will do — certificates, the files
//! each member gets (only its own), every member's etcd flags, the start order, the outputs.
//! `plan` prints it; `up` carries it out. Nothing here touches a file or a host.

use crate::spec::load::LoadedSpec;
use crate::spec::{MemberSpec, Supervisor};
use pki::bundle::{CaSource, IssueRequest};
use pki::ca::CaOptions;
use pki::cluster::{Member, Role};
use pki::layout::{Layout, PkiDir};
use std::fmt::Write;
use std::path::PathBuf;

/// One file copied from the operator's PKI directory to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub mode: u32,
}

/// What happens on one member.
#[derive(Debug, Clone)]
pub struct MemberPlan {
    pub spec: MemberSpec,
    pub files: Vec<Delivery>,
    /// etcd's full command line after the binary.
    pub args: Vec<String>,
    pub binary: String,
}

impl MemberPlan {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// The member as adopted, or an error for a member this toolkit built.
    pub fn adopted(&self) -> crate::error::Result<&crate::spec::adopted::AdoptedMember> {
        self.spec.adopted.as_ref().ok_or_else(|| crate::error::BootError::Precondition {
            what: format!("work on {} in place", self.spec.name),
            reason: "it is not an adopted member (the spec has no `adopted` section for it)".into(),
        })
    }
    pub fn pid_file(&self) -> PathBuf {
        self.spec.run_dir.join(format!("{}.pid", self.spec.name))
    }
    pub fn log_file(&self) -> PathBuf {
        self.spec.run_dir.join(format!("{}.log", self.spec.name))
    }
    /// Written before the first start: proves a non-empty data dir is this cluster's own.
    pub fn marker_file(&self) -> PathBuf {
        self.spec.run_dir.join(format!("{}.bootstrapped", self.spec.name))
    }
    pub fn unit_name(&self) -> String {
        format!("etcd-{}.service", self.spec.name)
    }

    /// The member's files with their contents, read from the operator's PKI directory, as
    /// `(destination, mode, contents)` for a transport; `keep` selects which.
    pub fn read_files(&self, keep: impl Fn(&Delivery) -> bool) -> std::io::Result<Vec<(String, u32, Vec<u8>)>> {
        self.files
            .iter()
            .filter(|f| keep(f))
            .map(|f| {
                std::fs::read(&f.source)
                    .map(|data| (f.dest.display().to_string(), f.mode, data))
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.source.display())))
            })
            .collect()
    }
}

/// Everything `up` does, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub loaded: LoadedSpec,
    pub token: String,
    pub issue: IssueRequest,
    pub members: Vec<MemberPlan>,
    pub outputs: Vec<(PathBuf, String)>,
}

impl Plan {
    pub fn pki(&self) -> PkiDir {
        PkiDir::new(&self.issue.dir, Layout::Kubeadm)
    }
    /// The client files operations talk to etcd with: the healthcheck client of the operator's
    /// PKI, or, for an adopted cluster, the client files given to `adopt`. (CA, cert, key.)
    pub fn client_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        if let Some(a) = &self.loaded.spec.adopted {
            return (a.cacert.clone(), a.cert.clone(), a.key.clone());
        }
        let pki = self.pki();
        let hc = pki.leaf(&Role::HealthcheckClient);
        (pki.ca().cert, hc.cert, hc.key)
    }
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }
    pub fn initial_cluster(&self) -> String {
        initial_cluster(&self.loaded.spec.members)
    }
}

pub fn initial_cluster(members: &[MemberSpec]) -> String {
    members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
}

/// The pki view of the members.
pub fn pki_members(members: &[MemberSpec]) -> Vec<Member> {
    members.iter().map(|m| Member { name: m.name.clone(), ips: vec![m.address], dns_names: m.dns_names.clone() }).collect()
}

/// etcd's flags for `m` (static bootstrap, mutual TLS on client and peer ports).
pub fn etcd_args(m: &MemberSpec, initial: &str, token: &str, tuning: &crate::spec::tuning::EtcdTuning) -> Vec<String> {
    let pki = |f: &str| m.pki_dir.join("etcd").join(f).display().to_string();
    let mut a: Vec<String> = Vec::new();
    let mut flag = |k: &str, v: String| {
        a.push(format!("--{k}"));
        a.push(v);
    };
    flag("name", m.name.clone());
    flag("data-dir", m.data_dir.display().to_string());
    flag("listen-client-urls", m.client_url());
    flag("advertise-client-urls", m.client_url());
    flag("listen-peer-urls", m.peer_url());
    flag("initial-advertise-peer-urls", m.peer_url());
    flag("initial-cluster", initial.to_string());
    flag("initial-cluster-token", token.to_string());
    flag("initial-cluster-state", "new".into());
    flag("trusted-ca-file", pki("ca.crt"));
    flag("cert-file", pki("server.crt"));
    flag("key-file", pki("server.key"));
    flag("peer-trusted-ca-file", pki("ca.crt"));
    flag("peer-cert-file", pki("peer.crt"));
    flag("peer-key-file", pki("peer.key"));
    // read on every new connection: revoking and delivering a new CRL takes effect at once; DER,
    // the one form etcd 3.6+ reads (x509.ParseRevocationList), and 3.4/3.5 read too
    flag("client-crl-file", pki("crl.der"));
    flag("peer-crl-file", pki("crl.der"));
    flag("logger", "zap".into());
    flag("log-outputs", "stderr".into());
    a.push("--client-cert-auth".into());
    a.push("--peer-client-cert-auth".into());
    // 3.4 defaults to off: a member cut off by a partition keeps raising its term and, when it
    // returns, deposes a healthy leader. 3.5 defaults to on and accepts the flag.
    a.push("--pre-vote".into());
    a.extend(tuning.flags(&m.url_host()));
    a
}

/// The CA bundle the operator's checks trust while a CA rotation is under way (old + new).
pub fn trust_bundle_path(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd").join("ca-bundle.crt")
}

/// Builds the plan. Pure: reads nothing.
pub fn build(loaded: &LoadedSpec) -> Plan {
    let spec = &loaded.spec;
    let token = spec.token();
    let initial = initial_cluster(&spec.members);
    let typed = &loaded.typed;
    let algorithm = typed.algorithm;
    let issue = IssueRequest {
        dir: loaded.pki_dir.clone(),
        layout: Layout::Kubeadm,
        members: pki_members(&spec.members),
        algorithm,
        validity: typed.validity,
        ca: CaSource::InDirOrCreate(CaOptions { algorithm, validity: typed.ca_validity, ..CaOptions::default() }),
        force: false,
        min_remaining: time::Duration::days(30),
    };
    let dir = PkiDir::new(&loaded.pki_dir, Layout::Kubeadm);
    let members = spec
        .members
        .iter()
        .map(|m| {
            // an adopted member runs as its operator set it up: nothing of ours is delivered
            if let Some(a) = &m.adopted {
                return MemberPlan { spec: m.clone(), files: vec![], args: a.command_line.clone(), binary: a.binary.display().to_string() };
            }
            let server = dir.leaf(&Role::Server(m.name.clone()));
            let peer = dir.leaf(&Role::Peer(m.name.clone()));
            let dest = |f: &str| m.pki_dir.join("etcd").join(f);
            let files = vec![
                Delivery { source: dir.ca_copy_in(&dir.member_dir(&m.name)), dest: dest("ca.crt"), mode: 0o644 },
                Delivery { source: server.cert, dest: dest("server.crt"), mode: 0o644 },
                Delivery { source: server.key, dest: dest("server.key"), mode: 0o600 },
                Delivery { source: peer.cert, dest: dest("peer.crt"), mode: 0o644 },
                Delivery { source: peer.key, dest: dest("peer.key"), mode: 0o600 },
                Delivery { source: pki::crl::paths(&loaded.pki_dir).1, dest: dest("crl.pem"), mode: 0o644 },
                Delivery { source: pki::crl::der_path(&pki::crl::paths(&loaded.pki_dir).1), dest: dest("crl.der"), mode: 0o644 },
            ];
            // a delivered etcd runs from the member's bin_dir
            let binary = match &spec.etcd_archive {
                Some(_) => m.bin_dir.join("etcd").display().to_string(),
                None => spec.etcd_binary.clone(),
            };
            MemberPlan { spec: m.clone(), files, args: etcd_args(m, &initial, &token, &spec.etcd), binary }
        })
        .collect();
    let out = &loaded.output_dir;
    let mut outputs = vec![(out.join("kubeadm/init.yaml"), "kubeadm InitConfiguration + ClusterConfiguration for the first control-plane node".to_string())];
    for n in spec.kubernetes.control_plane_nodes.iter().skip(1) {
        outputs.push((out.join(format!("kubeadm/join-{}.yaml", n.name)), format!("kubeadm JoinConfiguration for {}", n.name)));
    }
    outputs.push((out.join("RUNBOOK.md"), "the runbook, node by node: load balancer and check lb, kubeadm init, CNI, joins".into()));
    for n in &spec.kubernetes.control_plane_nodes {
        outputs.push((out.join("control-plane").join(&n.name), format!("files for {} (mirrors /): etcd CA, apiserver-etcd-client cert and key", n.name)));
    }
    outputs.push((out.join("haproxy/haproxy.cfg"), "HAProxy for the API load balancer".into()));
    outputs.push((out.join("haproxy/kubernetes-ca.crt"), "the CA HAProxy verifies API servers with".into()));
    Plan { loaded: loaded.clone(), token, issue, members, outputs }
}

impl Plan {
    /// The member named `name`, or an error listing the spec's members.
    pub fn member_named(&self, name: &str) -> crate::error::Result<&MemberPlan> {
        self.members.iter().find(|m| m.spec.name == name).ok_or_else(|| crate::error::BootError::MemberNotFound {
            name: name.to_string(),
            known: self.members.iter().map(|m| m.spec.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// Shell-quotes one word for display and for scripts.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The plan as text: what `up` would do, without doing it.
pub fn render(plan: &Plan) -> String {
    let spec = &plan.loaded.spec;
    let mut s = String::new();
    let _ = writeln!(s, "Cluster {} (token {}), {} members, spec {}", spec.name, plan.token, plan.members.len(), plan.loaded.file);
    for w in &plan.loaded.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "\n1. Certificates in {} (kubeadm layout; valid ones are kept, the CA key stays here):", plan.issue.dir.display());
    let _ = writeln!(
        s,
        "   CA etcd-ca ({}), per member a server and a peer certificate, kube-apiserver-etcd-client, kube-etcd-healthcheck-client",
        plan.issue.algorithm
    );
    if let Some(a) = &spec.etcd_archive {
        let _ = writeln!(
            s,
            "\n   etcd from {a} (sha256 {}), verified here first; etcd, etcdctl, etcdutl to each member's bin_dir (0755) unless already identical",
            spec.etcd_sha256.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        s,
        "\n2. Preflight on every member: etcd binary and version, ports free, data dir empty (or this cluster's), certificates cover the advertised URLs, peers reachable."
    );
    let _ = writeln!(s, "\n3. Files per member (only its own keys; never the CA key):");
    for m in &plan.members {
        let _ = writeln!(s, "   {} ({}):", m.name(), m.spec.host);
        for f in &m.files {
            let _ = writeln!(s, "     {:o}  {}  <-  {}", f.mode, f.dest.display(), f.source.display());
        }
    }
    let _ = writeln!(s, "\n4. Start (static bootstrap), a new cluster's members in turn, in this order:");
    for m in &plan.members {
        let how = match m.spec.supervisor() {
            Supervisor::Process => format!("background process, pid {}, log {}", m.pid_file().display(), m.log_file().display()),
            Supervisor::Systemd => format!("systemd unit {}", m.unit_name()),
        };
        let _ = writeln!(s, "   {} on {} as {how}:", m.name(), m.spec.host);
        let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| sh_quote(&a)).collect();
        let _ = writeln!(s, "     {}", cmd.join(" "));
    }
    let _ = writeln!(s, "\n5. Wait (bounded) until the quorum verdict over {} is HEALTHY.", plan.endpoints().join(","));
    let _ = writeln!(s, "\n6. Outputs:");
    for (p, what) in &plan.outputs {
        let _ = writeln!(s, "   {}  ({what})", p.display());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn loaded() -> LoadedSpec {
        let spec: Spec = serde_yaml_ng::from_str(
            "name: prod\nmembers:\n  - {name: etcd-1, address: 10.0.0.11}\n  - {name: etcd-2, address: 10.0.0.12, host: root@10.0.0.12}\n  - {name: etcd-3, address: 'fd00::13', host: etcd-3.example.com}\nkubernetes: {version: v1.31.2, control_plane_endpoint: 'lb:6443', control_plane_nodes: [{name: cp-1, address: 10.0.0.21}, {name: cp-2, address: 10.0.0.22}]}\n",
        )
        .unwrap();
        spec.into_loaded("spec.yaml", std::path::Path::new("/ops")).unwrap()
    }

    #[test]
    fn flags_follow_etcds_static_bootstrap() {
        let plan = build(&loaded());
        let a = &plan.members[0].args;
        let get = |k: &str| a.iter().position(|x| x == k).map(|i| a[i + 1].clone()).unwrap();
        assert_eq!(get("--initial-cluster"), "etcd-1=https://10.0.0.11:2380,etcd-2=https://10.0.0.12:2380,etcd-3=https://[fd00::13]:2380");
        assert_eq!(get("--advertise-client-urls"), "https://10.0.0.11:2379");
        assert_eq!(get("--initial-cluster-token"), "prod-etcd");
        assert_eq!(get("--peer-key-file"), "/etc/kubernetes/pki/etcd/peer.key");
        assert!(a.contains(&"--client-cert-auth".to_string()) && a.contains(&"--peer-client-cert-auth".to_string()));
        assert!(a.contains(&"--pre-vote".to_string()), "3.4 needs it; 3.5 accepts it");
    }

    #[test]
    fn each_member_gets_only_its_own_files() {
        let plan = build(&loaded());
        for m in &plan.members {
            assert_eq!(m.files.len(), 7);
            for f in &m.files {
                assert!(
                    f.source.starts_with(format!("/ops/pki/members/{}", m.name())) || f.source.ends_with("etcd/crl.pem") || f.source.ends_with("etcd/crl.der"),
                    "{f:?}"
                );
                assert!(!f.source.ends_with("ca.key"));
                if f.dest.extension().is_some_and(|e| e == "key") {
                    assert_eq!(f.mode, 0o600);
                }
            }
        }
        assert_eq!(plan.members[1].spec.supervisor(), Supervisor::Systemd);
        assert_eq!(plan.members[0].spec.supervisor(), Supervisor::Process);
    }

    #[test]
    fn rendering_names_every_step() {
        let text = render(&build(&loaded()));
        for want in [
            "1. Certificates in /ops/pki",
            "etcd-2 (root@10.0.0.12)",
            "600  /etc/kubernetes/pki/etcd/server.key",
            "systemd unit etcd-etcd-2.service",
            "/ops/out/kubeadm/join-cp-2.yaml",
            "haproxy.cfg",
        ] {
            assert!(text.contains(want), "missing {want:?}:\n{text}");
        }
    }

    /// Every flag `up` writes, with every tuning option set, exists in each etcd version the
    /// toolkit supports, from each one's own `etcd --help` (fixtures/etcd-flags.sh): 3.4.23, 3.5.1,
    /// and the 3.5.36, 3.6.17 and 3.7.4 built from etcd's Go modules. None is `--experimental-*`
    /// (3.6 moved them to `--feature-gates`, 3.7 removed them) or `--enable-v2` (gone in 3.6).
    #[test]
    fn every_flag_written_exists_in_every_supported_etcd() {
        let spec = loaded().spec;
        let all = crate::spec::tuning::every_option();
        let args = etcd_args(&spec.members[0], "etcd-1=https://10.0.0.11:2380", "t", &all);
        let written: Vec<&str> = args.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a)).collect();
        assert!(written.len() >= 20, "{written:?}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/etcd-flags");
        let mut versions = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let known = std::fs::read_to_string(e.path()).unwrap();
            let known: std::collections::HashSet<&str> = known.lines().collect();
            let missing: Vec<&&str> = written.iter().filter(|f| !known.contains(**f)).collect();
            assert!(missing.is_empty(), "etcd {}: {missing:?} not among its flags", e.file_name().to_string_lossy());
            versions += 1;
        }
        assert_eq!(versions, 5, "3.4.23, 3.5.1, 3.5.36, 3.6.17, 3.7.4");
        assert!(!written.iter().any(|f| f.starts_with("--experimental-") || *f == "--enable-v2"), "{written:?}");
    }
}
