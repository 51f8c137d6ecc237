//! Gathering an [`Observation`] for the quorum verdict: every endpoint at once (status with its
//! alarms, a linearizable read and the member list over one connection each), then the members
//! the list names that were not among the endpoints. Each round costs the slowest endpoint's
//! bound, and writes nothing: no request of a round is a raft proposal.

use crate::connect::{bounded, with_client};
use crate::diagnose::{Failure, FailureKind, explain};
use crate::model::{AlarmInfo, MemberList, StatusInfo};
use crate::ops::{for_each_endpoint, member_list_one, status_one};
use crate::options::ClientOptions;
use crate::quorum::{Observation, Probe, Verdict};
use std::time::{Duration, Instant};

/// etcd's default election timeout (`--election-timeout=1000` ms): how long a healthy cluster
/// takes at most to elect a new leader once the old one is gone.
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// The linearizable read that proves a member serves with a quorum behind it.
async fn linearizable_read(endpoint: String, opts: ClientOptions) -> Result<Duration, Failure> {
    let work = async {
        let answer = with_client(&endpoint, &opts, |mut c| async move {
            let started = Instant::now();
            match c.get("health", None).await {
                Ok(_) => Ok(started.elapsed()),
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::PermissionDenied => Ok(started.elapsed()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| Failure { kind: FailureKind::Other, message: e.to_string() })?;
        match answer {
            Ok(read) => Ok(read),
            Err(e) => Err(explain(&e, &endpoint, &opts).await),
        }
    };
    bounded(opts.command_timeout, work).await.unwrap_or_else(|| Err(Failure::timeout(opts.command_timeout)))
}

/// The alarms a member's status lists among its errors. Not etcd's alarm list: that request is a
/// raft proposal (a WAL write on every member), and a verdict asking each of n members would
/// cost n² writes; the status is answered from the member's own applied state.
fn alarms_in(status: &Result<StatusInfo, Failure>) -> Vec<AlarmInfo> {
    status.as_ref().map(|s| s.errors.iter().filter_map(|e| AlarmInfo::from_status_error(e)).collect()).unwrap_or_default()
}

async fn probe_all(endpoints: &[String], opts: &ClientOptions) -> (Vec<Probe>, Vec<Option<MemberList>>) {
    // the three requests to an endpoint share one connection: the caller's kept one, or one
    // made for this round
    let kept = opts.kept.clone().unwrap_or_default();
    kept.prepare(endpoints, opts).await;
    let o = opts.clone().keeping(&kept);
    let results = for_each_endpoint(endpoints, move |e| {
        let o = o.clone();
        async move {
            let (status, read, list) =
                tokio::join!(status_one(e.clone(), o.clone()), linearizable_read(e.clone(), o.clone()), member_list_one(e.clone(), o.clone()));
            let alarms = alarms_in(&status.result);
            (Probe { endpoint: e, status: status.result, read, alarms }, list.ok())
        }
    })
    .await;
    results.into_iter().unzip()
}

/// Observes the cluster behind `opts.endpoints`.
pub async fn observe(opts: &ClientOptions) -> Observation {
    let (mut probes, lists) = probe_all(&opts.endpoints, opts).await;
    // Prefer the list from the member with the highest raft term (the most recent view).
    let member_list = lists.into_iter().flatten().max_by_key(|l| l.raft_term);
    if let Some(list) = &member_list {
        let extra: Vec<String> = list
            .members
            .iter()
            .filter_map(|m| m.client_urls.first())
            .filter(|u| !probes.iter().any(|p| p.endpoint.trim_end_matches('/') == u.trim_end_matches('/')))
            .cloned()
            .collect();
        if !extra.is_empty() {
            let (more, _) = probe_all(&extra, opts).await;
            probes.extend(more);
        }
    }
    Observation { member_list, probes }
}

/// The verdict over `opts.endpoints`, told honestly about elections and leadership changes: when a
/// majority answers but no quorum is usable (none leads, or reads fail right after a leader
/// change), the cluster is re-observed until it is or one election timeout (`settle`) has passed
/// since the first look. A quorum that comes back makes the verdict the later one; one that does
/// not gets a note that it stayed so.
pub async fn assess(opts: &ClientOptions, settle: Duration) -> Verdict {
    let started = Instant::now();
    let mut v = crate::quorum::verdict(&observe(opts).await);
    while v.electing && started.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        v = crate::quorum::verdict(&observe(opts).await);
    }
    if v.electing {
        let what = if v.leader.is_some() { "no linearizable read" } else { "no leader" };
        v.notes.push(format!("still {what} after re-checking for {} (one election timeout)", crate::diagnose::fmt_duration(settle)));
    }
    v
}
