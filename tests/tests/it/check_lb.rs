//! `etcd-bootstrap check lb` against a real HAProxy started from the generated haproxy.cfg, a
//! small HTTPS stand-in for kube-apiserver (a threaded Python HTTPS server answering /readyz with
//! a certificate from the spec's Kubernetes CA), a closed port, and an address routed nowhere
//! inside a network namespace the test creates; then from control-plane nodes over SSH.

use integration_tests::bootstrap::{Down, boot, local_spec};
use integration_tests::{bin, openssl, run_bounded, tool};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process the test started, stopped by its PID when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace the test created, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    run_bounded(Command::new("ip").args(args), Duration::from_secs(10)).assert_ok();
}

/// Polls `check lb` until it prints `want` (bounded); returns the last run.
fn check_until(spec: &Path, want: &str) -> integration_tests::Ran {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = boot(spec, &["check", "lb"]);
        if r.stdout.starts_with(want) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn check_lb_tells_refused_no_backend_ready_and_timeout_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = local_spec(dir, 1).path;
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();
    let text = std::fs::read_to_string(&spec).unwrap();
    let lb = text.lines().find_map(|l| l.trim().strip_prefix("control_plane_endpoint: ")).unwrap().to_string();
    let (lb_ip, _) = lb.rsplit_once(':').unwrap();
    let node_ip = format!("{}.101", lb_ip.rsplit_once('.').unwrap().0);

    // nothing listens yet
    let r = boot(&spec, &["check", "lb"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("REFUSED:"), "{}", r.stdout);

    // HAProxy from the generated cfg (its health checks made fast for the test), no apiserver
    let cfg = std::fs::read_to_string(dir.join("out/haproxy/haproxy.cfg")).unwrap();
    assert!(cfg.contains("# Copy haproxy/kubernetes-ca.crt to"), "the cfg says where the CA goes");
    let fast = cfg.replace("inter 5s downinter 5s rise 2 fall 2 slowstart 60s", "inter 200ms downinter 200ms rise 1 fall 1");
    assert_ne!(fast, cfg, "the health-check line changed shape; update the test");
    std::fs::write(dir.join("haproxy-test.cfg"), fast).unwrap();
    let _haproxy = Started(
        Command::new(tool("haproxy", "HAPROXY_BIN"))
            .args(["-db", "-f"])
            .arg(dir.join("haproxy-test.cfg"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_listening(&lb);
    let r = check_until(&spec, "NO-BACKEND:");
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("NO-BACKEND:"), "{}", r.stdout);

    // a kube-apiserver stand-in on cp-1: /readyz over TLS, certificate from the Kubernetes CA
    let www = dir.join("apiserver");
    apiserver_cert(dir, &www, &[lb_ip, &node_ip]);
    let _apiserver = apiserver_stand_in(&[], &www, &format!("{node_ip}:6443"));
    let r = check_until(&spec, "READY:");
    assert_eq!(r.code, Some(0), "{}{}\n{}", r.stdout, r.stderr, std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default());
    assert!(r.stdout.starts_with("READY: kube-apiserver answers /readyz") && r.stdout.contains("(ok)"), "{}", r.stdout);
    let json = boot(&spec, &["check", "lb", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["state"], "READY");
    assert_eq!(v[0]["from"], "this machine");
    assert_eq!(v[0]["endpoint"], lb.as_str());

    // an address routed nowhere: inside a namespace of our own, packets to it vanish
    let ns = Netns(format!("lbt-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    // a veth pair inside it; the target's MAC is pinned, so no ARP failure ends the wait early:
    // the SYN goes out and nobody takes it
    ip(&["-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(&["-n", &ns.0, "addr", "add", "10.254.77.1/24", "dev", "v0"]);
    ip(&["-n", &ns.0, "link", "set", "v0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "v1", "up"]);
    ip(&["-n", &ns.0, "neigh", "add", "10.254.77.9", "lladdr", "02:00:00:00:00:09", "dev", "v0", "nud", "permanent"]);
    let nowhere = dir.join("nowhere.yaml");
    std::fs::write(&nowhere, text.replace(&lb, "10.254.77.9:6443")).unwrap();
    let started = Instant::now();
    let r = run_bounded(
        Command::new("ip").args(["netns", "exec", &ns.0]).arg(bin("etcd-bootstrap")).arg("-f").arg(&nowhere).args(["check", "lb", "--timeout", "2"]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("TIMEOUT: no answer from 10.254.77.9:6443"), "{}", r.stdout);
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by --timeout: {:?}", started.elapsed());
}

/// A kube-apiserver stand-in: HTTPS, one thread per connection (a load balancer's health checks
/// and clients arrive at once), `GET /readyz` answers 200 `ok`. Run under `prefix` (e.g. `ip
/// netns exec NS`), in `www` (its certificate and key).
fn apiserver_stand_in(prefix: &[&str], www: &Path, addr: &str) -> Started {
    const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def setup(self):
        # the TLS handshake in the connection's own thread, not in accept(): a client that
        # connects and says nothing must not hold up the others
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()
    def do_GET(self):
        body = b"ok" if self.path == "/readyz" else b"not found"
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
host, port = sys.argv[1].rsplit(":", 1)
s = http.server.ThreadingHTTPServer((host, int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("apiserver.crt", "apiserver.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True, do_handshake_on_connect=False)
s.serve_forever()
"#;
    let (program, rest) = prefix.split_first().map(|(p, r)| (*p, r.to_vec())).unwrap_or(("/usr/bin/python3", vec![]));
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg("/usr/bin/python3");
    }
    Started(cmd.current_dir(www).args(["-c", SERVER, addr]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

/// A certificate for the kube-apiserver stand-in, from the spec's Kubernetes CA, naming `ips`.
fn apiserver_cert(dir: &Path, www: &Path, ips: &[&str]) {
    std::fs::create_dir_all(www).unwrap();
    std::fs::write(www.join("readyz"), "ok").unwrap();
    let sans: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
    std::fs::write(www.join("ext.cnf"), format!("subjectAltName={}\nextendedKeyUsage=serverAuth\n", sans.join(","))).unwrap();
    openssl(
        www,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "apiserver.csr",
        ],
    )
    .assert_ok();
    let ca = dir.join("pki/kubernetes");
    openssl(
        www,
        &[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            &ca.join("ca.crt").display().to_string(),
            "-CAkey",
            &ca.join("ca.key").display().to_string(),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "apiserver.crt",
        ],
    )
    .assert_ok();
}

#[test]
fn check_lb_runs_from_each_control_plane_node_and_gates_rotate_ca_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // two control-plane nodes: network-namespace hosts with sshd; the load balancer on this
    // machine's address on their bridge
    // (their /etc is private: kube-apiserver's files delivered there land in the test's folder)
    let hosts = integration_tests::netns::Hosts::create_with_private_etc(2, dir);
    let prefix = hosts.hosts[0].address.rsplit_once('.').unwrap().0.to_string();
    let lb = format!("{prefix}.1:6443");
    let spec = local_spec(dir, 1).path;
    let text = std::fs::read_to_string(&spec).unwrap();
    let head = &text[..text.find("  control_plane_nodes:").unwrap()];
    let opts = hosts.ssh_options().iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", ");
    let mut nodes = String::from("  control_plane_nodes:\n");
    for (i, h) in hosts.hosts.iter().enumerate() {
        nodes.push_str(&format!("    - {{name: cp-{}, address: {a}, host: 'root@{a}', ssh_options: [{opts}]}}\n", i + 1, a = h.address));
    }
    let old_ep = head.lines().find_map(|l| l.trim().strip_prefix("control_plane_endpoint: ")).unwrap().to_string();
    std::fs::write(&spec, head.replace(&old_ep, &lb) + &nodes).unwrap();
    let _down = Down(spec.clone());
    boot(&spec, &["up"]).assert_ok();

    // nothing on the LB's port: refused, from here and from both nodes
    let r = boot(&spec, &["check", "lb"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.matches("REFUSED:").count(), 3, "{}", r.stdout);
    assert!(r.stdout.contains(&format!("from cp-2 (ssh root@{}): REFUSED", hosts.hosts[1].address)), "{}", r.stdout);
    // doctor says the same, and that kube-apiserver's files are not on the nodes yet
    let d = doctor_levels(&spec);
    assert_eq!(of(&d, "load-balancer"), ["WARN", "WARN", "WARN"], "{d:?}");
    assert_eq!(of(&d, "apiserver-files"), ["WARN", "WARN"], "{d:?}");

    // HAProxy, no apiserver: NO-BACKEND everywhere
    let cfg = std::fs::read_to_string(dir.join("out/haproxy/haproxy.cfg"))
        .unwrap()
        .replace("inter 5s downinter 5s rise 2 fall 2 slowstart 60s", "inter 200ms downinter 200ms rise 1 fall 1");
    std::fs::write(dir.join("haproxy-test.cfg"), cfg).unwrap();
    let _haproxy = Started(
        Command::new(tool("haproxy", "HAPROXY_BIN"))
            .args(["-db", "-f"])
            .arg(dir.join("haproxy-test.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&lb);
    let r = check_until(&spec, "NO-BACKEND:");
    assert_eq!(r.stdout.matches("NO-BACKEND:").count(), 3, "{}{}", r.stdout, r.stderr);

    // a CA rotation stopped for the operator does not continue while no apiserver answers
    let first = boot(&spec, &["rotate", "ca"]).assert_ok();
    assert!(first.stdout.contains("stopped after step 1 of 3"), "{}", first.stdout);
    // the nodes already have the old+new bundle kube-apiserver must trust: delivered, not to copy
    assert!(first.stdout.contains("cp-1: /etc/kubernetes/pki/etcd/ca.crt delivered (over root@") && !first.stdout.contains(": copy "), "{}", first.stdout);
    let on_node = |i: usize, f: &str| hosts.hosts[i].etc_upper.as_ref().unwrap().join(f.trim_start_matches("/etc/"));
    let bundle = std::fs::read(dir.join("out/control-plane/cp-2/etc/kubernetes/pki/etcd/ca.crt")).unwrap();
    for i in 0..2 {
        assert_eq!(std::fs::read(on_node(i, "/etc/kubernetes/pki/etcd/ca.crt")).unwrap(), bundle, "node {i}");
    }
    assert_eq!(bundle.windows(27).filter(|w| *w == b"-----BEGIN CERTIFICATE-----").count(), 2, "old + new");
    assert!(
        !std::path::Path::new("/etc/kubernetes/pki/etcd/ca.crt").exists() || std::fs::read("/etc/kubernetes/pki/etcd/ca.crt").unwrap() != bundle,
        "this machine's /etc is untouched"
    );
    let refused = boot(&spec, &["rotate", "ca", "--continue", "--wait", "2"]).assert_fails();
    assert!(
        refused.stderr.contains("refusing to continue the CA rotation: kube-apiserver does not answer /readyz through the load balancer"),
        "{}",
        refused.stderr
    );
    assert!(boot(&spec, &["rotate", "ca", "--status"]).assert_ok().stdout.contains("waiting for the operator before step 2"));

    // a kube-apiserver stand-in inside cp-1's namespace: READY from here and from both nodes
    let www = dir.join("apiserver");
    apiserver_cert(dir, &www, &[lb.rsplit_once(':').unwrap().0, &hosts.hosts[0].address]);
    let _apiserver = apiserver_stand_in(&["ip", "netns", "exec", &hosts.hosts[0].namespace], &www, &format!("{}:6443", hosts.hosts[0].address));
    let r = check_until(&spec, "READY:");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut r = r;
    while r.stdout.matches("READY:").count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        r = boot(&spec, &["check", "lb"]);
    }
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.matches("READY: kube-apiserver answers /readyz").count(), 3, "{}", r.stdout);
    let json = boot(&spec, &["check", "lb", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // now the rotation goes on, and to its end
    let second = boot(&spec, &["rotate", "ca", "--continue"]);
    assert!(second.ok() && second.stderr.contains("kube-apiserver answers /readyz through the load balancer"), "{}{}", second.stdout, second.stderr);
    // stop 2 delivered kube-apiserver's new client pair, the key 0600
    assert!(second.stdout.contains("stopped after step 2 of 3") && second.stdout.contains("apiserver-etcd-client.key delivered"), "{}", second.stdout);
    for i in 0..2 {
        let key = on_node(i, "/etc/kubernetes/pki/apiserver-etcd-client.key");
        assert_eq!(
            std::fs::read(&key).unwrap(),
            std::fs::read(dir.join(format!("out/control-plane/cp-{}/etc/kubernetes/pki/apiserver-etcd-client.key", i + 1))).unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // doctor reads the files kube-apiserver holds on each node: they chain to the CAs the
    // members trust; a client certificate from another CA is a FAIL naming the node
    let d = doctor_levels(&spec);
    assert_eq!(of(&d, "apiserver-files"), ["OK", "OK"], "{d:?}");
    assert_eq!(of(&d, "load-balancer"), ["OK", "OK", "OK"], "{d:?}");
    let cert2 = on_node(1, "/etc/kubernetes/pki/apiserver-etcd-client.crt");
    let kept = std::fs::read(&cert2).unwrap();
    std::fs::copy(www.join("apiserver.crt"), &cert2).unwrap();
    let d = doctor_levels(&spec);
    assert!(d.iter().any(|(n, m, l, e)| n == "apiserver-files" && m == "cp-2" && l == "FAIL" && e.contains("not signed by a CA the members trust")), "{d:?}");
    assert!(d.iter().any(|(n, m, l, _)| n == "apiserver-files" && m == "cp-1" && l == "OK"), "{d:?}");
    std::fs::write(&cert2, kept).unwrap();
    let done = boot(&spec, &["rotate", "ca", "--continue"]).assert_ok();
    assert!(done.stdout.contains("CA rotation done"), "{}", done.stdout);
    let new_only = std::fs::read(dir.join("out/control-plane/cp-1/etc/kubernetes/pki/etcd/ca.crt")).unwrap();
    assert_eq!(std::fs::read(on_node(0, "/etc/kubernetes/pki/etcd/ca.crt")).unwrap(), new_only, "the new CA alone at the end");
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    assert_eq!(of(&doctor_levels(&spec), "apiserver-files"), ["OK", "OK"], "the new CA alone, and the client certificate it signed");
}

/// `doctor -w json`'s checks: (name, member, level, evidence).
fn doctor_levels(spec: &Path) -> Vec<(String, String, String, String)> {
    let r = boot(spec, &["doctor", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    let s = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or("").to_string();
    v["checks"].as_array().unwrap().iter().map(|c| (s(c, "name"), s(c, "member"), s(c, "level"), s(c, "evidence"))).collect()
}

fn of<'a>(all: &'a [(String, String, String, String)], name: &str) -> Vec<&'a str> {
    all.iter().filter(|(n, ..)| n == name).map(|(_, _, l, _)| l.as_str()).collect()
}
