//! `etcd-bootstrap` on this machine: bring-up verified by Debian's etcdctl with the files
//! written for kube-apiserver, kubeadm configs against kubeadm's rules, `haproxy -c`, re-runs that
//! change nothing, resuming after an interruption, refusing a foreign data dir, down/purge.

use integration_tests::bootstrap::{boot, local_spec, Down};
use integration_tests::{bin, run_bounded, tool, tree};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn spec(dir: &Path) -> PathBuf {
    local_spec(dir, 2).path
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|f| f.starts_with("pki/") || f.starts_with("out/") || f.contains("/pki/"))
        .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
        .collect()
}

fn pids(dir: &Path) -> Vec<String> {
    (1..=3).map(|i| std::fs::read_to_string(dir.join(format!("members/etcd-{i}/etcd-{i}.pid"))).unwrap_or_default()).collect()
}

#[test]
fn local_bring_up_is_verified_by_etcdctl_with_the_apiserver_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let _down = Down(spec.clone());
    let up = boot(&spec, &["up"]).assert_ok();
    assert!(up.stdout.contains("HEALTHY (3 members, 3 started now)"), "{}", up.stdout);
    for step in ["certificates: 8 issued", "preflight etcd-1", "files etcd-2: 6 written", "start etcd-3: started (pid", "quorum: HEALTHY"] {
        assert!(up.stderr.contains(step), "progress lacks {step:?}:\n{}", up.stderr);
    }
    // kube-apiserver's view: exactly the files in the control-plane folder, at kubeadm's paths
    let node = dir.join("out/control-plane/cp-2");
    let node_files = tree(&node);
    assert_eq!(
        node_files,
        ["etc/kubernetes/pki/apiserver-etcd-client.crt", "etc/kubernetes/pki/apiserver-etcd-client.key", "etc/kubernetes/pki/etcd/ca.crt"]
    );
    let init = std::fs::read_to_string(dir.join("out/kubeadm/init.yaml")).unwrap();
    let endpoints: Vec<&str> = init.lines().filter_map(|l| l.trim().strip_prefix("- https://")).collect();
    assert_eq!(endpoints.len(), 3, "{init}");
    let eps = endpoints.iter().map(|e| format!("https://{e}")).collect::<Vec<_>>().join(",");
    let etcdctl = run_bounded(
        Command::new(tool("etcdctl", "ETCDCTL_BIN"))
            .arg(format!("--endpoints={eps}"))
            .arg("--cacert")
            .arg(node.join("etc/kubernetes/pki/etcd/ca.crt"))
            .arg("--cert")
            .arg(node.join("etc/kubernetes/pki/apiserver-etcd-client.crt"))
            .arg("--key")
            .arg(node.join("etc/kubernetes/pki/apiserver-etcd-client.key"))
            .args(["endpoint", "health"]),
        Duration::from_secs(30),
    )
    .assert_ok();
    assert_eq!(etcdctl.stdout.matches("is healthy").count() + etcdctl.stderr.matches("is healthy").count(), 3);
    // kubeadm's rules, with the files checked in each node's folder
    for (file, node) in [("init.yaml", "cp-1"), ("join-cp-2.yaml", "cp-2")] {
        let yaml = std::fs::read_to_string(dir.join("out/kubeadm").join(file)).unwrap();
        let problems = bootstrap::kubeadm::validate(&yaml, Some(&dir.join("out/control-plane").join(node)));
        assert!(problems.is_empty(), "{file}: {problems:?}");
        assert!(yaml.contains(&format!("controlPlaneEndpoint: {}", yaml_lb(&spec))) || file.starts_with("join"), "{yaml}");
    }
    // the member folders: own keys only, 0600
    use std::os::unix::fs::PermissionsExt;
    let m1 = tree(&dir.join("members/etcd-1/pki"));
    assert_eq!(m1, ["etcd/ca.crt", "etcd/crl.pem", "etcd/peer.crt", "etcd/peer.key", "etcd/server.crt", "etcd/server.key"]);
    assert_eq!(std::fs::metadata(dir.join("members/etcd-1/pki/etcd/server.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // HAProxy accepts its config
    let h = run_bounded(Command::new(tool("haproxy", "HAPROXY_BIN")).args(["-c", "-f"]).arg(dir.join("out/haproxy/haproxy.cfg")), Duration::from_secs(30));
    assert!(h.ok(), "haproxy -c: {}{}", h.stdout, h.stderr);
    // status is the quorum verdict
    let st = boot(&spec, &["status"]);
    assert_eq!(st.code, Some(0), "{}", st.stdout);
}

fn yaml_lb(spec: &Path) -> String {
    let text = std::fs::read_to_string(spec).unwrap();
    text.lines().find_map(|l| l.trim().strip_prefix("control_plane_endpoint: ")).unwrap().to_string()
}

#[test]
fn rerun_is_a_no_op_and_down_keeps_data_until_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    let before = snapshot(dir);
    let pids_before = pids(dir);
    let again = boot(&spec, &["up"]).assert_ok();
    assert!(again.stdout.contains("0 started now"), "{}", again.stdout);
    assert!(again.stderr.contains("0 issued, 8 kept") && again.stderr.contains("already running; not restarted"), "{}", again.stderr);
    assert_eq!(pids_before, pids(dir), "members must not be restarted");
    assert_eq!(before, snapshot(dir), "certificates and outputs must be byte-identical");
    // down keeps data; up again restarts on it; down --purge removes it
    boot(&spec, &["down"]).assert_ok();
    assert!(dir.join("members/etcd-1/data/member").exists());
    let st = boot(&spec, &["status"]);
    assert_eq!(st.code, Some(2), "every member stopped: NO-QUORUM {}", st.stdout);
    let back = boot(&spec, &["up"]).assert_ok();
    assert!(back.stderr.contains("its data dir is this cluster's"), "{}", back.stderr);
    boot(&spec, &["down", "--purge"]).assert_ok();
    assert!(!dir.join("members/etcd-1/data").exists());
}

#[test]
fn an_interrupted_up_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let _down = Down(spec.clone());
    // interrupted while waiting for quorum (no time to wait at all)
    let cut = boot(&spec, &["up", "--wait", "0"]);
    // interrupted by SIGKILL at some point of a second run
    let mut child = Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).arg("up").stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let _ = child.kill();
    let _ = child.wait();
    let done = boot(&spec, &["up"]);
    assert!(done.ok(), "first run said: {}\nresume said: {}{}", cut.stderr, done.stdout, done.stderr);
    assert!(done.stdout.contains("HEALTHY"));
    let st = boot(&spec, &["status"]);
    assert_eq!(st.code, Some(0), "{}", st.stdout);
}

#[test]
fn a_foreign_data_dir_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let _down = Down(spec.clone());
    let junk = dir.join("members/etcd-2/data/member/wal/0.wal");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, "someone else's cluster").unwrap();
    let r = boot(&spec, &["up"]).assert_fails();
    assert!(r.stderr.contains("preflight failed; nothing was started"), "{}", r.stderr);
    assert!(r.stderr.contains("member etcd-2") && r.stderr.contains("never deletes data"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&junk).unwrap(), "someone else's cluster");
    assert!(pids(dir).iter().all(String::is_empty), "nothing may have been started");
}

#[test]
fn plan_touches_nothing_and_bad_specs_explain_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let plan = boot(&spec, &["plan"]).assert_ok();
    for want in ["1. Certificates", "--initial-cluster etcd-1=https://", "600  ", "5. Wait", "join-cp-2.yaml"] {
        assert!(plan.stdout.contains(want), "plan lacks {want:?}:\n{}", plan.stdout);
    }
    assert_eq!(tree(dir), ["cluster.yaml"], "plan must not write anything");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\nmembers:\n  - {name: a, address: 10.0.0.1, data_dir: rel/data}\n  - {name: a, address: 10.0.0.1}\nkubernetes: {version: '1.31', control_plane_endpoint: lb, control_plane_nodes: [{name: cp, address: 10.0.0.9}]}\n",
    )
    .unwrap();
    let r = boot(&bad, &["plan"]).assert_fails();
    for want in ["duplicate member name", "10.0.0.1:2379 is also", "rel/data is relative", "kubernetes.version", "must be HOST:PORT"] {
        assert!(r.stderr.contains(want), "lacks {want:?}:\n{}", r.stderr);
    }
    let r = boot(&dir.join("missing.yaml"), &["plan"]).assert_fails();
    assert!(r.stderr.contains("missing.yaml"), "{}", r.stderr);
}

#[test]
fn up_local_is_the_embedded_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etcd-cluster");
    let spec = dir.join("cluster.yaml");
    let _down = Down(spec.clone());
    let r = run_bounded(Command::new(bin("etcd-bootstrap")).current_dir(tmp.path()).args(["up", "--local", "3"]), Duration::from_secs(120)).assert_ok();
    assert!(r.stdout.contains("https://127.0.0.11:2379,https://127.0.0.12:2379,https://127.0.0.13:2379"), "{}", r.stdout);
    assert!(spec.exists() && dir.join("members/etcd-3/etcd-3.pid").exists() && dir.join("members/etcd-3/etcd-3.log").exists());
    // the members run in the background until down
    let st = run_bounded(Command::new(bin("etcd-bootstrap")).current_dir(tmp.path()).arg("status"), Duration::from_secs(30));
    assert_eq!(st.code, Some(0), "{}", st.stdout);
    boot(&spec, &["down", "--purge"]).assert_ok();
    // purged: no spec-owned member answers; status says so as a critical state
    let st = run_bounded(Command::new(bin("etcd-bootstrap")).current_dir(tmp.path()).arg("status"), Duration::from_secs(30));
    assert_eq!(st.code, Some(2), "{st:?}");
}

#[test]
fn the_kubeadm_version_matrix_is_enforced_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let strict = std::fs::read_to_string(&spec).unwrap().replace("  allow_old_etcd: true\n", "");
    std::fs::write(&spec, &strict).unwrap();
    let _down = Down(spec.clone());
    // 1. etcd below kubeadm's minimum: refused in preflight, naming kubeadm's check and the fix
    let r = boot(&spec, &["up"]).assert_fails();
    assert!(r.stderr.contains("ExternalEtcdVersion") && r.stderr.contains("3.5.24") && r.stderr.contains("allow_old_etcd"), "{}", r.stderr);
    assert!(!dir.join("members/etcd-1/data").exists() && pids(dir).iter().all(String::is_empty), "nothing started");
    // 2. a config API the spec's kubeadm cannot read: refused by plan and up
    let old = strict.replace(integration_tests::bootstrap::K8S_VERSION, "v1.29.0");
    std::fs::write(&spec, &old).unwrap();
    let r = boot(&spec, &["plan", "--kubeadm-api", "v1beta4"]).assert_fails();
    assert!(r.stderr.contains("cannot read kubeadm.k8s.io/v1beta4"), "{}", r.stderr);
    assert!(boot(&spec, &["plan"]).assert_ok().stdout.contains("kubeadm.k8s.io/v1beta3"));
    boot(&spec, &["up", "--kubeadm-api", "v1beta4"]).assert_fails();
    // 3. allowed: a warning, the configs skip kubeadm's check, the chosen API is remembered
    std::fs::write(&spec, strict.replace("kubernetes:\n", "kubernetes:\n  allow_old_etcd: true\n  cri_socket: unix:///var/run/crio/crio.sock\n")).unwrap();
    let up = boot(&spec, &["up", "--kubeadm-api", "v1beta3"]).assert_ok();
    assert!(up.stderr.contains("allowed by kubernetes.allow_old_etcd"), "{}", up.stderr);
    let init = dir.join("out/kubeadm/init.yaml");
    let text = std::fs::read_to_string(&init).unwrap();
    assert!(text.contains("kubeadm.k8s.io/v1beta3") && text.contains("- ExternalEtcdVersion") && text.contains("unix:///var/run/crio/crio.sock"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&init).unwrap().permissions().mode() & 0o777, 0o600, "init.yaml holds the join secrets");
    let before = snapshot(dir);
    boot(&spec, &["up"]).assert_ok();
    assert_eq!(before, snapshot(dir), "a plain re-run keeps v1beta3 and changes nothing");
}

/// The systemd supervisor end to end, without touching the machine's systemd: `up` runs in a
/// private mount namespace with a tmpfs over /etc/systemd/system and a recording `systemctl`.
/// The units arrive as files with exactly the lines they should have.
#[test]
fn systemd_units_are_delivered_as_files_with_exactly_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir);
    let text = std::fs::read_to_string(&spec).unwrap().replace("run_dir:", "supervisor: systemd, run_dir:");
    std::fs::write(&spec, text).unwrap();
    let _down = Down(spec.clone());
    let fake = dir.join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = dir.join("systemctl.log");
    std::fs::write(
        fake.join("systemctl"),
        format!("#!/bin/sh\necho \"$*\" >> {}\n[ \"$1\" = is-system-running ] && echo running\n[ \"$1\" = is-active ] && exit 3\nexit 0\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("systemctl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let inner = format!(
        "mount -t tmpfs tmpfs /etc/systemd/system && PATH={fake}:$PATH {bin} -f {spec} up --wait 1; cp /etc/systemd/system/etcd-*.service {units}/",
        fake = fake.display(),
        bin = bin("etcd-bootstrap").display(),
        spec = spec.display(),
        units = units.display()
    );
    // first without a usable systemd (this machine's PID 1 is not systemd): refused in
    // preflight for every member, before any file is delivered
    let host_state = Command::new("systemctl").arg("is-system-running").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    if !matches!(host_state.as_str(), "running" | "degraded" | "starting" | "initializing" | "maintenance") {
        let r = boot(&spec, &["up", "--wait", "1"]).assert_fails();
        for i in 1..=3 {
            assert!(r.stderr.contains(&format!("member etcd-{i} (local): supervisor systemd, but systemd does not run this host")), "{}", r.stderr);
        }
        assert!(!dir.join("members/etcd-1/pki").exists(), "nothing delivered");
    }
    let r = run_bounded(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &inner]), Duration::from_secs(120));
    assert!(r.stderr.contains("not HEALTHY"), "nothing really starts here: {}{}", r.stdout, r.stderr);
    let calls = std::fs::read_to_string(&log).unwrap();
    for i in 1..=3 {
        assert!(calls.contains(&format!("enable --now etcd-etcd-{i}.service")), "{calls}");
        let unit = std::fs::read_to_string(units.join(format!("etcd-etcd-{i}.service"))).unwrap();
        let keys: Vec<&str> = unit.lines().filter(|l| !l.is_empty()).map(|l| l.split('=').next().unwrap_or(l)).collect();
        assert_eq!(keys, ["[Unit]", "Description", "After", "Wants", "[Service]", "Type", "ExecStart", "Restart", "RestartSec", "LimitNOFILE", "[Install]", "WantedBy"], "{unit}");
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(exec.contains(&format!("--data-dir {}", dir.join(format!("members/etcd-{i}/data")).display())) && exec.contains("--pre-vote"), "{exec}");
        assert!(!Path::new(&format!("/etc/systemd/system/etcd-etcd-{i}.service")).exists() || !std::fs::read_to_string(format!("/etc/systemd/system/etcd-etcd-{i}.service")).unwrap_or_default().contains(&dir.display().to_string()), "the real unit directory was touched");
    }
}
