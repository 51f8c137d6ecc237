//! The operations against etcd: each endpoint gets its own client, all endpoints are checked in
//! parallel, and every check is bounded by `--command-timeout` — a check of several endpoints
//! costs the slowest endpoint's bound, not the sum.

use crate::connect::{bounded, client_for, with_client};
use crate::diagnose::{Failure, FailureKind, explain};
use crate::error::{CtlError, Result};
use crate::model::*;
use crate::options::ClientOptions;
use etcd_client::{AlarmAction, AlarmType, Client};
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `f` for every endpoint concurrently; results in endpoint order.
pub async fn for_each_endpoint<T, F, Fut>(endpoints: &[String], f: F) -> Vec<T>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = endpoints.iter().map(|e| tokio::spawn(f(e.clone()))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

async fn connect(endpoint: &str, opts: &ClientOptions) -> Result<Client, Failure> {
    client_for(endpoint, opts).await.map_err(connect_failure)
}

fn connect_failure(e: CtlError) -> Failure {
    Failure { kind: FailureKind::Other, message: e.to_string() }
}

/// The outer bound for one endpoint's work: the command timeout plus a little for the TLS probe.
fn limit(opts: &ClientOptions) -> Duration {
    opts.command_timeout
}

/// Runs `work` (a request that needs a leader: a linearizable read, an alarm list) bounded by the
/// command timeout, with a status request (served without a leader) alongside: when the work
/// times out and the member said it has no leader, the failure says "no leader", not "hung".
/// The status request starts only once the work has taken a tenth of the timeout (at most
/// 100 ms; a healthy answer takes about 10 ms): a member that answers at once never pays for a
/// second connection, and the status request keeps 95% of the window to explain a silent one.
pub async fn bounded_leader_aware<T>(
    endpoint: &str,
    opts: &ClientOptions,
    work: impl Future<Output = std::result::Result<T, Failure>>,
) -> std::result::Result<T, Failure> {
    let grace = (limit(opts) / 10).min(Duration::from_millis(100));
    let (e, o) = (endpoint.to_string(), opts.clone());
    let status = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        status_one(e, o).await
    });
    let result = bounded(limit(opts), work).await;
    match result {
        Some(r) => {
            status.abort();
            r
        }
        None if status.is_finished() => match status.await {
            Ok(EndpointStatus { result: Ok(s), .. }) if s.leader == 0 => Err(Failure::no_leader(limit(opts))),
            _ => Err(Failure::timeout(limit(opts))),
        },
        None => {
            status.abort();
            Err(Failure::timeout(limit(opts)))
        }
    }
}

/// etcdctl's health: a linearizable `Get("health")` (PermissionDenied counts as healthy) plus the
/// active alarms (any alarm = unhealthy, as in etcd 3.5+; 3.4's etcdctl ignored alarms).
pub async fn health_one(endpoint: String, opts: ClientOptions) -> EndpointHealth {
    let started = Instant::now();
    let work = async {
        let mut c = connect(&endpoint, &opts).await?;
        match c.get("health", None).await {
            Ok(_) => {}
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::PermissionDenied => {}
            Err(e) => return Err(explain(&e, &endpoint, &opts).await),
        }
        // the alarms from the member's status (after the read it has applied every alarm raised
        // before it), not etcd's alarm list as etcdctl asks: that is a raft proposal, a WAL write
        // on every member for each endpoint checked
        match c.status().await {
            Ok(status) => {
                let names: Vec<String> = status.errors().iter().filter_map(|e| AlarmInfo::from_status_error(e)).map(|a| a.alarm).collect();
                if names.is_empty() {
                    return Ok(());
                }
                // as etcdctl writes it (ep_command.go): each alarm followed by a space
                Err(Failure { kind: FailureKind::Other, message: format!("Active Alarm(s): {}", names.iter().map(|n| format!("{n} ")).collect::<String>()) })
            }
            Err(e) => Err(explain(&e, &endpoint, &opts).await),
        }
    };
    let result = bounded_leader_aware(&endpoint, &opts, work).await;
    EndpointHealth { endpoint, took: started.elapsed(), result }
}

pub async fn health(opts: &ClientOptions) -> Vec<EndpointHealth> {
    let o = opts.clone();
    for_each_endpoint(&opts.endpoints, move |e| health_one(e, o.clone())).await
}

pub async fn status_one(endpoint: String, opts: ClientOptions) -> EndpointStatus {
    let work = async {
        match with_client(&endpoint, &opts, |mut c| async move { c.status().await }).await.map_err(connect_failure)? {
            Ok(s) => {
                let h = s.header();
                Ok(StatusInfo {
                    cluster_id: h.map(|h| h.cluster_id()).unwrap_or(0),
                    member_id: h.map(|h| h.member_id()).unwrap_or(0),
                    revision: h.map(|h| h.revision()).unwrap_or(0),
                    header_raft_term: h.map(|h| h.raft_term()).unwrap_or(0),
                    version: s.version().to_string(),
                    db_size: s.db_size(),
                    db_size_in_use: s.raft_used_db_size(),
                    leader: s.leader(),
                    raft_index: s.raft_index(),
                    raft_term: s.raft_term(),
                    raft_applied_index: s.raft_applied_index(),
                    is_learner: s.is_learner(),
                    errors: s.errors().to_vec(),
                    // a 3.6+ server always sends its quota; its storage version only once the
                    // cluster version is decided (a member just started has none yet)
                    since_36: (!s.storage_version().is_empty() || s.db_size_quota() != 0 || s.downgrade_info().is_some()).then(|| Status36 {
                        storage_version: s.storage_version().to_string(),
                        db_size_quota: s.db_size_quota(),
                        downgrade: s.downgrade_info().map(|d| (d.target_version().to_string(), d.enabled())),
                    }),
                })
            }
            Err(e) => Err(explain(&e, &endpoint, &opts).await),
        }
    };
    let result = bounded(limit(&opts), work).await.unwrap_or_else(|| Err(Failure::timeout(limit(&opts))));
    EndpointStatus { endpoint, result }
}

pub async fn status(opts: &ClientOptions) -> Vec<EndpointStatus> {
    let o = opts.clone();
    for_each_endpoint(&opts.endpoints, move |e| status_one(e, o.clone())).await
}

fn to_members(list: &[etcd_client::Member]) -> Vec<MemberInfo> {
    list.iter()
        .map(|m| MemberInfo {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        })
        .collect()
}

pub async fn member_list_one(endpoint: String, opts: ClientOptions) -> Result<MemberList, Failure> {
    let work = async {
        match with_client(&endpoint, &opts, |mut c| async move { c.member_list().await }).await.map_err(connect_failure)? {
            Ok(r) => {
                let h = r.header();
                Ok(MemberList {
                    cluster_id: h.map(|h| h.cluster_id()).unwrap_or(0),
                    member_id: h.map(|h| h.member_id()).unwrap_or(0),
                    raft_term: h.map(|h| h.raft_term()).unwrap_or(0),
                    members: to_members(r.members()),
                })
            }
            Err(e) => Err(explain(&e, &endpoint, &opts).await),
        }
    };
    bounded(limit(&opts), work).await.unwrap_or_else(|| Err(Failure::timeout(limit(&opts))))
}

/// The member list from whichever endpoint answers first (all are asked at once).
/// `--cluster`: the options with every member's client URLs (from a member list through the
/// given endpoints) as the endpoints, as etcdctl expands it.
pub async fn cluster_endpoints(opts: &ClientOptions) -> Result<ClientOptions> {
    let list = member_list(opts).await?;
    Ok(opts.clone().with_endpoints(list.members.iter().flat_map(|m| m.client_urls.clone()).collect()))
}

pub async fn member_list(opts: &ClientOptions) -> Result<MemberList> {
    let o = opts.clone();
    let all = for_each_endpoint(&opts.endpoints, move |e| member_list_one(e, o.clone())).await;
    let mut errors = Vec::new();
    for (e, r) in opts.endpoints.iter().zip(all) {
        match r {
            Ok(list) => return Ok(list),
            Err(f) => errors.push(format!("{e}: {}", f.message)),
        }
    }
    Err(CtlError::NoEndpoint(errors))
}

/// Runs a cluster change against one endpoint after another until one takes it. Moves on only
/// when an endpoint could not be reached; an answer from etcd (even a refusal) is final.
async fn change<T, F, Fut>(opts: &ClientOptions, what: &str, f: F) -> Result<T>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut errors = Vec::new();
    for endpoint in &opts.endpoints {
        let client = match connect(endpoint, opts).await {
            Ok(c) => c,
            Err(f) => {
                errors.push(format!("{endpoint}: {}", f.message));
                continue;
            }
        };
        let work = async {
            match f(client).await {
                Ok(v) => Ok(Ok(v)),
                Err(e) => Ok(Err(explain(&e, endpoint, opts).await)),
            }
        };
        match bounded_leader_aware(endpoint, opts, work).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(failure)) | Err(failure) => match failure.kind {
                FailureKind::Refused | FailureKind::Tls | FailureKind::Timeout | FailureKind::NoLeader => {
                    errors.push(format!("{endpoint}: {}", failure.message));
                }
                _ => return Err(CtlError::Refused(format!("{what} refused by {endpoint}: {}", failure.message))),
            },
        }
    }
    Err(CtlError::NoEndpoint(errors))
}

/// `member add NAME --peer-urls URLS [--learner]`: returns the new member and the list to start it with.
pub async fn member_add(opts: &ClientOptions, peer_urls: &[String], learner: bool) -> Result<(MemberInfo, Vec<MemberInfo>)> {
    let urls = peer_urls.to_vec();
    change(opts, "member add", move |mut c| {
        let urls = urls.clone();
        async move {
            let o = if learner { etcd_client::MemberAddOptions::new().with_is_learner() } else { etcd_client::MemberAddOptions::new() };
            c.member_add(urls, Some(o)).await
        }
    })
    .await
    .and_then(|r| {
        let added = r.member().map(|m| to_members(std::slice::from_ref(m))).unwrap_or_default();
        let added = added.into_iter().next().ok_or_else(|| CtlError::Refused("member add: no member in the answer".into()))?;
        Ok((added, to_members(r.member_list())))
    })
}

pub async fn member_promote(opts: &ClientOptions, id: u64) -> Result<Vec<MemberInfo>> {
    change(opts, "member promote", move |mut c| async move { c.member_promote(id).await }).await.map(|r| to_members(r.members()))
}

pub async fn member_remove(opts: &ClientOptions, id: u64) -> Result<Vec<MemberInfo>> {
    change(opts, "member remove", move |mut c| async move { c.member_remove(id).await }).await.map(|r| to_members(r.members()))
}

/// Alarms as reported by the first endpoint that answers.
pub async fn alarm_list(opts: &ClientOptions) -> Result<AlarmList> {
    change(opts, "alarm list", |mut c| async move { c.alarm(AlarmAction::Get, AlarmType::None, None).await }).await.map(|r| AlarmList {
        header: r.header().map(|h| (h.cluster_id(), h.member_id(), h.revision(), h.raft_term())),
        alarms: r.alarms().iter().map(|a| AlarmInfo { member_id: a.member_id(), alarm: format!("{:?}", a.alarm()).to_uppercase() }).collect(),
    })
}

/// `move-leader TARGET_ID`: asks the current leader to hand leadership to `target` (a voter that
/// is caught up), as etcdctl does: the request must reach the leader itself.
pub async fn move_leader(opts: &ClientOptions, target: u64) -> Result<u64> {
    let statuses = status(opts).await;
    let answered: Vec<&StatusInfo> = statuses.iter().filter_map(|s| s.result.as_ref().ok()).collect();
    let Some(leader) = answered.iter().map(|s| s.leader).find(|l| *l != 0) else {
        return Err(CtlError::NoEndpoint(
            statuses
                .iter()
                .map(|s| format!("{}: {}", s.endpoint, s.result.as_ref().err().map(|f| f.message.as_str()).unwrap_or("answers, but has no leader")))
                .collect(),
        ));
    };
    if leader == target {
        return Ok(leader);
    }
    let Some(endpoint) = statuses.iter().find(|s| s.result.as_ref().is_ok_and(|r| r.member_id == leader)).map(|s| s.endpoint.clone()) else {
        return Err(CtlError::Refused(format!("the leader {leader:x} is not among the endpoints; pass its client URL with --endpoints")));
    };
    let mut c = client_for(&endpoint, opts).await?;
    match bounded(limit(opts), c.move_leader(target)).await {
        Some(Ok(_)) => Ok(leader),
        Some(Err(e)) => Err(CtlError::Refused(format!("move-leader refused by {endpoint}: {}", explain(&e, &endpoint, opts).await.message))),
        None => Err(CtlError::Endpoint { endpoint, reason: Failure::timeout(limit(opts)).message }),
    }
}

/// Parses a member ID as etcdctl prints it (hex).
pub fn parse_member_id(text: &str) -> Result<u64> {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| CtlError::Usage(format!("member ID {text:?} is not a hex ID like 8e9e05c52164694d (see `member list`)")))
}
