//! Point-in-time recovery against real etcd: `backup --continuous` follows a cluster while writers
//! put, overwrite, delete, write several keys in one transaction and attach leases; then
//! `restore --to-revision R` (for several R) and `restore --to-time T` rebuild the cluster, and
//! each restored keyspace equals what the original answered to `get --rev R` (keys, values, and
//! no key deleted by then). The follower stands aside while a restore runs and starts a new chain
//! on the restored cluster. An unreachable revision is refused before any change, naming the
//! reachable range. A `kill -9` of every member loses no acknowledged change the follower had
//! received, and the cluster comes back from the history to its last revision.

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use integration_tests::bootstrap::{boot, node_pki, spec_endpoints, up_cluster};
use integration_tests::{Running, Signal, bin, kill_etcds_from_pid_files, signal, start_until_stderr_says};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

type Keyspace = BTreeMap<Vec<u8>, Vec<u8>>;

fn client(rt: &tokio::runtime::Runtime, dir: &Path, eps: &str) -> Client {
    let pki = node_pki(dir);
    let p = |f: &str| pki.join(f).display().to_string();
    let opts = etcdctl_lite::options::ClientOptions::new(
        &[eps.split(',').next().unwrap().to_string()],
        Some(&p("etcd/ca.crt")),
        Some(&p("apiserver-etcd-client.crt")),
        Some(&p("apiserver-etcd-client.key")),
        Duration::from_secs(5),
        Duration::from_secs(30),
    )
    .unwrap();
    rt.block_on(etcdctl_lite::connect::client_for(&opts.endpoints[0], &opts)).unwrap()
}

/// The whole keyspace at `rev` (0: now).
fn keyspace(rt: &tokio::runtime::Runtime, c: &mut Client, rev: i64) -> Keyspace {
    let r = rt.block_on(c.get(vec![0u8], Some(GetOptions::new().with_from_key().with_revision(rev)))).unwrap();
    r.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect()
}

/// One round of writes as an API server makes them, four at a time: puts, overwrites, deletes,
/// a transaction of three, a key on a lease. Returns the revision after the round.
fn round(rt: &tokio::runtime::Runtime, c: &Client, n: u32, lease: i64) -> i64 {
    rt.block_on(async {
        let mut tasks = vec![];
        for w in 0..4u32 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..60u32 {
                    let k = format!("/registry/pods/r{n}/w{w}/{i}");
                    c.put(k.clone(), format!("v1-{n}-{w}-{i}"), None).await.unwrap();
                    if i % 3 == 0 {
                        c.put(k.clone(), format!("v2-{n}-{w}-{i}"), None).await.unwrap();
                    }
                    if i % 5 == 0 {
                        c.delete(k, None).await.unwrap();
                    }
                }
                // a key of an earlier round, overwritten and one deleted
                if n > 0 {
                    c.put(format!("/registry/pods/r{}/w{w}/1", n - 1), format!("over-{n}"), None).await.unwrap();
                    c.delete(format!("/registry/pods/r{}/w{w}/2", n - 1), None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut c = c.clone();
        let txn = Txn::new().and_then([
            TxnOp::put(format!("/registry/deployments/d{n}"), "a", None),
            TxnOp::put(format!("/registry/replicasets/rs{n}"), "b", None),
            TxnOp::delete(format!("/registry/pods/r{n}/w0/1"), None),
        ]);
        c.txn(txn).await.unwrap();
        let r = c.put(format!("/registry/events/e{n}"), "on a lease", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        r.header().unwrap().revision()
    })
}

fn status(spec: &Path) -> serde_json::Value {
    let p = spec.with_file_name(format!("{}.journal", spec.file_name().unwrap().to_string_lossy())).join("continuous.json");
    std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Waits (bounded) until the follower has sealed revision `rev`.
fn sealed(spec: &Path, rev: i64) {
    let t = Instant::now();
    while status(spec)["sealed_to"].as_i64().unwrap_or(0) < rev {
        assert!(t.elapsed() < Duration::from_secs(60), "the follower never sealed revision {rev}: {}", status(spec));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn follower(spec: &Path, backups: &Path, extra: &[&str]) -> Running {
    let mut cmd = Command::new(bin("etcd-bootstrap"));
    cmd.arg("-f").arg(spec).args(["backup", "--continuous", "--dir"]).arg(backups).args(extra);
    start_until_stderr_says(&mut cmd, "continuous: following ", Duration::from_secs(120)).unwrap_or_else(|e| panic!("the follower never followed:\n{e}"))
}

fn stderr_of(r: &Running) -> String {
    r.stderr.lock().unwrap().join("\n")
}

/// Waits (bounded) until the follower has said one of `lines`.
fn said(r: &Running, lines: &[&str]) {
    let t = Instant::now();
    while !lines.iter().any(|l| stderr_of(r).contains(l)) {
        assert!(t.elapsed() < Duration::from_secs(60), "never said any of {lines:?}:\n{}", stderr_of(r));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restore_to_a_revision_or_a_time_gives_the_keyspace_etcd_had_then() {
    let (tmp, spec, _down) = up_cluster();
    let dir = tmp.path();
    let eps = spec_endpoints(&spec);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = client(&rt, dir, &eps);
    rt.block_on(c.put("/registry/namespaces/default", "before the follower", None)).unwrap();
    let backups = dir.join("backups");
    let first = follower(&spec, &backups, &["--segment-seconds", "1"]);
    let lease = rt.block_on(c.lease_grant(600, None)).unwrap().id();

    // three rounds; after the first, a moment (no writes) for --to-time
    let r1 = round(&rt, &c, 0, lease);
    sealed(&spec, r1);
    let t1 = time::OffsetDateTime::now_utc();
    // the follower killed (-9) and started again: it resumes after the last revision it sealed,
    // and the writes made while none ran come from etcd's history (the restores below cross it)
    signal(first.pid(), Signal::Kill);
    assert_eq!(first.wait(Duration::from_secs(10)), None, "killed, no exit code");
    rt.block_on(c.put("/registry/configmaps/while-no-follower", "kept", None)).unwrap();
    let f = follower(&spec, &backups, &["--segment-seconds", "1"]);
    assert!(stderr_of(&f).contains(&format!("resuming from revision {}", r1 + 1)), "{}", stderr_of(&f));
    let r2 = round(&rt, &c, 1, lease);
    let r3 = round(&rt, &c, 2, lease);
    sealed(&spec, r3);
    let first_full = status(&spec)["full_revision"].as_i64().unwrap();
    assert!(first_full < r1, "the follower's first full snapshot ({first_full}) came before the writes");
    let expected: Vec<(i64, Keyspace)> = [r1, r2, r3].iter().map(|&r| (r, keyspace(&rt, &mut c, r))).collect();
    // the rounds differ: a restore to the wrong one cannot pass
    assert!(expected[0].1 != expected[1].1 && expected[1].1 != expected[2].1);
    assert!(!expected[2].1.contains_key(b"/registry/pods/r2/w0/1".as_slice()) && expected[2].1.contains_key(b"/registry/pods/r2/w0/2".as_slice()));
    rt.block_on(c.put("/marker", "untouched", None)).unwrap();
    // doctor sees the follower keeping up
    let d = boot(&spec, &["doctor", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", d.stdout, d.stderr));
    let lag = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "continuous-backup").cloned().unwrap_or_default();
    assert!(lag["level"] == "OK" && lag["evidence"].as_str().unwrap_or("").starts_with("the history reaches revision"), "{}", d.stdout);

    // out of reach: refused before any change, naming the range
    let b = backups.display().to_string();
    for r in [first_full - 1, r3 + 100_000] {
        let no = boot(&spec, &["restore", "--dir", &b, "--to-revision", &r.to_string(), "--force"]).assert_fails();
        assert!(no.stderr.contains(&format!("revision {r} cannot be reached from this folder: it reaches revisions {first_full}-")), "{}", no.stderr);
    }
    assert_eq!(keyspace(&rt, &mut c, 0).get(b"/marker".as_slice()).map(Vec::as_slice), Some(b"untouched".as_slice()));

    // each revision, then a time; the follower keeps running beside the restores
    let at_t1 = t1.format(&time::format_description::well_known::Rfc3339).unwrap();
    let targets = [("--to-revision", r2.to_string(), 1), ("--to-revision", r1.to_string(), 0), ("--to-revision", r3.to_string(), 2), ("--to-time", at_t1, 0)];
    for (flag, value, which) in targets {
        let r = boot(&spec, &["restore", "--dir", &b, flag, &value, "--force"]);
        assert!(r.ok(), "restore {flag} {value}:\n{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("changes replayed;"), "{}", r.stderr);
        let mut c = client(&rt, dir, &eps);
        let now = keyspace(&rt, &mut c, 0);
        let (rev, want) = &expected[which];
        // etcd's own keys of the restore are none: the keyspace is the application's
        let missing: Vec<_> = want.keys().filter(|k| !now.contains_key(*k)).map(|k| String::from_utf8_lossy(k).into_owned()).take(3).collect();
        let extra: Vec<_> = now.keys().filter(|k| !want.contains_key(*k)).map(|k| String::from_utf8_lossy(k).into_owned()).take(3).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{flag} {value} (revision {rev}): missing {missing:?}, extra {extra:?}");
        assert_eq!(&now, want, "{flag} {value}: a value differs from revision {rev}'s");
        // the replayed snapshot is gone once the restore is done
        assert!(!spec.with_file_name("cluster.yaml.journal").join(format!("pitr-r{rev}.db")).exists());
    }
    // the follower stood aside during each restore, then began a new chain on the restored cluster
    said(&f, &["the cluster is another one now", "was compacted away"]);
    // and, following again, it no longer says it waits (what doctor reads)
    let t = Instant::now();
    while !status(&spec)["waiting"].is_null() {
        assert!(t.elapsed() < Duration::from_secs(60), "still waiting: {}\n{}", status(&spec), stderr_of(&f));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stderr_of(&f).contains("standing aside: restore under way"), "{}", stderr_of(&f));
    // stopped by SIGTERM: it seals what it holds and exits 0
    signal(f.pid(), Signal::Term);
    assert_eq!(f.wait(Duration::from_secs(30)), Some(0));
}

#[test]
fn a_kill_9_of_every_member_loses_no_change_the_follower_received() {
    let (tmp, spec, _down) = up_cluster();
    let dir = tmp.path();
    let eps = spec_endpoints(&spec);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&rt, dir, &eps);
    let backups = dir.join("backups");
    // the default 5-second segments
    let f = follower(&spec, &backups, &[]);
    // writers as fast as the cluster takes them; each value is the time it was sent
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (mut c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
            rt.spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let sent = now_ms();
                    if c.put(format!("/registry/leases/w{w}/{}", i % 500), sent.to_string(), None).await.is_ok() {
                        acked.fetch_max(sent, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                i
            })
        })
        .collect();
    // a while at full speed, the follower's peak memory measured
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let last_rev = rt.block_on(c.clone().get("/", None)).unwrap().header().unwrap().revision();
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", f.pid())).unwrap().lines().find(|l| l.starts_with("VmHWM")).unwrap().to_string();
    // every member killed while the writers write
    kill_etcds_from_pid_files(dir);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|w| rt.block_on(w).unwrap()).sum();
    let newest_acked = acked.load(std::sync::atomic::Ordering::Relaxed);
    // the follower notices, seals what it holds, and waits for the cluster
    said(&f, &["lost the cluster"]);
    let st = status(&spec);
    let kept = st["sealed_to"].as_i64().unwrap();
    assert!(kept >= last_rev, "the history ends at {kept}, below revision {last_rev} read before the kill");
    signal(f.pid(), Signal::Term);
    assert_eq!(f.wait(Duration::from_secs(30)), Some(0));

    // the newest change in the history against the newest acknowledged write: the RPO
    let r = boot(&spec, &["restore", "--dir", &backups.display().to_string(), "--to-revision", &kept.to_string()]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    let mut c = client(&rt, dir, &eps);
    let now = keyspace(&rt, &mut c, 0);
    let newest_kept = now.values().filter_map(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok()).max().unwrap();
    let lost_ms = newest_acked - newest_kept;
    eprintln!(
        "point-in-time: {writes} writes in 12 s ({} per second); follower {hwm}; history to revision {kept}; newest acknowledged write lost by the kill -9: {lost_ms} ms",
        writes / 12
    );
    assert!(lost_ms <= 5000, "the kill -9 lost {lost_ms} ms of acknowledged writes (bound: 5 s)");
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}
