//! `doctor` on real clusters, its outputs read by their real consumers: Debian's `promtool check
//! metrics` accepts the Prometheus text, Debian's node_exporter serves the `--textfile` file over
//! HTTP, and thresholds trip on a real cluster: a member stopped, a host clock off by two minutes
//! (a `date` wrapper on the hosts' PATH, never this machine's clock), an old backup, certificates
//! issued to expire soon.

use integration_tests::bootstrap::{Down, boot, local_spec, spec_endpoints, up_cluster};
use integration_tests::{Ran, run_bounded, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tool(name: &str) -> PathBuf {
    let p = workspace_root().join(".tools").join(name);
    assert!(p.is_file(), "{} is missing: `bash scripts/fetch-debian-tools.sh` fetches Debian's promtool and node_exporter (install-deps runs it)", p.display());
    p
}

fn doctor(spec: &Path, args: &[&str], path_prefix: Option<&Path>) -> Ran {
    let mut cmd = Command::new(integration_tests::bin("etcd-bootstrap"));
    cmd.arg("-f").arg(spec).arg("doctor").args(args);
    if let Some(p) = path_prefix {
        cmd.env("PATH", format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()));
    }
    run_bounded(&mut cmd, Duration::from_secs(60))
}

/// The checks of a JSON report: (name, member) -> level.
fn levels(r: &Ran) -> Vec<(String, String, String)> {
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["member"].as_str().unwrap_or("").to_string(), c["level"].as_str().unwrap().to_string()))
        .collect()
}

fn level_of<'a>(all: &'a [(String, String, String)], name: &str, member: &str) -> Vec<&'a str> {
    all.iter().filter(|(n, m, _)| n == name && (member.is_empty() || m == member)).map(|(_, _, l)| l.as_str()).collect()
}

#[test]
fn doctor_checks_a_real_cluster_and_monitoring_reads_what_it_writes() {
    let (tmp, spec, _down) = up_cluster();
    let dir = tmp.path();
    boot(&spec, &["backup"]).assert_ok();
    let r = doctor(&spec, &["-w", "json"], None);
    let all = levels(&r);
    // a fresh, backed-up cluster: every check that does not depend on this machine's disk is OK
    for (name, member) in
        [("quorum", ""), ("alarms", ""), ("versions", ""), ("backup", ""), ("crl", ""), ("db-size", "etcd-1"), ("clock", "etcd-2"), ("free-space", "etcd-3")]
    {
        assert_eq!(level_of(&all, name, member), ["OK"], "{name} {member}: {}", r.stdout);
    }
    assert!(
        all.iter().filter(|(n, _, _)| n.starts_with("certificate ")).count() >= 8
            && all.iter().filter(|(n, _, _)| n.starts_with("certificate ")).all(|(_, _, l)| l == "OK"),
        "{}",
        r.stdout
    );
    assert_eq!(level_of(&all, "wal-fsync", "etcd-1").len(), 1, "metrics read from every member: {}", r.stdout);
    for (name, member, want) in [("version-matrix", "", "OK"), ("ca-lifetime", "", "OK"), ("raft-lag", "etcd-2", "OK"), ("leader-changes", "etcd-3", "OK")] {
        assert_eq!(level_of(&all, name, member), [want], "{name} {member}: {}", r.stdout);
    }
    // nothing listens at the spec's control-plane endpoint yet: not ready (WARN), as before kubeadm init
    assert_eq!(level_of(&all, "load-balancer", ""), ["WARN"], "{}", r.stdout);
    assert!(r.stdout.contains("REFUSED"), "{}", r.stdout);

    // four leadership transfers within the window: WARN (etcdHighNumberOfLeaderChanges); the
    // run ten minutes ago is stood in for by its samples file, the transfers are real
    let seen: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let before: std::collections::BTreeMap<String, Vec<(i64, f64)>> = seen["gauges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == "etcd_bootstrap_leader_changes_seen")
        .map(|g| (g["labels"][0][1].as_str().unwrap().to_string(), vec![(now() - 600, g["value"].as_f64().unwrap())]))
        .collect();
    assert_eq!(before.len(), 3, "{}", seen["gauges"]);
    let samples = spec.parent().unwrap().join(format!("{}.journal/doctor-samples.json", spec.file_name().unwrap().to_string_lossy()));
    std::fs::write(&samples, serde_json::to_string(&before).unwrap()).unwrap();
    for _ in 0..4 {
        move_leader(dir, &spec);
    }
    let churn = doctor(&spec, &["-w", "json"], None);
    assert_eq!(level_of(&levels(&churn), "leader-changes", ""), ["WARN", "WARN", "WARN"], "{}", churn.stdout);
    assert!(churn.stdout.contains(" in the last 10"), "{}", churn.stdout);
    assert!(r.code == Some(0) || r.code == Some(1), "only this disk's fsync latency may warn: {}", r.stdout);

    // promtool accepts the Prometheus text
    let prom = doctor(&spec, &["-w", "prometheus"], None);
    let file = dir.join("doctor.prom");
    std::fs::write(&file, &prom.stdout).unwrap();
    let check =
        run_bounded(Command::new("bash").arg("-c").arg(format!("{} check metrics < {}", tool("promtool").display(), file.display())), Duration::from_secs(30));
    assert!(check.ok(), "promtool check metrics: {}{}\n{}", check.stdout, check.stderr, prom.stdout);
    for needle in [
        "etcd_bootstrap_check{check=\"quorum\",member=\"\"} 0",
        "etcd_bootstrap_quorum_healthy_voters 3",
        "etcd_bootstrap_quorum_failures_tolerated 1",
        "x509_cert_not_after{path=",
        "etcd_bootstrap_last_backup_timestamp_seconds ",
    ] {
        assert!(prom.stdout.contains(needle), "lacks {needle:?}:\n{}", prom.stdout);
    }

    // status, certs check and backup speak it too
    let second = dir.join("second-backups").display().to_string();
    for (args, needle) in [
        (vec!["status", "-w", "prometheus"], "etcd_bootstrap_quorum_healthy_voters 3"),
        (vec!["certs", "check", "-w", "prometheus"], "x509_cert_not_after{path="),
        (vec!["backup", "--dir", second.as_str(), "-w", "prometheus"], "etcd_bootstrap_last_backup_revision "),
    ] {
        let out = boot(&spec, &args);
        assert!(out.stdout.contains(needle), "{args:?} lacks {needle:?}: {}{}", out.stdout, out.stderr);
        let f = dir.join("cmd.prom");
        std::fs::write(&f, &out.stdout).unwrap();
        let check =
            run_bounded(Command::new("bash").arg("-c").arg(format!("{} check metrics < {}", tool("promtool").display(), f.display())), Duration::from_secs(30));
        assert!(check.ok(), "promtool rejects {args:?}: {}{}\n{}", check.stdout, check.stderr, out.stdout);
    }

    // node_exporter's textfile collector serves --textfile's file over HTTP
    let textdir = dir.join("textfile");
    std::fs::create_dir_all(&textdir).unwrap();
    doctor(&spec, &["-w", "nagios", "--textfile", &textdir.display().to_string()], None);
    assert!(textdir.join("etcd_bootstrap.prom").is_file() && std::fs::read_dir(&textdir).unwrap().count() == 1, "one file, no temporary left");
    let host = spec_endpoints(&spec).split(',').next().unwrap().trim_start_matches("https://").rsplit_once('.').unwrap().0.to_string() + ".200";
    let listen = format!("{host}:9100");
    let mut exporter = Command::new(tool("node_exporter"))
        .args(["--collector.disable-defaults", "--collector.textfile", &format!("--web.listen-address={listen}")])
        .arg(format!("--collector.textfile.directory={}", textdir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let scraped = loop {
        let s = run_bounded(Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{listen}/metrics")]), Duration::from_secs(5));
        if s.stdout.contains("etcd_bootstrap_check") || Instant::now() > deadline {
            break s.stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert!(scraped.contains("etcd_bootstrap_check{check=\"quorum\",member=\"\"} 0"), "node_exporter serves the file: {scraped}");
    assert!(scraped.contains("etcd_bootstrap_quorum_healthy_voters 3"), "{scraped}");
    assert!(scraped.contains("\nnode_textfile_scrape_error 0\n"), "node_exporter read it without error: {scraped}");

    // the host clocks two minutes ahead: FAIL, from a `date` wrapper the hosts' scripts run
    let wrap = dir.join("skewed-bin");
    std::fs::create_dir_all(&wrap).unwrap();
    std::fs::write(wrap.join("date"), "#!/bin/sh\nexec /bin/date -d \"@$(( $(/bin/date +%s) + 120 ))\" \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(wrap.join("date"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let skewed = doctor(&spec, &["-w", "json"], Some(&wrap));
    assert_eq!(skewed.code, Some(2), "{}", skewed.stdout);
    assert_eq!(level_of(&levels(&skewed), "clock", "etcd-1"), ["FAIL"], "{}", skewed.stdout);

    // a backup taken into another folder is found through the record `backup` keeps
    let elsewhere = dir.join("elsewhere");
    node_put(dir, &spec, "/moved", "x");
    boot(&spec, &["backup", "--dir", &elsewhere.display().to_string()]).assert_ok();
    let found = doctor(&spec, &["-w", "json"], None);
    assert_eq!(level_of(&levels(&found), "backup", ""), ["OK"], "{}", found.stdout);
    assert!(found.stdout.contains(&elsewhere.display().to_string()), "the recorded backup is named: {}", found.stdout);

    // an old backup: FAIL; none at all: WARN (judging the folder given, the record aside)
    let old = dir.join("old-backups");
    std::fs::create_dir_all(&old).unwrap();
    let name = spec_name(&spec);
    std::fs::write(old.join(format!("{name}-20200101T000000Z-r1.db")), "").unwrap();
    let stale = doctor(&spec, &["-w", "json", "--backup-dir", &old.display().to_string()], None);
    assert_eq!(level_of(&levels(&stale), "backup", ""), ["FAIL"], "{}", stale.stdout);
    let none = doctor(&spec, &["-w", "json", "--backup-dir", &dir.join("nowhere").display().to_string()], None);
    assert_eq!(level_of(&levels(&none), "backup", ""), ["WARN"]);

    // a member stopped: the quorum is DEGRADED (WARN), that member FAIL; Nagios says CRITICAL
    // (a follower: a leader's death costs an election, which is a FAIL while it lasts)
    let st = boot(&spec, &["status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let victim = v["members"].as_array().unwrap().iter().find(|m| m["role"] == "follower").unwrap()["name"].as_str().unwrap().to_string();
    let pid = std::fs::read_to_string(dir.join(format!("members/{victim}/{victim}.pid"))).unwrap();
    integration_tests::signal(pid.trim().parse().unwrap(), integration_tests::Signal::Kill);
    let down = doctor(&spec, &["-w", "json"], None);
    let all = levels(&down);
    assert_eq!(level_of(&all, "quorum", ""), ["WARN"], "{}", down.stdout);
    assert_eq!(level_of(&all, "member", &victim), ["FAIL"], "{}", down.stdout);
    assert_eq!(down.code, Some(2));
    let nagios = doctor(&spec, &["-w", "nagios"], None);
    assert!(nagios.stdout.starts_with("ETCD DOCTOR CRITICAL - "), "{}", nagios.stdout);
    assert_eq!(nagios.stdout.lines().next().unwrap().matches(" | ").count(), 1, "{}", nagios.stdout);

    // the minute timer for node_exporter
    let timer = doctor(&spec, &["--print-timer", "--textfile", "/var/lib/prometheus/node-exporter"], None);
    assert!(
        timer.ok()
            && timer.stdout.contains("OnCalendar=minutely")
            && timer.stdout.contains("doctor -w prometheus --textfile /var/lib/prometheus/node-exporter"),
        "{}",
        timer.stdout
    );
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Moves leadership to another member (etcd's MoveLeader) and waits until the move is seen.
fn move_leader(dir: &Path, spec: &Path) {
    let pki = integration_tests::bootstrap::node_pki(dir);
    let eps = spec_endpoints(spec);
    let status = integration_tests::bootstrap::node_etcdctl(&pki, &eps, &["endpoint", "status", "-w", "json"]).assert_ok();
    let all: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let all = all.as_array().unwrap();
    let leader = all[0]["Status"]["leader"].as_u64().unwrap();
    let at_leader = all.iter().find(|e| e["Status"]["header"]["member_id"].as_u64() == Some(leader)).unwrap()["Endpoint"].as_str().unwrap().to_string();
    let to = all.iter().map(|e| e["Status"]["header"]["member_id"].as_u64().unwrap()).find(|id| *id != leader).unwrap();
    integration_tests::bootstrap::node_etcdctl(&pki, &at_leader, &["move-leader", &format!("{to:x}")]).assert_ok();
    // every member follows the new leader before the next move starts from it
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = integration_tests::bootstrap::node_etcdctl(&pki, &eps, &["endpoint", "status", "-w", "json"]);
        let seen: serde_json::Value = serde_json::from_str(&s.stdout).unwrap_or_default();
        if seen.as_array().is_some_and(|a| a.len() == all.len() && a.iter().all(|e| e["Status"]["leader"].as_u64() == Some(to))) {
            return;
        }
        assert!(Instant::now() < deadline, "the members did not follow the new leader: {}", s.stdout);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node_put(dir: &Path, spec: &Path, key: &str, value: &str) {
    integration_tests::bootstrap::node_etcdctl(&integration_tests::bootstrap::node_pki(dir), &spec_endpoints(spec), &["put", key, value]).assert_ok();
}

fn spec_name(spec: &Path) -> String {
    std::fs::read_to_string(spec).unwrap().lines().find_map(|l| l.strip_prefix("name: ").map(str::to_string)).unwrap()
}

#[test]
fn certificates_issued_to_expire_soon_are_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = local_spec(tmp.path(), 1).path;
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}pki:\n  validity: 20d\n")).unwrap();
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    let r = doctor(&spec, &["-w", "json"], None);
    let all = levels(&r);
    let certs: Vec<&(String, String, String)> = all.iter().filter(|(n, _, _)| n.starts_with("certificate etcd-1/")).collect();
    assert!(!certs.is_empty() && certs.iter().all(|(_, _, l)| l == "WARN"), "20 days left is within 30: {}", r.stdout);
    assert_eq!(level_of(&all, "certificate etcd-ca", ""), ["OK"], "{}", r.stdout);
    assert!(r.code == Some(1) || r.code == Some(2), "{}", r.stdout);

    // a CRL past its next update, signed by the same CA with openssl's own `ca -gencrl`: FAIL
    assert_eq!(level_of(&all, "crl", ""), ["OK"], "{}", r.stdout);
    let pki = tmp.path().join("pki/etcd");
    let work = tmp.path().join("openssl-ca");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("index.txt"), "").unwrap();
    std::fs::write(work.join("ca.cnf"), format!("[ca]\ndefault_ca = etcd\n[etcd]\ndatabase = {}\ndefault_md = sha256\n", work.join("index.txt").display()))
        .unwrap();
    let p = |f: &str| pki.join(f).display().to_string();
    let w = work.join("ca.cnf").display().to_string();
    let args = [
        "ca",
        "-config",
        &w,
        "-gencrl",
        "-cert",
        &p("ca.crt"),
        "-keyfile",
        &p("ca.key"),
        "-crl_lastupdate",
        "20200101000000Z",
        "-crl_nextupdate",
        "20200102000000Z",
        "-out",
        &p("crl.pem"),
    ];
    integration_tests::openssl(&work, &args).assert_ok();
    let stale = doctor(&spec, &["-w", "json"], None);
    assert_eq!(level_of(&levels(&stale), "crl", ""), ["FAIL"], "{}", stale.stdout);
    assert_eq!(stale.code, Some(2));
}

/// A member's database filled past 80 % of a small quota: `db-size` WARN, before etcd's own
/// NOSPACE alarm.
#[test]
fn a_database_near_its_quota_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = local_spec(tmp.path(), 1).path;
    let text = std::fs::read_to_string(&spec).unwrap();
    // 4 MiB: etcd's bbolt file starts at about 20 KiB and grows as values are written
    std::fs::write(&spec, format!("{text}etcd:\n  quota_backend_bytes: 4194304\n")).unwrap();
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    let eps = spec_endpoints(&spec);
    let pki = integration_tests::bootstrap::node_pki(tmp.path());
    let value = "v".repeat(100 * 1024); // one argument: under Linux's 128 KiB per argument
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let warned = loop {
        let r = doctor(&spec, &["-w", "json"], None);
        let all = levels(&r);
        let db = level_of(&all, "db-size", "etcd-1");
        if db == ["WARN"] {
            break r;
        }
        assert!(db == ["OK"] && Instant::now() < deadline, "db-size went {db:?} before WARN, or never warned: {}", r.stdout);
        // one value at a time, so the 80-95 % band is not jumped over
        integration_tests::bootstrap::node_etcdctl(&pki, &eps, &["put", &format!("/fill/{i}"), &value]).assert_ok();
        i += 1;
    };
    let all = levels(&warned);
    assert_eq!(level_of(&all, "alarms", ""), ["OK"], "warned before etcd's NOSPACE: {}", warned.stdout);
    assert_eq!(level_of(&all, "backup", ""), ["WARN"], "no backup was ever taken: {}", warned.stdout);
    let fix = serde_json::from_str::<serde_json::Value>(&warned.stdout).unwrap()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "db-size" && c["member"] == "etcd-1")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fix.contains("maintain"), "{fix}");
}
