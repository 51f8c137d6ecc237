//! The cluster's history as transactions, for point-in-time recovery: a watch on the whole
//! keyspace from a revision ([`Follower`]), its events grouped back into the transactions that
//! made them (one revision is one transaction: every write that changes the keyspace raises the
//! revision by exactly one and yields at least one event), and [`apply`], which replays one such
//! transaction on another etcd and checks it landed at the same revision.
//!
//! A lease is not in the history (granting one changes no key): the follower asks for the TTL of
//! each lease it first sees on a key, and the change carries it, so a replay can grant it.

use crate::connect::bounded;
use crate::error::{CtlError, Result};
use crate::options::ClientOptions;
use etcd_client::{Client, EventType, LeaseGrantOptions, TxnOp, WatchOptions, WatchStream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// One revision: what one transaction did, in its order, and when the follower received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub rev: i64,
    /// Unix milliseconds when the follower received it (the time `--to-time` compares).
    pub at_ms: i64,
    pub ops: Vec<Op>,
    /// Leases first seen in this change, with their granted TTL (seconds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseTtl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTtl {
    pub id: i64,
    pub ttl: i64,
}

/// A key written or deleted (keys and values base64, as etcd's JSON gateway writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Put {
        #[serde(with = "b64")]
        key: Vec<u8>,
        #[serde(with = "b64")]
        value: Vec<u8>,
        #[serde(default, skip_serializing_if = "is_zero")]
        lease: i64,
    },
    Delete {
        #[serde(with = "b64")]
        key: Vec<u8>,
    },
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Change {
    /// Bytes of keys and values: what a buffer of changes holds.
    pub fn weight(&self) -> usize {
        self.ops
            .iter()
            .map(|o| match o {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key } => key.len(),
            })
            .sum::<usize>()
            + 32
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The history from the asked revision is gone: only a new full snapshot continues the chain.
    #[error("the history before revision {0} was compacted away")]
    Compacted(i64),
    /// The member went away (or never answered): reconnect from the last revision kept.
    #[error("{endpoint}: {reason}")]
    Lost { endpoint: String, reason: String },
}

/// A watch on the whole keyspace of one member, from a revision on.
pub struct Follower {
    pub endpoint: String,
    pub cluster_id: u64,
    stream: WatchStream,
    client: Client,
    ttls: HashMap<i64, i64>,
    /// The highest revision known complete (events or a progress report up to it).
    pub seen: i64,
}

impl Follower {
    /// Follows from `from` (inclusive) on the first endpoint that answers.
    pub async fn start(opts: &ClientOptions, from: i64) -> std::result::Result<Follower, FollowError> {
        let mut last = FollowError::Lost { endpoint: opts.endpoints.join(","), reason: "no endpoint".into() };
        for endpoint in &opts.endpoints {
            match Self::start_on(endpoint, opts, from).await {
                Ok(f) => return Ok(f),
                Err(e @ FollowError::Compacted(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn start_on(endpoint: &str, opts: &ClientOptions, from: i64) -> std::result::Result<Follower, FollowError> {
        let lost = |reason: String| FollowError::Lost { endpoint: endpoint.to_string(), reason };
        // no request timeout: it would end the stream; the dial and the first answer are bounded
        let client = crate::connect::client_for_stream(endpoint, opts).await.map_err(|e| lost(e.to_string()))?;
        let mut c = client.clone();
        let watch = c.watch(vec![0u8], Some(WatchOptions::new().with_all_keys().with_start_revision(from.max(1))));
        let mut stream = match bounded(opts.command_timeout, watch).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(lost(e.to_string())),
            None => return Err(lost(format!("no answer within {:?}", opts.command_timeout))),
        };
        let created = match bounded(opts.command_timeout, stream.message()).await {
            Some(Ok(Some(r))) => r,
            Some(Ok(None)) => return Err(lost("the watch ended at once".into())),
            Some(Err(e)) => return Err(lost(e.to_string())),
            None => return Err(lost(format!("no answer within {:?}", opts.command_timeout))),
        };
        if created.compact_revision() > 0 || created.canceled() {
            return Err(FollowError::Compacted(created.compact_revision()));
        }
        let cluster_id = created.header().map(|h| h.cluster_id()).unwrap_or(0);
        Ok(Follower { endpoint: endpoint.to_string(), cluster_id, stream, client, ttls: HashMap::new(), seen: from - 1 })
    }

    /// Asks the member to report how far the watch has got (answered within [`Follower::next`]).
    pub async fn ask_progress(&mut self) -> std::result::Result<(), FollowError> {
        self.stream.request_progress().await.map_err(|e| FollowError::Lost { endpoint: self.endpoint.clone(), reason: e.to_string() })
    }

    /// The changes that arrive within `wait` (none: nothing happened), in revision order.
    pub async fn next(&mut self, wait: Duration, now_ms: impl Fn() -> i64) -> std::result::Result<Vec<Change>, FollowError> {
        let lost = |endpoint: &str, reason: String| FollowError::Lost { endpoint: endpoint.to_string(), reason };
        let resp = match tokio::time::timeout(wait, self.stream.message()).await {
            Err(_) => return Ok(vec![]),
            Ok(Err(e)) => return Err(lost(&self.endpoint, e.to_string())),
            Ok(Ok(None)) => return Err(lost(&self.endpoint, "the watch stream ended".into())),
            Ok(Ok(Some(r))) => r,
        };
        if resp.compact_revision() > 0 {
            return Err(FollowError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Err(lost(&self.endpoint, format!("the watch was cancelled: {}", resp.cancel_reason())));
        }
        let at_ms = now_ms();
        let mut out: Vec<Change> = Vec::new();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let op = match ev.event_type() {
                EventType::Put => Op::Put { key: kv.key().to_vec(), value: kv.value().to_vec(), lease: kv.lease() },
                EventType::Delete => Op::Delete { key: kv.key().to_vec() },
            };
            let rev = kv.mod_revision();
            match out.last_mut() {
                Some(c) if c.rev == rev => c.ops.push(op),
                _ => out.push(Change { rev, at_ms, ops: vec![op], leases: vec![] }),
            }
        }
        for c in &mut out {
            c.leases = self.new_leases(c).await;
        }
        let header_rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        // a progress report (no events) says every revision up to its header is delivered
        let top = out.last().map(|c| c.rev).unwrap_or(0);
        self.seen = self.seen.max(top).max(if out.is_empty() { header_rev } else { top });
        Ok(out)
    }

    async fn new_leases(&mut self, c: &Change) -> Vec<LeaseTtl> {
        let mut found = Vec::new();
        for op in &c.ops {
            let Op::Put { lease, .. } = op else { continue };
            if *lease == 0 || self.ttls.contains_key(lease) {
                continue;
            }
            // an expired lease answers -1: its keys' deletion is in the history; a minute is enough
            let ttl = match bounded(Duration::from_secs(5), self.client.lease_time_to_live(*lease, None)).await {
                Some(Ok(r)) if r.granted_ttl() > 0 => r.granted_ttl(),
                _ => 60,
            };
            self.ttls.insert(*lease, ttl);
            found.push(LeaseTtl { id: *lease, ttl });
        }
        found
    }
}

/// Replays `c` on `client` as one transaction (leases it needs granted first, with their IDs)
/// and checks it landed at the revision it had: a replay that drifts is stopped, not trusted.
pub async fn apply(client: &mut Client, c: &Change, granted: &mut HashMap<i64, i64>) -> Result<()> {
    let fail = |reason: String| CtlError::Usage(format!("replaying revision {}: {reason}", c.rev));
    for l in &c.leases {
        granted.entry(l.id).or_insert(l.ttl);
    }
    for op in &c.ops {
        let Op::Put { lease, .. } = op else { continue };
        if *lease == 0 || granted.get(lease) == Some(&-1) {
            continue;
        }
        let ttl = granted.get(lease).copied().unwrap_or(60);
        match client.lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(*lease))).await {
            Ok(_) => {}
            // the snapshot had it, or a change before granted it
            Err(e) if e.to_string().contains("lease already exists") => {}
            Err(e) => return Err(fail(format!("granting lease {lease:x}: {e}"))),
        }
        granted.insert(*lease, -1);
    }
    let ops: Vec<TxnOp> = c
        .ops
        .iter()
        .map(|o| match o {
            Op::Put { key, value, lease: 0 } => TxnOp::put(key.clone(), value.clone(), None),
            Op::Put { key, value, lease } => TxnOp::put(key.clone(), value.clone(), Some(etcd_client::PutOptions::new().with_lease(*lease))),
            Op::Delete { key } => TxnOp::delete(key.clone(), None),
        })
        .collect();
    let resp = client.txn(etcd_client::Txn::new().and_then(ops)).await.map_err(|e| fail(e.to_string()))?;
    let landed = resp.header().map(|h| h.revision()).unwrap_or(0);
    if landed != c.rev {
        return Err(fail(format!("it landed at revision {landed}: the history has a gap or something else wrote")));
    }
    Ok(())
}

/// One line of a changes file: the change as JSON.
pub fn to_line(c: &Change) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

/// A line back; `None` for anything that is not a change.
pub fn from_line(line: &str) -> Option<Change> {
    serde_json::from_str(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_change_survives_its_line_binary_keys_and_leases_included() {
        let c = Change {
            rev: 42,
            at_ms: 1_700_000_000_123,
            ops: vec![Op::Put { key: b"/registry/pods/a".to_vec(), value: vec![0, 255, 10, 13], lease: 7 }, Op::Delete { key: vec![0xff, 0] }],
            leases: vec![LeaseTtl { id: 7, ttl: 3600 }],
        };
        let line = to_line(&c);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(from_line(&line), Some(c));
        // a put without a lease writes none, and reads back as lease 0
        let plain = Change { rev: 1, at_ms: 0, ops: vec![Op::Put { key: b"k".to_vec(), value: b"v".to_vec(), lease: 0 }], leases: vec![] };
        assert!(!to_line(&plain).contains("lease"));
        assert_eq!(from_line(&to_line(&plain)), Some(plain));
    }

    proptest! {
        #[test]
        fn no_line_makes_the_reader_panic(line in "\\PC{0,200}") {
            let _ = from_line(&line);
        }
    }
}
