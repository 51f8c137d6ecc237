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
    let holders = lab.kubectl(
        kubectl,
        &["get", "lease", "-n", "kube-system", "-o", "custom-columns=LEASE:.metadata.name,HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime"],
    );
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

/// What the writer saw: the writes acknowledged (by number), and each failure with its time.
type Written = (Vec<u32>, Vec<(Instant, String)>);

/// Creates ConfigMaps through the balancer with kubeadm's admin.conf, one after another, until
/// stopped: which were acknowledged, and when a request failed.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Written>>,
}

impl Writer {
    fn start(kubectl: &std::path::Path, conf: std::path::PathBuf) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, kubectl) = (stop.clone(), kubectl.to_path_buf());
        let thread = std::thread::spawn(move || {
            let (mut acked, mut failed) = (vec![], vec![]);
            let mut n = 0u32;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = run_bounded(
                    Command::new(&kubectl).arg("--kubeconfig").arg(&conf).args(["create", "configmap", &format!("w-{n:05}"), "--request-timeout=10s"]),
                    Duration::from_secs(20),
                );
                if r.ok() {
                    acked.push(n)
                } else {
                    failed.push((Instant::now(), r.stderr))
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (acked, failed)
        });
        Writer { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Written {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or_default()
    }
}

/// Every day-2 operation with the three kube-apiservers serving and a writer going through the
/// balancer, the instructions followed as printed: `rotate certs` (the new client files copied to
/// each node, kube-apiserver restarted node by node), `maintain`, `backup`, the rolling `upgrade`
/// 3.6 -> 3.7 and the `downgrade` back. Every acknowledged write is there afterwards; a request
/// fails only while a member or an API server restarts (at most one per restart).
#[test]
fn every_operation_with_the_three_serving_keeps_every_acknowledged_write() {
    let k8s = K8s::v137();
    let tmp = tempfile::tempdir().unwrap();
    let (v36, v37) = (workspace_root().join(".etcd/go-3.6"), workspace_root().join(".etcd/go-3.7"));
    let mut lab = Lab::create(tmp.path(), "v1.37.2", &v36.join("etcd"));
    boot(&lab.spec, &["up"]).assert_ok();
    lab.start_haproxy();
    lab.init_first(&k8s);
    for i in 1..3 {
        lab.join(i, &k8s);
    }
    let writer = Writer::start(&k8s.kubectl, lab.nodes[0].upper.join("kubernetes/admin.conf"));
    let mut restarts = 0;
    // rotate certs: copy out/control-plane/NODE/ to each node, restart kube-apiserver node by node
    let r = boot(&lab.spec, &["rotate", "certs"]);
    assert!(r.ok() && r.stderr.contains("copy out/control-plane/NODE/ to each node"), "{}{}", r.stdout, r.stderr);
    for i in 0..3 {
        let name = lab.nodes[i].name.clone();
        let pki = lab.dir.join(format!("out/control-plane/{name}/etc/kubernetes/pki"));
        lab.nodes[i]
            .sh(
                &format!("set -e\ncp {p}/apiserver-etcd-client.crt {p}/apiserver-etcd-client.key /etc/kubernetes/pki/", p = pki.display()),
                Duration::from_secs(10),
            )
            .assert_ok();
        lab.nodes[i].stop("kube-apiserver");
        lab.nodes[i].run_static_pod("kube-apiserver", &k8s.kube_apiserver);
        lab.nodes[i].wait_ready(Duration::from_secs(90));
        restarts += 1;
    }
    boot(&lab.spec, &["maintain"]).assert_ok();
    boot(&lab.spec, &["backup"]).assert_ok();
    let up = boot(&lab.spec, &["upgrade", "--to", v37.to_str().unwrap()]);
    assert!(up.ok() && up.stdout.contains("cluster version 3.7.0"), "{}{}", up.stdout, up.stderr);
    let down = boot(&lab.spec, &["downgrade", "--to", v36.to_str().unwrap()]);
    assert!(down.ok() && down.stdout.contains("cluster version 3.6.0"), "{}{}", down.stdout, down.stderr);
    restarts += 6;
    std::thread::sleep(Duration::from_millis(500));
    let (acked, failed) = writer.finish();
    eprintln!("{} writes acknowledged, {} failed, across {restarts} restarts", acked.len(), failed.len());
    assert!(acked.len() >= 50, "too few writes to mean anything: {}", acked.len());
    assert!(failed.len() <= restarts, "more failed requests than restarts ({restarts}): {:?}", failed.iter().map(|f| &f.1).collect::<Vec<_>>());
    let listed = lab.kubectl(&k8s.kubectl, &["get", "configmaps", "-o", "name"]).assert_ok().stdout;
    for n in acked {
        assert!(listed.contains(&format!("configmap/w-{n:05}")), "acknowledged write w-{n:05} is missing");
    }
}
