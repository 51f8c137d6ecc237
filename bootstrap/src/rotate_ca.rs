//! `rotate ca`: replacing the etcd CA without downtime. etcd re-reads its certificate and key on
//! every handshake but never reloads its CA bundle, so the CA changes in three rolling phases,
//! each member gated on a HEALTHY verdict before the next:
//!
//! 1. trust-both: every member (and kube-apiserver's folder) trusts old + new; rolling restart;
//! 2. reissue: every leaf re-issued by the new CA (new keys) and delivered (no restart needed);
//! 3. drop-old: the bundle becomes the new CA only; rolling restart; the new CA becomes the CA of
//!    the PKI directory (the old one kept as a backup) and the CRL is re-signed.
//!
//! Progress is recorded in `etcd/ca-rotation.json` after every member, so an interrupted rotation
//! resumes where it stopped.

use crate::error::{BootError, Result};
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::run::{self, run_on, SCRIPT_LIMIT};
use crate::scripts;
use crate::transport;
use etcdctl_lite::quorum::ClusterState;
use pki::cluster::Role;
use pki::files::{self, PlannedFile};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    TrustBoth,
    Reissue,
    DropOld,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationState {
    pub phase: Phase,
    /// Members finished in the current phase.
    pub done: Vec<String>,
    /// Leaves re-issued by the new CA (phase 2, operator side).
    #[serde(default)]
    pub reissued: bool,
}

fn etcd_dir(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd")
}
pub fn bundle_path(plan: &Plan) -> PathBuf {
    etcd_dir(plan).join("ca-bundle.crt")
}
fn state_path(plan: &Plan) -> PathBuf {
    etcd_dir(plan).join("ca-rotation.json")
}
fn new_ca_paths(plan: &Plan) -> (PathBuf, PathBuf) {
    (etcd_dir(plan).join("ca-new.crt"), etcd_dir(plan).join("ca-new.key"))
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| BootError::Output { path: p.display().to_string(), reason: e.to_string() })
}

fn save(plan: &Plan, state: &RotationState) -> Result<()> {
    let json = serde_json::to_string_pretty(state).unwrap_or_default() + "\n";
    files::write_atomic(&state_path(plan), json.as_bytes(), 0o644)?;
    Ok(())
}

/// Delivers `ca_pem` as the member's CA file (operator copy too), then restarts the member.
fn restart_with_ca(plan: &Plan, m: &MemberPlan, ca_pem: &[u8], wait: Duration, progress: &Progress, what: &str) -> Result<()> {
    let t = Instant::now();
    let pki = plan.pki();
    files::write_all(&[PlannedFile::public(pki.ca_copy_in(&pki.member_dir(&m.spec.name)), ca_pem.to_vec())], true)?;
    let dest = m.spec.pki_dir.join("etcd/ca.crt").display().to_string();
    let tr = transport::for_member(&m.spec);
    tr.deliver(&[(dest, 0o644, ca_pem.to_vec())], SCRIPT_LIMIT)
        .map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: tr.describe(), reason })?;
    // etcd reads its CA bundle only at start
    let stop = run_on(m, &scripts::stop(m, None))?;
    let start = crate::run::start_member(m, &plan.token)?;
    if !stop.ok() || !start.ok() {
        return Err(run::host_err(m, "restarting etcd", if start.ok() { &stop } else { &start }));
    }
    wait_healthy(plan, wait, &m.spec.name)?;
    progress.step(&format!("{what} {}", m.spec.name), "restarted with the new CA bundle; cluster HEALTHY", Some(t.elapsed()));
    Ok(())
}

/// Restarts every member not yet done in this phase with `ca_pem`, recording each.
fn rolling_restart(plan: &Plan, state: &mut RotationState, ca_pem: &[u8], wait: Duration, progress: &Progress, what: &str) -> Result<()> {
    for m in &plan.members {
        if state.done.contains(&m.spec.name) {
            continue;
        }
        restart_with_ca(plan, m, ca_pem, wait, progress, what)?;
        state.done.push(m.spec.name.clone());
        save(plan, state)?;
    }
    Ok(())
}

fn wait_healthy(plan: &Plan, wait: Duration, member: &str) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let v = run::verdict(plan)?;
        if v.state == ClusterState::Healthy {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(format!(
                "after {member}: not HEALTHY within {}s ({}: {}); the rotation stopped here and resumes when run again",
                wait.as_secs(),
                v.state.word(),
                v.summary
            )));
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

pub fn rotate_ca(plan: &Plan, wait: Duration, progress: &Progress) -> Result<()> {
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let pki = plan.pki();
    let ca_pair = pki.ca();
    let (new_cert, new_key) = new_ca_paths(plan);
    let mut state = match std::fs::read(state_path(plan)) {
        Ok(b) => {
            let s: RotationState = serde_json::from_slice(&b).map_err(|e| BootError::Output { path: state_path(plan).display().to_string(), reason: e.to_string() })?;
            progress.step("rotate ca", &format!("resuming in phase {:?} after {:?}", s.phase, s.done), None);
            // A member may have been stopped mid-restart, and the interrupted run's stop script
            // may still be finishing: keep starting whatever is not running (idempotent) until
            // the cluster is healthy again.
            let deadline = Instant::now() + wait;
            loop {
                for m in &plan.members {
                    let _ = crate::run::start_member(m, &plan.token);
                }
                let v = run::verdict(plan)?;
                if v.state == ClusterState::Healthy {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(BootError::NotHealthy(format!("cannot resume: not HEALTHY within {}s ({})", wait.as_secs(), v.summary)));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            s
        }
        Err(_) => {
            let v = run::verdict(plan)?;
            if v.state != ClusterState::Healthy {
                return Err(BootError::NotHealthy(format!("refusing to rotate the CA: the cluster is {} ({}); fix it first", v.state.word(), v.summary)));
            }
            if !new_cert.exists() {
                let old = pki::ca::Ca::load_files(&ca_pair.cert, &ca_pair.key)?;
                let opts = pki::ca::CaOptions { algorithm: old.key().algorithm(), ..pki::ca::CaOptions::default() };
                let ca = pki::ca::Ca::create(&opts)?;
                files::write_all(&[PlannedFile::public(&new_cert, ca.cert_pem()), PlannedFile::ca_key(&new_key, ca.key().to_pkcs8_pem())], false)?;
                progress.step("rotate ca", &format!("new CA in {}", new_cert.display()), None);
            }
            let s = RotationState { phase: Phase::TrustBoth, done: vec![], reissued: false };
            save(plan, &s)?;
            s
        }
    };
    let old_pem = read(&ca_pair.cert)?;
    let new_pem = read(&new_cert)?;
    let mut both = old_pem.clone();
    both.extend_from_slice(&new_pem);

    if state.phase == Phase::TrustBoth {
        files::write_atomic(&bundle_path(plan), &both, 0o644)?;
        control_plane_ca(plan, &both)?;
        rolling_restart(plan, &mut state, &both, wait, progress, "trust old+new")?;
        state = RotationState { phase: Phase::Reissue, done: vec![], reissued: false };
        save(plan, &state)?;
    }

    if state.phase == Phase::Reissue {
        let new_ca = pki::ca::Ca::load_files(&new_cert, &new_key)?;
        if !state.reissued {
            let t = Instant::now();
            let roles = pki::renew::all_targets(&pki);
            let n = pki::renew::renew(&plan.issue.dir, &new_ca, &roles, plan.issue.validity, true)?.len();
            state.reissued = true;
            save(plan, &state)?;
            progress.step("reissue", &format!("{n} certificates re-issued by the new CA with new keys"), Some(t.elapsed()));
        }
        for m in &plan.members {
            if state.done.contains(&m.spec.name) {
                continue;
            }
            let t = Instant::now();
            let files_to = m
                .read_files(|f| !f.dest.ends_with("ca.crt"))
                .map_err(|e| BootError::Output { path: m.spec.name.clone(), reason: e.to_string() })?;
            let tr = transport::for_member(&m.spec);
            tr.deliver(&files_to, SCRIPT_LIMIT).map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: tr.describe(), reason })?;
            // etcd re-reads its certificate on each handshake: the next one must show the new one
            let want = pki::pemfile::first_certificate(&read(&pki.leaf(&Role::Server(m.spec.name.clone())).cert)?, "server.crt")?;
            let opts = run::client_options(plan)?;
            let deadline = Instant::now() + wait;
            while opts.tls.as_ref().and_then(|tls| etcdctl_lite::diagnose::presented_certificate(&m.spec.client_url(), tls, Duration::from_secs(1))).as_deref() != Some(&want[..]) {
                if Instant::now() > deadline {
                    return Err(BootError::NotHealthy(format!("member {} still serves its old certificate after {}s", m.spec.name, wait.as_secs())));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            wait_healthy(plan, wait, &m.spec.name)?;
            progress.step(&format!("reissue {}", m.spec.name), "serves its certificate from the new CA; cluster HEALTHY", Some(t.elapsed()));
            state.done.push(m.spec.name.clone());
            save(plan, &state)?;
        }
        // kube-apiserver's client certificate from the new CA, while it still trusts both
        write_control_plane_client(plan)?;
        state = RotationState { phase: Phase::DropOld, done: vec![], reissued: true };
        save(plan, &state)?;
    }

    if state.phase == Phase::DropOld {
        control_plane_ca(plan, &new_pem)?;
        rolling_restart(plan, &mut state, &new_pem, wait, progress, "trust new only")?;
        // the new CA becomes the directory's CA; the old one is kept as a backup
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let bak = |p: &Path| p.with_file_name(format!("{}.{stamp}.bak", p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        let old_key = read(&ca_pair.key)?;
        let new_key_pem = read(&new_key)?;
        files::write_all(
            &[
                PlannedFile::public(bak(&ca_pair.cert), old_pem.clone()),
                PlannedFile::secret(bak(&ca_pair.key), old_key),
                PlannedFile::public(&ca_pair.cert, new_pem.clone()),
                PlannedFile::secret(&ca_pair.key, new_key_pem),
            ],
            true,
        )?;
        let ca = pki::ca::Ca::load_files(&ca_pair.cert, &ca_pair.key)?;
        pki::crl::refresh(&plan.issue.dir, &ca)?;
        for p in [new_cert, new_key, bundle_path(plan), state_path(plan)] {
            let _ = std::fs::remove_file(p);
        }
        // CRL to the members; control-plane folders and HAProxy regenerated from the directory
        for m in &plan.members {
            let crl = m.files.iter().find(|f| f.dest.ends_with("crl.pem"));
            if let Some(f) = crl {
                let tr = transport::for_member(&m.spec);
                tr.deliver(&[(f.dest.display().to_string(), f.mode, read(&f.source)?)], SCRIPT_LIMIT)
                    .map_err(|reason| BootError::Host { member: m.spec.name.clone(), host: tr.describe(), reason })?;
            }
        }
        crate::outputs::write(plan, crate::outputs::existing_api(plan))?;
        wait_healthy(plan, wait, "the last member")?;
        progress.step("rotate ca", "done: every member trusts and serves only the new CA; copy out/control-plane/NODE/ to each node and restart kube-apiserver there", None);
    }
    Ok(())
}

/// kube-apiserver's CA file in every control-plane folder.
fn control_plane_ca(plan: &Plan, ca_pem: &[u8]) -> Result<()> {
    let pki = plan.pki();
    let mut planned = vec![PlannedFile::public(pki.ca_copy_in(&pki.control_plane_dir()), ca_pem.to_vec())];
    for n in &plan.loaded.spec.kubernetes.control_plane_nodes {
        let p = plan.loaded.output_dir.join("control-plane").join(&n.name).join(crate::kubeadm::CA_FILE.trim_start_matches('/'));
        if p.exists() {
            planned.push(PlannedFile::public(p, ca_pem.to_vec()));
        }
    }
    files::write_all(&planned, true)?;
    Ok(())
}

/// kube-apiserver's client certificate and key in every control-plane folder.
fn write_control_plane_client(plan: &Plan) -> Result<()> {
    let pki = plan.pki();
    let pair = pki.leaf(&Role::ApiserverEtcdClient);
    let (cert, key) = (read(&pair.cert)?, read(&pair.key)?);
    let mut planned = Vec::new();
    for n in &plan.loaded.spec.kubernetes.control_plane_nodes {
        let root = plan.loaded.output_dir.join("control-plane").join(&n.name);
        if root.exists() {
            planned.push(PlannedFile::public(root.join(crate::kubeadm::CERT_FILE.trim_start_matches('/')), cert.clone()));
            planned.push(PlannedFile::secret(root.join(crate::kubeadm::KEY_FILE.trim_start_matches('/')), key.clone()));
        }
    }
    files::write_all(&planned, true)?;
    Ok(())
}
