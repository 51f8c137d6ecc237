use super::judge::*;
use super::render;
use super::{Check, Gauge, Level, Report};

#[test]
fn thresholds_trip_where_the_etcd_mixin_and_etcd_say() {
    let gib = GIB;
    assert_eq!(db_size("e", gib, 2 * gib).level, Level::Ok);
    assert_eq!(db_size("e", 2 * gib * 85 / 100, 2 * gib).level, Level::Warn);
    assert_eq!(db_size("e", 2 * gib * 96 / 100, 2 * gib).level, Level::Fail);
    assert_eq!(fragmentation("e", 200 << 20, 50 << 20).level, Level::Warn);
    assert_eq!(fragmentation("e", 50 << 20, 1 << 20).level, Level::Ok, "small files are not worth a defragmentation");
    assert_eq!(latency("wal-fsync", "e", Some(0.004), 0.010, 0.5).level, Level::Ok);
    assert_eq!(latency("wal-fsync", "e", Some(0.020), 0.010, 0.5).level, Level::Warn);
    assert_eq!(latency("wal-fsync", "e", Some(0.6), 0.010, 0.5).level, Level::Fail);
    assert_eq!(clock("e", 0.2).level, Level::Ok);
    assert_eq!(clock("e", -2.0).level, Level::Warn);
    assert_eq!(clock("e", 120.0).level, Level::Fail);
    assert_eq!(free_space("e", 10 * gib, 100 << 20).level, Level::Ok);
    assert_eq!(free_space("e", 150 << 20, 100 << 20).level, Level::Warn);
    assert_eq!(free_space("e", 50 << 20, 100 << 20).level, Level::Fail);
    let now = 1_800_000_000;
    assert_eq!(backup_age(None, now, 7200, 93600).level, Level::Warn);
    assert_eq!(backup_age(Some(("b", now - 600)), now, 7200, 93600).level, Level::Ok);
    assert_eq!(backup_age(Some(("b", now - 10_000)), now, 7200, 93600).level, Level::Warn);
    assert_eq!(backup_age(Some(("b", now - 100_000)), now, 7200, 93600).level, Level::Fail);
    assert_eq!(expiry("crl", "next update", now - 1, now, 7, "f").level, Level::Fail);
    assert_eq!(expiry("crl", "next update", now + 3 * 86_400, now, 7, "f").level, Level::Warn);
    // every non-OK result says what to do; an OK one does not
    let c = db_size("e", 2 * gib * 96 / 100, 2 * gib);
    assert!(c.fix.contains("maintain"));
    assert!(db_size("e", 1, 2 * gib).fix.is_empty());
}

#[test]
fn p99_from_prometheus_text_as_histogram_quantile_computes_it() {
    let text = "# HELP etcd_disk_wal_fsync_duration_seconds x\n\
        etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n\
        etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 50\n\
        etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 90\n\
        etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.008\"} 100\n\
        etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 100\n\
        etcd_disk_wal_fsync_duration_seconds_sum 0.3\n\
        etcd_server_leader_changes_seen_total 3\n";
    let b = histogram(text, "etcd_disk_wal_fsync_duration_seconds");
    assert_eq!(b.len(), 5);
    // rank 99 lies in (0.004, 0.008]: 90 -> 100, so 0.004 + 0.004 * 9/10
    let p99 = quantile(0.99, &b).unwrap();
    assert!((p99 - 0.0076).abs() < 1e-9, "{p99}");
    assert!((quantile(0.5, &b).unwrap() - 0.002).abs() < 1e-9);
    assert_eq!(quantile(0.99, &[(f64::INFINITY, 0.0)]), None, "no samples");
    assert_eq!(counter(text, "etcd_server_leader_changes_seen_total"), Some(3.0));
    assert_eq!(counter(text, "missing_total"), None);
}

fn sample() -> Report {
    let c = |name: &str, member: Option<&str>, level| Check {
        name: name.into(),
        member: member.map(String::from),
        level,
        evidence: "ev\nidence \"q\" | x".into(),
        fix: if level == Level::Ok { String::new() } else { "do it".into() },
    };
    Report {
        checks: vec![
            c("quorum", None, Level::Ok),
            c("db-size", Some("etcd-1"), Level::Warn),
            c("db-size", Some("etcd-1"), Level::Warn),
            c("clock", Some("we\"ird\\name"), Level::Ok),
        ],
        gauges: vec![
            Gauge { name: "etcd_bootstrap_db_size_bytes", help: "h", labels: vec![("member", "etcd-1".into())], value: 1.0 },
            Gauge { name: "x509_cert_not_after", help: "h", labels: vec![("path", "/p/a \"b\"\n".into()), ("cn", "c".into())], value: 1.5e9 },
        ],
    }
}

#[test]
fn prometheus_text_escapes_labels_has_help_and_type_and_no_duplicate_series() {
    let t = render::prometheus(&sample());
    assert!(t.starts_with("# HELP etcd_bootstrap_check "), "{t}");
    assert!(t.contains("# TYPE etcd_bootstrap_check gauge\n"));
    assert_eq!(t.matches("etcd_bootstrap_check{check=\"db-size\",member=\"etcd-1\"} 1").count(), 1, "{t}");
    assert!(t.contains("member=\"we\\\"ird\\\\name\""), "{t}");
    assert!(t.contains("x509_cert_not_after{path=\"/p/a \\\"b\\\"\\n\",cn=\"c\"} 1500000000\n"), "{t}");
    assert!(!t.lines().any(|l| !l.starts_with('#') && l.split_whitespace().count() > 2 && !l.contains('"')), "no timestamps: {t}");
}

#[test]
fn the_nagios_line_has_the_state_a_summary_and_perfdata() {
    let r = sample();
    assert_eq!(r.level(), Level::Warn);
    let n = render::nagios(&r);
    let first = n.lines().next().unwrap();
    assert!(first.starts_with("ETCD DOCTOR WARNING - 0 FAIL, 2 WARN, 0 UNKNOWN; db-size etcd-1 "), "{first}");
    let (_, perf) = first.split_once(" | ").unwrap();
    assert_eq!(perf, "'db_size_bytes_etcd-1'=1", "one | only, before the perfdata: {first}");
    // the table says everything once, with the fix under each finding
    let t = render::table(&r);
    assert!(t.contains("fix: do it") && t.ends_with("WARN: 4 checks, 2 WARN, 0 FAIL, 0 UNKNOWN\n"), "{t}");
}

#[test]
fn a_failure_outranks_an_unknown_and_an_unknown_outranks_a_warning() {
    let mk = |levels: &[Level]| Report {
        checks: levels.iter().map(|l| Check { name: "c".into(), member: None, level: *l, evidence: String::new(), fix: String::new() }).collect(),
        gauges: vec![],
    };
    assert_eq!(mk(&[Level::Ok, Level::Unknown, Level::Fail]).level(), Level::Fail);
    assert_eq!(mk(&[Level::Warn, Level::Unknown]).level(), Level::Unknown);
    assert_eq!(mk(&[Level::Ok, Level::Warn]).level(), Level::Warn);
    assert_eq!(mk(&[]).level(), Level::Ok);
}

#[test]
fn the_newest_backup_is_found_by_the_time_in_its_name() {
    let d = tempfile::tempdir().unwrap();
    for n in ["c-20261125T010000Z-r5.db", "c-20261125T030000Z-r9.db.age", "c-20261125T020000Z-r7.db", "other-20261126T000000Z-r1.db", "c-notes.txt"] {
        std::fs::write(d.path().join(n), "").unwrap();
    }
    let (name, at) = super::newest_backup(d.path(), "c").unwrap();
    assert_eq!(name, "c-20261125T030000Z-r9.db.age");
    assert_eq!(at, 1_795_575_600);
}

mod props {
    use super::super::judge::*;
    use proptest::prelude::*;

    proptest! {
        // a member's /metrics answer is input from the network: never a panic, whatever it says
        #[test]
        fn no_metrics_text_makes_the_parsers_panic(text in "(.{0,60}\n){0,20}", q in 0.0f64..1.0) {
            let b = histogram(&text, "etcd_disk_wal_fsync_duration_seconds");
            let _ = quantile(q, &b);
            let _ = counter(&text, "etcd_server_leader_changes_seen_total");
        }

        #[test]
        fn any_bucket_values_give_a_quantile_or_none(buckets in proptest::collection::vec((proptest::num::f64::ANY, proptest::num::f64::ANY), 0..12)) {
            let _ = quantile(0.99, &buckets);
        }
    }
}

#[test]
fn versions_raft_lag_and_leader_changes_are_judged_as_kubeadm_etcd_and_the_mixin_do() {
    use crate::spec::versions::Version;
    let k8s = Version(1, 31, 0);
    let min = Some(Version(3, 5, 15));
    let vs = |v: &[(u64, u64, u64)]| v.iter().enumerate().map(|(i, (a, b, c))| (format!("etcd-{}", i + 1), Version(*a, *b, *c))).collect::<Vec<_>>();
    assert_eq!(etcd_for_kubernetes(k8s, min, &vs(&[(3, 5, 30), (3, 5, 30)]), false).level, Level::Ok);
    let old = etcd_for_kubernetes(k8s, min, &vs(&[(3, 5, 30), (3, 4, 23)]), false);
    assert_eq!(old.level, Level::Fail);
    assert!(old.evidence.contains("etcd-2 3.4.23") && !old.evidence.contains("etcd-1"), "{}", old.evidence);
    assert_eq!(etcd_for_kubernetes(k8s, min, &vs(&[(3, 4, 23)]), true).level, Level::Warn, "a lab spec that accepts an old etcd");
    assert_eq!(raft_lag("e", 100, 100 + CATCHUP_ENTRIES).level, Level::Ok);
    assert_eq!(raft_lag("e", 100, 101 + CATCHUP_ENTRIES).level, Level::Warn);
    let now = 1_800_000_000;
    assert_eq!(leader_changes("e", 7.0, None, now).level, Level::Ok, "no window yet");
    assert_eq!(leader_changes("e", 7.0, Some((now - 600, 4.0)), now).level, Level::Ok);
    assert_eq!(leader_changes("e", 8.0, Some((now - 600, 4.0)), now).level, Level::Warn);
    assert_eq!(leader_changes("e", 5.0, Some((now - 600, 40.0)), now).level, Level::Warn, "a restart reset the counter: all 5 are new");
    assert_eq!(ca_outlives("etcd-ca", 3000, &[("etcd-1/server", 2000)]).level, Level::Ok);
    let short = ca_outlives("etcd-ca", 3000, &[("etcd-1/server", 2000), ("etcd-2/peer", 4000)]);
    assert!(short.level == Level::Warn && short.evidence.contains("before etcd-2/peer") && !short.evidence.contains("etcd-1"), "{short:?}");
    let samples = [(now - 2000, 1.0), (now - 800, 2.0), (now - 300, 3.0), (now - 10, 4.0)];
    assert_eq!(window_start(&samples, now), Some((now - 800, 2.0)), "the oldest inside 15 minutes, at least a minute old");
}

#[test]
fn kube_apiserver_files_on_a_node_must_chain_to_the_ca_the_members_trust() {
    let ca = pki::ca::Ca::create(&pki::ca::CaOptions::default()).unwrap();
    let other = pki::ca::Ca::create(&pki::ca::CaOptions::default()).unwrap();
    let leaf = |ca: &pki::ca::Ca, days: i64| {
        let t = pki::ca::LeafTemplate {
            subject: pki::ca::Subject::cn("kube-apiserver-etcd-client"),
            sans: vec![],
            usages: pki::cluster::client_usages(),
            validity: time::Duration::days(days),
            ca_constraint: None,
        };
        let key = pki::keys::PrivateKey::generate(pki::keys::KeyAlgorithm::EcdsaP256).unwrap();
        ca.sign(&t, key.key_pair()).unwrap().pem.into_bytes()
    };
    let opts = super::Options {
        backup_dir: "/b".into(),
        use_record: false,
        backup_warn: 1,
        backup_fail: 2,
        cert_warn_days: 30,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let trusted = vec![ca.cert_der().to_vec()];
    let ca_pem = ca.cert_pem().as_bytes();
    let judge = |c: Option<&[u8]>, l: Option<&[u8]>| super::around::judge_node("cp-1", c, l, &trusted, &opts);
    assert_eq!(judge(Some(ca_pem), Some(&leaf(&ca, 300))).level, Level::Ok);
    assert_eq!(judge(Some(ca_pem), Some(&leaf(&ca, 10))).level, Level::Warn, "expiring within 30 days");
    assert_eq!(judge(None, Some(&leaf(&ca, 300))).level, Level::Warn, "not there yet");
    let foreign = judge(Some(ca_pem), Some(&leaf(&other, 300)));
    assert!(foreign.level == Level::Fail && foreign.evidence.contains("not signed by a CA the members trust"), "{foreign:?}");
    let wrong_ca = judge(Some(other.cert_pem().as_bytes()), Some(&leaf(&ca, 300)));
    assert!(wrong_ca.level == Level::Fail && wrong_ca.evidence.contains("holds none of the CAs"), "{wrong_ca:?}");
    // a rotation's bundle on the node (old + new): trusted
    let bundle = [ca.cert_pem(), other.cert_pem()].concat();
    assert_eq!(judge(Some(bundle.as_bytes()), Some(&leaf(&ca, 300))).level, Level::Ok);
}

#[test]
fn the_continuous_backup_is_judged_by_how_old_its_history_is() {
    let st = crate::backup::continuous::Status { pid: 7, sealed_to: 500, covered_at_ms: 1_000_000, ..Default::default() };
    assert_eq!(continuous_lag(None, true, None, 0), None, "no follower ever ran: no check");
    let ok = continuous_lag(Some(&st), true, Some(3), 1_004_000).unwrap();
    assert_eq!(ok.level, Level::Ok);
    assert_eq!(ok.evidence, "the history reaches revision 500, 4s ago, 3 revisions behind the cluster");
    assert_eq!(continuous_lag(Some(&st), true, Some(3), 1_000_000 + 60_000).unwrap().level, Level::Warn);
    assert_eq!(continuous_lag(Some(&st), true, None, 1_000_000 + 600_000).unwrap().level, Level::Fail);
    let gone = continuous_lag(Some(&st), false, None, 1_001_000).unwrap();
    assert!(gone.level == Level::Warn && gone.evidence.starts_with("not running (pid 7)") && gone.fix.contains("backup --continuous"), "{gone:?}");
    let unshipped = crate::backup::continuous::Status { unshipped: 2, ..st.clone() };
    let gap = continuous_lag(Some(&unshipped), true, None, 1_001_000).unwrap();
    assert!(gap.level == Level::Warn && gap.evidence.ends_with("; 2 segment(s) not uploaded to the bucket yet") && gap.fix.contains("bucket"), "{gap:?}");
    let waiting = crate::backup::continuous::Status { waiting: Some("restore under way".into()), ..st };
    assert!(continuous_lag(Some(&waiting), true, None, 1_001_000).unwrap().evidence.starts_with("waiting: restore under way"));
}
