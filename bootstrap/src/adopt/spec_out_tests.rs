//! `adopt -o`: the spec of what is there, and the in-place renewal's plan.

use super::Request;
use super::risks_tests::{GOOD, inventory, member};
use super::spec_out::spec_of;
use crate::in_place::{Held, plan_rotation};
use crate::spec::Spec;
use std::path::PathBuf;

fn request() -> Request {
    Request {
        endpoints: vec![],
        cacert: "/lab/ca.pem".into(),
        cert: "/lab/admin.pem".into(),
        key: "/lab/admin-key.pem".into(),
        hosts: vec![],
        ssh_options: vec!["-p".into(), "2222".into()],
        become_with: crate::spec::Become::None,
    }
}

fn tls_argv(name: &str) -> Vec<String> {
    let mut argv: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    argv.extend([
        format!("--name={name}"),
        "--cert-file=/etc/etcd/pki/etcd.pem".into(),
        "--key-file=/etc/etcd/pki/etcd-key.pem".into(),
        "--trusted-ca-file=/etc/etcd/pki/ca.pem".into(),
        "--peer-cert-file=/etc/etcd/pki/etcd.pem".into(),
        "--peer-key-file=/etc/etcd/pki/etcd-key.pem".into(),
        "--initial-cluster-token=lab".into(),
    ]);
    argv
}

fn adopted_member(name: &str, host: &str) -> super::Member {
    let argv = tls_argv(name);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut m = member(name, "3.5.30", &argv);
    m.host = host.into();
    m
}

#[test]
fn the_spec_describes_each_member_as_found_and_reads_back_the_same() {
    let inv = inventory(vec![adopted_member("etcd-1", "local"), adopted_member("etcd-2", "root@10.0.0.2"), adopted_member("etcd-3", "root@10.0.0.3")]);
    let spec = spec_of(&inv, &request(), Some(std::path::Path::new("/lab/ca-key.pem")), None).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(spec.name, "lab", "named after its initial-cluster-token");
    assert!(spec.kubernetes.is_absent());
    let m1 = &spec.members[0];
    assert_eq!((m1.address.to_string().as_str(), m1.client_port, m1.peer_port), ("10.0.0.1", 2379, 2380));
    assert_eq!(m1.data_dir, PathBuf::from("/var/lib/etcd"));
    assert!(m1.ssh_options.is_empty(), "a local member needs no ssh options");
    assert_eq!(spec.members[1].ssh_options, ["-p", "2222"]);
    let a = m1.adopted.as_ref().unwrap();
    assert_eq!(a.tls["cert-file"], PathBuf::from("/etc/etcd/pki/etcd.pem"));
    assert_eq!(a.settings_from, "flags");
    assert_eq!(a.command_line, tls_argv("etcd-1"), "the operator's flags, verbatim");
    assert_eq!(a.leaf_pairs(), [("cert-file", "key-file")], "server and peer on the same files: one pair");
    let text = super::spec_out::text(&spec).unwrap();
    assert!(!text.contains("kubernetes:"), "no made-up control plane:\n{text}");
    for unused in ["pki_dir", "run_dir", "bin_dir", "etcd_archive", "output_dir", "dns_names", "quota_backend_bytes"] {
        assert!(!text.contains(unused), "{unused}: a default nothing adopted uses:\n{text}");
    }
    let back = Spec::parse(&text).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.validate(), Ok(vec![]));
}

#[test]
fn a_member_that_cannot_be_described_refuses_the_spec_naming_each() {
    let mut plain = adopted_member("etcd-2", "local");
    plain.client_urls = vec!["http://10.0.0.2:2379".into()];
    let mut unread = adopted_member("etcd-3", "local");
    unread.process = None;
    unread.problem = Some("nothing listens on its client URL's port on that host".into());
    let inv = inventory(vec![adopted_member("etcd-1", "local"), plain, unread]);
    let problems = spec_of(&inv, &request(), None, None).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("etcd-2: http://10.0.0.2:2379 is plain HTTP"), "{problems:?}");
    assert!(problems[1].starts_with("etcd-3: nothing listens"), "{problems:?}");
}

#[test]
fn an_adopted_spec_refuses_what_would_rewrite_its_members_and_a_built_spec_never_mixes_in_one() {
    let inv = inventory(vec![adopted_member("etcd-1", "local")]);
    let mut spec = spec_of(&inv, &request(), None, Some("prod")).unwrap();
    let e = crate::run::context::refuse(&spec, "down --purge").unwrap_err().to_string();
    assert!(e.contains("down --purge") && e.contains("its data is its operator's") && e.contains(crate::run::context::SUPPORTED), "{e}");
    use crate::journal::OpKind;
    let supported: Vec<OpKind> = OpKind::ALL.into_iter().filter(|k| crate::run::context::supports(*k)).collect();
    assert_eq!(
        supported,
        [
            OpKind::Up,
            OpKind::Down,
            OpKind::RotateCerts,
            OpKind::RotateCa,
            OpKind::Replace,
            OpKind::Restore,
            OpKind::Upgrade,
            OpKind::Downgrade,
            OpKind::Maintain,
            OpKind::Backup
        ]
    );
    spec.members[0].adopted = None;
    assert!(spec.validate().unwrap_err().join("\n").contains("members[etcd-1]: not adopted"));
    spec.adopted = None;
    assert!(spec.validate().unwrap_err().join("\n").contains("kubernetes: missing"));
}

/// A certificate from `ca` for `sans`, CN `cn`, as DER.
fn shared_cert(ca: &pki::ca::Ca, cn: &str, sans: &[&str]) -> Vec<u8> {
    let template = pki::ca::LeafTemplate {
        subject: pki::ca::Subject::cn(cn),
        sans: sans.iter().map(|s| rcgen::SanType::IpAddress(s.parse().unwrap())).collect(),
        usages: pki::cluster::member_usages(),
        validity: time::Duration::days(30),
        ca_constraint: None,
    };
    let key = pki::keys::PrivateKey::generate(pki::keys::KeyAlgorithm::EcdsaP256).unwrap();
    ca.sign(&template, key.key_pair()).unwrap().der
}

#[test]
fn a_shared_certificate_is_renewed_once_or_split_into_one_per_member() {
    let ca = pki::ca::Ca::create(&pki::ca::CaOptions::default()).unwrap();
    let der = shared_cert(&ca, "etcd", &["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1"]);
    let held: Vec<Held> = (1..=3)
        .map(|i| Held {
            member: format!("etcd-{i}"),
            address: format!("10.0.0.{i}").parse().unwrap(),
            cert: "/etc/etcd/pki/etcd.pem".into(),
            key: "/etc/etcd/pki/etcd-key.pem".into(),
            der: der.clone(),
        })
        .collect();
    let year = time::Duration::days(365);
    let kept = plan_rotation(&held, year, false, false).unwrap();
    assert_eq!(kept.len(), 1, "one certificate, renewed once");
    assert_eq!(kept[0].holders.len(), 3);
    assert!(!kept[0].new_key, "the key stays where it is, unread");
    let renewed = pki::renew::reissue_for_same_key(&ca, &kept[0].template, &der, "test").unwrap();
    let pubkey = |d: &[u8]| x509_parser::parse_x509_certificate(d).unwrap().1.public_key().raw.to_vec();
    assert_eq!(pubkey(&renewed.der), pubkey(&der), "same key");
    let split = plan_rotation(&held, year, true, false).unwrap();
    assert_eq!(split.len(), 3, "one per member");
    for (i, leaf) in split.iter().enumerate() {
        assert_eq!(leaf.holders.len(), 1);
        assert!(leaf.new_key);
        assert_eq!(leaf.template.subject.common_name, format!("etcd-{}", i + 1));
        let ips: Vec<String> = leaf.template.sans.iter().map(|s| format!("{s:?}")).collect();
        assert!(ips.iter().any(|s| s.contains(&format!("10.0.0.{}", i + 1))) && ips.iter().any(|s| s.contains("127.0.0.1")), "{ips:?}");
        assert_eq!(ips.len(), 2, "the other members' addresses dropped: {ips:?}");
    }
    // a certificate of its own per member: split changes nothing about it
    let own: Vec<Held> = (1..=3).map(|i| Held { der: shared_cert(&ca, &format!("etcd-{i}"), &[&format!("10.0.0.{i}")]), ..held[i - 1].clone() }).collect();
    let plan = plan_rotation(&own, year, true, false).unwrap();
    assert!(plan.len() == 3 && plan.iter().all(|l| !l.new_key && l.holders.len() == 1));
}

/// A spec's `adopted:` values reach host scripts (paths as quoted words; the command line and
/// environment only through `scripts_adopted`, tested there): a path with shell, YAML or line
/// syntax, a relative or `-`-led path, and a variable that is not etcd's are refused, each named.
#[test]
fn hostile_adopted_values_are_refused_naming_each() {
    let inv = inventory(vec![adopted_member("etcd-1", "local")]);
    let good = spec_of(&inv, &request(), None, None).unwrap();
    for (field, payload) in [
        ("tls.cert-file", "/etc/etcd/$(touch /CANARY).pem"),
        ("tls.cert-file", "/etc/etcd/a\nb.pem"),
        ("tls.cert-file", "etc/etcd/relative.pem"),
        ("tls.cert-file", "/etc/-rf/x.pem"),
        ("binary", "/usr/bin/etcd; touch /CANARY"),
        ("config_file", "/etc/etcd/`id`.yml"),
        ("working_dir", "/srv/'quoted'"),
    ] {
        let mut spec = good.clone();
        let a = spec.members[0].adopted.as_mut().unwrap();
        match field {
            "binary" => a.binary = payload.into(),
            "config_file" => a.config_file = Some(payload.into()),
            "working_dir" => a.working_dir = payload.into(),
            _ => {
                a.tls.insert("cert-file".into(), payload.into());
            }
        }
        let problems = spec.validate().unwrap_err().join("\n");
        assert!(problems.contains(&format!("members[etcd-1].adopted.{field}")), "{payload:?}: {problems}");
    }
    let mut spec = good.clone();
    spec.members[0].adopted.as_mut().unwrap().environment.insert("LD_PRELOAD".into(), "/tmp/evil.so".into());
    assert!(spec.validate().unwrap_err().join("\n").contains("environment.LD_PRELOAD: only etcd's ETCD_*"));
    let mut spec = good;
    spec.members[0].adopted.as_mut().unwrap().tls.insert("cert-file; rm".into(), "/etc/etcd/x.pem".into());
    assert!(spec.validate().unwrap_err().join("\n").contains("not one of etcd's TLS file settings"));
}
