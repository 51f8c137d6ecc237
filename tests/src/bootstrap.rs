//! Helpers for tests that drive `etcd-bootstrap`: a 3-member spec on a loopback /24 no other
//! test uses, running the binary with a bound, and a guard that stops the cluster afterwards.

use crate::{Ran, bin, kill_etcds_from_pid_files, run_bounded};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A written spec and the client URLs of its members.
pub struct SpecFile {
    pub path: PathBuf,
    pub endpoints: String,
}

/// Writes `dir/cluster.yaml`: members etcd-1..3 on a free 127.X.Y.0/24 (homes under
/// `dir/members/etcd-N`), `nodes` control-plane nodes, the load balancer on .100.
pub fn local_spec(dir: &Path, nodes: usize) -> SpecFile {
    local_spec_of(dir, 3, nodes)
}

/// `local_spec` with `count` members (etcd-1..N on .1..N of a free subnet).
pub fn local_spec_of(dir: &Path, count: usize, nodes: usize) -> SpecFile {
    let [a, b, c] = crate::cluster::free_subnet(4);
    let mut members = String::new();
    for i in 1..=count {
        let home = dir.join(format!("members/etcd-{i}"));
        members.push_str(&format!(
            "  - {{name: etcd-{i}, address: {a}.{b}.{c}.{i}, data_dir: {}, pki_dir: {}, run_dir: {}}}\n",
            home.join("data").display(),
            home.join("pki").display(),
            home.display()
        ));
    }
    let nodes: String = (1..=nodes).map(|i| format!("    - {{name: cp-{i}, address: {a}.{b}.{c}.{}}}\n", 100 + i)).collect();
    let text = format!(
        "name: it-{b}-{c}\netcd_binary: {etcd}\nmembers:\n{members}kubernetes:\n  version: {K8S_VERSION}\n  allow_old_etcd: true\n  control_plane_endpoint: {a}.{b}.{c}.100:6443\n  pod_subnet: 10.244.0.0/16\n  load_balancer_ca_file: {lb}\n  control_plane_nodes:\n{nodes}",
        lb = dir.join("out/haproxy/kubernetes-ca.crt").display(),
        etcd = etcd_binary().display(),
    );
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, text).expect("write the spec");
    SpecFile { path, endpoints: (1..=count).map(|i| format!("https://{a}.{b}.{c}.{i}:2379")).collect::<Vec<_>>().join(",") }
}

/// The Kubernetes version test specs name (kubeadm reads v1beta4; its minimum etcd is 3.5.24,
/// above both versions the suite runs, hence `allow_old_etcd` in test specs).
pub const K8S_VERSION: &str = "v1.34.2";

/// The etcd the suite runs this time (PATH or ETCD_BIN), as an absolute path: members reached
/// over SSH get a login PATH of their own, which must not pick another etcd.
pub fn etcd_binary() -> PathBuf {
    crate::tool("etcd", "ETCD_BIN").canonicalize().expect("etcd path")
}

/// An official-looking release archive `etcd-vX.Y.Z-linux-amd64.tar.gz` in `dir`, made from the
/// etcd this run uses (etcdctl and, from 3.5, etcdutl beside it); returns its path, sha256 and
/// the number of binaries in it.
pub fn etcd_archive(dir: &Path) -> (PathBuf, String, usize) {
    etcd_archive_of(dir, &etcd_binary())
}

/// [`etcd_archive`] of the given etcd (and the tools beside it).
pub fn etcd_archive_of(dir: &Path, etcd: &Path) -> (PathBuf, String, usize) {
    let etcd = etcd.to_path_buf();
    let bin = etcd.parent().expect("etcd's folder");
    let out = run_bounded(Command::new(&etcd).arg("--version"), Duration::from_secs(10)).assert_ok();
    let version = out.stdout.lines().find_map(|l| l.strip_prefix("etcd Version: ")).expect("etcd --version").trim().to_string();
    let top = format!("etcd-v{version}-linux-amd64");
    let stage = dir.join("archive-stage").join(&top);
    std::fs::create_dir_all(&stage).unwrap();
    let mut n = 0;
    for name in ["etcd", "etcdctl", "etcdutl"] {
        let from = bin.join(name);
        if from.exists() {
            std::fs::copy(&from, stage.join(name)).unwrap();
            n += 1;
        }
    }
    let archive = dir.join(format!("{top}.tar.gz"));
    run_bounded(Command::new("tar").arg("-C").arg(dir.join("archive-stage")).arg("-czf").arg(&archive).arg(&top), Duration::from_secs(60)).assert_ok();
    let sha = run_bounded(Command::new("sha256sum").arg(&archive), Duration::from_secs(30)).assert_ok().stdout.split_whitespace().next().unwrap().to_string();
    (archive, sha, n)
}

/// `etcd-bootstrap -f SPEC ARGS`, bounded.
pub fn boot(spec: &Path, args: &[&str]) -> Ran {
    run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(spec).args(args), Duration::from_secs(120))
}

/// Stops the spec's cluster when dropped (pass or fail): `down`, then SIGKILL for any etcd whose
/// pid file lies beside the spec (a member `down` could not reach).
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(&self.0).arg("down"), Duration::from_secs(90));
        if let Some(dir) = self.0.parent() {
            kill_etcds_from_pid_files(dir);
        }
    }
}

/// Where the first control-plane node's files are in a test's output folder: what kube-apiserver
/// on cp-1 holds (its /etc/kubernetes/pki).
pub fn node_pki(dir: &Path) -> PathBuf {
    dir.join("out/control-plane/cp-1/etc/kubernetes/pki")
}

/// etcdctl (the run's) with the etcd CA and kube-apiserver's client pair from `node_pki`.
pub fn node_etcdctl_cmd(node_pki: &Path, eps: &str) -> Command {
    let mut cmd = Command::new(crate::tool("etcdctl", "ETCDCTL_BIN"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={eps}"))
        .arg("--cacert")
        .arg(node_pki.join("etcd/ca.crt"))
        .arg("--cert")
        .arg(node_pki.join("apiserver-etcd-client.crt"))
        .arg("--key")
        .arg(node_pki.join("apiserver-etcd-client.key"))
        .args(["--dial-timeout=2s", "--command-timeout=5s"]);
    cmd
}

/// `node_etcdctl_cmd` run with `args`, bounded.
pub fn node_etcdctl(node_pki: &Path, eps: &str, args: &[&str]) -> Ran {
    run_bounded(node_etcdctl_cmd(node_pki, eps).args(args), Duration::from_secs(60))
}

/// Puts `keys` (key, value) through `base` (an etcdctl command with its flags), 100 per `txn`,
/// fed on stdin from a file in `scratch`.
pub fn put_in_txns(base: &Command, scratch: &Path, keys: &[(String, String)]) {
    for batch in keys.chunks(100) {
        let mut txn = String::from("\n");
        for (k, v) in batch {
            txn.push_str(&format!("put {k} {v}\n"));
        }
        txn.push_str("\n\n");
        let file = scratch.join("txn.txt");
        std::fs::write(&file, txn).expect("write the txn");
        let mut cmd = Command::new(base.get_program());
        cmd.args(base.get_args()).args(["txn", "--interactive=false"]);
        for (k, v) in base.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        crate::run_bounded_with_stdin(&cmd, &file, Duration::from_secs(60)).assert_ok();
    }
}

/// The operations the spec's journal holds (`SPEC.journal/journal.json`), by kind
/// (`rotate-ca`), each with whether it is paused for the operator.
pub fn journal(spec: &Path) -> Vec<(String, bool)> {
    let name = spec.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = std::fs::read_to_string(spec.with_file_name(format!("{name}.journal/journal.json"))).unwrap_or_else(|_| "{\"operations\":[]}".into());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("journal: {e}: {text}"));
    let ops = v["operations"].as_array().cloned().unwrap_or_default();
    ops.iter().filter_map(|o| Some((o["kind"].as_str()?.to_string(), !o["paused"].is_null()))).collect()
}

/// The kinds of the operations under way.
pub fn under_way(spec: &Path) -> Vec<String> {
    journal(spec).into_iter().map(|(k, _)| k).collect()
}

/// A change that every unfinished operation refuses (exit 4), and that is harmless when it is
/// admitted: a restore of a snapshot that does not exist fails its first check.
pub fn probe_refusal(spec: &Path) -> Ran {
    boot(spec, &["restore", "/nonexistent/etcd-bootstrap-probe.db", "--force"])
}

/// A 3-member cluster brought up by `etcd-bootstrap up` in a temporary directory: the directory,
/// its spec, and the guard that stops it.
pub fn up_cluster() -> (tempfile::TempDir, PathBuf, Down) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = local_spec(tmp.path(), 1).path;
    let down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    (tmp, spec, down)
}

/// A 3-member cluster on the etcd at `etcd` with `nodes` control-plane nodes, each member with a
/// `bin_dir` of its own (where an upgrade delivers the new binaries): the directory, its spec, and
/// the guard that stops it.
pub fn up_cluster_on(etcd: &str, nodes: usize) -> (tempfile::TempDir, PathBuf, Down) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = local_spec(tmp.path(), nodes).path;
    on_etcd_with_bin_dirs(&spec, etcd);
    let down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    (tmp, spec, down)
}

/// Rewrites a spec `local_spec_of` wrote: the members run the etcd at `etcd`, each with a
/// `bin_dir` of its own (where an upgrade delivers the new binaries).
pub fn on_etcd_with_bin_dirs(spec: &Path, etcd: &str) {
    let text = std::fs::read_to_string(spec).expect("read the spec");
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("etcd_binary: ") {
            out.push_str(&format!("etcd_binary: {etcd}\n"));
        } else if let Some(rest) = line.strip_suffix('}').filter(|l| l.contains("run_dir: ")) {
            let run_dir = rest.rsplit("run_dir: ").next().unwrap_or_default();
            out.push_str(&format!("{rest}, bin_dir: {run_dir}/bin}}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(spec, out).expect("write the spec");
}

/// The members' client URLs, from a spec `local_spec` wrote (its members come first).
pub fn spec_endpoints(spec: &Path) -> String {
    let text = std::fs::read_to_string(spec).expect("read the spec");
    text.lines()
        .filter_map(|l| l.split("address: ").nth(1))
        .filter_map(|rest| rest.split([',', '}']).next())
        .take(3)
        .map(|a| format!("https://{a}:2379"))
        .collect::<Vec<_>>()
        .join(",")
}
