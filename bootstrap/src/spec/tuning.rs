//! The etcd flags operators tune, as the spec's `etcd:` section: typed, validated once, and turned
//! into flags for every member. Unset options leave etcd's defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CompactionMode {
    Periodic,
    Revision,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdTuning {
    /// `--quota-backend-bytes`: the database size at which etcd raises NOSPACE (etcd's default
    /// 2 GiB; 8 GiB is the largest etcd recommends).
    #[serde(default)]
    pub quota_backend_bytes: Option<u64>,
    /// `--auto-compaction-mode`: `periodic` (retention is a duration) or `revision` (a count).
    #[serde(default)]
    pub auto_compaction_mode: Option<CompactionMode>,
    /// `--auto-compaction-retention`: `1h`, `30m` (periodic) or `1000` (revision).
    #[serde(default)]
    pub auto_compaction_retention: Option<String>,
    /// `--heartbeat-interval` in milliseconds (etcd's default 100).
    #[serde(default)]
    pub heartbeat_interval: Option<u64>,
    /// `--election-timeout` in milliseconds (etcd's default 1000; at least 5 heartbeats).
    #[serde(default)]
    pub election_timeout: Option<u64>,
    /// `--snapshot-count`: applied entries between raft snapshots.
    #[serde(default)]
    pub snapshot_count: Option<u64>,
    /// `--listen-metrics-urls=http://ADDRESS:PORT`: plain-HTTP /health and /metrics on each
    /// member's address (kubeadm uses port 2381), for probes and Prometheus without a client cert.
    #[serde(default)]
    pub metrics_port: Option<u16>,
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

impl EtcdTuning {
    /// Every problem at once (`etcd.FIELD: ...`), and warnings.
    pub fn validate(&self, ports_in_use: &[u16]) -> (Vec<String>, Vec<String>) {
        let (mut p, mut w) = (Vec::new(), Vec::new());
        if let Some(q) = self.quota_backend_bytes {
            if !(MIB..=100 * GIB).contains(&q) {
                p.push(format!("etcd.quota_backend_bytes: {q} is outside 1 MiB..100 GiB"));
            } else if q > 8 * GIB {
                w.push(format!("etcd.quota_backend_bytes: {} GiB is above the 8 GiB etcd recommends (slow defragmentation, long restarts)", q / GIB));
            }
        }
        match (self.auto_compaction_mode, self.auto_compaction_retention.as_deref()) {
            (Some(_), None) => p.push("etcd.auto_compaction_retention: needed with auto_compaction_mode".into()),
            (None, Some(_)) => p.push("etcd.auto_compaction_mode: needed with auto_compaction_retention (periodic or revision)".into()),
            (Some(CompactionMode::Periodic), Some(r)) => {
                if !is_retention_duration(r) {
                    p.push(format!("etcd.auto_compaction_retention: {r:?} is not a duration like 1h, 30m or 90s (or whole hours: 1)"));
                }
            }
            (Some(CompactionMode::Revision), Some(r)) => {
                if !r.parse::<u64>().is_ok_and(|n| n > 0) {
                    p.push(format!("etcd.auto_compaction_retention: {r:?} is not a positive number of revisions"));
                }
            }
            (None, None) => {}
        }
        let heartbeat = self.heartbeat_interval.unwrap_or(100);
        if self.heartbeat_interval.is_some_and(|h| !(10..=10_000).contains(&h)) {
            p.push(format!("etcd.heartbeat_interval: {heartbeat} ms is outside 10..10000"));
        }
        if let Some(e) = self.election_timeout {
            if !(100..=50_000).contains(&e) {
                p.push(format!("etcd.election_timeout: {e} ms is outside 100..50000 (etcd's limit)"));
            } else if e < 5 * heartbeat {
                p.push(format!("etcd.election_timeout: {e} ms must be at least 5 heartbeats ({} ms); etcd refuses to start otherwise", 5 * heartbeat));
            }
        } else if heartbeat * 5 > 1000 {
            p.push(format!("etcd.election_timeout: the default 1000 ms is below 5 heartbeats of {heartbeat} ms; set it"));
        }
        if self.snapshot_count == Some(0) {
            p.push("etcd.snapshot_count: must be positive".into());
        }
        if let Some(port) = self.metrics_port
            && (port == 0 || ports_in_use.contains(&port))
        {
            p.push(format!("etcd.metrics_port: {port} is 0 or a member's client or peer port"));
        }
        (p, w)
    }

    /// The flags, for a member advertising `url_host`.
    pub fn flags(&self, url_host: &str) -> Vec<String> {
        let mut a = Vec::new();
        let mut flag = |k: &str, v: String| {
            a.push(format!("--{k}"));
            a.push(v);
        };
        if let Some(q) = self.quota_backend_bytes {
            flag("quota-backend-bytes", q.to_string());
        }
        if let (Some(mode), Some(r)) = (self.auto_compaction_mode, &self.auto_compaction_retention) {
            flag("auto-compaction-mode", if mode == CompactionMode::Periodic { "periodic" } else { "revision" }.into());
            flag("auto-compaction-retention", r.clone());
        }
        if let Some(h) = self.heartbeat_interval {
            flag("heartbeat-interval", h.to_string());
        }
        if let Some(e) = self.election_timeout {
            flag("election-timeout", e.to_string());
        }
        if let Some(n) = self.snapshot_count {
            flag("snapshot-count", n.to_string());
        }
        if let Some(port) = self.metrics_port {
            flag("listen-metrics-urls", format!("http://{url_host}:{port}"));
        }
        a
    }

    /// How long an election takes at most: the verdict re-checks a leaderless majority this long.
    pub fn election_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.election_timeout.unwrap_or(1000))
    }
}

/// `1h`, `30m`, `90s`, or whole hours as a bare number (etcd's periodic retention).
fn is_retention_duration(r: &str) -> bool {
    if r.parse::<u64>().is_ok_and(|n| n > 0) {
        return true;
    }
    let (num, unit) = r.split_at(r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len()));
    num.parse::<u64>().is_ok_and(|n| n > 0) && matches!(unit, "h" | "m" | "s")
}

/// Every option set (tests: the flags they become, and that each exists in every etcd).
#[cfg(test)]
pub(crate) fn every_option() -> EtcdTuning {
    EtcdTuning {
        quota_backend_bytes: Some(8 * GIB),
        auto_compaction_mode: Some(CompactionMode::Periodic),
        auto_compaction_retention: Some("1h".into()),
        heartbeat_interval: Some(250),
        election_timeout: Some(2500),
        snapshot_count: Some(10_000),
        metrics_port: Some(2381),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_add_no_flags_and_no_problems() {
        let t = EtcdTuning::default();
        assert!(t.flags("10.0.0.1").is_empty());
        assert_eq!(t.validate(&[2379, 2380]), (vec![], vec![]));
    }

    #[test]
    fn every_option_becomes_its_flag() {
        let t = every_option();
        assert_eq!(t.validate(&[2379, 2380]), (vec![], vec![]));
        assert_eq!(
            t.flags("10.0.0.1").join(" "),
            "--quota-backend-bytes 8589934592 --auto-compaction-mode periodic --auto-compaction-retention 1h --heartbeat-interval 250 --election-timeout 2500 --snapshot-count 10000 --listen-metrics-urls http://10.0.0.1:2381"
        );
        assert_eq!(t.election_timeout(), std::time::Duration::from_millis(2500));
    }

    #[test]
    fn mistakes_are_named() {
        let bad = EtcdTuning {
            quota_backend_bytes: Some(10),
            auto_compaction_mode: Some(CompactionMode::Revision),
            auto_compaction_retention: Some("1h".into()),
            heartbeat_interval: Some(300),
            election_timeout: Some(1000),
            snapshot_count: Some(0),
            metrics_port: Some(2379),
        };
        let (p, _) = bad.validate(&[2379, 2380]);
        for field in ["quota_backend_bytes", "auto_compaction_retention", "election_timeout", "snapshot_count", "metrics_port"] {
            assert!(p.iter().any(|x| x.starts_with(&format!("etcd.{field}:"))), "{field}: {p:?}");
        }
        let only_mode = EtcdTuning { auto_compaction_mode: Some(CompactionMode::Periodic), ..Default::default() };
        assert!(only_mode.validate(&[]).0[0].contains("auto_compaction_retention"));
        let big = EtcdTuning { quota_backend_bytes: Some(16 * GIB), ..Default::default() };
        assert_eq!(big.validate(&[]).1.len(), 1);
        for ok in ["1h", "30m", "90s", "2"] {
            assert!(is_retention_duration(ok), "{ok}");
        }
        for bad in ["", "h", "1d", "-1h", "0", "1h30m", "1.5h"] {
            assert!(!is_retention_duration(bad), "{bad}");
        }
    }
}
