//! `maintain`: etcd's NOSPACE runbook in one command, also fit for scheduled defragmentation:
//! the current revision → compact to it (physically) → defragment member by member, the leader
//! last, each gated on the cluster keeping its quorum → disarm every alarm → HEALTHY and a write
//! that goes through. Changes no file; refuses without quorum (compaction is a raft request).
//! With [`Defrag::Offline`] each member is stopped while etcd's tool rewrites its database
//! ([`crate::run::offline`]): it needs a HEALTHY cluster, and clients use the other members.

use crate::error::{BootError, Result};
use crate::progress::Unit;
use crate::run::context::Ctx;

use etcdctl_lite::maintenance;
use etcdctl_lite::quorum::ClusterState;
use serde::Serialize;
use std::time::{Duration, Instant};

/// A member's database before and after, and what its defragmentation cost.
#[derive(Debug, Clone, Serialize)]
pub struct MemberSizes {
    pub endpoint: String,
    pub db_size_before: i64,
    pub db_size_after: i64,
    /// Online: how long the defrag call blocked the member's requests.
    pub defrag_ms: Option<u64>,
    /// Offline: how long the member was stopped (its clients went to the others meanwhile).
    pub stopped_ms: Option<u64>,
}

/// What `maintain` did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    pub defrag: Defrag,
    pub compacted_revision: i64,
    pub members: Vec<MemberSizes>,
    pub disarmed: Vec<String>,
}

/// The key the final write check puts and deletes.
pub const WRITE_CHECK_KEY: &str = "/etcd-bootstrap/write-check";

/// How each member is defragmented (`"online"`/`"offline"` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Defrag {
    /// While it serves (etcd's defrag call): its requests wait meanwhile, and fail past etcd's
    /// request timeout.
    Online,
    /// While it is stopped ([`crate::run::offline`]): clients send their requests to the others.
    Offline,
}

pub fn maintain(ctx: &Ctx, wait: Duration, how: Defrag) -> Result<MaintainReport> {
    let progress = ctx.progress;
    crate::run::offline::start_left_stopped(ctx, wait)?;
    let before = ctx.verdict()?;
    if matches!(before.state, ClusterState::NoQuorum | ClusterState::Unknown) {
        return Err(BootError::Precondition {
            what: "maintain".into(),
            reason: format!("the cluster is {} ({}); compaction needs quorum", before.state.word(), before.summary),
        });
    }
    progress.step("maintain", &format!("cluster {}: {}", before.state.word(), before.summary), None);
    let (opts, rt) = ctx.etcd.client()?;
    let ctl = |source: etcdctl_lite::CtlError| BootError::Etcd { what: "compaction".into(), source };
    let statuses: Vec<_> = rt.block_on(etcdctl_lite::ops::status(&opts)).into_iter().filter_map(|s| s.result.ok().map(|r| (s.endpoint, r))).collect();
    let sizes_before: Vec<(String, i64)> = statuses.iter().map(|(e, s)| (e.clone(), s.db_size)).collect();
    if how == Defrag::Offline {
        let in_use = statuses.iter().map(|(_, s)| u64::try_from(s.db_size_in_use).unwrap_or(0)).max().unwrap_or(0);
        crate::run::offline::check(ctx, in_use)?;
    }
    let revision = statuses.iter().map(|(_, s)| s.revision).max().unwrap_or(0);
    ctx.changing("compact")?;
    // 1. compact to the current revision, waiting for it to reach the backend
    let t = Instant::now();
    let mut long = opts.clone();
    long.command_timeout = wait;
    match rt.block_on(maintenance::compaction(&long, revision, true)) {
        Ok(_) => progress.step("compact", &format!("history before revision {revision} discarded"), Some(t.elapsed())),
        Err(e) if e.to_string().contains("compacted") => progress.step("compact", &format!("already compacted up to {revision}"), Some(t.elapsed())),
        Err(e) => return Err(ctl(e)),
    }
    // 2. defragment one member at a time, the leader last; the cluster keeps its quorum between
    let order = rt.block_on(maintenance::leader_last(&opts));
    let weight = |e: &str| sizes_before.iter().find(|(x, _)| x == e).map_or(0, |(_, s)| u64::try_from(*s).unwrap_or(0));
    let total: u64 = order.iter().map(|e| weight(e)).sum();
    // each member weighs its database's size (defrag rewrites it whole); by member if unknown
    let by_size = total > 0;
    let live = if by_size { progress.rounds(Unit::Bytes, total) } else { progress.rounds(Unit::Members, order.len() as u64) };
    let mut done = 0;
    let limit = request_timeout(ctx.plan.loaded.spec.etcd.election_timeout());
    let mut outlasted = vec![];
    // per endpoint: (defrag_ms, stopped_ms)
    let mut cost: Vec<(String, Option<u64>, Option<u64>)> = vec![];
    for (i, endpoint) in order.iter().enumerate() {
        let member = ctx.plan.members.iter().find(|m| m.spec.client_url() == *endpoint);
        let name = member.map_or(endpoint.as_str(), |m| m.spec.name.as_str());
        live.at(&format!("defrag {name} ({} of {})", i + 1, order.len()), done);
        match (how, member) {
            (Defrag::Offline, Some(m)) => {
                let rewritten = crate::run::offline::defrag(ctx, m, wait)?;
                cost.push((endpoint.clone(), None, Some(millis(rewritten.stopped_for))));
            }
            _ => {
                let took = defrag_online(ctx, endpoint, &long, wait)?;
                if took >= limit {
                    outlasted.push((name.to_string(), took));
                }
                cost.push((endpoint.clone(), Some(millis(took)), None));
            }
        }
        done += if by_size { weight(endpoint) } else { 1 };
    }
    drop(live);
    if let Some(w) = outlasted_warning(&outlasted, limit) {
        progress.step("defrag", &w, None);
    }
    // 3. disarm (the space is back), 4. HEALTHY and writable
    let t = Instant::now();
    let disarmed = rt.block_on(maintenance::alarm_disarm(&opts)).map_err(ctl)?;
    let names: Vec<String> = disarmed.alarms.iter().map(|a| format!("{} on {:x}", a.alarm, a.member_id)).collect();
    progress.step("disarm", &if names.is_empty() { "no alarm was active".to_string() } else { format!("disarmed {}", names.join(", ")) }, Some(t.elapsed()));
    let v = ctx.wait_healthy(wait, "maintenance")?;
    let took = rt.block_on(maintenance::write_check(&opts, WRITE_CHECK_KEY)).map_err(ctl)?;
    progress.step("verify", &format!("{}: {}; a write went through in {} ms", v.state.word(), v.summary, took.as_millis()), None);
    let sizes_after = db_sizes(rt, &opts);
    let members = sizes_before
        .into_iter()
        .map(|(endpoint, db_size_before)| {
            let db_size_after = sizes_after.iter().find(|(e, _)| *e == endpoint).map(|(_, s)| *s).unwrap_or(0);
            let (defrag_ms, stopped_ms) = cost.iter().find(|(e, _, _)| *e == endpoint).map_or((None, None), |(_, d, s)| (*d, *s));
            MemberSizes { endpoint, db_size_before, db_size_after, defrag_ms, stopped_ms }
        })
        .collect();
    Ok(MaintainReport { defrag: how, compacted_revision: revision, members, disarmed: names })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One member defragmented while it serves, then the quorum awaited; how long the defrag took.
fn defrag_online(ctx: &Ctx, endpoint: &str, long: &etcdctl_lite::options::ClientOptions, wait: Duration) -> Result<Duration> {
    let (_, rt) = ctx.etcd.client()?;
    let d = rt.block_on(maintenance::defrag_one(endpoint, long));
    let took = d.result.map_err(|f| BootError::Members {
        what: "defragmenting (stopped before the next member)".into(),
        failures: vec![format!("{endpoint}: {}", f.message)],
    })?;
    wait_quorum(ctx, wait, endpoint)?;
    ctx.progress.step("defrag", &format!("{endpoint}: done; quorum holds"), Some(took));
    Ok(took)
}

/// etcd's request timeout (its `ReqTimeout`: 5 s, plus two election timeouts for an election):
/// a request still waiting on a member after that fails with "etcdserver: request timed out".
pub fn request_timeout(election_timeout: Duration) -> Duration {
    Duration::from_secs(5) + 2 * election_timeout
}

/// Said once when defragmentations outlasted the request timeout: a defrag blocks the member's
/// requests, and past the timeout they fail rather than wait (seen at 2.2 GB on 2 cores:
/// kube-apiserver answered HTTP 500 "etcdserver: request timed out" for a 7.2 s defrag).
pub fn outlasted_warning(outlasted: &[(String, Duration)], limit: Duration) -> Option<String> {
    if outlasted.is_empty() {
        return None;
    }
    let which: Vec<String> = outlasted.iter().map(|(name, took)| format!("{name} {:.1} s", took.as_secs_f64())).collect();
    Some(format!(
        "warning: defragmenting took longer than etcd's request timeout ({} s) on {}: requests sent to a member while it was defragmented failed (\"etcdserver: request timed out\") instead of waiting; run maintain when the load is lowest",
        limit.as_secs_f64(),
        which.join(", ")
    ))
}

fn db_sizes(rt: &tokio::runtime::Runtime, opts: &etcdctl_lite::options::ClientOptions) -> Vec<(String, i64)> {
    rt.block_on(etcdctl_lite::ops::status(opts)).into_iter().map(|s| (s.endpoint, s.result.map(|r| r.db_size).unwrap_or(0))).collect()
}

/// Waits (bounded) until the cluster has its quorum again (HEALTHY, DEGRADED or READ-ONLY).
fn wait_quorum(ctx: &Ctx, wait: Duration, after: &str) -> Result<()> {
    ctx.wait_until(
        wait,
        |v| !matches!(v.state, ClusterState::NoQuorum | ClusterState::Unknown),
        |v| format!("after defragmenting {after}: {} ({}); stopped before the next member", v.state.word(), v.summary),
    )
    .map(|_| ())
}

impl MaintainReport {
    /// Lines for people, or JSON.
    pub fn render(&self, format: crate::format::Format) -> String {
        if format == crate::format::Format::Json {
            return serde_json::to_string_pretty(self).map(|j| j + "\n").unwrap_or_default();
        }
        let disarmed = if self.disarmed.is_empty() { "none".to_string() } else { self.disarmed.join(", ") };
        let mut s = format!("compacted to revision {}; alarms disarmed: {disarmed}\n", self.compacted_revision);
        for m in &self.members {
            let (before, after) = (etcdctl_lite::model::human_bytes(m.db_size_before), etcdctl_lite::model::human_bytes(m.db_size_after));
            let cost = match (m.defrag_ms, m.stopped_ms) {
                (_, Some(ms)) => format!(" (stopped for {:.1} s)", ms as f64 / 1000.0),
                (Some(ms), None) => format!(" (defragmented in {:.1} s)", ms as f64 / 1000.0),
                (None, None) => String::new(),
            };
            s.push_str(&format!("{}: database {before} -> {after}{cost}\n", m.endpoint));
        }
        s.push_str("cluster HEALTHY and writable\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_timeout_is_etcds_and_a_defrag_past_it_is_said_once_with_every_member() {
        assert_eq!(request_timeout(Duration::from_secs(1)), Duration::from_secs(7));
        assert_eq!(request_timeout(Duration::from_millis(2500)), Duration::from_secs(10));
        assert_eq!(outlasted_warning(&[], Duration::from_secs(7)), None);
        let w = outlasted_warning(&[("etcd-1".into(), Duration::from_millis(7232)), ("etcd-3".into(), Duration::from_millis(9000))], Duration::from_secs(7))
            .expect("a warning");
        assert!(w.contains("(7 s) on etcd-1 7.2 s, etcd-3 9.0 s:") && w.contains("request timed out"), "{w}");
        let w = outlasted_warning(&[("etcd-2".into(), Duration::from_secs(8))], request_timeout(Duration::from_millis(1250))).expect("a warning");
        assert!(w.contains("(7.5 s) on etcd-2 8.0 s:"), "{w}");
        assert_eq!(w.matches("warning").count(), 1, "{w}");
    }

    #[test]
    fn golden_reports_say_how_each_member_was_defragmented_and_what_it_cost() {
        let member = |i: u64, defrag_ms, stopped_ms| MemberSizes {
            endpoint: format!("https://10.0.0.1{i}:2379"),
            db_size_before: 2_254_857_830,
            db_size_after: 1_073_741_824 + i as i64,
            defrag_ms,
            stopped_ms,
        };
        let online = MaintainReport {
            defrag: Defrag::Online,
            compacted_revision: 1200,
            members: vec![member(1, Some(7232), None), member(2, Some(5104), None), member(3, Some(6871), None)],
            disarmed: vec!["NOSPACE on 8e9e05c52164694d".into()],
        };
        let offline = MaintainReport {
            defrag: Defrag::Offline,
            members: vec![member(1, None, Some(16431)), member(2, None, Some(14402)), member(3, None, Some(13610))],
            disarmed: vec![],
            ..online.clone()
        };
        for (name, report) in [("maintain", online), ("maintain-offline", offline)] {
            crate::cli::summary::golden::check(&format!("{name}.txt"), &report.render(crate::format::Format::Simple));
            crate::cli::summary::golden::check(&format!("{name}.json"), &report.render(crate::format::Format::Json));
        }
    }
}
