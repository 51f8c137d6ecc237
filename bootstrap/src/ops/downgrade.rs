//! `downgrade --to ARCHIVE_OR_DIR`: one minor back (3.7 -> 3.6, 3.6 -> 3.5) with the cluster
//! serving writes, the way etcd's downgrade guides say: every member HEALTHY and on one version,
//! a verified backup first, `downgrade validate` (changes nothing) before any change, then
//! `downgrade enable` (the cluster version drops to the target at once and every member migrates
//! its storage to it), a wait for every member's storage version, then member by member, the
//! leader last: deliver the binaries, restart on them, wait for the member's version. etcd ends
//! the downgrade itself once every member runs the target. Progress is recorded in
//! `etcd/downgrade.json`, so an interrupted downgrade resumes; `downgrade --cancel` stops one
//! that cannot finish and hands the members already moved back to `upgrade`.

use crate::error::{BootError, Result};
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::run::rolling::{
    Roll, RollReport, RollState, backup_dir, bin_dir_of, load, member_versions, refuse_owned_binaries, save, state_path, swap_binary, wait_cluster_version,
};
use crate::spec::versions::Version;
use etcdctl_lite::maintenance::Downgrade;
use etcdctl_lite::quorum::Role;
use serde::Serialize;
use std::time::{Duration, Instant};

/// etcd's rules for a downgrade: from 3.6 or later (the API came in 3.6), exactly one minor back,
/// to a patch at or above the floor etcd's upgrade guide sets for the way up (the same
/// membership bugs bite on the way down). `Ok(false)`: already there.
pub fn check_step(from: Version, to: Version) -> std::result::Result<bool, String> {
    if to == from {
        return Ok(false);
    }
    if from < Version(3, 6, 0) {
        return Err(format!(
            "etcd {from} has no downgrade API (it came in 3.6): restore a backup taken before the upgrade instead (etcd-bootstrap restore SNAPSHOT)"
        ));
    }
    if to >= from || to.0 == from.0 && to.1 == from.1 {
        return Err(format!("{from} -> {to} is not one minor back: within a minor or up, use etcd-bootstrap upgrade --to"));
    }
    if to.0 != from.0 || to.1 + 1 != from.1 {
        return Err(format!("{from} -> {to} skips a minor version: downgrade one minor at a time ({from} -> {}.{}.x first)", from.0, from.1 - 1));
    }
    for (minor, floor) in [(5, Version(3, 5, 32)), (6, Version(3, 6, 11))] {
        if to.1 == minor && to < floor {
            return Err(format!(
                "{from} -> {to}: go down to {floor} or later (the newest {}.{} patch): older {}.{} patches have membership bugs etcd fixed for the way between minors",
                to.0, to.1, to.0, to.1
            ));
        }
    }
    Ok(true)
}

/// The target as etcd's downgrade API names it: `3.6`.
fn minor(v: Version) -> String {
    format!("{}.{}", v.0, v.1)
}

pub fn downgrade(ctx: &Ctx, to: &str, sha256: Option<&str>, dry_run: bool, wait: Duration) -> Result<RollReport> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let crate::run::rolling::Begun { _lock, release, state, versions, from } = crate::run::rolling::begin(ctx, Roll::Downgrade, to, sha256, wait)?;
    let needed = check_step(from, release.version).map_err(|e| BootError::Preflight(vec![e]))?;
    let pending = leader_last(ctx, plan.members.iter().filter(|m| versions.iter().any(|(n, v)| *n == m.spec.name && *v != Some(release.version))).collect());
    refuse_owned_binaries(ctx, &pending)?;
    if needed {
        refuse_unknown_settings(ctx, from)?;
    }
    let target = minor(release.version);
    let enabled = state.as_ref().is_some_and(|s| s.enabled) || enabled_to(ctx, &target);
    if needed && !enabled {
        // etcd's own check, read-only: refuses while members disagree or the target is wrong
        ctx.etcd
            .downgrade(&Downgrade::Validate(target.clone()))
            .map_err(|e| BootError::Preflight(vec![format!("etcd refuses a downgrade to {target}: {e}")]))?;
    }
    let mut steps = vec![
        format!("backup to {}", backup_dir(plan).display()),
        format!("enable etcd's downgrade to {target}; wait until every member's storage version is {target}.0"),
    ];
    steps.extend(pending.iter().map(|m| {
        format!(
            "{}: deliver etcd {} to {}, restart on it (leadership handed off first if it leads), wait HEALTHY",
            m.spec.name,
            release.version,
            bin_dir_of(m).display()
        )
    }));
    steps.push(format!("check the cluster version reports {target}"));
    if dry_run || !needed && pending.is_empty() {
        let cluster_version = crate::run::rolling::cluster_version(ctx).unwrap_or_default();
        return Ok(RollReport {
            from: from.to_string(),
            to: release.version.to_string(),
            moved: vec![],
            cluster_version,
            backup: None,
            steps: if needed || !pending.is_empty() { steps } else { vec![] },
        });
    }
    let mut state = match state {
        Some(s) if s.backup.is_some() => s,
        _ => {
            let t = Instant::now();
            let b = crate::backup::backup(ctx, &backup_dir(plan), None, None)?;
            progress.step("downgrade", &format!("backup {} taken before any change", b.path), Some(t.elapsed()));
            RollState { to: release.version.to_string(), from: from.to_string(), done: vec![], backup: Some(b.path), enabled: false }
        }
    };
    save(plan, Roll::Downgrade, &state)?;
    ctx.changing("downgrade enable")?;
    if !state.enabled {
        if !enabled_to(ctx, &target) {
            ctx.etcd.downgrade(&Downgrade::Enable(target.clone()))?;
        }
        state.enabled = true;
        save(plan, Roll::Downgrade, &state)?;
    }
    let t = Instant::now();
    wait_storage(ctx, &target, wait)?;
    progress.step("downgrade", &format!("enabled; every member's storage version is {target}.0"), Some(t.elapsed()));
    let mut moved = Vec::new();
    let live = progress.rounds(crate::progress::Unit::Members, pending.len() as u64);
    for (i, m) in pending.iter().enumerate() {
        live.at(&format!("downgrade {} to etcd {}", m.name(), release.version), i as u64);
        let t = Instant::now();
        ctx.changing(&format!("downgrade {}", m.name()))?;
        swap_binary(ctx, m, &release, wait)?;
        state.done.push(m.spec.name.clone());
        save(plan, Roll::Downgrade, &state)?;
        progress.step(&format!("downgrade {}", m.name()), &format!("runs etcd {}; cluster HEALTHY", release.version), Some(t.elapsed()));
        moved.push(m.spec.name.clone());
    }
    drop(live);
    let cluster_version = wait_cluster_version(ctx, release.version, wait)?;
    wait_ended(ctx, wait)?;
    // out of the journal first: killed before the record goes, the record still says "resume"
    ctx.finished()?;
    let _ = std::fs::remove_file(state_path(plan, Roll::Downgrade));
    Ok(RollReport { from: state.from, to: release.version.to_string(), moved, cluster_version, backup: state.backup, steps })
}

/// An adopted member configured with a name the older minor does not know (3.5 lacks 3.6's names
/// for the experimental flags and its feature gates) is refused before any change, each setting
/// named with the older name: adoption never edits the operator's setup.
fn refuse_unknown_settings(ctx: &Ctx, from: Version) -> Result<()> {
    let mut problems = Vec::new();
    for m in ctx.plan.members.iter().filter(|m| m.spec.adopted.is_some()) {
        let Some(effective) = crate::in_place::adopted_settings(ctx, m, "downgrade")? else { continue };
        let (previous, found) = crate::adopt::next_minor::unknown_to_previous(from, &effective);
        for b in found {
            problems.push(format!(
                "member {}: {}: {} — instead: {}, in its own setup (adoption never edits it); then downgrade to {}.{} again",
                m.spec.name, b.written, b.effect, b.fix, previous.0, previous.1
            ));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// `members` with the one that leads now last (etcd's guides: the leader is downgraded last).
fn leader_last<'a>(ctx: &Ctx, mut members: Vec<&'a MemberPlan>) -> Vec<&'a MemberPlan> {
    let leader = ctx.verdict().ok().and_then(|v| v.members.into_iter().find(|x| x.role == Role::Leader)).map(|x| x.name);
    members.sort_by_key(|m| Some(&m.spec.name) == leader.as_ref());
    members
}

/// Whether a member says etcd's downgrade to `target` (`3.6`) is enabled.
fn enabled_to(ctx: &Ctx, target: &str) -> bool {
    let want = format!("{target}.");
    ctx.plan.members.iter().filter_map(|m| ctx.etcd.storage_of(&m.spec.client_url())).any(|s| s.downgrade.is_some_and(|(t, on)| on && t.starts_with(&want)))
}

/// Every member migrates its storage to the target once the downgrade is enabled (on its next
/// storage version check, seconds): a member restarted on the older binary before that would
/// not start. Bounded by `wait`.
fn wait_storage(ctx: &Ctx, target: &str, wait: Duration) -> Result<()> {
    let want = format!("{target}.0");
    let deadline = Instant::now() + wait;
    loop {
        let behind: Vec<String> = ctx
            .plan
            .members
            .iter()
            .filter(|m| ctx.etcd.storage_of(&m.spec.client_url()).is_some_and(|s| s.storage_version != want))
            .map(|m| m.spec.name.clone())
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::Verification(format!(
                "the storage version of {} is not {want} {}s after the downgrade was enabled; run the same command again, or stop it with etcd-bootstrap downgrade --cancel",
                behind.join(", "),
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// etcd ends the downgrade itself once every member runs the target (its leader checks every
/// few seconds); until then a member still says it is enabled. A 3.5 member says nothing.
fn wait_ended(ctx: &Ctx, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let enabled = ctx.plan.members.iter().filter_map(|m| ctx.etcd.storage_of(&m.spec.client_url())).any(|s| s.downgrade.is_some_and(|(_, on)| on));
        if !enabled {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::Verification(format!(
                "every member runs the target, but etcd still reports the downgrade enabled {}s later; run the same command again",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What `downgrade --cancel` did.
#[derive(Debug, Clone, Serialize)]
pub struct CancelReport {
    /// The cluster version etcd answered the cancel with.
    pub cluster_version: String,
    /// Members already on the older release, and the release they came from: `upgrade --to` it
    /// brings them back (its record is written, so it resumes).
    pub moved: Vec<String>,
    pub back_to: Option<String>,
}

/// Cancels etcd's downgrade (also one enabled by hand with etcdctl). Members already restarted
/// on the older release stay there; the upgrade back to where they came from is recorded, so
/// `upgrade --to` that release resumes it rather than starting from a mixed cluster.
pub fn cancel(ctx: &Ctx) -> Result<CancelReport> {
    let plan = ctx.plan;
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let state = load(plan, Roll::Downgrade)?;
    let any_enabled = plan.members.iter().filter_map(|m| ctx.etcd.storage_of(&m.spec.client_url())).any(|s| s.downgrade.is_some_and(|(_, on)| on));
    if state.is_none() && !any_enabled {
        return Err(BootError::Preflight(vec!["no downgrade to cancel: none is recorded here and no member reports one enabled".into()]));
    }
    ctx.changing("downgrade cancel")?;
    let cluster_version = if any_enabled { ctx.etcd.downgrade(&Downgrade::Cancel)? } else { crate::run::rolling::cluster_version(ctx).unwrap_or_default() };
    let (mut moved, mut back_to) = (Vec::new(), None);
    if let Some(s) = state {
        let versions = member_versions(ctx);
        moved = versions.iter().filter(|(_, v)| v.map(|v| v.to_string()) == Some(s.to.clone())).map(|(n, _)| n.clone()).collect();
        if !moved.is_empty() {
            let stayed = versions.iter().filter(|(_, v)| v.map(|v| v.to_string()) == Some(s.from.clone())).map(|(n, _)| n.clone()).collect();
            save(plan, Roll::Upgrade, &RollState { to: s.from.clone(), from: s.to.clone(), done: stayed, backup: s.backup.clone(), enabled: false })?;
            back_to = Some(s.from);
        }
    }
    ctx.finished()?;
    let _ = std::fs::remove_file(state_path(plan, Roll::Downgrade));
    Ok(CancelReport { cluster_version, moved, back_to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minor_back_from_36_on_to_a_patch_above_the_floor() {
        let v = |a, b, c| Version(a, b, c);
        assert_eq!(check_step(v(3, 7, 4), v(3, 6, 17)), Ok(true));
        assert_eq!(check_step(v(3, 6, 17), v(3, 5, 36)), Ok(true));
        assert_eq!(check_step(v(3, 6, 17), v(3, 6, 17)), Ok(false));
        assert!(check_step(v(3, 7, 4), v(3, 5, 36)).unwrap_err().contains("skips a minor"));
        assert!(check_step(v(3, 5, 36), v(3, 4, 23)).unwrap_err().contains("no downgrade API"));
        assert!(check_step(v(3, 6, 17), v(3, 7, 4)).unwrap_err().contains("use etcd-bootstrap upgrade"));
        assert!(check_step(v(3, 7, 4), v(3, 7, 3)).unwrap_err().contains("not one minor back"));
        assert!(check_step(v(3, 7, 4), v(3, 6, 10)).unwrap_err().contains("3.6.11 or later"));
        assert!(check_step(v(3, 6, 17), v(3, 5, 26)).unwrap_err().contains("3.5.32 or later"));
    }
}

#[cfg(test)]
#[path = "downgrade_tests.rs"]
mod fake_tests;
