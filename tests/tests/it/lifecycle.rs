//! Certificate lifecycle on live clusters: expiry checks, renewal and rotation under continuous
//! writes (every acknowledged write survives, quorum is never lost, apiserver clients keep
//! working), and revocation that real etcd enforces.

use integration_tests::bootstrap::{boot, local_spec, Down};
use integration_tests::{bin, fixture, pki, run_bounded, tool, Ran};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 3-member cluster brought up by `etcd-bootstrap up`: its temp dir, spec, client URLs, and
/// the guard that stops it.
fn running_cluster() -> (tempfile::TempDir, std::path::PathBuf, String, Down) {
    let tmp = tempfile::tempdir().unwrap();
    let spec_file = local_spec(tmp.path(), 1);
    let down = Down(spec_file.path.clone());
    boot(&spec_file.path, &["up"]).assert_ok();
    (tmp, spec_file.path, spec_file.endpoints, down)
}

/// Debian's etcdctl with the CA of the control-plane folder and the given client pair.
fn etcdctl_as(dir: &Path, eps: &str, cert: &Path, key: &Path, args: &[&str]) -> Ran {
    let ca = dir.join("out/control-plane/cp-1/etc/kubernetes/pki/etcd/ca.crt");
    run_bounded(
        Command::new(tool("etcdctl", "ETCDCTL_BIN"))
            .arg(format!("--endpoints={eps}"))
            .arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--dial-timeout=2s", "--command-timeout=3s"])
            .args(args),
        Duration::from_secs(30),
    )
}

/// etcdctl with the kube-apiserver files from the control-plane folder.
fn apiserver_etcdctl(dir: &Path, eps: &str, args: &[&str]) -> Ran {
    let node = dir.join("out/control-plane/cp-1/etc/kubernetes/pki");
    etcdctl_as(dir, eps, &node.join("apiserver-etcd-client.crt"), &node.join("apiserver-etcd-client.key"), args)
}

/// Continuous writes through the apiserver certificate, recording every acknowledged one, and
/// the quorum verdict sampled all along.
struct Traffic {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u32>>>,
    failed: Arc<Mutex<u32>>,
    verdicts: Arc<Mutex<Vec<Option<i32>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(dir: &Path, eps: &str, spec: &Path) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<u32>::new()));
        let failed = Arc::new(Mutex::new(0u32));
        let verdicts = Arc::new(Mutex::new(Vec::<Option<i32>>::new()));
        let writer = {
            let (stop, acked, failed, dir, eps) = (stop.clone(), acked.clone(), failed.clone(), dir.to_path_buf(), eps.to_string());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) && n < 3000 {
                    n += 1;
                    let r = apiserver_etcdctl(&dir, &eps, &["put", &format!("/registry/w/{n:05}"), &n.to_string()]);
                    if r.ok() {
                        acked.lock().unwrap().push(n);
                    } else {
                        *failed.lock().unwrap() += 1;
                    }
                }
            })
        };
        let sampler = {
            let (stop, verdicts, spec) = (stop.clone(), verdicts.clone(), spec.to_path_buf());
            std::thread::spawn(move || {
                let mut samples = 0;
                while !stop.load(Ordering::Relaxed) && samples < 1000 {
                    samples += 1;
                    let r = run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).arg("status"), Duration::from_secs(30));
                    verdicts.lock().unwrap().push(r.code);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        Traffic { stop, acked, failed, verdicts, threads: vec![writer, sampler] }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the traffic; checks that every acknowledged write is readable and quorum held.
    fn finish(self, dir: &Path, eps: &str, max_failed: u32) {
        std::thread::sleep(Duration::from_millis(800));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failed = *self.failed.lock().unwrap();
        assert!(acked.len() >= 10, "too few writes to mean anything: {}", acked.len());
        assert!(failed <= max_failed, "failed writes: {failed}");
        let got = apiserver_etcdctl(dir, eps, &["get", "/registry/w/", "--prefix", "--keys-only"]).assert_ok();
        for n in &acked {
            assert!(got.stdout.contains(&format!("/registry/w/{n:05}")), "acknowledged write {n} is missing");
        }
        let v = self.verdicts.lock().unwrap();
        assert!(!v.is_empty());
        assert!(v.iter().all(|c| *c == Some(0) || *c == Some(1)), "quorum must never be lost: {v:?}");
    }
}

#[test]
fn rotate_certs_under_continuous_writes_keeps_every_acknowledged_write() {
    let (tmp, spec, eps, _down) = running_cluster();
    let dir = tmp.path().to_path_buf();
    let traffic = Traffic::start(&dir, &eps, &spec);
    let rot = boot(&spec, &["rotate", "certs", "--rekey"]);
    assert!(rot.ok(), "{}{}", rot.stdout, rot.stderr);
    for m in ["etcd-1", "etcd-2", "etcd-3"] {
        assert!(rot.stderr.contains(&format!("rotate {m}: serves the new certificate; cluster HEALTHY")), "{}", rot.stderr);
    }
    let at_end = traffic.acked();
    std::thread::sleep(Duration::from_millis(600));
    assert!(traffic.acked() > at_end, "apiserver clients must keep working after the rotation");
    // a rekey may race one read of the client's cert+key pair: at most a couple of failed writes
    traffic.finish(&dir, &eps, 2);
    // the renewed set passes the check, with SANs covering the spec's addresses
    let check = boot(&spec, &["certs", "check", "-w", "json"]);
    assert_eq!(check.code, Some(0), "{}", check.stdout);
}

#[test]
fn replacing_a_dead_member_under_continuous_writes() {
    let (tmp, spec, eps, _down) = running_cluster();
    let dir = tmp.path().to_path_buf();
    // a healthy member is not replaced without --force
    let r = boot(&spec, &["replace", "etcd-2"]).assert_fails();
    assert!(r.stderr.contains("etcd-2 is healthy"), "{}", r.stderr);
    // replace a follower: killing the leader would cost an election (a real, if brief, loss of
    // quorum that is not the replacement's doing)
    let st = boot(&spec, &["status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let victim = v["members"].as_array().unwrap().iter().find(|m| m["role"] == "follower").unwrap()["name"].as_str().unwrap().to_string();
    let idx = victim.trim_start_matches("etcd-").to_string();
    let traffic = Traffic::start(&dir, &eps, &spec);
    let pid = std::fs::read_to_string(dir.join(format!("members/{victim}/{victim}.pid"))).unwrap();
    integration_tests::signal(pid.trim().parse().unwrap(), integration_tests::Signal::Kill);
    let r = boot(&spec, &["replace", &victim]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    for step in ["retire", "old data dir moved to", "remove", "learner", "voting member", "quorum: HEALTHY"] {
        assert!(r.stderr.contains(step), "lacks {step:?}: {}", r.stderr);
    }
    // writes to the dead member's endpoint fail until it is back: etcdctl tries the others
    traffic.finish(&dir, &eps, 10);
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    // the old data was moved aside, not deleted
    assert!(std::fs::read_dir(dir.join(format!("members/{victim}"))).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("data.replaced-")));
    let others: Vec<String> = (1..=3).map(|i| i.to_string()).filter(|i| *i != idx).collect();
    // refusing when it would lose quorum: two of three dead
    for i in &others {
        let pid = std::fs::read_to_string(dir.join(format!("members/etcd-{i}/etcd-{i}.pid"))).unwrap();
        integration_tests::signal(pid.trim().parse().unwrap(), integration_tests::Signal::Kill);
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = boot(&spec, &["replace", &format!("etcd-{}", others[0])]).assert_fails();
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
}

#[test]
fn a_revoked_client_certificate_is_refused_by_etcd() {
    let (tmp, spec, eps, _down) = running_cluster();
    let dir = tmp.path().to_path_buf();
    apiserver_etcdctl(&dir, &eps, &["put", "k", "v"]).assert_ok();
    let revoke = pki(&dir, &["revoke", "--out", "pki", "--reason", "key-compromise", "pki/control-plane/apiserver-etcd-client.crt"]).assert_ok();
    assert!(revoke.stdout.contains("crl.pem"), "{}", revoke.stdout);
    // up delivers the new CRL (the only changed file); etcd reads it on every new connection
    let up = boot(&spec, &["up"]).assert_ok();
    assert!(up.stderr.contains("1 written, 5 unchanged"), "{}", up.stderr);
    let refused = apiserver_etcdctl(&dir, &eps, &["get", "k"]);
    assert!(!refused.ok(), "a revoked certificate must be refused: {}", refused.stdout);
    // other clients (the healthcheck certificate) are unaffected
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    let text = run_bounded(Command::new(tool("openssl", "OPENSSL_BIN")).args(["crl", "-noout", "-text", "-in"]).arg(dir.join("pki/etcd/crl.pem")), Duration::from_secs(10)).assert_ok();
    assert!(text.stdout.contains("Key Compromise"), "{}", text.stdout);
    // etcdctl-lite names the reason: the CRL next to the CA file revokes that certificate
    let lite = run_bounded(
        Command::new(bin("etcdctl-lite"))
            .arg(format!("--endpoints={eps}"))
            .arg(format!("--cacert={}", dir.join("pki/etcd/ca.crt").display()))
            .arg(format!("--cert={}", dir.join("pki/control-plane/apiserver-etcd-client.crt").display()))
            .arg(format!("--key={}", dir.join("pki/control-plane/apiserver-etcd-client.key").display()))
            .args(["endpoint", "health"]),
        Duration::from_secs(30),
    );
    assert!(!lite.ok() && lite.stderr.contains("it is revoked (serial"), "{}{}", lite.stdout, lite.stderr);
}

#[test]
fn check_expiration_reports_expired_and_invalid_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("pki");
    std::fs::create_dir_all(d.join("members/m1")).unwrap();
    std::fs::create_dir_all(d.join("control-plane")).unwrap();
    let cp = |from: &str, to: &str| std::fs::copy(fixture(from), d.join(to)).unwrap();
    cp("openssl-ec-ca.crt", "ca.pem");
    cp("openssl-ec-ca.key.insecure", "ca-key.pem");
    cp("expired-leaf.crt", "members/m1/m1.pem");
    cp("expired-leaf.key.insecure", "members/m1/m1-key.pem");
    cp("not-a-ca.crt", "members/m1/m1-peer.pem");
    cp("client-only.key.insecure", "members/m1/m1-peer-key.pem"); // wrong key on purpose
    cp("wrong-ca-client.crt", "control-plane/apiserver-etcd-client.pem");
    cp("wrong-ca-client.key.insecure", "control-plane/apiserver-etcd-client-key.pem");
    let r = pki(tmp.path(), &["check-expiration", "--out", "pki", "-w", "json"]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let by = |name: &str| v["certificates"].as_array().unwrap().iter().find(|c| c["certificate"] == name).unwrap().clone();
    assert_eq!(by("m1/server")["status"], "expired");
    assert_eq!(by("m1/peer")["status"], "invalid");
    assert!(by("m1/peer")["problems"][0].as_str().unwrap().contains("does not match"));
    assert!(by("apiserver-etcd-client")["problems"][0].as_str().unwrap().contains("not signed by the CA"));
    // a fresh PKI is fine, and a threshold above the lifetime makes it "expiring" (exit 1)
    let fresh = tempfile::tempdir().unwrap();
    pki(fresh.path(), &["issue", "--out", "pki", "--member", "e1=10.0.0.1"]).assert_ok();
    assert_eq!(pki(fresh.path(), &["check-expiration", "--out", "pki"]).code, Some(0));
    let r = pki(fresh.path(), &["check-expiration", "--out", "pki", "--within", "400d"]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("expiring"));
    // renew keeps the key by default and the previous files as backups
    let key_before = std::fs::read(fresh.path().join("pki/members/e1/etcd/server.key")).unwrap();
    let cert_before = std::fs::read(fresh.path().join("pki/members/e1/etcd/server.crt")).unwrap();
    pki(fresh.path(), &["renew", "--out", "pki", "e1/server"]).assert_ok();
    assert_eq!(key_before, std::fs::read(fresh.path().join("pki/members/e1/etcd/server.key")).unwrap());
    assert_ne!(cert_before, std::fs::read(fresh.path().join("pki/members/e1/etcd/server.crt")).unwrap());
    let backups: Vec<String> = integration_tests::tree(&fresh.path().join("pki/members/e1/etcd")).into_iter().filter(|f| f.ends_with(".bak")).collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let info = pki(fresh.path(), &["certinfo", "pki/members/e1/etcd/server.crt"]).assert_ok().stdout;
    assert!(info.contains("IP:10.0.0.1") && info.contains("Server Auth, Client Auth"), "same SANs and usages: {info}");
}

#[test]
fn rotate_ca_interrupted_midway_resumes_and_never_loses_quorum() {
    let (tmp, spec, eps, _down) = running_cluster();
    let dir = tmp.path().to_path_buf();
    let old_client = (std::fs::read(dir.join("pki/control-plane/apiserver-etcd-client.crt")).unwrap(), std::fs::read(dir.join("pki/control-plane/apiserver-etcd-client.key")).unwrap());
    let traffic = Traffic::start(&dir, &eps, &spec);
    // interrupt the first run once it has recorded progress
    let mut first = Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).args(["rotate", "ca"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let state = dir.join("pki/etcd/ca-rotation.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !state.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = first.kill();
    let _ = first.wait();
    assert!(state.exists(), "the first run should have started the rotation");
    let second = boot(&spec, &["rotate", "ca"]);
    assert!(second.ok(), "{}{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("resuming in phase"), "{}", second.stderr);
    assert!(second.stderr.contains("done: every member trusts and serves only the new CA"), "{}", second.stderr);
    // member restarts make single writes fail now and then (etcdctl gives up on a restarting
    // endpoint); what matters: no acknowledged write lost, quorum never lost
    traffic.finish(&dir, &eps, 15);
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    assert!(!state.exists() && !dir.join("pki/etcd/ca-new.crt").exists());
    // the old CA is gone from the members: a client certificate it issued is refused
    std::fs::write(dir.join("old.crt"), &old_client.0).unwrap();
    std::fs::write(dir.join("old.key"), &old_client.1).unwrap();
    let old = etcdctl_as(&dir, &eps, &dir.join("old.crt"), &dir.join("old.key"), &["get", "k"]);
    assert!(!old.ok(), "a client certificate from the old CA must be refused");
    // the new control-plane files work, and every certificate checks out against the new CA
    apiserver_etcdctl(&dir, &eps, &["put", "after-rotation", "ok"]).assert_ok();
    let check = boot(&spec, &["certs", "check"]);
    assert_eq!(check.code, Some(0), "{}", check.stdout);
}
