//! `adopt` on clusters built the ways people build them, by the test itself: certificates from
//! real cfssl (`gencert` with a `ca-config.json` profile and CSR JSON), one certificate shared by
//! every member (as "Kubernetes The Hard Way" and most external-etcd guides do), the CA key left
//! next to the certificates on one member (as kubespray and etcdadm do), and members configured
//! (a) by flags with no `--data-dir` (etcd's relative default), (b) by `ETCD_*` environment,
//! (c) by `--config-file`. Adopt must find every member's process, settings, data dir and files,
//! name the risks, and change nothing: every file hashed before and after, every PID the same.

use integration_tests::{bin, run_bounded, tool, Ran};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// cfssl's usual lab PKI in `dir`: ca.pem/ca-key.pem, one `etcd.pem` for every member (SANs:
/// `addrs` and 127.0.0.1), and an `admin.pem` client.
fn cfssl_pki(dir: &Path, addrs: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, v: serde_json::Value| std::fs::write(dir.join(name), v.to_string()).unwrap();
    write(
        "ca-config.json",
        serde_json::json!({"signing": {"default": {"expiry": "8760h"}, "profiles": {
            "etcd": {"expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
            "client": {"expiry": "8760h", "usages": ["signing", "key encipherment", "client auth"]}}}}),
    );
    write("ca-csr.json", serde_json::json!({"CN": "etcd cluster", "key": {"algo": "ecdsa", "size": 256}, "names": [{"O": "Kubernetes", "OU": "ETCD-CA"}]}));
    let mut hosts: Vec<String> = addrs.to_vec();
    hosts.push("127.0.0.1".into());
    write("etcd-csr.json", serde_json::json!({"CN": "etcd", "hosts": hosts, "key": {"algo": "ecdsa", "size": 256}}));
    write("admin-csr.json", serde_json::json!({"CN": "admin", "hosts": [], "key": {"algo": "ecdsa", "size": 256}}));
    // per-member certificates too (node-N: that member's address only)
    for (i, a) in addrs.iter().enumerate() {
        write(&format!("node-{}-csr.json", i + 1), serde_json::json!({"CN": format!("etcd-{}", i + 1), "hosts": [a], "key": {"algo": "ecdsa", "size": 256}}));
    }
    let cfssl = tool("cfssl", "CFSSL_BIN");
    let sh = |script: String| run_bounded(Command::new("bash").arg("-c").arg(script).current_dir(dir), Duration::from_secs(60)).assert_ok();
    sh(format!("{c} gencert -initca ca-csr.json | {c}json -bare ca", c = cfssl.display()));
    let names: Vec<(String, &str)> = [("etcd".to_string(), "etcd"), ("admin".to_string(), "client")].into_iter().chain((1..=addrs.len()).map(|i| (format!("node-{i}"), "etcd"))).collect();
    for (name, profile) in names {
        sh(format!("{c} gencert -ca ca.pem -ca-key ca-key.pem -config ca-config.json -profile {profile} {name}-csr.json | {c}json -bare {name}", c = cfssl.display()));
    }
}

/// A member's "host": its own folder with /etc/etcd/pki/{ca.pem,etcd.pem,etcd-key.pem}, the
/// certificate being `cert` (the shared `etcd`, or the member's own `node-N`).
fn host_root(root: &Path, pki: &Path, cert: &str, with_ca_key: bool) -> PathBuf {
    let etc = root.join("etc/etcd/pki");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(pki.join("ca.pem"), etc.join("ca.pem")).unwrap();
    std::fs::copy(pki.join(format!("{cert}.pem")), etc.join("etcd.pem")).unwrap();
    std::fs::copy(pki.join(format!("{cert}-key.pem")), etc.join("etcd-key.pem")).unwrap();
    if with_ca_key {
        std::fs::copy(pki.join("ca-key.pem"), etc.join("ca-key.pem")).unwrap();
    }
    etc
}

/// How a member is configured.
#[derive(Clone, Copy)]
enum Given {
    Flags,
    Env,
    ConfigFile,
}

struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addrs: Vec<String>,
    children: Vec<Child>,
    /// Each member's network namespace (SSH hosts), or none (this machine).
    namespaces: Vec<String>,
    /// Each member with a certificate of its own, instead of the shared one.
    own_certs: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Lab {
    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The tool's `adopt`, with the lab's admin client.
    fn adopt(&self, endpoints: &str, extra: &[&str]) -> Ran {
        let p = self.pki();
        run_bounded(
            Command::new(bin("etcd-bootstrap")).args(["adopt", "--endpoints", endpoints]).arg("--cacert").arg(p.join("ca.pem")).arg("--cert").arg(p.join("admin.pem")).arg("--key").arg(p.join("admin-key.pem")).args(extra),
            Duration::from_secs(120),
        )
    }
}

/// Starts member `i` of `initial` configured as `given`, in its host folder.
fn start_member(lab: &Lab, i: usize, initial: &str, given: Given) -> Child {
    let (name, addr) = (format!("etcd-{}", i + 1), &lab.addrs[i]);
    let root = lab.dir.join(format!("host-{}", i + 1));
    let cert = if lab.own_certs { format!("node-{}", i + 1) } else { "etcd".to_string() };
    let pki = host_root(&root, &lab.pki(), &cert, i == 2);
    let p = |f: &str| pki.join(f).display().to_string();
    let settings: Vec<(&str, String)> = vec![
        ("name", name.clone()),
        ("listen-client-urls", format!("https://{addr}:2379")),
        ("advertise-client-urls", format!("https://{addr}:2379")),
        ("listen-peer-urls", format!("https://{addr}:2380")),
        ("initial-advertise-peer-urls", format!("https://{addr}:2380")),
        ("initial-cluster", initial.to_string()),
        ("initial-cluster-token", "lab-cluster".into()),
        ("cert-file", p("etcd.pem")),
        ("key-file", p("etcd-key.pem")),
        ("trusted-ca-file", p("ca.pem")),
        ("peer-cert-file", p("etcd.pem")),
        ("peer-key-file", p("etcd-key.pem")),
        ("peer-trusted-ca-file", p("ca.pem")),
    ];
    let data_dir = root.join("var/lib/etcd").display().to_string();
    let etcd = tool("etcd", "ETCD_BIN").canonicalize().unwrap();
    let mut cmd = match lab.namespaces.get(i) {
        // `ip netns exec` execs etcd in place: the pid stays the child's
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&etcd);
            c
        }
        None => Command::new(&etcd),
    };
    cmd.current_dir(&root).stdout(Stdio::null()).stderr(Stdio::null()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    match given {
        // "Kubernetes The Hard Way" / JMOS: flags, bare booleans, no --data-dir
        Given::Flags => {
            for (k, v) in &settings {
                cmd.arg(format!("--{k}")).arg(v);
            }
            cmd.args(["--client-cert-auth", "--peer-client-cert-auth"]);
        }
        // etcdadm / kubespray: ETCD_* variables only
        Given::Env => {
            for (k, v) in &settings {
                cmd.env(format!("ETCD_{}", k.to_uppercase().replace('-', "_")), v);
            }
            cmd.env("ETCD_DATA_DIR", &data_dir).env("ETCD_CLIENT_CERT_AUTH", "true").env("ETCD_PEER_CLIENT_CERT_AUTH", "true");
        }
        Given::ConfigFile => {
            let mut yaml = String::new();
            for (k, v) in settings.iter().filter(|(k, _)| !k.contains("file")) {
                yaml.push_str(&format!("{k}: {v}\n"));
            }
            yaml.push_str(&format!("data-dir: {data_dir}\n"));
            yaml.push_str(&format!("client-transport-security:\n  cert-file: {}\n  key-file: {}\n  trusted-ca-file: {}\n  client-cert-auth: true\n", p("etcd.pem"), p("etcd-key.pem"), p("ca.pem")));
            yaml.push_str(&format!("peer-transport-security:\n  cert-file: {}\n  key-file: {}\n  trusted-ca-file: {}\n  client-cert-auth: true\n", p("etcd.pem"), p("etcd-key.pem"), p("ca.pem")));
            let file = root.join("etc/etcd/etcd.conf.yml");
            std::fs::write(&file, yaml).unwrap();
            cmd.arg("--config-file").arg(&file);
        }
    }
    cmd.spawn().expect("start etcd")
}

/// A three-member lab (flags / environment / config file) on a free loopback /24.
fn lab() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    lab_on(tmp, addrs, vec![], false)
}

/// The lab on `addrs` (the first three are members; a fourth is kept for a second cluster).
fn lab_on(tmp: tempfile::TempDir, addrs: Vec<String>, namespaces: Vec<String>, own_certs: bool) -> Lab {
    let dir = tmp.path().to_path_buf();
    cfssl_pki(&dir.join("pki"), &addrs);
    let mut lab = Lab { _tmp: tmp, dir, addrs: addrs[..3].to_vec(), children: vec![], namespaces, own_certs };
    let initial = (0..3).map(|i| format!("etcd-{}=https://{}:2380", i + 1, lab.addrs[i])).collect::<Vec<_>>().join(",");
    for (i, given) in [Given::Flags, Given::Env, Given::ConfigFile].into_iter().enumerate() {
        let child = start_member(&lab, i, &initial, given);
        lab.children.push(child);
    }
    lab.addrs = addrs;
    wait_healthy(&lab, &lab.endpoints_of(0..3));
    lab
}

impl Lab {
    fn endpoints_of(&self, r: std::ops::Range<usize>) -> String {
        self.addrs[r].iter().map(|a| format!("https://{a}:2379")).collect::<Vec<_>>().join(",")
    }
}

fn wait_healthy(lab: &Lab, eps: &str) {
    let p = lab.pki();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = run_bounded(
            Command::new(tool("etcdctl", "ETCDCTL_BIN")).env("ETCDCTL_API", "3").args(["--endpoints", eps, "endpoint", "health"]).arg("--cacert").arg(p.join("ca.pem")).arg("--cert").arg(p.join("admin.pem")).arg("--key").arg(p.join("admin-key.pem")),
            Duration::from_secs(20),
        );
        if r.ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the lab cluster is not healthy: {}", r.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file under `dir` with its content's hash (data dirs excluded: etcd writes there).
fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.ends_with("var") || p.ends_with("etcd-1.etcd") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            out.extend(hashes(&p));
        } else {
            use sha2::Digest;
            let meta = std::fs::metadata(&p).unwrap();
            use std::os::unix::fs::MetadataExt;
            out.insert(p.clone(), format!("{} {:o}", hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())), meta.mode()));
        }
    }
    out
}

#[test]
fn adopt_reads_a_hand_made_cfssl_cluster_and_changes_nothing() {
    let mut lab = lab();
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = lab.children.iter().map(Child::id).collect();
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-w", "json"]);
    assert_eq!(r.code, Some(1), "risks found: exit 1\n{}{}", r.stdout, r.stderr);
    let inv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    let members = inv["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for (i, given) in ["flags", "environment", "config file"].iter().enumerate() {
        let m = members.iter().find(|m| m["name"] == format!("etcd-{}", i + 1)).unwrap();
        let root = lab.dir.join(format!("host-{}", i + 1));
        assert_eq!(m["host"], "local");
        assert_eq!(m["process"]["pid"], pids[i], "the process behind etcd-{}'s client URL", i + 1);
        assert_eq!(m["process"]["supervisor"]["kind"], "process");
        let settings = &m["config"]["settings"];
        assert_eq!(settings["name"]["value"], format!("etcd-{}", i + 1));
        let by = match i {
            0 => "flag",
            1 => "env",
            _ => "config-file",
        };
        assert_eq!(settings["cert-file"]["origin"], by, "etcd-{} is configured by {given}", i + 1);
        // (a) no --data-dir: etcd's default, relative to its working directory
        let data = if i == 0 { root.join("etcd-1.etcd") } else { root.join("var/lib/etcd") };
        assert_eq!(m["data_dir"], data.display().to_string());
        assert!(data.join("member").is_dir(), "{} is where the data is", data.display());
        // every TLS file, hashed as it is
        let cert = root.join("etc/etcd/pki/etcd.pem");
        let f = m["files"].as_array().unwrap().iter().find(|f| f["path"] == cert.display().to_string()).unwrap_or_else(|| panic!("{cert:?} in {}", m["files"]));
        use sha2::Digest;
        assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(std::fs::read(&cert).unwrap())));
        assert!(m["served"]["sans"].as_array().unwrap().iter().any(|s| s == &format!("IP:{}", lab.addrs[i])), "{}", m["served"]);
    }
    let findings: Vec<String> = inv["findings"].as_array().unwrap().iter().map(|f| format!("{}: {} / {}", f["member"].as_str().unwrap_or("cluster"), f["what"].as_str().unwrap(), f["fix"].as_str().unwrap())).collect();
    let has = |needle: &str| findings.iter().any(|f| f.contains(needle));
    assert!(has("cluster: every member serves the same certificate"), "{findings:#?}");
    assert!(has("etcd-1: no --data-dir"), "{findings:#?}");
    assert!(has("etcd-3: ") && has("ca-key.pem holds a private key etcd does not use"), "{findings:#?}");
    assert!(!has("etcd-2: no --data-dir") && !has("client-certificate auth"), "{findings:#?}");
    let v34 = members.iter().any(|m| m["version"].as_str().is_some_and(|v| v.starts_with("3.4.")));
    assert_eq!(has("pre-vote is off"), v34, "pre-vote is off by default on 3.4 only: {findings:#?}");
    // the report people read: members, files, risks with fixes
    let t = lab.adopt(&eps, &[]);
    assert_eq!(t.code, Some(1));
    let etcd_pem_rows = t.stdout.lines().filter(|l| l.starts_with("etcd-1 ") && l.contains("/etcd.pem ")).count();
    assert_eq!(etcd_pem_rows, 1, "a file used as server and peer certificate is listed once:\n{}", t.stdout);
    for needle in ["MEMBER  HOST", "etcd-1  local", "a plain process", "config file", "environment", "risks (", "fix: "] {
        assert!(t.stdout.contains(needle), "lacks {needle:?}:\n{}", t.stdout);
    }
    // nothing changed: every file as it was, every member the same process
    assert_eq!(hashes(&lab.dir), before, "adopt changed a file");
    for (i, c) in lab.children.iter_mut().enumerate() {
        assert!(c.try_wait().unwrap().is_none(), "etcd-{} still runs", i + 1);
    }
    // endpoints of two clusters are refused, naming both
    let other = {
        let lone = format!("etcd-4=https://{}:2380", lab.addrs[3]);
        start_member(&lab, 3, &lone, Given::Flags)
    };
    lab.children.push(other);
    wait_healthy(&lab, &lab.endpoints_of(3..4));
    let two = lab.adopt(&lab.endpoints_of(2..4), &[]);
    assert_eq!(two.code, Some(3), "could not adopt: exit 3\n{}", two.stderr);
    assert!(two.stderr.contains("belong to different clusters") && two.stderr.contains(&lab.addrs[3]), "{}", two.stderr);
}

/// Over SSH: members in three network-namespace hosts (each its own address and sshd), each with
/// a certificate of its own, read through `--host` with the real OpenSSH client.
#[test]
fn adopt_reads_members_on_other_hosts_over_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = integration_tests::netns::Hosts::create(3, tmp.path());
    let mut addrs: Vec<String> = hosts.hosts.iter().map(|h| h.address.clone()).collect();
    addrs.push("127.0.0.1".into());
    let namespaces = hosts.hosts.iter().map(|h| h.namespace.clone()).collect();
    let lab = lab_on(tempfile::tempdir().unwrap(), addrs, namespaces, true);
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = lab.children.iter().map(Child::id).collect();
    let eps = lab.endpoints_of(0..3);
    // a member that is not on this machine needs --host, and adopt says which
    let nohost = lab.adopt(&eps, &[]);
    assert_eq!(nohost.code, Some(3), "{}", nohost.stderr);
    let want: Vec<String> = hosts.hosts.iter().enumerate().map(|(i, h)| format!("etcd-{} ({})", i + 1, h.address)).collect();
    assert!(nohost.stderr.contains(&format!("not on this machine: {}; give --host NAME=DEST", want.join(", "))), "every member named, once: {}", nohost.stderr);
    let mut args: Vec<String> = vec!["-w".into(), "json".into()];
    for (i, h) in hosts.hosts.iter().enumerate() {
        args.push("--host".into());
        args.push(format!("etcd-{}=root@{}", i + 1, h.address));
    }
    for o in hosts.ssh_options() {
        args.push(format!("--ssh-option={o}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.adopt(&eps, &args);
    assert!(r.code == Some(0) || r.code == Some(1), "{}{}", r.stdout, r.stderr);
    let inv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    for (i, h) in hosts.hosts.iter().enumerate() {
        let m = inv["members"].as_array().unwrap().iter().find(|m| m["name"] == format!("etcd-{}", i + 1)).unwrap();
        assert_eq!(m["host"], format!("root@{}", h.address));
        assert_eq!(m["process"]["pid"], pids[i], "the process behind etcd-{}'s client URL, found over SSH", i + 1);
        assert!(m["served"]["sans"].as_array().unwrap().iter().any(|s| s == &format!("IP:{}", h.address)));
        assert!(m["files"].as_array().unwrap().len() >= 3, "{}", m["files"]);
    }
    let findings = inv["findings"].to_string();
    assert!(!findings.contains("every member serves the same certificate"), "each member has its own: {findings}");
    assert_eq!(hashes(&lab.dir), before, "adopt changed a file");
    drop(lab);
}
