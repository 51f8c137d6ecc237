//! Off-host backups against two independent S3 servers started here on loopback (s3s-fs, in
//! Rust, and the Versity S3 Gateway, in Go: both check SigV4, both do multipart uploads and
//! ListObjectsV2), checked by an independent client (Debian's s3cmd): what `backup --to` uploads
//! is listed and fetched byte for byte, `--keep` prunes only this cluster's names under the
//! prefix, `restore s3://` brings the cluster back, `doctor` judges the off-host backup's age,
//! wrong credentials are refused with the server's own error code, and an upload cut off midway
//! (the server killed once a part has arrived) leaves no object under the backup's name, keeps
//! the local copy and says so.

use integration_tests::bootstrap::{Down, node_etcdctl, node_etcdctl_cmd, node_pki, put_in_txns, spec_endpoints, up_cluster};
use integration_tests::{Ran, bin, run_bounded, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "etcdbackupkey";
const SECRET: &str = "etcd-backup-secret-0123456789";
const BUCKET: &str = "etcd-backups";

/// The S3 implementations the tests run against (scripts/fetch-s3-server.sh builds both).
#[derive(Clone, Copy, Debug)]
enum Implementation {
    S3sFs,
    Versitygw,
}

impl Implementation {
    fn command(self, root: &Path, host: &str) -> Command {
        let (bin, built_by) = match self {
            Implementation::S3sFs => (workspace_root().join(".tools/s3s/bin/s3s-fs"), "cargo install s3s-fs"),
            Implementation::Versitygw => (workspace_root().join(".tools/versitygw/current/versitygw"), "go build of third_party/versitygw"),
        };
        assert!(bin.is_file(), "{} is missing: `bash scripts/fetch-s3-server.sh` builds it ({built_by}; install-deps runs it)", bin.display());
        let mut c = Command::new(bin);
        match self {
            Implementation::S3sFs => c.args(["--host", host, "--port", "9000", "--access-key", KEY, "--secret-key", SECRET]).arg(root),
            Implementation::Versitygw => c.args(["--access", KEY, "--secret", SECRET, "--port", &format!("{host}:9000"), "posix"]).arg(root),
        };
        c
    }

    /// Whether a part of a multipart upload is on the server's disk (each keeps them its way:
    /// s3s-fs as `*.part-N` in its root, versitygw under `.sgwtmp/multipart/` in the bucket).
    fn holds_a_part(self, root: &Path) -> bool {
        match self {
            Implementation::S3sFs => std::fs::read_dir(root).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(".part-1"))).unwrap_or(false),
            Implementation::Versitygw => any_file_under(&root.join(BUCKET).join(".sgwtmp/multipart")),
        }
    }
}

fn any_file_under(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| if e.path().is_dir() { any_file_under(&e.path()) } else { e.metadata().is_ok_and(|m| m.len() > 0) }))
        .unwrap_or(false)
}

struct S3Server {
    child: Child,
    addr: String,
    root: PathBuf,
    implementation: Implementation,
}

impl S3Server {
    fn start(implementation: Implementation, root: &Path, host: &str) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let child = implementation.command(root, host).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let addr = format!("{host}:9000");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the S3 server ({implementation:?}) does not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server { child, addr, root: root.to_path_buf(), implementation }
    }

    fn s3cmd(&self, args: &[&str]) -> Ran {
        run_bounded(
            Command::new("s3cmd")
                .args([
                    &format!("--access_key={KEY}"),
                    &format!("--secret_key={SECRET}"),
                    &format!("--host={}", self.addr),
                    &format!("--host-bucket={}", self.addr),
                    "--no-ssl",
                    "--region=us-east-1",
                    "--config=/dev/null",
                ])
                .args(args),
            Duration::from_secs(60),
        )
    }

    fn names(&self, prefix: &str) -> Vec<String> {
        let ls = self.s3cmd(&["ls", &format!("s3://{BUCKET}/{prefix}")]).assert_ok();
        let mut v: Vec<String> = ls.stdout.lines().filter_map(|l| l.rsplit_once('/').map(|(_, n)| n.to_string())).collect();
        v.sort();
        v
    }
}

impl S3Server {
    /// Stopped (by its PID) while `meanwhile` runs, then started again on the same folder and
    /// address: what it stored is kept.
    fn restart_after(&mut self, meanwhile: impl FnOnce()) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        meanwhile();
        let host = self.addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap();
        *self = S3Server::start(self.implementation, &self.root.clone(), &host);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd-bootstrap with the S3 settings in its environment (and a HOME without ~/.aws).
fn boot_s3(spec: &Path, server: &S3Server, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("etcd-bootstrap"));
    cmd.arg("-f")
        .arg(spec)
        .args(args)
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://{}", server.addr));
    cmd
}

fn uploaded_name(r: &Ran) -> String {
    let url = r.stdout.lines().find_map(|l| l.strip_prefix("uploaded to ")).unwrap_or_else(|| panic!("no upload line: {}{}", r.stdout, r.stderr));
    url.split_whitespace().next().unwrap().rsplit_once('/').unwrap().1.to_string()
}

#[test]
fn backups_go_off_host_to_s3s_fs_verified_pruned_restored_and_never_half_uploaded() {
    off_host(Implementation::S3sFs);
}

#[test]
fn backups_go_off_host_to_versitygw_verified_pruned_restored_and_never_half_uploaded() {
    off_host(Implementation::Versitygw);
}

fn off_host(implementation: Implementation) {
    let (tmp, spec, _down): (tempfile::TempDir, PathBuf, Down) = up_cluster();
    let dir = tmp.path();
    let eps = spec_endpoints(&spec);
    let [a, b, c] = integration_tests::cluster::free_subnet(1);
    let server = S3Server::start(implementation, &dir.join("s3"), &format!("{a}.{b}.{c}.1"));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let local = dir.join("local-backups");
    let to = format!("s3://{BUCKET}/etcd/prod");
    // an object of someone else's under the prefix
    std::fs::write(dir.join("notes.txt"), "not a backup").unwrap();
    server.s3cmd(&["put", dir.join("notes.txt").to_str().unwrap(), &format!("s3://{BUCKET}/etcd/prod/notes.txt")]).assert_ok();

    node_etcdctl(&node_pki(dir), &eps, &["put", "/kept", "in-the-first-backup"]).assert_ok();
    let backup = |extra: &str| {
        node_etcdctl(&node_pki(dir), &eps, &["put", "/later", extra]).assert_ok();
        run_bounded(&mut boot_s3(&spec, &server, &home, &["backup", "--dir", local.to_str().unwrap(), "--keep", "2", "--to", &to]), Duration::from_secs(120))
    };
    let first = backup("1");
    assert!(first.ok(), "{}{}", first.stdout, first.stderr);
    let name = uploaded_name(&first);
    assert!(first.stderr.contains("read back, SHA-256 the same"), "{}", first.stderr);
    // s3cmd fetches exactly the local snapshot
    let fetched = dir.join("fetched.db");
    server.s3cmd(&["get", "--force", &format!("{to}/{name}"), fetched.to_str().unwrap()]).assert_ok();
    assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(local.join(&name)).unwrap(), "the object is the local snapshot, byte for byte");
    // --keep 2 on the prefix: the oldest of three goes, someone else's object stays
    // (within one second, the revision in the names orders them)
    let second = backup("2");
    let third = backup("3");
    assert!(second.ok() && third.ok(), "{}{}", third.stdout, third.stderr);
    let names = server.names("etcd/prod/");
    let want = {
        let mut w = vec![uploaded_name(&second), uploaded_name(&third), "notes.txt".to_string()];
        w.sort();
        w
    };
    assert_eq!(names, want, "the newest two backups and the foreign object");

    // doctor judges the off-host copy's age
    let d = run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).args(["doctor", "-w", "json"]), Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let off: Vec<&serde_json::Value> = v["checks"].as_array().unwrap().iter().filter(|c| c["name"] == "backup-offsite").collect();
    assert!(off.len() == 1 && off[0]["level"] == "OK" && off[0]["evidence"].as_str().unwrap().contains(&uploaded_name(&third)), "{}", d.stdout);

    // restore straight from the bucket
    let r = run_bounded(&mut boot_s3(&spec, &server, &home, &["restore", &format!("{to}/{}", uploaded_name(&second)), "--force"]), Duration::from_secs(180));
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    assert_eq!(node_etcdctl(&node_pki(dir), &eps, &["get", "/later", "--print-value-only"]).assert_ok().stdout.trim(), "2", "the state of the second backup");
    assert!(!std::fs::read_dir(dir).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with(".restore-")), "the fetched snapshot is gone");

    // no credentials: refused before any snapshot is taken
    let before = std::fs::read_dir(&local).unwrap().count();
    let mut nocreds = boot_s3(&spec, &server, &home, &["backup", "--dir", local.to_str().unwrap(), "--to", &to]);
    nocreds.env_remove("AWS_ACCESS_KEY_ID");
    let n = run_bounded(&mut nocreds, Duration::from_secs(60));
    assert!(!n.ok() && n.stderr.contains("no S3 credentials"), "{}", n.stderr);
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), before);
    // a wrong secret: the server's own refusal, by its code, and the local copy kept
    let mut wrong = boot_s3(&spec, &server, &home, &["backup", "--dir", local.to_str().unwrap(), "--to", &to]);
    wrong.env("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789");
    let w = run_bounded(&mut wrong, Duration::from_secs(60));
    assert!(!w.ok() && w.stderr.contains("SignatureDoesNotMatch") && w.stderr.contains("the backup is kept here: "), "{implementation:?}: {}", w.stderr);

    // an upload cut off midway: ~40 MB so that it takes several parts; the server killed once
    // the first part is on its disk
    let values: Vec<(String, String)> = (0..4000).map(|i| (format!("/bulk/{i:05}"), "x".repeat(10_000))).collect();
    put_in_txns(&node_etcdctl_cmd(&node_pki(dir), &eps), dir, &values);
    let mut server = server;
    let mut cut = boot_s3(&spec, &server, &home, &["backup", "--dir", local.to_str().unwrap(), "--to", &to]);
    let mut running = cut.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let part_seen = loop {
        if server.implementation.holds_a_part(&server.root) {
            break true;
        }
        if Instant::now() > deadline || running.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(part_seen, "the upload never started");
    let _ = server.child.kill();
    let _ = server.child.wait();
    let out = running.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cut upload fails the backup");
    let kept = stderr.split("the backup is kept here: ").nth(1).map(|s| s.trim().to_string()).unwrap_or_else(|| panic!("says where the backup is: {stderr}"));
    assert!(Path::new(&kept).is_file(), "{kept}");
    let name = Path::new(&kept).file_name().unwrap().to_string_lossy().into_owned();
    let server = S3Server::start(implementation, &server.root.clone(), &format!("{a}.{b}.{c}.1"));
    assert!(!server.names("etcd/prod/").contains(&name), "no object under the cut backup's name");
}

/// The follower's last sealed revision (its `continuous.json`).
fn sealed_to(spec: &Path) -> i64 {
    let p = spec.with_file_name(format!("{}.journal", spec.file_name().unwrap().to_string_lossy())).join("continuous.json");
    std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|v| v["sealed_to"].as_i64()).unwrap_or(0)
}

#[test]
fn the_continuous_history_goes_off_host_encrypted_and_restores_to_a_revision_from_the_bucket() {
    let (tmp, spec, _down): (tempfile::TempDir, PathBuf, Down) = up_cluster();
    let dir = tmp.path();
    let eps = spec_endpoints(&spec);
    let [a, b, c] = integration_tests::cluster::free_subnet(1);
    let server = S3Server::start(Implementation::S3sFs, &dir.join("s3"), &format!("{a}.{b}.{c}.1"));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let key = dir.join("age-key.txt");
    let keygen = integration_tests::tool("age-keygen", "AGE_KEYGEN_BIN");
    run_bounded(Command::new(&keygen).arg("-o").arg(&key), Duration::from_secs(20)).assert_ok();
    let public = run_bounded(Command::new(&keygen).arg("-y").arg(&key), Duration::from_secs(20)).assert_ok().stdout.trim().to_string();
    let local = dir.join("history");
    let to = format!("s3://{BUCKET}/etcd/pitr");
    let args = ["backup", "--continuous", "--dir", local.to_str().unwrap(), "--encrypt-to", &public, "--to", &to, "--segment-seconds", "1"];
    let follower = integration_tests::start_until_stderr_says(&mut boot_s3(&spec, &server, &home, &args), "continuous: following ", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("the follower never followed:\n{e}"));
    let put = |k: &str, v: &str| node_etcdctl(&node_pki(dir), &eps, &["put", k, v]).assert_ok();
    put("/pitr/a", "1");
    put("/pitr/b", "gone-later");
    // the bucket goes away for a while: the segments are sealed in the folder and their uploads
    // wait; once it is back, the follower uploads them by itself (no write needed)
    let mut wanted = 0;
    let mut server = server;
    server.restart_after(|| {
        put("/pitr/a", "2");
        let at = node_etcdctl(&node_pki(dir), &eps, &["get", "/pitr/a", "-w", "json"]).assert_ok();
        wanted = serde_json::from_str::<serde_json::Value>(&at.stdout).unwrap()["header"]["revision"].as_i64().unwrap();
        node_etcdctl(&node_pki(dir), &eps, &["del", "/pitr/b"]).assert_ok();
        put("/pitr/a", "3");
        let deadline = Instant::now() + Duration::from_secs(60);
        while sealed_to(&spec) < wanted + 2 {
            assert!(Instant::now() < deadline, "the follower never sealed revision {}", wanted + 2);
            std::thread::sleep(Duration::from_millis(50));
        }
        let said = || follower.stderr.lock().unwrap().join("\n");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !said().contains("not uploaded yet") {
            assert!(Instant::now() < deadline, "no failed upload said while the bucket was down:\n{}", said());
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !follower.stderr.lock().unwrap().iter().any(|l| l.contains("that had waited: the bucket holds the whole chain again")) {
        assert!(Instant::now() < deadline, "the waiting segments were never uploaded:\n{}", follower.stderr.lock().unwrap().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    integration_tests::signal(follower.pid(), integration_tests::Signal::Term);
    assert_eq!(follower.wait(Duration::from_secs(30)), Some(0));

    // every file is in the bucket, byte for byte, and none holds a byte in the clear
    let mut files: Vec<String> =
        std::fs::read_dir(&local).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    files.sort();
    assert!(files.iter().any(|n| n.ends_with(".db.age")) && files.iter().any(|n| n.ends_with(".changes.age")), "{files:?}");
    assert_eq!(server.names("etcd/pitr/"), files);
    let copy = dir.join("from-the-bucket");
    std::fs::create_dir_all(&copy).unwrap();
    for n in &files {
        let bytes = std::fs::read(local.join(n)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{n} is not age-encrypted");
        server.s3cmd(&["get", "--force", &format!("{to}/{n}"), copy.join(n).to_str().unwrap()]).assert_ok();
        assert_eq!(std::fs::read(copy.join(n)).unwrap(), bytes, "{n}: the object is the local file");
    }
    // straight from the bucket: a revision past its history is refused before anything is
    // fetched or stopped, naming what the prefix reaches; then the restore to the revision
    // fetches only what its route needs (the identity decrypts in memory)
    let key_arg = key.to_str().unwrap();
    let past = (wanted + 1000).to_string();
    let no = run_bounded(
        &mut boot_s3(&spec, &server, &home, &["restore", "--from", &to, "--to-revision", &past, "--identity", key_arg, "--force"]),
        Duration::from_secs(60),
    );
    assert!(!no.ok(), "{}{}", no.stdout, no.stderr);
    assert!(no.stderr.contains(&format!("revision {past} cannot be reached from {to}: it reaches revision")), "{}", no.stderr);
    assert!(!no.stderr.contains("fetched"), "fetched before refusing: {}", no.stderr);
    let r = run_bounded(
        &mut boot_s3(&spec, &server, &home, &["restore", "--from", &to, "--to-revision", &wanted.to_string(), "--identity", key_arg, "--force"]),
        Duration::from_secs(180),
    );
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("history: {to}/: ")) && r.stderr.contains(" files, "), "{}", r.stderr);
    let journal = spec.with_file_name(format!("{}.journal", spec.file_name().unwrap().to_string_lossy()));
    let left: Vec<String> = std::fs::read_dir(&journal).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.starts_with(".history-") || n.starts_with("pitr-")), "fetched or replayed files left: {left:?}");
    let get = |k: &str| node_etcdctl(&node_pki(dir), &eps, &["get", k, "--print-value-only"]).assert_ok().stdout.trim().to_string();
    assert_eq!((get("/pitr/a"), get("/pitr/b")), ("2".to_string(), "gone-later".to_string()));

    // followed again with --keep 1: the restored cluster's history below the old one's is
    // compacted, so a new full snapshot starts a new chain, and the old snapshot and every old
    // segment go, here and under the prefix
    let mut args = args.to_vec();
    args.extend(["--keep", "1"]);
    let again = integration_tests::start_until_stderr_says(&mut boot_s3(&spec, &server, &home, &args), "keep: removed s3://", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("no old segment removed under the prefix:\n{e}"));
    integration_tests::signal(again.pid(), integration_tests::Signal::Term);
    let said = again.stderr.lock().unwrap().join("\n");
    assert_eq!(again.wait(Duration::from_secs(30)), Some(0));
    assert!(said.contains("full snapshot: "), "{said}");
    let mut left: Vec<String> =
        std::fs::read_dir(&local).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    left.sort();
    assert!(left.iter().filter(|n| n.ends_with(".db.age")).count() == 1 && !left.iter().any(|n| files.contains(n)), "old files left: {left:?}");
    assert_eq!(server.names("etcd/pitr/"), left, "the prefix holds what the folder holds");
}
