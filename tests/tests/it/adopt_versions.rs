//! `adopt`'s clusters moved between etcd releases in place: the patch upgrade from upstream 3.5.1,
//! the downgrade 3.7 -> 3.6, and the refusal before 3.7 of a member configured with what 3.7
//! removed. Each host keeps its own binary where its command line names it.

use crate::adopt_lab::{Writes, boot, hashes, lab_on, lab_with, settings};
use integration_tests::run_bounded;
use std::process::Command;
use std::time::Duration;

/// `upgrade` in place: a lab on upstream etcd 3.5.1 (each host with its own copy under
/// /usr/local/bin, as hand-made setups install it) upgraded to the newest 3.5 under continuous writes:
/// each member's binary replaced where it runs from, each restarted through what runs it with
/// the same command line and settings, every acknowledged write kept, the cluster version 3.5.
#[test]
fn an_adopted_cluster_is_upgraded_in_place() {
    let root = integration_tests::workspace_root();
    let (old, new) = (root.join(".etcd/v3.5.1"), root.join(".etcd/go-3.5"));
    assert!(old.join("etcd").is_file() && new.join("etcd").is_file(), "install-deps puts etcd 3.5.1 and the newest 3.5 into .etcd/");
    let v = run_bounded(Command::new(new.join("etcd")).arg("--version"), Duration::from_secs(10)).assert_ok().stdout;
    let v = v.lines().find_map(|l| l.strip_prefix("etcd Version: ")).unwrap().trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    let lab = lab_on(tmp, addrs, vec![], false, Some(old));
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-o", spec.to_str().unwrap()]);
    assert!(spec.is_file(), "{}", r.stderr);
    let before: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert!(before["members"].as_array().unwrap().iter().all(|m| m["version"] == "3.5.1"), "{}", before["members"]);

    let w = Writes::start(&lab, &eps);
    let up = boot(&spec, &["upgrade", "--to", new.to_str().unwrap()]);
    assert!(up.ok(), "{}{}", up.stdout, up.stderr);
    let n = w.finish(&lab, &eps, 10);
    eprintln!("{n} writes acknowledged during the upgrade");
    assert!(up.stdout.contains(&format!("from etcd 3.5.1 to {v}")), "{}", up.stdout);
    assert!(up.stdout.contains("replaced where it runs from"), "{}", up.stdout);
    let after: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    for m in after["members"].as_array().unwrap() {
        assert_eq!(m["version"], v.as_str(), "{}", m["name"]);
        assert!(m["process"]["exe"].as_str().unwrap().ends_with("/usr/local/bin/etcd"), "still its own copy: {}", m["process"]["exe"]);
    }
    assert_eq!(settings(&after), settings(&before), "the same command lines and settings, each from where it came");
    for i in 1..=3 {
        let bin = lab.dir.join(format!("host-{i}/usr/local/bin/etcd"));
        let said = run_bounded(Command::new(&bin).arg("--version"), Duration::from_secs(10));
        assert!(said.stdout.contains(&format!("etcd Version: {v}")), "{}: {}", bin.display(), said.stdout);
    }
    boot(&spec, &["down"]).assert_ok();
}

/// `downgrade` in place: a lab on the newest 3.7 (each host with its own copy under
/// /usr/local/bin) taken back to the newest 3.6 through etcd's downgrade API under continuous
/// writes: each member's binary replaced where it runs from, restarted through what runs it with
/// the same command line and settings, every acknowledged write kept, storage version 3.6.
#[test]
fn an_adopted_37_cluster_is_downgraded_to_36_in_place() {
    let root = integration_tests::workspace_root();
    let (v36, v37) = (root.join(".etcd/go-3.6"), root.join(".etcd/go-3.7"));
    assert!(v36.join("etcd").is_file() && v37.join("etcd").is_file(), "install-deps builds etcd 3.6 and 3.7 into .etcd/go-3.6 and .etcd/go-3.7");
    let said = run_bounded(Command::new(v36.join("etcd")).arg("--version"), Duration::from_secs(10)).assert_ok().stdout;
    let v = said.lines().find_map(|l| l.strip_prefix("etcd Version: ")).unwrap().trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    let lab = lab_on(tmp, addrs, vec![], false, Some(v37.canonicalize().unwrap()));
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-o", spec.to_str().unwrap()]);
    assert!(spec.is_file(), "{}", r.stderr);
    let before: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();

    let w = Writes::start(&lab, &eps);
    let down = boot(&spec, &["downgrade", "--to", v36.to_str().unwrap()]);
    assert!(down.ok(), "{}{}", down.stdout, down.stderr);
    let n = w.finish(&lab, &eps, 10);
    eprintln!("{n} writes acknowledged during the downgrade");
    assert!(down.stdout.contains(&format!("to {v}; cluster version 3.6.0")) && down.stdout.contains("replaced where it runs from"), "{}", down.stdout);
    let after: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    for m in after["members"].as_array().unwrap() {
        assert_eq!(m["version"], v.as_str(), "{}", m["name"]);
        assert!(m["process"]["exe"].as_str().unwrap().ends_with("/usr/local/bin/etcd"), "still its own copy: {}", m["process"]["exe"]);
    }
    assert_eq!(settings(&after), settings(&before), "the same command lines and settings, each from where it came");
    boot(&spec, &["down"]).assert_ok();
}

/// A 3.6 cluster whose flag-configured member carries an `--experimental-*` flag (3.7 removed
/// them all: etcd 3.7 exits 2 on it): `adopt` names it with its replacement, and `upgrade` to 3.7
/// is refused before any change, naming the member, the flag and its replacement; nothing on the
/// hosts changes and every member still runs 3.6.
#[test]
fn an_adopted_36_member_with_an_experimental_flag_is_refused_before_37() {
    let root = integration_tests::workspace_root();
    let (v36, v37) = (root.join(".etcd/go-3.6"), root.join(".etcd/go-3.7"));
    assert!(v36.join("etcd").is_file() && v37.join("etcd").is_file(), "install-deps builds etcd 3.6 and 3.7 into .etcd/go-3.6 and .etcd/go-3.7");
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    let lab = lab_with(tmp, addrs, vec![], false, Some(v36.canonicalize().unwrap()), vec!["--experimental-initial-corrupt-check".into()]);
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-o", spec.to_str().unwrap()]);
    assert!(spec.is_file(), "{}", r.stderr);
    assert!(
        r.stdout.contains("--experimental-initial-corrupt-check: etcd 3.7 exits 2 on it (an unknown flag) (before upgrading to 3.7)")
            && r.stdout.contains("--feature-gates=InitialCorruptCheck=true"),
        "{}",
        r.stdout
    );
    let before = hashes(&lab.dir);
    let up = boot(&spec, &["upgrade", "--to", v37.to_str().unwrap()]).assert_fails();
    assert!(up.stderr.contains("member etcd-1: --experimental-initial-corrupt-check: etcd 3.7 exits 2 on it"), "{}", up.stderr);
    assert!(up.stderr.contains("instead: --feature-gates=InitialCorruptCheck=true") && up.stderr.contains("nothing was started"), "{}", up.stderr);
    assert_eq!(hashes(&lab.dir), before, "nothing on the hosts changed");
    let now: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert!(now["members"].as_array().unwrap().iter().all(|m| m["version"].as_str().unwrap_or("").starts_with("3.6.")), "{}", now["members"]);
}

/// `upgrade` in place across a minor: a lab on the newest 3.6 (its own copies, no setting 3.7
/// removed) taken to the newest 3.7 under continuous writes: each binary replaced where it runs
/// from, the same command lines and settings, every acknowledged write kept, cluster version 3.7.
#[test]
fn an_adopted_36_cluster_is_upgraded_to_37_in_place() {
    let root = integration_tests::workspace_root();
    let (v36, v37) = (root.join(".etcd/go-3.6"), root.join(".etcd/go-3.7"));
    let said = run_bounded(Command::new(v37.join("etcd")).arg("--version"), Duration::from_secs(10)).assert_ok().stdout;
    let v = said.lines().find_map(|l| l.strip_prefix("etcd Version: ")).unwrap().trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    let lab = lab_on(tmp, addrs, vec![], false, Some(v36.canonicalize().unwrap()));
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-o", spec.to_str().unwrap()]);
    assert!(spec.is_file(), "{}", r.stderr);
    let before: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    let w = Writes::start(&lab, &eps);
    let up = boot(&spec, &["upgrade", "--to", v37.to_str().unwrap()]);
    assert!(up.ok(), "{}{}", up.stdout, up.stderr);
    let n = w.finish(&lab, &eps, 10);
    eprintln!("{n} writes acknowledged during the upgrade");
    assert!(up.stdout.contains(&format!("to {v}; cluster version 3.7.0")) && up.stdout.contains("replaced where it runs from"), "{}", up.stdout);
    let after: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    for m in after["members"].as_array().unwrap() {
        assert_eq!(m["version"], v.as_str(), "{}", m["name"]);
    }
    assert_eq!(settings(&after), settings(&before), "the same command lines and settings, each from where it came");
    boot(&spec, &["down"]).assert_ok();
}
