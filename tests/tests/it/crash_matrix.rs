//! The crash matrix: every operation killed (SIGKILL) at every step it prints, then run again.
//! After each kill another change is refused, naming the killed operation and the command that
//! finishes it; run again, the operation finishes, the cluster is HEALTHY with its three voters,
//! and nothing is left under way. (`replace` has its own matrix in `interlocks`; `restore` and
//! `upgrade` are killed midway in `disaster_recovery` and `lifecycle`.)

use integration_tests::bootstrap::{boot, journal, probe_refusal, under_way, up_cluster};
use integration_tests::{bin, start_until_stderr_says};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn boot_cmd(spec: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("etcd-bootstrap"));
    c.arg("-f").arg(spec).args(args);
    c
}

fn journal_is_empty(spec: &Path) -> bool {
    under_way(spec).is_empty()
}

/// Kills `args` when its stderr prints `step`. Another change is then refused, naming the
/// operation as stopped unfinished (or paused, when the kill landed after a rotation's stop), and
/// `again` goes on with it. A kill at the last step can land after the operation finished: then
/// nothing is under way and there is nothing to go on with.
pub(crate) fn kill_then_finish(spec: &Path, args: &[&str], step: &str, named: &str, again: &[&str]) {
    let needle = format!("] {step}");
    if let Err(stderr) = start_until_stderr_says(&mut boot_cmd(spec, args), &needle, Duration::from_secs(120)) {
        panic!("{args:?} never printed {needle:?}:\n{stderr}");
    }
    let Some((_, paused)) = journal(spec).into_iter().find(|(k, _)| *k == named.replace(' ', "-")) else {
        assert!(journal(spec).is_empty(), "{args:?} killed at {step:?}: {:?}", journal(spec));
        return;
    };
    let probe = probe_refusal(spec);
    assert_eq!(probe.code, Some(4), "{args:?} killed at {step:?}: another change must be refused: {}{}", probe.stdout, probe.stderr);
    // a kill after a rotation recorded its stop (ca-rotation.json) but before the journal did:
    // that record makes it paused too
    let standing = if paused || rotation_waits(spec) { "is paused since" } else { "stopped unfinished" };
    assert!(probe.stderr.contains(&format!("`{named}` {standing}")), "{args:?} killed at {step:?}: {}", probe.stderr);
    let r = boot(spec, again);
    assert!(r.ok(), "{again:?} after a kill at {step:?}: {}{}", r.stdout, r.stderr);
    let expect = if again == args { format!("resuming: `{named}`") } else { format!("note: `{named}` {standing}") };
    assert!(r.stderr.contains(&expect), "{again:?} after a kill at {step:?}: {}", r.stderr);
}

/// Whether a CA rotation's own record (beside the spec, in pki/etcd/) waits for the operator.
fn rotation_waits(spec: &Path) -> bool {
    let record = spec.with_file_name("pki").join("etcd/ca-rotation.json");
    std::fs::read_to_string(record).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).is_some_and(|v| v["waiting_for_operator"] == true)
}

pub(crate) fn healthy_and_clear(spec: &Path, after: &str) {
    assert_eq!(boot(spec, &["status"]).code, Some(0), "not HEALTHY after {after}");
    assert!(journal_is_empty(spec), "something still under way after {after}");
}

#[test]
fn rotate_certs_maintain_online_and_offline_down_and_up_killed_at_every_step_finish_when_run_again() {
    let (_tmp, spec, _down) = up_cluster();
    for step in ["renew:", "rotate etcd-1:", "rotate etcd-2:", "rotate etcd-3:"] {
        kill_then_finish(&spec, &["rotate", "certs", "--rekey"], step, "rotate certs", &["rotate", "certs", "--rekey"]);
        healthy_and_clear(&spec, &format!("rotate certs killed at {step}"));
    }
    for step in ["compact:", "defrag:", "disarm:"] {
        kill_then_finish(&spec, &["maintain"], step, "maintain", &["maintain"]);
        healthy_and_clear(&spec, &format!("maintain killed at {step}"));
    }
    // offline: killed while a member is stopped, before and after its database was rewritten
    for step in ["stop etcd-", "defrag etcd-"] {
        kill_then_finish(&spec, &["maintain", "--offline"], step, "maintain", &["maintain", "--offline"]);
        healthy_and_clear(&spec, &format!("maintain --offline killed at {step}"));
    }
    // down killed after its first member: `down` again stops the rest, `up` starts them all
    for again in [&["down"][..], &["up"][..]] {
        kill_then_finish(&spec, &["down"], "down etcd-", "down", again);
    }
    boot(&spec, &["up"]).assert_ok();
    healthy_and_clear(&spec, "down killed, then up");
    for step in ["files etcd-1:", "start etcd-1:"] {
        boot(&spec, &["down"]).assert_ok();
        kill_then_finish(&spec, &["up"], step, "up", &["up"]);
        healthy_and_clear(&spec, &format!("up killed at {step}"));
    }
}

/// Runs `rotate ca --continue` until no rotation is under way (bounded: three phases).
fn finish_rotation(spec: &Path) {
    for _ in 0..3 {
        if boot(spec, &["rotate", "ca", "--status"]).assert_ok().stdout.contains("no CA rotation under way") {
            return;
        }
        boot(spec, &["rotate", "ca", "--continue"]).assert_ok();
    }
    panic!("the rotation did not finish in three --continue runs");
}

#[test]
fn rotate_ca_killed_at_every_step_of_every_phase_finishes_when_run_again() {
    let (_tmp, spec, _down) = up_cluster();
    // (phase, the step printed): one whole rotation per kill point
    let points = [
        (1, "rotate ca: new CA"),
        (1, "trust old+new etcd-1:"),
        (1, "trust old+new etcd-3:"),
        (2, "reissue:"),
        (2, "reissue etcd-2:"),
        (3, "trust new only etcd-1:"),
        (3, "trust new only etcd-3:"),
    ];
    for (phase, step) in points {
        rotate_ca_killed_at(&spec, phase, step);
    }
}

/// One whole rotation killed at `step` of `phase` (run up to the stop before it first), then
/// finished: HEALTHY, nothing under way.
pub(crate) fn rotate_ca_killed_at(spec: &Path, phase: u8, step: &str) {
    if phase >= 2 {
        boot(spec, &["rotate", "ca"]).assert_ok();
    }
    if phase == 3 {
        boot(spec, &["rotate", "ca", "--continue"]).assert_ok();
    }
    let args: &[&str] = if phase == 1 { &["rotate", "ca"] } else { &["rotate", "ca", "--continue"] };
    kill_then_finish(spec, args, step, "rotate ca", args);
    assert_eq!(boot(spec, &["status"]).code, Some(0), "killed at {step}");
    finish_rotation(spec);
    healthy_and_clear(spec, &format!("rotate ca killed at {step}"));
}
