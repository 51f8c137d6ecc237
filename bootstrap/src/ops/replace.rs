//! `replace MEMBER`: remove the (dead) member first, add its replacement as a learner, start it
//! with `--initial-cluster-state existing`, promote it once it has caught up (retried, bounded),
//! each step gated on quorum. Refuses when removing the member would lose quorum, and (without
//! `force`) when the member is healthy. The old data dir is moved aside, never deleted.

use crate::error::{BootError, Result};
use crate::live::{client_options, deliver, ensure_crl, host_err, own_files, run_on, runtime, start_member, verdict, wait_healthy};
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::scripts;
use etcdctl_lite::model::MemberInfo;
use etcdctl_lite::options::ClientOptions;
use etcdctl_lite::quorum::{quorum_size, ClusterState, MemberState, Role as QRole};
use std::time::{Duration, Instant};

fn ctl(e: etcdctl_lite::CtlError) -> BootError {
    BootError::NotHealthy(e.to_string())
}

pub fn replace(plan: &Plan, name: &str, force: bool, wait: Duration, progress: &Progress) -> Result<()> {
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let m = plan.members.iter().find(|m| m.spec.name == name).ok_or_else(|| BootError::NotHealthy(format!("no member {name:?} in the spec")))?;
    let old_id = check_replaceable(plan, m, force)?;
    let others: Vec<String> = plan.members.iter().filter(|x| x.spec.name != name).map(|x| x.spec.client_url()).collect();
    let opts = client_options(plan)?.with_endpoints(others);
    let rt = runtime()?;

    // 1. retire the old instance (stop it if it still runs; move its data dir aside)
    let t = Instant::now();
    let out = run_on(m, &scripts::retire(m))?;
    progress.step(&format!("retire {name}"), &out.value("moved").map(|to| format!("old data dir moved to {to}")).unwrap_or_else(|| "no old data".into()), Some(t.elapsed()));
    // 2. remove it from the cluster (by ID; it may have no ID if it never joined)
    if let Some(id) = old_id {
        let t = Instant::now();
        rt.block_on(etcdctl_lite::ops::member_remove(&opts, id)).map_err(ctl)?;
        progress.step(&format!("remove {name}"), &format!("member {id:x} removed"), Some(t.elapsed()));
    }
    // 3. certificates (kept if still valid) and the CRL
    pki::bundle::issue_into(&plan.issue)?;
    ensure_crl(plan)?;
    let deadline = Instant::now() + wait;
    // 4. add as a learner, 5. deliver and start it joining the existing cluster
    let (added, members) = add_learner(&rt, &opts, m, deadline, progress)?;
    start_joiner(plan, m, added.id, &members)?;
    progress.step(&format!("start {name}"), "joining with --initial-cluster-state existing", None);
    // 6. promote once caught up, 7. healthy again
    promote_when_caught_up(&rt, &opts, name, added.id, deadline, wait, progress)?;
    let t = Instant::now();
    let v = wait_healthy(plan, deadline.saturating_duration_since(Instant::now()), &format!("replacing {name}"))?;
    progress.step("quorum", &format!("{}: {}", v.state.word(), v.summary), Some(t.elapsed()));
    Ok(())
}

/// The member's ID in the cluster (if it has one), after checking that removing it keeps a
/// quorum and that it is not healthy (unless `force`).
fn check_replaceable(plan: &Plan, m: &MemberPlan, force: bool) -> Result<Option<u64>> {
    let name = &m.spec.name;
    let v = verdict(plan)?;
    if matches!(v.state, ClusterState::NoQuorum | ClusterState::Unknown) {
        return Err(BootError::NotHealthy(format!("refusing: the cluster is {} ({}); membership changes need quorum", v.state.word(), v.summary)));
    }
    let is_it = |x: &etcdctl_lite::quorum::MemberVerdict| &x.name == name || x.endpoint == m.spec.client_url();
    let target = v.members.iter().find(|x| is_it(x));
    let is_voter = target.is_some_and(|t| t.role != QRole::Learner);
    let healthy_others = v.members.iter().filter(|x| !is_it(x) && x.role != QRole::Learner && x.state == MemberState::Healthy).count();
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
    Ok(target.and_then(|t| u64::from_str_radix(&t.id, 16).ok()))
}

/// `member add --learner`, retried while etcd refuses changes right after a leadership change.
fn add_learner(rt: &tokio::runtime::Runtime, opts: &ClientOptions, m: &MemberPlan, deadline: Instant, progress: &Progress) -> Result<(MemberInfo, Vec<MemberInfo>)> {
    let t = Instant::now();
    let added = loop {
        match rt.block_on(etcdctl_lite::ops::member_add(opts, &[m.spec.peer_url()], true)) {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline && e.to_string().contains("unhealthy cluster") => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => return Err(ctl(e)),
        }
    };
    progress.step(&format!("add {}", m.spec.name), &format!("learner {:x} added", added.0.id), Some(t.elapsed()));
    Ok(added)
}

/// Delivers the member's files and starts it with the cluster's current membership.
fn start_joiner(plan: &Plan, m: &MemberPlan, id: u64, members: &[MemberInfo]) -> Result<()> {
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
    deliver(m, &own_files(m, |_| true)?)?;
    let out = start_member(&joiner, &plan.token)?;
    if !out.ok() {
        return Err(host_err(m, "starting etcd", &out));
    }
    Ok(())
}

/// `member promote`, retried (bounded) while the learner catches up.
fn promote_when_caught_up(rt: &tokio::runtime::Runtime, opts: &ClientOptions, name: &str, id: u64, deadline: Instant, wait: Duration, progress: &Progress) -> Result<()> {
    let t = Instant::now();
    loop {
        match rt.block_on(etcdctl_lite::ops::member_promote(opts, id)) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let text = e.to_string();
                if !(text.contains("in sync") || text.contains("unhealthy") || text.contains("learner") || text.contains("no answer") || text.contains("no leader")) {
                    return Err(ctl(e));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => return Err(BootError::NotHealthy(format!("{name} never caught up within {}s: {e}", wait.as_secs()))),
        }
    }
    progress.step(&format!("promote {name}"), "voting member", Some(t.elapsed()));
    Ok(())
}
