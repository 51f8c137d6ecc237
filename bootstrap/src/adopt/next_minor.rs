//! What the next etcd minor does with a member's settings: 3.6 removed the v2 API and proxy flags
//! (and `--v2-deprecation=not-yet`), 3.7 removed every `--experimental-*` flag and v2 discovery.
//! etcd exits 2 on a flag it does not know; it only logs an `ETCD_*` variable it does not know and
//! silently ignores an unknown config-file key, so there the feature is just off. Pure: judged from
//! the running version and its effective settings (facts: shared notes etcd-36-37.md, from etcd's
//! `server/embed/config.go`, `server/etcdmain/config.go` and `server/features/etcd_features.go`).

use super::effective::{Effective, Origin};
use crate::spec::versions::Version;

/// Settings 3.6 no longer has, with what to do instead.
const GONE_IN_36: &[(&str, &str)] = &[
    ("enable-v2", "remove it (3.6 serves no v2 API; check v2 data first: etcdutl check v2store)"),
    ("experimental-enable-v2v3", "remove it (3.6 serves no v2 API)"),
    ("proxy", "remove it (3.6 has no v2 proxy; use `etcd grpc-proxy` if one is needed)"),
    ("proxy-failure-wait", "remove it (no v2 proxy in 3.6)"),
    ("proxy-refresh-interval", "remove it (no v2 proxy in 3.6)"),
    ("proxy-dial-timeout", "remove it (no v2 proxy in 3.6)"),
    ("proxy-write-timeout", "remove it (no v2 proxy in 3.6)"),
    ("proxy-read-timeout", "remove it (no v2 proxy in 3.6)"),
];

/// Settings 3.7 no longer has (every `--experimental-*`), with their 3.6 replacements.
const GONE_IN_37: &[(&str, &str)] = &[
    ("experimental-bootstrap-defrag-threshold-megabytes", "--bootstrap-defrag-threshold-megabytes"),
    ("experimental-compact-hash-check-enabled", "--feature-gates=CompactHashCheck=true"),
    ("experimental-compact-hash-check-time", "--compact-hash-check-time"),
    ("experimental-compaction-batch-limit", "--compaction-batch-limit"),
    ("experimental-compaction-sleep-interval", "--compaction-sleep-interval"),
    ("experimental-corrupt-check-time", "--corrupt-check-time"),
    ("experimental-distributed-tracing-address", "--distributed-tracing-address"),
    ("experimental-distributed-tracing-instance-id", "--distributed-tracing-instance-id"),
    ("experimental-distributed-tracing-sampling-rate", "--distributed-tracing-sampling-rate"),
    ("experimental-distributed-tracing-service-name", "--distributed-tracing-service-name"),
    ("experimental-downgrade-check-time", "--downgrade-check-time"),
    ("experimental-enable-distributed-tracing", "--enable-distributed-tracing"),
    ("experimental-enable-lease-checkpoint", "--feature-gates=LeaseCheckpoint=true"),
    ("experimental-enable-lease-checkpoint-persist", "--feature-gates=LeaseCheckpointPersist=true"),
    ("experimental-initial-corrupt-check", "--feature-gates=InitialCorruptCheck=true"),
    ("experimental-memory-mlock", "--memory-mlock"),
    ("experimental-peer-skip-client-san-verification", "--peer-skip-client-san-verification"),
    ("experimental-snapshot-catchup-entries", "--snapshot-catchup-entries"),
    ("experimental-snapshot-catch-up-entries", "snapshot-catchup-entries (the config-file key)"),
    ("experimental-stop-grpc-service-on-defrag", "--feature-gates=StopGRPCServiceOnDefrag=true"),
    ("experimental-txn-mode-write-with-shared-buffer", "--feature-gates=TxnModeWriteWithSharedBuffer=false (the gate defaults to true)"),
    ("experimental-warning-apply-duration", "--warning-apply-duration"),
    ("experimental-warning-unary-request-duration", "--warning-unary-request-duration"),
    ("experimental-watch-progress-notify-interval", "--watch-progress-notify-interval"),
    ("discovery", "v3 discovery (--discovery-token, --discovery-endpoints) or a static --initial-cluster"),
    ("discovery-proxy", "remove it (v2 discovery is gone in 3.7)"),
];

/// One setting the next minor breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaking {
    /// As the operator wrote it: `--enable-v2`, `ETCD_PROXY`, or the config key `enable-v2`.
    pub written: String,
    /// What that minor does with it.
    pub effect: String,
    /// What to do instead.
    pub fix: String,
}

/// The next minor after `running` (3.5.x -> 3.6), and what it does with each of `settings`.
pub fn breaking(running: Version, settings: &Effective) -> (Version, Vec<Breaking>) {
    let next = Version(running.0, running.1 + 1, 0);
    let gone: &[(&str, &str)] = match (running.0, running.1) {
        (3, 5) => GONE_IN_36,
        (3, 6) => GONE_IN_37,
        _ => &[],
    };
    let mut out = Vec::new();
    for (key, s) in &settings.settings {
        let fix = gone.iter().find(|(k, _)| k == key).map(|(_, f)| f.to_string()).or_else(|| {
            // 3.6 refuses --v2-deprecation=not-yet (exit 2); from 3.6 the default is write-only
            (running.1 == 5 && key == "v2-deprecation" && s.value == "not-yet")
                .then(|| "remove it (3.6 accepts write-only, write-only-drop-data, gone)".to_string())
        });
        let Some(fix) = fix else { continue };
        let minor = format!("{}.{}", next.0, next.1);
        let (written, effect) = match s.origin {
            Origin::Flag => (format!("--{key}"), format!("etcd {minor} exits 2 on it (an unknown flag)")),
            Origin::Env => {
                let var = format!("ETCD_{}", key.to_uppercase().replace('-', "_"));
                (var, format!("etcd {minor} ignores it (it logs an unrecognized variable): the feature is off"))
            }
            Origin::ConfigFile => (format!("config key {key}"), format!("etcd {minor} ignores it silently: the feature is off")),
        };
        out.push(Breaking { written, effect, fix });
    }
    (next, out)
}

/// What the previous minor does not know of a member's settings, for a downgrade: 3.5 lacks the
/// names 3.6 gave the experimental flags (and feature gates); 3.6 knows every 3.7 flag. A flag
/// it does not know makes it exit 2; a variable or config key is ignored (the feature is off).
pub fn unknown_to_previous(running: Version, settings: &Effective) -> (Version, Vec<Breaking>) {
    let previous = Version(running.0, running.1.saturating_sub(1), 0);
    let mut out = Vec::new();
    if (running.0, running.1) != (3, 6) {
        return (previous, out);
    }
    for (key, s) in &settings.settings {
        let fix = if key == "feature-gates" {
            Some("the --experimental-* flag of each gate (3.5 has no feature gates)".to_string())
        } else {
            GONE_IN_37.iter().find(|(_, new)| new.strip_prefix("--") == Some(key.as_str())).map(|(old, _)| format!("--{old} (3.5's name)"))
        };
        let Some(fix) = fix else { continue };
        let (written, effect) = match s.origin {
            Origin::Flag => (format!("--{key}"), "etcd 3.5 exits 2 on it (an unknown flag)".to_string()),
            Origin::Env => (format!("ETCD_{}", key.to_uppercase().replace('-', "_")), "etcd 3.5 ignores it: the feature is off".to_string()),
            Origin::ConfigFile => (format!("config key {key}"), "etcd 3.5 ignores it silently: the feature is off".to_string()),
        };
        out.push(Breaking { written, effect, fix });
    }
    (previous, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adopt::effective::from_running;
    use std::path::Path;

    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("etcd").chain(words.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn a_35_member_is_told_what_36_refuses_by_where_it_was_written() {
        let env = [("ETCD_PROXY".to_string(), "off".to_string()), ("ETCD_NAME".to_string(), "etcd-2".to_string())];
        let e = from_running(&argv(&["--enable-v2", "--v2-deprecation=not-yet", "--experimental-initial-corrupt-check"]), &env, Path::new("/"), None).unwrap();
        let (next, found) = breaking(Version(3, 5, 36), &e);
        assert_eq!(next, Version(3, 6, 0));
        let written: Vec<&str> = found.iter().map(|b| b.written.as_str()).collect();
        assert_eq!(written, ["--enable-v2", "ETCD_PROXY", "--v2-deprecation"], "3.6 still accepts --experimental-*");
        assert!(found[0].effect.contains("exits 2") && found[1].effect.contains("ignores it"), "{found:?}");
    }

    #[test]
    fn a_36_member_is_told_each_experimental_setting_and_its_replacement() {
        let e = from_running(
            &argv(&["--experimental-initial-corrupt-check", "--experimental-compaction-batch-limit=100", "--name", "a"]),
            &[],
            Path::new("/"),
            None,
        )
        .unwrap();
        let (next, found) = breaking(Version(3, 6, 17), &e);
        assert_eq!(next, Version(3, 7, 0));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|b| b.written == "--experimental-initial-corrupt-check" && b.fix == "--feature-gates=InitialCorruptCheck=true"), "{found:?}");
        assert!(found.iter().any(|b| b.written == "--experimental-compaction-batch-limit" && b.fix == "--compaction-batch-limit"), "{found:?}");
        let file = from_running(
            &argv(&["--config-file", "/etc/etcd/etcd.conf.yml"]),
            &[],
            Path::new("/"),
            Some("name: a\nexperimental-initial-corrupt-check: true\n"),
        )
        .unwrap();
        let (_, found) = breaking(Version(3, 6, 17), &file);
        assert_eq!(found[0].written, "config key experimental-initial-corrupt-check");
        assert!(found[0].effect.contains("silently"), "{found:?}");
        // a 3.7 member: nothing known yet of 3.8
        assert!(breaking(Version(3, 7, 4), &e).1.is_empty());
    }

    #[test]
    fn a_36_member_going_back_to_35_is_told_each_name_35_lacks() {
        let e = from_running(
            &argv(&["--compaction-batch-limit=100", "--feature-gates=InitialCorruptCheck=true", "--experimental-memory-mlock", "--name", "a"]),
            &[],
            Path::new("/"),
            None,
        )
        .unwrap();
        let (previous, found) = unknown_to_previous(Version(3, 6, 17), &e);
        assert_eq!(previous, Version(3, 5, 0));
        let written: Vec<(&str, &str)> = found.iter().map(|b| (b.written.as_str(), b.fix.as_str())).collect();
        assert_eq!(
            written,
            [
                ("--compaction-batch-limit", "--experimental-compaction-batch-limit (3.5's name)"),
                ("--feature-gates", "the --experimental-* flag of each gate (3.5 has no feature gates)")
            ]
        );
        assert!(unknown_to_previous(Version(3, 7, 4), &e).1.is_empty(), "3.6 knows 3.7's flags");
    }
}
