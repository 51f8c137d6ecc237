//! The lab people build by hand, for real (tests/src/lab.rs): etcd 3.7 on three hosts built by
//! `up` over SSH, kubeadm 1.37's own phases writing three control-plane nodes from the bundles
//! `up` made (the first by init's phases, the others by join's, the shared certificates going
//! through the cluster with the certificate key and discovery through our HAProxy with the token
//! and CA hash), and three kube-apiservers 1.37 started from kubeadm's manifests behind that
//! HAProxy, with kube-controller-manager and kube-scheduler from the same manifests. kubectl works
//! through the balancer with kubeadm's kubeconfig; objects written through one server are seen by
//! the others; the controllers' Leases are renewed.

use integration_tests::bootstrap::boot;
use integration_tests::lab::{K8s, Lab};
use std::time::{Duration, Instant};

#[test]
fn three_kube_apiservers_from_kubeadms_manifests_serve_through_our_haproxy() {
    let k8s = K8s::v137();
    let kubectl = &k8s.kubectl;
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::create(tmp.path(), "v1.37.2");
    let up = boot(&lab.spec, &["up"]);
    assert!(up.ok(), "{}{}", up.stdout, up.stderr);
    lab.start_haproxy();
    lab.init_first(&k8s);
    for i in 1..3 {
        lab.join(i, &k8s);
    }
    // through the balancer, with kubeadm's kubeconfig
    let ns = lab.kubectl(kubectl, &["get", "namespaces", "-o", "name"]).assert_ok();
    assert!(ns.stdout.contains("namespace/kube-system"), "{}", ns.stdout);
    lab.kubectl(kubectl, &["create", "configmap", "lab", "--from-literal=written=through-the-balancer"]).assert_ok();
    // each server sees it (it is in etcd, not in one server's memory)
    for n in &lab.nodes {
        let r = n.sh(
            &format!(
                "{} --kubeconfig /etc/kubernetes/admin.conf --server https://{}:6443 get configmap lab -o jsonpath='{{.data.written}}'",
                kubectl.display(),
                n.address
            ),
            Duration::from_secs(30),
        );
        assert_eq!(r.stdout.trim(), "through-the-balancer", "{}: {}{}", n.name, r.stdout, r.stderr);
    }
    let lb = boot(&lab.spec, &["check", "lb"]);
    assert!(lb.ok(), "check lb: {}{}", lb.stdout, lb.stderr);
    // kube-controller-manager and kube-scheduler (from kubeadm's manifests on each node) elect a
    // leader through Leases and renew them every few seconds
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let renewed = |lab: &Lab| lab.kubectl(kubectl, &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.renewTime}"]).stdout;
        let first = renewed(&lab);
        let deadline = Instant::now() + Duration::from_secs(30);
        while renewed(&lab) == first {
            assert!(Instant::now() < deadline, "the {lease} Lease was not renewed within 30 s (renewTime {first:?})");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
