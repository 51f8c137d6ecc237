//! `rotate ca`: replacing the etcd CA with kube-apiserver kept working throughout. etcd re-reads
//! its certificate and key on every handshake but never reloads its CA bundle, and kube-apiserver
//! reads its etcd CA and client certificate only at start, so the rotation is staged, and it
//! stops twice for the operator to update kube-apiserver:
//!
//! 1. trust-both: every member (and every control-plane folder) trusts old + new; rolling
//!    restart, leadership handed off first. **Stop**: copy the bundle to each control-plane node,
//!    restart kube-apiserver there, then `rotate ca --continue`.
//! 2. reissue: every leaf re-issued by the new CA (new keys) and delivered (no restart needed);
//!    the control-plane folders get kube-apiserver's new client certificate. **Stop**: copy it,
//!    restart kube-apiserver, then `--continue`.
//! 3. drop-old: members trust the new CA only; rolling restart; the new CA becomes the CA of the
//!    PKI directory (the old one kept as a backup) and the CRL is re-signed.
//!
//! Progress is recorded in `etcd/ca-rotation.json` after every member, so an interrupted
//! rotation resumes where it stopped; `rotate ca --status` reads it.

use crate::error::{BootError, Result};
use crate::kube::kubeadm::{CA_FILE, CERT_FILE, KEY_FILE};
use crate::plan::trust_bundle_path;
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::run::context::Ctx;
use crate::run::live::own_files;
use etcdctl_lite::quorum::ClusterState;
use pki::cluster::Role;
use pki::files::{self, PlannedFile};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::run::records::state_path;
pub use crate::run::records::{Phase, RotationState, current};

/// Where a `rotate ca` run left the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Members trust old + new; kube-apiserver must get the bundle before `--continue`.
    TrustsBoth,
    /// Members serve certificates from the new CA; kube-apiserver must get its new client
    /// certificate before `--continue`.
    Reissued,
    /// Every member trusts and serves only the new CA.
    Done,
}

/// `rotate ca` (start or resume), `rotate ca --continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    StartOrResume,
    Continue,
}

fn etcd_dir(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd")
}
fn new_ca_paths(plan: &Plan) -> (PathBuf, PathBuf) {
    (etcd_dir(plan).join("ca-new.crt"), etcd_dir(plan).join("ca-new.key"))
}

/// The CA being replaced: the PKI directory's, or an adopted cluster's (its key given to adopt).
fn current_ca_paths(plan: &Plan) -> Result<(PathBuf, PathBuf)> {
    match &plan.loaded.spec.adopted {
        Some(a) => {
            let key = a.ca_key.clone().ok_or_else(|| BootError::Precondition {
                what: "rotate the CA".into(),
                reason: format!("it signs with the current CA's key: add `ca_key: /path/to/ca-key.pem` under `adopted:` in {}", plan.loaded.file),
            })?;
            Ok((a.cacert.clone(), key))
        }
        None => {
            let pair = plan.pki().ca();
            Ok((pair.cert, pair.key))
        }
    }
}

/// Where an adopted cluster's own client pair from the new CA goes (phase 2).
fn adopted_client_paths(plan: &Plan) -> (PathBuf, PathBuf) {
    (etcd_dir(plan).join("adopted-client.crt"), etcd_dir(plan).join("adopted-client.key"))
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(crate::error::io("read", p))
}

fn save(plan: &Plan, state: &RotationState) -> Result<()> {
    crate::run::records::save_record(&state_path(plan), state, 0o644)
}

pub fn rotate_ca(ctx: &Ctx, request: Request, wait: Duration) -> Result<Outcome> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let mut state = match (current(plan)?, request) {
        (None, Request::Continue) => {
            return Err(BootError::Precondition { what: "continue".into(), reason: "no CA rotation is under way; `rotate ca` starts one".into() });
        }
        (None, Request::StartOrResume) => begin(ctx)?,
        (Some(s), _) if s.waiting_for_operator && request == Request::StartOrResume => {
            progress.step("rotate ca", "waiting for the operator: do the steps below, then run `rotate ca --continue`", None);
            // a delivery that failed last time is tried again (identical files are left alone)
            deliver_to_nodes(plan, stop_before(s.phase), progress)?;
            pause(ctx, stop_before(s.phase))?;
            return Ok(stop_before(s.phase));
        }
        (Some(mut s), _) if s.waiting_for_operator => {
            wait_for_apiservers(plan, wait, progress)?;
            // recorded at once: from here an interruption leaves members mid-restart, which a
            // plain `rotate ca` must resume rather than report as waiting
            ctx.changing(&format!("{:?}", s.phase))?;
            s.waiting_for_operator = false;
            save(plan, &s)?;
            progress.step("rotate ca", &format!("continuing with phase {:?}", s.phase), None);
            s
        }
        (Some(s), _) => {
            progress.step("rotate ca", &format!("resuming in phase {:?} after {:?}", s.phase, s.done), None);
            ctx.changing(&format!("{:?}", s.phase))?;
            restart_stopped_members(ctx, wait)?;
            s
        }
    };
    let (new_cert, new_key) = new_ca_paths(plan);
    let old_pem = read(&current_ca_paths(plan)?.0)?;
    let new_pem = read(&new_cert)?;
    let outcome = if state.phase == Phase::TrustBoth {
        trust_both(ctx, &mut state, &old_pem, &new_pem, wait, progress)?;
        Outcome::TrustsBoth
    } else if state.phase == Phase::Reissue {
        reissue(ctx, &mut state, &new_cert, &new_key, wait, progress)?;
        Outcome::Reissued
    } else {
        drop_old(ctx, &mut state, &old_pem, &new_pem, wait)?;
        Outcome::Done
    };
    deliver_to_nodes(plan, outcome, progress)?;
    if outcome != Outcome::Done {
        pause(ctx, outcome)?;
    }
    Ok(outcome)
}

/// The journal says the rotation waits for the operator, and which command goes on.
fn pause(ctx: &Ctx, at: Outcome) -> Result<()> {
    let why = match at {
        Outcome::TrustsBoth => "step 1 of 3 done, kube-apiserver must now trust the old and the new CA, as `rotate ca --status` says",
        _ => "step 2 of 3 done, kube-apiserver now needs its client certificate from the new CA, as `rotate ca --status` says",
    };
    ctx.pause(why, &crate::run::context::command_for(ctx.plan, "rotate ca --continue"))
}

/// The kube-apiserver files a stop hands over, at their paths on the node.
fn files_at(outcome: Outcome) -> &'static [&'static str] {
    match outcome {
        Outcome::TrustsBoth | Outcome::Done => &[CA_FILE],
        Outcome::Reissued => &[CERT_FILE, KEY_FILE],
    }
}

/// To every control-plane node the spec can reach (`host`), the files of this stop from its
/// folder, atomically at kubeadm's paths (the key 0600). Restarting kube-apiserver stays the
/// operator's: it is kubelet's static pod, not ours to kill.
fn deliver_to_nodes(plan: &Plan, outcome: Outcome, progress: &Progress) -> Result<()> {
    for n in plan.loaded.spec.kubernetes.control_plane_nodes.iter().filter(|n| n.host.is_some()) {
        let mut files = Vec::new();
        for f in files_at(outcome) {
            let src = node_dir(plan, &n.name).join(f.trim_start_matches('/'));
            let mode = if *f == KEY_FILE { 0o600 } else { 0o644 };
            files.push((f.to_string(), mode, read(&src)?));
        }
        let t = crate::host::transport::for_node(n);
        let written = t.deliver(&files, crate::run::live::SCRIPT_LIMIT).map_err(BootError::on_host(&n.name, &t.describe()))?;
        progress.step(&format!("deliver {}", n.name), &format!("{written} of {} file(s) written over {}", files.len(), t.describe()), None);
    }
    Ok(())
}

/// When the spec can reach the control-plane nodes (`host`), `--continue` first waits (bounded)
/// until kube-apiserver answers /readyz through the load balancer, checked from this machine and
/// from every node: the restarts the last stop asked for are done and the apiservers are back.
fn wait_for_apiservers(plan: &Plan, wait: Duration, progress: &Progress) -> Result<()> {
    if !plan.loaded.spec.kubernetes.control_plane_nodes.iter().any(|n| n.host.is_some()) {
        return Ok(());
    }
    let t = Instant::now();
    let deadline = Instant::now() + wait;
    loop {
        let all = crate::run::lb::check_lb(plan, Duration::from_secs(3))?;
        if all.iter().all(|v| v.state == "READY") {
            progress.step("rotate ca", "kube-apiserver answers /readyz through the load balancer from this machine and every node", Some(t.elapsed()));
            return Ok(());
        }
        if Instant::now() > deadline {
            let bad: Vec<String> = all.iter().filter(|v| v.state != "READY").map(|v| format!("from {}: {}: {}", v.from, v.state, v.summary)).collect();
            return Err(BootError::Precondition {
                what: "continue the CA rotation".into(),
                reason: format!(
                    "kube-apiserver does not answer /readyz through the load balancer within {}s ({}); restart it as the last stop said, then run --continue again",
                    wait.as_secs(),
                    bad.join("; ")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stop_before(phase: Phase) -> Outcome {
    match phase {
        Phase::TrustBoth | Phase::Reissue => Outcome::TrustsBoth,
        Phase::DropOld => Outcome::Reissued,
    }
}

/// A new rotation: the cluster must be HEALTHY; the new CA is made (create-only) next to the old.
fn begin(ctx: &Ctx) -> Result<RotationState> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    ctx.require_healthy("rotate the CA")?;
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, "rotate the CA")?;
    let (cert, key) = current_ca_paths(plan)?;
    pki::ca::Ca::load_files(&cert, &key)?;
    if plan.loaded.spec.adopted.is_some() {
        // every member found as adopted, its files where the spec says, before anything changes
        for m in &plan.members {
            ctx.read_in_place(m)?;
        }
    }
    // every member is restarted: one whose binary in the spec is older than it runs is refused now,
    // not after the first member's restart
    ctx.refuse_downgrades(&plan.members.iter().collect::<Vec<_>>())?;
    ctx.changing("new CA")?;
    let (new_cert, new_key) = new_ca_paths(plan);
    if !new_cert.exists() {
        let (cert, key) = current_ca_paths(plan)?;
        let old = pki::ca::Ca::load_files(&cert, &key)?;
        let ca = pki::ca::Ca::create(&pki::ca::CaOptions { algorithm: old.key().algorithm(), ..pki::ca::CaOptions::default() })?;
        files::write_all(&[PlannedFile::public(&new_cert, ca.cert_pem()), PlannedFile::ca_key(&new_key, ca.key().to_pkcs8_pem())], false)?;
        progress.step("rotate ca", &format!("new CA in {}", new_cert.display()), None);
    }
    let s = RotationState { phase: Phase::TrustBoth, done: vec![], reissued: false, waiting_for_operator: false };
    save(plan, &s)?;
    Ok(s)
}

/// A member may have been stopped mid-restart by an interrupted run, whose stop script may still
/// be finishing: keep starting whatever is not running (idempotent) until the cluster is healthy.
fn restart_stopped_members(ctx: &Ctx, wait: Duration) -> Result<()> {
    let plan = ctx.plan;
    let deadline = Instant::now() + wait;
    // the last failed start is kept: past the deadline it is the likely cause
    let mut failed_start: Option<BootError> = None;
    loop {
        for m in &plan.members {
            match ctx.start_member(m) {
                Ok(out) if !out.ok() => failed_start = Some(crate::run::live::host_err(m, "starting etcd", &out)),
                Ok(_) => {}
                Err(e) => failed_start = Some(e),
            }
        }
        let v = ctx.verdict()?;
        if v.state == ClusterState::Healthy {
            return Ok(());
        }
        if Instant::now() > deadline {
            let cause = failed_start.map(|e| format!("; last failed start: {e}")).unwrap_or_default();
            return Err(BootError::NotHealthy(format!("cannot resume: not HEALTHY within {}s ({}){cause}", wait.as_secs(), v.summary)));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Phase 1: members and control-plane folders trust old + new.
fn trust_both(ctx: &Ctx, state: &mut RotationState, old_pem: &[u8], new_pem: &[u8], wait: Duration, progress: &Progress) -> Result<()> {
    let plan = ctx.plan;
    let mut both = old_pem.to_vec();
    both.extend_from_slice(new_pem);
    files::write_atomic(&trust_bundle_path(plan), &both, 0o644)?;
    if plan.loaded.spec.adopted.is_none() {
        control_plane_ca(plan, &both)?;
    }
    rolling_restart(ctx, state, &both, wait, progress, "trust old+new")?;
    *state = RotationState { phase: Phase::Reissue, done: vec![], reissued: false, waiting_for_operator: true };
    save(plan, state)
}

/// Phase 2: every leaf re-issued by the new CA and delivered member by member; then
/// kube-apiserver's new client certificate in the control-plane folders.
fn reissue(ctx: &Ctx, state: &mut RotationState, new_cert: &Path, new_key: &Path, wait: Duration, progress: &Progress) -> Result<()> {
    let plan = ctx.plan;
    if plan.loaded.spec.adopted.is_some() {
        return reissue_in_place(ctx, state, new_cert, new_key, wait);
    }
    let pki = plan.pki();
    if !state.reissued {
        let t = Instant::now();
        let new_ca = pki::ca::Ca::load_files(new_cert, new_key)?;
        let n = pki::renew::renew(&plan.issue.dir, &new_ca, &pki::renew::all_targets(&pki), plan.issue.validity, true)?.len();
        state.reissued = true;
        save(plan, state)?;
        progress.step("reissue", &format!("{n} certificates re-issued by the new CA with new keys"), Some(t.elapsed()));
    }
    for m in &plan.members {
        if state.done.contains(&m.spec.name) {
            continue;
        }
        let t = Instant::now();
        ctx.deliver(m, &own_files(m, |f| !f.dest.ends_with("ca.crt"))?)?;
        ctx.wait_serves_own_certificate(m, wait)?;
        // no member stops in this phase: the change to this member is proved on it
        ctx.wait_member_healthy(m, wait, &format!("re-issuing {}", m.spec.name))?;
        progress.step(&format!("reissue {}", m.spec.name), "serves its certificate from the new CA; healthy", Some(t.elapsed()));
        state.done.push(m.spec.name.clone());
        save(plan, state)?;
    }
    ctx.verify_healthy(wait, "re-issuing every member")?;
    // kube-apiserver's client certificate from the new CA, while the members still trust both
    write_control_plane_client(plan)?;
    *state = RotationState { phase: Phase::DropOld, done: vec![], reissued: true, waiting_for_operator: true };
    save(plan, state)
}

/// Phase 2 on an adopted cluster: each member's certificates re-issued by the new CA where they
/// are (keys kept; the old CA still accepted as their issuer on a resumed run), then the
/// toolkit's own client pair from the new CA, which the spec names from now on.
fn reissue_in_place(ctx: &Ctx, state: &mut RotationState, new_cert: &Path, new_key: &Path, wait: Duration) -> Result<()> {
    let plan = ctx.plan;
    let new_ca = pki::ca::Ca::load_files(new_cert, new_key)?;
    let old_der = pki::pemfile::first_certificate(&read(&current_ca_paths(plan)?.0)?, "the current CA")?;
    crate::in_place::renew(ctx, &new_ca, &[&old_der, new_ca.cert_der()], crate::in_place::Renewal { rekey: false, split: false }, wait)?;
    let (cert, key) = adopted_client_paths(plan);
    crate::in_place::issue_own_client(plan, &new_ca, &cert, &key)?;
    crate::adopt::spec_out::update(Path::new(&plan.loaded.file), |a| {
        a.cert = cert.clone();
        a.key = key.clone();
    })?;
    ctx.progress.step("reissue", &format!("etcd-bootstrap's own client certificate from the new CA: {} (the spec names it now)", cert.display()), None);
    *state = RotationState { phase: Phase::DropOld, done: vec![], reissued: true, waiting_for_operator: true };
    save(plan, state)
}

/// Phase 3 on an adopted cluster, after the members' restarts: the new CA moves into the PKI
/// directory beside the spec (create-only; the operator's old files are left as they are) and
/// the spec names it.
fn adopt_new_ca(ctx: &Ctx, new_pem: &[u8]) -> Result<()> {
    let plan = ctx.plan;
    let (new_cert, new_key) = new_ca_paths(plan);
    let named = current_ca_paths(plan)?;
    // a run killed after the spec named the new CA finds it there already
    let cert = if read(&named.0)? == new_pem {
        named.0
    } else {
        let pair = plan.pki().ca();
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let (cert, key) = if pair.cert.exists() {
            (etcd_dir(plan).join(format!("ca-{stamp}.crt")), etcd_dir(plan).join(format!("ca-{stamp}.key")))
        } else {
            (pair.cert, pair.key)
        };
        files::write_all(&[PlannedFile::public(&cert, new_pem.to_vec()), PlannedFile::ca_key(&key, read(&new_key)?)], false)?;
        crate::adopt::spec_out::update(Path::new(&plan.loaded.file), |a| {
            a.cacert = cert.clone();
            a.ca_key = Some(key.clone());
        })?;
        cert
    };
    ctx.wait_healthy(Duration::from_secs(60), "the last member")?;
    ctx.finished()?;
    for p in [new_cert, new_key, trust_bundle_path(plan), state_path(plan)] {
        let _ = std::fs::remove_file(p);
    }
    ctx.progress.step("rotate ca", &format!("done: every member trusts and serves only the new CA, {} (the spec names it)", cert.display()), None);
    Ok(())
}

/// Phase 3: members trust the new CA only; it becomes the directory's CA.
fn drop_old(ctx: &Ctx, state: &mut RotationState, old_pem: &[u8], new_pem: &[u8], wait: Duration) -> Result<()> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    if plan.loaded.spec.adopted.is_some() {
        rolling_restart(ctx, state, new_pem, wait, progress, "trust new only")?;
        return adopt_new_ca(ctx, new_pem);
    }
    control_plane_ca(plan, new_pem)?;
    rolling_restart(ctx, state, new_pem, wait, progress, "trust new only")?;
    // the new CA becomes the directory's CA; the old one is kept as a backup
    let ca_pair = plan.pki().ca();
    let (new_cert, new_key) = new_ca_paths(plan);
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let bak = |p: &Path| p.with_file_name(format!("{}.{stamp}.bak", p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    files::write_all(
        &[
            PlannedFile::public(bak(&ca_pair.cert), old_pem.to_vec()),
            PlannedFile::secret(bak(&ca_pair.key), read(&ca_pair.key)?),
            PlannedFile::public(&ca_pair.cert, new_pem.to_vec()),
            PlannedFile::secret(&ca_pair.key, read(&new_key)?),
        ],
        true,
    )?;
    let ca = pki::ca::Ca::load_files(&ca_pair.cert, &ca_pair.key)?;
    pki::crl::refresh(&plan.issue.dir, &ca)?;
    // the re-signed CRL to the members; control-plane folders and HAProxy regenerated; all of
    // it again if this stops here (the record still says phase 3, and the swap is idempotent)
    for m in &plan.members {
        ctx.deliver(m, &own_files(m, |f| f.dest.ends_with("crl.pem") || f.dest.ends_with("crl.der"))?)?;
    }
    crate::kube::outputs::write(plan, crate::kube::outputs::existing_api(plan))?;
    ctx.wait_healthy(wait, "the last member")?;
    // out of the journal first: killed before the record goes, the record still says "resume"
    ctx.finished()?;
    for p in [new_cert, new_key, trust_bundle_path(plan), state_path(plan)] {
        let _ = std::fs::remove_file(p);
    }
    progress.step("rotate ca", "done: every member trusts and serves only the new CA", None);
    Ok(())
}

/// Restarts every member not yet done in this phase with `ca_pem` as its CA file, recording each.
fn rolling_restart(ctx: &Ctx, state: &mut RotationState, ca_pem: &[u8], wait: Duration, progress: &Progress, what: &str) -> Result<()> {
    let plan = ctx.plan;
    // each run of a phase: every binary checked before its first restart, not at each
    ctx.refuse_downgrades(&plan.members.iter().filter(|m| !state.done.contains(&m.spec.name)).collect::<Vec<_>>())?;
    for m in &plan.members {
        if state.done.contains(&m.spec.name) {
            continue;
        }
        let t = Instant::now();
        deliver_ca(ctx, m, ca_pem)?;
        // etcd reads its CA bundle only at start
        ctx.restart_member(m, wait)?;
        progress.step(&format!("{what} {}", m.spec.name), "restarted with the new CA bundle; cluster HEALTHY", Some(t.elapsed()));
        state.done.push(m.spec.name.clone());
        save(plan, state)?;
    }
    Ok(())
}

/// `ca_pem` as the member's CA file, in the operator's copy and on the host.
fn deliver_ca(ctx: &Ctx, m: &MemberPlan, ca_pem: &[u8]) -> Result<()> {
    let plan = ctx.plan;
    if m.spec.adopted.is_some() {
        return crate::in_place::deliver_trust(ctx, m, ca_pem);
    }
    let pki = plan.pki();
    files::write_all(&[PlannedFile::public(pki.ca_copy_in(&pki.member_dir(&m.spec.name)), ca_pem.to_vec())], true)?;
    ctx.deliver(m, &[(m.spec.pki_dir.join("etcd/ca.crt").display().to_string(), 0o644, ca_pem.to_vec())])?;
    Ok(())
}

/// A control-plane node's folder under the outputs.
fn node_dir(plan: &Plan, node: &str) -> PathBuf {
    plan.loaded.output_dir.join("control-plane").join(node)
}

/// kube-apiserver's CA file in every control-plane folder.
fn control_plane_ca(plan: &Plan, ca_pem: &[u8]) -> Result<()> {
    let pki = plan.pki();
    let mut planned = vec![PlannedFile::public(pki.ca_copy_in(&pki.control_plane_dir()), ca_pem.to_vec())];
    for n in &plan.loaded.spec.kubernetes.control_plane_nodes {
        let p = node_dir(plan, &n.name).join(CA_FILE.trim_start_matches('/'));
        if p.exists() {
            planned.push(PlannedFile::public(p, ca_pem.to_vec()));
        }
    }
    files::write_all(&planned, true)?;
    Ok(())
}

/// kube-apiserver's client certificate and key in every control-plane folder.
fn write_control_plane_client(plan: &Plan) -> Result<()> {
    let pair = plan.pki().leaf(&Role::ApiserverEtcdClient);
    let (cert, key) = (read(&pair.cert)?, read(&pair.key)?);
    let mut planned = Vec::new();
    for n in &plan.loaded.spec.kubernetes.control_plane_nodes {
        let root = node_dir(plan, &n.name);
        if root.exists() {
            planned.push(PlannedFile::public(root.join(CERT_FILE.trim_start_matches('/')), cert.clone()));
            planned.push(PlannedFile::secret(root.join(KEY_FILE.trim_start_matches('/')), key.clone()));
        }
    }
    files::write_all(&planned, true)?;
    Ok(())
}

/// What the operator does at a stop, node by node: exact files and the restart.
pub fn instructions(plan: &Plan, outcome: Outcome) -> String {
    if plan.loaded.spec.adopted.is_some() && plan.loaded.spec.kubernetes.control_plane_nodes.is_empty() {
        return adopted_instructions(plan, outcome);
    }
    let nodes = &plan.loaded.spec.kubernetes.control_plane_nodes;
    let copy = |files: &[&str]| {
        let mut out = String::new();
        for n in nodes {
            for f in files {
                match &n.host {
                    // already there: `rotate ca` delivered it
                    Some(h) => out.push_str(&format!("  {}: {f} delivered (over {h})\n", n.name)),
                    None => out.push_str(&format!("  {}: copy {} to {f}\n", n.name, node_dir(plan, &n.name).join(f.trim_start_matches('/')).display())),
                }
            }
            out.push_str(&format!(
                "  {}: restart kube-apiserver (crictl rm -f its container, or move its static-pod manifest out and back) and wait until it is Ready\n",
                n.name
            ));
        }
        out
    };
    match outcome {
        Outcome::TrustsBoth => format!(
            "CA rotation stopped after step 1 of 3: every etcd member trusts the old and the new CA.\n\
             Before the members switch to certificates from the new CA, kube-apiserver must trust both (it reads {CA_FILE} only at start):\n{}\
             Then run: etcd-bootstrap rotate ca --continue\n",
            copy(files_at(Outcome::TrustsBoth))
        ),
        Outcome::Reissued => format!(
            "CA rotation stopped after step 2 of 3: every etcd member serves a certificate from the new CA and still trusts the old one.\n\
             Before the old CA is dropped, kube-apiserver needs its client certificate from the new CA (read only at start):\n{}\
             Then run: etcd-bootstrap rotate ca --continue\n",
            copy(files_at(Outcome::Reissued))
        ),
        Outcome::Done => format!(
            "CA rotation done: every etcd member trusts and serves only the new CA.\n\
             {CA_FILE} in the control-plane folders now holds the new CA only; kube-apiserver keeps working with the old+new bundle, so update it at the next restart:\n{}",
            copy(files_at(Outcome::Done))
        ),
    }
}

/// The stops of an adopted cluster's rotation, whose spec names no control-plane node: what
/// every client of the cluster (kube-apiserver first) needs, with the files to use.
fn adopted_instructions(plan: &Plan, outcome: Outcome) -> String {
    let (new_cert, new_key) = new_ca_paths(plan);
    let bundle = trust_bundle_path(plan);
    match outcome {
        Outcome::TrustsBoth => format!(
            "CA rotation stopped after step 1 of 3: every etcd member trusts the old and the new CA.\n\
             Before the members switch to certificates from the new CA, every client of the cluster must trust both:\n\
             \x20 kube-apiserver on each control-plane node: put {} at its --etcd-cafile ({CA_FILE} with kubeadm), restart it and wait until it is Ready\n\
             Then run: {}\n",
            bundle.display(),
            crate::run::context::command_for(plan, "rotate ca --continue")
        ),
        Outcome::Reissued => format!(
            "CA rotation stopped after step 2 of 3: every etcd member serves a certificate from the new CA and still trusts the old one.\n\
             Before the old CA is dropped, every client needs a client certificate from the new CA ({}; key {}):\n\
             \x20 kube-apiserver: sign one for its --etcd-keyfile (e.g. `cfssl gencert -ca {} -ca-key {} ...`, or `pki issue`), put it at --etcd-certfile, restart it\n\
             Then run: {}\n",
            new_cert.display(),
            new_key.display(),
            new_cert.display(),
            new_key.display(),
            crate::run::context::command_for(plan, "rotate ca --continue")
        ),
        Outcome::Done => "CA rotation done: every etcd member trusts and serves only the new CA; the spec names it and etcd-bootstrap's client from it. Give clients the new CA alone at their next restart.\n".to_string(),
    }
}

/// `rotate ca --status`: where the rotation stands.
pub fn status(plan: &Plan) -> Result<String> {
    let Some(s) = current(plan)? else {
        return Ok(format!(
            "no CA rotation under way; the CA is {}\n",
            current_ca_paths(plan).map(|(c, _)| c).unwrap_or_else(|_| plan.pki().ca().cert).display()
        ));
    };
    let step = match s.phase {
        Phase::TrustBoth => 1,
        Phase::Reissue => 2,
        Phase::DropOld => 3,
    };
    let mut out = if s.waiting_for_operator {
        format!("CA rotation waiting for the operator before step {step} of 3 ({:?}):\n{}", s.phase, instructions(plan, stop_before(s.phase)))
    } else {
        format!(
            "CA rotation in step {step} of 3 ({:?}); members done in this step: {}; `rotate ca` resumes it\n",
            s.phase,
            if s.done.is_empty() { "none".to_string() } else { s.done.join(", ") }
        )
    };
    out.push_str(&format!("record: {}\n", state_path(plan).display()));
    Ok(out)
}
