//! Live-cluster primitives shared by the operations in [`crate::ops`], as methods of the
//! operation's [`Ctx`]: running a script on a member, delivering files, starting and restarting a
//! member (leadership handed off first), the quorum verdict, the bounded waits for HEALTHY, and
//! the checks made before a first change. Hosts are reached only through the context's
//! transports, etcd only through its [`crate::run::etcd_view::EtcdView`], so that every operation
//! runs on fakes in unit tests. Nothing here decides what an operation does.

use crate::error::{BootError, Result};
use crate::host::scripts;
use crate::host::transport::{ScriptOutput, TransportError};
use crate::plan::{MemberPlan, Plan};
use crate::run::context::Ctx;
use crate::spec::versions::Version;
use etcdctl_lite::quorum::{ClusterState, MemberState, Role as QRole, Verdict};
use pki::cluster::Role;
use std::time::{Duration, Instant};

/// Bound on one script or delivery on a member's host.
pub(crate) const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` for every member in parallel; results in member order.
pub(crate) fn per_member<T: Send>(plan: &Plan, f: impl Fn(&MemberPlan) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = plan.members.iter().map(|m| s.spawn(|| f(m))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// The member's own files from the operator's PKI directory (those `keep` selects).
pub(crate) fn own_files(m: &MemberPlan, keep: impl Fn(&crate::plan::Delivery) -> bool) -> Result<Vec<(String, u32, Vec<u8>)>> {
    m.read_files(keep).map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })
}

pub(crate) fn host_err(m: &MemberPlan, what: &str, out: &ScriptOutput) -> BootError {
    BootError::on_host(&m.spec.name, &m.spec.host)(TransportError::failed(what, out))
}

pub(crate) use crate::run::records::{load_record, save_record};

/// The spec's certificates in the operator's PKI directory: the ones still right kept, missing
/// ones issued. pki's refusals advise its own `--force`, which `etcd-bootstrap` has not: they
/// become a refusal that says what to do here.
pub(crate) fn issue_certificates(plan: &Plan, what: &str) -> Result<pki::bundle::IssueReport> {
    let refuse = |reason: String| BootError::Precondition { what: what.to_string(), reason };
    match pki::bundle::issue_into(&plan.issue) {
        Ok(r) => Ok(r),
        Err(pki::PkiError::Exists { path, .. }) => Err(refuse(format!(
            "{} exists with other contents than the spec's PKI gives it; move it aside if nothing needs it, then run the command again",
            path.display()
        ))),
        Err(pki::PkiError::Refused(msg)) => {
            let kept: Vec<&str> = msg.lines().filter(|l| !l.contains("--force")).collect();
            Err(refuse(format!(
                "{}\nMove the files listed aside and run the command again: missing certificates are issued (new keys; the CA is kept)",
                kept.join("\n").trim_end_matches(['.', ';', ' '])
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The operator's CRL (empty until something is revoked), made once; etcd needs the file.
pub(crate) fn ensure_crl(plan: &Plan) -> Result<()> {
    let (_, crl) = pki::crl::paths(&plan.issue.dir);
    // a PKI from before the DER copy gets one now (etcd 3.6+ reads DER only)
    if !crl.exists() || !pki::crl::der_path(&crl).exists() {
        let pair = plan.pki().ca();
        let ca = pki::ca::Ca::load_files(&pair.cert, &pair.key)?;
        pki::crl::refresh(&plan.issue.dir, &ca)?;
    }
    Ok(())
}

impl Ctx<'_> {
    fn host_error(&self, m: &MemberPlan, source: TransportError) -> BootError {
        BootError::on_host(&m.spec.name, &self.transport(m).describe())(source)
    }

    pub(crate) fn run_on(&self, m: &MemberPlan, script: &str) -> Result<ScriptOutput> {
        self.transport(m).run(script, SCRIPT_LIMIT).map_err(|e| self.host_error(m, e))
    }

    /// [`Self::run_on`] for a script that may run longer than a minute (bounded by `limit`).
    pub(crate) fn run_on_within(&self, m: &MemberPlan, script: &str, limit: Duration) -> Result<ScriptOutput> {
        self.transport(m).run(script, limit).map_err(|e| self.host_error(m, e))
    }

    /// Delivers `(path, mode, bytes)` files to the member's host; returns how many changed.
    pub(crate) fn deliver(&self, m: &MemberPlan, files: &[(String, u32, Vec<u8>)]) -> Result<usize> {
        self.transport(m).deliver(files, SCRIPT_LIMIT).map_err(|e| self.host_error(m, e))
    }

    /// Writes one file (binaries: streamed, not held in a script) on the member's host.
    pub(crate) fn put_file(&self, m: &MemberPlan, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.transport(m).put_file(path, mode, data, SCRIPT_LIMIT).map_err(|e| self.host_error(m, e))
    }

    /// Sends the local file `src` to the member's host (streamed: never held in memory), bounded
    /// by a minute plus the time for its size at 10 MB/s.
    pub(crate) fn put_path(&self, m: &MemberPlan, path: &str, mode: u32, src: &std::path::Path, sent: &std::sync::atomic::AtomicU64) -> Result<()> {
        let size = std::fs::metadata(src).map(|md| md.len()).unwrap_or(0);
        let limit = SCRIPT_LIMIT + Duration::from_secs(size / 10_000_000);
        self.transport(m).put_path(path, mode, src, limit, sent).map_err(|e| self.host_error(m, e))
    }

    /// Starts a member: under systemd its unit file is delivered first, as a file (never through
    /// a script's text), then the start script runs.
    pub(crate) fn start_member(&self, m: &MemberPlan) -> Result<ScriptOutput> {
        self.start_member_waiting(m, true)
    }

    /// [`Self::start_member`]; `wait_ready` false: a systemd unit's start does not wait for
    /// etcd's READY (see [`scripts::start_waiting`]).
    pub(crate) fn start_member_waiting(&self, m: &MemberPlan, wait_ready: bool) -> Result<ScriptOutput> {
        if let Some(unit) = scripts::unit_delivery(m) {
            self.deliver(m, &[unit])?;
        }
        let out = self.run_on(m, &scripts::start_waiting(m, &self.plan.token, wait_ready));
        self.etcd.forget_connections_to(&m.spec.client_url());
        out
    }

    /// Runs `script`, one of the stop scripts, for `m`, after forgetting the connection kept to
    /// it: etcd's graceful stop would wait (about a second) for it to close.
    pub(crate) fn stop_member(&self, m: &MemberPlan, script: &str) -> Result<ScriptOutput> {
        self.etcd.forget_connections_to(&m.spec.client_url());
        self.run_on(m, script)
    }

    /// One quorum verdict over the plan's members.
    pub fn verdict(&self) -> Result<Verdict> {
        self.etcd.verdict()
    }

    /// Polls every endpoint's health every 25 ms until all answer or `deadline` passes; cheaper
    /// than a full verdict per poll.
    pub(crate) fn wait_all_healthy(&self, deadline: Instant) -> Result<()> {
        while Instant::now() < deadline {
            if self.etcd.all_healthy()? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    /// Waits (bounded by `wait`) for a HEALTHY verdict; the error says what `after` was and that
    /// the operation resumes when run again.
    pub(crate) fn wait_healthy(&self, wait: Duration, after: &str) -> Result<Verdict> {
        self.wait_until(
            wait,
            |v| v.state == ClusterState::Healthy,
            |v| {
                format!(
                    "after {after}: not HEALTHY within {}s ({}: {}); stopped here, and running the same command again resumes",
                    wait.as_secs(),
                    v.state.word(),
                    v.summary
                )
            },
        )
    }

    /// [`Ctx::wait_healthy`] after a change made member by member with each gated on its own
    /// health: the operation is not finished until the cluster is HEALTHY; said as `verify:`.
    pub(crate) fn verify_healthy(&self, wait: Duration, after: &str) -> Result<()> {
        let v = self.wait_healthy(wait, after)?;
        self.progress.step("verify", &format!("{}: {}", v.state.word(), v.summary), None);
        Ok(())
    }

    /// Waits (bounded by `wait`) until `m` alone answers etcd's health check: for a change to
    /// that member only, where a verdict over every member after each would cost n × n probes.
    pub(crate) fn wait_member_healthy(&self, m: &MemberPlan, wait: Duration, after: &str) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let why = match self.etcd.member_health(&m.spec.client_url()) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() > deadline {
                return Err(BootError::NotHealthy(format!(
                    "after {after}: member {} not healthy within {}s ({why}); stopped here, and running the same command again resumes",
                    m.spec.name,
                    wait.as_secs()
                )));
            }
            // one endpoint, one request: polled often (a member restarted serves ~100 ms later)
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls the verdict (bounded by `wait`) until `accept` takes it; past the bound, `failure`
    /// says why.
    pub(crate) fn wait_until(&self, wait: Duration, accept: impl Fn(&Verdict) -> bool, failure: impl Fn(&Verdict) -> String) -> Result<Verdict> {
        let deadline = Instant::now() + wait;
        loop {
            let v = self.verdict()?;
            if accept(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(BootError::NotHealthy(failure(&v)));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Refuses unless the cluster is HEALTHY now.
    /// Quorum, at least: for a run that resumes work on a member the last run left half-done
    /// (DEGRADED by that member is what it is there to fix).
    pub(crate) fn require_quorum(&self, what: &str) -> Result<Verdict> {
        let v = self.verdict()?;
        if matches!(v.state, ClusterState::NoQuorum | ClusterState::Unknown) {
            return Err(BootError::Precondition { what: what.to_string(), reason: format!("the cluster is {} ({}); fix it first", v.state.word(), v.summary) });
        }
        Ok(v)
    }

    pub(crate) fn require_healthy(&self, what: &str) -> Result<Verdict> {
        let v = self.verdict()?;
        if v.state != ClusterState::Healthy {
            return Err(BootError::Precondition { what: what.to_string(), reason: format!("the cluster is {} ({}); fix it first", v.state.word(), v.summary) });
        }
        Ok(v)
    }

    /// Waits (bounded) until the member's TLS handshake presents its server certificate from the
    /// operator's PKI directory: etcd re-reads its certificate on every handshake.
    pub(crate) fn wait_serves_own_certificate(&self, m: &MemberPlan, wait: Duration) -> Result<()> {
        let path = self.plan.pki().leaf(&Role::Server(m.spec.name.clone())).cert;
        let pem = std::fs::read(&path).map_err(crate::error::io("read", &path))?;
        let want = pki::pemfile::first_certificate(&pem, &path.display().to_string())?;
        self.wait_serves(m, &want, wait)
    }

    /// Waits (bounded) until the member's TLS handshake presents `want` (DER).
    pub(crate) fn wait_serves(&self, m: &MemberPlan, want: &[u8], wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            if self.etcd.served_certificate(&m.spec.client_url()).as_deref() == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BootError::NotHealthy(format!(
                    "member {} still serves its old certificate after {}s; stopped before the next member",
                    m.spec.name,
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// If `m` leads, hands leadership to a healthy voter (etcd's MoveLeader; the one furthest
    /// along) and waits until the cluster follows it, so that stopping `m` causes no election.
    /// Returns the new leader.
    pub(crate) fn hand_off_leadership(&self, m: &MemberPlan, wait: Duration) -> Result<Option<String>> {
        // one member's status, not a verdict over all of them, when it says it follows
        if self.etcd.leads(&m.spec.client_url()) == Some(false) {
            return Ok(None);
        }
        let v = self.verdict()?;
        let is_leader = |x: &etcdctl_lite::quorum::MemberVerdict| x.role == QRole::Leader && x.state == MemberState::Healthy;
        if !v.members.iter().any(|x| is_leader(x) && (x.name == m.spec.name || x.endpoint == m.spec.client_url())) {
            return Ok(None);
        }
        // rolling operations go in the plan's order: a member before `m` is done, and leading
        // it needs no second hand-off. Among those (else all), the follower furthest along (the
        // first of equals): a transfer waits until its target has the leader's log, and the
        // leader drops the proposals it gets meanwhile.
        let position = |name: &str| self.plan.members.iter().position(|x| x.spec.name == name);
        let done = |x: &etcdctl_lite::quorum::MemberVerdict| position(&x.name).is_some_and(|i| Some(i) < position(&m.spec.name));
        let followers = v.members.iter().filter(|x| x.name != m.spec.name && x.role == QRole::Follower && x.state == MemberState::Healthy);
        let furthest = followers.fold(None::<&etcdctl_lite::quorum::MemberVerdict>, |best, x| match best {
            Some(b) if (done(b), b.applied_index) >= (done(x), x.applied_index) => Some(b),
            _ => Some(x),
        });
        let Some((id, name)) = furthest.and_then(|x| u64::from_str_radix(&x.id, 16).ok().map(|id| (id, x.name.clone()))) else {
            return Ok(None); // a single member, or no healthy follower: nothing to hand over to
        };
        self.etcd.move_leader(id)?;
        self.wait_until(
            wait,
            |now| now.state == ClusterState::Healthy && now.members.iter().any(|x| x.name == name && x.role == QRole::Leader),
            |now| format!("member {}: leadership did not move to {name} within {}s ({})", m.spec.name, wait.as_secs(), now.summary),
        )?;
        Ok(Some(name))
    }

    /// A restart with an etcd older than the member runs would fail on its data dir (after an
    /// `upgrade`, the spec may still name the old binary): refused before the member is stopped,
    /// unless etcd's downgrade to that binary's minor is enabled. Checked once per run for each
    /// member and binary.
    pub(crate) fn refuse_downgrade(&self, m: &MemberPlan) -> Result<()> {
        if self.binary_checked(m) {
            return Ok(());
        }
        let binary = self.binary_version(m)?;
        self.judge_binary(m, binary)
    }

    /// [`Ctx::refuse_downgrade`] for `members` at once (their `etcd --version` in parallel): for
    /// an operation that restarts each of them, before its first change. Every refusal, in
    /// member order.
    pub(crate) fn downgrade_refusals(&self, members: &[&MemberPlan]) -> Vec<BootError> {
        let wanted = |m: &MemberPlan| members.iter().any(|x| x.spec.name == m.spec.name && x.binary == m.binary);
        let binaries = per_member(self.plan, |m| (wanted(m) && !self.binary_checked(m)).then(|| self.binary_version(m)));
        let checks = self.plan.members.iter().zip(binaries).filter_map(|(m, b)| Some(b?.and_then(|b| self.judge_binary(m, b))));
        checks.filter_map(|r| r.err()).collect()
    }

    /// The first of [`Ctx::downgrade_refusals`], if any.
    pub(crate) fn refuse_downgrades(&self, members: &[&MemberPlan]) -> Result<()> {
        self.downgrade_refusals(members).into_iter().next().map_or(Ok(()), Err)
    }

    fn binary_checked(&self, m: &MemberPlan) -> bool {
        self.binaries_checked.lock().is_ok_and(|c| c.contains(&(m.spec.name.clone(), m.binary.clone())))
    }

    /// The etcd version of the member's binary on its host (`None`: it did not say).
    fn binary_version(&self, m: &MemberPlan) -> Result<Option<Version>> {
        let out = self.run_on(m, &crate::host::scripts::etcd_version(&m.binary))?;
        Ok(crate::spec::versions::etcd_version_output(&out.stdout))
    }

    /// Refuses `binary` for `m` when it is older than the member runs and no downgrade to its
    /// minor is enabled; else remembers the pair as checked.
    fn judge_binary(&self, m: &MemberPlan, binary: Option<Version>) -> Result<()> {
        let Some(binary) = binary else { return Ok(()) };
        // etcd's downgrade, enabled to the binary's minor, is what makes an older minor start
        let downgrading = self
            .etcd
            .storage_of(&m.spec.client_url())
            .and_then(|s| s.downgrade)
            .is_some_and(|(target, enabled)| enabled && target.starts_with(&format!("{}.{}.", binary.0, binary.1)));
        match self.etcd.version_of(&m.spec.client_url()) {
            Some(r) if binary < r && !downgrading => Err(BootError::Precondition {
                what: format!("restart {}", m.spec.name),
                reason: format!(
                    "member {} runs etcd {r}, but {} is etcd {binary}: restarting would downgrade it (etcd refuses); set etcd_archive or etcd_binary in the spec to etcd {r} (after `upgrade`, the one it was upgraded to)",
                    m.spec.name, m.binary
                ),
            }),
            _ => {
                if let Ok(mut checked) = self.binaries_checked.lock() {
                    checked.insert((m.spec.name.clone(), m.binary.clone()));
                }
                Ok(())
            }
        }
    }

    /// Restarts one member without an election: leadership handed off first, then stop and
    /// start, then the member's own health (polled every 20 ms, one endpoint) and a HEALTHY
    /// verdict before returning: the next member's stop needs every other one healthy.
    pub(crate) fn restart_member(&self, m: &MemberPlan, wait: Duration) -> Result<()> {
        // the verdict after each restart reuses the connections to the other members
        self.etcd.keep_connections();
        self.refuse_downgrade(m)?;
        if let Some(to) = self.hand_off_leadership(m, wait)? {
            self.progress.step(&format!("leader {}", m.name()), &format!("leadership moved to {to} before the restart"), None);
        }
        let stop = self.stop_member(m, &scripts::stop(m, None))?;
        if !stop.ok() {
            return Err(host_err(m, "stopping etcd", &stop));
        }
        let start = self.start_member(m)?;
        if !start.ok() {
            return Err(host_err(m, "starting etcd", &start));
        }
        // its own health first, polled cheaply; then the whole cluster once
        let after = format!("restarting {}", m.spec.name);
        self.wait_member_healthy(m, wait, &after)?;
        self.wait_healthy(wait, &after)?;
        Ok(())
    }

    /// Runs `f` (a stop) for every member in parallel, the leader last and alone. Stopped together
    /// with its followers, a leader hands leadership to one of them on shutdown and waits for a
    /// transfer that cannot finish (7-10 s); stopped after them it has no peer and exits at once.
    /// Results in member order.
    pub(crate) fn leader_last<T: Send>(&self, f: impl Fn(&MemberPlan) -> T + Sync) -> Vec<T> {
        let leader = self.verdict().ok().and_then(|v| v.members.into_iter().find(|x| x.role == QRole::Leader)).map(|x| x.name);
        let is_leader = |m: &MemberPlan| Some(&m.spec.name) == leader.as_ref();
        let mut results: Vec<Option<T>> = std::thread::scope(|s| {
            let handles: Vec<_> = self.plan.members.iter().map(|m| (!is_leader(m)).then(|| s.spawn(|| f(m)))).collect();
            handles.into_iter().map(|h| h.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))).collect()
        });
        for (m, r) in self.plan.members.iter().zip(results.iter_mut()) {
            if r.is_none() {
                *r = Some(f(m));
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Before an operation's first change: every host in `members` answers, and (when
    /// `need_bytes` is not 0) the filesystem of each member's data dir has that much free space.
    /// Every problem of every member at once.
    pub(crate) fn require_reachable(&self, members: &[&MemberPlan], need_bytes: u64, what: &str) -> Result<()> {
        let checks = per_member(self.plan, |m| {
            if !members.iter().any(|x| x.spec.name == m.spec.name) {
                return Ok(());
            }
            let out = self.run_on(m, &scripts::free_space(m))?;
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
}

fn human(bytes: u64) -> String {
    etcdctl_lite::model::human_bytes(bytes as i64)
}
