//! The Debian package (scripts/build-deb.sh, dpkg-deb): lintian (Debian's package checker) finds
//! no error and no warning in it, and what it holds works from its own usr/bin as the only PATH
//! entry for the toolkit: `cfssl version` through the link, `pki --version`, the man pages render,
//! and its `etcd-bootstrap` brings a cluster up and its `etcdctl-lite` judges it. The package is
//! unpacked into a temporary root (`dpkg-deb -x`), never installed into this machine.

use integration_tests::bootstrap::local_spec;
use integration_tests::{run_bounded, tool, workspace_root};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_package_passes_lintian_and_its_binaries_work_from_its_own_bin() {
    let tmp = tempfile::tempdir().unwrap();
    let built = run_bounded(
        Command::new("bash").arg(workspace_root().join("scripts/build-deb.sh")).arg(tmp.path().join("out")).env("PROFILE", "debug"),
        Duration::from_secs(120),
    )
    .assert_ok();
    let deb = built.stdout.trim().to_string();
    assert!(deb.ends_with("_amd64.deb") || deb.ends_with(".deb"), "{}", built.stdout);
    let lintian = run_bounded(Command::new(tool("lintian", "LINTIAN_BIN")).args(["--fail-on", "error,warning", &deb]), Duration::from_secs(120));
    assert!(lintian.ok(), "lintian: {}{}", lintian.stdout, lintian.stderr);
    let listing = run_bounded(Command::new("dpkg-deb").args(["--contents", &deb]), Duration::from_secs(30)).assert_ok().stdout;
    for f in ["./usr/bin/cfssl -> pki", "./usr/bin/etcd-bootstrap", "./usr/share/man/man1/etcdctl-lite.1.gz", "./usr/share/bash-completion/completions/pki"] {
        assert!(listing.contains(f), "{f} in the package:\n{listing}");
    }
    let root = tmp.path().join("root");
    run_bounded(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root), Duration::from_secs(30)).assert_ok();
    let bin = root.join("usr/bin");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let run = |cmd: &str, args: &[&str]| run_bounded(Command::new(bin.join(cmd)).args(args).env("PATH", &path), Duration::from_secs(120));
    assert!(run("cfssl", &["version"]).assert_ok().stdout.contains("Version"), "cfssl answers as cfssl through its link");
    assert!(run("pki", &["--version"]).assert_ok().stdout.contains("etcd"), "--version names the etcd lines");
    for page in ["pki", "etcdctl-lite", "etcd-bootstrap", "cfssl"] {
        let man = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let shown = run_bounded(Command::new(tool("man", "MAN_BIN")).arg("-l").arg(&man).env("MANPAGER", "cat").env("COLUMNS", "100"), Duration::from_secs(30));
        assert!(shown.ok() && shown.stdout.contains("NAME"), "man -l {}: {}", man.display(), shown.stderr);
    }
    // a cluster from the packaged etcd-bootstrap, judged by the packaged etcdctl-lite
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = local_spec(&dir, 1);
    let _down = integration_tests::bootstrap::Down(spec.path.clone());
    let etcd_dir = Path::new(&tool("etcd", "ETCD_BIN")).parent().map(|p| p.display().to_string()).unwrap_or_default();
    let with_etcd = format!("{path}:{etcd_dir}");
    let up = run_bounded(
        Command::new(bin.join("etcd-bootstrap")).arg("-f").arg(&spec.path).args(["up", "-w", "json"]).env("PATH", &with_etcd),
        Duration::from_secs(120),
    );
    assert!(up.ok(), "{}{}", up.stdout, up.stderr);
    let summary: serde_json::Value = serde_json::from_str(&up.stdout).unwrap();
    assert_eq!(summary["state"], "HEALTHY", "{summary}");
    let files = &summary["outputs"]["healthcheck"];
    let q = run_bounded(
        Command::new(bin.join("etcdctl-lite"))
            .arg("quorum")
            .env("ETCDCTL_ENDPOINTS", &spec.endpoints)
            .env("ETCDCTL_CACERT", files["cacert"].as_str().unwrap())
            .env("ETCDCTL_CERT", files["cert"].as_str().unwrap())
            .env("ETCDCTL_KEY", files["key"].as_str().unwrap()),
        Duration::from_secs(30),
    );
    assert!(q.ok() && q.stdout.contains("HEALTHY"), "{}{}", q.stdout, q.stderr);
}
