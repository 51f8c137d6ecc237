//! Root writing where others can write (issue 32): every command that writes into a directory the
//! operator named refuses one another user could redirect (owned by someone else, or writable by
//! others, itself or above it), names it, and changes nothing; a symlink planted at the file's
//! name is replaced, never followed. A canary file outside is compared before and after.

use integration_tests::Ran;
use integration_tests::bootstrap::{boot, local_spec};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Contents, mode and owner of a file, to compare before and after.
fn fingerprint(p: &Path) -> (Vec<u8>, u32, u32) {
    let md = std::fs::symlink_metadata(p).unwrap();
    (std::fs::read(p).unwrap(), md.mode(), md.uid())
}

fn dir_with(parent: &Path, name: &str, mode: u32, owner: Option<u32>) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&d, Some(uid), None).unwrap();
    }
    d
}

fn refused(r: Ran, dir: &Path, why: &str) {
    assert!(!r.ok(), "should be refused: {}\n{}", r.stdout, r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("error")).unwrap_or_default().to_string();
    assert!(line.contains(&format!("{}: {why}", dir.display())), "names {} and why ({why}): {}", dir.display(), r.stderr);
    assert!(line.contains("chmod go-w") || line.contains("chown root"), "says the fix: {line}");
}

#[test]
fn writing_commands_refuse_directories_others_can_change_and_never_follow_a_planted_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = local_spec(dir, 1).path;
    let canary = dir.join("canary");
    std::fs::write(&canary, "secret").unwrap();
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = fingerprint(&canary);

    // a directory another user owns (as /var/lib/prometheus is the prometheus user's), with a
    // root-owned one inside it, and one every user can write
    let foreign = dir_with(dir, "foreign", 0o755, Some(65534));
    let inside = dir_with(&foreign, "node-exporter", 0o755, None);
    let open = dir_with(dir, "open", 0o777, None);
    let s = |p: &Path| p.display().to_string();

    refused(boot(&spec, &["doctor", "--textfile", &s(&inside)]), &foreign, "owned by");
    refused(boot(&spec, &["doctor", "--textfile", &s(&open)]), &open, "writable by every user");
    refused(boot(&spec, &["doctor", "--print-timer", "--textfile", &s(&inside)]), &foreign, "owned by");
    refused(boot(&spec, &["backup", "--dir", &s(&open.join("backups"))]), &open, "writable by every user");
    refused(boot(&spec, &["backup", "--dir", &s(&inside)]), &foreign, "owned by");
    let adopt = boot(
        &spec,
        &[
            "adopt",
            "--endpoints",
            "https://127.0.0.1:1",
            "--cacert",
            &s(&canary),
            "--cert",
            &s(&canary),
            "--key",
            &s(&canary),
            "-o",
            &s(&open.join("spec.yaml")),
        ],
    );
    refused(adopt, &open, "writable by every user");
    // restore s3:// fetches beside the spec: a spec in an open folder is refused before any request
    let moved = open.join("cluster.yaml");
    std::fs::copy(&spec, &moved).unwrap();
    let fetch = integration_tests::run_bounded(
        std::process::Command::new(integration_tests::bin("etcd-bootstrap"))
            .args(["-f", &s(&moved), "restore", "s3://bucket/it.db"])
            .env("AWS_ACCESS_KEY_ID", "AK")
            .env("AWS_SECRET_ACCESS_KEY", "SK")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        std::time::Duration::from_secs(60),
    );
    refused(fetch, &open, "writable by every user");
    for d in [&inside, &open] {
        let left: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "cluster.yaml").collect();
        assert!(left.is_empty(), "nothing written into {}: {left:?}", d.display());
    }

    // a trusted directory with a symlink planted at the textfile's name: replaced, not followed
    let textdir = dir_with(dir, "textfile", 0o755, None);
    std::os::unix::fs::symlink(&canary, textdir.join("etcd_bootstrap.prom")).unwrap();
    let r = boot(&spec, &["doctor", "-w", "prometheus", "--textfile", &s(&textdir)]);
    assert!(r.stdout.contains("etcd_bootstrap_"), "doctor ran: {}\n{}", r.stdout, r.stderr);
    let written = std::fs::symlink_metadata(textdir.join("etcd_bootstrap.prom")).unwrap();
    assert!(written.file_type().is_file(), "the link was replaced by a file");
    assert_eq!(written.mode() & 0o777, 0o644);
    // a symlink planted at adopt -o's name: refused (the spec is created new, O_EXCL), not followed
    let link = textdir.join("spec.yaml");
    std::os::unix::fs::symlink(&canary, &link).unwrap();
    let r =
        boot(&spec, &["adopt", "--endpoints", "https://127.0.0.1:1", "--cacert", &s(&canary), "--cert", &s(&canary), "--key", &s(&canary), "-o", &s(&link)]);
    assert!(!r.ok() && r.stderr.contains("-o"), "refused: {}", r.stderr);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link left as it was");
    assert_eq!(fingerprint(&canary), before, "the canary outside is unchanged (contents, mode, owner)");
}
