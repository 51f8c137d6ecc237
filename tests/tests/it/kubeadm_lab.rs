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
//! Then every day-2 operation with the three serving: the writes through the balancer and a watch
//! kept across rotations, maintenance, backup, the upgrade road from 3.5.1 to 3.7 and a downgrade;
//! a staged CA rotation, a replacement and a restore done as printed, the controllers' watches
//! recovering on their own.

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
    // the guide's own balancer check, from a control-plane node
    let (host, port) = lab.endpoint.rsplit_once(':').unwrap();
    let nc = lab.nodes[1].sh(&format!("nc -v -z -w 5 {host} {port}"), Duration::from_secs(10));
    assert!(nc.ok() && nc.stderr.contains("succeeded"), "nc -v {host} {port}: {}{}", nc.stdout, nc.stderr);
    let lb = boot(&lab.spec, &["check", "lb"]);
    assert!(lb.ok(), "check lb: {}{}", lb.stdout, lb.stderr);
    leases_renewed(&lab, kubectl);
    let holders = lab.kubectl(
        kubectl,
        &["get", "lease", "-n", "kube-system", "-o", "custom-columns=LEASE:.metadata.name,HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime"],
    );
    eprintln!("{}", holders.stdout);
    let streams = range_streams(&lab);
    eprintln!("RangeStream calls etcd {line} answered: {streams}");
    streams
}

/// kube-controller-manager and kube-scheduler hold their Leases and renew them (each within 30 s).
fn leases_renewed(lab: &Lab, kubectl: &std::path::Path) {
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let renewed = |lab: &Lab| lab.kubectl(kubectl, &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.renewTime}"]).stdout;
        let first = renewed(lab);
        let deadline = Instant::now() + Duration::from_secs(30);
        while renewed(lab) == first {
            assert!(Instant::now() < deadline, "the {lease} Lease was not renewed within 30 s (renewTime {first:?})");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
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

/// `kubectl get configmaps --watch` through the balancer, as a controller's watch is: one
/// connection kept open across everything etcd goes through (kube-apiserver's watch cache
/// re-establishes its own etcd watch behind it). What it printed, and whether it is still open.
struct Watch {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(kubectl: &std::path::Path, conf: &std::path::Path, dir: &std::path::Path) -> Watch {
        let out = dir.join("watch.out");
        let child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(conf)
            .args(["get", "configmaps", "--watch", "-o", "name"])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.join("watch.err")).unwrap())
            .spawn()
            .unwrap();
        Watch { child, out }
    }

    /// Waits (bounded) until the watch has printed every name in `want`; panics naming the
    /// missing ones, or if the watch ended.
    fn sees_all(&mut self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let seen = std::fs::read_to_string(&self.out).unwrap_or_default();
            let seen: std::collections::BTreeSet<&str> = seen.lines().collect();
            let missing: Vec<&String> = want.iter().filter(|w| !seen.contains(w.as_str())).collect();
            if missing.is_empty() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the watch ended ({status}) with {} acknowledged writes unseen, e.g. {:?}", missing.len(), missing.first());
            }
            assert!(
                Instant::now() < deadline,
                "the watch is stale: {} acknowledged writes unseen after {limit:?}, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When something was restarted on purpose: [from, to] and what. A request that fails must have
/// ended inside one of them, or within a request timeout (10 s) and a retry after it.
#[derive(Default)]
struct Windows(Vec<(Instant, Instant, String)>);

impl Windows {
    fn around<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> T {
        let from = Instant::now();
        let r = f();
        self.0.push((from, Instant::now(), what.to_string()));
        r
    }

    /// The failures during the window named `what`.
    fn within<'a>(&self, what: &str, failed: &'a [(Instant, String)]) -> Vec<&'a str> {
        let spans: Vec<_> = self.0.iter().filter(|(_, _, w)| w == what).collect();
        failed.iter().filter(|(t, _)| spans.iter().any(|(a, b, _)| t >= a && t <= b)).map(|(_, e)| e.as_str()).collect()
    }

    /// Each window's length and the failures in it, on stderr (what the README's lab numbers
    /// are read from).
    fn report(&self, failed: &[(Instant, String)]) {
        for (a, b, what) in &self.0 {
            eprintln!("window {what}: {:.1} s, {} failed", (*b - *a).as_secs_f64(), self.within(what, failed).len());
        }
    }

    fn unexplained<'a>(&self, failed: &'a [(Instant, String)]) -> Vec<&'a str> {
        let slack = Duration::from_secs(11);
        failed.iter().filter(|(t, _)| !self.0.iter().any(|(a, b, _)| *t >= *a && *t <= *b + slack)).map(|(_, e)| e.as_str()).collect()
    }
}

/// Every day-2 operation with the three kube-apiservers serving and a writer going through the
/// balancer, the instructions followed as printed, along the road people still travel: the lab
/// built on upstream etcd 3.5.1, `rotate certs` (the new client files copied to each node,
/// kube-apiserver restarted node by node), `maintain`, `maintain --offline` (at most one request
/// lost, at its leader hand-off), `backup`, the rolling `upgrade` 3.5.1 ->
/// the newest 3.5 -> 3.6 -> 3.7 (3.5.1 straight to 3.6 refused: below the floor) and the
/// `downgrade` back to 3.6. Every acknowledged write is there afterwards, and a watch opened
/// through the balancer before the upgrades is never left stale: it sees every one of them. A
/// request fails only while a member or an API server restarts; the controllers' Leases are
/// still renewed at the end.
#[test]
fn the_road_from_etcd_351_with_the_three_serving_keeps_every_write_and_every_watch() {
    let k8s = K8s::v137();
    let tmp = tempfile::tempdir().unwrap();
    let etcd = |d: &str| workspace_root().join(format!(".etcd/{d}"));
    let mut lab = Lab::create(tmp.path(), "v1.37.2", &etcd("v3.5.1").join("etcd"));
    // below kubeadm 1.37's floor for external etcd (3.5.24): refused unless the spec says it is
    // an old cluster on its way up
    let refused = boot(&lab.spec, &["up"]);
    assert!(!refused.ok() && refused.stderr.contains("ExternalEtcdVersion"), "{}", refused.stderr);
    let text = std::fs::read_to_string(&lab.spec).unwrap();
    std::fs::write(&lab.spec, format!("{text}  allow_old_etcd: true\n")).unwrap();
    boot(&lab.spec, &["up"]).assert_ok();
    lab.start_haproxy();
    lab.init_first(&k8s);
    for i in 1..3 {
        lab.join(i, &k8s);
    }
    let conf = lab.nodes[0].upper.join("kubernetes/admin.conf");
    let writer = Writer::start(&k8s.kubectl, conf.clone());
    let mut windows = Windows::default();
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
        windows.around(&format!("{name}: kube-apiserver restarted"), || {
            lab.nodes[i].stop("kube-apiserver");
            lab.nodes[i].run_static_pod("kube-apiserver", &k8s.kube_apiserver);
            lab.nodes[i].wait_ready(Duration::from_secs(90));
        });
    }
    // from here on the API servers keep running: one watch is held open across what etcd goes through
    let mut watch = Watch::start(&k8s.kubectl, &conf, tmp.path());
    boot(&lab.spec, &["maintain"]).assert_ok();
    // each member stopped in turn while the three serve: kube-apiserver sends its requests to the
    // other two (the one leader hand-off may cost one a timeout)
    let offline = windows.around("maintain --offline", || boot(&lab.spec, &["maintain", "--offline"]));
    assert!(offline.ok() && offline.stderr.matches("rewritten while stopped").count() == 3, "{}{}", offline.stdout, offline.stderr);
    boot(&lab.spec, &["backup"]).assert_ok();
    let skip = boot(&lab.spec, &["upgrade", "--to", etcd("go-3.6").to_str().unwrap()]);
    assert!(!skip.ok() && skip.stderr.contains("3.5.32"), "3.5.1 -> 3.6 is below etcd's floor: {}{}", skip.stdout, skip.stderr);
    for (to, version) in [("go-3.5", "3.5.0"), ("go-3.6", "3.6.0"), ("go-3.7", "3.7.0")] {
        let up = windows.around(&format!("upgrade to {to}"), || boot(&lab.spec, &["upgrade", "--to", etcd(to).to_str().unwrap()]));
        assert!(up.ok() && up.stdout.contains(&format!("cluster version {version}")), "{}{}", up.stdout, up.stderr);
    }
    let down = windows.around("downgrade to 3.6", || boot(&lab.spec, &["downgrade", "--to", etcd("go-3.6").to_str().unwrap()]));
    assert!(down.ok() && down.stdout.contains("cluster version 3.6.0"), "{}{}", down.stdout, down.stderr);
    let (acked, failed) = writer.finish();
    eprintln!("{} writes acknowledged, {} failed, across {} restart windows", acked.len(), failed.len(), windows.0.len());
    windows.report(&failed);
    assert!(acked.len() >= 50, "too few writes to mean anything: {}", acked.len());
    let bad = windows.unexplained(&failed);
    assert!(bad.is_empty(), "requests failed outside every member's and API server's restart: {bad:?}");
    let offline = windows.within("maintain --offline", &failed);
    eprintln!("{} failed during maintain --offline", offline.len());
    assert!(offline.len() <= 1, "maintain --offline: more than the one hand-off's request failed: {offline:?}");
    let listed = lab.kubectl(&k8s.kubectl, &["get", "configmaps", "-o", "name"]).assert_ok().stdout;
    let names: Vec<String> = acked.iter().map(|n| format!("configmap/w-{n:05}")).collect();
    for n in &names {
        assert!(listed.lines().any(|l| l == n), "acknowledged write {n} is missing");
    }
    watch.sees_all(&names, Duration::from_secs(30));
    // the controllers kept their Leases through it all
    leases_renewed(&lab, &k8s.kubectl);
}

/// Follows the steps `rotate ca` printed for nodes it cannot reach (no `host`): each
/// `  NODE: copy SRC to DEST` done inside that node (its own /etc), then its kube-apiserver
/// restarted and Ready, node by node. Returns how many files were copied.
fn follow_rotation_steps(lab: &mut Lab, k8s: &K8s, printed: &str) -> usize {
    let mut copied = 0;
    for node in lab.nodes.iter_mut() {
        let prefix = format!("  {}: copy ", node.name);
        for step in printed.lines().filter_map(|l| l.strip_prefix(&prefix)) {
            let (src, dest) = step.split_once(" to ").unwrap_or_else(|| panic!("not `copy SRC to DEST`: {step}"));
            let q = |p: &str| format!("'{}'", p.replace('\'', "'\\''"));
            node.sh(&format!("set -e\ncp {} {}", q(src), q(dest)), Duration::from_secs(10)).assert_ok();
            copied += 1;
        }
        node.stop("kube-apiserver");
        node.run_static_pod("kube-apiserver", &k8s.kube_apiserver);
        node.wait_ready(Duration::from_secs(90));
    }
    copied
}

/// The operations that meet kube-apiserver hardest, with the three serving behind HAProxy on etcd
/// 3.7, each done as the tool prints it: a CA rotation in its three stops (the files copied to
/// each node and kube-apiserver restarted between them; the cluster served through the balancer at
/// every stop), a dead member replaced, and a whole-cluster restore (kube-apiservers stopped
/// before and started after, as printed). After the restore the data is the snapshot's and the
/// controllers' watches re-list on their own: a Deployment made afterwards gets its ReplicaSet
/// from kube-controller-manager, which was never restarted for it (only started again, as a
/// kubelet would, if it had exited on losing its Lease while no API server ran).
#[test]
fn a_staged_ca_rotation_a_replacement_and_a_restore_with_the_three_serving() {
    let k8s = K8s::v137();
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::create(tmp.path(), "v1.37.2", &workspace_root().join(".etcd/go-3.7/etcd"));
    boot(&lab.spec, &["up"]).assert_ok();
    lab.start_haproxy();
    lab.init_first(&k8s);
    for i in 1..3 {
        lab.join(i, &k8s);
    }
    let kubectl = |lab: &Lab, args: &[&str]| lab.kubectl(&k8s.kubectl, args);
    // the CA rotation, stop by stop
    let mut r = boot(&lab.spec, &["rotate", "ca"]);
    for (stop, at) in ["step 1 of 3", "step 2 of 3"].iter().enumerate() {
        assert!(r.ok() && r.stdout.contains(&format!("stopped after {at}")), "{}{}", r.stdout, r.stderr);
        assert!(follow_rotation_steps(&mut lab, &k8s, &r.stdout) >= 3, "no files to copy at {at}:\n{}", r.stdout);
        kubectl(&lab, &["create", "configmap", &format!("rotation-stop-{}", stop + 1)]).assert_ok();
        r = boot(&lab.spec, &["rotate", "ca", "--continue"]);
    }
    assert!(r.ok() && r.stdout.contains("CA rotation done"), "{}{}", r.stdout, r.stderr);
    follow_rotation_steps(&mut lab, &k8s, &r.stdout);
    kubectl(&lab, &["create", "configmap", "rotated"]).assert_ok();
    // a dead member replaced while the three serve
    let etcd2 = tmp.path().join(&lab.hosts.hosts[1].name).join("var/lib/etcd-bootstrap/etcd-2.pid");
    let pid: u32 = std::fs::read_to_string(&etcd2).unwrap().trim().parse().unwrap();
    integration_tests::signal(pid, integration_tests::Signal::Kill);
    integration_tests::wait_gone(pid, Duration::from_secs(10));
    // when it led, the other two elect a leader first (status exits 1: DEGRADED), as an operator
    // would see before writing; a write in the election may time out in etcd itself
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while boot(&lab.spec, &["status"]).code != Some(1) {
        assert!(std::time::Instant::now() < deadline, "no new leader after etcd-2 died");
        std::thread::sleep(Duration::from_millis(200));
    }
    kubectl(&lab, &["create", "configmap", "one-member-down"]).assert_ok();
    let replaced = boot(&lab.spec, &["replace", "etcd-2", "-w", "json"]);
    assert!(replaced.ok() && replaced.stdout.contains("\"member\": \"etcd-2\""), "{}{}", replaced.stdout, replaced.stderr);
    kubectl(&lab, &["create", "configmap", "replaced"]).assert_ok();
    // a backup, a write after it, then the restore as printed
    let b = boot(&lab.spec, &["backup", "-w", "json"]).assert_ok();
    let snapshot = serde_json::from_str::<serde_json::Value>(&b.stdout).unwrap()["path"].as_str().unwrap().to_string();
    kubectl(&lab, &["create", "configmap", "after-the-backup"]).assert_ok();
    let refused = boot(&lab.spec, &["restore", &snapshot]);
    assert!(!refused.ok() && refused.stderr.contains("kube-apiserver"), "a restore under serving API servers says to stop them: {}", refused.stderr);
    for node in lab.nodes.iter_mut() {
        node.stop("kube-apiserver");
    }
    let restored = boot(&lab.spec, &["restore", "--force", &snapshot, "-w", "json"]);
    assert!(restored.ok(), "{}{}", restored.stdout, restored.stderr);
    let report: serde_json::Value = serde_json::from_str(&restored.stdout).unwrap();
    assert!(report["bumped_by"].as_u64().unwrap_or(0) > 0, "the revision was raised: {report}");
    for node in lab.nodes.iter_mut() {
        node.run_static_pod("kube-apiserver", &k8s.kube_apiserver);
        node.wait_ready(Duration::from_secs(90));
    }
    let mut again = Vec::new();
    for node in lab.nodes.iter_mut() {
        for (component, binary) in [("kube-controller-manager", &k8s.kube_controller_manager), ("kube-scheduler", &k8s.kube_scheduler)] {
            if node.restart_if_exited(component, binary) {
                again.push(format!("{} {component}", node.name));
            }
        }
    }
    eprintln!("started again after losing their Lease during the restore (as a kubelet would): {again:?}");
    let names = kubectl(&lab, &["get", "configmaps", "-o", "name"]).assert_ok().stdout;
    for kept in ["rotation-stop-1", "rotation-stop-2", "rotated", "one-member-down", "replaced"] {
        assert!(names.contains(&format!("configmap/{kept}")), "{kept} was in the snapshot: {names}");
    }
    assert!(!names.contains("configmap/after-the-backup"), "written after the backup, gone after the restore: {names}");
    kubectl(&lab, &["create", "deployment", "web", "--image=registry.k8s.io/pause:3.10"]).assert_ok();
    let deadline = Instant::now() + Duration::from_secs(90);
    while kubectl(&lab, &["get", "replicasets", "-l", "app=web", "-o", "name"]).stdout.trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no ReplicaSet for the Deployment within 90 s: kube-controller-manager's watches did not recover:\n{}",
            lab.nodes[0].log("kube-controller-manager").lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
