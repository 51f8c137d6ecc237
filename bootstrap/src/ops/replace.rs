//! `replace MEMBER`: remove the (dead) member first, add its replacement as a learner, start it
//! with `--initial-cluster-state existing`, promote it once it has caught up (retried, bounded),
//! each step gated on quorum. Refuses when removing the member would lose quorum, and (without
//! `force`) when the member is healthy. The old data dir is moved aside, never deleted.

use crate::error::{BootError, Result};
use crate::host::scripts;
use crate::journal::Admission;
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::run::live::{ensure_crl, host_err, own_files};
use etcdctl_lite::model::MemberInfo;
use etcdctl_lite::quorum::{ClusterState, MemberState, Role as QRole, quorum_size};
use std::time::{Duration, Instant};

/// Where an earlier run of `replace` left the member, read from the cluster's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The old member is still in the cluster (a fresh replace): its ID, if it has one.
    Old(Option<u64>),
    /// Not in the cluster: removed by an earlier run (or never there).
    Absent,
    /// Added as a learner by an earlier run, maybe started: its ID.
    Learner(u64),
}

/// Reads `Found` from the member list: the member is matched by its peer URL (a learner that
/// never started has no name yet).
pub fn find(list: &[MemberInfo], m: &MemberPlan) -> Found {
    match list.iter().find(|x| x.peer_urls.contains(&m.spec.peer_url()) || (x.started() && x.name == m.spec.name)) {
        Some(x) if x.is_learner => Found::Learner(x.id),
        Some(x) => Found::Old(Some(x.id)),
        None => Found::Absent,
    }
}

pub fn replace(ctx: &Ctx, name: &str, force: bool, wait: Duration) -> Result<()> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let m = plan.members.iter().find(|m| m.spec.name == name).ok_or_else(|| BootError::MemberNotFound {
        name: name.to_string(),
        known: plan.members.iter().map(|m| m.spec.name.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    // membership changes go through the other members (this one is dead)
    let others: Vec<String> = plan.members.iter().filter(|x| x.spec.name != name).map(|x| x.spec.client_url()).collect();
    let found = find(&ctx.etcd.member_list(&others)?, m);
    let resuming = ctx.admission == Admission::Resume;
    // a voter under this member's URL after an earlier run got past `add`: that run promoted it
    let promoted = resuming && matches!(found, Found::Old(_)) && ctx.resumed_step().is_some_and(|s| s.starts_with("promote") || s.starts_with("start"));
    let deadline = Instant::now() + wait;
    let learner = match found {
        Found::Learner(id) => {
            progress.step(&format!("replace {name}"), &format!("resuming: learner {id:x} was added by the earlier run"), None);
            // the same checks before the next change: they are idempotent and cheap
            preconditions(ctx, m)?;
            Some(id)
        }
        _ if promoted => None,
        _ => {
            let old_id = match found {
                Found::Old(id) => check_replaceable(ctx, m, force).map(|_| id)?,
                _ => check_replaceable(ctx, m, force).map(|_| None)?,
            };
            preconditions(ctx, m)?;
            retire_and_remove(ctx, m, old_id, &others)?;
            None
        }
    };
    if !promoted {
        let (id, members) = match learner {
            Some(id) => (id, ctx.etcd.member_list(&others)?),
            None => {
                ctx.changing(&format!("add {name}"))?;
                let (added, members) = add_learner(ctx, &others, m, deadline)?;
                (added.id, members)
            }
        };
        ctx.changing(&format!("start {name}"))?;
        start_joiner(ctx, m, id, &members)?;
        progress.step(&format!("start {name}"), "joining with --initial-cluster-state existing", None);
        ctx.changing(&format!("promote {name}"))?;
        promote_when_caught_up(ctx, m, &others, id, deadline, wait)?;
    }
    // a unit's joiner drop-in, left by a run killed right after the start
    crate::in_place::rejoin::forget_joiner(ctx, m)?;
    let t = Instant::now();
    let v = ctx.wait_healthy(deadline.saturating_duration_since(Instant::now()), &format!("replacing {name}"))?;
    progress.step("quorum", &format!("{}: {}", v.state.word(), v.summary), Some(t.elapsed()));
    Ok(())
}

/// What can fail cheaply, before the old member is touched: the certificates (kept if still
/// right), the CRL, the member's files, and its host (answers, room for a data dir).
fn preconditions(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let plan = ctx.plan;
    let what = format!("replace {}", m.spec.name);
    if m.spec.adopted.is_some() {
        ctx.require_reachable(&[m], 0, &what)?;
        return crate::in_place::rejoin::can_rejoin(ctx, m);
    }
    let precondition = |e: BootError| BootError::Precondition { what: what.clone(), reason: e.to_string() };
    crate::run::live::issue_certificates(plan, &what)?;
    ensure_crl(plan).map_err(precondition)?;
    own_files(m, |_| true).map_err(precondition)?;
    ctx.require_reachable(&[m], 0, &what)
}

/// The irreversible steps, after every check: the old instance stopped and its data dir moved
/// aside, then the member removed from the cluster (by ID; it may have none if it never joined).
fn retire_and_remove(ctx: &Ctx, m: &MemberPlan, old_id: Option<u64>, via: &[String]) -> Result<()> {
    let name = &m.spec.name;
    ctx.changing(&format!("retire {name}"))?;
    let t = Instant::now();
    let out = ctx.run_on(m, &scripts::retire(m))?;
    ctx.progress.step(
        &format!("retire {name}"),
        &out.value("moved").map(|to| format!("old data dir moved to {to}")).unwrap_or_else(|| "no old data".into()),
        Some(t.elapsed()),
    );
    if let Some(id) = old_id {
        ctx.changing(&format!("remove {name}"))?;
        let t = Instant::now();
        ctx.etcd.remove_member(via, id)?;
        ctx.progress.step(&format!("remove {name}"), &format!("member {id:x} removed"), Some(t.elapsed()));
    }
    Ok(())
}

/// The member's ID in the cluster (if it has one), after checking that removing it keeps a
/// quorum and that it is not healthy (unless `force`).
fn check_replaceable(ctx: &Ctx, m: &MemberPlan, force: bool) -> Result<Option<u64>> {
    let name = &m.spec.name;
    let refuse = |reason: String| BootError::Precondition { what: format!("replace {name}"), reason };
    let v = ctx.verdict()?;
    if matches!(v.state, ClusterState::NoQuorum | ClusterState::Unknown) {
        return Err(refuse(format!("the cluster is {} ({}); membership changes need quorum", v.state.word(), v.summary)));
    }
    let is_it = |x: &etcdctl_lite::quorum::MemberVerdict| &x.name == name || x.endpoint == m.spec.client_url();
    let target = v.members.iter().find(|x| is_it(x));
    let is_voter = target.is_some_and(|t| t.role != QRole::Learner);
    let healthy_others = v.members.iter().filter(|x| !is_it(x) && x.role != QRole::Learner && x.state == MemberState::Healthy).count();
    let voters_after = v.voters - usize::from(is_voter);
    if healthy_others < quorum_size(voters_after.max(1)) {
        return Err(refuse(format!(
            "after removing {name}, {healthy_others} healthy voter(s) would remain of {voters_after}, below the quorum of {}",
            quorum_size(voters_after.max(1))
        )));
    }
    if target.is_some_and(|t| t.state == MemberState::Healthy) && !force {
        return Err(refuse(format!("{name} is healthy; replace is for dead members (pass --force to replace it anyway)")));
    }
    Ok(target.and_then(|t| u64::from_str_radix(&t.id, 16).ok()))
}

/// `member add --learner`. After a failure the member list decides: an add that went through
/// anyway (a timeout, then another endpoint) is taken as it is; refusals etcd gives while the
/// cluster settles after a removal or a leadership change are retried until `deadline`.
fn add_learner(ctx: &Ctx, via: &[String], m: &MemberPlan, deadline: Instant) -> Result<(MemberInfo, Vec<MemberInfo>)> {
    const SETTLING: [&str; 5] = ["unhealthy cluster", "member not found", "timed out", "no leader", "no answer"];
    let t = Instant::now();
    let added = loop {
        let err = match ctx.etcd.add_learner(via, &m.spec.peer_url()) {
            Ok(r) => break r,
            Err(e) => e,
        };
        if let Ok(list) = ctx.etcd.member_list(via)
            && let Found::Learner(id) = find(&list, m)
            && let Some(info) = list.iter().find(|x| x.id == id).cloned()
        {
            break (info, list);
        }
        let text = err.to_string();
        if Instant::now() >= deadline || !SETTLING.iter().any(|w| text.contains(w)) {
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    ctx.progress.step(&format!("add {}", m.spec.name), &format!("learner {:x} added", added.0.id), Some(t.elapsed()));
    Ok(added)
}

/// Delivers the member's files and starts it with the cluster's current membership.
fn start_joiner(ctx: &Ctx, m: &MemberPlan, id: u64, members: &[MemberInfo]) -> Result<()> {
    let plan = ctx.plan;
    if m.spec.adopted.is_some() {
        // its own settings (the cluster's members under the same names and URLs), started once
        // as a joiner; its files stayed where they are
        let out = ctx.start_member(&crate::in_place::rejoin::joiner(ctx, m)?)?;
        crate::in_place::rejoin::forget_joiner(ctx, m)?;
        return if out.ok() { Ok(()) } else { Err(host_err(m, "starting etcd", &out)) };
    }
    let initial: Vec<String> = members
        .iter()
        .flat_map(|x| {
            let n = if x.id == id { m.spec.name.clone() } else { x.name.clone() };
            x.peer_urls.iter().map(move |u| format!("{n}={u}")).collect::<Vec<_>>()
        })
        .filter(|e| !e.starts_with('='))
        .collect();
    let mut joiner = m.clone();
    joiner.args = crate::plan::etcd_args(&m.spec, &initial.join(","), &plan.token, &plan.loaded.spec.etcd)
        .into_iter()
        .map(|a| if a == "new" { "existing".to_string() } else { a })
        .collect();
    ctx.deliver(m, &own_files(m, |_| true)?)?;
    let out = ctx.start_member(&joiner)?;
    if !out.ok() {
        return Err(host_err(m, "starting etcd", &out));
    }
    Ok(())
}

/// `member promote`, retried (bounded) while the learner catches up.
/// A joiner whose etcd exits is reported at once, with etcd's own last fatal line.
fn promote_when_caught_up(ctx: &Ctx, m: &MemberPlan, via: &[String], id: u64, deadline: Instant, wait: Duration) -> Result<()> {
    let name = &m.spec.name;
    let t = Instant::now();
    let mut next_look = Instant::now() + Duration::from_secs(1);
    loop {
        match ctx.etcd.promote(via, id) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let text = e.to_string();
                if !(text.contains("in sync")
                    || text.contains("unhealthy")
                    || text.contains("learner")
                    || text.contains("no answer")
                    || text.contains("no leader"))
                {
                    return Err(e);
                }
                if Instant::now() >= next_look {
                    joiner_still_runs(ctx, m)?;
                    next_look = Instant::now() + Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => return Err(BootError::NotHealthy(format!("{name} never caught up within {}s: {e}", wait.as_secs()))),
        }
    }
    ctx.progress.step(&format!("promote {name}"), "voting member", Some(t.elapsed()));
    Ok(())
}

/// Refuses to wait for a joiner whose etcd is not running: it exited (its log says why) and will
/// not catch up, however long the bound.
fn joiner_still_runs(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let Ok(out) = ctx.run_on(m, &crate::host::scripts::status_lines(m)) else { return Ok(()) };
    if out.value("running").is_some() {
        return Ok(());
    }
    let log = ctx.run_on(m, &crate::host::scripts::log_tail(m, 40)).map(|o| o.stdout).unwrap_or_default();
    Err(BootError::NotHealthy(format!(
        "{name} {}; it was added as a learner and is not running: fix that, then run {} again (it starts the learner again and promotes it)",
        crate::formation::exit_reason(&log),
        crate::run::context::command_for(ctx.plan, &format!("replace {}", crate::plan::sh_quote(&m.spec.name))),
        name = m.spec.name,
    )))
}

#[cfg(test)]
#[path = "replace_tests.rs"]
mod tests;
