#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! A canary payload in every string field of a spec: either the spec is refused, naming the
//! field, or — where the field may hold such text (operator-side paths) — nothing it reaches
//! changes shape: the plan, the scripts for both supervisors, the systemd unit, haproxy.cfg and
//! the kubeadm documents keep exactly the lines they have for a plain spec, and the scripts,
//! run in bash, never run the canary.

use bootstrap::host::scripts;
use bootstrap::kube::haproxy;
use bootstrap::kube::kubeadm::{self, ApiVersion, JoinSecrets};
use bootstrap::plan;
use bootstrap::spec::Spec;
use bootstrap::spec::load::LoadedSpec;

const BASE: &str = r#"
name: prod
token: prod-etcd
etcd_binary: etcd
etcd_archive: etcd-v3.5.1-linux-amd64.tar.gz
etcd_sha256: 0000000000000000000000000000000000000000000000000000000000000000
pki: {dir: pki, algorithm: ecdsa-p256, validity: 1y, ca_validity: 10y}
output_dir: out
members:
  - {name: etcd-1, address: 10.0.0.11, host: local, dns_names: [etcd-1.example.com], data_dir: /srv/etcd-1/data, pki_dir: /srv/etcd-1/pki, run_dir: /srv/etcd-1/run, bin_dir: /srv/etcd-1/bin}
  - {name: etcd-2, address: 10.0.0.12, host: root@10.0.0.12, ssh_options: [-p, "22"], supervisor: systemd}
  - {name: etcd-3, address: 10.0.0.13, host: root@10.0.0.13, supervisor: process}
kubernetes:
  version: v1.34.2
  control_plane_endpoint: lb.example.com:6443
  cert_sans: [lb.example.com]
  pod_subnet: 10.244.0.0/16
  service_subnet: 10.96.0.0/12
  dns_domain: cluster.local
  load_balancer_ca_file: /etc/haproxy/kubernetes-ca.crt
  control_plane_nodes:
    - {name: cp-1, address: 10.0.0.21}
    - {name: cp-2, address: 10.0.0.22, host: root@10.0.0.22, ssh_options: [-p, "2222"]}
"#;

/// Every string field, as the text that holds its value in BASE (unique in BASE).
const FIELDS: &[(&str, &str)] = &[
    ("name", "name: prod"),
    ("token", "token: prod-etcd"),
    ("etcd_binary", "etcd_binary: etcd"),
    ("etcd_archive", "etcd_archive: etcd-v3.5.1-linux-amd64.tar.gz"),
    ("etcd_sha256", "etcd_sha256: 0000000000000000000000000000000000000000000000000000000000000000"),
    ("members[0].bin_dir", "bin_dir: /srv/etcd-1/bin"),
    ("pki.dir", "dir: pki,"),
    ("pki.algorithm", "algorithm: ecdsa-p256"),
    ("pki.validity", "validity: 1y"),
    ("pki.ca_validity", "ca_validity: 10y"),
    ("output_dir", "output_dir: out"),
    ("members[0].name", "name: etcd-1,"),
    ("members[0].dns_names", "[etcd-1.example.com]"),
    ("members[0].data_dir", "data_dir: /srv/etcd-1/data"),
    ("members[0].pki_dir", "pki_dir: /srv/etcd-1/pki"),
    ("members[0].run_dir", "run_dir: /srv/etcd-1/run,"),
    ("members[1].host", "host: root@10.0.0.12"),
    ("members[1].ssh_options", "[-p, \"22\"]"),
    ("kubernetes.version", "version: v1.34.2"),
    ("kubernetes.control_plane_endpoint", "control_plane_endpoint: lb.example.com:6443"),
    ("kubernetes.cert_sans", "cert_sans: [lb.example.com]"),
    ("kubernetes.pod_subnet", "pod_subnet: 10.244.0.0/16"),
    ("kubernetes.service_subnet", "service_subnet: 10.96.0.0/12"),
    ("kubernetes.dns_domain", "dns_domain: cluster.local"),
    ("kubernetes.load_balancer_ca_file", "load_balancer_ca_file: /etc/haproxy/kubernetes-ca.crt"),
    ("kubernetes.control_plane_nodes[0].name", "name: cp-1,"),
    ("kubernetes.control_plane_nodes[1].host", "host: root@10.0.0.22"),
    ("kubernetes.control_plane_nodes[1].ssh_options", "[-p, \"2222\"]"),
];

const PAYLOADS: &[&str] = &[
    "/x\nUNIT\ntouch CANARY\ncat >/dev/null <<'UNIT'",
    "/x\nExecStartPre=/bin/touch CANARY",
    "/x\n    server injected 6.6.6.6:6443",
    "/x'; touch CANARY; echo '",
    "/x$(touch CANARY)",
    "/x`touch CANARY`",
    "-oProxyCommand=touch CANARY",
    "*.evil.example",
    "/x\u{1b}[2J",
    "a..b",
];

fn with_value(field_text: &str, payload: &str) -> String {
    let (key, _) = field_text.split_once(':').unwrap_or((field_text, ""));
    let quoted = serde_json::to_string(payload).unwrap(); // a JSON string is a YAML double-quoted scalar
    let replacement = if field_text.starts_with('[') {
        format!("[{quoted}]")
    } else if field_text.contains(": [") {
        format!("{key}: [{quoted}]")
    } else if field_text.ends_with(',') {
        format!("{key}: {quoted},")
    } else {
        format!("{key}: {quoted}")
    };
    assert_eq!(BASE.matches(field_text).count(), 1, "{field_text}");
    BASE.replace(field_text, &replacement)
}

/// Everything the spec reaches, as texts.
fn artifacts(loaded: &LoadedSpec) -> Vec<(String, String)> {
    let p = plan::build(loaded);
    let secrets = JoinSecrets::generate(format!("sha256:{}", "ab".repeat(32))).unwrap();
    let mut out = vec![
        ("plan".to_string(), plan::render(&p)),
        ("haproxy.cfg".into(), haproxy::config(&loaded.spec)),
        ("init.yaml".into(), kubeadm::init_document(&loaded.spec, &secrets, ApiVersion::V1Beta4)),
        ("join.yaml".into(), kubeadm::join_document(&loaded.spec, 1, &secrets, ApiVersion::V1Beta4)),
        (
            "lb probe".into(),
            bootstrap::spec::split_host_port(&loaded.spec.kubernetes.control_plane_endpoint)
                .map(|(h, port)| scripts::lb_probe(&h, port, "-----BEGIN CERTIFICATE-----\n", 3))
                .unwrap_or_default(),
        ),
        ("RUNBOOK.md".into(), kubeadm::runbook(&loaded.spec, "/ops/spec.yaml", std::path::Path::new("/ops/out"))),
    ];
    for m in &p.members {
        out.push((format!("unit {}", m.name()), scripts::unit_file(m)));
        out.push((format!("start {}", m.name()), scripts::start(m, &p.token)));
        out.push((format!("stop {}", m.name()), scripts::stop(m, Some(&scripts::marker_text(&p.token, m.name())))));
        out.push((format!("preflight {}", m.name()), scripts::preflight(m, &["10.0.0.99".into()])));
        out.push((format!("restore {}", m.name()), scripts::restore_snapshot(m, "/var/lib/x/restore.db", &p.initial_cluster(), &p.token, 1_000_000)));
        out.push((format!("restore tool {}", m.name()), scripts::restore_tool_probe(m)));
        out.push((format!("v2 probe {}", m.name()), scripts::v2_probe(m)));
        out.push((format!("free space {}", m.name()), scripts::free_space(m)));
        out.push((format!("v2store probe {}", m.name()), scripts::v2store_probe(m)));
        out.push((format!("doctor probe {}", m.name()), scripts::clock_and_space(m)));
        out.push((format!("retire now {}", m.name()), scripts::retire_now(m)));
    }
    out
}

fn line_counts(a: &[(String, String)]) -> Vec<(String, usize)> {
    a.iter().map(|(k, v)| (k.clone(), v.lines().count())).collect()
}

#[test]
fn every_string_field_refuses_or_contains_a_canary() {
    let base = Spec::parse(BASE).unwrap().into_loaded("spec.yaml", std::path::Path::new("/ops")).unwrap();
    let base_shape = line_counts(&artifacts(&base));
    let mut accepted = 0;
    for (field, text) in FIELDS {
        for payload in PAYLOADS {
            let yaml = with_value(text, payload);
            let loaded =
                Spec::parse(&yaml).map_err(|e| e.to_string()).and_then(|s| s.into_loaded("spec.yaml", std::path::Path::new("/ops")).map_err(|e| e.to_string()));
            match loaded {
                Err(e) => {
                    let short = field.split('[').next().unwrap_or(field).split('.').next_back().unwrap_or(field);
                    assert!(e.contains(short) || e.contains("control character"), "{field} = {payload:?}: the error does not name the field: {e}");
                }
                Ok(loaded) => {
                    accepted += 1;
                    // only operator-side values (they never reach a host) may hold shell or
                    // control characters; elsewhere only an inert value can pass
                    let inert = payload.chars().all(|c| c.is_ascii_alphanumeric() || ".*-".contains(c));
                    assert!(inert || matches!(*field, "pki.dir" | "output_dir" | "etcd_archive"), "{field} = {payload:?} was accepted");
                    let arts = artifacts(&loaded);
                    assert_eq!(line_counts(&arts), base_shape, "{field} = {payload:?} changed an artifact's shape");
                    for (what, body) in &arts {
                        assert!(!body.contains("server injected") && !body.contains("ExecStartPre"), "{what} for {field} = {payload:?}:\n{body}");
                    }
                }
            }
        }
    }
    assert!(accepted > 0, "the operator-side paths take any printable text");
}

#[test]
fn scripts_of_a_hostile_spec_never_run_the_canary() {
    // Past validation the scripts still quote: feed the canary straight into a plan.
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("CANARY");
    let base = Spec::parse(BASE).unwrap().into_loaded("spec.yaml", std::path::Path::new("/ops")).unwrap();
    for payload in PAYLOADS {
        let payload = payload.replace("CANARY", &canary.display().to_string());
        let mut loaded = base.clone();
        let m = &mut loaded.spec.members[0];
        m.data_dir = dir.path().join(format!("d{}", payload.replace('/', "_")));
        m.run_dir = dir.path().join(format!("r{}", payload.replace('/', "_")));
        m.name = format!("etcd-1{}", payload.replace('/', "_"));
        let p = plan::build(&loaded);
        let m = &p.members[0];
        for script in [scripts::preflight(m, std::slice::from_ref(&payload)), scripts::stop(m, Some(&payload)), scripts::log_tail(m, 3)] {
            let _ = std::process::Command::new("bash").arg("-c").arg(&script).output().unwrap();
            assert!(!canary.exists(), "{payload:?} ran through:\n{script}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]
    #[test]
    fn any_text_is_parsed_or_refused_without_panic(s in "\\PC{0,200}") {
        if let Ok(spec) = Spec::parse(&s) {
            let _ = spec.validate();
        }
    }

    #[test]
    fn any_value_in_a_field_is_parsed_or_refused_without_panic(i in 0..FIELDS.len(), v in "\\PC{0,40}") {
        let yaml = with_value(FIELDS[i].1, &v);
        if let Ok(spec) = Spec::parse(&yaml)
            && let Ok(loaded) = spec.into_loaded("spec.yaml", std::path::Path::new("/ops")) {
                let _ = artifacts(&loaded);
            }
    }
}
