//! `pki issue`: the etcd certificate set to kubeadm's spec, checked by openssl and x509-parser.

use integration_tests::{openssl, pki, tree};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use x509_parser::prelude::*;

const MEMBERS: [&str; 6] = ["--member", "etcd-a=10.1.0.1,etcd-a.example.com", "--member", "etcd-b=10.1.0.2", "--member", "etcd-c=10.1.0.3,fd00::3"];

fn issue(dir: &Path, extra: &[&str]) -> integration_tests::Ran {
    let mut args = vec!["issue", "--out", "pki"];
    args.extend(MEMBERS);
    args.extend(extra);
    pki(dir, &args)
}

fn parse(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    p.contents
}

#[test]
fn kubeadm_layout_members_hold_only_their_own_keys() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &[]).assert_ok();
    let files = tree(&tmp.path().join("pki"));
    let expected = [
        "control-plane/apiserver-etcd-client.crt",
        "control-plane/apiserver-etcd-client.key",
        "control-plane/etcd/ca.crt",
        "etcd/ca.crt",
        "etcd/ca.key",
        "etcd/healthcheck-client.crt",
        "etcd/healthcheck-client.key",
        "members/etcd-a/etcd/ca.crt",
        "members/etcd-a/etcd/peer.crt",
        "members/etcd-a/etcd/peer.key",
        "members/etcd-a/etcd/server.crt",
        "members/etcd-a/etcd/server.key",
    ];
    for e in expected {
        assert!(files.contains(&e.to_string()), "missing {e} in {files:#?}");
    }
    assert_eq!(files.len(), 7 + 3 * 5, "{files:#?}");
    // A member's folder holds its own server/peer keys and the CA certificate: nothing else.
    let a = tree(&tmp.path().join("pki/members/etcd-a"));
    assert_eq!(a, ["etcd/ca.crt", "etcd/peer.crt", "etcd/peer.key", "etcd/server.crt", "etcd/server.key"]);
    for f in &files {
        let mode = std::fs::metadata(tmp.path().join("pki").join(f)).unwrap().permissions().mode() & 0o777;
        if f.ends_with(".key") {
            assert_eq!(mode, 0o600, "{f}");
        } else {
            assert_eq!(mode, 0o644, "{f}");
        }
    }
}

#[test]
fn openssl_verifies_every_certificate_for_its_purpose() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &[]).assert_ok();
    let d = tmp.path();
    for m in ["etcd-a", "etcd-b", "etcd-c"] {
        for (cert, purpose) in [("server", "sslserver"), ("server", "sslclient"), ("peer", "sslserver"), ("peer", "sslclient")] {
            let path = format!("pki/members/{m}/etcd/{cert}.crt");
            let out = openssl(d, &["verify", "-CAfile", "pki/etcd/ca.crt", "-purpose", purpose, &path]).assert_ok();
            assert!(out.stdout.contains(": OK"), "{}", out.stdout);
        }
        // the member's own CA copy is the CA
        openssl(d, &["verify", "-CAfile", &format!("pki/members/{m}/etcd/ca.crt"), &format!("pki/members/{m}/etcd/peer.crt")]).assert_ok();
    }
    for client in ["pki/control-plane/apiserver-etcd-client.crt", "pki/etcd/healthcheck-client.crt"] {
        openssl(d, &["verify", "-CAfile", "pki/control-plane/etcd/ca.crt", "-purpose", "sslclient", client]).assert_ok();
        // a client certificate is not a server certificate
        let out = openssl(d, &["verify", "-CAfile", "pki/etcd/ca.crt", "-purpose", "sslserver", client]);
        assert!(!out.ok() || !out.stdout.contains(": OK"), "{client} must not verify as a server: {}", out.stdout);
    }
    // every key matches its certificate (openssl's own view of the public key)
    for (crt, key) in [
        ("pki/members/etcd-b/etcd/server.crt", "pki/members/etcd-b/etcd/server.key"),
        ("pki/control-plane/apiserver-etcd-client.crt", "pki/control-plane/apiserver-etcd-client.key"),
        ("pki/etcd/ca.crt", "pki/etcd/ca.key"),
    ] {
        let a = openssl(d, &["x509", "-in", crt, "-noout", "-pubkey"]).assert_ok().stdout;
        let b = openssl(d, &["pkey", "-in", key, "-pubout"]).assert_ok().stdout;
        assert_eq!(a, b, "{crt} / {key}");
    }
}

#[test]
fn certificates_follow_kubeadm_spec_and_ca_rules() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &[]).assert_ok();
    let p = tmp.path().join("pki");
    let ca_der = parse(&p.join("etcd/ca.crt"));
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(ca.subject().to_string(), "CN=etcd-ca");
    assert!(ca.is_ca());
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let ca_ski = ca.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    let ca_years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / 86400 / 365;
    assert_eq!(ca_years, 10);

    let mut serials = std::collections::HashSet::new();
    for (file, cn, server) in [
        ("members/etcd-a/etcd/server.crt", "etcd-a", true),
        ("members/etcd-a/etcd/peer.crt", "etcd-a", true),
        ("members/etcd-c/etcd/server.crt", "etcd-c", true),
        ("control-plane/apiserver-etcd-client.crt", "kube-apiserver-etcd-client", false),
        ("etcd/healthcheck-client.crt", "kube-etcd-healthcheck-client", false),
    ] {
        let der = parse(&p.join(file));
        let (_, c) = parse_x509_certificate(&der).unwrap();
        assert_eq!(c.subject().to_string(), format!("CN={cn}"), "{file}: no O (kubeadm dropped system:masters)");
        assert!(!c.is_ca(), "{file}");
        assert!(c.verify_signature(Some(ca.public_key())).is_ok(), "{file}");
        // random serial of at least 16 bytes, positive, never repeated
        assert!(c.raw_serial().len() >= 16, "{file}: serial {} bytes", c.raw_serial().len());
        assert!(c.raw_serial()[0] & 0x80 == 0);
        assert!(serials.insert(c.raw_serial().to_vec()), "{file}: repeated serial");
        // backdated by about 5 minutes, valid one year
        let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
        let back = now - c.validity().not_before.timestamp();
        assert!((240..=400).contains(&back), "{file}: notBefore {back}s ago");
        let days = (c.validity().not_after.timestamp() - now) / 86400;
        assert!((364..=365).contains(&days), "{file}: {days} days");
        // AKI = the CA's SKI; SKI present
        let mut aki = None;
        let mut ski = false;
        for e in c.extensions() {
            match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| k.0.to_vec()),
                ParsedExtension::SubjectKeyIdentifier(_) => ski = true,
                _ => {}
            }
        }
        assert_eq!(aki, ca_ski, "{file}");
        assert!(ski, "{file}");
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth, "{file}");
        assert_eq!(eku.server_auth, server, "{file}");
        let sans: Vec<String> = c
            .subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|g| match g {
                        GeneralName::DNSName(d) => format!("DNS:{d}"),
                        GeneralName::IPAddress(b) if b.len() == 4 => format!("IP:{}", std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap())),
                        GeneralName::IPAddress(b) => format!("IP:{}", std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap())),
                        other => format!("{other}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if server {
            for must in [format!("DNS:{cn}"), "DNS:localhost".into(), "IP:127.0.0.1".into(), "IP:::1".into()] {
                assert!(sans.contains(&must), "{file}: {must} not in {sans:?}");
            }
        } else {
            assert!(sans.is_empty(), "{file}: {sans:?}");
        }
    }
    let a = parse(&p.join("members/etcd-a/etcd/server.crt"));
    let text = openssl(tmp.path(), &["x509", "-noout", "-ext", "subjectAltName", "-in", "pki/members/etcd-a/etcd/server.crt"]).assert_ok().stdout;
    assert!(text.contains("DNS:etcd-a.example.com") && text.contains("IP Address:10.1.0.1"), "{text}");
    let text = openssl(tmp.path(), &["x509", "-noout", "-ext", "subjectAltName", "-in", "pki/members/etcd-c/etcd/peer.crt"]).assert_ok().stdout;
    assert!(text.contains("IP Address:FD00:0:0:0:0:0:0:3"), "{text}");
    assert!(!a.is_empty());
}

#[test]
fn rerun_changes_nothing_and_a_changed_member_is_refused_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &[]).assert_ok();
    let snapshot = |d: &Path| -> Vec<(String, Vec<u8>)> {
        tree(&d.join("pki")).into_iter().map(|f| (f.clone(), std::fs::read(d.join("pki").join(&f)).unwrap())).collect()
    };
    let before = snapshot(tmp.path());
    let out = issue(tmp.path(), &[]).assert_ok();
    assert!(out.stderr.contains("0 issued, 8 kept"), "{}", out.stderr);
    assert_eq!(before, snapshot(tmp.path()), "a re-run must leave every file byte-identical");

    // etcd-b moves to another address: its certificates no longer fit
    let moved = pki(
        tmp.path(),
        &["issue", "--out", "pki", "--member", "etcd-a=10.1.0.1,etcd-a.example.com", "--member", "etcd-b=10.1.0.9", "--member", "etcd-c=10.1.0.3,fd00::3"],
    )
    .assert_fails();
    assert!(moved.stderr.contains("members/etcd-b/etcd/server.crt") && moved.stderr.contains("IP:10.1.0.9"), "{}", moved.stderr);
    assert!(moved.stderr.contains("--force"), "{}", moved.stderr);
    assert_eq!(before, snapshot(tmp.path()), "a refused run changes nothing");

    let forced = pki(
        tmp.path(),
        &[
            "issue",
            "--out",
            "pki",
            "--force",
            "--member",
            "etcd-a=10.1.0.1,etcd-a.example.com",
            "--member",
            "etcd-b=10.1.0.9",
            "--member",
            "etcd-c=10.1.0.3,fd00::3",
        ],
    )
    .assert_ok();
    assert!(forced.stderr.contains("2 issued, 6 kept"), "{}", forced.stderr);
    let after = snapshot(tmp.path());
    let changed: Vec<&String> = before.iter().zip(&after).filter(|(a, b)| a.1 != b.1).map(|(a, _)| &a.0).collect();
    assert_eq!(
        changed,
        ["members/etcd-b/etcd/peer.crt", "members/etcd-b/etcd/peer.key", "members/etcd-b/etcd/server.crt", "members/etcd-b/etcd/server.key"],
        "only etcd-b's certificates change; the CA key never does"
    );
}

#[test]
fn cfssl_layout_uses_cfssljson_names_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &["--layout", "cfssl", "--algo", "rsa-2048"]).assert_ok();
    let files = tree(&tmp.path().join("pki"));
    for f in [
        "ca.pem",
        "ca-key.pem",
        "healthcheck-client.pem",
        "healthcheck-client-key.pem",
        "members/etcd-b/ca.pem",
        "members/etcd-b/etcd-b.pem",
        "members/etcd-b/etcd-b-key.pem",
        "members/etcd-b/etcd-b-peer.pem",
        "members/etcd-b/etcd-b-peer-key.pem",
        "control-plane/ca.pem",
        "control-plane/apiserver-etcd-client.pem",
        "control-plane/apiserver-etcd-client-key.pem",
    ] {
        assert!(files.contains(&f.to_string()), "missing {f}: {files:#?}");
    }
    let key = std::fs::read_to_string(tmp.path().join("pki/members/etcd-b/etcd-b-key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "cfssl writes PKCS#1 for RSA");
    openssl(tmp.path(), &["verify", "-CAfile", "pki/ca.pem", "-purpose", "sslserver", "pki/members/etcd-b/etcd-b.pem"]).assert_ok();
    let text = openssl(tmp.path(), &["x509", "-noout", "-text", "-in", "pki/ca.pem"]).assert_ok().stdout;
    assert!(text.contains("sha256WithRSAEncryption") && text.contains("Public-Key: (2048 bit)"), "{text}");
}

#[test]
fn every_key_algorithm_issues_a_verifiable_set() {
    for algo in ["ecdsa-p384", "ed25519", "rsa-3072"] {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path(), &["issue", "--out", "pki", "--algo", algo, "--member", "m1=10.0.0.1"]).assert_ok();
        openssl(tmp.path(), &["verify", "-CAfile", "pki/etcd/ca.crt", "-purpose", "sslserver", "pki/members/m1/etcd/server.crt"]).assert_ok();
        let info = pki(tmp.path(), &["certinfo", "pki/members/m1/etcd/server.crt"]).assert_ok().stdout;
        let want = match algo {
            "ecdsa-p384" => "ECDSA P-384",
            "ed25519" => "Ed25519",
            _ => "RSA 3072",
        };
        assert!(info.contains(want), "{algo}: {info}");
    }
}

#[test]
fn certinfo_shows_what_operators_check() {
    let tmp = tempfile::tempdir().unwrap();
    issue(tmp.path(), &[]).assert_ok();
    let out = pki(tmp.path(), &["certinfo", "pki/members/etcd-a/etcd/server.crt"]).assert_ok().stdout;
    for want in [
        "Subject:         CN=etcd-a",
        "Issuer:          CN=etcd-ca",
        "DNS:etcd-a.example.com",
        "IP:10.1.0.1",
        "Server Auth, Client Auth",
        "CA:              no",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // one year from issue; 364d once a second has passed under load
    assert!(out.contains("365d left") || out.contains("364d left"), "{out}");
    let json = pki(tmp.path(), &["certinfo", "-w", "json", "pki/etcd/ca.crt"]).assert_ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["subject"]["common_name"], "etcd-ca");
    assert_eq!(v["is_ca"], true);
    assert_eq!(v["path_len"], 0);
    assert!(v["key_usage"].as_array().unwrap().iter().any(|k| k == "Certificate Sign"));
    // a CSR too
    openssl(tmp.path(), &["req", "-new", "-key", "pki/etcd/ca.key", "-subj", "/CN=req", "-addext", "subjectAltName=DNS:x.example", "-out", "r.csr"])
        .assert_ok();
    let out = pki(tmp.path(), &["certinfo", "r.csr"]).assert_ok().stdout;
    assert!(out.contains("Certificate request") && out.contains("x.example") && out.contains("valid"), "{out}");
}

#[test]
fn init_ca_never_replaces_a_ca() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path(), &["init-ca", "--out", "pki", "--algo", "rsa-2048", "--cn", "my-etcd-ca"]).assert_ok();
    let key = std::fs::read(tmp.path().join("pki/etcd/ca.key")).unwrap();
    let again = pki(tmp.path(), &["init-ca", "--out", "pki"]).assert_fails();
    assert!(again.stderr.contains("pki/etcd/ca.crt already exists"), "{}", again.stderr);
    assert_eq!(key, std::fs::read(tmp.path().join("pki/etcd/ca.key")).unwrap());
    // issue uses that CA
    pki(tmp.path(), &["issue", "--out", "pki", "--member", "m=10.0.0.1"]).assert_ok();
    let info = pki(tmp.path(), &["certinfo", "pki/members/m/etcd/server.crt"]).assert_ok().stdout;
    assert!(info.contains("CN=my-etcd-ca"), "{info}");
}
