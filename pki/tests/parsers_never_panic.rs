#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! Property tests: no input reaches a panic in any parser a user's string or file goes through,
//! and each answers quickly. Inputs are arbitrary text and arbitrary bytes, plus shapes close to
//! the real thing (PEM armour around random bytes, JSON with random values), where bugs hide.

use pki::cfssl::Strictness;
use proptest::prelude::*;

fn pem_of(label: &str, body: &[u8]) -> Vec<u8> {
    pki::pemfile::encode(label, body).into_bytes()
}

const LABELS: &[&str] = &[
    "CERTIFICATE",
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "CERTIFICATE REQUEST",
    "X509 CRL",
    "EC PARAMETERS",
    "Ed25519 PRIVATE KEY",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hosts_and_members(s in "\\PC{0,80}") {
        let _ = pki::hosts::san_from_host(&s);
        let _ = pki::hosts::validate_dns_name(&s);
        let _ = pki::hosts::validate_host_name(&s);
        let _ = pki::cluster::Member::parse_flag(&s);
        let _ = pki::renew::parse_target(&s);
        let _ = s.parse::<pki::expiry::Threshold>();
    }

    #[test]
    fn member_flags_shaped(name in "[a-z*.\\-]{0,12}", ips in proptest::collection::vec("[0-9a-f:.\\[\\]]{0,20}", 0..4)) {
        let _ = pki::cluster::Member::parse_flag(&format!("{name}={}", ips.join(",")));
    }

    #[test]
    fn pem_and_keys(bytes in proptest::collection::vec(any::<u8>(), 0..600), label in proptest::sample::select(LABELS)) {
        for input in [bytes.clone(), pem_of(label, &bytes)] {
            let _ = pki::keys::PrivateKey::from_pem(&input, "key");
            let _ = pki::pemfile::certificates(&input, "cert");
            let _ = pki::inspect::inspect(&input, "file");
            let _ = pki::inspect::cert_info(&bytes, "der");
            let _ = pki::inspect::csr_info(&bytes, "der");
        }
    }

    #[test]
    fn csr_and_ca_config_json(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut w = Vec::new();
        let _ = pki::cfssl::csr::parse(&bytes, "csr.json", Strictness::Strict, &mut w);
        let _ = pki::cfssl::config::parse(&bytes, "ca-config.json", Strictness::Lenient, &mut w);
    }

    #[test]
    fn csr_and_ca_config_json_shaped(cn in "\\PC{0,20}", expiry in "[-0-9.a-z]{0,24}", hosts in proptest::collection::vec("\\PC{0,20}", 0..3), pathlen in any::<i64>()) {
        let csr = serde_json::json!({"CN": cn, "hosts": hosts, "key": {"algo": "ecdsa", "size": 256}, "ca": {"expiry": expiry, "pathlen": pathlen}});
        let cfg = serde_json::json!({"signing": {"default": {"expiry": expiry, "usages": hosts}, "profiles": {cn.clone(): {"expiry": expiry, "usages": ["server auth"]}}}});
        let mut w = Vec::new();
        for strictness in [Strictness::Strict, Strictness::Lenient] {
            let _ = pki::cfssl::csr::parse(csr.to_string().as_bytes(), "csr.json", strictness, &mut w);
            let _ = pki::cfssl::config::parse(cfg.to_string().as_bytes(), "ca-config.json", strictness, &mut w);
        }
    }

    #[test]
    fn cfssl_flags(args in proptest::collection::vec("-{0,2}[a-z\\-=]{0,10}", 0..6)) {
        let _ = pki::cfssl::flags::parse(&args, &["initca", "bare"], &["ca", "ca-key", "config", "profile", "hostname"]);
    }
}
