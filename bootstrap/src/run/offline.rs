//! A member defragmented while stopped (`maintain --offline`). An online defrag blocks every
//! request the member gets, and past etcd's request timeout (5 s + two election timeouts) they
//! fail; a stopped member gets none: clients with several endpoints (kube-apiserver) send them
//! to the others. Per member: leadership handed off, stopped (2 s for the requests under way,
//! then killed: [`scripts::stop_drained`]), its database rewritten by etcd's own tool on its
//! host, started, HEALTHY before the caller goes on. A run killed while a member
//! is stopped leaves the member's name in the journal step; the next run starts it first.

use crate::error::{BootError, Result};
use crate::host::scripts;
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::run::live::{SCRIPT_LIMIT, host_err};
use std::time::{Duration, Instant};

/// The journal step while a member is (or may be) stopped: `offline defrag NAME`.
pub const STEP: &str = "offline defrag";

/// One member's defragmentation: its database before and after, and how long it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub before: u64,
    pub after: u64,
    pub stopped_for: Duration,
}

/// Before the first change: the cluster HEALTHY with three voters or more (a member stopped
/// beside one that is down, or in a cluster of one or two, costs the quorum), every host answering with room for a copy of the largest database in use
/// (`need_bytes`), etcd's tool beside every member's etcd able to defragment a data dir, and no
/// member's binary older than it runs (a start would fail on its data dir: see
/// [`Ctx::refuse_downgrade`]). Every problem of every member at once.
pub fn check(ctx: &Ctx, need_bytes: u64) -> Result<()> {
    let what = "maintain --offline";
    let v = ctx.require_healthy(what)?;
    if v.voters < 3 {
        return Err(BootError::Precondition {
            what: what.into(),
            reason: format!(
                "with {} voter(s), a stopped member takes the quorum with it and the cluster refuses every request meanwhile; use maintain without --offline",
                v.voters
            ),
        });
    }
    ctx.require_reachable(&ctx.plan.members.iter().collect::<Vec<_>>(), need_bytes, what)?;
    let mut problems: Vec<String> = ctx.downgrade_refusals(&ctx.plan.members.iter().collect::<Vec<_>>()).iter().map(ToString::to_string).collect();
    let probes = crate::run::live::per_member(ctx.plan, |m| ctx.run_on(m, &scripts::defrag_tool_probe(m)));
    for (m, out) in ctx.plan.members.iter().zip(probes) {
        let out = out?;
        if out.value("defrag").as_deref() != Some("yes") {
            let tool = out.value("tool").unwrap_or_else(|| format!("no etcdutl or etcdctl beside {}", m.binary));
            problems.push(format!("member {}: {tool} cannot defragment a data dir (etcdutl defrag --data-dir); use maintain without --offline", m.spec.name));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// The member an interrupted run left stopped (its journal step names it) started again, and
/// the cluster HEALTHY, before this run goes on. Nothing when the run resumes nothing.
pub fn start_left_stopped(ctx: &Ctx, wait: Duration) -> Result<()> {
    let step = ctx.resumed_step().unwrap_or_default();
    let Some(name) = step.strip_prefix(STEP).and_then(|r| r.strip_prefix(' ')) else { return Ok(()) };
    let Some(m) = ctx.plan.members.iter().find(|m| m.spec.name == name) else { return Ok(()) };
    ctx.progress.step(&format!("start {name}"), "the interrupted run may have left it stopped: started (if it was not running)", None);
    start(ctx, m, wait)
}

/// One member defragmented while stopped; on return it runs again and the cluster is HEALTHY.
/// If the rewrite fails, the member is started again on its old database (the tool replaces
/// the file only once the copy is whole) and the error says so.
pub fn defrag(ctx: &Ctx, m: &MemberPlan, wait: Duration) -> Result<Rewritten> {
    let name = &m.spec.name;
    let moved = ctx.hand_off_leadership(m, wait)?;
    ctx.changing(&format!("{STEP} {name}"))?;
    let stopped = Instant::now();
    let stop = ctx.stop_member(m, &scripts::stop_drained(m))?;
    if !stop.ok() {
        return Err(host_err(m, "stopping etcd", &stop));
    }
    let first = moved.map(|to| format!(" (leadership moved to {to} first)")).unwrap_or_default();
    ctx.progress.step(&format!("stop {name}"), &format!("stopped{first}"), None);
    let t = Instant::now();
    let out = ctx.run_on_within(m, &scripts::defrag_offline(m), wait.max(SCRIPT_LIMIT));
    let rewritten = match out {
        Ok(o) if o.ok() => o,
        failed => {
            start(ctx, m, wait)?;
            return Err(match failed {
                Ok(o) => host_err(m, "defragmenting its database (it runs again on its old one)", &o),
                Err(e) => e,
            });
        }
    };
    let size = |key: &str| rewritten.value(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (before, after) = (size("before"), size("after"));
    let human = |b: u64| etcdctl_lite::model::human_bytes(i64::try_from(b).unwrap_or(i64::MAX));
    ctx.progress.step(&format!("defrag {name}"), &format!("database rewritten while stopped: {} -> {}", human(before), human(after)), Some(t.elapsed()));
    start(ctx, m, wait)?;
    let stopped_for = stopped.elapsed();
    ctx.progress.step(&format!("start {name}"), &format!("running again and HEALTHY; it was stopped for {:.1} s", stopped_for.as_secs_f64()), None);
    Ok(Rewritten { before, after, stopped_for })
}

fn start(ctx: &Ctx, m: &MemberPlan, wait: Duration) -> Result<()> {
    let out = ctx.start_member(m)?;
    if !out.ok() {
        return Err(host_err(m, "starting etcd", &out));
    }
    ctx.wait_healthy(wait, &format!("starting {} after its defragmentation", m.spec.name)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::OpKind;
    use crate::run::fakes::{self, effects, fail, kill};

    const WAIT: Duration = Duration::from_secs(5);

    fn on(world: &fakes::Shared, who: &str) -> Vec<String> {
        effects(world).into_iter().filter(|e| e.starts_with(&format!("{who}: ")) || e.starts_with("etcd: ")).collect()
    }

    #[test]
    fn a_leader_hands_off_then_is_stopped_rewritten_and_started_and_the_journal_names_it_meanwhile() {
        let c = fakes::cluster();
        let world = fakes::world(&c.plan);
        world.lock().unwrap().leader = Some(2);
        let r = c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| defrag(ctx, &ctx.plan.members[1], WAIT)).unwrap();
        assert_eq!((r.before, r.after), (4_194_304, 1_048_576));
        let seen = on(&world, "etcd-2");
        let at = |what: &str| seen.iter().position(|e| e == what).unwrap_or_else(|| panic!("no {what:?} in {seen:?}"));
        assert!(at("etcd: move-leader 1") < at("etcd-2: stop"), "{seen:?}");
        assert!(at("etcd-2: stop") < at("etcd-2: defrag-offline") && at("etcd-2: defrag-offline") < at("etcd-2: start"), "{seen:?}");
        assert!(effects(&world).iter().all(|e| !e.starts_with("etcd-1: stop") && !e.starts_with("etcd-3: stop")), "only etcd-2 stops");
        assert_eq!(c.under_way(), 0);
    }

    #[test]
    fn leadership_goes_to_the_follower_furthest_along() {
        let c = fakes::cluster();
        let world = fakes::world(&c.plan);
        world.lock().unwrap().applied.extend([("etcd-2".to_string(), 9), ("etcd-3".to_string(), 12)]);
        c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| defrag(ctx, &ctx.plan.members[0], WAIT)).unwrap();
        assert!(effects(&world).contains(&"etcd: move-leader 3".to_string()), "{:?}", effects(&world));
    }

    #[test]
    fn a_failed_rewrite_starts_the_member_again_and_a_killed_run_is_started_first_when_run_again() {
        let c = fakes::cluster();
        let world = fakes::world(&c.plan);
        fail(&world, "etcd-3", "defrag-offline");
        let e = c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| defrag(ctx, &ctx.plan.members[2], WAIT)).unwrap_err();
        assert!(e.to_string().contains("etcd-3"), "{e}");
        assert!(effects(&world).last().is_some_and(|e| e == "etcd-3: start"), "started again: {:?}", effects(&world));
        assert!(!world.lock().unwrap().dead.contains("etcd-3"));
        // killed while stopped: the journal's step names the member; the next run starts it first
        assert_eq!(c.under_way(), 1);
        kill(&world, "etcd-3");
        world.lock().unwrap().events.clear();
        c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| start_left_stopped(ctx, WAIT)).unwrap();
        assert_eq!(effects(&world).iter().filter(|e| !e.starts_with("etcd: ")).cloned().collect::<Vec<_>>(), ["etcd-3: start"]);
        assert_eq!(c.under_way(), 0);
    }

    #[test]
    fn the_checks_refuse_a_degraded_or_too_small_cluster_and_a_tool_that_cannot_defragment_before_any_change() {
        let c = fakes::cluster();
        let world = fakes::world(&c.plan);
        kill(&world, "etcd-1");
        let e = c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| check(ctx, 1 << 20)).unwrap_err();
        assert!(e.to_string().contains("DEGRADED"), "{e}");
        let world = fakes::world(&c.plan);
        world.lock().unwrap().members.truncate(2);
        let e = c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| check(ctx, 1 << 20)).unwrap_err().to_string();
        assert!(e.contains("with 2 voter(s), a stopped member takes the quorum with it"), "{e}");
        let world = fakes::world(&c.plan);
        world.lock().unwrap().old_tools.insert("etcd-2".into());
        let e = c.run(&world, OpKind::Maintain, None, "maintain --offline", |ctx| check(ctx, 1 << 20)).unwrap_err().to_string();
        assert!(e.contains("member etcd-2: /opt/etcd/bin/etcdctl cannot defragment a data dir") && !e.contains("etcd-1"), "{e}");
        assert!(effects(&world).iter().all(|e| ["free-space", "version", "defrag-tool-probe"].iter().any(|k| e.ends_with(k))), "{:?}", effects(&world));
        assert_eq!(c.under_way(), 0);
    }
}
