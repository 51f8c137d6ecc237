//! Live-cluster primitives shared by the operations in [`crate::ops`]: running a script on a
//! member, delivering files, starting and restarting a member (leadership handed off first), the
//! quorum verdict over the spec's members, and the bounded waits for HEALTHY. Nothing here decides
//! what an operation does; each operation composes these.

use crate::error::{BootError, Result};
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::scripts;
use crate::transport::{self, ScriptOutput};
use etcdctl_lite::options::ClientOptions;
use etcdctl_lite::quorum::{ClusterState, MemberState, Role as QRole, Verdict};
use pki::cluster::Role;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bound on one script or delivery on a member's host.
pub(crate) const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// A current-thread tokio runtime for the etcd client calls of one operation.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BootError::Runtime)
}

/// Runs `f` for every member in parallel; results in member order.
pub(crate) fn per_member<T: Send>(plan: &Plan, f: impl Fn(&MemberPlan) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = plan.members.iter().map(|m| s.spawn(|| f(m))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

fn host_error(m: &MemberPlan, t: &dyn transport::Transport, reason: String) -> BootError {
    BootError::Host { member: m.spec.name.clone(), host: t.describe(), reason }
}

pub(crate) fn run_on(m: &MemberPlan, script: &str) -> Result<ScriptOutput> {
    let t = transport::for_member(&m.spec);
    t.run(script, SCRIPT_LIMIT).map_err(|reason| host_error(m, t.as_ref(), reason))
}

/// Delivers `(path, mode, bytes)` files to the member's host; returns how many changed.
pub(crate) fn deliver(m: &MemberPlan, files: &[(String, u32, Vec<u8>)]) -> Result<usize> {
    let t = transport::for_member(&m.spec);
    t.deliver(files, SCRIPT_LIMIT).map_err(|reason| host_error(m, t.as_ref(), reason))
}

/// The member's own files from the operator's PKI directory (those `keep` selects).
pub(crate) fn own_files(m: &MemberPlan, keep: impl Fn(&crate::plan::Delivery) -> bool) -> Result<Vec<(String, u32, Vec<u8>)>> {
    m.read_files(keep).map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })
}

/// Starts a member: under systemd its unit file is delivered first, as a file (never through a
/// script's text), then the start script runs.
pub(crate) fn start_member(m: &MemberPlan, token: &str) -> Result<ScriptOutput> {
    if let Some(unit) = scripts::unit_delivery(m) {
        deliver(m, &[unit])?;
    }
    run_on(m, &scripts::start(m, token))
}

pub(crate) fn host_err(m: &MemberPlan, what: &str, out: &ScriptOutput) -> BootError {
    BootError::Host { member: m.spec.name.clone(), host: m.spec.host.clone(), reason: format!("{what} failed (exit {}): {}", out.status(), out.stderr.trim()) }
}

/// The CA bundle the operator's checks trust while a CA rotation is under way (old + new).
pub fn trust_bundle_path(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd").join("ca-bundle.crt")
}

/// Client options for checking the cluster with the operator's healthcheck client certificate.
pub fn client_options(plan: &Plan) -> Result<ClientOptions> {
    let pki = plan.pki();
    let hc = pki.leaf(&Role::HealthcheckClient);
    let s = |p: &std::path::Path| p.display().to_string();
    // during a CA rotation, trust both CAs (members serve certificates from either)
    let bundle = trust_bundle_path(plan);
    let ca = if bundle.exists() { bundle } else { pki.ca().cert };
    ClientOptions::new(&plan.endpoints(), Some(&s(&ca)), Some(&s(&hc.cert)), Some(&s(&hc.key)), Duration::from_secs(1), Duration::from_secs(2))
        .map_err(|source| BootError::Etcd { what: "the healthcheck client's files".into(), source })
}

/// One quorum verdict over the plan's members; an election in progress is re-checked for one
/// election timeout before it is reported.
pub fn verdict(plan: &Plan) -> Result<Verdict> {
    let opts = client_options(plan)?;
    Ok(runtime()?.block_on(etcdctl_lite::observe::assess(&opts, plan.loaded.spec.etcd.election_timeout())))
}

/// Polls every endpoint's health (a linearizable read each, in parallel, short bounds) every
/// 25 ms until all answer or `deadline` passes; cheaper than a full verdict per poll.
pub(crate) fn wait_all_healthy(plan: &Plan, deadline: Instant) -> Result<()> {
    let mut opts = client_options(plan)?;
    opts.dial_timeout = Duration::from_millis(500);
    opts.command_timeout = Duration::from_secs(1);
    runtime()?.block_on(async {
        while Instant::now() < deadline {
            if etcdctl_lite::ops::health(&opts).await.iter().all(|h| h.healthy()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    Ok(())
}

/// Waits (bounded by `wait`) for a HEALTHY verdict; the error says what `after` was and that
/// the operation resumes when run again.
pub(crate) fn wait_healthy(plan: &Plan, wait: Duration, after: &str) -> Result<Verdict> {
    wait_until(plan, wait, |v| v.state == ClusterState::Healthy, |v| {
        format!(
            "after {after}: not HEALTHY within {}s ({}: {}); stopped here, and running the same command again resumes",
            wait.as_secs(),
            v.state.word(),
            v.summary
        )
    })
}

/// Polls the verdict (bounded by `wait`) until `accept` takes it; past the bound, `failure`
/// says why.
pub(crate) fn wait_until(plan: &Plan, wait: Duration, accept: impl Fn(&Verdict) -> bool, failure: impl Fn(&Verdict) -> String) -> Result<Verdict> {
    let deadline = Instant::now() + wait;
    loop {
        let v = verdict(plan)?;
        if accept(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(failure(&v)));
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// An operation's progress record (`pki/etcd/NAME.json`), if one is there. A damaged record is
/// an error that says what it was for: an operation never guesses where it stands.
pub(crate) fn load_record<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &str) -> Result<Option<T>> {
    let err = |reason: String| BootError::Output { path: path.display().to_string(), reason };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| err(format!("{e}; the record of {what} is damaged"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes an operation's progress record atomically.
pub(crate) fn save_record<T: serde::Serialize>(path: &std::path::Path, record: &T, mode: u32) -> Result<()> {
    let json = serde_json::to_string_pretty(record).map_err(|e| BootError::Output { path: path.display().to_string(), reason: e.to_string() })? + "\n";
    pki::files::write_atomic(path, json.as_bytes(), mode)?;
    Ok(())
}

/// Refuses unless the cluster is HEALTHY now.
pub(crate) fn require_healthy(plan: &Plan, what: &str) -> Result<Verdict> {
    let v = verdict(plan)?;
    if v.state != ClusterState::Healthy {
        return Err(BootError::Precondition { what: what.to_string(), reason: format!("the cluster is {} ({}); fix it first", v.state.word(), v.summary) });
    }
    Ok(v)
}

/// The operator's CRL (empty until something is revoked), made once; etcd needs the file.
pub(crate) fn ensure_crl(plan: &Plan) -> Result<()> {
    let (_, crl) = pki::crl::paths(&plan.issue.dir);
    if !crl.exists() {
        let pair = plan.pki().ca();
        let ca = pki::ca::Ca::load_files(&pair.cert, &pair.key)?;
        pki::crl::refresh(&plan.issue.dir, &ca)?;
    }
    Ok(())
}

/// Waits (bounded) until the member's TLS handshake presents its server certificate from the
/// operator's PKI directory: etcd re-reads its certificate on every handshake.
pub(crate) fn wait_serves_own_certificate(plan: &Plan, m: &MemberPlan, wait: Duration) -> Result<()> {
    let path = plan.pki().leaf(&Role::Server(m.spec.name.clone())).cert;
    let pem = std::fs::read(&path).map_err(|e| BootError::Output { path: path.display().to_string(), reason: e.to_string() })?;
    let want = pki::pemfile::first_certificate(&pem, &path.display().to_string())?;
    let opts = client_options(plan)?;
    let deadline = Instant::now() + wait;
    loop {
        let served = opts.tls.as_ref().and_then(|tls| etcdctl_lite::diagnose::presented_certificate(&m.spec.client_url(), tls, Duration::from_secs(1)));
        if served.as_deref() == Some(&want[..]) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(format!("member {} still serves its old certificate after {}s; stopped before the next member", m.spec.name, wait.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// If `m` leads, hands leadership to a healthy voter (etcd's MoveLeader) and waits until the
/// cluster follows it, so that stopping `m` causes no election. Returns the new leader's name.
pub(crate) fn hand_off_leadership(plan: &Plan, m: &MemberPlan, wait: Duration) -> Result<Option<String>> {
    let v = verdict(plan)?;
    let is_leader = |x: &etcdctl_lite::quorum::MemberVerdict| x.role == QRole::Leader && x.state == MemberState::Healthy;
    if !v.members.iter().any(|x| is_leader(x) && (x.name == m.spec.name || x.endpoint == m.spec.client_url())) {
        return Ok(None);
    }
    let Some(target) = v
        .members
        .iter()
        .find(|x| x.name != m.spec.name && x.role == QRole::Follower && x.state == MemberState::Healthy)
        .and_then(|x| u64::from_str_radix(&x.id, 16).ok().map(|id| (id, x.name.clone())))
    else {
        return Ok(None); // a single member, or no healthy follower: nothing to hand over to
    };
    let opts = client_options(plan)?;
    let rt = runtime()?;
    let deadline = Instant::now() + wait;
    rt.block_on(etcdctl_lite::ops::move_leader(&opts, target.0))
        .map_err(|source| BootError::Etcd { what: format!("member {}: moving leadership to {}", m.spec.name, target.1), source })?;
    loop {
        let now = verdict(plan)?;
        if now.state == ClusterState::Healthy && now.members.iter().any(|x| x.name == target.1 && x.role == QRole::Leader) {
            return Ok(Some(target.1));
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(format!("member {}: leadership did not move to {} within {}s ({})", m.spec.name, target.1, wait.as_secs(), now.summary)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A restart with an etcd older than the member runs would fail on its data dir (after an
/// `upgrade`, the spec may still name the old binary): refused before the member is stopped.
fn refuse_downgrade(plan: &Plan, m: &MemberPlan) -> Result<()> {
    let out = run_on(m, &format!("{} --version 2>/dev/null\n", crate::plan::sh_quote(&m.binary)))?;
    let Some(binary) = crate::versions::etcd_version_output(&out.stdout) else { return Ok(()) };
    let opts = client_options(plan)?.with_endpoints(vec![m.spec.client_url()]);
    let running = runtime()?
        .block_on(etcdctl_lite::ops::status(&opts))
        .into_iter()
        .find_map(|s| s.result.ok())
        .and_then(|s| crate::versions::Version::parse(&s.version));
    match running {
        Some(r) if binary < r => Err(BootError::Precondition { what: format!("restart {}", m.spec.name), reason: format!(
            "member {} runs etcd {r}, but {} is etcd {binary}: restarting would downgrade it (etcd refuses); set etcd_archive or etcd_binary in the spec to etcd {r} (after `upgrade`, the one it was upgraded to)",
            m.spec.name, m.binary
        )}),
        _ => Ok(()),
    }
}

/// Restarts one member without an election: leadership handed off first, then stop and start,
/// then a HEALTHY verdict before returning.
pub(crate) fn restart_member(plan: &Plan, m: &MemberPlan, wait: Duration, progress: &Progress) -> Result<()> {
    refuse_downgrade(plan, m)?;
    if let Some(to) = hand_off_leadership(plan, m, wait)? {
        progress.step(&format!("leader {}", m.name()), &format!("leadership moved to {to} before the restart"), None);
    }
    let stop = run_on(m, &scripts::stop(m, None))?;
    if !stop.ok() {
        return Err(host_err(m, "stopping etcd", &stop));
    }
    let start = start_member(m, &plan.token)?;
    if !start.ok() {
        return Err(host_err(m, "starting etcd", &start));
    }
    wait_healthy(plan, wait, &format!("restarting {}", m.spec.name))?;
    Ok(())
}

/// Writes one file (binaries: streamed, not held in a script) on the member's host.
pub(crate) fn put_file(m: &MemberPlan, path: &str, mode: u32, data: &[u8]) -> Result<()> {
    let t = transport::for_member(&m.spec);
    t.put_file(path, mode, data, SCRIPT_LIMIT).map_err(|reason| host_error(m, t.as_ref(), reason))
}

/// Sends the local file `src` to the member's host (streamed: never held in memory), bounded by
/// a minute plus the time for its size at 10 MB/s.
pub(crate) fn put_path(m: &MemberPlan, path: &str, mode: u32, src: &std::path::Path) -> Result<()> {
    let size = std::fs::metadata(src).map(|md| md.len()).unwrap_or(0);
    let limit = SCRIPT_LIMIT + Duration::from_secs(size / 10_000_000);
    let t = transport::for_member(&m.spec);
    t.put_path(path, mode, src, limit).map_err(|reason| host_error(m, t.as_ref(), reason))
}

/// Before an operation's first change: every host in `members` answers, and (when `need_bytes`
/// is not 0) the filesystem of each member's data dir has that much free space. Every problem
/// of every member at once.
pub(crate) fn require_reachable(plan: &Plan, members: &[&MemberPlan], need_bytes: u64, what: &str) -> Result<()> {
    let checks = per_member(plan, |m| {
        if !members.iter().any(|x| x.spec.name == m.spec.name) {
            return Ok(());
        }
        let out = run_on(m, &scripts::free_space(m))?;
        let free = out.value("free_kib").and_then(|v| v.parse::<u64>().ok()).map(|k| k * 1024);
        match free {
            Some(free) if need_bytes > 0 && free < need_bytes => Err(BootError::Host {
                member: m.spec.name.clone(),
                host: m.spec.host.clone(),
                reason: format!("{} free on the filesystem of {}, {} needed", human(free), m.spec.data_dir.display(), human(need_bytes)),
            }),
            _ => Ok(()),
        }
    });
    let problems: Vec<String> = checks.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(BootError::Precondition { what: what.to_string(), reason: problems.join("; ") })
}

fn human(bytes: u64) -> String {
    etcdctl_lite::model::human_bytes(bytes as i64)
}
