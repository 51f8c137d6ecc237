//! Bad input gets a clear error naming the input, a non-zero exit, and changes nothing.

use integration_tests::{fixture, pki, tree};
use std::path::Path;

/// Runs `pki args` in a fresh dir; asserts failure, every `needles` in stderr, and no files left.
fn refused(args: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = pki(tmp.path(), args).assert_fails();
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(tree(tmp.path()), Vec::<String>::new(), "a failed command must leave no files");
}

fn f(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn empty_member_list() {
    refused(&["issue", "--out", "pki"], &["no members"]);
}

#[test]
fn duplicate_member_names_and_ips_are_all_reported() {
    refused(
        &["issue", "--out", "pki", "--member", "a=10.0.0.1", "--member", "a=10.0.0.2", "--member", "b=10.0.0.1"],
        &["member \"a\": duplicate member name", "member \"b\": IP 10.0.0.1 is also used by another member"],
    );
}

#[test]
fn invalid_hosts() {
    refused(&["issue", "--out", "pki", "--member", "etcd_1=10.0.0.1"], &["etcd_1", "not allowed in a DNS name"]);
    refused(&["issue", "--out", "pki", "--member", "e1=10.0.0.1,bad..name"], &["bad..name", "empty label"]);
    refused(&["issue", "--out", "pki", "--member", "e1=0.0.0.0"], &["0.0.0.0 cannot be advertised"]);
    refused(&["issue", "--out", "pki", "--member", "e1"], &["expected NAME=IP"]);
}

#[test]
fn ca_checks() {
    let m = ["--member", "e1=10.0.0.1"];
    let with_ca = |cert: &str, key: &str| {
        let mut a = vec!["issue".to_string(), "--out".into(), "pki".into(), "--ca-cert".into(), f(cert), "--ca-key".into(), f(key)];
        a.extend(m.iter().map(|s| s.to_string()));
        a
    };
    let run = |args: Vec<String>, needles: &[&str]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&refs, needles);
    };
    run(with_ca("openssl-ec-ca.crt", "other-ca.key.insecure"), &["openssl-ec-ca.crt", "does not belong to this certificate"]);
    run(with_ca("expired-ca.crt", "expired-ca.key.insecure"), &["expired-ca.crt", "expired on 2021-01-01"]);
    run(with_ca("not-a-ca.crt", "not-a-ca.key.insecure"), &["not-a-ca.crt", "is not a CA certificate"]);
    run(with_ca("garbage.pem", "other-ca.key.insecure"), &["garbage.pem", "PEM"]);
    run(with_ca("openssl-ec-ca.crt", "openssl-ec-ca.crt"), &["openssl-ec-ca.crt", "no private key found"]);
    run(with_ca("openssl-ec-ca.crt", "encrypted.key.insecure"), &["encrypted.key.insecure", "encrypted"]);
    run(with_ca("openssl-ec-ca.crt", "missing.key"), &["missing.key", "No such file"]);
}

#[test]
fn bad_flags() {
    refused(&["issue", "--out", "pki", "--algo", "dsa", "--member", "e=10.0.0.1"], &["unknown key algorithm", "ecdsa-p256"]);
    refused(&["issue", "--out", "pki", "--validity", "ten years", "--member", "e=10.0.0.1"], &["--validity", "invalid duration"]);
    refused(&["issue", "--out", "pki", "--validity", "20y", "--member", "e=10.0.0.1"], &["after its CA"]);
}

#[test]
fn malformed_cluster_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("c.yaml"), "members:\n  - name: e1\n    ip: [10.0.0.1]\n").unwrap();
    let out = pki(tmp.path(), &["issue", "--out", "pki", "--cluster", "c.yaml"]).assert_fails();
    assert!(out.stderr.contains("c.yaml") && out.stderr.contains("unknown field `ip`"), "{}", out.stderr);
    assert!(!Path::new(&tmp.path().join("pki")).exists());
}

#[test]
fn half_a_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path(), &["init-ca", "--out", "pki"]).assert_ok();
    std::fs::remove_file(tmp.path().join("pki/etcd/ca.key")).unwrap();
    let out = pki(tmp.path(), &["issue", "--out", "pki", "--member", "e=10.0.0.1"]).assert_fails();
    assert!(out.stderr.contains("ca.key") && out.stderr.contains("missing"), "{}", out.stderr);
    assert_eq!(tree(&tmp.path().join("pki")), ["etcd/ca.crt"]);
}
