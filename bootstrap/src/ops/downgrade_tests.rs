//! `downgrade` on fake hosts and a fake etcd: what it refuses before its first change, the
//! order of its effects (enable, storage, members with the leader last) and how it resumes and
//! cancels.

use crate::journal::OpKind;
use crate::run::fakes::{self, Shared, cluster, effects, fail, release_folder};
use crate::run::rolling::{self, Roll, RollState};
use crate::spec::versions::Version;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn on(world: &Shared, version: Version) {
    let mut w = world.lock().unwrap();
    let names: Vec<String> = w.members.iter().map(|m| m.name.clone()).collect();
    for n in names {
        w.versions.insert(n, version);
    }
}

fn delivered_to(world: &Shared) -> Vec<String> {
    let mut to: Vec<String> = effects(world).iter().filter(|e| e.contains(": deliver ")).map(|e| e.split(':').next().unwrap_or("").to_string()).collect();
    to.dedup(); // one delivery per file
    to
}

/// A run past its backup (the fake etcd takes no snapshots): the record a first run writes
/// before its first change.
fn recorded(c: &fakes::Cluster, to: &str, from: &str, done: &[&str]) {
    let s = RollState {
        to: to.into(),
        from: from.into(),
        done: done.iter().map(|d| d.to_string()).collect(),
        backup: Some("backups/before.db".into()),
        enabled: false,
    };
    rolling::save(&c.plan, Roll::Downgrade, &s).unwrap();
}

#[test]
fn it_enables_etcds_downgrade_first_then_moves_each_member_the_leader_last() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    on(&world, Version(3, 7, 4));
    world.lock().unwrap().leader = Some(2);
    let to = release_folder("3.6.17").unwrap();
    let to = to.path().display().to_string();
    recorded(&c, "3.6.17", "3.7.4", &[]);
    let r = c.run(&world, OpKind::Downgrade, None, "downgrade", |ctx| super::downgrade(ctx, &to, None, false, WAIT)).unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str(), r.cluster_version.as_str()), ("3.7.4", "3.6.17", "3.6.0"));
    let ev = effects(&world);
    let enable = ev.iter().position(|e| e == "etcd: downgrade Enable(\"3.6\")").unwrap_or_else(|| panic!("{ev:?}"));
    let first_delivery = ev.iter().position(|e| e.contains(": deliver ")).unwrap();
    assert!(enable < first_delivery, "enabled before any binary moves: {ev:?}");
    assert_eq!(delivered_to(&world), ["etcd-1", "etcd-3", "etcd-2"], "the leader (etcd-2) last");
    assert!(world.lock().unwrap().versions.values().all(|v| *v == Version(3, 6, 17)));
    assert!(!rolling::state_path(&c.plan, Roll::Downgrade).exists(), "its record goes when it is done");
    assert_eq!(c.under_way(), 0);
}

#[test]
fn what_cannot_be_downgraded_is_refused_before_any_change() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    let run = |to: &str| {
        let dir = release_folder(to).unwrap();
        let dir = dir.path().display().to_string();
        c.run(&world, OpKind::Downgrade, None, "downgrade", |ctx| super::downgrade(ctx, &dir, None, false, WAIT)).unwrap_err().to_string()
    };
    // 3.5 has no downgrade API
    on(&world, Version(3, 5, 36));
    assert!(run("3.4.23").contains("no downgrade API (it came in 3.6): restore a backup"), "{}", run("3.4.23"));
    // two minors at once, and a target below the floor
    on(&world, Version(3, 7, 4));
    assert!(run("3.5.36").contains("skips a minor version"));
    assert!(run("3.6.10").contains("3.6.11 or later"));
    // etcd's own validation says no
    fail(&world, "etcd", "downgrade");
    let e = run("3.6.17");
    assert!(e.contains("etcd refuses a downgrade to 3.6"), "{e}");
    // members on different versions, not left so by this command
    world.lock().unwrap().failing.clear();
    world.lock().unwrap().versions.insert("etcd-3".into(), Version(3, 6, 17));
    assert!(run("3.6.17").contains("the members run different versions"));
    let ev = effects(&world);
    assert!(!ev.iter().any(|e| e.contains("Enable") || e.contains(": deliver ") || e.ends_with(": stop") || e.ends_with(": start")), "only reads: {ev:?}");
    assert_eq!(c.under_way(), 0);
}

#[test]
fn stopped_midway_it_resumes_where_it_stopped_without_enabling_twice() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    on(&world, Version(3, 7, 4));
    let to = release_folder("3.6.17").unwrap();
    let to = to.path().display().to_string();
    recorded(&c, "3.6.17", "3.7.4", &[]);
    // etcd-3's host stops answering deliveries after the downgrade was enabled
    fail(&world, "etcd-3", "deliver");
    let e = c.run(&world, OpKind::Downgrade, None, "downgrade", |ctx| super::downgrade(ctx, &to, None, false, WAIT)).unwrap_err();
    assert!(e.to_string().contains("etcd-3"), "{e}");
    assert_eq!(c.under_way(), 1, "it stays under way");
    let state = rolling::load(&c.plan, Roll::Downgrade).unwrap().unwrap();
    assert!(state.enabled);
    // run again once the host answers: the downgrade is not enabled again, done members are left
    world.lock().unwrap().failing.clear();
    world.lock().unwrap().events.clear();
    let r = c.run(&world, OpKind::Downgrade, None, "downgrade", |ctx| super::downgrade(ctx, &to, None, false, WAIT)).unwrap();
    let ev = effects(&world);
    assert!(!ev.iter().any(|e| e.contains("Enable")), "{ev:?}");
    assert_eq!(r.moved.len(), 3 - state.done.len());
    assert!(world.lock().unwrap().versions.values().all(|v| *v == Version(3, 6, 17)));
    assert_eq!(c.under_way(), 0);
}

#[test]
fn cancel_stops_etcds_downgrade_and_hands_moved_members_to_upgrade() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    on(&world, Version(3, 7, 4));
    {
        let mut w = world.lock().unwrap();
        w.versions.insert("etcd-2".into(), Version(3, 6, 17));
        w.downgrade = Some("3.6".into());
    }
    let mut s = RollState { to: "3.6.17".into(), from: "3.7.4".into(), done: vec!["etcd-2".into()], backup: Some("b.db".into()), enabled: true };
    rolling::save(&c.plan, Roll::Downgrade, &s).unwrap();
    let r = c.run(&world, OpKind::Downgrade, None, "downgrade --cancel", super::cancel).unwrap();
    assert!(effects(&world).contains(&"etcd: downgrade Cancel".to_string()));
    assert_eq!((r.moved.clone(), r.back_to.as_deref()), (vec!["etcd-2".to_string()], Some("3.7.4")));
    assert!(!rolling::state_path(&c.plan, Roll::Downgrade).exists());
    let up = rolling::load(&c.plan, Roll::Upgrade).unwrap().expect("the way back is recorded for upgrade");
    s = RollState { to: "3.7.4".into(), from: "3.6.17".into(), done: vec!["etcd-1".into(), "etcd-3".into()], backup: Some("b.db".into()), enabled: false };
    assert_eq!((up.to, up.from, up.done, up.backup), (s.to, s.from, s.done, s.backup));
    // nothing recorded and nothing enabled: nothing to cancel
    std::fs::remove_file(rolling::state_path(&c.plan, Roll::Upgrade)).unwrap();
    world.lock().unwrap().downgrade = None;
    let e = c.run(&world, OpKind::Downgrade, None, "downgrade --cancel", super::cancel).unwrap_err();
    assert!(e.to_string().contains("no downgrade to cancel"), "{e}");
}
