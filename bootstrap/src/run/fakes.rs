//! Fakes of the two seams an operation reaches the world through (tests only): hosts that
//! recognise the scripts of [`crate::host::scripts`] and act them out on a shared [`World`], and an
//! etcd whose verdict is the real pure [`etcdctl_lite::quorum::verdict`] over that world. Every
//! call is recorded in order, so a test asserts what an operation did, and in which order, in
//! milliseconds.

use crate::error::{BootError, Result};
use crate::host::transport::{ScriptOutput, Transport, TransportError};
use crate::plan::Plan;
use crate::run::context::{Hosts, Seams};
use crate::run::etcd_view::EtcdView;
use crate::spec::versions::Version;
use etcdctl_lite::diagnose::{Failure, FailureKind};
use etcdctl_lite::maintenance::Downgrade;
use etcdctl_lite::model::{MemberInfo, MemberList, Status36, StatusInfo};
use etcdctl_lite::options::ClientOptions;
use etcdctl_lite::quorum::{Observation, Probe, Verdict};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cluster as the fakes see it.
#[derive(Debug, Default)]
pub struct World {
    pub members: Vec<MemberInfo>,
    /// Members (by name) whose process is not running.
    pub dead: HashSet<String>,
    /// Every host script and etcd call, in order: `etcd-2: retire`, `etcd: remove 2`, ...
    pub events: Vec<String>,
    /// `(member, script kind)` that fail (the host does not answer), or `("etcd", call)`.
    pub failing: HashSet<(String, String)>,
    /// The leader moved here by `move_leader` (else the first running voter leads).
    pub leader: Option<u64>,
    /// Members (by name) left with a new certificate beside an old key (a delivery killed
    /// midway): unreachable until a delivery to them succeeds.
    pub half_delivered: HashSet<String>,
    /// Members (by name) whose etcd runs with `--enable-v2`.
    pub v2: HashSet<String>,
    /// Members (by name) whose data holds v2 store content.
    pub v2_data: HashSet<String>,
    /// Members (by name) whose WAL holds v2 requests after the last v2 snapshot.
    pub v2_wal: HashSet<String>,
    /// The version each member (by name) runs, where a test sets it (else 3.5.36); a start
    /// moves it to the version of the etcd binary delivered to that member, if any.
    pub versions: HashMap<String, Version>,
    /// The version of the etcd binary last delivered to each member (by name).
    pub delivered: HashMap<String, Version>,
    /// The downgrade enabled in the cluster: its target minor (`3.6`).
    pub downgrade: Option<String>,
    /// Members (by name) whose etcd exits right after it is started (etcd refused its settings).
    pub exits_on_start: HashSet<String>,
    /// The raft index each member (by name) has applied, where a test sets it (else 10).
    pub applied: HashMap<String, u64>,
    /// Members (by name) whose defrag tool cannot defragment a data dir.
    pub old_tools: HashSet<String>,
    /// How many quorum verdicts were asked for (each probes every member).
    pub verdicts: usize,
    /// The members (by client URL) whose health alone was asked for, in order.
    pub member_checks: Vec<String>,
    next_id: u64,
}

pub type Shared = Arc<Mutex<World>>;

/// The plan's members, all started and running, IDs 1, 2, 3, ...
pub fn world(plan: &Plan) -> Shared {
    let members = plan
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| MemberInfo {
            id: i as u64 + 1,
            name: m.spec.name.clone(),
            peer_urls: vec![m.spec.peer_url()],
            client_urls: vec![m.spec.client_url()],
            is_learner: false,
        })
        .collect::<Vec<_>>();
    let next_id = members.len() as u64 + 100;
    Arc::new(Mutex::new(World { members, next_id, ..World::default() }))
}

/// Seams over `world` for every member of `plan`.
pub fn seams(plan: &Plan, world: &Shared) -> Seams {
    let hosts = plan
        .members
        .iter()
        .map(|m| {
            (
                m.spec.name.clone(),
                Box::new(FakeHost { member: m.spec.name.clone(), peer_url: m.spec.peer_url(), client_url: m.spec.client_url(), world: world.clone() })
                    as Box<dyn Transport>,
            )
        })
        .collect();
    let certs = plan.members.iter().map(|m| (m.spec.client_url(), plan.pki().leaf(&pki::cluster::Role::Server(m.spec.name.clone())).cert)).collect();
    Seams { hosts: Hosts::new(hosts), etcd: Box::new(FakeEtcd { world: world.clone(), endpoints: plan.endpoints(), certs }) }
}

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a script does, by the words only that script has.
/// Which host script this is, by its `# host script: NAME` line.
fn kind(script: &str) -> &str {
    match crate::host::script::Script::name_of(script) {
        "clock-and-space" => "free-space",
        other => other,
    }
}

struct FakeHost {
    member: String,
    peer_url: String,
    client_url: String,
    world: Shared,
}

fn out(stdout: &str) -> ScriptOutput {
    ScriptOutput { code: Some(0), stdout: stdout.to_string(), stderr: String::new() }
}

impl Transport for FakeHost {
    fn describe(&self) -> String {
        format!("fake {}", self.member)
    }
    fn run(&self, script: &str, _: Duration) -> std::result::Result<ScriptOutput, TransportError> {
        let k = kind(script);
        let mut w = lock(&self.world);
        w.events.push(format!("{}: {k}", self.member));
        if w.failing.contains(&(self.member.clone(), k.to_string())) {
            return Err(TransportError::Connect { destination: self.member.clone(), stderr: "ssh: connect to host: No route to host".into() });
        }
        Ok(match k {
            "retire" | "stop" => {
                w.dead.insert(self.member.clone());
                out(if k == "retire" { "moved=/data.replaced-20261125T000000\n" } else { "stopped=1\n" })
            }
            "start" => {
                let (name, client) = (self.member.clone(), self.client_url.clone());
                if let Some(m) = w.members.iter_mut().find(|m| m.peer_urls.contains(&self.peer_url)) {
                    m.name = name.clone();
                    m.client_urls = vec![client];
                }
                if !w.exits_on_start.contains(&name) {
                    w.dead.remove(&name);
                    if let Some(v) = w.delivered.get(&name).copied() {
                        w.versions.insert(name, v);
                    }
                }
                out("started=4242\n")
            }
            "status" => out(if w.dead.contains(&self.member) { "" } else { "running=1\npid=4242\n" }),
            "log-tail" if w.exits_on_start.contains(&self.member) => out(
                "{\"level\":\"fatal\",\"msg\":\"failed to start etcd\",\"error\":\"conflicting environment variable \\\"ETCD_INITIAL_CLUSTER_STATE\\\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\"}\n",
            ),
            "free-space" => out("free_kib=10000000\n"),
            "defrag-tool-probe" if w.old_tools.contains(&self.member) => out("tool=/opt/etcd/bin/etcdctl\ndefrag=no\n"),
            "defrag-tool-probe" => out("tool=/opt/etcd/bin/etcdutl\ndefrag=yes\n"),
            "defrag-offline" => out("before=4194304\nafter=1048576\n"),
            "v2-probe" => out(if w.v2.contains(&self.member) { "v2=flag\n" } else { "" }),
            "v2store-probe" => out(if w.v2_data.contains(&self.member) {
                "v2store=custom\n"
            } else if w.v2_wal.contains(&self.member) {
                "v2store=wal\n"
            } else {
                "v2store=clean\n"
            }),
            "version" => {
                let v = w.delivered.get(&self.member).copied().unwrap_or(Version(3, 5, 36));
                ScriptOutput { stdout: format!("etcd Version: {v}\nGit SHA: fake\n"), stderr: String::new(), code: Some(0) }
            }
            _ => out(""),
        })
    }
    fn deliver(&self, files: &[(String, u32, Vec<u8>)], _: Duration) -> std::result::Result<usize, TransportError> {
        let mut w = lock(&self.world);
        w.events.push(format!("{}: deliver {}", self.member, files.len()));
        if w.failing.contains(&(self.member.clone(), "deliver".to_string())) {
            return Err(TransportError::Connect { destination: self.member.clone(), stderr: "ssh: connect to host: No route to host".into() });
        }
        w.half_delivered.remove(&self.member);
        for (path, _, data) in files {
            let version =
                String::from_utf8_lossy(data).lines().find_map(|l| l.split("etcd Version: ").nth(1).and_then(|v| Version::parse(v.trim_end_matches('\''))));
            if let (true, Some(v)) = (path.ends_with("/etcd"), version) {
                w.delivered.insert(self.member.clone(), v);
            }
        }
        Ok(files.len())
    }
}

struct FakeEtcd {
    world: Shared,
    endpoints: Vec<String>,
    /// Each member serves the server certificate in the operator's copy (as if delivered).
    certs: HashMap<String, std::path::PathBuf>,
}

impl FakeEtcd {
    fn call(&self, what: &str) -> Result<std::sync::MutexGuard<'_, World>> {
        let mut w = lock(&self.world);
        w.events.push(format!("etcd: {what}"));
        let name = what.split_whitespace().next().unwrap_or("").to_string();
        if w.failing.contains(&("etcd".to_string(), name)) {
            return Err(BootError::Etcd { what: what.into(), source: etcdctl_lite::CtlError::Refused("etcdserver: refused by the fake".into()) });
        }
        Ok(w)
    }
}

fn status(id: u64, leader: u64, is_learner: bool) -> StatusInfo {
    StatusInfo {
        cluster_id: 7,
        member_id: id,
        revision: 10,
        header_raft_term: 2,
        version: "3.5.36".into(),
        db_size: 1 << 20,
        db_size_in_use: 1 << 20,
        leader,
        raft_index: 10,
        raft_term: 2,
        raft_applied_index: 10,
        is_learner,
        errors: vec![],
        since_36: None,
    }
}

/// The leader moved here by `move_leader` while it runs, else the first running voter.
fn leader_of(w: &World) -> u64 {
    let alive = |m: &MemberInfo| m.started() && !w.dead.contains(&m.name) && !w.half_delivered.contains(&m.name);
    let first = w.members.iter().find(|m| alive(m) && !m.is_learner).map(|m| m.id).unwrap_or(0);
    w.leader.filter(|l| w.members.iter().any(|m| m.id == *l && alive(m))).unwrap_or(first)
}

impl EtcdView for FakeEtcd {
    fn verdict(&self) -> Result<Verdict> {
        let mut w = lock(&self.world);
        w.verdicts += 1;
        let alive = |m: &MemberInfo| m.started() && !w.dead.contains(&m.name) && !w.half_delivered.contains(&m.name);
        let leader = leader_of(&w);
        let refused = || Failure { kind: FailureKind::Refused, message: "connection refused".into() };
        let probes = self
            .endpoints
            .iter()
            .map(|e| match w.members.iter().find(|m| m.client_urls.contains(e) && alive(m)) {
                Some(m) => Probe {
                    endpoint: e.clone(),
                    status: Ok(StatusInfo { raft_applied_index: w.applied.get(&m.name).copied().unwrap_or(10), ..status(m.id, leader, m.is_learner) }),
                    read: if m.is_learner { Err(Failure { kind: FailureKind::Learner, message: "learner".into() }) } else { Ok(Duration::from_millis(1)) },
                    alarms: vec![],
                },
                None => Probe { endpoint: e.clone(), status: Err(refused()), read: Err(refused()), alarms: vec![] },
            })
            .collect();
        let member_list = Some(MemberList { cluster_id: 7, member_id: leader, raft_term: 2, members: w.members.clone() }).filter(|_| leader != 0);
        Ok(etcdctl_lite::quorum::verdict(&Observation { member_list, probes }))
    }
    fn leads(&self, endpoint: &str) -> Option<bool> {
        let w = lock(&self.world);
        let m = w.members.iter().find(|m| m.client_urls.iter().any(|u| u == endpoint) && m.started() && !w.dead.contains(&m.name))?;
        Some(leader_of(&w) == m.id)
    }
    fn all_healthy(&self) -> Result<bool> {
        let w = lock(&self.world);
        Ok(w.members.iter().all(|m| m.started() && !w.dead.contains(&m.name) && !w.half_delivered.contains(&m.name)))
    }
    fn member_health(&self, endpoint: &str) -> std::result::Result<(), String> {
        let mut w = lock(&self.world);
        w.member_checks.push(endpoint.to_string());
        match w.members.iter().find(|m| m.client_urls.iter().any(|u| u == endpoint)) {
            Some(m) if m.started() && !w.dead.contains(&m.name) && !w.half_delivered.contains(&m.name) => Ok(()),
            _ => Err(format!("{endpoint}: connection refused")),
        }
    }
    fn member_list(&self, _via: &[String]) -> Result<Vec<MemberInfo>> {
        Ok(self.call("list")?.members.clone())
    }
    fn add_learner(&self, _via: &[String], peer_url: &str) -> Result<(MemberInfo, Vec<MemberInfo>)> {
        let mut w = self.call("add learner")?;
        w.next_id += 1;
        let added = MemberInfo { id: w.next_id, name: String::new(), peer_urls: vec![peer_url.to_string()], client_urls: vec![], is_learner: true };
        w.members.push(added.clone());
        Ok((added, w.members.clone()))
    }
    fn remove_member(&self, _via: &[String], id: u64) -> Result<()> {
        let mut w = self.call(&format!("remove {id}"))?;
        w.members.retain(|m| m.id != id);
        Ok(())
    }
    fn promote(&self, _via: &[String], id: u64) -> Result<()> {
        let mut w = self.call(&format!("promote {id}"))?;
        if w.members.iter().any(|m| m.id == id && w.dead.contains(&m.name)) {
            return Err(BootError::Etcd {
                what: format!("promote {id}"),
                source: etcdctl_lite::CtlError::Refused("etcdserver: can only promote a learner member which is in sync with leader".into()),
            });
        }
        if let Some(m) = w.members.iter_mut().find(|m| m.id == id) {
            m.is_learner = false;
        }
        Ok(())
    }
    fn move_leader(&self, to: u64) -> Result<()> {
        self.call(&format!("move-leader {to}"))?.leader = Some(to);
        Ok(())
    }
    fn version_of(&self, endpoint: &str) -> Option<Version> {
        let w = lock(&self.world);
        let name = w.members.iter().find(|m| m.client_urls.iter().any(|u| u == endpoint)).map(|m| m.name.clone())?;
        if w.dead.contains(&name) {
            return None;
        }
        w.versions.get(&name).copied().or(Version::parse("3.5.36"))
    }
    fn cluster_version(&self) -> Option<String> {
        let w = lock(&self.world);
        let lowest = w.versions.values().min().copied().unwrap_or(Version(3, 5, 36));
        Some(w.downgrade.clone().map(|v| format!("{v}.0")).unwrap_or_else(|| format!("{}.{}.0", lowest.0, lowest.1)))
    }
    fn downgrade(&self, what: &Downgrade) -> Result<String> {
        let mut w = self.call(&format!("downgrade {what:?}"))?;
        let lowest = w.versions.values().min().copied().unwrap_or(Version(3, 5, 36));
        match what {
            Downgrade::Validate(_) => {}
            Downgrade::Enable(v) => w.downgrade = Some(v.clone()),
            Downgrade::Cancel => w.downgrade = None,
        }
        Ok(w.downgrade.clone().map(|v| format!("{v}.0")).unwrap_or_else(|| format!("{}.{}.0", lowest.0, lowest.1)))
    }
    fn storage_of(&self, endpoint: &str) -> Option<Status36> {
        let w = lock(&self.world);
        // etcd ends a downgrade once every member runs its target
        let all_there = |t: &str| w.members.iter().all(|m| w.versions.get(&m.name).is_some_and(|v| format!("{}.{}", v.0, v.1) == t));
        let downgrade = w.downgrade.clone().filter(|t| !all_there(t));
        let name = w.members.iter().find(|m| m.client_urls.iter().any(|u| u == endpoint)).map(|m| m.name.clone())?;
        let v = *w.versions.get(&name)?;
        (v >= Version(3, 6, 0)).then(|| Status36 {
            storage_version: w.downgrade.clone().map(|t| format!("{t}.0")).unwrap_or_else(|| format!("{}.{}.0", v.0, v.1)),
            db_size_quota: 0,
            downgrade: downgrade.map(|t| (format!("{t}.0"), true)),
        })
    }
    fn served_certificate(&self, endpoint: &str) -> Option<Vec<u8>> {
        let pem = std::fs::read(self.certs.get(endpoint)?).ok()?;
        pki::pemfile::first_certificate(&pem, endpoint).ok()
    }
    fn peer_serves(&self, _peer_url: &str, _within: Duration) -> bool {
        true
    }
    fn client(&self) -> Result<(ClientOptions, &tokio::runtime::Runtime)> {
        Err(BootError::Verification("the fake etcd has no client".into()))
    }
}

/// The events that are not reads (`list`), for asserting an operation's effects in order.
pub fn effects(world: &Shared) -> Vec<String> {
    lock(world).events.iter().filter(|e| !e.ends_with(": list") && !e.ends_with(": version")).cloned().collect()
}

/// Marks what fails: `("etcd-2", "free-space")`, `("etcd", "add")`.
pub fn fail(world: &Shared, who: &str, what: &str) {
    lock(world).failing.insert((who.to_string(), what.to_string()));
}

/// Map of member name to id.
pub fn ids(world: &Shared) -> HashMap<String, u64> {
    lock(world).members.iter().map(|m| (m.name.clone(), m.id)).collect()
}

/// A local 3-member spec and its plan in a temporary directory (the PKI and the journal go there).
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub plan: Plan,
}

pub fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let spec = crate::spec::local::spec(3, dir.path());
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&spec).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let loaded = crate::spec::Spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Cluster { plan: crate::plan::build(&loaded), _dir: dir }
}

impl Cluster {
    /// Runs `op` as `kind` (target, finishing args) through the journal, on the fakes of `world`.
    pub fn run<T>(
        &self,
        world: &Shared,
        kind: crate::journal::OpKind,
        target: Option<&str>,
        args: &str,
        op: impl FnOnce(&crate::run::context::Ctx) -> Result<T>,
    ) -> Result<T> {
        let req = crate::run::context::request(&self.plan, kind, target.map(String::from), args);
        crate::run::context::run_with(&self.plan, &crate::progress::Progress::new(true), req, Duration::from_secs(5), seams(&self.plan, world), op)
    }

    /// How many operations the journal holds.
    pub fn under_way(&self) -> usize {
        crate::run::journal_store::Store::for_spec(std::path::Path::new(&self.plan.loaded.file)).read().map(|j| j.operations.len()).unwrap_or(usize::MAX)
    }
}

/// Marks a member's process as not running.
pub fn kill(world: &Shared, name: &str) {
    lock(world).dead.insert(name.to_string());
}

/// A folder release whose binaries say they are etcd `version` (upgrade and downgrade read only that).
pub fn release_folder(version: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir()?;
    for name in ["etcd", "etcdctl", "etcdutl"] {
        let p = d.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho 'etcd Version: {version}'\n"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(d)
}
