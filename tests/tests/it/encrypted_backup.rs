//! Encrypted backups, checked by an independent implementation: Debian's `age` CLI (the Go
//! reference) decrypts what `backup --encrypt-to` wrote, with an age key and with an SSH key,
//! byte for byte the snapshot the backup verified and reported, at the revision and with the keys
//! of the unencrypted backup taken just before; the plaintext is never in the
//! backup folder; `restore --identity` brings the cluster back from it; a missing or wrong
//! identity changes nothing.

use integration_tests::bootstrap::{Down, boot, node_etcdctl, node_pki, spec_endpoints, up_cluster};
use integration_tests::{Ran, run_bounded, tool};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn age(args: &[&str]) -> Ran {
    run_bounded(Command::new(tool("age", "AGE_BIN")).args(args), Duration::from_secs(60))
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// etcdutl's (or, on 3.4, etcdctl's) `snapshot status`: hash, revision, total keys.
fn etcdutl_status(path: &str) -> (u64, i64, u64) {
    let etcd = integration_tests::bootstrap::etcd_binary();
    let (tool, api) = match etcd.with_file_name("etcdutl") {
        u if u.exists() => (u, None),
        _ => (etcd.with_file_name("etcdctl"), Some("3")),
    };
    let mut cmd = Command::new(tool);
    if let Some(a) = api {
        cmd.env("ETCDCTL_API", a);
    }
    let out = run_bounded(cmd.args(["snapshot", "status", path, "-w", "json"]), Duration::from_secs(60)).assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    (v["hash"].as_u64().unwrap(), v["revision"].as_i64().unwrap(), v["totalKey"].as_u64().unwrap())
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn get(dir: &Path, eps: &str, key: &str) -> String {
    node_etcdctl(&node_pki(dir), eps, &["get", key, "--print-value-only"]).assert_ok().stdout.trim().to_string()
}

#[test]
fn an_encrypted_backup_is_age_readable_and_restores_with_the_identity() {
    let (tmp, spec, _down): (tempfile::TempDir, std::path::PathBuf, Down) = up_cluster();
    let dir = tmp.path();
    let eps = spec_endpoints(&spec);
    node_etcdctl(&node_pki(dir), &eps, &["put", "/registry/secrets/default/db", "secret-value-4242"]).assert_ok();
    // an age key (age-keygen, the reference tool) and an SSH key
    let key = dir.join("age-key.txt");
    run_bounded(Command::new(tool("age-keygen", "AGE_KEYGEN_BIN")).arg("-o").arg(&key), Duration::from_secs(20)).assert_ok();
    let age_public =
        run_bounded(Command::new(tool("age-keygen", "AGE_KEYGEN_BIN")).arg("-y").arg(&key), Duration::from_secs(20)).assert_ok().stdout.trim().to_string();
    let ssh_key = dir.join("id_ed25519");
    run_bounded(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&ssh_key), Duration::from_secs(20)).assert_ok();
    let ssh_public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap().trim().to_string();

    // bad recipients: refused, nothing written
    let sealed_dir = dir.join("sealed");
    let bad = boot(&spec, &["backup", "--dir", &sealed_dir.display().to_string(), "--encrypt-to", "age1nope"]).assert_fails();
    assert!(bad.stderr.contains("--encrypt-to: \"age1nope\" is neither an age public key"), "{}", bad.stderr);
    assert!(files_in(&sealed_dir).is_empty());

    // the same revision, in the clear and encrypted to both keys
    let plain_dir = dir.join("plain");
    let plain = boot(&spec, &["backup", "--dir", &plain_dir.display().to_string(), "-w", "json"]).assert_ok();
    let plain: serde_json::Value = serde_json::from_str(&plain.stdout).unwrap();
    let sealed = boot(&spec, &["backup", "--dir", &sealed_dir.display().to_string(), "--encrypt-to", &age_public, "--encrypt-to", &ssh_public, "-w", "json"]);
    assert!(sealed.ok(), "{}{}", sealed.stdout, sealed.stderr);
    assert!(sealed.stderr.contains("encrypted to 2 recipient(s); the plaintext stayed in memory"), "{}", sealed.stderr);
    let sealed: serde_json::Value = serde_json::from_str(&sealed.stdout).unwrap();
    assert_eq!(sealed["revision"], plain["revision"]);
    let file = Path::new(sealed["path"].as_str().unwrap()).to_path_buf();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("-r{}.db.age", plain["revision"])), "{name}");
    // only the encrypted file, 0600, and no byte of the secret in it
    assert_eq!(files_in(&sealed_dir), std::slice::from_ref(&name));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(17).any(|w| w == b"secret-value-4242"), "the secret is readable in the encrypted backup");
    assert!(
        std::fs::read(plain["path"].as_str().unwrap()).unwrap().windows(17).any(|w| w == b"secret-value-4242"),
        "(the plain backup holds it: the check can fail)"
    );

    // the age CLI decrypts it with either key: byte for byte the plain backup
    for identity in [&key, &ssh_key] {
        let out = dir.join("decrypted.db");
        let _ = std::fs::remove_file(&out);
        age(&["-d", "-i", &identity.display().to_string(), "-o", &out.display().to_string(), &file.display().to_string()]).assert_ok();
        // exactly the snapshot backup verified and reported
        assert_eq!(sha256(&out), sealed["sha256"].as_str().unwrap(), "decrypted with {}", identity.display());
        // holding what the backup in the clear holds, as etcd's tool reads both (its hash also
        // covers etcd's own meta bucket, which moves between two snapshots: not compared)
        let plain_path = plain["path"].as_str().unwrap().to_string();
        let (_, rev, keys) = etcdutl_status(&out.display().to_string());
        let (_, plain_rev, plain_keys) = etcdutl_status(&plain_path);
        assert_eq!((rev, keys), (plain_rev, plain_keys));
        assert!(std::fs::read(&out).unwrap().windows(17).any(|w| w == b"secret-value-4242"));
    }

    // a write the restore takes back
    node_etcdctl(&node_pki(dir), &eps, &["put", "/after-backup", "x"]).assert_ok();
    let f = file.display().to_string();
    // no identity, or the wrong one: refused, nothing changed
    let none = boot(&spec, &["restore", &f, "--force"]).assert_fails();
    assert!(none.stderr.contains("the snapshot is age-encrypted; give --identity FILE"), "{}", none.stderr);
    let other = dir.join("other-key.txt");
    run_bounded(Command::new(tool("age-keygen", "AGE_KEYGEN_BIN")).arg("-o").arg(&other), Duration::from_secs(20)).assert_ok();
    let wrong = boot(&spec, &["restore", &f, "--force", "--identity", &other.display().to_string()]).assert_fails();
    assert!(wrong.stderr.contains("cannot decrypt it with the given identity"), "{}", wrong.stderr);
    assert_eq!(get(dir, &eps, "/after-backup"), "x", "nothing was changed");
    assert!(integration_tests::bootstrap::under_way(&spec).is_empty());

    // with the SSH key: restored, the write after the backup gone, the secret back
    let r = boot(&spec, &["restore", &f, "--force", "--identity", &ssh_key.display().to_string()]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("{f}: decrypted into memory")) && r.stderr.contains(&format!("snapshot: {f}: revision")), "{}", r.stderr);
    assert_eq!(get(dir, &eps, "/registry/secrets/default/db"), "secret-value-4242");
    assert_eq!(get(dir, &eps, "/after-backup"), "");
    assert_eq!(boot(&spec, &["status"]).code, Some(0));

    // retention counts encrypted backups as its own
    for i in 0..2 {
        node_etcdctl(&node_pki(dir), &eps, &["put", "/tick", &i.to_string()]).assert_ok();
        boot(&spec, &["backup", "--dir", &sealed_dir.display().to_string(), "--encrypt-to", &age_public, "--keep", "1"]).assert_ok();
    }
    let left = files_in(&sealed_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(".db.age"));
    // and the timer runs the same encrypted backup
    let timer = boot(&spec, &["backup", "--print-timer", "--encrypt-to", &ssh_public]).assert_ok();
    assert!(timer.stdout.contains(&format!("--encrypt-to \"{ssh_public}\"")), "{}", timer.stdout);
}
