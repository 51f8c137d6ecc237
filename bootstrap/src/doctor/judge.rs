//! Pure judgements: a measured value against its thresholds, with the evidence and the fix.
//! Thresholds are the etcd mixin's and etcd's own recommendations where they exist.

use super::{Check, Level};

pub const GIB: u64 = 1 << 30;
/// etcd's default `--quota-backend-bytes`.
pub const DEFAULT_QUOTA: u64 = 2 * GIB;

/// A check's result; the fix is kept only for one that is not OK.
pub(super) fn check(name: &str, member: Option<&str>, level: Level, evidence: String, fix: &str) -> Check {
    Check { name: name.into(), member: member.map(String::from), level, evidence, fix: if level == Level::Ok { String::new() } else { fix.into() } }
}

/// DB size against the quota: WARN at 80 %, FAIL at 95 % (etcdDatabaseQuotaLowSpace).
pub fn db_size(member: &str, size: u64, quota: u64) -> Check {
    let pct = if quota == 0 { 0.0 } else { size as f64 * 100.0 / quota as f64 };
    let level = if pct >= 95.0 {
        Level::Fail
    } else if pct >= 80.0 {
        Level::Warn
    } else {
        Level::Ok
    };
    check(
        "db-size",
        Some(member),
        level,
        format!("{} of the {} quota ({pct:.1}%)", mib(size), mib(quota)),
        "compact and defragment (etcd-bootstrap maintain), or raise etcd.quota_backend_bytes",
    )
}

/// Space in use below half the file, in a file over 100 MB: defragmentation would give it back
/// (etcdDatabaseHighFragmentationRatio).
pub fn fragmentation(member: &str, size: u64, in_use: u64) -> Check {
    let ratio = if size == 0 { 1.0 } else { in_use as f64 / size as f64 };
    let level = if size > 100 * 1024 * 1024 && ratio < 0.5 { Level::Warn } else { Level::Ok };
    check(
        "fragmentation",
        Some(member),
        level,
        format!("{} in use of {} ({:.0}%)", mib(in_use), mib(size), ratio * 100.0),
        "defragment: etcd-bootstrap maintain",
    )
}

/// p99 of a latency histogram: WARN above etcd's recommended limit (10 ms WAL fsync, 25 ms
/// commit), FAIL above the etcd mixin's alert (etcdHighFsyncDurations 0.5 s,
/// etcdHighCommitDurations 0.25 s).
pub fn latency(name: &str, member: &str, p99: Option<f64>, limit: f64, alert: f64) -> Check {
    match p99 {
        None => check(name, Some(member), Level::Ok, "no samples yet".into(), ""),
        Some(v) => {
            let level = if v > alert {
                Level::Fail
            } else if v > limit {
                Level::Warn
            } else {
                Level::Ok
            };
            check(
                name,
                Some(member),
                level,
                format!("p99 {:.1} ms since start (limit {:.0} ms)", v * 1000.0, limit * 1000.0),
                "give the member a faster disk (SSD, no noisy neighbours); etcd's WAL fsync decides its latency",
            )
        }
    }
}

/// Clock skew of a host against this machine: WARN at 1 s, FAIL at 30 s (leases and TLS validity).
pub fn clock(member: &str, skew_seconds: f64) -> Check {
    let a = skew_seconds.abs();
    let level = if a >= 30.0 {
        Level::Fail
    } else if a >= 1.0 {
        Level::Warn
    } else {
        Level::Ok
    };
    check("clock", Some(member), level, format!("{skew_seconds:+.3} s against this machine"), "run NTP (chrony or systemd-timesyncd) on every host")
}

/// Free space on the data dir's filesystem: defragmentation needs the DB's size again.
pub fn free_space(member: &str, free: u64, db: u64) -> Check {
    let level = if free < db {
        Level::Fail
    } else if free < db.saturating_mul(2) || free < GIB {
        Level::Warn
    } else {
        Level::Ok
    };
    check(
        "free-space",
        Some(member),
        level,
        format!("{} free beside a {} database", mib(free), mib(db)),
        "free space on the data dir's filesystem (a defragmentation needs the database's size again)",
    )
}

/// Age of the newest verified backup: WARN past `warn`, FAIL past `fail` (seconds).
pub fn backup_age(newest: Option<(&str, i64)>, now: i64, warn: i64, fail: i64) -> Check {
    match newest {
        None => check("backup", None, Level::Warn, "no backup found".into(), "take one: etcd-bootstrap backup (and --print-timer for an hourly one)"),
        Some((name, at)) => {
            let age = now - at;
            let level = if age > fail {
                Level::Fail
            } else if age > warn {
                Level::Warn
            } else {
                Level::Ok
            };
            check("backup", None, level, format!("newest {name}, {} old", human(age)), "check the backup timer: systemctl status etcd-backup-*.timer")
        }
    }
}

/// `backup --continuous`: how far behind the cluster its history is (`behind`: revisions, when
/// the cluster answered), and whether it runs. `None` when no follower ever ran for this spec.
pub fn continuous_lag(st: Option<&crate::backup::continuous::Status>, running: bool, behind: Option<i64>, now_ms: i64) -> Option<Check> {
    let st = st?;
    let age = (now_ms - st.covered_at_ms).max(0) / 1000;
    let fix = "start it again: etcd-bootstrap backup --continuous (--print-timer prints its systemd service)";
    let at = format!("the history reaches revision {}, {} ago", st.sealed_to, human(age));
    let (level, evidence) = if !running {
        (Level::Warn, format!("not running (pid {}); {at}", st.pid))
    } else if let Some(why) = &st.waiting {
        (if age > 300 { Level::Fail } else { Level::Warn }, format!("waiting: {why}; {at}"))
    } else {
        let revs = behind.map(|b| format!(", {b} revisions behind the cluster")).unwrap_or_default();
        (
            if age > 300 {
                Level::Fail
            } else if age > 30 {
                Level::Warn
            } else {
                Level::Ok
            },
            format!("{at}{revs}"),
        )
    };
    // the folder has the chain; the bucket's copy has a gap until they are uploaded
    let (level, evidence, fix) = match st.unshipped {
        0 => (level, evidence, fix),
        n if level == Level::Ok => (
            Level::Warn,
            format!("{evidence}; {n} segment(s) not uploaded to the bucket yet"),
            "check the bucket (endpoint, credentials, space): the follower uploads them at its next seal",
        ),
        n => (level, format!("{evidence}; {n} segment(s) not uploaded to the bucket yet"), fix),
    };
    Some(check("continuous-backup", None, level, evidence, if level == Level::Ok { "" } else { fix }))
}

/// Days left on a certificate (or a CRL's next update): FAIL when past, WARN within `warn_days`.
pub fn expiry(name: &str, what: &str, not_after: i64, now: i64, warn_days: i64, fix: &str) -> Check {
    let left = not_after - now;
    let level = if left <= 0 {
        Level::Fail
    } else if left < warn_days * 86_400 {
        Level::Warn
    } else {
        Level::Ok
    };
    let when = if left <= 0 { format!("{what} expired {} ago", human(-left)) } else { format!("{what}: {} left", human(left)) };
    check(name, None, level, when, fix)
}

pub fn mib(bytes: u64) -> String {
    if bytes >= GIB { format!("{:.1} GiB", bytes as f64 / GIB as f64) } else { format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)) }
}

pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 2 * 86_400 {
        format!("{}d", s / 86_400)
    } else if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The `q` quantile of a cumulative histogram (`le` upper bounds with counts), interpolated
/// within the bucket as Prometheus' `histogram_quantile` does. `None` without samples.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut b: Vec<(f64, f64)> = buckets.iter().copied().filter(|(le, c)| !le.is_nan() && !c.is_nan()).collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = b.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in b {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let span = count - prev.1;
            let frac = if span > 0.0 { (rank - prev.1) / span } else { 0.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

/// The buckets of histogram `name` in Prometheus text (all label sets summed by `le`).
pub fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else { continue };
        match sums.iter_mut().find(|(l, _)| *l == le) {
            Some(e) => e.1 += count,
            None => sums.push((le, count)),
        }
    }
    sums
}

/// A counter's value (all label sets summed).
pub fn counter(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((metric, value)) = line.rsplit_once(' ') else { continue };
        if metric == name || metric.starts_with(&format!("{name}{{")) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}

/// Each member's etcd against kubeadm's MinExternalEtcdVersion for the spec's Kubernetes: below
/// it FAIL (kubeadm's preflight refuses it), or WARN when the spec accepts an old etcd (a lab).
pub fn etcd_for_kubernetes(
    k8s: crate::spec::versions::Version,
    min: Option<crate::spec::versions::Version>,
    versions: &[(String, crate::spec::versions::Version)],
    allow_old: bool,
) -> Check {
    let Some(min) = min else {
        return check("version-matrix", None, Level::Ok, format!("kubeadm {k8s}: no minimum etcd known"), "");
    };
    let old: Vec<String> = versions.iter().filter(|(_, v)| *v < min).map(|(m, v)| format!("{m} {v}")).collect();
    let level = match (old.is_empty(), allow_old) {
        (true, _) => Level::Ok,
        (false, true) => Level::Warn,
        (false, false) => Level::Fail,
    };
    let evidence = if old.is_empty() {
        format!("every member at or above {min}, kubeadm {k8s}'s minimum")
    } else {
        format!("below kubeadm {k8s}'s minimum etcd {min}: {}", old.join(", "))
    };
    check("version-matrix", None, level, evidence, "etcd-bootstrap upgrade --to the newest 3.5 patch")
}

/// etcd's default --snapshot-catchup-entries: a follower further behind gets a whole snapshot.
pub const CATCHUP_ENTRIES: u64 = 5000;

/// A member's raft index behind the highest: past the catch-up entries it needs a snapshot to
/// follow (slow disk or network, or it was down): WARN.
pub fn raft_lag(member: &str, index: u64, highest: u64) -> Check {
    let lag = highest.saturating_sub(index);
    let level = if lag > CATCHUP_ENTRIES { Level::Warn } else { Level::Ok };
    check(
        "raft-lag",
        Some(member),
        level,
        format!("{lag} entries behind the most advanced member"),
        "look at its disk and network latency (wal-fsync, peer round trips); a member that keeps falling behind: etcd-bootstrap replace NAME",
    )
}

/// Leader changes a member saw within the window (etcdHighNumberOfLeaderChanges: 4 or more in
/// 15 minutes is a WARN). `earlier`: the oldest sample inside the window (time, counter); none
/// yet, the count since the member started is shown.
pub fn leader_changes(member: &str, count: f64, earlier: Option<(i64, f64)>, now: i64) -> Check {
    match earlier {
        None => check("leader-changes", Some(member), Level::Ok, format!("{count:.0} since it started (no earlier sample to compare)"), ""),
        Some((at, before)) => {
            // a counter that went down: the member restarted, everything counted is new
            let seen = if count >= before { count - before } else { count };
            let level = if seen >= 4.0 { Level::Warn } else { Level::Ok };
            check(
                "leader-changes",
                Some(member),
                level,
                format!("{seen:.0} in the last {}", human(now - at)),
                "frequent elections: look at disk latency (wal-fsync), CPU starvation and the network between members",
            )
        }
    }
}

/// The window leader changes are judged over (etcdHighNumberOfLeaderChanges: 15 minutes).
pub const LEADER_WINDOW: i64 = 15 * 60;

/// The sample to compare with: the oldest inside the window that is at least a minute old.
pub fn window_start(samples: &[(i64, f64)], now: i64) -> Option<(i64, f64)> {
    samples.iter().filter(|(t, _)| now - t <= LEADER_WINDOW && now - t >= 60).min_by_key(|(t, _)| *t).copied()
}

/// The CA against its leaves: a CA that expires first takes every leaf with it on that day,
/// however long the leaves still run (certificates made elsewhere can outlive their CA).
pub fn ca_outlives(ca: &str, ca_left: i64, leaves: &[(&str, i64)]) -> Check {
    let outliving: Vec<&str> = leaves.iter().filter(|(_, left)| *left > ca_left).map(|(n, _)| *n).collect();
    let level = if outliving.is_empty() { Level::Ok } else { Level::Warn };
    let evidence = if outliving.is_empty() {
        format!("{ca} outlives every leaf ({} left)", human(ca_left))
    } else {
        format!("{ca} expires in {}, before {}", human(ca_left), outliving.join(", "))
    };
    check("ca-lifetime", None, level, evidence, "rotate the CA before it expires: etcd-bootstrap rotate ca")
}
