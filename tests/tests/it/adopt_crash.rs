//! The crash matrix on an adopted cluster (the built cluster's is in `crash_matrix`).

use crate::adopt_lab::{boot, lab, settings, wait_degraded};
use integration_tests::bin;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The crash matrix on an adopted cluster: `rotate certs --rekey`, `down`, `replace` and `rotate
/// ca` killed (SIGKILL) at the steps they print. After each kill another change is refused,
/// naming the killed operation and the command that finishes it; run again, it finishes, the
/// cluster is HEALTHY and nothing is left under way. Afterwards every member, restarted, runs
/// with the command line and settings it was adopted with.
#[test]
fn adopted_operations_killed_at_their_steps_finish_when_run_again() {
    use crate::crash_matrix::{healthy_and_clear, kill_then_finish, rotate_ca_killed_at};
    let mut lab = lab();
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let ca_key = lab.pki().join("ca-key.pem").display().to_string();
    assert_eq!(lab.adopt(&eps, &["-o", &spec.display().to_string(), "--ca-key", &ca_key]).code, Some(1));
    let inv: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    let as_found = settings(&inv);

    for step in ["renew:", "rotate etcd-1:", "rotate etcd-2:", "rotate etcd-3:"] {
        kill_then_finish(&spec, &["rotate", "certs", "--rekey"], step, "rotate certs", &["rotate", "certs", "--rekey"]);
        healthy_and_clear(&spec, &format!("rotate certs killed at {step}"));
    }
    kill_then_finish(&spec, &["down"], "down etcd-", "down", &["down"]);
    boot(&spec, &["up"]).assert_ok();
    healthy_and_clear(&spec, "down killed, then up");

    // etcd-1 (flags, no --data-dir: its data relative to its working directory; started by
    // etcd-bootstrap since `up`, as adopted) dies before each replace
    let pid_file = lab.dir.join("host-1/etcd-bootstrap/etcd-1.pid");
    for step in ["retire", "remove", "add", "start", "promote"] {
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        integration_tests::signal(pid, integration_tests::Signal::Kill);
        wait_degraded(&lab, &spec, "etcd-1");
        let needle = format!("] {step} etcd-1:");
        if let Err(stderr) = integration_tests::start_until_stderr_says(
            Command::new(bin("etcd-bootstrap")).arg("-f").arg(&spec).args(["replace", "etcd-1"]),
            &needle,
            Duration::from_secs(90),
        ) {
            panic!("replace never printed {needle:?}:\n{stderr}");
        }
        // (a kill at its last step can land after it finished)
        if integration_tests::bootstrap::under_way(&spec).contains(&"replace".to_string()) {
            let r = integration_tests::bootstrap::probe_refusal(&spec);
            assert!(r.code == Some(4) && r.stderr.contains("`replace etcd-1` stopped unfinished"), "after a kill at {step}: {}", r.stderr);
            let again = boot(&spec, &["replace", "etcd-1"]);
            assert!(again.ok() && again.stderr.contains("resuming: `replace etcd-1`"), "replace after a kill at {step}: {}{}", again.stdout, again.stderr);
        } else {
            assert_eq!(step, "promote", "a kill at {step} must leave replace unfinished");
        }
        healthy_and_clear(&spec, &format!("replace killed at {step}"));
    }

    // rotate ca: (phase, the step printed), one whole rotation per kill point
    let points = [(1, "rotate ca: new CA"), (1, "trust old+new etcd-2:"), (2, "rotate etcd-2:"), (2, "reissue:"), (3, "trust new only etcd-3:")];
    for (phase, step) in points {
        rotate_ca_killed_at(&spec, phase, step);
    }
    // the spec names the last CA, which every member trusts alone
    let named: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    let ca = PathBuf::from(named["adopted"]["cacert"].as_str().unwrap());
    for i in 1..=3 {
        assert_eq!(std::fs::read(lab.dir.join(format!("host-{i}/etc/etcd/pki/ca.pem"))).unwrap(), std::fs::read(&ca).unwrap(), "host-{i}");
    }

    // restarted, each member runs as it was adopted
    boot(&spec, &["down"]).assert_ok();
    boot(&spec, &["up"]).assert_ok();
    assert_eq!(settings(&lab.inventory_through(&spec)), as_found);
    for c in lab.children.iter_mut() {
        assert!(c.try_wait().unwrap().is_some(), "the lab's own processes were replaced by restarts");
    }
    boot(&spec, &["down"]).assert_ok();
}
