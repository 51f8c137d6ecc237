//! `adopt` on clusters built the ways people build them, by the test itself: certificates from
//! real cfssl (`gencert` with a `ca-config.json` profile and CSR JSON), one certificate shared by
//! every member (as "Kubernetes The Hard Way" and most external-etcd guides do), the CA key left
//! next to the certificates on one member (as kubespray and etcdadm do), and members configured
//! (a) by flags with no `--data-dir` (etcd's relative default), (b) by `ETCD_*` environment,
//! (c) by `--config-file`. Adopt must find every member's process, settings, data dir and files,
//! name the risks, and change nothing: every file hashed before and after, every PID the same.

use crate::adopt_lab::{Given, Lab, Writes, boot, etcdctl, hashes, lab, lab_on, settings, start_member, wait_degraded, wait_healthy};
use integration_tests::{bin, run_bounded};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

#[test]
fn adopt_reads_a_hand_made_cfssl_cluster_and_changes_nothing() {
    let mut lab = lab();
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = lab.children.iter().map(Child::id).collect();
    let eps = lab.endpoints_of(0..3);
    let r = lab.adopt(&eps, &["-w", "json"]);
    assert_eq!(r.code, Some(1), "risks found: exit 1\n{}{}", r.stdout, r.stderr);
    let inv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    let members = inv["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for (i, given) in ["flags", "environment", "config file"].iter().enumerate() {
        let m = members.iter().find(|m| m["name"] == format!("etcd-{}", i + 1)).unwrap();
        let root = lab.dir.join(format!("host-{}", i + 1));
        assert_eq!(m["host"], "local");
        assert_eq!(m["process"]["pid"], pids[i], "the process behind etcd-{}'s client URL", i + 1);
        assert_eq!(m["process"]["supervisor"]["kind"], "process");
        let settings = &m["config"]["settings"];
        assert_eq!(settings["name"]["value"], format!("etcd-{}", i + 1));
        let by = match i {
            0 => "flag",
            1 => "env",
            _ => "config-file",
        };
        assert_eq!(settings["cert-file"]["origin"], by, "etcd-{} is configured by {given}", i + 1);
        // (a) no --data-dir: etcd's default, relative to its working directory
        let data = if i == 0 { root.join("etcd-1.etcd") } else { root.join("var/lib/etcd") };
        assert_eq!(m["data_dir"], data.display().to_string());
        assert!(data.join("member").is_dir(), "{} is where the data is", data.display());
        // every TLS file, hashed as it is
        let cert = root.join("etc/etcd/pki/etcd.pem");
        let f = m["files"].as_array().unwrap().iter().find(|f| f["path"] == cert.display().to_string()).unwrap_or_else(|| panic!("{cert:?} in {}", m["files"]));
        use sha2::Digest;
        assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(std::fs::read(&cert).unwrap())));
        assert!(m["served"]["sans"].as_array().unwrap().iter().any(|s| s == &format!("IP:{}", lab.addrs[i])), "{}", m["served"]);
    }
    let findings: Vec<String> = inv["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}: {} / {}", f["member"].as_str().unwrap_or("cluster"), f["what"].as_str().unwrap(), f["fix"].as_str().unwrap()))
        .collect();
    let has = |needle: &str| findings.iter().any(|f| f.contains(needle));
    // one certificate and key for every member, server and peer: named per role with the files
    assert!(
        has("cluster: the server certificate's key is shared by 3 members (one public key: ")
            && has("etcd.pem on etcd-3): a stolen key impersonates each of them / issue a server certificate and key per member"),
        "{findings:#?}"
    );
    assert!(has("cluster: the peer certificate's key is shared by 3 members"), "{findings:#?}");
    assert!(has("etcd-1: no --data-dir"), "{findings:#?}");
    assert!(has("etcd-3: ") && has("ca-key.pem holds a private key etcd does not use"), "{findings:#?}");
    assert!(!has("etcd-2: no --data-dir") && !has("client-certificate auth"), "{findings:#?}");
    let v34 = members.iter().any(|m| m["version"].as_str().is_some_and(|v| v.starts_with("3.4.")));
    assert_eq!(has("pre-vote is off"), v34, "pre-vote is off by default on 3.4 only: {findings:#?}");
    // the report people read: members, files, risks with fixes
    let t = lab.adopt(&eps, &[]);
    assert_eq!(t.code, Some(1));
    let etcd_pem_rows = t.stdout.lines().filter(|l| l.starts_with("etcd-1 ") && l.contains("/etcd.pem ")).count();
    assert_eq!(etcd_pem_rows, 1, "a file used as server and peer certificate is listed once:\n{}", t.stdout);
    for needle in ["MEMBER  HOST", "etcd-1  local", "a plain process", "config file", "environment", "risks (", "fix: "] {
        assert!(t.stdout.contains(needle), "lacks {needle:?}:\n{}", t.stdout);
    }
    // nothing changed: every file as it was, every member the same process
    assert_eq!(hashes(&lab.dir), before, "adopt changed a file");
    for (i, c) in lab.children.iter_mut().enumerate() {
        assert!(c.try_wait().unwrap().is_none(), "etcd-{} still runs", i + 1);
    }
    // endpoints of two clusters are refused, naming both
    let other = {
        let lone = format!("etcd-4=https://{}:2380", lab.addrs[3]);
        start_member(&lab, 3, &lone, Given::Flags)
    };
    lab.children.push(other);
    wait_healthy(&lab, &lab.endpoints_of(3..4));
    let two = lab.adopt(&lab.endpoints_of(2..4), &[]);
    assert_eq!(two.code, Some(3), "could not adopt: exit 3\n{}", two.stderr);
    assert!(two.stderr.contains("belong to different clusters") && two.stderr.contains(&lab.addrs[3]), "{}", two.stderr);
}

/// Over SSH: members in three network-namespace hosts (each its own address and sshd), each with
/// a certificate of its own, read through `--host` with the real OpenSSH client.
#[test]
fn adopt_reads_members_on_other_hosts_over_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = integration_tests::netns::Hosts::create(3, tmp.path());
    let mut addrs: Vec<String> = hosts.hosts.iter().map(|h| h.address.clone()).collect();
    addrs.push("127.0.0.1".into());
    let namespaces = hosts.hosts.iter().map(|h| h.namespace.clone()).collect();
    let lab = lab_on(tempfile::tempdir().unwrap(), addrs, namespaces, true, None);
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = lab.children.iter().map(Child::id).collect();
    let eps = lab.endpoints_of(0..3);
    // a member that is not on this machine needs --host, and adopt says which
    let nohost = lab.adopt(&eps, &[]);
    assert_eq!(nohost.code, Some(3), "{}", nohost.stderr);
    let want: Vec<String> = hosts.hosts.iter().enumerate().map(|(i, h)| format!("etcd-{} ({})", i + 1, h.address)).collect();
    assert!(nohost.stderr.contains(&format!("not on this machine: {}; give --host NAME=DEST", want.join(", "))), "every member named, once: {}", nohost.stderr);
    let mut args: Vec<String> = vec!["-w".into(), "json".into()];
    for (i, h) in hosts.hosts.iter().enumerate() {
        args.push("--host".into());
        args.push(format!("etcd-{}=root@{}", i + 1, h.address));
    }
    for o in hosts.ssh_options() {
        args.push(format!("--ssh-option={o}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.adopt(&eps, &args);
    assert!(r.code == Some(0) || r.code == Some(1), "{}{}", r.stdout, r.stderr);
    let inv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    for (i, h) in hosts.hosts.iter().enumerate() {
        let m = inv["members"].as_array().unwrap().iter().find(|m| m["name"] == format!("etcd-{}", i + 1)).unwrap();
        assert_eq!(m["host"], format!("root@{}", h.address));
        assert_eq!(m["process"]["pid"], pids[i], "the process behind etcd-{}'s client URL, found over SSH", i + 1);
        assert!(m["served"]["sans"].as_array().unwrap().iter().any(|s| s == &format!("IP:{}", h.address)));
        assert!(m["files"].as_array().unwrap().len() >= 3, "{}", m["files"]);
    }
    let findings = inv["findings"].to_string();
    assert!(!findings.contains("every member serves the same certificate") && !findings.contains("is shared by"), "each member has its own: {findings}");
    assert_eq!(hashes(&lab.dir), before, "adopt changed a file");

    // then managed over SSH: new keys, at their paths, each keeping its owner (a key etcd would
    // read as its own user) and mode
    let key1 = lab.dir.join("host-1/etc/etcd/pki/etcd-key.pem");
    std::os::unix::fs::chown(&key1, Some(65534), Some(65534)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("ssh.yaml");
    let ca_key = lab.pki().join("ca-key.pem");
    let mut with_o = args.clone();
    with_o.extend(["-o", spec.to_str().unwrap(), "--ca-key", ca_key.to_str().unwrap()]);
    let r = lab.adopt(&eps, &with_o);
    assert!(r.code == Some(0) || r.code == Some(1), "{}", r.stderr);
    assert!(std::fs::read_to_string(&spec).unwrap().contains(&format!("host: root@{}", hosts.hosts[0].address)));
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    let before = hashes(&lab.dir);
    let w = Writes::start(&lab, &eps);
    let rot = boot(&spec, &["rotate", "certs", "--rekey"]);
    assert!(rot.ok(), "{}{}", rot.stdout, rot.stderr);
    w.finish(&lab, &eps, 3);
    let after = hashes(&lab.dir);
    for i in 1..=3 {
        for f in ["etcd.pem", "etcd-key.pem"] {
            let p = lab.dir.join(format!("host-{i}/etc/etcd/pki/{f}"));
            assert_ne!(after[&p], before[&p], "{} renewed", p.display());
            assert_eq!(after[&p].split(' ').nth(1), before[&p].split(' ').nth(1), "{} keeps its mode", p.display());
        }
        openssl_text(&lab, i - 1);
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&key1).unwrap().uid(), 65534, "the new key keeps the old one's owner");

    // down and up over SSH: each plain process started again on its host, as it was found
    boot(&spec, &["down"]).assert_ok();
    let up = boot(&spec, &["up"]);
    assert!(up.ok() && up.stdout.contains("3 started now"), "{}{}", up.stdout, up.stderr);
    let again: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &args).stdout).unwrap();
    assert_eq!(settings(&again), settings(&inv), "the same command lines and settings after the restart");
    for m in again["members"].as_array().unwrap() {
        assert_ne!(m["process"]["pid"], serde_json::Value::Null);
    }

    // restore over SSH: the snapshot goes to each host's run dir, each member restarts there
    etcdctl(&lab.pki(), &eps, &["put", "/kept", "in-the-backup"]).assert_ok();
    let backups = out.path().join("backups");
    boot(&spec, &["backup", "--dir", backups.to_str().unwrap()]).assert_ok();
    etcdctl(&lab.pki(), &eps, &["put", "/later", "after-the-backup"]).assert_ok();
    let snapshot = std::fs::read_dir(&backups).unwrap().flatten().map(|e| e.path()).next().unwrap();
    let r = boot(&spec, &["restore", snapshot.to_str().unwrap(), "--force"]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    assert_eq!(etcdctl(&lab.pki(), &eps, &["get", "/kept", "--print-value-only"]).assert_ok().stdout.trim(), "in-the-backup");
    assert_eq!(etcdctl(&lab.pki(), &eps, &["get", "/later", "--keys-only"]).assert_ok().stdout.trim(), "");
    let restored: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &args).stdout).unwrap();
    assert_eq!(settings(&restored), settings(&inv), "the same command lines and settings after the restore");

    // replace over SSH: etcd-3 (config file) dies on its host; under continuous writes it is
    // re-added and started once from its joiner copy, written on its host over SSH
    let pid: u32 = std::fs::read_to_string(lab.dir.join("host-3/var/lib/etcd-bootstrap/etcd-3.pid")).unwrap().trim().parse().unwrap();
    integration_tests::signal(pid, integration_tests::Signal::Kill);
    wait_degraded(&lab, &spec, "etcd-3");
    let w = Writes::start(&lab, &eps);
    let r = boot(&spec, &["replace", "etcd-3"]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    w.finish(&lab, &eps, 10);
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    assert!(lab.dir.join("host-3/var/lib/etcd-bootstrap/etcd-3.joiner.conf.yml").is_file(), "the joiner copy on etcd-3's host");

    // maintain --offline over SSH under continuous writes: each member stopped, its database
    // rewritten on its host by the tool beside its etcd, started again as adopted; no write is
    // refused for want of a member (at most two lost: one sent just as the leader hands off, one
    // in flight on a member as it stops)
    let w = Writes::start(&lab, &eps);
    let r = boot(&spec, &["maintain", "--offline"]);
    assert!(r.ok() && r.stderr.matches("rewritten while stopped").count() == 3, "{}{}", r.stdout, r.stderr);
    w.finish_failing_only(&lab, &eps, 2, integration_tests::lost_to_a_stop_or_hand_off);
    let after: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &args).stdout).unwrap();
    assert_eq!(settings(&after), settings(&inv), "each member runs as adopted after maintain --offline");

    // rotate ca over SSH, its three stops: every host then trusts the new CA alone
    for (args, want) in [
        (&["rotate", "ca"][..], "stopped after step 1 of 3"),
        (&["rotate", "ca", "--continue"], "stopped after step 2 of 3"),
        (&["rotate", "ca", "--continue"], "CA rotation done"),
    ] {
        let r = boot(&spec, args);
        assert!(r.ok() && r.stdout.contains(want), "{args:?}: {}{}", r.stdout, r.stderr);
    }
    let new_ca = out.path().join("pki/etcd/ca.crt");
    for i in 1..=3 {
        let host = lab.dir.join(format!("host-{i}/etc/etcd/pki"));
        assert_eq!(std::fs::read(host.join("ca.pem")).unwrap(), std::fs::read(&new_ca).unwrap(), "host-{i}");
        let v = integration_tests::openssl(&lab.dir, &["verify", "-CAfile", new_ca.to_str().unwrap(), host.join("etcd.pem").to_str().unwrap()]);
        assert!(v.ok(), "host-{i}: {}{}", v.stdout, v.stderr);
    }
    assert_eq!(boot(&spec, &["status"]).code, Some(0));
    boot(&spec, &["down"]).assert_ok();
    drop(lab);
}

/// The certificate a member's host holds at `host-N/etc/etcd/pki/etcd.pem`, as openssl shows it.
fn openssl_text(lab: &Lab, i: usize) -> String {
    let cert = lab.dir.join(format!("host-{}/etc/etcd/pki/etcd.pem", i + 1));
    let v = integration_tests::openssl(&lab.dir, &["verify", "-CAfile", &lab.pki().join("ca.pem").display().to_string(), &cert.display().to_string()]);
    assert!(v.ok() && v.stdout.contains(": OK"), "openssl verify: {}{}", v.stdout, v.stderr);
    integration_tests::openssl(&lab.dir, &["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", &cert.display().to_string()]).assert_ok().stdout
}

/// Kills etcd-`n` (a lab process), waits for the other two to lead (DEGRADED, as an operator
/// would), then `replace`s it under continuous writes: every acknowledged write kept, HEALTHY, a
/// new member ID. Returns its inventory entry afterwards.
fn kill_and_replace(lab: &mut Lab, spec: &Path, inv: &serde_json::Value, n: usize) -> serde_json::Value {
    let name = format!("etcd-{n}");
    let eps = lab.endpoints_of(0..3);
    let old_id = inv["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["id"].clone();
    let _ = lab.children[n - 1].kill();
    let _ = lab.children[n - 1].wait();
    wait_degraded(lab, spec, &name);
    let w = Writes::start(lab, &eps);
    let r = boot(spec, &["replace", &name]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    w.finish(lab, &eps, 10);
    assert_eq!(boot(spec, &["status"]).code, Some(0));
    let replaced: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    let m = replaced["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    assert_ne!(m["id"], old_id, "{name} is a new member");
    m
}

/// Adopted with `-o SPEC --ca-key`, then managed in place: status, certs check, backup,
/// maintain, and the shared certificate split into one per member under continuous writes —
/// no restart (the same PIDs), every acknowledged write kept, only the certificate and key
/// files changed (their modes kept); what would restart a member is refused, changing nothing.
#[test]
fn an_adopted_cluster_is_managed_in_place() {
    let mut lab = lab();
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let before = hashes(&lab.dir);
    let pids: Vec<u32> = lab.children.iter().map(Child::id).collect();
    let eps = lab.endpoints_of(0..3);
    let ca_key = lab.pki().join("ca-key.pem").display().to_string();
    let r = lab.adopt(&eps, &["-o", &spec.display().to_string(), "--ca-key", &ca_key]);
    assert_eq!(r.code, Some(1), "risks found, spec written: {}", r.stderr);
    assert!(r.stderr.contains(&format!("written to {}", spec.display())), "{}", r.stderr);
    assert_eq!(hashes(&lab.dir), before, "adopt -o changed a file on a host");
    let text = std::fs::read_to_string(&spec).unwrap();
    for needle in [
        "settings_from: flags",
        "settings_from: environment",
        "settings_from: config file",
        "kind: process",
        "cert-file: ",
        "command_line:",
        "name: lab-cluster",
        "ca_key: ",
    ] {
        assert!(text.contains(needle), "the spec lacks {needle:?}:\n{text}");
    }
    let again = lab.adopt(&eps, &["-o", &spec.display().to_string()]);
    assert!(again.code != Some(0) && again.code != Some(1) && again.stderr.contains("never replaces a spec"), "{}", again.stderr);

    assert_eq!(boot(&spec, &["status"]).code, Some(0), "HEALTHY through the operator's client files");
    let certs = boot(&spec, &["certs", "check", "-w", "json"]);
    assert_eq!(certs.code, Some(0), "{}{}", certs.stdout, certs.stderr);
    let report: serde_json::Value = serde_json::from_str(&certs.stdout).unwrap();
    let names: Vec<&str> = report["certificates"].as_array().unwrap().iter().map(|c| c["certificate"].as_str().unwrap()).collect();
    assert_eq!(names, ["etcd-1/server+peer", "etcd-2/server+peer", "etcd-3/server+peer"], "one row per file a member serves with (server and peer share it)");
    let table = boot(&spec, &["certs", "check"]);
    for i in 1..=3 {
        let file = format!("local:{}", lab.dir.join(format!("host-{i}/etc/etcd/pki/etcd.pem")).display());
        assert!(table.stdout.lines().any(|l| l.contains(&format!("etcd-{i}/server+peer")) && l.contains(&file)), "the table names {file}:\n{}", table.stdout);
    }
    etcdctl(&lab.pki(), &eps, &["put", "/kept", "before the backup"]).assert_ok();
    let backups = out.path().join("backups");
    let b = boot(&spec, &["backup", "--dir", &backups.display().to_string()]).assert_ok();
    assert!(std::fs::read_dir(&backups).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("lab-cluster-")), "{}", b.stdout);
    boot(&spec, &["maintain"]).assert_ok();
    let doctor = boot(&spec, &["doctor"]);
    // a WARN may come from this machine's disk latency; nothing may fail or be unknown
    assert!(matches!(doctor.code, Some(0 | 1)) && doctor.stdout.contains(" 0 FAIL, 0 UNKNOWN"), "{}{}", doctor.stdout, doctor.stderr);
    for needle in [
        "certificate etcd-2/server+peer",
        "free-space etcd-3",
        "wal-fsync etcd-1",
        "backup ",
        "the server certificate's key is shared by 3 members",
        "the peer certificate's key is shared by 3 members",
        "risk etcd-1",
        "no --data-dir",
    ] {
        assert!(doctor.stdout.contains(needle), "doctor lacks {needle:?}:\n{}", doctor.stdout);
    }

    let w = Writes::start(&lab, &eps);
    let rot = boot(&spec, &["rotate", "certs", "--split"]);
    assert!(rot.ok(), "{}{}", rot.stdout, rot.stderr);
    assert!(rot.stdout.contains("3 certificates renewed in place on 3 members (no restart)"), "{}", rot.stdout);
    let n = w.finish(&lab, &eps, 3);
    eprintln!("{n} writes acknowledged during the split");
    for i in 0..3 {
        let shown = openssl_text(&lab, i);
        assert!(shown.contains(&format!("CN = etcd-{}", i + 1)) || shown.contains(&format!("CN=etcd-{}", i + 1)), "{shown}");
        for (j, a) in lab.addrs[..3].iter().enumerate() {
            assert_eq!(
                shown.contains(&format!("IP Address:{a}\n")) || shown.contains(&format!("IP Address:{a},")),
                i == j,
                "etcd-{}'s SANs and {a}: {shown}",
                i + 1
            );
        }
    }
    let inv: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert!(!inv["findings"].to_string().contains("is shared by"), "{}", inv["findings"]);
    // no restart, and nothing but the certificates and keys changed, each keeping its mode
    for (i, c) in lab.children.iter_mut().enumerate() {
        assert!(c.try_wait().unwrap().is_none(), "etcd-{} still runs", i + 1);
        assert_eq!(c.id(), pids[i]);
    }
    let after = hashes(&lab.dir);
    let changed: Vec<String> =
        before.keys().filter(|p| after.get(*p) != before.get(*p)).map(|p| p.strip_prefix(&lab.dir).unwrap().display().to_string()).collect();
    let want: Vec<String> = (1..=3).flat_map(|i| [format!("host-{i}/etc/etcd/pki/etcd-key.pem"), format!("host-{i}/etc/etcd/pki/etcd.pem")]).collect();
    assert_eq!(changed, want);
    for p in before.keys() {
        assert_eq!(after[p].split(' ').nth(1), before[p].split(' ').nth(1), "{} keeps its mode", p.display());
    }
    assert_eq!(after.len(), before.len(), "no file added or left behind on a host");

    // renewed again without --split: the keys stay, unread
    let keys = |h: &BTreeMap<PathBuf, String>| h.iter().filter(|(p, _)| p.ends_with("etcd-key.pem")).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    boot(&spec, &["rotate", "certs"]).assert_ok();
    let third = hashes(&lab.dir);
    assert_eq!(keys(&third), keys(&after), "the keys were kept");
    assert_ne!(third, after, "the certificates were renewed");

    // what would rewrite a member or delete its data is refused, naming what works
    for args in [&["check", "lb"][..], &["down", "--purge"], &["plan"]] {
        let r = boot(&spec, args);
        assert!(!r.ok() && r.stderr.contains("not on an adopted cluster yet") && r.stderr.contains("up and doctor"), "{args:?}: {}", r.stderr);
    }
    // a healthy member is not replaced without --force
    let r = boot(&spec, &["replace", "etcd-3"]);
    assert!(!r.ok() && r.stderr.contains("etcd-3 is healthy"), "{}", r.stderr);
    assert_eq!(hashes(&lab.dir), third, "a refusal changed a file");
    for c in lab.children.iter_mut() {
        assert!(c.try_wait().unwrap().is_none());
    }
    let as_found = settings(&inv);

    // replace in place: etcd-2 (settings by ETCD_* environment) dies; under continuous writes it
    // is removed, its data moved aside, re-added as a learner, started once as a joiner with its
    // own environment, promoted
    let m2 = kill_and_replace(&mut lab, &spec, &inv, 2);
    assert_eq!(m2["config"]["settings"]["cert-file"]["origin"], "env", "still configured by its environment");
    assert_eq!(
        m2["config"]["settings"]["initial-cluster-state"],
        serde_json::json!({"value": "existing", "origin": "env"}),
        "joined through its environment, until its next restart"
    );
    assert_eq!(m2["process"]["argv"].as_array().unwrap().len(), 1, "no flag beside ETCD_INITIAL_CLUSTER_STATE (etcd refuses that): {}", m2["process"]["argv"]);

    // etcd-3 (settings by config file, which makes etcd ignore every flag) the same way: started
    // once with a copy of its file that says `initial-cluster-state: existing`; its own file untouched
    let before_replace = hashes(&lab.dir);
    let m3 = kill_and_replace(&mut lab, &spec, &inv, 3);
    let copy = lab.dir.join("host-3/var/lib/etcd-bootstrap/etcd-3.joiner.conf.yml");
    assert_eq!(
        m3["process"]["argv"].as_array().unwrap().last().unwrap(),
        &format!("--config-file={}", copy.display()),
        "the joiner copy, until its next restart"
    );
    assert_eq!(m3["config"]["settings"]["initial-cluster-state"]["value"], "existing");
    let own = lab.dir.join("host-3/etc/etcd/etcd.conf.yml");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        std::fs::read_to_string(&own).unwrap() + "initial-cluster-state: existing\n",
        "the copy differs in that line only"
    );
    let after_replace = hashes(&lab.dir);
    assert_eq!(after_replace, before_replace, "nothing outside the data and run dirs changed");

    // restore in place: every member stopped (the leader last), its data moved aside, the
    // snapshot restored, each started again exactly as it was found
    let snapshot = std::fs::read_dir(&backups).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "db")).unwrap();
    let refused = boot(&spec, &["restore", snapshot.to_str().unwrap()]);
    assert!(!refused.ok() && refused.stderr.contains("--force"), "a HEALTHY cluster needs --force: {}", refused.stderr);
    let r = boot(&spec, &["restore", snapshot.to_str().unwrap(), "--force"]);
    assert!(r.ok(), "{}{}", r.stdout, r.stderr);
    for (i, c) in lab.children.iter_mut().enumerate() {
        assert!(c.try_wait().unwrap().is_some(), "etcd-{} as the lab started it was stopped", i + 1);
    }
    assert_eq!(etcdctl(&lab.pki(), &eps, &["get", "/kept", "--print-value-only"]).assert_ok().stdout.trim(), "before the backup");
    assert_eq!(
        etcdctl(&lab.pki(), &eps, &["get", "/adopted/", "--prefix", "--keys-only"]).assert_ok().stdout.trim(),
        "",
        "what was written after the snapshot is gone"
    );
    let after_restore: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert_eq!(settings(&after_restore), as_found, "each member runs with the command line and every setting (by flag, environment, config file) it had");
    assert_eq!(boot(&spec, &["status"]).code, Some(0));

    // down and up: stopped, then started again as found
    boot(&spec, &["down"]).assert_ok();
    assert!(!etcdctl(&lab.pki(), &eps, &["endpoint", "health"]).ok(), "every member stopped");
    let up = boot(&spec, &["up"]);
    assert!(up.ok() && up.stdout.contains("HEALTHY (3 members, 3 started now)"), "{}{}", up.stdout, up.stderr);
    let after_up: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    assert_eq!(settings(&after_up), as_found);
    assert_eq!(etcdctl(&lab.pki(), &eps, &["get", "/kept", "--print-value-only"]).assert_ok().stdout.trim(), "before the backup");
    boot(&spec, &["down"]).assert_ok();
}

/// `rotate ca` in place on the cfssl lab (one certificate shared by every member): the three
/// stops, each member restarted through what runs it with its CA files replaced where they are,
/// then its certificate re-issued by the new CA (key kept), then the old CA dropped; writes go
/// on through the first two steps and every acknowledged one is kept; at the end the spec names
/// the new CA and etcd-bootstrap's own client from it, the lab's old client is refused, and
/// every member runs with the command line and settings it had.
#[test]
fn an_adopted_clusters_ca_is_rotated_in_place() {
    let lab = lab();
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("lab.yaml");
    let eps = lab.endpoints_of(0..3);
    let ca_key = lab.pki().join("ca-key.pem");
    lab.adopt(&eps, &["-o", spec.to_str().unwrap(), "--ca-key", ca_key.to_str().unwrap()]);
    assert!(spec.is_file());
    let before: serde_json::Value = serde_json::from_str(&lab.adopt(&eps, &["-w", "json"]).stdout).unwrap();
    let operator_files: BTreeMap<PathBuf, String> = hashes(&lab.pki());

    // a client of the cluster as the stops tell it: the old CA, then (step 1 says so) the bundle
    let w = Writes::start(&lab, &eps);
    let first = boot(&spec, &["rotate", "ca"]);
    assert!(first.ok() && first.stdout.contains("stopped after step 1 of 3") && first.stdout.contains("ca-bundle.crt"), "{}{}", first.stdout, first.stderr);
    w.finish(&lab, &eps, 10);
    let bundle = out.path().join("pki/etcd/ca-bundle.crt");
    let w = Writes::trusting(&lab, &eps, &bundle, "/during-reissue/");
    for i in 1..=3 {
        let ca = std::fs::read_to_string(lab.dir.join(format!("host-{i}/etc/etcd/pki/ca.pem"))).unwrap();
        assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2, "host-{i} trusts old + new");
    }
    assert!(boot(&spec, &["backup", "--dir", out.path().join("b").to_str().unwrap()]).ok(), "paused for the operator, a backup still runs");
    let second = boot(&spec, &["rotate", "ca", "--continue"]);
    assert!(second.ok() && second.stdout.contains("stopped after step 2 of 3"), "{}{}", second.stdout, second.stderr);
    w.finish(&lab, &eps, 10);
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("adopted-client.crt"), "the spec names etcd-bootstrap's client from the new CA:\n{text}");
    let third = boot(&spec, &["rotate", "ca", "--continue"]);
    assert!(third.ok() && third.stdout.contains("CA rotation done"), "{}{}", third.stdout, third.stderr);

    // the new CA, named by the spec; every member trusts it alone and serves a certificate from it
    let text = std::fs::read_to_string(&spec).unwrap();
    let new_ca = out.path().join("pki/etcd/ca.crt");
    assert!(text.contains(&format!("cacert: {}", new_ca.display())), "{text}");
    for i in 1..=3 {
        let host = lab.dir.join(format!("host-{i}/etc/etcd/pki"));
        assert_eq!(std::fs::read(host.join("ca.pem")).unwrap(), std::fs::read(&new_ca).unwrap(), "host-{i} trusts the new CA alone");
        let v = integration_tests::openssl(&lab.dir, &["verify", "-CAfile", new_ca.to_str().unwrap(), host.join("etcd.pem").to_str().unwrap()]);
        assert!(v.ok(), "host-{i}'s certificate is from the new CA: {}{}", v.stdout, v.stderr);
    }
    assert_eq!(boot(&spec, &["status"]).code, Some(0), "etcd-bootstrap talks to the cluster with its new client");
    assert!(!etcdctl(&lab.pki(), &eps, &["get", "/kept"]).ok(), "a client of the old CA is refused now");
    assert_eq!(hashes(&lab.pki()), operator_files, "the operator's own PKI files are left as they were");
    let after: serde_json::Value = serde_json::from_str(
        &run_bounded(
            Command::new(bin("etcd-bootstrap"))
                .args(["adopt", "--endpoints", &eps, "--cacert", new_ca.to_str().unwrap()])
                .arg("--cert")
                .arg(out.path().join("pki/etcd/adopted-client.crt"))
                .arg("--key")
                .arg(out.path().join("pki/etcd/adopted-client.key"))
                .args(["-w", "json"]),
            Duration::from_secs(120),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(settings(&after), settings(&before), "each member restarted with the command line and settings it had");
    boot(&spec, &["down"]).assert_ok();
}
