//! A real Kubernetes API server for the tests, configured only from what `etcd-bootstrap` emits
//! for a control-plane node, and the two clients Kubernetes depends on: a writer, and a watcher
//! that behaves like client-go's reflector (list, watch from the list's resourceVersion, re-watch
//! from the last one seen, re-list on "410 Gone").
//!
//! The server is k8s.io/apiextensions-apiserver, built by scripts/fetch-k8s-apiserver.sh from
//! Debian's Go sources: the same k8s.io/apiserver etcd3 storage, watch cache and `--etcd-*` flags
//! as kube-apiserver of its version, serving CustomResourceDefinitions and custom objects
//! (`../shared/notes/k8s-apiserver.md`). The tests' objects are cluster-scoped `widgets`.

use crate::{Ran, run_bounded, workspace_root};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const GROUP_VERSION: &str = "/apis/test.example.com/v1";
pub const WIDGETS: &str = "/apis/test.example.com/v1/widgets";

/// Where install-deps put the API server and kubectl; fails with what to run when they are not
/// there (the tests that need them never skip).
pub fn k8s_bin(name: &str) -> PathBuf {
    let path = workspace_root().join(".k8s/current").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the Kubernetes API server tests need it; `bash scripts/fetch-k8s-apiserver.sh` builds it from Debian's Go sources (install-deps runs it)",
        path.display()
    );
    path
}

/// What kube-apiserver's `--etcd-*` flags are on a node: from `init.yaml`'s ClusterConfiguration
/// (`etcd.external`), each file at its path under `node_root` (a copy of the node's filesystem).
#[derive(Debug, Clone)]
pub struct EtcdFlags {
    pub servers: Vec<String>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl EtcdFlags {
    pub fn from_kubeadm(init_yaml: &Path, node_root: &Path) -> EtcdFlags {
        use serde::Deserialize;
        let text = std::fs::read_to_string(init_yaml).unwrap_or_else(|e| panic!("{}: {e}", init_yaml.display()));
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", init_yaml.display()));
            if v["kind"].as_str() != Some("ClusterConfiguration") {
                continue;
            }
            let ext = &v["etcd"]["external"];
            let file = |field: &str| {
                let on_node = ext[field].as_str().unwrap_or_else(|| panic!("{}: etcd.external.{field} missing", init_yaml.display()));
                node_root.join(on_node.trim_start_matches('/'))
            };
            let servers: Vec<String> =
                ext["endpoints"].as_sequence().map(|s| s.iter().filter_map(|e| e.as_str().map(String::from)).collect()).unwrap_or_default();
            assert!(!servers.is_empty(), "{}: etcd.external.endpoints is empty", init_yaml.display());
            return EtcdFlags { servers, ca_file: file("caFile"), cert_file: file("certFile"), key_file: file("keyFile") };
        }
        panic!("{}: no ClusterConfiguration", init_yaml.display())
    }
}

/// The Kubernetes side the API servers share: their CA, a serving certificate for `addresses`,
/// and an admin client (O=system:masters) with its kubeconfig.
pub struct Identity {
    pub dir: PathBuf,
}

impl Identity {
    pub fn new(dir: &Path, addresses: &[&str]) -> Identity {
        std::fs::create_dir_all(dir).unwrap();
        let ossl = |args: &[&str]| run_bounded(Command::new("openssl").current_dir(dir).args(args), Duration::from_secs(30)).assert_ok();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
        ossl(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=kubernetes"]].concat());
        let sans: Vec<String> = addresses.iter().map(|a| format!("IP:{a}")).collect();
        let san = format!("subjectAltName={}", sans.join(","));
        let leaf = |name: &str, subj: &str, extra: &[&str]| {
            ossl(
                &[
                    &["req", "-x509", "-CA", "ca.crt", "-CAkey", "ca.key"][..],
                    &ec,
                    &["-keyout", &format!("{name}.key"), "-out", &format!("{name}.crt"), "-subj", subj],
                    extra,
                ]
                .concat(),
            );
        };
        leaf("serving", "/CN=kube-apiserver", &["-addext", &san, "-addext", "extendedKeyUsage=serverAuth"]);
        leaf("admin", "/O=system:masters/CN=kubernetes-admin", &["-addext", "extendedKeyUsage=clientAuth"]);
        Identity { dir: dir.to_path_buf() }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A kubeconfig for the admin client against `https://addr:6443`.
    pub fn kubeconfig(&self, addr: &str) -> PathBuf {
        let path = self.dir.join(format!("admin-{addr}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{addr}:6443\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: c\n  context: {{cluster: c, user: admin}}\ncurrent-context: c\n",
            ca = self.file("ca.crt"),
            crt = self.file("admin.crt"),
            key = self.file("admin.key")
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// curl with the admin client's files, as client-go would connect.
    fn curl(&self) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", &self.file("ca.crt"), "--cert", &self.file("admin.crt"), "--key", &self.file("admin.key")]);
        cmd
    }
}

/// One API server process on a node's address (port 6443).
pub struct ApiServer {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
    kubeconfig: PathBuf,
    identity_dir: PathBuf,
}

impl ApiServer {
    /// Starts it with `etcd`'s flags and waits (bounded) until it is ready.
    pub fn start(id: &Identity, addr: &str, etcd: &EtcdFlags) -> ApiServer {
        let kubeconfig = id.kubeconfig(addr);
        let log = id.dir.join(format!("apiserver-{addr}.log"));
        let mut s = ApiServer { child: None, addr: addr.to_string(), log, kubeconfig, identity_dir: id.dir.clone() };
        s.launch(id, etcd);
        s
    }

    fn launch(&mut self, id: &Identity, etcd: &EtcdFlags) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let kc = self.kubeconfig.display().to_string();
        let child = Command::new(k8s_bin("apiextensions-apiserver"))
            .args(["--etcd-servers", &etcd.servers.join(",")])
            .arg("--etcd-cafile")
            .arg(&etcd.ca_file)
            .arg("--etcd-certfile")
            .arg(&etcd.cert_file)
            .arg("--etcd-keyfile")
            .arg(&etcd.key_file)
            .args(["--etcd-prefix", "/registry", "--bind-address", &self.addr, "--secure-port", "6443"])
            .args(["--tls-cert-file", &id.file("serving.crt"), "--tls-private-key-file", &id.file("serving.key"), "--client-ca-file", &id.file("ca.crt")])
            .args(["--authentication-skip-lookup", "--kubeconfig", &kc, "--authentication-kubeconfig", &kc, "--authorization-kubeconfig", &kc])
            .args([
                "--disable-admission-plugins",
                "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook",
                "--enable-priority-and-fairness=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start apiextensions-apiserver");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(90));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the API server on {} exited ({status}):\n{}", self.addr, self.log_tail(30));
            }
            // Ready as an operator waits for it (kube-apiserver's /readyz; this server has no core
            // informers to sync, the one check that never passes here)
            if self.get("/readyz?exclude=informer-sync").is_ok_and(|(code, _)| code == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "the API server on {} is not ready within {limit:?}:\n{}", self.addr, self.log_tail(30));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops it by its PID: SIGTERM, then SIGKILL after 5 s, as `crictl rm -f` or a kubelet
    /// would (with open watches it does not exit on SIGTERM within 20 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::signal(c.id(), crate::Signal::Term);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A restart as an operator does it: stop, then start with the node's (updated) files.
    pub fn restart(&mut self, id: &Identity, etcd: &EtcdFlags) {
        self.stop();
        self.launch(id, etcd);
    }

    /// A handle for a client thread: the same address and credentials, no process of its own.
    fn client(&self) -> ApiServer {
        ApiServer { child: None, addr: self.addr.clone(), log: self.log.clone(), kubeconfig: self.kubeconfig.clone(), identity_dir: self.identity_dir.clone() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}:6443{path}", self.addr)
    }

    /// GET `path` (bounded): status code and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.request("GET", path, None)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let id = Identity { dir: self.identity_dir.clone() };
        let mut cmd = id.curl();
        cmd.args(["--max-time", "10", "-X", method, "-w", "\n%{http_code}", "-H", "Content-Type: application/json"]);
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        cmd.arg(self.url(path));
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        if !out.ok() {
            return Err(format!("curl {method} {path}: {}", out.stderr.trim()));
        }
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
        code.trim().parse::<u16>().map(|c| (c, body.to_string())).map_err(|_| format!("curl {method} {path}: no status: {}", out.stdout))
    }

    /// kubectl (Debian's, the API server's version) against this server.
    pub fn kubectl(&self, args: &[&str]) -> Ran {
        run_bounded(Command::new(k8s_bin("kubectl")).arg("--kubeconfig").arg(&self.kubeconfig).args(args), Duration::from_secs(30))
    }

    /// The names of the widgets a list returns now, through kubectl.
    pub fn widgets(&self) -> Result<BTreeSet<String>, String> {
        let out = self.kubectl(&["get", "--raw", WIDGETS]);
        if !out.ok() {
            return Err(out.stderr);
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
        Ok(names(&v["items"]))
    }

    /// Creates the `widgets.test.example.com` CustomResourceDefinition and waits until it is served.
    pub fn create_widget_crd(&self, scratch: &Path) {
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.test.example.com"},
            "spec": {"group": "test.example.com", "scope": "Cluster",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        let file = scratch.join("crd.json");
        std::fs::write(&file, crd.to_string()).unwrap();
        self.kubectl(&["create", "--raw", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "-f", &file.display().to_string()]).assert_ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.get(WIDGETS).is_ok_and(|(c, _)| c == 200) {
            assert!(Instant::now() < deadline, "widgets are not served 30 s after the CRD was created:\n{}", self.log_tail(20));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn names(items: &serde_json::Value) -> BTreeSet<String> {
    items.as_array().map(|a| a.iter().filter_map(|o| o["metadata"]["name"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// A `Status` answer's message in full, else the answer's first 200 characters.
fn status_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// A request that failed: when it was sent and answered, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub sent: Instant,
    pub done: Instant,
    pub what: String,
}

impl Failure {
    /// Whether it overlaps `[from, to]`.
    pub fn within(&self, from: Instant, to: Instant) -> bool {
        self.done >= from && self.sent <= to
    }
}

/// What the writer knows: objects whose creation was acknowledged and not deleted since, and
/// objects a failed request may or may not have changed.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub present: BTreeSet<String>,
    pub uncertain: BTreeSet<String>,
    pub failures: Vec<Failure>,
    pub requests: usize,
}

/// Creates a widget every 200 ms and deletes an acknowledged one every fifth turn.
pub struct Writer {
    state: Arc<Mutex<Written>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(server: &ApiServer, prefix: &str) -> Writer {
        let (state, stop, paused) = (Arc::new(Mutex::new(Written::default())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let client = server.client();
        let (st, sp, pa, prefix) = (state.clone(), stop.clone(), paused.clone(), prefix.to_string());
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut next = Instant::now();
            while !sp.load(Ordering::SeqCst) {
                next += Duration::from_millis(200);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut w = st.lock().unwrap();
                if pa.load(Ordering::SeqCst) {
                    continue;
                }
                n += 1;
                write_once(&client, &mut w, &prefix, n);
            }
        });
        Writer { state, stop, paused, handle: Some(handle) }
    }

    /// Pauses it (waiting for a request in flight) and returns what it knows.
    pub fn pause(&self) -> Written {
        self.paused.store(true, Ordering::SeqCst);
        self.state.lock().unwrap().clone()
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn now(&self) -> Written {
        self.state.lock().unwrap().clone()
    }

    pub fn stop(mut self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("the writer thread");
        }
        self.state.lock().unwrap().clone()
    }
}

fn write_once(client: &ApiServer, w: &mut Written, prefix: &str, n: u64) {
    let sent = Instant::now();
    w.requests += 1;
    let victim = if n.is_multiple_of(5) { w.present.iter().next().cloned() } else { None };
    let (name, outcome) = match victim {
        Some(name) => {
            let r = client.request("DELETE", &format!("{WIDGETS}/{name}"), None);
            (name, r.map(|(c, b)| (c == 200 || c == 202, c, b)))
        }
        None => {
            let name = format!("{prefix}-{n}");
            let body = serde_json::json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"n": n}});
            let r = client.request("POST", WIDGETS, Some(&body.to_string()));
            (name, r.map(|(c, b)| (c == 201, c, b)))
        }
    };
    match outcome {
        Ok((true, _, _)) => {
            if victim_was_deleted(&name, prefix, n) {
                w.present.remove(&name);
            } else {
                w.present.insert(name.clone());
            }
            w.uncertain.remove(&name);
        }
        other => {
            let what = match other {
                Ok((_, code, body)) => format!("{name}: HTTP {code}: {}", status_message(&body)),
                Err(e) => format!("{name}: {e}"),
            };
            w.uncertain.insert(name);
            w.failures.push(Failure { sent, done: Instant::now(), what });
        }
    }
}

/// The name a turn writes is `prefix-n`; any other name was a deletion.
fn victim_was_deleted(name: &str, prefix: &str, n: u64) -> bool {
    name != format!("{prefix}-{n}")
}

/// What the watcher believes, as a controller's informer cache would.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub objects: BTreeSet<String>,
    pub resource_version: String,
    pub lists: usize,
    /// "410 Gone" answers (an expired resourceVersion): each is followed by a re-list.
    pub gone: usize,
}

/// A client-go reflector, reduced: list, watch from the list's resourceVersion, re-watch from the
/// last resourceVersion seen when a watch ends, re-list only on "410 Gone".
pub struct Watcher {
    state: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    curl_pid: Arc<AtomicU32>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(server: &ApiServer) -> Watcher {
        let (state, stop, curl_pid) = (Arc::new(Mutex::new(Seen::default())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let client = server.client();
        let (st, sp, pid) = (state.clone(), stop.clone(), curl_pid.clone());
        let handle = std::thread::spawn(move || reflect(&client, &st, &sp, &pid));
        let w = Watcher { state, stop, curl_pid, handle: Some(handle) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.seen().lists == 0 {
            assert!(Instant::now() < deadline, "the watcher's first list did not succeed in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().clone()
    }

    /// Waits (bounded) until the watcher's view equals `want`; the view it had otherwise.
    pub fn converges_to(&self, want: &BTreeSet<String>, limit: Duration) -> Result<Duration, Seen> {
        let t = Instant::now();
        loop {
            let seen = self.seen();
            if &seen.objects == want {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                return Err(seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.curl_pid.load(Ordering::SeqCst);
        if pid != 0 {
            crate::signal(pid, crate::Signal::Kill);
        }
        if let Some(h) = self.handle.take() {
            h.join().expect("the watcher thread");
        }
        self.seen()
    }
}

fn reflect(client: &ApiServer, state: &Mutex<Seen>, stop: &AtomicBool, curl_pid: &AtomicU32) {
    let mut need_list = true;
    while !stop.load(Ordering::SeqCst) {
        if need_list {
            match client.get(WIDGETS) {
                Ok((200, body)) => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let mut s = state.lock().unwrap();
                    s.objects = names(&v["items"]);
                    s.resource_version = v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
                    s.lists += 1;
                }
                _ => {
                    // a client's back-off while the server is away
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let rv = state.lock().unwrap().resource_version.clone();
        let started = Instant::now();
        need_list = watch_once(client, &rv, state, curl_pid);
        if !need_list && started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One watch request from `rv`, applied to `state` event by event; whether a re-list is needed.
fn watch_once(client: &ApiServer, rv: &str, state: &Mutex<Seen>, curl_pid: &AtomicU32) -> bool {
    let id = Identity { dir: client.identity_dir.clone() };
    let mut cmd = id.curl();
    cmd.args(["-N", "--max-time", "120"]).arg(client.url(&format!("{WIDGETS}?watch=1&allowWatchBookmarks=true&timeoutSeconds=60&resourceVersion={rv}")));
    let Ok(mut child) = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    curl_pid.store(child.id(), Ordering::SeqCst);
    let mut relist = false;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            // a watch refused outright answers with a Status, not an event
            let (kind, obj) = if ev["kind"] == "Status" { ("ERROR", &ev) } else { (ev["type"].as_str().unwrap_or(""), &ev["object"]) };
            let mut s = state.lock().unwrap();
            match kind {
                "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" => {
                    if let Some(name) = obj["metadata"]["name"].as_str().filter(|_| kind != "BOOKMARK") {
                        if kind == "DELETED" {
                            s.objects.remove(name);
                        } else {
                            s.objects.insert(name.to_string());
                        }
                    }
                    if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                        s.resource_version = v.to_string();
                    }
                }
                "ERROR" => {
                    if obj["code"] == 410 {
                        s.gone += 1;
                        relist = true;
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    curl_pid.store(0, Ordering::SeqCst);
    relist
}
