//! Benchmark (not a test; run by `bench/members.sh`): how the time of each operation grows with
//! the members. The same operations on local clusters of 3, 5 and 7 members, in one run: `up`,
//! `rotate certs`, the staged `rotate ca` (its three stops), `replace` of a killed member, and
//! `upgrade` 3.6 -> 3.7. The peer is the 3-member cluster: each operation's time per member at 5
//! and 7 against its time per member at 3. Target: at most linear growth (ratio <= 1.0, with 10%
//! for noise).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::bootstrap::{Down, boot, local_spec_of, on_etcd_with_bin_dirs};
use integration_tests::{Signal, signal, workspace_root};
use std::path::Path;
use std::time::{Duration, Instant};

const OPERATIONS: [&str; 5] = ["up", "rotate certs", "rotate ca", "replace", "upgrade"];

fn line(minor: &str) -> String {
    workspace_root().join(format!(".etcd/go-{minor}")).display().to_string()
}

fn ok(spec: &Path, args: &[&str]) -> String {
    let r = boot(spec, args);
    assert!(r.ok(), "{args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// Milliseconds of each operation on a fresh cluster of `n`.
fn one_round(n: usize) -> Vec<u128> {
    let tmp = tempfile::tempdir().unwrap();
    let spec = local_spec_of(tmp.path(), n, 1).path;
    on_etcd_with_bin_dirs(&spec, &format!("{}/etcd", line("3.6")));
    let _down = Down(spec.clone());
    let mut ms = vec![];
    let mut timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_millis());
    };
    timed(&mut || {
        ok(&spec, &["up"]);
    });
    timed(&mut || {
        ok(&spec, &["rotate", "certs"]);
    });
    timed(&mut || {
        ok(&spec, &["rotate", "ca"]);
        ok(&spec, &["rotate", "ca", "--continue"]);
        ok(&spec, &["rotate", "ca", "--continue"]);
    });
    let victim = format!("etcd-{n}");
    let pid: u32 = std::fs::read_to_string(tmp.path().join(format!("members/{victim}/{victim}.pid"))).unwrap().trim().parse().unwrap();
    signal(pid, Signal::Kill);
    let deadline = Instant::now() + Duration::from_secs(30);
    while boot(&spec, &["status"]).code != Some(1) {
        assert!(Instant::now() < deadline, "not DEGRADED after {victim} died");
        std::thread::sleep(Duration::from_millis(100));
    }
    timed(&mut || {
        ok(&spec, &["replace", &victim]);
    });
    timed(&mut || {
        ok(&spec, &["upgrade", "--to", &line("3.7")]);
    });
    ms
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sizes = [3usize, 5, 7];
    // per size, per operation: the times of every round
    let mut times = vec![vec![vec![]; OPERATIONS.len()]; sizes.len()];
    for r in 1..=rounds {
        for (s, &n) in sizes.iter().enumerate() {
            let ms = one_round(n);
            eprintln!("round {r}/{rounds}, {n} members: {}", OPERATIONS.iter().zip(&ms).map(|(o, m)| format!("{o} {m} ms")).collect::<Vec<_>>().join(", "));
            for (o, m) in ms.into_iter().enumerate() {
                times[s][o].push(m);
            }
        }
    }
    println!("| operation | 3 members | 5 members | 7 members | per member, 5 : 3 | per member, 7 : 3 | target <= 1.1 |");
    println!("|---|---|---|---|---|---|---|");
    for (o, op) in OPERATIONS.iter().enumerate() {
        let m: Vec<u128> = (0..sizes.len()).map(|s| median(times[s][o].clone())).collect();
        let per = |s: usize| m[s] as f64 / sizes[s] as f64;
        let (r5, r7) = (per(1) / per(0), per(2) / per(0));
        let met = if r5 <= 1.1 && r7 <= 1.1 { "met" } else { "MISSED" };
        println!("| {op} | {} ms | {} ms | {} ms | {r5:.2} | {r7:.2} | {met} |", m[0], m[1], m[2]);
    }
    println!("\nmedians of {rounds} rounds; etcd 3.6 -> 3.7 ({} -> {})", line("3.6"), line("3.7"));
}
