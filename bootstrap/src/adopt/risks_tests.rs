use super::effective::from_running;
use super::probe::{FileFacts, ProcessFacts};
use super::risks::{env_file, findings};
use super::{CertSummary, Inventory, Member};
use crate::spec::adopted::AdoptedSupervisor as Supervisor;
use std::path::{Path, PathBuf};

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

pub(super) fn member(name: &str, version: &str, argv: &[&str]) -> Member {
    let argv: Vec<String> = std::iter::once("etcd").chain(argv.iter().copied()).map(String::from).collect();
    let config = from_running(&argv, &[], Path::new("/"), None).unwrap();
    let addr = format!("10.0.0.{}", name.trim_start_matches("etcd-"));
    Member {
        name: name.into(),
        id: "1".into(),
        client_urls: vec![format!("https://{addr}:2379")],
        peer_urls: vec![format!("https://{addr}:2380")],
        is_learner: false,
        is_leader: false,
        version: Some(version.into()),
        db_size: Some(1 << 20),
        served: Some(cert(&format!("CN={name}"), &[&format!("IP:{addr}")], NOW + 300 * DAY)),
        host: "local".into(),
        process: Some(ProcessFacts {
            pid: 42,
            start: 1,
            comm: "etcd".into(),
            exe: "/usr/local/bin/etcd".into(),
            cwd: "/".into(),
            argv,
            environ: vec![],
            supervisor: Supervisor::Process,
            unit_properties: vec![],
            manifest_text: None,
        }),
        data_dir: Some(config.data_dir()),
        config: Some(config),
        files: vec![],
        certs: vec![],
        missing: vec![],
        private_keys: vec![],
        problem: None,
    }
}

fn cert(subject: &str, sans: &[&str], not_after: i64) -> CertSummary {
    CertSummary {
        subject: subject.into(),
        issuer: "CN=etcd-ca".into(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        ext_key_usage: vec!["Server Auth".into(), "Client Auth".into()],
        is_ca: false,
        not_after: format!("@{not_after}"),
        not_after_unix: not_after,
        sha256: subject.into(),
        public_key_sha256: format!("pk of {subject}"),
    }
}

pub(super) const GOOD: &[&str] = &[
    "--data-dir=/var/lib/etcd",
    "--listen-client-urls=https://10.0.0.1:2379",
    "--listen-peer-urls=https://10.0.0.1:2380",
    "--client-cert-auth",
    "--peer-client-cert-auth",
];

pub(super) fn inventory(members: Vec<Member>) -> Inventory {
    Inventory { cluster_id: "c".into(), members, alarms: vec![], findings: vec![] }
}

fn said(inv: &Inventory) -> Vec<String> {
    findings(inv, NOW).into_iter().map(|f| format!("{}: {}", f.member.as_deref().unwrap_or("cluster"), f.what)).collect()
}

#[test]
fn a_well_kept_35_cluster_has_no_risk() {
    let inv = inventory(vec![member("etcd-1", "3.5.30", GOOD), member("etcd-2", "3.5.30", GOOD)]);
    assert_eq!(said(&inv), Vec::<String>::new());
}

#[test]
fn weak_settings_are_risks_each_with_a_fix() {
    let m = member(
        "etcd-1",
        "3.4.23",
        &["--data-dir=/d", "--listen-client-urls=https://10.0.0.1:2379,http://127.0.0.1:2379", "--listen-peer-urls=https://10.0.0.1:2380", "--enable-v2"],
    );
    let inv = inventory(vec![m]);
    let all = findings(&inv, NOW);
    let s = said(&inv);
    for needle in [
        "plain-HTTP listeners: http://127.0.0.1:2379",
        "--client-cert-auth off",
        "--peer-client-cert-auth off",
        "pre-vote is off",
        "serves the v2 API",
        "below kubeadm's minimum etcd 3.5.24",
    ] {
        assert!(s.iter().any(|f| f.contains(needle)), "lacks {needle:?}: {s:#?}");
    }
    assert!(all.iter().all(|f| !f.fix.is_empty()), "every risk has a fix");
}

#[test]
fn certificates_expiring_expired_or_outlived_by_their_ca_uncovered_or_without_client_auth() {
    let mut m = member("etcd-1", "3.5.30", GOOD);
    m.served = Some(cert("CN=etcd-1", &["IP:10.9.9.9"], NOW - DAY));
    let mut peer = cert("CN=peer", &["IP:10.0.0.1"], NOW + 10 * DAY);
    peer.ext_key_usage = vec!["Server Auth".into()];
    m.certs = vec![
        ("peer-cert-file".into(), peer),
        ("trusted-ca-file".into(), cert("CN=etcd-ca", &[], NOW + 5 * DAY)),
        ("cert-file".into(), cert("CN=etcd-1", &["IP:10.0.0.1"], NOW + 300 * DAY)),
    ];
    let s = said(&inventory(vec![m]));
    for needle in [
        "served certificate (CN=etcd-1) expired",
        "peer-cert-file (CN=peer) expires in 10 days",
        "does not cover https://10.0.0.1:2379",
        "lacks clientAuth",
        "its CA (CN=etcd-ca) expires on",
        "trusted-ca-file (CN=etcd-ca) expires in 5 days",
    ] {
        assert!(s.iter().any(|f| f.contains(needle)), "lacks {needle:?}: {s:#?}");
    }
}

#[test]
fn mixed_versions_a_shared_certificate_and_a_stray_private_key() {
    let mut a = member("etcd-1", "3.5.30", GOOD);
    let mut b = member("etcd-2", "3.5.28", GOOD);
    b.served = a.served.clone();
    a.private_keys = vec![PathBuf::from("/etc/etcd/pki/ca-key.pem")];
    let s = said(&inventory(vec![a, b]));
    for needle in [
        "cluster: members run different etcd versions (3.5.28, 3.5.30)",
        "cluster: every member serves the same certificate",
        "etcd-1: /etc/etcd/pki/ca-key.pem holds a private key etcd does not use",
    ] {
        assert!(s.iter().any(|f| f.contains(needle)), "lacks {needle:?}: {s:#?}");
    }
}

/// Each member serves its own certificate, but all use one peer certificate and key (a leftover
/// of single-certificate guides): named per role, with the files, once for the cluster.
#[test]
fn a_peer_certificate_shared_by_every_member_is_named_with_its_files() {
    let with_peer = |name: &str, peer_subject: &str, key_sha: &str| {
        let argv: Vec<String> = GOOD
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--peer-cert-file".into(),
                format!("/etc/ssl/etcd/{name}-peer.pem"),
                "--peer-key-file".into(),
                format!("/etc/ssl/etcd/{name}-peer-key.pem"),
            ])
            .collect();
        let mut m = member(name, "3.5.30", &argv.iter().map(String::as_str).collect::<Vec<_>>());
        m.certs =
            vec![("cert-file".into(), cert(&format!("CN={name}"), &[], NOW + 300 * DAY)), ("peer-cert-file".into(), cert(peer_subject, &[], NOW + 300 * DAY))];
        m.files = vec![FileFacts {
            path: format!("/etc/ssl/etcd/{name}-peer-key.pem").into(),
            owner: "root:root".into(),
            mode: "600".into(),
            size: 227,
            sha256: key_sha.into(),
            content: None,
        }];
        m
    };
    let inv = inventory(vec![with_peer("etcd-1", "CN=peer", "k1"), with_peer("etcd-2", "CN=peer", "k1"), with_peer("etcd-3", "CN=peer", "k1")]);
    let fix = findings(&inv, NOW).into_iter().find(|f| f.what.contains("is shared by")).map(|f| f.fix).unwrap_or_default();
    assert_eq!(fix, "issue a peer certificate and key per member (etcd-bootstrap rotate certs --split once adopted)");
    let s = said(&inv);
    let shared: Vec<&String> = s.iter().filter(|f| f.contains("is shared by")).collect();
    assert_eq!(shared.len(), 1, "said once, for the peer role only: {s:#?}");
    assert!(shared[0].contains("the peer certificate's key is shared by 3 members (one public key: /etc/ssl/etcd/etcd-1-peer.pem on etcd-1, /etc/ssl/etcd/etcd-2-peer.pem on etcd-2, /etc/ssl/etcd/etcd-3-peer.pem on etcd-3)"), "{s:#?}");
    // different certificates over one key file are the same risk
    let s = said(&inventory(vec![with_peer("etcd-1", "CN=p1", "k1"), with_peer("etcd-2", "CN=p2", "k1"), with_peer("etcd-3", "CN=p3", "k3")]));
    assert!(
        s.iter().any(|f| f.contains(
            "the peer certificate's key is shared by 2 members (one key file: /etc/ssl/etcd/etcd-1-peer.pem on etcd-1, /etc/ssl/etcd/etcd-2-peer.pem on etcd-2)"
        )),
        "{s:#?}"
    );
    let s = said(&inventory(vec![with_peer("etcd-1", "CN=p1", "k1"), with_peer("etcd-2", "CN=p2", "k2")]));
    assert!(!s.iter().any(|f| f.contains("is shared by")), "{s:#?}");
}

#[test]
fn an_environment_file_that_differs_from_the_running_process_is_drift() {
    let mut m = member("etcd-1", "3.5.30", GOOD);
    let p = m.process.as_mut().unwrap();
    p.supervisor = Supervisor::Systemd { unit: "etcd.service".into(), fragment: "/etc/systemd/system/etcd.service".into() };
    p.unit_properties = vec![("EnvironmentFiles".into(), "/etc/etcd.env (ignore_errors=no)".into())];
    p.environ = vec![("ETCD_QUOTA_BACKEND_BYTES".into(), "2147483648".into()), ("ETCD_NAME".into(), "etcd-1".into())];
    m.files = vec![FileFacts {
        path: "/etc/etcd.env".into(),
        owner: "root:root".into(),
        mode: "640".into(),
        size: 10,
        sha256: String::new(),
        content: Some(b"# kubespray\nETCD_NAME=etcd-1\nETCD_QUOTA_BACKEND_BYTES=\"8589934592\"\nETCD_SNAPSHOT_COUNT=100000\n".to_vec()),
    }];
    let s = said(&inventory(vec![m]));
    assert!(
        s.iter().any(|f| f.contains("/etc/etcd.env sets ETCD_QUOTA_BACKEND_BYTES=8589934592, but etcd runs with ETCD_QUOTA_BACKEND_BYTES=2147483648")),
        "{s:#?}"
    );
    assert!(s.iter().any(|f| f.contains("sets ETCD_SNAPSHOT_COUNT=100000, but etcd runs with it unset")), "{s:#?}");
    assert!(!s.iter().any(|f| f.contains("ETCD_NAME")), "{s:#?}");
}

#[test]
fn environment_files_read_as_systemd_reads_them() {
    let vars = env_file("# comment\n; also\n\nexport ETCD_A=1\nETCD_B=\"two words\"\nETCD_C='x'\n");
    assert_eq!(vars, [("ETCD_A", "1"), ("ETCD_B", "two words"), ("ETCD_C", "x")].map(|(k, v)| (k.to_string(), v.to_string())));
}
