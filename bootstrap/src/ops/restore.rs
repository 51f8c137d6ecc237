//! `restore SNAPSHOT`: etcd's whole-cluster disaster recovery for the spec's members. The snapshot
//! is checked first (SHA-256 trailer, structure, revision); a HEALTHY cluster is refused unless
//! `--force`; every member is stopped and its data dir moved aside (never deleted); the snapshot
//! goes to each member's host only (a member on this machine reads it in place), where etcd's own
//! tool (etcdutl, or 3.4's etcdctl) restores it with the spec's names and peer URLs and a new
//! cluster token, the revision raised past the old history; then all members start together,
//! and the cluster must be HEALTHY at the snapshot's revision or later, with a new cluster ID.
//! Progress is recorded in `etcd/restore.json`: an interrupted restore resumes when run again
//! with the same snapshot.

use crate::error::{BootError, Result};
use crate::host::scripts;
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::run::context::Ctx;
use crate::run::live::{host_err, per_member};
use etcdctl_lite::quorum::ClusterState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RestoreState {
    snapshot_sha256: String,
    token: String,
    revision: i64,
    /// Members whose data dir holds the restored snapshot.
    restored: Vec<String>,
    #[serde(default)]
    old_cluster_id: Option<u64>,
    /// The old cluster's revision when the restore began (if it answered).
    #[serde(default)]
    old_revision: Option<i64>,
    /// How much every member's revision is raised (0: a host's tool cannot); decided once, so a
    /// resumed restore gives every member the same revision.
    #[serde(default)]
    bump: u64,
}

/// Without the old cluster's revision, the bump is this: more than any cluster's history between
/// a snapshot and a disaster (int64 revisions leave room for billions of such restores).
const BUMP_UNKNOWN: u64 = 1_000_000_000;
/// Above the old cluster's revision read at the start: writes between that reading and the stop.
const BUMP_MARGIN: u64 = 1_000_000;

/// The revision raise: past the old history, if every host's tool can do it (etcdutl 3.5.10+).
pub fn bump_for(snapshot_revision: i64, old_revision: Option<i64>, all_can: bool) -> u64 {
    match (all_can, old_revision) {
        (false, _) => 0,
        (true, Some(old)) => u64::try_from(old.saturating_sub(snapshot_revision)).unwrap_or(0) + BUMP_MARGIN,
        (true, None) => BUMP_UNKNOWN,
    }
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot_revision: i64,
    pub snapshot_keys: u64,
    pub revision_now: i64,
    pub cluster_id: String,
    pub old_cluster_id: Option<String>,
    /// The old cluster's revision at the start, when it answered.
    pub old_revision: Option<i64>,
    /// How much the revision was raised, the history below marked compacted (0: not possible
    /// with the hosts' tools, and the revision went back to the snapshot's).
    pub bumped_by: u64,
    /// Where each member's previous data dir went.
    pub moved: Vec<String>,
}

fn state_path(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd").join("restore.json")
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> BootError {
    BootError::Output { path: path.display().to_string(), reason: reason.to_string() }
}

fn load_state(plan: &Plan) -> Result<Option<RestoreState>> {
    crate::run::live::load_record(&state_path(plan), "an interrupted restore")
}

fn save_state(plan: &Plan, s: &RestoreState) -> Result<()> {
    crate::run::live::save_record(&state_path(plan), s, 0o600)
}

/// `snapshot`: the file to restore (an in-memory one after decryption); `label`: how to name
/// it to the operator.
pub fn restore(ctx: &Ctx, snapshot: &Path, label: &str, force: bool, wait: Duration) -> Result<RestoreReport> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    // 1. the snapshot, before anything is touched
    let t = Instant::now();
    let (status, trailer) =
        etcdctl_lite::snapshot_status::verify(snapshot).map_err(|e| BootError::Precondition { what: "restore".into(), reason: e.to_string() })?;
    // etcd's SHA-256 of the snapshot's data, just verified: it names the snapshot in the record
    let Some(sha) = trailer else {
        return Err(file_err(
            snapshot,
            "has no SHA-256 trailer: not a snapshot saved from etcd (`backup` or `snapshot save` make one); refusing to restore it",
        ));
    };
    progress.step("snapshot", &format!("{label}: revision {}, {} keys, checksum verified", status.revision, status.total_key), Some(t.elapsed()));
    let mut state = match load_state(plan)? {
        Some(s) if s.snapshot_sha256 == sha => {
            progress.step("restore", &format!("resuming: {} of {} members restored", s.restored.len(), plan.members.len()), None);
            s
        }
        Some(s) => {
            return Err(BootError::Precondition {
                what: "restore".into(),
                reason: format!(
                    "another restore (snapshot sha256 {}) is under way: finish it by running restore with that snapshot, or remove {} if you abandoned it",
                    &s.snapshot_sha256[..12],
                    state_path(plan).display()
                ),
            });
        }
        None => {
            // every host answers and has room for the snapshot, before any member is stopped
            let size = std::fs::metadata(snapshot).map(|m| m.len()).unwrap_or(0);
            ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), size * 2, "restore")?;
            begin(ctx, &sha, status.revision, force, progress)?
        }
    };
    ctx.changing("stop, move data aside, restore")?;
    // 2. every member stopped, its data moved aside, the snapshot restored there
    let moved = restore_members(ctx, snapshot, &sha, &mut state, progress)?;
    // 3. all start together, 4. HEALTHY at the snapshot's revision or later
    start_all(ctx)?;
    let t = Instant::now();
    let v = ctx.wait_healthy(wait, "starting the restored members")?;
    progress.step("quorum", &format!("{}: {}", v.state.word(), v.summary), Some(t.elapsed()));
    let (revision_now, cluster_id) = current_revision(ctx)?;
    let floor = status.revision.saturating_add(i64::try_from(state.bump).unwrap_or(i64::MAX));
    if revision_now < floor {
        return Err(BootError::Verification(format!(
            "the restored cluster is at revision {revision_now}, below the snapshot's {} raised by {}",
            status.revision, state.bump
        )));
    }
    for m in &plan.members {
        let _ = ctx.run_on(m, &crate::host::scripts::remove_file(&delivered_path(m, &sha)));
    }
    // out of the journal first: killed before the record goes, the record still says "resume"
    ctx.finished()?;
    let _ = std::fs::remove_file(state_path(plan));
    if state.bump == 0 {
        progress.step("restore", "warning: the revision went back to the snapshot's (the hosts' etcd tool cannot raise it; etcdutl 3.5.10+ can, etcd 3.4's etcdctl cannot): Kubernetes clients that resume a watch miss changes until restarted", None);
    }
    Ok(RestoreReport {
        old_revision: state.old_revision,
        bumped_by: state.bump,
        snapshot_revision: status.revision,
        snapshot_keys: status.total_key,
        revision_now,
        cluster_id: format!("{cluster_id:x}"),
        old_cluster_id: state.old_cluster_id.map(|c| format!("{c:x}")),
        moved,
    })
}

/// What the operator does with kube-apiserver around a restore, node by node: stopped before
/// (it would keep serving its cache of the old cluster), started after. `bumped`: whether the
/// restored revision was raised, which is what makes every watching client re-list on its own.
pub fn kubernetes_steps(plan: &Plan, when: Around, bumped: bool) -> String {
    let nodes = &plan.loaded.spec.kubernetes.control_plane_nodes;
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    // an adopted cluster's spec may not name the nodes
    let which = if names.is_empty() { String::new() } else { format!("{}: ", names.join(", ")) };
    match when {
        Around::Before => format!(
            "stop kube-apiserver on every control-plane node first ({which}move /etc/kubernetes/manifests/kube-apiserver.yaml out of that folder, or stop its service)"
        ),
        Around::After => {
            let mut out = String::from(
                "next, on each control-plane node, start kube-apiserver again (move kube-apiserver.yaml back into /etc/kubernetes/manifests/) and wait until it is Ready:\n",
            );
            for n in nodes {
                out.push_str(&format!("  {}: start kube-apiserver\n", n.name));
            }
            out.push_str(if bumped {
                "controllers, schedulers, kubelets and every other watching client need no restart: their resourceVersions are below the raised revision, marked compacted, so each gets \"410 Gone\" and re-lists\n"
            } else {
                "then restart kube-controller-manager, kube-scheduler, every kubelet and every other client that watches: the revision went back, and a client resuming a watch from its old resourceVersion silently misses changes\n"
            });
            out
        }
    }
}

/// Before or after the restore, for [`kubernetes_steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Around {
    Before,
    After,
}

/// A new restore: refused on a HEALTHY cluster without `force`; the old cluster ID noted.
fn begin(ctx: &Ctx, sha: &str, revision: i64, force: bool, progress: &Progress) -> Result<RestoreState> {
    let plan = ctx.plan;
    let v = ctx.verdict()?;
    if v.state == ClusterState::Healthy && !force {
        return Err(BootError::Precondition {
            what: "restore".into(),
            reason: format!(
                "the cluster is HEALTHY ({}); a restore replaces everything written since the snapshot. If that is what you want, {}, then run again with --force",
                v.summary,
                kubernetes_steps(plan, Around::Before, true)
            ),
        });
    }
    progress.step("restore", &format!("cluster {}: {}", v.state.word(), v.summary), None);
    // said before any member stops, in a disaster too (no refusal has said it then)
    progress.step("kubernetes", &kubernetes_steps(plan, Around::Before, true), None);
    // the spec's etcd older than the members run (an `upgrade` not written into the spec): the
    // restore would silently take the cluster back to it, and its tool may not raise the revision
    ctx.refuse_downgrades(&plan.members.iter().collect::<Vec<_>>())?;
    let old = current_revision(ctx).ok();
    let tools = per_member(plan, |m| ctx.run_on(m, &scripts::restore_tool_probe(m)));
    let mut all_can = true;
    for (m, t) in plan.members.iter().zip(tools) {
        let out = t?;
        if out.value("bump").as_deref() != Some("yes") {
            all_can = false;
            progress.step(&format!("restore {}", m.name()), &format!("{} cannot raise the revision", out.value("tool").unwrap_or_default()), None);
        }
    }
    let old_revision = old.map(|(r, _)| r);
    let bump = bump_for(revision, old_revision, all_can);
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let s = RestoreState {
        snapshot_sha256: sha.to_string(),
        token: format!("{}-restored-{stamp}", plan.token),
        revision,
        restored: vec![],
        old_cluster_id: old.map(|(_, id)| id),
        old_revision,
        bump,
    };
    save_state(plan, &s)?;
    Ok(s)
}

fn delivered_path(m: &MemberPlan, sha: &str) -> String {
    m.spec.run_dir.join(format!("restore-{}.db", &sha[..16])).display().to_string()
}

/// Stops every member not yet restored, moves its data dir aside, delivers the snapshot and
/// restores it (members in parallel); records each success.
fn restore_members(ctx: &Ctx, snapshot: &Path, sha: &str, state: &mut RestoreState, progress: &Progress) -> Result<Vec<String>> {
    let plan = ctx.plan;
    let initial = plan.initial_cluster();
    let pending: Vec<&MemberPlan> = plan.members.iter().filter(|m| !state.restored.contains(&m.spec.name)).collect();
    // every member stops first (none may run on its old data while others are restored), the
    // leader last: stopped with the others, it waits for a leadership transfer that cannot finish
    let t = Instant::now();
    let stops =
        ctx.leader_last(|m| if pending.iter().any(|p| p.spec.name == m.spec.name) { ctx.run_on(m, &scripts::retire_now(m)).map(Some) } else { Ok(None) });
    let mut moved = Vec::new();
    for (m, r) in plan.members.iter().zip(stops) {
        if let Some(out) = r? {
            let what = out.value("moved").map(|to| format!("stopped; old data dir moved to {to}")).unwrap_or_else(|| "stopped; no old data".into());
            moved.extend(out.value("moved").map(|to| format!("{}: {to}", m.spec.name)));
            progress.step(&format!("retire {}", m.name()), &what, None);
        }
    }
    progress.step("stop", &format!("{} members stopped, the leader last", pending.len()), Some(t.elapsed()));
    // one live line on a terminal for the snapshot going to every member that needs a copy
    let sending = pending.iter().filter(|m| !ctx.transport(m).shares_files()).count() as u64;
    let size = std::fs::metadata(snapshot).map(|md| md.len()).unwrap_or(0);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watched = sent.clone();
    let live = (sending > 0)
        .then(|| progress.watch(&format!("snapshot to {sending} member(s)"), Some(size * sending), move || watched.load(std::sync::atomic::Ordering::Relaxed)));
    let results = per_member(plan, |m| {
        if !pending.iter().any(|p| p.spec.name == m.spec.name) {
            return Ok(None);
        }
        let t = Instant::now();
        // etcd's tool only reads the snapshot: a member on this machine reads it in place
        let path = match snapshot.canonicalize() {
            Ok(here) if ctx.transport(m).shares_files() => here.display().to_string(),
            _ => {
                let path = delivered_path(m, sha);
                ctx.put_path(m, &path, 0o600, snapshot, &sent)?;
                path
            }
        };
        let out = ctx.run_on(m, &scripts::restore_snapshot(m, &path, &initial, &state.token, state.bump))?;
        if !out.ok() {
            return Err(host_err(m, "restoring the snapshot", &out));
        }
        Ok(Some((out.value("restored").unwrap_or_default(), t.elapsed())))
    });
    drop(live);
    let mut failed = Vec::new();
    for (m, r) in plan.members.iter().zip(results) {
        match r {
            Ok(Some((tool, took))) => {
                progress.step(&format!("restore {}", m.name()), &format!("data dir restored with {tool}"), Some(took));
                state.restored.push(m.spec.name.clone());
            }
            Ok(None) => {}
            Err(e) => failed.push(e.to_string()),
        }
    }
    save_state(plan, state)?;
    if failed.is_empty() {
        Ok(moved)
    } else {
        Err(BootError::Members { what: "restoring (run restore again with the same snapshot to resume)".into(), failures: failed })
    }
}

fn start_all(ctx: &Ctx) -> Result<()> {
    let plan = ctx.plan;
    let starts = per_member(plan, |m| {
        let out = ctx.start_member(m)?;
        if out.ok() { Ok(()) } else { Err(host_err(m, "starting etcd", &out)) }
    });
    let failed: Vec<String> = starts.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    if failed.is_empty() { Ok(()) } else { Err(BootError::Members { what: "starting etcd".into(), failures: failed }) }
}

/// The highest revision and the cluster ID the members report.
fn current_revision(ctx: &Ctx) -> Result<(i64, u64)> {
    let (opts, rt) = ctx.etcd.client()?;
    let statuses = rt.block_on(etcdctl_lite::ops::status(&opts));
    statuses
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .map(|s| (s.revision, s.cluster_id))
        .max()
        .ok_or_else(|| BootError::Verification("no member answers a status request".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_raised_past_the_old_history_or_not_at_all() {
        // the old cluster answered at 5000, the snapshot is at 270: past 5000, with a margin
        assert_eq!(bump_for(270, Some(5000), true), 4730 + BUMP_MARGIN);
        // a snapshot newer than what was read (the old cluster was behind): the margin alone
        assert_eq!(bump_for(900, Some(300), true), BUMP_MARGIN);
        // the old cluster did not answer: a bound no history since a snapshot reaches
        assert_eq!(bump_for(270, None, true), BUMP_UNKNOWN);
        // one host's tool cannot: no member bumps (they must all restore to one revision)
        assert_eq!(bump_for(270, Some(5000), false), 0);
    }

    #[test]
    fn kube_apiserver_is_stopped_before_and_started_after_on_every_node() {
        let c = crate::run::fakes::cluster();
        let nodes: Vec<String> = c.plan.loaded.spec.kubernetes.control_plane_nodes.iter().map(|n| n.name.clone()).collect();
        assert!(!nodes.is_empty());
        let before = kubernetes_steps(&c.plan, Around::Before, true);
        assert!(before.starts_with("stop kube-apiserver on every control-plane node first") && before.contains(&nodes.join(", ")), "{before}");
        let after = kubernetes_steps(&c.plan, Around::After, true);
        for n in &nodes {
            assert!(after.contains(&format!("  {n}: start kube-apiserver\n")), "{after}");
        }
        assert!(after.contains("need no restart") && after.contains("410 Gone"), "{after}");
        // without the raise, the watching clients must be restarted, and it says so
        let unbumped = kubernetes_steps(&c.plan, Around::After, false);
        assert!(unbumped.contains("restart kube-controller-manager") && unbumped.contains("silently misses changes"), "{unbumped}");
    }
}
