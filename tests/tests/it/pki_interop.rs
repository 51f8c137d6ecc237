//! CAs made by openssl, cfssl (and so kubeadm's formats) load and sign; what we issue is accepted
//! by cfssl's certinfo and openssl.

use integration_tests::{fixture, openssl, pki, run, tool};
use std::process::Command;

fn issue_with(ca: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let cert = fixture(&format!("{ca}.crt")).display().to_string();
    let key = fixture(&format!("{ca}.key.insecure")).display().to_string();
    pki(tmp.path(), &["issue", "--out", "pki", "--ca-cert", &cert, "--ca-key", &key, "--member", "e1=10.0.0.1"]).assert_ok();
    let out = openssl(tmp.path(), &["verify", "-CAfile", &cert, "-purpose", "sslserver", "pki/members/e1/etcd/server.crt"]).assert_ok();
    assert!(out.stdout.contains("OK"));
    // the CA key is not copied into the PKI directory; the CA certificate is
    assert!(!tmp.path().join("pki/etcd/ca.key").exists(), "{ca}: an external CA's key must stay where it is");
    assert!(!std::fs::read(tmp.path().join("pki/etcd/ca.crt")).unwrap().is_empty());
    tmp
}

#[test]
fn openssl_made_cas_load_in_every_key_format() {
    for ca in ["openssl-rsa-ca", "openssl-ec-ca", "openssl-pkcs8-ca", "openssl-ed25519-ca"] {
        issue_with(ca);
    }
}

#[test]
fn cfssl_made_cas_load_and_sign() {
    for ca in ["cfssl-ca", "cfssl-rsa-ca"] {
        let tmp = issue_with(ca);
        // and cfssl itself accepts what we issued
        let out = run(Command::new(tool("cfssl", "CFSSL_BIN")).current_dir(tmp.path()).args(["certinfo", "-cert", "pki/members/e1/etcd/peer.crt"])).assert_ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["subject"]["common_name"], "e1");
        assert_eq!(v["issuer"]["common_name"], ca);
        let sans: Vec<&str> = v["sans"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
        for want in ["e1", "localhost", "10.0.0.1", "127.0.0.1", "::1"] {
            assert!(sans.contains(&want), "{want} not in {sans:?}");
        }
    }
}

#[test]
fn fixtures_script_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let script = fixture("generate.sh");
    run(Command::new("bash").arg(script).arg(tmp.path())).assert_ok();
    assert!(tmp.path().join("expired-ca.crt").exists() && tmp.path().join("wrong-ca-client.crt").exists());
}
