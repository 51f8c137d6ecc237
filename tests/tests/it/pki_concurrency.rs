//! Concurrent writers on one PKI directory: ten `pki issue` (or ten `pki init-ca`) started at
//! once, twenty trials each. Exactly one CA is made, the set is consistent (every key matches
//! its certificate, every leaf is signed by the one CA, checked with openssl), and every run
//! either succeeded with that CA or failed with a clear message.

use integration_tests::{bin, openssl, tree};
use std::path::Path;
use std::process::{Command, Stdio};

const RUNS: usize = 10;
const TRIALS: usize = 20;

fn spawn_all(dir: &Path, args: &[&str]) -> Vec<std::process::Output> {
    let children: Vec<_> =
        (0..RUNS).map(|_| Command::new(bin("pki")).current_dir(dir).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn pubkey_of_cert(path: &Path) -> String {
    openssl(Path::new("."), &["x509", "-noout", "-pubkey", "-in", &path.display().to_string()]).assert_ok().stdout
}

fn pubkey_of_key(path: &Path) -> String {
    openssl(Path::new("."), &["pkey", "-pubout", "-in", &path.display().to_string()]).assert_ok().stdout
}

fn assert_consistent(pki: &Path) {
    let ca = pki.join("etcd/ca.crt");
    assert_eq!(pubkey_of_cert(&ca), pubkey_of_key(&pki.join("etcd/ca.key")), "CA key does not match ca.crt");
    for f in tree(pki) {
        assert!(!f.contains("pki-tmp") && !f.contains(".tmp-"), "a temporary was left: {f}");
        let Some(stem) = f.strip_suffix(".crt") else { continue };
        if stem.ends_with("ca") {
            continue;
        }
        let cert = pki.join(&f);
        let key = pki.join(format!("{stem}.key"));
        assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&key), "{f}: key does not match");
        openssl(Path::new("."), &["verify", "-CAfile", &ca.display().to_string(), &cert.display().to_string()]).assert_ok();
    }
}

#[test]
fn ten_parallel_issues_make_one_ca_and_a_consistent_set() {
    for trial in 0..TRIALS {
        let tmp = tempfile::tempdir().unwrap();
        let outs =
            spawn_all(tmp.path(), &["issue", "--out", "pki", "--member", "etcd-1=10.0.0.11", "--member", "etcd-2=10.0.0.12", "--member", "etcd-3=10.0.0.13"]);
        let created =
            outs.iter().filter(|o| String::from_utf8_lossy(&o.stdout).contains("new CA") || String::from_utf8_lossy(&o.stderr).contains("new CA")).count();
        for o in &outs {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "trial {trial}: {err}");
            assert!(o.status.success() || err.contains("busy"), "trial {trial}: a run failed without a clear reason: {err}");
        }
        assert!(created <= 1, "trial {trial}: {created} runs say they created a CA");
        assert!(outs.iter().any(|o| o.status.success()), "trial {trial}: no run succeeded");
        assert_consistent(&tmp.path().join("pki"));
    }
}

#[test]
fn ten_parallel_init_cas_make_exactly_one() {
    for trial in 0..TRIALS {
        let tmp = tempfile::tempdir().unwrap();
        let outs = spawn_all(tmp.path(), &["init-ca", "--out", "pki"]);
        let ok = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "trial {trial}: {ok} runs created a CA");
        for o in outs.iter().filter(|o| !o.status.success()) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("already exists") || err.contains("busy"), "trial {trial}: unclear failure: {err}");
        }
        let pki = tmp.path().join("pki");
        assert_eq!(pubkey_of_cert(&pki.join("etcd/ca.crt")), pubkey_of_key(&pki.join("etcd/ca.key")));
    }
}

#[test]
fn leftovers_of_an_interrupted_run_are_removed_and_backups_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let issue = ["issue", "--out", "pki", "--member", "etcd-1=10.0.0.11"];
    integration_tests::pki(tmp.path(), &issue).assert_ok();
    // what a crash between write and rename leaves: a hidden temporary holding a key
    let server_key = tree(&tmp.path().join("pki")).into_iter().find(|f| f.ends_with("etcd-1/server.key") || f.ends_with("server.key")).unwrap();
    let key = tmp.path().join("pki").join(&server_key);
    let left = key.with_file_name(".server.key.tmp-4242-0");
    std::fs::write(&left, "-----BEGIN PRIVATE KEY-----\nhalf\n").unwrap();
    let out = integration_tests::pki(tmp.path(), &issue).assert_ok();
    assert!(out.stderr.contains("left by an interrupted run"), "{}", out.stderr);
    assert!(!left.exists());
    // two renewals with new keys in the same second: two backups, the original key kept
    let original = std::fs::read(&key).unwrap();
    for _ in 0..2 {
        integration_tests::pki(tmp.path(), &["renew", "--out", "pki", "etcd-1/server", "--rekey"]).assert_ok();
    }
    let backups: Vec<String> = tree(&tmp.path().join("pki")).into_iter().filter(|f| f.contains("server.key.") && f.ends_with(".bak")).collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups.iter().any(|b| std::fs::read(tmp.path().join("pki").join(b)).unwrap() == original), "the original key is in a backup");
}
