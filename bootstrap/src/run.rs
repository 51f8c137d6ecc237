//! Carrying out the plan: `up`, `status` and `down`. The effects go through a [`Transport`] per
//! member; every step is idempotent, so `up` after an interruption at any step finishes the job,
//! and `up` on a healthy cluster changes nothing.

use crate::error::{BootError, Result};
use crate::kubeadm::ApiVersion;
use crate::plan::{MemberPlan, Plan};
use crate::preflight::{judge, Action};
use crate::progress::Progress;
use crate::scripts;
use crate::transport::{self, ScriptOutput};
use etcdctl_lite::options::ClientOptions;
use etcdctl_lite::quorum::{ClusterState, Verdict};
use pki::cluster::Role;
use std::time::{Duration, Instant};

pub(crate) const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

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
    pub outputs: Vec<crate::outputs::Written>,
}

/// Runs `f` for every member in parallel; results in member order.
fn per_member<T: Send>(plan: &Plan, f: impl Fn(&MemberPlan) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = plan.members.iter().map(|m| s.spawn(|| f(m))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

pub(crate) fn run_on(m: &MemberPlan, script: &str) -> Result<ScriptOutput> {
    let t = transport::for_member(&m.spec);
    t.run(script, SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: t.describe(), reason })
}

/// Starts a member: under systemd its unit file is delivered first, as a file (never through a
/// script's text), then the start script runs.
pub(crate) fn start_member(m: &MemberPlan, token: &str) -> Result<ScriptOutput> {
    if let Some(unit) = scripts::unit_delivery(m) {
        let t = transport::for_member(&m.spec);
        t.deliver(&[unit], SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: t.describe(), reason })?;
    }
    run_on(m, &scripts::start(m, token))
}

pub(crate) fn host_err(m: &MemberPlan, what: &str, out: &ScriptOutput) -> BootError {
    BootError::Host { member: m.spec.name.clone(), host: m.spec.host.clone(), reason: format!("{what} failed (exit {}): {}", out.status(), out.stderr.trim()) }
}

/// Client options for checking the cluster with the operator's healthcheck client certificate.
pub fn client_options(plan: &Plan) -> Result<ClientOptions> {
    let pki = plan.pki();
    let hc = pki.leaf(&Role::HealthcheckClient);
    let s = |p: &std::path::Path| p.display().to_string();
    // during a CA rotation, trust both CAs (members serve certificates from either)
    let bundle = crate::rotate_ca::bundle_path(plan);
    let ca = if bundle.exists() { bundle } else { pki.ca().cert };
    ClientOptions::new(
        &plan.endpoints(),
        Some(&s(&ca)),
        Some(&s(&hc.cert)),
        Some(&s(&hc.key)),
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
    .map_err(|e| BootError::NotHealthy(format!("cannot check the cluster: {e}")))
}

/// One quorum verdict over the plan's members.
pub fn verdict(plan: &Plan) -> Result<Verdict> {
    let opts = client_options(plan)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BootError::NotHealthy(format!("cannot start the runtime: {e}")))?;
    Ok(rt.block_on(async {
        let obs = etcdctl_lite::observe::observe(&opts).await;
        etcdctl_lite::quorum::verdict(&obs)
    }))
}

/// Polls every endpoint's health (a linearizable read each, in parallel, short bounds) every
/// 25 ms until all answer or `deadline` passes; cheaper than a full verdict per poll.
fn wait_all_healthy(plan: &Plan, deadline: Instant) -> Result<()> {
    let mut opts = client_options(plan)?;
    opts.dial_timeout = Duration::from_millis(500);
    opts.command_timeout = Duration::from_secs(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BootError::NotHealthy(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        while Instant::now() < deadline {
            let checks = etcdctl_lite::ops::health(&opts).await;
            if checks.iter().all(|h| h.healthy()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    Ok(())
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

/// `certs check`: every certificate of the spec's PKI, with SAN coverage of the members' addresses.
pub fn certs_check(plan: &Plan, threshold: pki::expiry::Threshold) -> Result<pki::expiry::Report> {
    Ok(pki::expiry::check_dir(&plan.issue.dir, Some(&plan.issue.members), threshold)?)
}

/// `rotate certs`: renew every leaf (same subject/SANs/usages; new keys with `rekey`), then
/// member by member: deliver, confirm it serves the new certificate (etcd re-reads its files on
/// each handshake, no restart), and require a HEALTHY verdict before the next member.
pub fn rotate_certs(plan: &Plan, rekey: bool, wait: Duration, progress: &Progress) -> Result<()> {
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let before = verdict(plan)?;
    if before.state != ClusterState::Healthy {
        return Err(BootError::NotHealthy(format!("refusing to rotate: the cluster is {} ({}); fix it first", before.state.word(), before.summary)));
    }
    let pki = plan.pki();
    let pair = pki.ca();
    let ca = pki::ca::Ca::load_files(&pair.cert, &pair.key)?;
    let t = Instant::now();
    let roles = pki::renew::all_targets(&pki);
    let renewed = pki::renew::renew(&plan.issue.dir, &ca, &roles, plan.issue.validity, rekey)?;
    progress.step("renew", &format!("{} certificates re-issued{}", renewed.len(), if rekey { " with new keys" } else { "" }), Some(t.elapsed()));
    let opts = client_options(plan)?;
    for m in &plan.members {
        let t = Instant::now();
        let files = m.read_files(|_| true).map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })?;
        let tr = transport::for_member(&m.spec);
        tr.deliver(&files, SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: tr.describe(), reason })?;
        let want = std::fs::read(pki.leaf(&Role::Server(m.spec.name.clone())).cert)
            .ok()
            .and_then(|b| pki::pemfile::first_certificate(&b, "server.crt").ok());
        let deadline = Instant::now() + wait;
        loop {
            let served = opts.tls.as_ref().and_then(|tls| etcdctl_lite::diagnose::presented_certificate(&m.spec.client_url(), tls, Duration::from_secs(1)));
            let v = verdict(plan)?;
            if served.is_some() && served == want && v.state == ClusterState::Healthy {
                progress.step(&format!("rotate {}", m.name()), "serves the new certificate; cluster HEALTHY", Some(t.elapsed()));
                break;
            }
            if Instant::now() > deadline {
                return Err(BootError::NotHealthy(format!(
                    "member {}: {} after {}s ({}); stopped before the next member",
                    m.spec.name,
                    if served != want { "still serves its old certificate".to_string() } else { format!("cluster {}", v.state.word()) },
                    wait.as_secs(),
                    v.summary
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let t = Instant::now();
    let outputs = crate::outputs::write(plan, crate::outputs::existing_api(plan))?;
    let changed = outputs.iter().filter(|w| w.outcome != pki::files::Outcome::Unchanged).count();
    progress.step("outputs", &format!("{changed} control-plane files updated: copy out/control-plane/NODE/ to each node; kube-apiserver reads its etcd client certificate at start, so restart it node by node"), Some(t.elapsed()));
    Ok(())
}

/// Each member's certificates must cover the URLs it advertises.
fn check_certificates(plan: &Plan) -> Result<()> {
    let pki = plan.pki();
    let mut problems = Vec::new();
    for m in &plan.members {
        for role in [Role::Server(m.spec.name.clone()), Role::Peer(m.spec.name.clone())] {
            let path = pki.leaf(&role).cert;
            let text = std::fs::read(&path).map_err(|e| BootError::Output { path: path.display().to_string(), reason: e.to_string() })?;
            let der = pki::pemfile::first_certificate(&text, &path.display().to_string())?;
            let info = pki::inspect::cert_info(&der, &path.display().to_string())?;
            if !info.typed_sans.contains(&format!("IP:{}", m.spec.address)) {
                problems.push(format!("{} does not cover {} (SANs: {})", path.display(), m.spec.address, info.typed_sans.join(", ")));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

pub fn up(plan: &Plan, opts: &UpOptions, progress: &Progress) -> Result<UpReport> {
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    for w in &plan.loaded.warnings {
        progress.step("spec", &format!("warning: {w}"), None);
    }
    // before anything starts: a config kubeadm could not read is refused now
    let api = crate::outputs::choose_api(plan, opts.api)?;
    // and an etcd archive that is not what the spec says, before any host is contacted
    let release = prepare_release(plan, progress)?;
    // 1. certificates (valid ones kept byte for byte)
    let t = Instant::now();
    let issued = pki::bundle::issue_into(&plan.issue)?;
    progress.step("certificates", &format!("{} issued, {} kept in {}", issued.issued, issued.kept, plan.issue.dir.display()), Some(t.elapsed()));
    ensure_crl(plan)?;
    check_certificates(plan)?;

    // 2. preflight on every member at once; refuse before anything starts
    let facts = per_member(plan, |m| {
        let t = Instant::now();
        let others: Vec<String> = plan.members.iter().filter(|o| o.spec.name != m.spec.name).map(|o| o.spec.address.to_string()).collect();
        run_on(m, &scripts::preflight(m, &others)).map(|out| (out, t.elapsed()))
    });
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    for (m, f) in plan.members.iter().zip(facts) {
        match f {
            Ok((out, took)) => match judge(m, &plan.token, &out, release.is_some()) {
                Ok((action, version)) => {
                    // a delivered etcd is checked once it is on the host
                    if release.is_none()
                        && let Err(p) = etcd_version_check(plan, m, version.as_deref(), progress) {
                            problems.push(p);
                        }
                    let what = match action {
                        Action::Start => "ready to start",
                        Action::Restart => "its data dir is this cluster's: will start it again",
                        Action::Running => "already running",
                    };
                    progress.step(
                        &format!("preflight {}", m.name()),
                        &format!("{} etcd {}, {what}", transport::for_member(&m.spec).describe(), version.unwrap_or_else(|| "?".into())),
                        Some(took),
                    );
                    actions.push(action);
                }
                Err(p) => problems.extend(p),
            },
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(BootError::Preflight(problems));
    }

    // 3a. deliver etcd itself (etcd_archive): only what differs, then the version the member reports
    if let Some(release) = &release {
        deliver_etcd(plan, release, progress)?;
    }

    // 3. deliver each member its own files
    let deliveries = per_member(plan, |m| {
        let t = Instant::now();
        let files = m.read_files(|_| true).map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })?;
        let t2 = transport::for_member(&m.spec);
        let written = t2
            .deliver(&files, SCRIPT_LIMIT)
            .map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: t2.describe(), reason })?;
        Ok::<_, BootError>((written, t.elapsed()))
    });
    let mut files_written = 0;
    for (m, d) in plan.members.iter().zip(deliveries) {
        let (written, took) = d?;
        files_written += written;
        progress.step(&format!("files {}", m.name()), &format!("{written} written, {} unchanged", m.files.len() - written), Some(took));
    }

    // 4. start what is not running, all at once (static bootstrap needs them together)
    let starts = per_member(plan, |m| {
        let idx = plan.members.iter().position(|x| x.spec.name == m.spec.name).unwrap_or(0);
        if actions[idx] == Action::Running {
            return Ok(None);
        }
        let t = Instant::now();
        let out = start_member(m, &plan.token)?;
        if !out.ok() {
            return Err(host_err(m, "starting etcd", &out));
        }
        Ok(out.value("started").map(|p| (p, t.elapsed())))
    });
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for (m, s) in plan.members.iter().zip(starts) {
        match s {
            Ok(Some((pid, took))) => {
                progress.step(&format!("start {}", m.name()), &format!("started ({} {pid})", if pid == "unit" { "systemd" } else { "pid" }), Some(took));
                started.push(m.spec.name.clone());
            }
            Ok(None) => progress.step(&format!("start {}", m.name()), "already running; not restarted", None),
            // every member that failed, not only the first
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        return Err(BootError::NotHealthy(format!("starting failed:\n  - {}", failed.join("\n  - "))));
    }

    // 5. wait (bounded) for a healthy quorum
    let t = Instant::now();
    let deadline = Instant::now() + opts.wait;
    let verdict = loop {
        wait_all_healthy(plan, deadline)?;
        let v = verdict(plan)?;
        if v.state == ClusterState::Healthy {
            break v;
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = plan
                .members
                .iter()
                .filter(|m| v.members.iter().any(|x| x.name == m.spec.name && x.state != etcdctl_lite::quorum::MemberState::Healthy))
                .map(|m| {
                    let tail = run_on(m, &scripts::log_tail(m, 8)).map(|o| o.stdout).unwrap_or_default();
                    format!("--- {} log:\n{}", m.spec.name, tail.trim_end())
                })
                .collect();
            return Err(BootError::NotHealthy(format!(
                "not HEALTHY after {}s: {} — {}\n{}",
                opts.wait.as_secs(),
                v.state.word(),
                v.summary,
                tails.join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    progress.step("quorum", &format!("{}: {}", verdict.state.word(), verdict.summary), Some(t.elapsed()));

    // 6. kubeadm, control-plane folders, HAProxy
    let t = Instant::now();
    let outputs = crate::outputs::write(plan, api)?;
    let changed = outputs.iter().filter(|w| w.outcome != pki::files::Outcome::Unchanged).count();
    progress.step("outputs", &format!("{changed} written, {} unchanged in {}", outputs.len() - changed, plan.loaded.output_dir.display()), Some(t.elapsed()));
    Ok(UpReport { issued: issued.issued, kept: issued.kept, files_written, started, verdict, outputs })
}

/// The spec's `etcd_archive`, verified on this machine (`None` when the members bring their own).
fn prepare_release(plan: &Plan, progress: &Progress) -> Result<Option<crate::etcd_delivery::EtcdRelease>> {
    let spec = &plan.loaded.spec;
    let Some(archive) = &spec.etcd_archive else { return Ok(None) };
    let t = Instant::now();
    let base = std::path::Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let release = crate::etcd_delivery::prepare(archive, spec.etcd_sha256.as_deref(), base, &plan.loaded.output_dir)?;
    progress.step("etcd", &format!("etcd {} from {archive}: checksum verified", release.version), Some(t.elapsed()));
    Ok(Some(release))
}

/// Each member gets the binaries it lacks (identical ones are not sent again); then the
/// version it runs must be the release's, and pass kubeadm's minimum.
fn deliver_etcd(plan: &Plan, release: &crate::etcd_delivery::EtcdRelease, progress: &Progress) -> Result<()> {
    use crate::etcd_delivery::{probe_script, to_send};
    let results = per_member(plan, |m| {
        let t = Instant::now();
        let probe = run_on(m, &probe_script(&m.spec.bin_dir))?;
        let send = to_send(release, &m.spec.bin_dir, &probe.stdout);
        let tr = transport::for_member(&m.spec);
        for (path, mode, data) in &send {
            tr.put_file(path, *mode, data, SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: tr.describe(), reason })?;
        }
        let v = run_on(m, &format!("{} --version 2>/dev/null | sed -n 's/^etcd Version: //p'\n", crate::plan::sh_quote(&m.binary)))?;
        Ok::<_, BootError>((send.len(), v.stdout.trim().to_string(), t.elapsed()))
    });
    let mut problems = Vec::new();
    for (m, r) in plan.members.iter().zip(results) {
        let (sent, version, took) = r?;
        if crate::versions::Version::parse(&version) != Some(release.version) {
            problems.push(format!("member {}: {} reports etcd {version:?}, not {} from {}", m.spec.name, m.binary, release.version, release.source));
            continue;
        }
        if let Err(p) = etcd_version_check(plan, m, Some(&version), progress) {
            problems.push(p);
            continue;
        }
        progress.step(&format!("etcd {}", m.name()), &format!("{} binaries sent, {} already there; runs etcd {version}", sent, release.binaries.len() - sent), Some(took));
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// kubeadm's ExternalEtcdVersion check, ahead of kubeadm: a member's etcd below the minimum of
/// the spec's Kubernetes version is refused (a warning with `kubernetes.allow_old_etcd`).
fn etcd_version_check(plan: &Plan, m: &MemberPlan, version: Option<&str>, progress: &Progress) -> std::result::Result<(), String> {
    let k = &plan.loaded.spec.kubernetes;
    let who = format!("member {} ({})", m.spec.name, m.spec.host);
    let Some(found) = version.and_then(crate::versions::Version::parse) else {
        return Err(format!("{who}: cannot tell the etcd version ({:?} --version printed {:?})", m.binary, version.unwrap_or("")));
    };
    match crate::versions::check_etcd(k.version(), found) {
        Ok(None) => Ok(()),
        Ok(Some(note)) => {
            progress.step(&format!("preflight {}", m.name()), &format!("warning: {note}"), None);
            Ok(())
        }
        Err(e) if k.allow_old_etcd => {
            progress.step(
                &format!("preflight {}", m.name()),
                &format!("warning: {e} — allowed by kubernetes.allow_old_etcd; the kubeadm configs skip ExternalEtcdVersion"),
                None,
            );
            Ok(())
        }
        Err(e) => Err(format!("{who}: {e}")),
    }
}

/// Stops every member (data kept unless `purge`).
pub fn down(plan: &Plan, purge: bool, progress: &Progress) -> Result<Vec<String>> {
    let stop = |m: &MemberPlan| {
        let t = Instant::now();
        let marker = scripts::marker_text(&plan.token, &m.spec.name);
        run_on(m, &scripts::stop(m, purge.then_some(marker.as_str()))).map(|o| (o, t.elapsed()))
    };
    // The leader last. Stopped together with its followers, a leader hands leadership to one of
    // them on shutdown (etcd does) and waits for a transfer that cannot finish (~7 s); stopped
    // after them, it has no peer to hand over to and exits at once.
    let leader = verdict(plan).ok().and_then(|v| v.members.into_iter().find(|x| x.role == etcdctl_lite::quorum::Role::Leader)).map(|x| x.name);
    let mut results: Vec<Option<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = plan.members.iter().map(|m| (Some(&m.spec.name) != leader.as_ref()).then(|| s.spawn(|| stop(m)))).collect();
        handles.into_iter().map(|h| h.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))).collect()
    });
    for (m, r) in plan.members.iter().zip(results.iter_mut()) {
        if r.is_none() {
            *r = Some(stop(m));
        }
    }
    let results = results.into_iter().flatten();
    let mut stopped = Vec::new();
    let mut errors = Vec::new();
    for (m, r) in plan.members.iter().zip(results) {
        match r {
            Ok((out, took)) => {
                let what = match (out.value("stopped"), out.value("killed")) {
                    (Some(_), Some(_)) => "stopped (SIGKILL after 10 s)".to_string(),
                    (Some(_), None) => "stopped".to_string(),
                    _ => "was not running".to_string(),
                };
                let purge_note = out.value("purged").map(|d| format!("; data dir {d} removed")).unwrap_or_default();
                if let Some(why) = out.value("purge_refused") {
                    errors.push(format!("member {}: purge refused: {why}", m.spec.name));
                }
                progress.step(&format!("down {}", m.name()), &format!("{what}{purge_note}"), Some(took));
                stopped.push(m.spec.name.clone());
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() { Ok(stopped) } else { Err(BootError::NotHealthy(errors.join("\n"))) }
}

/// `replace MEMBER`: remove the (dead) member first, add its replacement as a learner, start it
/// with `--initial-cluster-state existing`, promote it once it has caught up (retried, bounded),
/// each step gated on quorum. Refuses when removing the member would lose quorum, and (without
/// `force`) when the member is healthy. The old data dir is moved aside, never deleted.
pub fn replace(plan: &Plan, name: &str, force: bool, wait: Duration, progress: &Progress) -> Result<()> {
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    use etcdctl_lite::quorum::{quorum_size, MemberState, Role as QRole};
    let m = plan
        .members
        .iter()
        .find(|m| m.spec.name == name)
        .ok_or_else(|| BootError::NotHealthy(format!("no member {name:?} in the spec")))?;
    let v = verdict(plan)?;
    if matches!(v.state, ClusterState::NoQuorum | ClusterState::Unknown) {
        return Err(BootError::NotHealthy(format!("refusing: the cluster is {} ({}); membership changes need quorum", v.state.word(), v.summary)));
    }
    let target = v.members.iter().find(|x| x.name == name || x.endpoint == m.spec.client_url());
    let is_voter = target.map(|t| t.role != QRole::Learner).unwrap_or(false);
    let healthy_others = v
        .members
        .iter()
        .filter(|x| x.name != name && x.endpoint != m.spec.client_url() && x.role != QRole::Learner && x.state == MemberState::Healthy)
        .count();
    let voters_after = v.voters - usize::from(is_voter);
    if healthy_others < quorum_size(voters_after.max(1)) {
        return Err(BootError::NotHealthy(format!(
            "refusing: after removing {name}, {healthy_others} healthy voter(s) would remain of {voters_after}, below the quorum of {}",
            quorum_size(voters_after.max(1))
        )));
    }
    if target.is_some_and(|t| t.state == MemberState::Healthy) && !force {
        return Err(BootError::NotHealthy(format!("refusing: {name} is healthy; replace is for dead members (pass --force to replace it anyway)")));
    }
    let others: Vec<String> = plan.members.iter().filter(|x| x.spec.name != name).map(|x| x.spec.client_url()).collect();
    let opts = client_options(plan)?.with_endpoints(others);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BootError::NotHealthy(format!("cannot start the runtime: {e}")))?;
    let ctl = |e: etcdctl_lite::CtlError| BootError::NotHealthy(e.to_string());

    // 1. retire the old instance (stop it if it still runs; move its data dir aside)
    let t = Instant::now();
    let out = run_on(m, &scripts::retire(m))?;
    progress.step(&format!("retire {name}"), &out.value("moved").map(|to| format!("old data dir moved to {to}")).unwrap_or_else(|| "no old data".into()), Some(t.elapsed()));
    // 2. remove it from the cluster (by ID; it may have no ID if it never joined)
    if let Some(id) = target.and_then(|t| u64::from_str_radix(&t.id, 16).ok()) {
        let t = Instant::now();
        rt.block_on(etcdctl_lite::ops::member_remove(&opts, id)).map_err(ctl)?;
        progress.step(&format!("remove {name}"), &format!("member {id:x} removed"), Some(t.elapsed()));
    }
    // 3. certificates (kept if still valid) and the CRL
    pki::bundle::issue_into(&plan.issue)?;
    ensure_crl(plan)?;
    // 4. add as a learner (etcd refuses changes for a few seconds after leadership changes)
    let t = Instant::now();
    let deadline = Instant::now() + wait;
    let (added, members) = loop {
        match rt.block_on(etcdctl_lite::ops::member_add(&opts, &[m.spec.peer_url()], true)) {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline && e.to_string().contains("unhealthy cluster") => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => return Err(ctl(e)),
        }
    };
    progress.step(&format!("add {name}"), &format!("learner {:x} added", added.id), Some(t.elapsed()));
    let initial: Vec<String> = members
        .iter()
        .flat_map(|x| {
            let n = if x.id == added.id { name.to_string() } else { x.name.clone() };
            x.peer_urls.iter().map(move |u| format!("{n}={u}")).collect::<Vec<_>>()
        })
        .filter(|e| !e.starts_with('='))
        .collect();
    // 5. deliver and start it joining the existing cluster
    let mut joiner = m.clone();
    joiner.args = crate::plan::etcd_args(&m.spec, &initial.join(","), &plan.token)
        .into_iter()
        .map(|a| if a == "new" { "existing".to_string() } else { a })
        .collect();
    let files = m.read_files(|_| true).map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })?;
    let tr = transport::for_member(&m.spec);
    tr.deliver(&files, SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: name.into(), host: tr.describe(), reason })?;
    let out = start_member(&joiner, &plan.token)?;
    if !out.ok() {
        return Err(host_err(m, "starting etcd", &out));
    }
    progress.step(&format!("start {name}"), "joining with --initial-cluster-state existing", None);
    // 6. promote once caught up
    let t = Instant::now();
    loop {
        match rt.block_on(etcdctl_lite::ops::member_promote(&opts, added.id)) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let text = e.to_string();
                if !(text.contains("in sync") || text.contains("unhealthy") || text.contains("learner") || text.contains("no answer")) {
                    return Err(ctl(e));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => return Err(BootError::NotHealthy(format!("{name} never caught up within {}s: {e}", wait.as_secs()))),
        }
    }
    progress.step(&format!("promote {name}"), "voting member", Some(t.elapsed()));
    // 7. healthy again
    let t = Instant::now();
    loop {
        let v = verdict(plan)?;
        if v.state == ClusterState::Healthy {
            progress.step("quorum", &format!("{}: {}", v.state.word(), v.summary), Some(t.elapsed()));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(format!("not HEALTHY after the replacement: {}", v.summary)));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
