//! Benchmark (not a test; run by `bench/ssh.sh`): `etcd-bootstrap up` of three members over real
//! SSH to network-namespace hosts against the same `up` with `host: local` on loopback, alternating,
//! in one run. Both sides run the same etcd and do the same work (certificates, preflight, files,
//! start, quorum, outputs); the difference is the transport. Target: SSH <= 1.5x local.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::bootstrap::{Down, K8S_VERSION, etcd_binary, local_spec};
use integration_tests::netns::Hosts;
use integration_tests::{bin, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn ssh_spec(dir: &Path, hosts: &Hosts) -> std::path::PathBuf {
    let members = hosts.member_entries(dir);
    let prefix = hosts.hosts[0].address.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap();
    let spec = dir.join("cluster.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: bench-ssh\netcd_binary: {}\nmembers:\n{members}kubernetes:\n  version: {K8S_VERSION}\n  allow_old_etcd: true\n  control_plane_endpoint: {prefix}.50:6443\n  control_plane_nodes:\n    - {{name: cp-1, address: {prefix}.51}}\n",
            etcd_binary().display()
        ),
    )
    .unwrap();
    spec
}

/// Milliseconds of one `up` from nothing (the PKI and members' folders removed first), then down --purge.
fn one_up(spec: &Path, fresh: &[&Path]) -> u128 {
    for d in fresh {
        let _ = std::fs::remove_dir_all(d);
    }
    let t = Instant::now();
    let up = run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(spec).arg("up"), Duration::from_secs(120));
    let ms = t.elapsed().as_millis();
    assert!(up.ok(), "up failed: {}{}", up.stdout, up.stderr);
    run_bounded(Command::new(bin("etcd-bootstrap")).arg("-f").arg(spec).args(["down", "--purge"]), Duration::from_secs(60)).assert_ok();
    ms
}

fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    let (ssh_dir, local_dir) = (tmp.path().join("ssh"), tmp.path().join("local"));
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::create_dir_all(&local_dir).unwrap();
    let hosts = Hosts::create(3, &ssh_dir);
    let ssh = ssh_spec(&ssh_dir, &hosts);
    let local = local_spec(&local_dir, 1).path;
    let (_d1, _d2) = (Down(ssh.clone()), Down(local.clone()));
    let ssh_fresh: Vec<std::path::PathBuf> = ["pki", "out", "host-1", "host-2", "host-3"].iter().map(|d| ssh_dir.join(d)).collect();
    let local_fresh: Vec<std::path::PathBuf> = ["pki", "out", "members"].iter().map(|d| local_dir.join(d)).collect();
    let (mut s, mut l) = (Vec::new(), Vec::new());
    for r in 1..=runs {
        s.push(one_up(&ssh, &ssh_fresh.iter().map(|p| p.as_path()).collect::<Vec<_>>()));
        l.push(one_up(&local, &local_fresh.iter().map(|p| p.as_path()).collect::<Vec<_>>()));
        eprintln!("round {r}/{runs}: up over ssh {} ms, up local {} ms", s[r - 1], l[r - 1]);
    }
    let (ms, ml) = (median(&mut s), median(&mut l));
    let ratio = ms as f64 / ml as f64;
    println!("| measure | up over SSH (3 netns hosts) | up with host: local | ratio | target |");
    println!("|---|---|---|---|---|");
    println!("| median ms | {ms} | {ml} | {ratio:.2} | <= 1.5: {} |", if ratio <= 1.5 { "met" } else { "MISSED" });
    println!("| min..max ms | {}..{} | {}..{} | | |", s[0], s[s.len() - 1], l[0], l[l.len() - 1]);
    println!("\n{runs} alternating rounds, etcd {}", etcd_binary().display());
}
