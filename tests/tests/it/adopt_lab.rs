//! The adoption lab: etcd clusters built the ways people build them by hand (cfssl's PKI, flags,
//! `ETCD_*` environment or a config file, plain processes, optionally in network-namespace hosts
//! with their own sshd), and the helpers the `adopt*` tests share: continuous writes with every
//! acknowledged one checked, the lab's etcdctl, the settings adopt reports, bounded waits.

use integration_tests::{Ran, bin, run_bounded, tool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// cfssl's usual lab PKI in `dir`: ca.pem/ca-key.pem, one `etcd.pem` for every member (SANs:
/// `addrs` and 127.0.0.1), and an `admin.pem` client.
pub(crate) fn cfssl_pki(dir: &Path, addrs: &[String]) {
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
    let names: Vec<(String, &str)> =
        [("etcd".to_string(), "etcd"), ("admin".to_string(), "client")].into_iter().chain((1..=addrs.len()).map(|i| (format!("node-{i}"), "etcd"))).collect();
    for (name, profile) in names {
        sh(format!(
            "{c} gencert -ca ca.pem -ca-key ca-key.pem -config ca-config.json -profile {profile} {name}-csr.json | {c}json -bare {name}",
            c = cfssl.display()
        ));
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
pub(crate) enum Given {
    Flags,
    Env,
    ConfigFile,
}

pub(crate) struct Lab {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) addrs: Vec<String>,
    pub(crate) children: Vec<Child>,
    /// Each member's network namespace (SSH hosts), or none (this machine).
    pub(crate) namespaces: Vec<String>,
    /// Each member with a certificate of its own, instead of the shared one.
    pub(crate) own_certs: bool,
    /// Each host runs its own copy of the etcd binaries from this folder (at
    /// `host-N/usr/local/bin/`), instead of the test's etcd.
    pub(crate) own_binaries: Option<PathBuf>,
    /// The systemd whose units run the members (then `children` is empty), or none.
    pub(crate) systemd: Option<integration_tests::systemd::SystemdHost>,
    /// Flags the flag-configured member (etcd-1) is given on top of the lab's own.
    pub(crate) extra_flags: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // its systemd (and every unit's process) before the folders it runs from go
        drop(self.systemd.take());
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // members etcd-bootstrap started again (restore, up) have pid files beside their data
        integration_tests::kill_etcds_from_pid_files(&self.dir);
    }
}

impl Lab {
    pub(crate) fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// `etcd-bootstrap`, on the members' host (inside the lab's systemd, when it has one).
    pub(crate) fn tool(&self) -> Command {
        match &self.systemd {
            Some(host) => host.command(bin("etcd-bootstrap")),
            None => Command::new(bin("etcd-bootstrap")),
        }
    }

    /// `etcd-bootstrap -f SPEC ARGS` on the members' host.
    pub(crate) fn boot(&self, spec: &Path, args: &[&str]) -> Ran {
        run_bounded(self.tool().arg("-f").arg(spec).args(args), Duration::from_secs(180))
    }

    /// `adopt -w json` through the client files and CA the spec names now (after `rotate ca`,
    /// the toolkit's own client from the new CA).
    pub(crate) fn inventory_through(&self, spec: &Path) -> serde_json::Value {
        let named: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
        let file = |f: &str| named["adopted"][f].as_str().unwrap().to_string();
        let eps = self.endpoints_of(0..3);
        let r = run_bounded(
            self.tool().args(["adopt", "--endpoints", &eps, "-w", "json", "--cacert", &file("cacert"), "--cert", &file("cert"), "--key", &file("key")]),
            Duration::from_secs(120),
        );
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr))
    }

    /// The tool's `adopt`, with the lab's admin client.
    pub(crate) fn adopt(&self, endpoints: &str, extra: &[&str]) -> Ran {
        let p = self.pki();
        run_bounded(
            self.tool()
                .args(["adopt", "--endpoints", endpoints])
                .arg("--cacert")
                .arg(p.join("ca.pem"))
                .arg("--cert")
                .arg(p.join("admin.pem"))
                .arg("--key")
                .arg(p.join("admin-key.pem"))
                .args(extra),
            Duration::from_secs(120),
        )
    }
}

/// Member `i`'s host folder (its PKI files written), settings, data dir and etcd binary.
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) settings: Vec<(&'static str, String)>,
    pub(crate) data_dir: String,
    pub(crate) etcd: PathBuf,
}

pub(crate) fn layout(lab: &Lab, i: usize, initial: &str) -> Layout {
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
    let etcd = match &lab.own_binaries {
        Some(from) => {
            let bin = root.join("usr/local/bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in ["etcd", "etcdctl", "etcdutl"] {
                std::fs::copy(from.join(tool), bin.join(tool)).unwrap();
            }
            bin.join("etcd")
        }
        None => tool("etcd", "ETCD_BIN").canonicalize().unwrap(),
    };
    Layout { root, settings, data_dir, etcd }
}

impl Layout {
    /// The `ETCD_*` variables of [`Given::Env`].
    pub(crate) fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.settings.iter().map(|(k, v)| (format!("ETCD_{}", k.to_uppercase().replace('-', "_")), v.clone())).collect();
        env.extend([
            ("ETCD_DATA_DIR".to_string(), self.data_dir.clone()),
            ("ETCD_CLIENT_CERT_AUTH".into(), "true".into()),
            ("ETCD_PEER_CLIENT_CERT_AUTH".into(), "true".into()),
        ]);
        // as kubespray's /etc/etcd.env and etcdadm's etcd.env do: a flag beside it is fatal
        env.push(("ETCD_INITIAL_CLUSTER_STATE".into(), "new".into()));
        env
    }

    /// The flags of [`Given::Flags`] ("Kubernetes The Hard Way" / JMOS: bare booleans, no --data-dir).
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut args: Vec<String> = self.settings.iter().flat_map(|(k, v)| [format!("--{k}"), v.clone()]).collect();
        args.extend(["--client-cert-auth".to_string(), "--peer-client-cert-auth".to_string()]);
        args
    }

    /// The config file of [`Given::ConfigFile`], written at `etc/etcd/etcd.conf.yml`.
    pub(crate) fn config_file(&self) -> PathBuf {
        let setting = |k: &str| self.settings.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
        let mut yaml = String::new();
        for (k, v) in self.settings.iter().filter(|(k, _)| !k.contains("file")) {
            yaml.push_str(&format!("{k}: {v}\n"));
        }
        yaml.push_str(&format!("data-dir: {}\n", self.data_dir));
        for section in ["client", "peer"] {
            let pre = if section == "peer" { "peer-" } else { "" };
            yaml.push_str(&format!(
                "{section}-transport-security:\n  cert-file: {}\n  key-file: {}\n  trusted-ca-file: {}\n  client-cert-auth: true\n",
                setting(&format!("{pre}cert-file")),
                setting(&format!("{pre}key-file")),
                setting(&format!("{pre}trusted-ca-file"))
            ));
        }
        let file = self.root.join("etc/etcd/etcd.conf.yml");
        std::fs::write(&file, yaml).unwrap();
        file
    }
}

/// Starts member `i` of `initial` configured as `given`, in its host folder.
pub(crate) fn start_member(lab: &Lab, i: usize, initial: &str, given: Given) -> Child {
    let l = layout(lab, i, initial);
    let mut cmd = match lab.namespaces.get(i) {
        // `ip netns exec` execs etcd in place: the pid stays the child's
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&l.etcd);
            c
        }
        None => Command::new(&l.etcd),
    };
    cmd.current_dir(&l.root).stdout(Stdio::null()).stderr(Stdio::null()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    match given {
        Given::Flags => cmd.args(l.flags()).args(&lab.extra_flags),
        // etcdadm / kubespray: ETCD_* variables only
        Given::Env => cmd.envs(l.environment()),
        Given::ConfigFile => cmd.arg("--config-file").arg(l.config_file()),
    };
    cmd.spawn().expect("start etcd")
}

/// A three-member lab (flags / environment / config file) on a free loopback /24.
pub(crate) fn lab() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    lab_on(tmp, addrs, vec![], false, None)
}

/// The lab on `addrs` (the first three are members; a fourth is kept for a second cluster).
pub(crate) fn lab_on(tmp: tempfile::TempDir, addrs: Vec<String>, namespaces: Vec<String>, own_certs: bool, own_binaries: Option<PathBuf>) -> Lab {
    lab_with(tmp, addrs, namespaces, own_certs, own_binaries, vec![])
}

pub(crate) fn lab_with(
    tmp: tempfile::TempDir,
    addrs: Vec<String>,
    namespaces: Vec<String>,
    own_certs: bool,
    own_binaries: Option<PathBuf>,
    extra_flags: Vec<String>,
) -> Lab {
    let dir = tmp.path().to_path_buf();
    cfssl_pki(&dir.join("pki"), &addrs);
    let mut lab = Lab { _tmp: tmp, dir, addrs: addrs[..3].to_vec(), children: vec![], namespaces, own_certs, own_binaries, systemd: None, extra_flags };
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
    pub(crate) fn endpoints_of(&self, r: std::ops::Range<usize>) -> String {
        self.addrs[r].iter().map(|a| format!("https://{a}:2379")).collect::<Vec<_>>().join(",")
    }
}

pub(crate) fn wait_healthy(lab: &Lab, eps: &str) {
    let p = lab.pki();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = run_bounded(
            Command::new(tool("etcdctl", "ETCDCTL_BIN"))
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", eps, "endpoint", "health"])
                .arg("--cacert")
                .arg(p.join("ca.pem"))
                .arg("--cert")
                .arg(p.join("admin.pem"))
                .arg("--key")
                .arg(p.join("admin-key.pem")),
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
pub(crate) fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        // (and a systemd host's /run: its own runtime state)
        if p.ends_with("var") || p.ends_with("etcd-1.etcd") || p.ends_with("systemd/run") {
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

/// Continuous writes with the lab's admin client, every acknowledged one recorded.
pub(crate) struct Writes {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<u32>, Vec<String>)>,
    ca: PathBuf,
    prefix: String,
}

impl Writes {
    pub(crate) fn start(lab: &Lab, eps: &str) -> Writes {
        Writes::trusting(lab, eps, &lab.pki().join("ca.pem"), "/adopted/")
    }

    /// Writes under `prefix`, verifying the members against `ca` (a CA rotation's bundle).
    pub(crate) fn trusting(lab: &Lab, eps: &str, ca: &Path, prefix: &str) -> Writes {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, p, eps, ca_file, key_prefix) = (stop.clone(), lab.pki(), eps.to_string(), ca.to_path_buf(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut n = 0u32;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && n < 5000 {
                n += 1;
                let r = etcdctl_ca(&p, &ca_file, &eps, &["put", &format!("{key_prefix}{n:05}"), "v"]);
                if r.ok() { acked.push(n) } else { failed.push(r.stderr) }
            }
            (acked, failed)
        });
        Writes { stop, thread, ca: ca.to_path_buf(), prefix: prefix.to_string() }
    }

    /// Stops; every acknowledged write must be readable, and at most `max_failed` failed.
    pub(crate) fn finish(self, lab: &Lab, eps: &str, max_failed: usize) -> usize {
        self.finish_failing_only(lab, eps, max_failed, |_| true)
    }

    /// [`Writes::finish`], and every failure's message must be one `expected` takes.
    pub(crate) fn finish_failing_only(self, lab: &Lab, eps: &str, max_failed: usize, expected: impl Fn(&str) -> bool) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (acked, failed) = self.thread.join().unwrap();
        assert!(acked.len() >= 5, "too few writes to mean anything: {}", acked.len());
        assert!(failed.len() <= max_failed, "{} failed writes: {:?}", failed.len(), failed.first());
        assert!(failed.iter().all(|f| expected(f)), "a write failed otherwise than expected: {failed:?}");
        let got = etcdctl_ca(&lab.pki(), &self.ca, eps, &["get", &self.prefix, "--prefix", "--keys-only"]).assert_ok();
        for n in &acked {
            assert!(got.stdout.contains(&format!("{}{n:05}", self.prefix)), "acknowledged write {n} is missing");
        }
        acked.len()
    }
}

pub(crate) fn etcdctl(p: &Path, eps: &str, args: &[&str]) -> Ran {
    etcdctl_ca(p, &p.join("ca.pem"), eps, args)
}

/// etcdctl with the lab's admin client, verifying the members against `ca`.
pub(crate) fn etcdctl_ca(p: &Path, ca: &Path, eps: &str, args: &[&str]) -> Ran {
    run_bounded(
        Command::new(tool("etcdctl", "ETCDCTL_BIN"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", eps, "--command-timeout=3s"])
            .arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(p.join("admin.pem"))
            .arg("--key")
            .arg(p.join("admin-key.pem"))
            .args(args),
        Duration::from_secs(20),
    )
}

/// Each member's command line and effective settings (with where each came from), by name.
pub(crate) fn settings(inv: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = inv["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].to_string(), m["process"]["argv"].to_string(), m["config"]["settings"].to_string()))
        .collect();
    v.sort();
    v
}

pub(crate) fn boot(spec: &Path, args: &[&str]) -> Ran {
    run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(spec).args(args), Duration::from_secs(180))
}

/// Waits (bounded) until `status` says DEGRADED after `name` died: when it led, the other two
/// elect a leader first, as an operator would wait for.
pub(crate) fn wait_degraded(lab: &Lab, spec: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.boot(spec, &["status"]).code != Some(1) {
        assert!(Instant::now() < deadline, "no new leader after {name} died");
        std::thread::sleep(Duration::from_millis(200));
    }
}
