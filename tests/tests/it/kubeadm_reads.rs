//! Kubernetes' own kubeadm (built from k8s.io/kubernetes by scripts/build-k8s.sh) reads the
//! documents `up` writes: `kubeadm config validate` of the version the documents are for passes
//! with no warning, for a spec with real node addresses and for `up --local`'s (loopback nodes,
//! whose address kubeadm would take as "a global address on lo": left out, kubeadm then takes
//! the host's). Documents in v1beta3 (`--kubeadm-api v1beta3`, for Kubernetes 1.36 and older) are
//! judged by kubeadm 1.36, the newest that reads that API (with its deprecation warning, nothing
//! else); kubeadm 1.37 no longer reads it. Documents for 1.35 are judged by kubeadm 1.36 too: it
//! deploys one minor back and refuses to judge older ones.

use bootstrap::kube::kubeadm::{JoinSecrets, init_document, join_document};
use bootstrap::spec::versions::ApiVersion;
use integration_tests::{Ran, run_bounded, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn kubeadm(minor: &str) -> PathBuf {
    let p = workspace_root().join(format!(".k8s/go-{minor}/kubeadm"));
    assert!(p.is_file(), "{}: run scripts/build-k8s.sh all (install-deps does)", p.display());
    p
}

fn validate(kubeadm: &Path, doc: &Path, extra: &[&str]) -> Ran {
    run_bounded(Command::new(kubeadm).args(["config", "validate", "--config"]).arg(doc).args(extra), Duration::from_secs(60))
}

/// A spec as an operator writes it: etcd hosts and control-plane nodes on their own addresses.
fn operator_spec(dir: &Path, version: &str) -> bootstrap::spec::Spec {
    let text = format!(
        "name: prod\nmembers:\n  - {{name: etcd-1, address: 10.0.0.11, host: root@10.0.0.11}}\n  - {{name: etcd-2, address: 10.0.0.12, host: root@10.0.0.12}}\n  - {{name: etcd-3, address: 10.0.0.13, host: root@10.0.0.13}}\nkubernetes:\n  version: {version}\n  control_plane_endpoint: lb.example.com:6443\n  pod_subnet: 10.244.0.0/16\n  control_plane_nodes:\n    - {{name: cp-1, address: 10.0.0.21}}\n    - {{name: cp-2, address: 10.0.0.22}}\n    - {{name: cp-3, address: 10.0.0.23}}\n"
    );
    let path = dir.join("prod.yaml");
    std::fs::write(&path, text).unwrap();
    bootstrap::spec::Spec::load(&path).unwrap_or_else(|e| panic!("{e}")).spec
}

/// Every document `up` writes for `spec` in `api`: init.yaml and one join per further node.
fn documents(spec: &bootstrap::spec::Spec, api: ApiVersion, dir: &Path) -> Vec<PathBuf> {
    let secrets = JoinSecrets::generate(format!("sha256:{}", "ab".repeat(32))).unwrap();
    let mut out = vec![(format!("init-{}.yaml", api.name()), init_document(spec, &secrets, api))];
    for i in 1..spec.kubernetes.control_plane_nodes.len() {
        out.push((format!("join-{i}-{}.yaml", api.name()), join_document(spec, i, &secrets, api)));
    }
    out.into_iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

#[test]
fn kubeadm_of_each_version_validates_every_document_without_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    for (minor, version, apis) in [
        ("1.37", "v1.37.2", &[ApiVersion::V1Beta4][..]),
        ("1.36", "v1.36.3", &[ApiVersion::V1Beta4, ApiVersion::V1Beta3][..]),
        // the newest kubeadm that reads 1.35's documents (it deploys one minor back, no further)
        ("1.36", "v1.35.4", &[ApiVersion::V1Beta4, ApiVersion::V1Beta3][..]),
    ] {
        let kubeadm = kubeadm(minor);
        let dir = tmp.path().join(version);
        std::fs::create_dir_all(&dir).unwrap();
        let mut local = bootstrap::spec::local::spec(3, &dir);
        local.kubernetes.version = version.into();
        for (what, spec) in [("operator spec", operator_spec(&dir, version)), ("up --local", local)] {
            for &api in apis {
                for doc in documents(&spec, api, &dir) {
                    let r = validate(&kubeadm, &doc, &[]);
                    let said = format!("kubeadm {minor} on {what}'s {}: {}{}", doc.display(), r.stdout, r.stderr);
                    assert!(r.ok() && r.stdout.trim() == "ok", "{said}");
                    // kubeadm 1.36 reads v1beta3 with its deprecation warning (migrate to v1beta4),
                    // and says nothing else
                    let warned = r
                        .stderr
                        .lines()
                        .filter(|l| !(api == ApiVersion::V1Beta3 && l.contains("uses a deprecated API spec: \"kubeadm.k8s.io/v1beta3\"")))
                        .count();
                    assert_eq!(warned, 0, "no other warning: {said}");
                }
            }
        }
    }
}

/// kubeadm 1.37 removed v1beta3: documents for Kubernetes 1.37 are never written in it, and
/// kubeadm 1.37 refuses one, as the version table says.
#[test]
fn kubeadm_137_refuses_v1beta3_as_the_version_table_says() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = operator_spec(tmp.path(), "v1.37.2");
    let doc = &documents(&spec, ApiVersion::V1Beta3, tmp.path())[0];
    let r = validate(&kubeadm("1.37"), doc, &[]);
    assert!(!r.ok(), "kubeadm 1.37 read v1beta3: {}{}", r.stdout, r.stderr);
    let row = bootstrap::spec::versions::release_for(bootstrap::spec::versions::Version(1, 37, 2)).unwrap();
    assert!(!row.apis.contains(&ApiVersion::V1Beta3), "the table must not offer v1beta3 for 1.37");
}

/// The preflight checks kubeadm cannot pass on a machine without a kubelet and a container
/// runtime, by name (never `all`), and Port-6443 (other tests run API servers and load balancers
/// on this machine at the same time): the external-etcd checks are not among them.
const NO_KUBELET_HERE: &str = "CRI,ContainerRuntimeVersion,SystemVerification,KubeletVersion,FileContent--proc-sys-net-ipv4-ip_forward,Port-6443";

/// `kubeadm init phase preflight --config init.yaml` as on the first control-plane node: the
/// node's bundle from `up` at /etc/kubernetes (an overlay on /etc in a private mount namespace;
/// the machine's /etc is untouched), `--dry-run` (no images pulled).
fn preflight(spec: &Path, prepare: &str) -> Ran {
    let out = spec.parent().unwrap().join("out");
    let scratch = tempfile::tempdir().unwrap();
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "set -e\nmount -t overlay overlay -o lowerdir=/etc,upperdir={u},workdir={w} /etc\ncp -a {bundle} /etc/kubernetes\ncp {init} /etc/kubernetes/init.yaml\n{prepare}\nexec {kubeadm} init phase preflight --dry-run --config /etc/kubernetes/init.yaml --ignore-preflight-errors={NO_KUBELET_HERE}\n",
        u = upper.display(),
        w = work.display(),
        bundle = out.join("control-plane/cp-1/etc/kubernetes").display(),
        kubeadm = kubeadm("1.37").display(),
        init = out.join("kubeadm/init.yaml").display(),
    );
    run_bounded(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]), Duration::from_secs(120))
}

/// A cluster `up` built for Kubernetes 1.37 (its spec's version) on `etcd`.
fn cluster_for_137(etcd: &Path) -> (tempfile::TempDir, PathBuf, integration_tests::bootstrap::Down) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = integration_tests::bootstrap::local_spec(tmp.path(), 1).path;
    let text = std::fs::read_to_string(&spec).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l {
            l if l.starts_with("etcd_binary: ") => format!("etcd_binary: {}\n", etcd.display()),
            l if l.trim_start().starts_with("version: ") => "  version: v1.37.2\n".to_string(),
            l => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&spec, text).unwrap();
    let down = integration_tests::bootstrap::Down(spec.clone());
    integration_tests::bootstrap::boot(&spec, &["up"]).assert_ok();
    (tmp, spec, down)
}

/// kubeadm 1.37's preflight against a cluster `up` built: its external-etcd checks
/// (ExternalEtcdVersion: GET /version on each endpoint with the client certificate;
/// ExternalEtcdClientCertificates: the three files) pass with nothing but the kubelet and runtime
/// checks ignored, by name. Each can fail: without the client key, and on an etcd below kubeadm's
/// minimum (3.5.1 < 3.5.24), where the toolkit's own `doctor` judges the same way (a warning
/// where the spec allows an old etcd, and kubeadm is told so by name).
#[test]
fn kubeadm_preflight_passes_its_external_etcd_checks_on_our_cluster_and_fails_where_we_do() {
    let etcd37 = workspace_root().join(".etcd/go-3.7/etcd");
    let (_tmp, spec, _down) = cluster_for_137(&etcd37);
    let r = preflight(&spec, "");
    assert!(r.ok() && !r.stdout.contains("[ERROR") && !r.stderr.contains("[ERROR"), "kubeadm preflight: {}{}", r.stdout, r.stderr);
    let r = preflight(&spec, "rm /etc/kubernetes/pki/apiserver-etcd-client.key");
    assert!(
        !r.ok() && r.stderr.contains("[ERROR ExternalEtcdClientCertificates]") && r.stderr.contains("apiserver-etcd-client.key"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    let etcd351 = workspace_root().join(".etcd/v3.5.1/etcd");
    let (_tmp, old, _down) = cluster_for_137(&etcd351);
    // the spec allows an etcd below kubeadm's minimum (allow_old_etcd): init.yaml demotes that
    // one check by name, and kubeadm and `doctor` both warn
    let r = preflight(&old, "");
    assert!(
        r.ok()
            && r.stderr
                .contains("[WARNING ExternalEtcdVersion]: this version of kubeadm only supports external etcd version >= 3.5.24-0. Current version: 3.5.1"),
        "kubeadm on etcd 3.5.1: {}{}",
        r.stdout,
        r.stderr
    );
    let doctor = integration_tests::bootstrap::boot(&old, &["doctor"]);
    assert!(
        doctor.stdout.lines().any(|l| l.starts_with("WARN") && l.contains("version-matrix") && l.contains("below kubeadm 1.37.2's minimum etcd 3.5.24")),
        "{}",
        doctor.stdout
    );
    // without the demotion kubeadm stops init, as `doctor` fails such a cluster without allow_old_etcd
    let r = preflight(&old, "sed -i '/ignorePreflightErrors/,+1d' /etc/kubernetes/init.yaml");
    assert!(!r.ok() && r.stderr.contains("[ERROR ExternalEtcdVersion]") && r.stderr.contains("3.5.24"), "kubeadm on etcd 3.5.1: {}{}", r.stdout, r.stderr);
}

/// kubeadm judges documents only one minor back: 1.36 refuses 1.34's (its skew rule), so those
/// and older are judged by the toolkit's rules only, as the README says.
#[test]
fn kubeadm_136_refuses_to_judge_documents_two_minors_back() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = operator_spec(tmp.path(), "v1.34.4");
    let doc = &documents(&spec, ApiVersion::V1Beta4, tmp.path())[0];
    let r = validate(&kubeadm("1.36"), doc, &[]);
    assert!(!r.ok() && r.stderr.contains("only supports deploying clusters with the control plane version >= 1.35.0"), "{}{}", r.stdout, r.stderr);
}
