//! `adopt` and the day-2 commands on a lab whose members run under real systemd units (in the
//! test's own systemd, `integration_tests::systemd`), as hand-made guides write them.

use crate::adopt_lab::{Given, Lab, Writes, cfssl_pki, etcdctl, hashes, layout, settings, wait_degraded, wait_healthy};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The lab with each member under a systemd unit as hand-made guides write them (Type=notify,
/// Restart=on-failure, a unit file in /etc/systemd/system): etcd-1's flags in `ExecStart=` with
/// no --data-dir (relative to `WorkingDirectory=`), etcd-2's in an `EnvironmentFile=`, etcd-3's
/// in a config file. The units run in the test's own systemd (see `integration_tests::systemd`).
fn lab_in_units() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let host = integration_tests::systemd::SystemdHost::boot(&dir.join("systemd"));
    let [a, b, c] = integration_tests::cluster::free_subnet(4);
    let addrs: Vec<String> = (1..=4).map(|i| format!("{a}.{b}.{c}.{i}")).collect();
    cfssl_pki(&dir.join("pki"), &addrs);
    let mut lab = Lab { _tmp: tmp, dir, addrs, children: vec![], namespaces: vec![], own_certs: false, own_binaries: None, systemd: None, extra_flags: vec![] };
    let initial = (0..3).map(|i| format!("etcd-{}=https://{}:2380", i + 1, lab.addrs[i])).collect::<Vec<_>>().join(",");
    for (i, given) in [Given::Flags, Given::Env, Given::ConfigFile].into_iter().enumerate() {
        let l = layout(&lab, i, &initial);
        let exec = match given {
            Given::Flags => std::iter::once(l.etcd.display().to_string()).chain(l.flags()).collect::<Vec<_>>().join(" \\\n  "),
            Given::Env => {
                let env: String = l.environment().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                let file = l.root.join("etc/etcd/etcd.env");
                std::fs::write(&file, env).unwrap();
                format!("{}\nEnvironmentFile={}", l.etcd.display(), file.display())
            }
            Given::ConfigFile => format!("{} --config-file={}", l.etcd.display(), l.config_file().display()),
        };
        let unit = format!(
            "[Unit]\nDescription=etcd (a hand-made lab member)\nDocumentation=https://github.com/etcd-io/etcd\n\n[Service]\nType=notify\nWorkingDirectory={}\nExecStart={exec}\nRestart=on-failure\nRestartSec=5\nLimitNOFILE=40000\n",
            l.root.display()
        );
        std::fs::write(host.units.join(format!("etcd-{}.service", i + 1)), unit).unwrap();
    }
    host.systemctl(&["daemon-reload"]);
    host.systemctl(&["start", "etcd-1.service", "etcd-2.service", "etcd-3.service"]);
    lab.systemd = Some(host);
    wait_healthy(&lab, &lab.endpoints_of(0..3));
    lab
}

/// A lab under real systemd units, adopted and managed through them: `adopt` finds each unit and
/// its file and changes nothing; `rotate certs --split` restarts nothing; each dead member
/// (etcd-2, settings in an `EnvironmentFile=`; etcd-3, in a config file) is `replace`d under
/// continuous writes through a runtime drop-in that is gone afterwards; `restore`, `down` and
/// `up` stop and start the units. The unit files are never touched, and after every restart each
/// member runs with the command line and settings it was adopted with.
#[test]
fn an_adopted_cluster_under_systemd_units_is_managed_in_place() {
    let lab = lab_in_units();
    let host = lab.systemd.as_ref().unwrap();
    let units = ["etcd-1.service", "etcd-2.service", "etcd-3.service"];
    let eps = lab.endpoints_of(0..3);
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = units.iter().map(|u| host.main_pid(u)).collect();
    let r = lab.adopt(&eps, &["-w", "json"]);
    assert_eq!(r.code, Some(1), "risks found: exit 1\n{}{}", r.stdout, r.stderr);
    let inv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for (i, origin) in ["flag", "env", "config-file"].iter().enumerate() {
        let m = inv["members"].as_array().unwrap().iter().find(|m| m["name"] == format!("etcd-{}", i + 1)).unwrap();
        let sup = &m["process"]["supervisor"];
        assert_eq!((sup["kind"].as_str(), sup["unit"].as_str()), (Some("systemd"), Some(units[i])), "{sup}");
        assert_eq!(sup["fragment"], format!("/etc/systemd/system/{}", units[i]));
        assert_eq!(m["process"]["pid"], pids[i], "the unit's main process");
        assert_eq!(m["config"]["settings"]["cert-file"]["origin"], *origin);
    }
    assert_eq!(hashes(&lab.dir), before, "adopt changed a file");
    let as_found = settings(&inv);

    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("units.yaml");
    let ca_key = lab.pki().join("ca-key.pem").display().to_string();
    assert_eq!(lab.adopt(&eps, &["-o", &spec.display().to_string(), "--ca-key", &ca_key]).code, Some(1));
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("kind: systemd") && text.contains("unit: etcd-2.service"), "{text}");
    assert_eq!(lab.boot(&spec, &["status"]).code, Some(0));
    let backups = out.path().join("backups");
    etcdctl(&lab.pki(), &eps, &["put", "/kept", "before the backup"]).assert_ok();
    lab.boot(&spec, &["backup", "--dir", &backups.display().to_string()]).assert_ok();
    lab.boot(&spec, &["rotate", "certs", "--split"]).assert_ok();
    assert_eq!(units.iter().map(|u| host.main_pid(u)).collect::<Vec<_>>(), pids, "renewed without a restart");

    // etcd-2 and etcd-3 die (their units stopped: Restart= does not bring them back); each is
    // replaced under writes, started once through the drop-in, which is gone afterwards
    let unit_files =
        |h: &BTreeMap<PathBuf, String>| h.iter().filter(|(p, _)| p.starts_with(host.units.as_path())).map(|(p, v)| (p.clone(), v.clone())).collect::<Vec<_>>();
    let units_before = unit_files(&before);
    assert_eq!(units_before.len(), 8, "four targets, a slice and three units");
    for n in [2, 3] {
        let unit = units[n - 1];
        host.systemctl(&["stop", unit]);
        wait_degraded(&lab, &spec, &format!("etcd-{n}"));
        let w = Writes::start(&lab, &eps);
        let r = lab.boot(&spec, &["replace", &format!("etcd-{n}")]);
        assert!(r.ok(), "{}{}", r.stdout, r.stderr);
        w.finish(&lab, &eps, 10);
        assert_eq!(lab.boot(&spec, &["status"]).code, Some(0));
        assert_eq!(host.state(unit), "active", "{unit} runs it");
        assert!(!host.run.join(format!("systemd/system/{unit}.d")).exists(), "the joiner drop-in is gone");
        assert_eq!(host.systemctl(&["show", "-p", "DropInPaths", "--value", unit]).stdout.trim(), "", "systemd forgot it");
        let now: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
        let m = now["members"].as_array().unwrap().iter().find(|m| m["name"] == format!("etcd-{n}")).unwrap();
        if n == 2 {
            // its EnvironmentFile= sets ETCD_INITIAL_CLUSTER_STATE=new, as kubespray's does: the
            // joiner's state comes through env(1), and no flag shadows the variable
            assert_eq!(
                m["config"]["settings"]["initial-cluster-state"],
                serde_json::json!({"value": "existing", "origin": "env"}),
                "etcd-2 started once as a joiner"
            );
            assert_eq!(m["process"]["argv"].as_array().unwrap().len(), 1, "{}", m["process"]["argv"]);
        } else {
            let last = m["process"]["argv"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
            assert_eq!(
                last,
                format!("--config-file={}", lab.dir.join("host-3/var/lib/etcd-bootstrap/etcd-3.joiner.conf.yml").display()),
                "etcd-3 started once as a joiner"
            );
        }
    }
    assert_eq!(unit_files(&hashes(&lab.dir)), units_before, "no unit file touched");

    // restore, then down and up: every unit stopped and started, each member as adopted
    let snapshot = std::fs::read_dir(&backups).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "db")).unwrap();
    let r = lab.boot(&spec, &["restore", snapshot.to_str().unwrap(), "--force"]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    assert_eq!(etcdctl(&lab.pki(), &eps, &["get", "/kept", "--print-value-only"]).assert_ok().stdout.trim(), "before the backup");
    let restored: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert_eq!(settings(&restored), as_found, "each unit runs its member as adopted");
    lab.boot(&spec, &["down"]).assert_ok();
    assert_eq!(units.map(|u| host.state(u)), ["inactive"; 3].map(String::from), "down stops the units");
    let up = lab.boot(&spec, &["up"]);
    assert!(up.ok() && up.stdout.contains("3 started now"), "{}{}", up.stdout, up.stderr);
    assert_eq!(units.map(|u| host.state(u)), ["active"; 3].map(String::from));
    let after_up: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert_eq!(settings(&after_up), as_found);

    // rotate ca, its three stops: each unit restarted twice more through systemctl
    let before_ca: Vec<u32> = units.iter().map(|u| host.main_pid(u)).collect();
    for (args, want) in [
        (&["rotate", "ca"][..], "stopped after step 1 of 3"),
        (&["rotate", "ca", "--continue"], "stopped after step 2 of 3"),
        (&["rotate", "ca", "--continue"], "CA rotation done"),
    ] {
        let r = lab.boot(&spec, args);
        assert!(r.ok() && r.stdout.contains(want), "{args:?}: {}{}", r.stdout, r.stderr);
    }
    let new_ca = std::fs::read(out.path().join("pki/etcd/ca.crt")).unwrap();
    for i in 1..=3 {
        assert_eq!(std::fs::read(lab.dir.join(format!("host-{i}/etc/etcd/pki/ca.pem"))).unwrap(), new_ca, "host-{i} trusts the new CA alone");
        assert_ne!(host.main_pid(units[i - 1]), before_ca[i - 1], "{} restarted", units[i - 1]);
        assert_eq!(host.state(units[i - 1]), "active");
    }
    assert_eq!(lab.boot(&spec, &["status"]).code, Some(0), "HEALTHY through the toolkit's new client");
    assert_eq!(settings(&lab.inventory_through(&spec)), as_found, "each unit runs its member as adopted");
    assert_eq!(unit_files(&hashes(&lab.dir)), units_before, "no unit file touched");

    // maintain --offline: each unit stopped and started through systemctl around its defrag
    let before_defrag: Vec<u32> = units.iter().map(|u| host.main_pid(u)).collect();
    let r = lab.boot(&spec, &["maintain", "--offline"]);
    assert!(r.ok() && r.stderr.matches("rewritten while stopped").count() == 3, "{}{}", r.stdout, r.stderr);
    for (i, u) in units.iter().enumerate() {
        assert_ne!(host.main_pid(u), before_defrag[i], "{u} restarted");
        assert_eq!(host.state(u), "active");
    }
    assert_eq!(lab.boot(&spec, &["status"]).code, Some(0));
    assert_eq!(settings(&lab.inventory_through(&spec)), as_found, "each unit runs its member as adopted");
    assert_eq!(unit_files(&hashes(&lab.dir)), units_before, "no unit file touched");
}
