//! `upgrade --to ARCHIVE_OR_DIR`: a rolling etcd upgrade with the cluster serving writes
//! throughout, by etcd's rules: one minor version at a time, never down, every member HEALTHY
//! first, a verified backup before anything changes, then member by member (leadership handed off
//! before the leader restarts): deliver the binaries, restart on the same data dir and flags with
//! the new binary, wait for HEALTHY and the member's new version. The cluster version moves to the
//! new minor once the last member runs it; that is checked at the end. Progress is recorded in
//! `etcd/upgrade.json`, so an interrupted upgrade resumes.

use crate::error::{BootError, Result};
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::run::rolling::{
    Roll, RollReport, RollState, backup_dir, bin_dir_of, cluster_version, refuse_owned_binaries, save, state_path, swap_binary, wait_cluster_version,
};
use crate::spec::versions::Version;
use std::time::{Duration, Instant};

/// etcd 3.6 has no v2 API and refuses to start on v2 store content: a member serving the v2 API
/// (`--enable-v2`, `ETCD_ENABLE_V2`) or holding v2 data (`etcdutl check v2store` on a copy) is
/// refused before anything changes, every such member named once. A member whose etcdutl
/// cannot check is a warning, said once.
fn refuse_v2(ctx: &Ctx) -> Result<()> {
    let found = crate::run::live::per_member(ctx.plan, |m| {
        let serving = ctx.run_on(m, &crate::host::scripts::v2_probe(m))?.values("v2");
        let store = ctx.run_on(m, &crate::host::scripts::v2store_probe(m))?.value("v2store").unwrap_or_default();
        Ok::<_, BootError>((m.spec.name.clone(), serving, store))
    });
    let (mut serving, mut holding, mut in_wal, mut unchecked) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in found {
        let (name, how, store) = r?;
        if !how.is_empty() {
            serving.push(format!("{name} ({})", how.iter().map(|h| if h == "env" { "ETCD_ENABLE_V2" } else { "--enable-v2" }).collect::<Vec<_>>().join(", ")));
        }
        match store.as_str() {
            "custom" => holding.push(name),
            "wal" => in_wal.push(name),
            "clean" => {}
            _ => unchecked.push(name),
        }
    }
    if !unchecked.is_empty() {
        ctx.progress.step(
            "upgrade",
            &format!(
                "warning: v2 data not checked on {} (the etcdutl beside its etcd lacks `check v2store`; etcd 3.6 will not start on v2 data)",
                unchecked.join(", ")
            ),
            None,
        );
    }
    let mut problems = Vec::new();
    if !serving.is_empty() {
        problems.push(format!("etcd 3.6 removes the v2 API, and these members serve it: {}; restart them without it before upgrading", serving.join(", ")));
    }
    if !holding.is_empty() {
        problems.push(format!(
            "etcd 3.6 does not start on v2 data, and `etcdutl check v2store` finds some on: {}; move it off (read it with the v2 API, then delete it) before upgrading",
            holding.join(", ")
        ));
    }
    if !in_wal.is_empty() {
        problems.push(format!(
            "etcd 3.6 does not replay v2 requests, and `etcdutl check v2store` finds some in the WAL after the last v2 snapshot on: {}; they clear at the next one: stop v2 traffic (a v2-serving 3.5 writes one per /health) and restart once with --snapshot-count=1",
            in_wal.join(", ")
        ));
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// An adopted member configured with what the next minor refuses or silently drops (3.7: every
/// `--experimental-*`; 3.6: the v2 API and proxy flags) is refused before any change, each setting
/// named with its replacement: adoption never edits the operator's unit, environment or file.
fn refuse_breaking_settings(ctx: &Ctx, from: Version) -> Result<()> {
    let mut problems = Vec::new();
    for m in ctx.plan.members.iter().filter(|m| m.spec.adopted.is_some()) {
        let Some(effective) = crate::in_place::adopted_settings(ctx, m, "upgrade")? else { continue };
        let (next, found) = crate::adopt::next_minor::breaking(from, &effective);
        for b in found {
            problems.push(format!(
                "member {}: {}: {} — instead: {}, in its own setup (adoption never edits it); then upgrade to {}.{} again",
                m.spec.name, b.written, b.effect, b.fix, next.0, next.1
            ));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// etcd's rule: one minor at a time, never down. `Ok(false)`: already there.
pub fn check_step(from: Version, to: Version) -> std::result::Result<bool, String> {
    if to < from {
        return Err(format!("{to} is older than the {from} the cluster runs: one minor back from 3.6 on, use etcd-bootstrap downgrade --to"));
    }
    if to.0 != from.0 || to.1 > from.1 + 1 {
        return Err(format!("{from} -> {to} skips a minor version: upgrade one minor at a time ({from} -> {}.{}.x first)", from.0, from.1 + 1));
    }
    // etcd's upgrade guides: every 3.5 member on 3.5.32 or later before 3.6 (the bar rose 3.5.20
    // -> 3.5.24 -> 3.5.26 -> 3.5.32 as membership bugs were found; upgrade_3_6.md), and every 3.6
    // member on 3.6.11 or later before 3.7 (upgrade_3_7.md)
    for (minor, floor) in [(6, Version(3, 5, 32)), (7, Version(3, 6, 11))] {
        if to.1 == minor && from.1 == minor - 1 && from < floor {
            return Err(format!(
                "{from} -> {to}: etcd requires every {}.{} member on {floor} or later before {}.{minor}; upgrade to the newest {}.{} patch first (etcd-bootstrap upgrade --to a {}.{} release)",
                from.0, from.1, to.0, from.0, from.1, from.0, from.1
            ));
        }
    }
    Ok(to != from)
}

pub fn upgrade(ctx: &Ctx, to: &str, sha256: Option<&str>, dry_run: bool, wait: Duration) -> Result<RollReport> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let crate::run::rolling::Begun { _lock, release, state, versions, from } = crate::run::rolling::begin(ctx, Roll::Upgrade, to, sha256, wait)?;
    let needed = check_step(from, release.version).map_err(|e| BootError::Preflight(vec![e]))?;
    if release.version >= Version(3, 6, 0) && from < Version(3, 6, 0) {
        refuse_v2(ctx)?;
    }
    if release.version.1 > from.1 {
        refuse_breaking_settings(ctx, from)?;
    }
    let pending: Vec<&MemberPlan> = plan.members.iter().filter(|m| versions.iter().any(|(n, v)| *n == m.spec.name && *v != Some(release.version))).collect();
    let mut steps = vec![format!("backup to {}", backup_dir(plan).display())];
    refuse_owned_binaries(ctx, &pending)?;
    steps.extend(pending.iter().map(|m| {
        format!(
            "{}: deliver etcd {} to {}, restart on it (leadership handed off first if it leads), wait HEALTHY",
            m.spec.name,
            release.version,
            bin_dir_of(m).display()
        )
    }));
    steps.push(format!("check the cluster version reports {}.{}", release.version.0, release.version.1));
    if dry_run || !needed && pending.is_empty() {
        let cluster_version = cluster_version(ctx).unwrap_or_default();
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
            progress.step("upgrade", &format!("backup {} taken before any change", b.path), Some(t.elapsed()));
            RollState { to: release.version.to_string(), from: from.to_string(), done: vec![], backup: Some(b.path), enabled: false }
        }
    };
    save(plan, Roll::Upgrade, &state)?;
    ctx.changing("upgrade members")?;
    let mut moved = Vec::new();
    let live = progress.rounds(crate::progress::Unit::Members, pending.len() as u64);
    for (i, m) in pending.iter().enumerate() {
        live.at(&format!("upgrade {} to etcd {}", m.name(), release.version), i as u64);
        let t = Instant::now();
        swap_binary(ctx, m, &release, wait)?;
        state.done.push(m.spec.name.clone());
        save(plan, Roll::Upgrade, &state)?;
        progress.step(&format!("upgrade {}", m.name()), &format!("runs etcd {}; cluster HEALTHY", release.version), Some(t.elapsed()));
        moved.push(m.spec.name.clone());
    }
    drop(live);
    let cluster_version = wait_cluster_version(ctx, release.version, wait)?;
    // out of the journal first: killed before the record goes, the record still says "resume"
    ctx.finished()?;
    let _ = std::fs::remove_file(state_path(plan, Roll::Upgrade));
    Ok(RollReport { from: state.from, to: release.version.to_string(), moved, cluster_version, backup: state.backup, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minor_at_a_time_never_down() {
        let v = |a, b, c| Version(a, b, c);
        assert_eq!(check_step(v(3, 4, 23), v(3, 5, 1)), Ok(true));
        assert_eq!(check_step(v(3, 5, 1), v(3, 5, 24)), Ok(true));
        assert_eq!(check_step(v(3, 5, 1), v(3, 5, 1)), Ok(false));
        assert!(check_step(v(3, 4, 23), v(3, 6, 0)).unwrap_err().contains("skips a minor"));
        assert!(check_step(v(3, 5, 1), v(3, 4, 23)).unwrap_err().contains("downgrade"));
        assert!(check_step(v(3, 5, 1), v(4, 0, 0)).unwrap_err().contains("skips"));
        assert!(check_step(v(3, 5, 1), v(3, 6, 0)).unwrap_err().contains("3.5.32 or later"));
        assert!(check_step(v(3, 5, 26), v(3, 6, 4)).unwrap_err().contains("every 3.5 member on 3.5.32 or later before 3.6"));
        assert_eq!(check_step(v(3, 5, 32), v(3, 6, 17)), Ok(true));
        assert!(check_step(v(3, 6, 10), v(3, 7, 4)).unwrap_err().contains("every 3.6 member on 3.6.11 or later before 3.7"));
        assert_eq!(check_step(v(3, 6, 11), v(3, 7, 0)), Ok(true));
        assert!(check_step(v(3, 5, 36), v(3, 7, 4)).unwrap_err().contains("skips a minor"));
    }
}
