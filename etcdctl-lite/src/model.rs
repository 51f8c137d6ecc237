//! Plain structs the commands produce: etcd-client's responses are turned into these at the
//! boundary, so rendering and the quorum verdict never see gRPC types.

use crate::diagnose::Failure;
use serde::Serialize;
use std::time::Duration;

/// One endpoint's health, as `endpoint health` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub took: Duration,
    pub result: Result<(), Failure>,
}

impl EndpointHealth {
    pub fn healthy(&self) -> bool {
        self.result.is_ok()
    }
}

/// `Maintenance.Status` of one member (IDs as numbers; rendering decides hex or decimal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub header_raft_term: u64,
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    pub errors: Vec<String>,
    /// What a 3.6+ server adds (`None` from 3.4 and 3.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_36: Option<Status36>,
}

/// The fields etcd 3.6 added to a member's status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Status36 {
    pub storage_version: String,
    pub db_size_quota: i64,
    /// The downgrade under way, if the server reports one: (target version, enabled).
    pub downgrade: Option<(String, bool)>,
}

/// One endpoint's status or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub result: Result<StatusInfo, Failure>,
}

/// A member from `MemberList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberInfo {
    /// A member that was added but never started has no name and no client URLs yet.
    pub fn started(&self) -> bool {
        !self.name.is_empty() || !self.client_urls.is_empty()
    }
}

/// The member list with the header of the member that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    pub cluster_id: u64,
    pub member_id: u64,
    pub raft_term: u64,
    pub members: Vec<MemberInfo>,
}

/// An active alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmInfo {
    pub member_id: u64,
    pub alarm: String,
}

impl AlarmInfo {
    /// The alarm in one of a status answer's `errors`: etcd writes each active alarm there as
    /// its protobuf text (`memberID:123 alarm:NOSPACE `; 3.7's protobuf library varies the
    /// spaces between fields on purpose). `None` for any other error (`etcdserver: no leader`).
    pub fn from_status_error(error: &str) -> Option<AlarmInfo> {
        let field = |name: &str| {
            let rest = error.split_once(name)?.1.trim_start();
            let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
            Some(&rest[..end]).filter(|v| !v.is_empty())
        };
        let member_id = field("memberID:")?.parse().ok()?;
        Some(AlarmInfo { member_id, alarm: field("alarm:")?.to_string() })
    }

    /// etcd's AlarmType number, which etcdctl's JSON prints (`NONE` 0, `NOSPACE` 1, `CORRUPT` 2).
    pub fn code(&self) -> i32 {
        match self.alarm.as_str() {
            "NOSPACE" => 1,
            "CORRUPT" => 2,
            _ => 0,
        }
    }
}

/// `alarm list`'s answer: the alarms and, when the member sent one, the response header
/// (etcd leaves it out of some answers; etcdctl then prints none either).
#[derive(Debug, Clone)]
pub struct AlarmList {
    /// cluster_id, member_id, revision, raft_term
    pub header: Option<(u64, u64, i64, u64)>,
    pub alarms: Vec<AlarmInfo>,
}

/// Go's `time.Duration.String()`, which etcdctl prints (`4.485927ms`, `5.000472415s`).
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |whole: u128, frac: u128, digits: usize, unit: &str| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() { format!("{whole}{unit}") } else { format!("{whole}.{f}{unit}") }
    };
    if ns == 0 {
        "0s".into()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim(ns / 1_000, ns % 1_000, 3, "µs")
    } else if ns < 1_000_000_000 {
        trim(ns / 1_000_000, ns % 1_000_000, 6, "ms")
    } else {
        trim(ns / 1_000_000_000, ns % 1_000_000_000, 9, "s")
    }
}

/// etcdctl's `humanize.Bytes` (SI units): `20 kB`, `2.1 MB`.
pub fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 10.0 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let e = (n.ln() / 1000f64.ln()).floor().min(5.0);
    // go-humanize's humanateBytes: rounded to one decimal first, then printed (Go's and Rust's
    // float printing both round half to even)
    let v = (n / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = units[e as usize];
    if v < 10.0 { format!("{v:.1} {unit}") } else { format!("{v:.0} {unit}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// go-humanize's Bytes (etcdctl's and etcdutl's sizes), values printed by Go 1.26.
    #[test]
    fn sizes_as_go_humanize_prints_them() {
        for (n, go) in [
            (9, "9 B"),
            (155_499, "156 kB"),
            (155_449, "155 kB"),
            (155_500, "156 kB"),
            (154_500, "154 kB"),
            (155_960, "156 kB"),
            (9_949, "9.9 kB"),
            (9_950, "10 kB"),
            (20_480, "20 kB"),
            (2_147_483_648, "2.1 GB"),
        ] {
            assert_eq!(human_bytes(n), go, "{n}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_nanos(4_485_927)), "4.485927ms");
        assert_eq!(go_duration(Duration::from_nanos(5_000_472_415)), "5.000472415s");
        assert_eq!(go_duration(Duration::from_millis(2)), "2ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    /// What etcd 3.4.23 and 3.5 (gogo protobuf) and 3.7.4 (google.golang.org/protobuf, its
    /// spaces varied) wrote in a status answer's errors when NOSPACE was raised here.
    #[test]
    fn alarms_read_from_a_status_answers_errors() {
        let want = Some(AlarmInfo { member_id: 15072760227123329218, alarm: "NOSPACE".into() });
        assert_eq!(AlarmInfo::from_status_error("memberID:15072760227123329218 alarm:NOSPACE "), want);
        assert_eq!(AlarmInfo::from_status_error("memberID:15072760227123329218  alarm:NOSPACE"), want);
        assert_eq!(AlarmInfo::from_status_error("memberID: 15072760227123329218 alarm: NOSPACE"), want);
        assert_eq!(AlarmInfo::from_status_error("memberID:7 alarm:CORRUPT").map(|a| a.code()), Some(2));
        for other in ["etcdserver: no leader", "", "memberID:x alarm:NOSPACE", "memberID:7", "alarm:NOSPACE", "memberID:7 alarm:"] {
            assert_eq!(AlarmInfo::from_status_error(other), None, "{other:?}");
        }
    }

    proptest::proptest! {
        /// A server's errors are its own text: whatever they hold, reading them never panics, and
        /// an alarm read back names what follows `alarm:`.
        #[test]
        fn any_status_error_is_read_without_panicking(s in "\\PC{0,60}", id in proptest::prelude::any::<u64>(), name in "[A-Z]{1,12}") {
            let _ = AlarmInfo::from_status_error(&s);
            let line = format!("{s}memberID:{id} alarm:{name}");
            if !s.contains("memberID:") && !s.contains("alarm:") {
                proptest::prop_assert_eq!(AlarmInfo::from_status_error(&line), Some(AlarmInfo { member_id: id, alarm: name }));
            }
        }
    }

    #[test]
    fn bytes_like_etcdctl() {
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(16384), "16 kB");
        assert_eq!(human_bytes(2_100_000), "2.1 MB");
        assert_eq!(human_bytes(5), "5 B");
    }
}
