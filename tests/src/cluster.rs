//! Real etcd clusters for tests: N members of Debian's `etcd` (found on PATH or via `ETCD_BIN`),
//! full mutual TLS with certificates issued by `pki`, each member on its own loopback address
//! with its own temp data dir, readiness by waiting for "ready to serve client requests", bounded
//! waits, and every process stopped by its PID when the cluster is dropped (also on panic).

use crate::{Signal, signal, tool};
use pki::bundle::{CaSource, IssueRequest, issue_into};
use pki::ca::CaOptions;
use pki::cluster::Member;
use pki::keys::KeyAlgorithm;
use pki::layout::{Layout, PkiDir};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// etcd's well-known ports; each member has its own address, so they never collide, and both
/// are below the kernel's ephemeral range (32768-60999).
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// How long a cluster may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(40);

pub struct MemberProc {
    pub name: String,
    pub ip: IpAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl MemberProc {
    pub fn client_url(&self) -> String {
        format!("https://{}:{CLIENT_PORT}", self.ip)
    }
    pub fn peer_url(&self) -> String {
        format!("https://{}:{PEER_PORT}", self.ip)
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running cluster; dropping it stops every member by PID.
pub struct Cluster {
    pub members: Vec<MemberProc>,
    pub pki: PkiDir,
    pub token: String,
    root: tempfile::TempDir,
}

/// A /24 of loopback addresses no other live cluster uses: 127.X.Y.0 with the member ports free.
pub fn free_subnet(n: usize) -> [u8; 3] {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..200u32 {
        let v = seed.wrapping_add(attempt.wrapping_mul(40_503));
        let (x, y) = (1 + (v % 250) as u8, 1 + ((v / 250) % 250) as u8);
        let all_free = (1..=n + 2).all(|i| {
            let ip = Ipv4Addr::new(127, x, y, i as u8);
            [CLIENT_PORT, PEER_PORT].iter().all(|p| TcpListener::bind((ip, *p)).is_ok())
        });
        if all_free {
            return [127, x, y];
        }
    }
    panic!("no free loopback subnet found for a test cluster");
}

impl Cluster {
    /// Starts an `n`-member cluster and waits until every member serves clients.
    pub fn start(n: usize) -> Cluster {
        let root = tempfile::Builder::new().prefix("etcd-test-").tempdir().expect("temp dir");
        let net = free_subnet(n);
        let token = format!("test-{}-{}", net[1], net[2]);
        let members: Vec<Member> = (1..=n)
            .map(|i| Member { name: format!("etcd-{i}"), ips: vec![IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], i as u8))], dns_names: vec![] })
            .collect();
        let pki = PkiDir::new(root.path().join("pki"), Layout::Kubeadm);
        issue(&pki, &members);
        let procs = members
            .iter()
            .map(|m| MemberProc {
                name: m.name.clone(),
                ip: m.ips[0],
                data_dir: root.path().join(format!("{}.data", m.name)),
                log: root.path().join(format!("{}.log", m.name)),
                child: None,
                paused: false,
            })
            .collect();
        let mut cluster = Cluster { members: procs, pki, token, root };
        let initial = cluster.initial_cluster();
        for i in 0..n {
            cluster.launch(i, &initial, "new");
        }
        cluster.wait_ready(0..n);
        cluster
    }

    /// `name=https://ip:2380,...` over the members that exist.
    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// All client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(MemberProc::client_url).collect::<Vec<_>>().join(",")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca().cert
    }

    /// kube-apiserver's client certificate and key.
    pub fn apiserver_client(&self) -> (PathBuf, PathBuf) {
        let p = self.pki.leaf(&pki::cluster::Role::ApiserverEtcdClient);
        (p.cert, p.key)
    }

    /// The healthcheck client certificate and key.
    pub fn healthcheck_client(&self) -> (PathBuf, PathBuf) {
        let p = self.pki.leaf(&pki::cluster::Role::HealthcheckClient);
        (p.cert, p.key)
    }

    /// Starts member `i` with `--initial-cluster-state state`.
    pub fn launch(&mut self, i: usize, initial_cluster: &str, state: &str) {
        let m = &self.members[i];
        let server = self.pki.leaf(&pki::cluster::Role::Server(m.name.clone()));
        let peer = self.pki.leaf(&pki::cluster::Role::Peer(m.name.clone()));
        let ca = self.pki.ca_copy_in(&self.pki.member_dir(&m.name));
        let log = File::options().create(true).append(true).open(&m.log).expect("member log");
        let log2 = log.try_clone().expect("log handle");
        let child = Command::new(tool("etcd", "ETCD_BIN"))
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--listen-client-urls", &m.client_url(), "--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url(), "--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(&ca)
            .arg("--cert-file")
            .arg(&server.cert)
            .arg("--key-file")
            .arg(&server.key)
            .arg("--peer-client-cert-auth")
            .arg("--peer-trusted-ca-file")
            .arg(&ca)
            .arg("--peer-cert-file")
            .arg(&peer.cert)
            .arg("--peer-key-file")
            .arg(&peer.key)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start etcd");
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
    }

    /// Waits (bounded) until the given members log "ready to serve client requests".
    pub fn wait_ready(&mut self, which: impl IntoIterator<Item = usize>) {
        let deadline = Instant::now() + START_TIMEOUT;
        for i in which {
            loop {
                let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
                if log.contains("ready to serve client requests") || log.contains("serving client traffic securely") {
                    break;
                }
                if let Some(child) = self.members[i].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    panic!("{} exited ({status}) before it was ready:\n{}", self.members[i].name, tail(&log, 15));
                }
                assert!(Instant::now() < deadline, "{} not ready after {START_TIMEOUT:?}:\n{}", self.members[i].name, tail(&log, 15));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL member `i` and reap it (its data dir stays).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP member `i`: the kernel still accepts TCP connections, nothing answers.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, Signal::Stop);
            self.members[i].paused = true;
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, Signal::Cont);
            self.members[i].paused = false;
        }
    }

    /// Issues certificates for one more member (kept: every existing certificate) and records
    /// it, not started. Returns its index.
    pub fn add_member_certs(&mut self, name: &str) -> usize {
        let octets = match self.members[0].ip {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(_) => unreachable!("the harness uses IPv4 loopback"),
        };
        let ip = IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], self.members.len() as u8 + 1));
        let mut all: Vec<Member> = self.members.iter().map(|m| Member { name: m.name.clone(), ips: vec![m.ip], dns_names: vec![] }).collect();
        all.push(Member { name: name.into(), ips: vec![ip], dns_names: vec![] });
        issue(&self.pki, &all);
        self.members.push(MemberProc {
            name: name.into(),
            ip,
            data_dir: self.root.path().join(format!("{name}.data")),
            log: self.root.path().join(format!("{name}.log")),
            child: None,
            paused: false,
        });
        self.members.len() - 1
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        tail(&std::fs::read_to_string(&self.members[i].log).unwrap_or_default(), lines)
    }

    /// Runs Debian's `etcdctl` against the cluster with the apiserver client certificate.
    pub fn etcdctl(&self, args: &[&str]) -> crate::Ran {
        let (cert, key) = self.apiserver_client();
        crate::run_bounded(
            Command::new(tool("etcdctl", "ETCDCTL_BIN"))
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoints()))
                .arg("--cacert")
                .arg(self.ca_file())
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .args(args),
            Duration::from_secs(30),
        )
    }
}

fn issue(pki: &PkiDir, members: &[Member]) {
    issue_into(&IssueRequest {
        dir: pki.root.clone(),
        layout: pki.layout,
        members: members.to_vec(),
        algorithm: KeyAlgorithm::EcdsaP256,
        validity: time::Duration::days(30),
        ca: CaSource::InDirOrCreate(CaOptions::default()),
        force: false,
        min_remaining: time::Duration::days(1),
    })
    .expect("issue the test cluster's certificates");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                if m.paused {
                    signal(child.id(), Signal::Cont);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
