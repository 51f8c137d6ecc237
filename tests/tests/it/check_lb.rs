//! `etcd-bootstrap check lb` against a real HAProxy started from the generated haproxy.cfg, a
//! small HTTPS stand-in for kube-apiserver (openssl s_server answering /readyz with a certificate
//! from the spec's Kubernetes CA), a closed port, and an address routed nowhere inside a network
//! namespace the test creates.

use integration_tests::bootstrap::{boot, local_spec, Down};
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
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("readyz"), "ok").unwrap();
    std::fs::write(www.join("ext.cnf"), format!("subjectAltName=IP:{lb_ip},IP:{node_ip}\nextendedKeyUsage=serverAuth\n")).unwrap();
    openssl(&www, &["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr"]).assert_ok();
    let ca = dir.join("pki/kubernetes");
    openssl(
        &www,
        &["x509", "-req", "-in", "apiserver.csr", "-CA", &ca.join("ca.crt").display().to_string(), "-CAkey", &ca.join("ca.key").display().to_string(), "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "apiserver.crt"],
    )
    .assert_ok();
    let _apiserver = Started(
        Command::new(tool("openssl", "OPENSSL_BIN"))
            .current_dir(&www)
            .args(["s_server", "-quiet", "-WWW", "-cert", "apiserver.crt", "-key", "apiserver.key", "-accept"])
            .arg(format!("{node_ip}:6443"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let r = check_until(&spec, "READY:");
    assert_eq!(r.code, Some(0), "{}{}\n{}", r.stdout, r.stderr, std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default());
    assert!(r.stdout.starts_with("READY: kube-apiserver answers /readyz") && r.stdout.contains("(ok)"), "{}", r.stdout);
    let json = boot(&spec, &["check", "lb", "-w", "json"]).assert_ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["state"], "READY");
    assert_eq!(v["endpoint"], lb.as_str());

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
