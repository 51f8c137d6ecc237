//! Backups and whole-cluster restore on real clusters: 1000 keys, `backup` with retention, every
//! member killed and its data wiped or corrupted, `restore` interrupted midway and run again, and
//! the restored cluster HEALTHY with every key, at least the snapshot's revision and a new
//! cluster ID.

use integration_tests::bootstrap::{Down, boot, local_spec, node_etcdctl, node_etcdctl_cmd, node_pki, put_in_txns};
use integration_tests::{Ran, bin, kill_when_stderr_says, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn etcdctl(dir: &Path, eps: &str, args: &[&str]) -> Ran {
    node_etcdctl(&node_pki(dir), eps, args)
}

/// `count` keys `/registry/dr/NNNNN` = `value-NNNNN`.
fn put_keys(dir: &Path, eps: &str, count: usize) {
    let keys: Vec<(String, String)> = (0..count).map(|i| (format!("/registry/dr/{i:05}"), format!("value-{i:05}"))).collect();
    put_in_txns(&node_etcdctl_cmd(&node_pki(dir), eps), dir, &keys);
}

fn cluster_id(dir: &Path, eps: &str) -> u64 {
    let st = etcdctl(dir, eps, &["endpoint", "status", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    v[0]["Status"]["header"]["cluster_id"].as_u64().unwrap()
}

fn revision(dir: &Path, eps: &str) -> i64 {
    let st = etcdctl(dir, eps, &["endpoint", "status", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    v.as_array().unwrap().iter().filter_map(|e| e["Status"]["header"]["revision"].as_i64()).max().unwrap()
}

/// Whether this pass's etcd has an etcdutl that can raise the revision (3.5.10 and later).
fn etcdutl_can_bump() -> bool {
    let etcdutl = integration_tests::bootstrap::etcd_binary().with_file_name("etcdutl");
    etcdutl.exists() && run_bounded(Command::new(&etcdutl).args(["snapshot", "restore", "--help"]), Duration::from_secs(10)).stdout.contains("--bump-revision")
}

fn kill_members(dir: &Path) {
    for i in 1..=3 {
        if let Ok(pid) = std::fs::read_to_string(dir.join(format!("members/etcd-{i}/etcd-{i}.pid"))) {
            let pid = pid.trim().parse().unwrap();
            integration_tests::signal(pid, integration_tests::Signal::Kill);
            integration_tests::wait_gone(pid, Duration::from_secs(10));
        }
    }
}

#[test]
fn backup_then_whole_cluster_restore_after_losing_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec_file = local_spec(dir, 1);
    let (spec, eps) = (spec_file.path.clone(), spec_file.endpoints.clone());
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    put_keys(dir, &eps, 1000);

    // three backups with --keep 2: the oldest goes, a file of the operator's stays
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("notes.txt"), "mine").unwrap();
    let mut last = serde_json::Value::Null;
    for i in 0..3 {
        etcdctl(dir, &eps, &["put", "tick", &i.to_string()]).assert_ok(); // a new revision, a new name
        let b = boot(&spec, &["backup", "--keep", "2", "-w", "json"]);
        assert!(b.ok(), "{}{}", b.stdout, b.stderr);
        last = serde_json::from_str(&b.stdout).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&backups).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 3, "two backups and notes.txt: {names:?}");
    assert!(names.contains(&"notes.txt".to_string()));
    let newest = std::path::PathBuf::from(last["path"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&newest).unwrap().permissions().mode() & 0o777, 0o600);
    let snap_rev = last["revision"].as_i64().unwrap();
    assert!(last["keys"].as_u64().unwrap() >= 1001, "{last}");
    assert!(newest.file_name().unwrap().to_string_lossy().ends_with(&format!("-r{snap_rev}.db")), "{last}");
    // the independent reader (the etcdutl of the cluster's line) agrees with what backup read back
    let etcdutl = integration_tests::etcdutl_of_run();
    let theirs = run_bounded(Command::new(&etcdutl).args(["snapshot", "status", "-w", "json"]).arg(&newest), Duration::from_secs(30)).assert_ok();
    let t: serde_json::Value = serde_json::from_str(&theirs.stdout).unwrap();
    assert_eq!((t["revision"].as_i64(), t["totalKey"].as_u64()), (Some(snap_rev), last["keys"].as_u64()));
    // --print-timer: a service and timer that run exactly this backup
    let timer = boot(&spec, &["backup", "--print-timer", "--keep", "24"]).assert_ok();
    assert!(timer.stdout.contains("OnCalendar=hourly") && timer.stdout.contains("backup --dir") && timer.stdout.contains("--keep 24"), "{}", timer.stdout);

    // written after the backup: lost by the restore, as it must be
    etcdctl(dir, &eps, &["put", "after-backup", "x"]).assert_ok();
    let old_id = cluster_id(dir, &eps);
    // history written after the snapshot: the revisions a watching client may have seen
    for i in 0..20 {
        etcdctl(dir, &eps, &["put", "after-backup", &i.to_string()]).assert_ok();
    }
    let old_rev = revision(dir, &eps);
    assert!(old_rev > snap_rev + 20, "{old_rev} {snap_rev}");
    // a healthy cluster is not restored over without --force, and nothing changes
    let r = boot(&spec, &["restore", &newest.display().to_string()]).assert_fails();
    assert!(r.stderr.contains("refusing to restore: the cluster is HEALTHY") && r.stderr.contains("nothing was changed"), "{}", r.stderr);
    // a damaged snapshot is refused before anything is touched
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[9000] ^= 1;
    std::fs::write(dir.join("damaged.db"), &bytes).unwrap();
    let r = boot(&spec, &["restore", "--force", &dir.join("damaged.db").display().to_string()]).assert_fails();
    assert!(r.stderr.contains("does not match"), "{}", r.stderr);
    assert_eq!(boot(&spec, &["status"]).code, Some(0), "still running untouched");

    // the disaster: every member killed; one data dir wiped, one corrupted
    kill_members(dir);
    std::fs::remove_dir_all(dir.join("members/etcd-1/data")).unwrap();
    let db = dir.join("members/etcd-2/data/member/snap/db");
    std::fs::write(&db, vec![0xa5u8; 8192]).unwrap();
    assert_ne!(boot(&spec, &["status"]).code, Some(0));

    // restore, interrupted right after the members' data dirs were restored
    let seen = kill_when_stderr_says(
        Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).arg("restore").arg(&newest),
        "data dir restored with",
        Duration::from_secs(60),
    );
    assert!(seen, "the first restore never reached a member");
    let started = Instant::now();
    let second = boot(&spec, &["restore", &newest.display().to_string()]);
    assert!(second.ok(), "{}{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("resuming"), "{}", second.stderr);
    eprintln!("resumed restore took {:?}", started.elapsed());

    // every key with its value, the snapshot's revision or later, a new cluster
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    let got = etcdctl(dir, &eps, &["get", "/registry/dr/", "--prefix"]).assert_ok();
    let lines: Vec<&str> = got.stdout.lines().collect();
    assert_eq!(lines.len(), 2000, "1000 keys and their values");
    for i in (0..1000).step_by(37) {
        let k = format!("/registry/dr/{i:05}");
        let at = lines.iter().position(|l| *l == k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(lines[at + 1], format!("value-{i:05}"));
    }
    assert!(etcdctl(dir, &eps, &["get", "after-backup"]).assert_ok().stdout.is_empty(), "written after the backup: gone");
    let st = etcdctl(dir, &eps, &["endpoint", "status", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert!(v[0]["Status"]["header"]["revision"].as_i64().unwrap() >= snap_rev, "{}", st.stdout);
    // Kubernetes clients resume watches from the last revision they saw: after the restore such a
    // revision must never name different history (etcd-io/etcd#16028)
    let now = revision(dir, &eps);
    if etcdutl_can_bump() {
        assert!(now > old_rev, "the revision must not go back: {now} after {old_rev}");
        assert!(second.stdout.contains("revision raised by") && second.stdout.contains("marked compacted"), "{}", second.stdout);
        let w = run_bounded(
            integration_tests::bootstrap::node_etcdctl_cmd(&node_pki(dir), &eps).args(["watch", "--rev", &(snap_rev + 5).to_string(), "after-backup"]),
            Duration::from_secs(10),
        );
        assert!(w.stderr.contains("compacted"), "a watch from the old history must be told to re-list: {}{}", w.stdout, w.stderr);
    } else {
        assert!(now < old_rev, "this etcd cannot raise it: {now} {old_rev}");
        assert!(second.stdout.contains("warning: the revision went back"), "said, not silent: {}", second.stdout);
    }
    assert_ne!(cluster_id(dir, &eps), old_id, "a restored cluster is a new cluster");
    // the old data was moved aside, never deleted
    for i in 2..=3 {
        let aside =
            std::fs::read_dir(dir.join(format!("members/etcd-{i}"))).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("data.replaced-"));
        assert!(aside, "etcd-{i}'s old data dir moved aside");
    }
    assert!(!dir.join("pki/etcd/restore.json").exists(), "the record goes when the restore is done");
    // writable
    etcdctl(dir, &eps, &["put", "after-restore", "ok"]).assert_ok();
}
