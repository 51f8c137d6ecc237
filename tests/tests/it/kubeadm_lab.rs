//! The lab people build by hand, for real (tests/src/lab.rs): etcd on three hosts built by `up`
//! over SSH, kubeadm 1.37's own phases writing three control-plane nodes from the bundles `up`
//! made (the first by init's phases, the others by join's, the shared certificates going through
//! the cluster with the certificate key and discovery through our HAProxy with the token and CA
//! hash), and three kube-apiservers 1.37 started from kubeadm's manifests behind that HAProxy,
//! with kube-controller-manager and kube-scheduler from the same manifests. kubectl works through
//! the balancer with kubeadm's admin.conf; objects written through one server are seen by the
//! others; the controllers' Leases are renewed. On etcd 3.7, 3.6 and 3.5: kube-apiserver 1.37
//! fills its watch cache with etcd 3.7's RangeStream RPC (EtcdRangeStream, beta, on by default)
//! and falls back to paginated lists on the older lines, where everything above works the same.

use integration_tests::bootstrap::boot;
use integration_tests::lab::{K8s, Lab};
use integration_tests::{run_bounded, workspace_root};
use std::process::Command;
use std::time::{Duration, Instant};

/// The lab on the etcd of `line`, checked; returns how many RangeStream calls etcd answered OK.
fn lab_on(line: &str) -> u64 {
    let k8s = K8s::v137();
    let kubectl = &k8s.kubectl;
    let tmp = tempfile::tempdir().unwrap();
    let etcd = workspace_root().join(format!(".etcd/go-{line}/etcd"));
    let mut lab = Lab::create(tmp.path(), "v1.37.2", &etcd);
    let up = boot(&lab.spec, &["up"]);
    assert!(up.ok(), "{}{}", up.stdout, up.stderr);
    lab.start_haproxy();
    lab.init_first(&k8s);
    for i in 1..3 {
        lab.join(i, &k8s);
    }
    // through the balancer, with kubeadm's admin.conf
    eprintln!("lab on etcd {line}: three control-plane nodes from kubeadm's phases, behind HAProxy on {}", lab.endpoint);
    let ns = lab.kubectl(kubectl, &["get", "namespaces", "-o", "name"]).assert_ok();
    assert!(ns.stdout.contains("namespace/kube-system"), "{}", ns.stdout);
    lab.kubectl(kubectl, &["create", "configmap", "lab", "--from-literal=written=through-the-balancer"]).assert_ok();
    // each server sees it (it is in etcd, not in one server's memory)
    for n in &lab.nodes {
        let r = n.sh(
            &format!("{} --kubeconfig /etc/kubernetes/admin.conf --server https://{}:6443 get configmap lab -o jsonpath='{{.data.written}}'", kubectl.display(), n.address),
            Duration::from_secs(30),
        );
        assert_eq!(r.stdout.trim(), "through-the-balancer", "{}: {}{}", n.name, r.stdout, r.stderr);
    }
    let lb = boot(&lab.spec, &["check", "lb"]);
    assert!(lb.ok(), "check lb: {}{}", lb.stdout, lb.stderr);
    // kube-controller-manager and kube-scheduler elect a leader through Leases and renew them
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let renewed = |lab: &Lab| lab.kubectl(kubectl, &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.renewTime}"]).stdout;
        let first = renewed(&lab);
        let deadline = Instant::now() + Duration::from_secs(30);
        while renewed(&lab) == first {
            assert!(Instant::now() < deadline, "the {lease} Lease was not renewed within 30 s (renewTime {first:?})");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let holders = lab.kubectl(kubectl, &["get", "lease", "-n", "kube-system", "-o", "custom-columns=LEASE:.metadata.name,HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime"]);
    eprintln!("{}", holders.stdout);
    let streams = range_streams(&lab);
    eprintln!("RangeStream calls etcd {line} answered: {streams}");
    streams
}

/// RangeStream calls the members answered OK, from their own metrics.
fn range_streams(lab: &Lab) -> u64 {
    let pki = lab.dir.join("pki/etcd");
    let mut total = 0;
    for h in lab.hosts.hosts.iter().take(3) {
        let m = run_bounded(
            Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(pki.join("ca.crt"))
                .arg("--cert")
                .arg(pki.join("healthcheck-client.crt"))
                .arg("--key")
                .arg(pki.join("healthcheck-client.key"))
                .arg(format!("https://{}:2379/metrics", h.address)),
            Duration::from_secs(10),
        )
        .assert_ok();
        total += m
            .stdout
            .lines()
            .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains("grpc_code=\"OK\"") && l.contains("grpc_method=\"RangeStream\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[test]
fn three_kube_apiservers_from_kubeadms_manifests_serve_through_our_haproxy() {
    let streams = lab_on("3.7");
    assert!(streams > 0, "kube-apiserver 1.37 fills its watch cache with RangeStream on etcd 3.7");
}

#[test]
fn the_same_lab_on_etcd_36_and_35_lists_without_range_stream() {
    for line in ["3.6", "3.5"] {
        assert_eq!(lab_on(line), 0, "etcd {line} has no RangeStream: kube-apiserver falls back to paginated lists");
    }
}
