//! A first `up` whose members never form a cluster (issue 34): `up` says so with the causes it
//! read from the members' logs, stops them, and leaves nothing under way, so `down --purge`
//! cleans up and `up` with the fault fixed succeeds. Locally with a wrong address (two members'
//! addresses are on test namespaces, not this machine), and over SSH with a firewall on
//! three namespace hosts dropping what goes to the peer port.

use integration_tests::Ran;
use integration_tests::bootstrap::{Down, K8S_VERSION, boot, etcd_binary};
use integration_tests::netns::Hosts;
use std::path::Path;
use std::process::Command;

fn spec_text(name: &str, members: &str, lb: &str) -> String {
    format!(
        "name: {name}\netcd_binary: {etcd}\nmembers:\n{members}kubernetes:\n  version: {K8S_VERSION}\n  allow_old_etcd: true\n  control_plane_endpoint: lb.example.internal:6443\n  control_plane_nodes:\n    - {{name: cp-1, address: {lb}}}\n",
        etcd = etcd_binary().display(),
    )
}

fn local_members(dir: &Path, addresses: &[String]) -> String {
    addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let home = dir.join(format!("members/etcd-{}", i + 1));
            format!(
                "  - {{name: etcd-{}, address: {a}, data_dir: {}, pki_dir: {}, run_dir: {}}}\n",
                i + 1,
                home.join("data").display(),
                home.join("pki").display(),
                home.display()
            )
        })
        .collect()
}

/// No etcd of this spec runs: every pid file beside it is gone or names no live process.
fn none_running(dir: &Path) -> bool {
    let mut pids = vec![];
    collect_pid_files(dir, &mut pids);
    pids.iter().all(|p| {
        let pid = std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
        pid.is_empty() || !Path::new(&format!("/proc/{pid}")).exists()
    })
}

fn collect_pid_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            collect_pid_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "pid") {
            out.push(p);
        }
    }
}

/// `up` gave up the way issue 34 asks: it says the members never formed a cluster, names
/// `cause`, says how to start over, stopped them, and left nothing under way.
fn gave_up_cleanly(up: &Ran, dir: &Path, spec: &Path, cause: &str) {
    assert!(!up.ok(), "up should fail:\n{}\n{}", up.stdout, up.stderr);
    let err = &up.stderr;
    assert!(
        err.contains("the members never formed a cluster within 10s (no leader was ever elected); etcd-1, etcd-2, etcd-3 stopped, nothing lasting was made"),
        "{err}"
    );
    assert!(err.contains(cause), "names the cause {cause:?}: {err}");
    assert!(
        err.contains(&format!("start over: etcd-bootstrap -f {} down --purge, fix the spec, then etcd-bootstrap -f {} up", spec.display(), spec.display())),
        "{err}"
    );
    assert!(none_running(dir), "every member was stopped: {err}");
    assert!(integration_tests::bootstrap::under_way(spec).is_empty(), "nothing under way: {:?}", integration_tests::bootstrap::under_way(spec));
}

#[test]
fn a_local_up_at_a_wrong_address_is_undone_by_down_purge_and_the_fixed_spec_comes_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // two addresses that live on test namespaces, not on this machine: those members cannot bind
    let hosts = Hosts::create(2, dir);
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let first = format!("{a}.{b}.{c}.1");
    let wrong = [first.clone(), hosts.hosts[0].address.clone(), hosts.hosts[1].address.clone()];
    let spec = dir.join("cluster.yaml");
    std::fs::write(&spec, spec_text(&format!("nf-{b}-{c}"), &local_members(dir, &wrong), &format!("{a}.{b}.{c}.100"))).unwrap();
    let _down = Down(spec.clone());
    let up = boot(&spec, &["up", "--wait", "10"]);
    gave_up_cleanly(&up, dir, &spec, "member etcd-2: exited: ");
    assert!(up.stderr.contains("member etcd-3: exited: "), "{}", up.stderr);
    assert!(up.stderr.contains("bind: cannot assign requested address"), "{}", up.stderr);
    assert!(up.stderr.contains(&format!("member etcd-1: cannot reach the peer at {}:2380: connection refused", wrong[1])), "{}", up.stderr);
    let data = dir.join("members/etcd-1/data");
    assert!(data.exists(), "the attempt made a data dir");

    let purge = boot(&spec, &["down", "--purge"]);
    assert!(purge.ok(), "down --purge is allowed now: {}\n{}", purge.stdout, purge.stderr);
    assert!(!data.exists(), "and removed what the attempt made");

    let fixed: Vec<String> = (1..=3).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    std::fs::write(&spec, spec_text(&format!("nf-{b}-{c}"), &local_members(dir, &fixed), &format!("{a}.{b}.{c}.100"))).unwrap();
    let up = boot(&spec, &["up", "--wait", "60"]);
    assert!(up.ok() && up.stdout.contains("HEALTHY"), "the fixed spec comes up:\n{}\n{}", up.stdout, up.stderr);
}

#[test]
fn over_ssh_peers_behind_a_firewall_are_stopped_purged_and_come_up_once_it_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hosts = Hosts::create(3, dir);
    let spec = dir.join("cluster.yaml");
    let lb = hosts.hosts[0].address.rsplit_once('.').map(|(p, _)| format!("{p}.50")).unwrap();
    std::fs::write(&spec, spec_text("nf-ssh", &hosts.member_entries(dir), &lb)).unwrap();
    let _down = Down(spec.clone());
    // a firewall on every host drops what it sends to a peer port (SSH from here still works)
    let firewall = |rules: &[&str]| {
        for h in &hosts.hosts {
            let out = Command::new("ip").args(["netns", "exec", &h.namespace, "nft"]).args(rules).output().expect("nft (Debian's nftables)");
            assert!(out.status.success(), "nft {rules:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    firewall(&["add", "table", "inet", "it"]);
    firewall(&["add", "chain", "inet", "it", "out", "{ type filter hook output priority 0; }"]);
    firewall(&["add", "rule", "inet", "it", "out", "tcp", "dport", "2380", "drop"]);
    let up = boot(&spec, &["up", "--wait", "10"]);
    gave_up_cleanly(&up, dir, &spec, "timed out (a firewall dropping packets, or a wrong address)");
    let refused = boot(&spec, &["status"]);
    assert!(!refused.ok(), "nothing runs: {}", refused.stdout);

    let purge = boot(&spec, &["down", "--purge"]);
    assert!(purge.ok(), "down --purge is allowed now: {}\n{}", purge.stdout, purge.stderr);
    for h in &hosts.hosts {
        assert!(!dir.join(&h.name).join("var/lib/etcd").exists(), "{}: data dir removed", h.name);
    }
    firewall(&["delete", "table", "inet", "it"]);
    let up = boot(&spec, &["up", "--wait", "60"]);
    assert!(up.ok() && up.stdout.contains("HEALTHY"), "the firewall open, it comes up:\n{}\n{}", up.stdout, up.stderr);
}
