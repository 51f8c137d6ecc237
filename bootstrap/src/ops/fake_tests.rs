//! The operations' decisions on fake hosts and a fake etcd ([`crate::run::fakes`]): what each refuses
//! before its first change, the order of its effects, and where it stops and resumes. (`replace`
//! has its own file.) The end-to-end path is tested against real etcd in `tests/`.

use crate::error::BootError;
use crate::journal::OpKind;
use crate::run::fakes::{self, Shared, cluster, effects, fail, kill, release_folder};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// Every event, the version and list queries included.
fn lock_events(world: &Shared) -> Vec<String> {
    world.lock().unwrap().events.clone()
}

fn members_touched(world: &Shared, kind: &str) -> Vec<String> {
    effects(world)
        .iter()
        .filter(|e| e.ends_with(&format!(": {kind}")) || e.contains(&format!(": {kind} ")))
        .map(|e| e.split(':').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn down_stops_the_leader_last() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    world.lock().unwrap().leader = Some(1);
    c.run(&world, OpKind::Down, None, "down", |ctx| super::down::down(ctx, false)).unwrap();
    let stops = members_touched(&world, "stop");
    assert_eq!(stops.len(), 3);
    assert_eq!(stops.last().map(String::as_str), Some("etcd-1"), "{stops:?}");
}

#[test]
fn rotate_certs_refuses_an_unhealthy_cluster_before_renewing_anything() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    kill(&world, "etcd-3");
    let e = c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, true, WAIT)).unwrap_err();
    assert!(matches!(e, BootError::Precondition { .. }), "{e}");
    assert_eq!(effects(&world), Vec::<String>::new());
    assert!(!c.plan.issue.dir.join("etcd").exists(), "nothing renewed or issued");
    assert_eq!(c.under_way(), 0);
}

#[test]
fn rotate_certs_stops_at_the_member_it_cannot_reach_and_stays_unfinished() {
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    fail(&world, "etcd-2", "deliver");
    let e = c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, false, WAIT)).unwrap_err();
    assert!(e.to_string().contains("member etcd-2"), "{e}");
    // etcd-1 got its renewed files, etcd-3 was never touched
    assert_eq!(members_touched(&world, "deliver"), vec!["etcd-1".to_string(), "etcd-2".into()]);
    assert_eq!(c.under_way(), 1);
    // run again, reachable now: it finishes, every member served, nothing left under way
    world.lock().unwrap().failing.clear();
    c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, false, WAIT)).unwrap();
    assert_eq!(c.under_way(), 0);
}

#[test]
fn rotate_certs_gates_each_member_on_its_own_health_and_the_cluster_once_before_and_after() {
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, false, WAIT)).unwrap();
    let w = world.lock().unwrap();
    assert_eq!(w.member_checks, c.plan.endpoints(), "each member's health once, after its delivery");
    // HEALTHY before the first member and after the last: not n verdicts of n members
    assert_eq!(w.verdicts, 2);
}

#[test]
fn a_member_that_does_not_answer_its_health_check_is_named_with_why() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    kill(&world, "etcd-2");
    let e = c
        .run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| {
            ctx.wait_member_healthy(&ctx.plan.members[1], Duration::from_millis(200), "rotating etcd-2")
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("after rotating etcd-2: member etcd-2 not healthy within 0s (https://") && e.contains("connection refused)"), "{e}");
}

#[test]
fn rotate_certs_killed_mid_delivery_delivers_again_to_that_member_first_without_renewing() {
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    fail(&world, "etcd-3", "deliver");
    c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, true, WAIT)).unwrap_err();
    let server3 = c.plan.pki().leaf(&pki::cluster::Role::Server("etcd-3".into())).cert;
    let renewed = std::fs::read(&server3).unwrap();
    // etcd-3 was left with a new certificate beside its old key: unreachable, DEGRADED
    {
        let mut w = world.lock().unwrap();
        w.failing.clear();
        w.half_delivered.insert("etcd-3".into());
        w.events.clear();
    }
    c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, true, WAIT)).unwrap();
    assert_eq!(members_touched(&world, "deliver"), vec!["etcd-3".to_string(), "etcd-1".into(), "etcd-2".into()], "the member it stopped at first");
    assert_eq!(std::fs::read(&server3).unwrap(), renewed, "renewed once, by the run that stopped");
    assert_eq!(c.under_way(), 0);
    // a fresh run on a DEGRADED cluster is still refused
    world.lock().unwrap().half_delivered.insert("etcd-2".into());
    let e = c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, true, WAIT)).unwrap_err();
    assert!(e.to_string().contains("DEGRADED"), "{e}");
}

#[test]
fn maintain_refuses_without_quorum_before_compacting() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    kill(&world, "etcd-2");
    kill(&world, "etcd-3");
    let e = c.run(&world, OpKind::Maintain, None, "maintain", |ctx| super::maintain::maintain(ctx, WAIT, super::maintain::Defrag::Online)).unwrap_err();
    assert!(e.to_string().starts_with("refusing to maintain: the cluster is NO-QUORUM"), "{e}");
    assert_eq!(c.under_way(), 0);
}

#[test]
fn rotate_ca_restarts_members_one_by_one_leader_handed_off_then_pauses_and_resumes_where_killed() {
    use super::rotate_ca::{Outcome, Request, rotate_ca};
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    world.lock().unwrap().leader = Some(2);
    world.lock().unwrap().applied.insert("etcd-3".into(), 20);
    // killed (a host stops answering) at etcd-3's restart in phase 1
    fail(&world, "etcd-3", "stop");
    let e = c.run(&world, OpKind::RotateCa, None, "rotate ca", |ctx| rotate_ca(ctx, Request::StartOrResume, WAIT)).unwrap_err();
    assert!(e.to_string().contains("etcd-3"), "{e}");
    // etcd-2 led: leadership moved away before its restart
    let ev = effects(&world);
    let moved = ev.iter().position(|e| e.starts_with("etcd: move-leader")).expect("leadership moved");
    let stop2 = ev.iter().position(|e| e == "etcd-2: stop").expect("etcd-2 restarted");
    assert!(moved < stop2, "{ev:?}");
    // to etcd-1, restarted already, though etcd-3 is further along: no second hand-off
    assert_eq!(ev[moved], "etcd: move-leader 1", "{ev:?}");
    assert_eq!(c.under_way(), 1);
    // another change is refused meanwhile
    let refused = c.run(&world, OpKind::RotateCerts, None, "rotate certs", |_| Ok(())).unwrap_err();
    assert!(refused.to_string().contains("`rotate ca` stopped unfinished"), "{refused}");
    // run again: etcd-1 and etcd-2 are done and not restarted again; it pauses for the operator
    world.lock().unwrap().failing.clear();
    world.lock().unwrap().events.clear();
    let out = c.run(&world, OpKind::RotateCa, None, "rotate ca", |ctx| rotate_ca(ctx, Request::StartOrResume, WAIT)).unwrap();
    assert_eq!(out, Outcome::TrustsBoth);
    assert_eq!(members_touched(&world, "stop"), vec!["etcd-3".to_string()]);
    let j = crate::run::journal_store::Store::for_spec(std::path::Path::new(&c.plan.loaded.file)).read().unwrap();
    assert!(j.operations[0].paused.is_some() && j.operations[0].finish.ends_with("rotate ca --continue"), "{j:?}");
    // paused: a replace is refused, a plain `rotate ca` only repeats the instructions
    assert!(c.run(&world, OpKind::Replace, Some("etcd-1"), "replace etcd-1", |_| Ok(())).is_err());
    world.lock().unwrap().events.clear();
    let again = c.run(&world, OpKind::RotateCa, None, "rotate ca", |ctx| rotate_ca(ctx, Request::StartOrResume, WAIT)).unwrap();
    assert_eq!(again, Outcome::TrustsBoth);
    assert_eq!(members_touched(&world, "stop"), Vec::<String>::new());
}

/// Each member's binary is asked its version once per run of a phase, all before the first stop
/// (not again at each restart); one older than its member runs is refused before any stop.
#[test]
fn a_rolling_restart_checks_every_binary_once_before_its_first_stop() {
    use super::rotate_ca::{Request, rotate_ca};
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    c.run(&world, OpKind::RotateCa, None, "rotate ca", |ctx| rotate_ca(ctx, Request::StartOrResume, WAIT)).unwrap();
    let ev = lock_events(&world);
    let asked: Vec<&String> = ev.iter().filter(|e| e.ends_with(": version")).collect();
    assert_eq!(asked.len(), 3, "{ev:?}");
    let last_asked = ev.iter().rposition(|e| e.ends_with(": version")).unwrap();
    let first_stop = ev.iter().position(|e| e.ends_with(": stop")).unwrap();
    assert!(last_asked < first_stop, "{ev:?}");
    // step 2 restarts nothing; step 3, another run, asks again, once each
    c.run(&world, OpKind::RotateCa, None, "rotate ca --continue", |ctx| rotate_ca(ctx, Request::Continue, WAIT)).unwrap();
    world.lock().unwrap().events.clear();
    world.lock().unwrap().versions.insert("etcd-3".into(), crate::spec::versions::Version(3, 6, 0));
    let e = c.run(&world, OpKind::RotateCa, None, "rotate ca --continue", |ctx| rotate_ca(ctx, Request::Continue, WAIT)).unwrap_err();
    assert!(e.to_string().contains("member etcd-3 runs etcd 3.6.0") && e.to_string().contains("restarting would downgrade it"), "{e}");
    let ev = lock_events(&world);
    assert_eq!(ev.iter().filter(|e| e.ends_with(": version")).count(), 3, "{ev:?}");
    assert!(!ev.iter().any(|e| e.ends_with(": stop")), "refused before any stop: {ev:?}");
}

#[test]
fn certificates_that_do_not_fit_are_refused_without_advising_a_force_flag_etcd_bootstrap_lacks() {
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    // a member's server certificate whose key is gone: pki would advise `--force`
    let pair = c.plan.pki().leaf(&pki::cluster::Role::Server("etcd-2".into()));
    std::fs::remove_file(&pair.key).unwrap();
    let world = fakes::world(&c.plan);
    kill(&world, "etcd-2");
    let e =
        c.run(&world, OpKind::Replace, Some("etcd-2"), "replace etcd-2", |ctx| super::replace::replace(ctx, "etcd-2", false, WAIT)).unwrap_err().to_string();
    assert!(e.starts_with("refusing to replace etcd-2: existing certificates do not fit this cluster"), "{e}");
    assert!(e.contains("Move the files listed aside and run the command again"), "{e}");
    assert!(!e.contains("--force"), "{e}");
    assert_eq!(effects(&world), Vec::<String>::new(), "refused before anything on a host or in etcd");
}

#[test]
fn rotations_refuse_when_a_host_does_not_answer_before_their_first_change() {
    let c = cluster();
    pki::bundle::issue_into(&c.plan.issue).unwrap();
    crate::run::live::ensure_crl(&c.plan).unwrap();
    let world = fakes::world(&c.plan);
    fail(&world, "etcd-3", "free-space");
    let e = c.run(&world, OpKind::RotateCerts, None, "rotate certs", |ctx| super::rotate_certs::rotate_certs(ctx, true, WAIT)).unwrap_err().to_string();
    assert!(e.starts_with("refusing to rotate: member etcd-3 (fake etcd-3): ssh etcd-3 could not connect: ssh: connect to host"), "{e}");
    let e = c
        .run(&world, OpKind::RotateCa, None, "rotate ca", |ctx| super::rotate_ca::rotate_ca(ctx, super::rotate_ca::Request::StartOrResume, WAIT))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("refusing to rotate the CA: member etcd-3"), "{e}");
    assert!(!c.plan.issue.dir.join("etcd/ca-new.crt").exists(), "no new CA made");
    assert_eq!(members_touched(&world, "deliver"), Vec::<String>::new());
    assert_eq!(c.under_way(), 0);
}

#[test]
fn an_upgrade_to_36_refuses_members_serving_the_v2_api_before_any_change() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    world.lock().unwrap().v2.insert("etcd-2".into());
    let to = release_folder("3.6.0").unwrap();
    let to = to.path().display().to_string();
    for dry_run in [true, false] {
        let e = c.run(&world, OpKind::Upgrade, None, "upgrade", |ctx| super::upgrade::upgrade(ctx, &to, None, dry_run, WAIT)).unwrap_err().to_string();
        assert!(e.contains("etcd 3.6 removes the v2 API, and these members serve it: etcd-2 (--enable-v2)"), "{e}");
    }
    let ev = effects(&world);
    assert!(ev.iter().all(|e| e.ends_with(": free-space") || e.ends_with(": v2-probe") || e.ends_with(": v2store-probe")), "only reads: {ev:?}");
    assert_eq!(c.under_way(), 0);
    // v2 data left in a member's store (the API no longer served): refused too, that member named
    {
        let mut w = world.lock().unwrap();
        w.v2.clear();
        w.v2_data.insert("etcd-3".into());
    }
    let e = c.run(&world, OpKind::Upgrade, None, "upgrade", |ctx| super::upgrade::upgrade(ctx, &to, None, false, WAIT)).unwrap_err().to_string();
    assert!(e.contains("etcd 3.6 does not start on v2 data, and `etcdutl check v2store` finds some on: etcd-3;") && !e.contains("serve it"), "{e}");
    assert_eq!(c.under_way(), 0);
    // v2 requests only in the WAL (a v2-serving 3.5's /health checks): refused with how they clear
    {
        let mut w = world.lock().unwrap();
        w.v2_data.clear();
        w.v2_wal.insert("etcd-1".into());
    }
    let e = c.run(&world, OpKind::Upgrade, None, "upgrade", |ctx| super::upgrade::upgrade(ctx, &to, None, false, WAIT)).unwrap_err().to_string();
    assert!(
        e.contains("in the WAL after the last v2 snapshot on: etcd-1;") && e.contains("--snapshot-count=1") && !e.contains("does not start on v2 data"),
        "{e}"
    );
    assert_eq!(c.under_way(), 0);
    world.lock().unwrap().v2_wal.clear();
    // within 3.5 the v2 API is not in the way: no probe
    world.lock().unwrap().events.clear();
    let within = release_folder("3.5.36").unwrap();
    let within = within.path().display().to_string();
    let r = c.run(&world, OpKind::Upgrade, None, "upgrade", |ctx| super::upgrade::upgrade(ctx, &within, None, true, WAIT));
    assert!(r.is_ok(), "{r:?}");
    assert!(!effects(&world).iter().any(|e| e.ends_with(": v2-probe") || e.ends_with(": v2store-probe")));
}
