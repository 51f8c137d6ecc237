//! `up`: certificates → preflight on every member → etcd delivered (with `etcd_archive`) → each
//! member's own files → start what is not running → a bounded wait for HEALTHY → kubeadm,
//! control-plane and HAProxy outputs. Every step is idempotent, so `up` after an interruption at
//! any step finishes the job, and `up` on a healthy cluster changes nothing.

use crate::error::{BootError, Result};
use crate::host::delivery::EtcdRelease;
use crate::host::preflight::{Action, judge};
use crate::host::scripts;
use crate::kube::kubeadm::ApiVersion;
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::run::context::Ctx;
use crate::run::live::{ensure_crl, host_err, own_files, per_member};
use etcdctl_lite::quorum::{ClusterState, MemberState, Verdict};
use pki::cluster::Role;
use std::time::{Duration, Instant};

pub struct UpOptions {
    /// Bound on waiting for quorum after starting.
    pub wait: Duration,
    /// `--kubeadm-api`; `None`: the one chosen before, else the newest kubeadm reads.
    pub api: Option<ApiVersion>,
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub issued: usize,
    pub kept: usize,
    pub files_written: usize,
    pub started: Vec<String>,
    pub verdict: Verdict,
    pub outputs: Vec<crate::kube::outputs::Written>,
}

pub fn up(ctx: &Ctx, opts: &UpOptions) -> Result<UpReport> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    if plan.loaded.spec.adopted.is_some() {
        return up_in_place(ctx, opts.wait);
    }
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    // during a CA rotation the members hold the files of its current stage: they are started
    // with those, and neither certificates nor control-plane outputs are touched
    let rotating = ctx.ca_rotation_under_way();
    for w in &plan.loaded.warnings {
        progress.step("spec", &format!("warning: {w}"), None);
    }
    // before anything starts: a config kubeadm could not read is refused now
    let api = crate::kube::outputs::choose_api(plan, opts.api)?;
    // and an etcd archive that is not what the spec says, before any host is contacted
    let release = prepare_release(plan, progress)?;
    let (issued, kept) = if rotating {
        progress.step("certificates", "a CA rotation is under way: members start with the files of its current stage; nothing issued", None);
        check_certificates(plan)?;
        (0, 0)
    } else {
        certificates(plan, progress)?
    };
    let actions = preflight(ctx, release.is_some(), progress)?;
    ctx.changing("deliver and start")?;
    if let Some(release) = &release {
        deliver_etcd(ctx, release, progress)?;
    }
    let files_written = deliver_own_files(ctx, progress)?;
    let started = start_all(ctx, &actions, progress)?;
    let mut saw_quorum = false;
    let verdict = match wait_for_quorum(ctx, opts.wait, &mut saw_quorum, progress) {
        Ok(v) => v,
        Err(e @ BootError::NotHealthy(_)) => return Err(never_formed_or(ctx, saw_quorum, opts.wait, e)),
        Err(e) => return Err(e),
    };
    if rotating {
        progress.step("outputs", "left as the CA rotation's last stop wrote them", None);
        return Ok(UpReport { issued, kept, files_written, started, verdict, outputs: vec![] });
    }
    let t = Instant::now();
    let outputs = crate::kube::outputs::write(plan, api)?;
    let changed = outputs.iter().filter(|w| w.outcome != pki::files::Outcome::Unchanged).count();
    progress.step("outputs", &format!("{changed} written, {} unchanged in {}", outputs.len() - changed, plan.loaded.output_dir.display()), Some(t.elapsed()));
    Ok(UpReport { issued, kept, files_written, started, verdict, outputs })
}

/// Certificates (valid ones kept byte for byte), the CRL, and SAN coverage of every address.
fn certificates(plan: &Plan, progress: &Progress) -> Result<(usize, usize)> {
    let t = Instant::now();
    let issued = crate::run::live::issue_certificates(plan, "issue the certificates")?;
    progress.step("certificates", &format!("{} issued, {} kept in {}", issued.issued, issued.kept, plan.issue.dir.display()), Some(t.elapsed()));
    ensure_crl(plan)?;
    check_certificates(plan)?;
    Ok((issued.issued, issued.kept))
}

/// Each member's certificates must cover the URLs it advertises.
fn check_certificates(plan: &Plan) -> Result<()> {
    let pki = plan.pki();
    let mut problems = Vec::new();
    for m in &plan.members {
        for role in [Role::Server(m.spec.name.clone()), Role::Peer(m.spec.name.clone())] {
            let path = pki.leaf(&role).cert;
            let text = std::fs::read(&path).map_err(crate::error::io("read", &path))?;
            let der = pki::pemfile::first_certificate(&text, &path.display().to_string())?;
            let info = pki::inspect::cert_info(&der, &path.display().to_string())?;
            if !info.typed_sans.contains(&format!("IP:{}", m.spec.address)) {
                problems.push(format!("{} does not cover {} (SANs: {})", path.display(), m.spec.address, info.typed_sans.join(", ")));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// Preflight on every member at once; every problem of every member is listed, and nothing is
/// delivered or started when there is one.
fn preflight(ctx: &Ctx, delivering_etcd: bool, progress: &Progress) -> Result<Vec<Action>> {
    let plan = ctx.plan;
    let facts = per_member(plan, |m| {
        let t = Instant::now();
        let others: Vec<String> = plan.members.iter().filter(|o| o.spec.name != m.spec.name).map(|o| o.spec.address.to_string()).collect();
        ctx.run_on(m, &scripts::preflight(m, &others)).map(|out| (out, t.elapsed()))
    });
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    let mut versions = EtcdVersions::default();
    for (m, f) in plan.members.iter().zip(facts) {
        let (out, took) = match f {
            Ok(v) => v,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let (action, version) = match judge(m, &plan.token, &out, delivering_etcd) {
            Ok(v) => v,
            Err(p) => {
                problems.extend(p);
                continue;
            }
        };
        // a delivered etcd is checked once it is on the host
        if !delivering_etcd {
            versions.check(plan, m, version.as_deref());
        }
        let what = match action {
            Action::Start => "ready to start",
            Action::Restart => "its data dir is this cluster's: will start it again",
            Action::Running => "already running",
        };
        let host = ctx.transport(m).describe();
        progress.step(&format!("preflight {}", m.name()), &format!("{host} etcd {}, {what}", version.unwrap_or_else(|| "?".into())), Some(took));
        actions.push(action);
    }
    problems.extend(versions.report(progress));
    if problems.is_empty() { Ok(actions) } else { Err(BootError::Preflight(problems)) }
}

/// Each member gets its own files (and only those); returns how many were written.
fn deliver_own_files(ctx: &Ctx, progress: &Progress) -> Result<usize> {
    let plan = ctx.plan;
    let deliveries = per_member(plan, |m| {
        let t = Instant::now();
        let written = ctx.deliver(m, &own_files(m, |_| true)?)?;
        Ok::<_, BootError>((written, t.elapsed()))
    });
    let mut files_written = 0;
    for (m, d) in plan.members.iter().zip(deliveries) {
        let (written, took) = d?;
        files_written += written;
        progress.step(&format!("files {}", m.name()), &format!("{written} written, {} unchanged", m.files.len() - written), Some(took));
    }
    Ok(files_written)
}

/// `up` on an adopted cluster: every member that is not running started as it was found (its
/// unit, its static pod, or its command line, environment and working directory), then HEALTHY.
/// Nothing is issued, delivered or written.
fn up_in_place(ctx: &Ctx, wait: Duration) -> Result<UpReport> {
    ctx.require_reachable(&ctx.plan.members.iter().collect::<Vec<_>>(), 0, "up")?;
    ctx.changing("start")?;
    let started = start_all(ctx, &[], ctx.progress)?;
    let verdict = wait_for_quorum(ctx, wait, &mut false, ctx.progress)?;
    Ok(UpReport { issued: 0, kept: 0, files_written: 0, started, verdict, outputs: vec![] })
}

/// How long a new member is given to serve its peer port before the next one starts anyway:
/// etcd's own wait for a peer that is still bootstrapping.
const PEER_SERVES_WITHIN: Duration = Duration::from_secs(1);

type Started = Result<Option<(String, Duration)>>;

/// Starts what is not running: members that restart together, a new cluster's members in turn
/// (a static bootstrap needs them all, and they form once a majority is up); every member that
/// failed is listed.
fn start_all(ctx: &Ctx, actions: &[Action], progress: &Progress) -> Result<Vec<String>> {
    let plan = ctx.plan;
    let action = |m: &MemberPlan| plan.members.iter().position(|x| x.spec.name == m.spec.name).and_then(|i| actions.get(i));
    let in_turn = actions.iter().filter(|a| **a == Action::Start).count() > 1;
    let mut starts: Vec<Option<Started>> = per_member(plan, |m| match action(m) {
        Some(Action::Running) => Some(Ok(None)),
        Some(Action::Start) if in_turn => None,
        _ => Some(start_one(ctx, m, true)),
    });
    start_in_turn(ctx, &mut starts);
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for (m, s) in plan.members.iter().zip(starts.into_iter().flatten()) {
        match s {
            Ok(Some((pid, took))) => {
                progress.step(&format!("start {}", m.name()), &format!("started ({} {pid})", if pid == "unit" { "systemd" } else { "pid" }), Some(took));
                started.push(m.spec.name.clone());
            }
            Ok(None) => progress.step(&format!("start {}", m.name()), "already running; not restarted", None),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() { Ok(started) } else { Err(BootError::Members { what: "starting etcd".into(), failures: failed }) }
}

/// A new cluster's members (the slots still empty) start one after another, each once the one
/// before serves its peer port. Started together they stall: a new member first asks every
/// peer whether the cluster exists, one at a time, waiting up to a second on each peer that
/// accepts TCP but is still bootstrapping itself (6.4 s seen with seven). After a member that
/// does not serve in time (its peer port not reachable from here), the rest start at once.
fn start_in_turn(ctx: &Ctx, starts: &mut [Option<Started>]) {
    let mut waiting = true;
    for (m, slot) in ctx.plan.members.iter().zip(starts.iter_mut()).filter(|(_, s)| s.is_none()) {
        let started = start_one(ctx, m, false);
        if waiting && matches!(started, Ok(Some(_))) {
            waiting = ctx.etcd.peer_serves(&m.spec.peer_url(), PEER_SERVES_WITHIN);
        }
        *slot = Some(started);
    }
}

fn start_one(ctx: &Ctx, m: &MemberPlan, wait_ready: bool) -> Started {
    let t = Instant::now();
    let out = ctx.start_member_waiting(m, wait_ready)?;
    if !out.ok() {
        return Err(host_err(m, "starting etcd", &out));
    }
    Ok(out.value("started").map(|p| (p, t.elapsed())))
}

/// Waits (bounded) for HEALTHY; on timeout the error carries the log tail of each unhealthy
/// member. A verdict is taken at least every 2 s, and `saw_quorum` says whether one had quorum.
fn wait_for_quorum(ctx: &Ctx, wait: Duration, saw_quorum: &mut bool, progress: &Progress) -> Result<Verdict> {
    let plan = ctx.plan;
    let t = Instant::now();
    let deadline = Instant::now() + wait;
    loop {
        ctx.wait_all_healthy(deadline.min(Instant::now() + Duration::from_secs(2)))?;
        let v = ctx.verdict()?;
        *saw_quorum |= matches!(v.state, ClusterState::Healthy | ClusterState::Degraded | ClusterState::ReadOnly);
        if v.state == ClusterState::Healthy {
            progress.step("quorum", &format!("{}: {}", v.state.word(), v.summary), Some(t.elapsed()));
            return Ok(v);
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = plan
                .members
                .iter()
                .filter(|m| v.members.iter().any(|x| x.name == m.spec.name && x.state != MemberState::Healthy))
                .map(|m| {
                    let tail = ctx.run_on(m, &scripts::log_tail(m, 8)).map(|o| o.stdout).unwrap_or_default();
                    format!("--- {} log:\n{}", m.spec.name, tail.trim_end())
                })
                .collect();
            return Err(BootError::NotHealthy(format!("not HEALTHY after {}s: {} — {}\n{}", wait.as_secs(), v.state.word(), v.summary, tails.join("\n"))));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `up` gave up waiting. When the members never formed a cluster (no verdict had quorum, and
/// no member's log shows a leader elected since its data dir was made), nothing lasting was
/// created: they are stopped, the journal keeps nothing under way (so `down --purge` may clean
/// up), and the error names the likely causes from their logs and how to start over. Otherwise
/// `failed` stands, and the operation stays unfinished.
fn never_formed_or(ctx: &Ctx, saw_quorum: bool, wait: Duration, failed: BootError) -> BootError {
    use crate::formation::{MemberFacts, likely_causes, never_formed};
    let plan = ctx.plan;
    if saw_quorum {
        return failed;
    }
    let facts: Vec<Option<MemberFacts>> = per_member(plan, |m| {
        let out = ctx.run_on(m, &scripts::formation(m)).ok()?;
        let log = ctx.run_on(m, &scripts::log_tail(m, 200)).map(|o| o.stdout).unwrap_or_default();
        let elected = out.value("elected").and_then(|n| n.trim().parse().ok());
        Some(MemberFacts { name: m.spec.name.clone(), running: out.value("running").is_some(), elected, log })
    });
    if !never_formed(saw_quorum, &facts) {
        return failed;
    }
    let stops = per_member(plan, |m| ctx.stop_member(m, &scripts::stop(m, None)));
    let not_stopped: Vec<String> = plan.members.iter().zip(&stops).filter(|(_, r)| r.is_err()).map(|(m, _)| m.spec.name.clone()).collect();
    if !not_stopped.is_empty() {
        return failed;
    }
    if let Err(e) = ctx.nothing_lasting() {
        return e;
    }
    let facts: Vec<MemberFacts> = facts.into_iter().flatten().collect();
    BootError::NeverFormed {
        wait: wait.as_secs(),
        members: plan.members.iter().map(|m| m.spec.name.clone()).collect(),
        causes: likely_causes(&facts),
        start_over: format!("{}, fix the spec, then {}", crate::run::context::command_for(plan, "down --purge"), crate::run::context::command_for(plan, "up")),
    }
}

/// The spec's `etcd_archive`, verified on this machine (`None` when the members bring their own).
fn prepare_release(plan: &Plan, progress: &Progress) -> Result<Option<EtcdRelease>> {
    let spec = &plan.loaded.spec;
    let Some(archive) = &spec.etcd_archive else { return Ok(None) };
    let t = Instant::now();
    let base = std::path::Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let release = crate::host::delivery::prepare(archive, spec.etcd_sha256.as_deref(), base, &plan.loaded.output_dir)?;
    progress.step("etcd", &format!("etcd {} from {archive}: checksum verified", release.version), Some(t.elapsed()));
    Ok(Some(release))
}

/// Each member gets the binaries it lacks (identical ones are not sent again); then the
/// version it runs must be the release's, and pass kubeadm's minimum.
fn deliver_etcd(ctx: &Ctx, release: &EtcdRelease, progress: &Progress) -> Result<()> {
    let plan = ctx.plan;
    use crate::host::delivery::{probe_script, to_send};
    let results = per_member(plan, |m| {
        let t = Instant::now();
        let probe = ctx.run_on(m, &probe_script(&m.spec.bin_dir))?;
        let send = to_send(release, &m.spec.bin_dir, &probe.stdout);
        for (path, mode, data) in &send {
            ctx.put_file(m, path, *mode, data)?;
        }
        let v = ctx.run_on(m, &crate::host::scripts::etcd_version(&m.binary))?;
        let said = v.stdout.lines().find_map(|l| l.strip_prefix("etcd Version:")).unwrap_or("").trim().to_string();
        Ok::<_, BootError>((send.len(), said, t.elapsed()))
    });
    let mut problems = Vec::new();
    let mut versions = EtcdVersions::default();
    for (m, r) in plan.members.iter().zip(results) {
        let (sent, version, took) = r?;
        if crate::spec::versions::Version::parse(&version) != Some(release.version) {
            problems.push(format!("member {}: {} reports etcd {version:?}, not {} from {}", m.spec.name, m.binary, release.version, release.source));
            continue;
        }
        versions.check(plan, m, Some(&version));
        progress.step(
            &format!("etcd {}", m.name()),
            &format!("{} binaries sent, {} already there; runs etcd {version}", sent, release.binaries.len() - sent),
            Some(took),
        );
    }
    problems.extend(versions.report(progress));
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// kubeadm's ExternalEtcdVersion check, ahead of kubeadm, over every member: a member's etcd
/// below the minimum of the spec's Kubernetes version is refused (a warning with
/// `kubernetes.allow_old_etcd`). A finding is said once, with the members it concerns.
#[derive(Default)]
struct EtcdVersions {
    warnings: std::collections::BTreeMap<String, Vec<String>>,
    problems: std::collections::BTreeMap<String, Vec<String>>,
}

impl EtcdVersions {
    fn check(&mut self, plan: &Plan, m: &MemberPlan, version: Option<&str>) {
        let who = m.spec.name.clone();
        let Some(found) = version.and_then(crate::spec::versions::Version::parse) else {
            let p = format!("cannot tell the etcd version ({:?} --version printed {:?})", m.binary, version.unwrap_or(""));
            self.problems.entry(p).or_default().push(who);
            return;
        };
        let k8s = plan.loaded.typed.kubernetes;
        match crate::spec::versions::check_etcd(k8s, found) {
            Ok(None) => {}
            Ok(Some(note)) => self.warnings.entry(note).or_default().push(who),
            Err(_) if plan.loaded.spec.kubernetes.allow_old_etcd => {
                let min = crate::spec::versions::release_for(k8s).ok().and_then(|r| r.min_etcd).map(|v| v.to_string()).unwrap_or_default();
                let w = format!(
                    "etcd {found} is below kubeadm {}.{}'s minimum {min}; allowed by kubernetes.allow_old_etcd (the kubeadm configs skip ExternalEtcdVersion)",
                    k8s.0, k8s.1
                );
                self.warnings.entry(w).or_default().push(who);
            }
            Err(e) => self.problems.entry(e).or_default().push(who),
        }
    }

    /// Prints each warning once; returns each problem once, naming its members.
    fn report(self, progress: &Progress) -> Vec<String> {
        for (w, members) in self.warnings {
            progress.step("preflight", &format!("warning ({}): {w}", members.join(", ")), None);
        }
        self.problems.into_iter().map(|(p, members)| format!("{} {}: {p}", if members.len() == 1 { "member" } else { "members" }, members.join(", "))).collect()
    }
}
