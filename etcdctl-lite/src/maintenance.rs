//! Maintenance, with etcdctl's names and semantics: `compaction REV [--physical]`, `defrag`
//! (member by member, never two at once, the leader last: a member defragmenting blocks its reads
//! and writes, and the leader's pause would cost the whole cluster), `alarm disarm` (every active
//! alarm, as etcdctl disarms them one by one).

use crate::connect::{bounded, client_for};
use crate::diagnose::{Failure, explain};
use crate::error::{CtlError, Result};
use crate::model::{AlarmInfo, AlarmList};
use crate::ops::{alarm_list, status};
use crate::options::ClientOptions;
use etcd_client::{AlarmAction, AlarmOptions, AlarmType, CompactionOptions};
use std::time::{Duration, Instant};

/// `compaction REV [--physical]`: through the first endpoint that answers; returns the revision.
pub async fn compaction(opts: &ClientOptions, revision: i64, physical: bool) -> Result<i64> {
    if revision <= 0 {
        return Err(CtlError::Usage(format!("compaction {revision}: the revision must be positive (see `endpoint status` for the current one)")));
    }
    let mut errors = Vec::new();
    for endpoint in &opts.endpoints {
        let mut c = match client_for(endpoint, opts).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let options = physical.then(|| CompactionOptions::new().with_physical());
        match bounded(opts.command_timeout, c.compact(revision, options)).await {
            Some(Ok(_)) => return Ok(revision),
            Some(Err(e)) => {
                let f = explain(&e, endpoint, opts).await;
                if f.message.contains("compacted") || f.message.contains("future revision") {
                    // etcd's own answer: final, not an endpoint problem
                    return Err(CtlError::Refused(format!("compaction {revision}: {}", f.message)));
                }
                errors.push(format!("{endpoint}: {}", f.message));
            }
            None => errors.push(format!("{endpoint}: {}", Failure::timeout(opts.command_timeout).message)),
        }
    }
    Err(CtlError::NoEndpoint(errors))
}

/// One member's defragmentation.
#[derive(Debug, Clone)]
pub struct Defragmented {
    pub endpoint: String,
    pub result: std::result::Result<Duration, Failure>,
}

/// `endpoints` in defragmentation order: the leader (as the endpoints report it) last.
pub async fn leader_last(opts: &ClientOptions) -> Vec<String> {
    let statuses = status(opts).await;
    let leader = statuses.iter().filter_map(|s| s.result.as_ref().ok()).map(|s| s.leader).find(|l| *l != 0);
    let is_leader = |e: &str| statuses.iter().any(|s| s.endpoint == e && s.result.as_ref().is_ok_and(|r| Some(r.member_id) == leader));
    let mut order: Vec<String> = opts.endpoints.iter().filter(|e| !is_leader(e)).cloned().collect();
    order.extend(opts.endpoints.iter().filter(|e| is_leader(e)).cloned());
    order
}

/// Defragments one member (a member-local operation; it blocks that member meanwhile).
pub async fn defrag_one(endpoint: &str, opts: &ClientOptions) -> Defragmented {
    let started = Instant::now();
    let work = async {
        let mut c = client_for(endpoint, opts).await.map_err(|e| Failure { kind: crate::diagnose::FailureKind::Other, message: e.to_string() })?;
        match c.defragment().await {
            Ok(_) => Ok(started.elapsed()),
            Err(e) => Err(explain(&e, endpoint, opts).await),
        }
    };
    let result = bounded(opts.command_timeout, work).await.unwrap_or_else(|| Err(Failure::timeout(opts.command_timeout)));
    Defragmented { endpoint: endpoint.to_string(), result }
}

/// `defrag`: every endpoint, one after another, the leader last.
pub async fn defrag(opts: &ClientOptions) -> Vec<Defragmented> {
    let mut done = Vec::new();
    for endpoint in leader_last(opts).await {
        done.push(defrag_one(&endpoint, opts).await);
    }
    done
}

fn alarm_type(name: &str) -> AlarmType {
    match name {
        "NOSPACE" => AlarmType::Nospace,
        "CORRUPT" => AlarmType::Corrupt,
        _ => AlarmType::None,
    }
}

/// `alarm disarm`: lists the active alarms, then deactivates each (as etcdctl does); returns
/// the alarms disarmed.
pub async fn alarm_disarm(opts: &ClientOptions) -> Result<AlarmList> {
    let active = alarm_list(opts).await?;
    let mut disarmed: Vec<AlarmInfo> = Vec::new();
    let mut errors = Vec::new();
    for a in &active.alarms {
        let mut done = false;
        for endpoint in &opts.endpoints {
            let Ok(mut c) = client_for(endpoint, opts).await else { continue };
            let mut o = AlarmOptions::new();
            o.with_member(a.member_id);
            match bounded(opts.command_timeout, c.alarm(AlarmAction::Deactivate, alarm_type(&a.alarm), Some(o))).await {
                Some(Ok(r)) => {
                    disarmed.extend(r.alarms().iter().map(|x| AlarmInfo { member_id: x.member_id(), alarm: format!("{:?}", x.alarm()).to_uppercase() }));
                    done = true;
                    break;
                }
                Some(Err(e)) => errors.push(format!("{endpoint}: {}", explain(&e, endpoint, opts).await.message)),
                None => errors.push(format!("{endpoint}: {}", Failure::timeout(opts.command_timeout).message)),
            }
        }
        if !done {
            return Err(CtlError::NoEndpoint(errors));
        }
    }
    Ok(AlarmList { header: active.header, alarms: disarmed })
}

/// Proves the cluster takes writes: puts `key` and deletes it again, through the first endpoint
/// that answers; returns how long the put took.
pub async fn write_check(opts: &ClientOptions, key: &str) -> Result<Duration> {
    let mut errors = Vec::new();
    for endpoint in &opts.endpoints {
        let Ok(mut c) = client_for(endpoint, opts).await else { continue };
        let started = Instant::now();
        match bounded(opts.command_timeout, c.put(key, "ok", None)).await {
            Some(Ok(_)) => {
                let took = started.elapsed();
                let _ = bounded(opts.command_timeout, c.delete(key, None)).await;
                return Ok(took);
            }
            Some(Err(e)) => {
                let f = explain(&e, endpoint, opts).await;
                if f.message.contains("space exceeded") || f.message.contains("alarm") {
                    return Err(CtlError::Refused(format!("write refused by {endpoint}: {}", f.message)));
                }
                errors.push(format!("{endpoint}: {}", f.message));
            }
            None => errors.push(format!("{endpoint}: {}", Failure::timeout(opts.command_timeout).message)),
        }
    }
    Err(CtlError::NoEndpoint(errors))
}

/// What `downgrade` asks of the cluster (etcd 3.6+; etcdctl's `downgrade validate|enable|cancel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downgrade {
    /// Would a downgrade to this minor (`3.6`) be allowed? Changes nothing.
    Validate(String),
    /// Start it: the cluster version drops to the target and the storage is migrated to it.
    Enable(String),
    /// Stop it: the cluster version returns to the lowest version the members run.
    Cancel,
}

/// `downgrade validate|enable|cancel`, through the first endpoint that answers; returns the
/// cluster version etcd answers with. etcd's refusal (a skipped minor, no downgrade to cancel)
/// is final: [`CtlError::Refused`] with its words.
pub async fn downgrade(opts: &ClientOptions, what: &Downgrade) -> Result<String> {
    let mut errors = Vec::new();
    for endpoint in &opts.endpoints {
        let c = match client_for(endpoint, opts).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let options = match what {
            Downgrade::Validate(v) => etcd_client::DowngradeOptions::Validate(v.clone()),
            Downgrade::Enable(v) => etcd_client::DowngradeOptions::Enable(v.clone()),
            Downgrade::Cancel => etcd_client::DowngradeOptions::Cancel,
        };
        match bounded(opts.command_timeout, c.maintenance_client().downgrade(options)).await {
            Some(Ok(r)) => return Ok(r.version().to_string()),
            Some(Err(e)) => {
                let f = explain(&e, endpoint, opts).await;
                if f.kind == crate::diagnose::FailureKind::Other {
                    return Err(CtlError::Refused(format!("downgrade: {}", f.message)));
                }
                errors.push(format!("{endpoint}: {}", f.message));
            }
            None => errors.push(format!("{endpoint}: {}", Failure::timeout(opts.command_timeout).message)),
        }
    }
    Err(CtlError::NoEndpoint(errors))
}
