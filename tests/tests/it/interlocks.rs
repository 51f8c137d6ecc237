//! Operations that meet each other on a real cluster: a second operation started while the first
//! is paused, running or stopped midway is refused (exit 4, naming the first and the command that
//! finishes it) or waits for the lock and then says who holds it (exit 75) — and nothing
//! changed. And the crash matrix: `replace` killed at every step it prints finishes when run
//! again, with three voters.

use integration_tests::bootstrap::{boot, etcd_binary, local_spec, probe_refusal, under_way, up_cluster};
use integration_tests::{Signal, bin, signal, start_until_stderr_says};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Member IDs and roles as the cluster reports them, sorted.
fn members(spec: &Path) -> Vec<(String, String)> {
    let st = boot(spec, &["status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", st.stdout, st.stderr));
    let mut all: Vec<(String, String)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap_or("").to_string(), m["role"].as_str().unwrap_or("").replace("leader", "voter").replace("follower", "voter")))
        .collect();
    all.sort();
    all
}

fn journal(spec: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(spec.with_file_name("cluster.yaml.journal/journal.json")).unwrap_or_else(|_| "{\"operations\":[]}".into());
    serde_json::from_str(&text).unwrap()
}

/// Every entry of the members' folders (data dirs, moved-aside data, pki): what a refused
/// operation must not have touched.
fn member_dirs(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for i in 1..=3 {
        let home = dir.join(format!("members/etcd-{i}"));
        for e in std::fs::read_dir(&home).unwrap().flatten() {
            all.push(format!("etcd-{i}/{}", e.file_name().to_string_lossy()));
        }
    }
    all.sort();
    all
}

fn assert_refused_by_rotation(spec: &Path, args: &[&str]) {
    let r = boot(spec, args);
    assert_eq!(r.code, Some(4), "{args:?} during a paused rotate ca: {}{}", r.stdout, r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("error:")).unwrap_or_default();
    assert!(line.contains("refusing to start") && line.contains("`rotate ca` is paused since"), "{args:?}: {}", r.stderr);
    assert!(line.ends_with("rotate ca --continue"), "{args:?} must name the command that finishes the rotation: {line}");
    assert!(!line.contains("--force"), "{line}");
}

#[test]
fn a_paused_ca_rotation_refuses_what_would_half_change_the_cluster_and_allows_backup_maintain_down_up() {
    let (tmp, spec, _down) = up_cluster();
    let dir = tmp.path();
    boot(&spec, &["rotate", "ca"]).assert_ok();
    // allowed during the pause, explicitly: a backup (shared lock, changes nothing)
    let b = boot(&spec, &["backup", "-w", "json"]).assert_ok();
    let snapshot = serde_json::from_str::<serde_json::Value>(&b.stdout).unwrap()["path"].as_str().unwrap().to_string();
    let before = (members(&spec), member_dirs(dir));
    assert_eq!(before.0.len(), 3);
    let etcd_dir = etcd_binary().parent().unwrap().display().to_string();
    for args in [
        vec!["replace", "etcd-2"],
        vec!["replace", "etcd-2", "--force"],
        vec!["rotate", "certs"],
        vec!["restore", &snapshot, "--force"],
        vec!["upgrade", "--to", &etcd_dir],
        vec!["downgrade", "--to", &etcd_dir],
        vec!["downgrade", "--cancel"],
        vec!["down", "--purge"],
    ] {
        assert_refused_by_rotation(&spec, &args);
    }
    // nothing changed: same members, same roles, no data dir moved, quorum whole
    assert_eq!((members(&spec), member_dirs(dir)), before);
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    // read-only commands never wait and say what is under way
    let st = boot(&spec, &["status"]);
    assert!(st.stderr.contains("note: `rotate ca` is paused since"), "{}", st.stderr);
    // allowed: maintain beside a pause, and down then up with the files of the current stage
    boot(&spec, &["maintain"]).assert_ok();
    boot(&spec, &["down"]).assert_ok();
    let up = boot(&spec, &["up"]).assert_ok();
    assert!(up.stderr.contains("a CA rotation is under way: members start with the files of its current stage"), "{}", up.stderr);
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    // and the rotation goes on to the end
    let c = boot(&spec, &["rotate", "ca", "--continue"]).assert_ok();
    assert!(c.stdout.contains("stopped after step 2 of 3"), "{}", c.stdout);
    assert_refused_by_rotation(&spec, &["replace", "etcd-2"]);
    let c = boot(&spec, &["rotate", "ca", "--continue"]).assert_ok();
    assert!(c.stdout.contains("CA rotation done"), "{}", c.stdout);
    assert_eq!(journal(&spec)["operations"], serde_json::json!([]));
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
}

/// `etcd-bootstrap -f SPEC ARGS` as a command, for runs a test watches.
fn boot_cmd(spec: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("etcd-bootstrap"));
    c.arg("-f").arg(spec).args(args);
    c
}

#[test]
fn a_running_rotation_holds_the_lock_against_a_backup_and_a_second_rotation() {
    let (tmp, spec, _down) = up_cluster();
    let backups = tmp.path().join("backups");
    // rotate certs, frozen (SIGSTOP) right after its first change: it holds the cluster lock
    let rotation = start_until_stderr_says(&mut boot_cmd(&spec, &["rotate", "certs"]), "] renew:", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("rotate certs never renewed:\n{e}"));
    signal(rotation.pid(), Signal::Stop);
    for args in [vec!["backup", "--lock-wait", "1"], vec!["rotate", "certs", "--lock-wait", "1"], vec!["down", "--lock-wait", "0"]] {
        let r = boot(&spec, &args);
        assert_eq!(r.code, Some(75), "{args:?} while rotate certs runs: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&format!("the cluster is busy: `rotate certs` is running (pid {}", rotation.pid())), "{args:?}: {}", r.stderr);
    }
    assert!(!backups.exists() || std::fs::read_dir(&backups).unwrap().next().is_none(), "a refused backup wrote nothing");
    // status never waits
    let st = boot(&spec, &["status"]);
    assert!(st.stderr.contains("`rotate certs` is running"), "{}", st.stderr);
    signal(rotation.pid(), Signal::Cont);
    assert_eq!(rotation.wait(Duration::from_secs(120)), Some(0));
    boot(&spec, &["backup"]).assert_ok();
    assert_eq!(journal(&spec)["operations"], serde_json::json!([]));
}

/// Kills a member's process and waits (bounded) until the verdict sees it dead.
fn kill_member(spec: &Path, dir: &Path, name: &str) {
    if let Ok(pid) = std::fs::read_to_string(dir.join(format!("members/{name}/{name}.pid"))) {
        signal(pid.trim().parse().unwrap(), Signal::Kill);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while boot(spec, &["status"]).code == Some(0) {
        assert!(std::time::Instant::now() < deadline, "{name} still healthy 30 s after SIGKILL");
    }
}

#[test]
fn replace_killed_at_every_step_finishes_when_run_again_and_blocks_others_meanwhile() {
    let (tmp, spec, _down) = up_cluster();
    let dir = tmp.path();
    for step in ["retire", "remove", "add", "start", "promote"] {
        kill_member(&spec, dir, "etcd-2");
        let needle = format!("] {step} etcd-2:");
        if let Err(stderr) = start_until_stderr_says(&mut boot_cmd(&spec, &["replace", "etcd-2"]), &needle, Duration::from_secs(90)) {
            panic!("replace never printed {needle:?}:\n{stderr}");
        }
        // killed (the Running guard dropped), unless it finished first (a kill at its last step
        // can land after it): another change is refused, naming the way on
        let unfinished = under_way(&spec).contains(&"replace".to_string());
        assert!(unfinished || step == "promote", "a kill at {step} must leave replace unfinished");
        if unfinished {
            let r = probe_refusal(&spec);
            assert_eq!(r.code, Some(4), "after a kill at {step}: {}", r.stderr);
            assert!(
                r.stderr.contains("`replace etcd-2` stopped unfinished") && r.stderr.trim_end().ends_with("replace etcd-2"),
                "after a kill at {step}: {}",
                r.stderr
            );
        }
        if unfinished {
            let again = boot(&spec, &["replace", "etcd-2"]);
            assert!(again.ok(), "replace after a kill at {step}: {}{}", again.stdout, again.stderr);
            assert!(again.stderr.contains("resuming: `replace etcd-2`"), "{}", again.stderr);
        }
        let m = members(&spec);
        assert_eq!(m.iter().filter(|(_, role)| role == "voter").count(), 3, "after a kill at {step}: {m:?}");
        assert_eq!(boot(&spec, &["status"]).code, Some(0), "after a kill at {step}");
        assert_eq!(journal(&spec)["operations"], serde_json::json!([]), "after a kill at {step}");
    }
}

/// Hostile command-line values are refused at the boundary: nothing reaches the journal, and the
/// message shows them escaped (no terminal control sequence, no second line).
#[test]
fn hostile_names_and_paths_are_refused_before_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = local_spec(tmp.path(), 1).path;
    for args in [
        vec!["replace", "etcd-1\u{1b}[2J\nrm -rf /"],
        vec!["restore", "/tmp/x\n.db", "--force"],
        vec!["upgrade", "--to", "/tmp/etcd\n$(touch /tmp/canary)"],
        vec!["downgrade", "--to", "/tmp/etcd\n$(touch /tmp/canary)"],
        vec!["downgrade", "--to", "/tmp/etcd", "--sha256", "`touch /tmp/canary`"],
    ] {
        let r = boot(&spec, &args);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains('\u{1b}') && r.stderr.trim_end().lines().count() == 1, "{args:?}: {:?}", r.stderr);
        assert!(!spec.with_file_name("cluster.yaml.journal").exists(), "{args:?} touched the journal");
        assert!(!std::path::Path::new("/tmp/canary").exists(), "{args:?} ran its payload");
    }
}
