//! `replace` on fake hosts and a fake etcd: what it checks before its first change, the order of
//! its effects, and where a second run picks up — in milliseconds.

use super::*;
use crate::journal::OpKind;
use crate::run::context::Ctx;
use crate::run::fakes::{self, Cluster, Shared, cluster, effects, fail};

const WAIT: Duration = Duration::from_secs(5);

fn run(c: &Cluster, world: &Shared, op: impl FnOnce(&Ctx) -> Result<()>) -> Result<()> {
    c.run(world, OpKind::Replace, Some("etcd-2"), "replace etcd-2", op)
}

fn replace_2(c: &Cluster, world: &Shared, force: bool) -> Result<()> {
    run(c, world, |ctx| replace(ctx, "etcd-2", force, WAIT))
}

fn dead(world: &Shared, name: &str) {
    fakes::kill(world, name);
}

fn voters(world: &Shared) -> usize {
    world.lock().unwrap().members.iter().filter(|m| !m.is_learner && m.started()).count()
}

fn under_way(c: &Cluster) -> usize {
    c.under_way()
}

#[test]
fn a_dead_member_is_checked_then_retired_removed_added_started_and_promoted_in_that_order() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    dead(&world, "etcd-2");
    replace_2(&c, &world, false).unwrap();
    let files = c.plan.members[1].files.len();
    assert_eq!(
        effects(&world),
        vec![
            "etcd-2: free-space".to_string(),
            "etcd-2: retire".into(),
            "etcd: remove 2".into(),
            "etcd: add learner".into(),
            format!("etcd-2: deliver {files}"),
            "etcd-2: start".into(),
            "etcd: promote 104".into(),
        ]
    );
    assert_eq!(voters(&world), 3);
    assert_eq!(under_way(&c), 0);
}

#[test]
fn a_healthy_member_or_a_lost_quorum_is_refused_before_any_change() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    let e = replace_2(&c, &world, false).unwrap_err().to_string();
    assert!(e.contains("etcd-2 is healthy"), "{e}");
    dead(&world, "etcd-2");
    dead(&world, "etcd-3");
    let e = replace_2(&c, &world, true).unwrap_err().to_string();
    assert!(e.contains("membership changes need quorum") || e.contains("below the quorum"), "{e}");
    assert_eq!(effects(&world), Vec::<String>::new());
    assert_eq!(under_way(&c), 0, "refused before the first change: nothing under way");
}

#[test]
fn an_unreachable_host_is_refused_before_the_member_is_retired_or_removed() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    dead(&world, "etcd-2");
    fail(&world, "etcd-2", "free-space");
    let e = replace_2(&c, &world, false).unwrap_err();
    assert!(matches!(e, BootError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("No route to host"), "{e}");
    assert_eq!(effects(&world), vec!["etcd-2: free-space".to_string()]);
    assert_eq!(world.lock().unwrap().members.len(), 3, "etcd-2 is dead but still a member");
    assert!(world.lock().unwrap().dead.contains("etcd-2"));
    assert_eq!(under_way(&c), 0);
}

#[test]
fn a_failure_after_the_removal_leaves_it_unfinished_and_the_next_run_adds_without_removing_again() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    dead(&world, "etcd-2");
    fail(&world, "etcd", "add");
    assert!(replace_2(&c, &world, false).is_err());
    assert!(effects(&world).contains(&"etcd: remove 2".to_string()));
    assert_eq!(under_way(&c), 1, "2 voters of 3: replace must stay under way");
    world.lock().unwrap().failing.clear();
    world.lock().unwrap().events.clear();
    replace_2(&c, &world, false).unwrap();
    let after = effects(&world);
    assert!(!after.iter().any(|e| e.starts_with("etcd: remove")), "{after:?}");
    assert!(after.contains(&"etcd: add learner".to_string()), "{after:?}");
    assert_eq!(voters(&world), 3);
    assert_eq!(under_way(&c), 0);
}

#[test]
fn resumed_after_the_add_it_starts_and_promotes_the_learner_it_finds() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    {
        // an earlier run removed etcd-2 and added its learner, then was killed
        let mut w = world.lock().unwrap();
        w.members.retain(|m| m.name != "etcd-2");
        let peer = c.plan.members[1].spec.peer_url();
        w.members.push(etcdctl_lite::model::MemberInfo { id: 77, name: String::new(), peer_urls: vec![peer], client_urls: vec![], is_learner: true });
    }
    let _ = run(&c, &world, |ctx| ctx.changing("add etcd-2").and(Err(BootError::Verification("killed".into()))));
    replace_2(&c, &world, false).unwrap();
    let files = c.plan.members[1].files.len();
    assert_eq!(effects(&world), vec!["etcd-2: free-space".to_string(), format!("etcd-2: deliver {files}"), "etcd-2: start".into(), "etcd: promote 77".into()]);
    assert_eq!(voters(&world), 3);
}

#[test]
fn resumed_after_the_promotion_it_only_waits_for_healthy_even_though_the_member_is_healthy() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    let _ = run(&c, &world, |ctx| ctx.changing("promote etcd-2").and(Err(BootError::Verification("killed".into()))));
    replace_2(&c, &world, false).unwrap();
    assert_eq!(effects(&world), Vec::<String>::new());
    assert_eq!(under_way(&c), 0);
}

#[test]
fn an_unknown_member_is_named_with_the_members_there_are() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    let e = run(&c, &world, |ctx| replace(ctx, "etcd-9", false, WAIT)).unwrap_err();
    assert_eq!(e.to_string(), "no member \"etcd-9\" in the spec (its members: etcd-1, etcd-2, etcd-3)");
}

/// An adopted member under a unit, a static pod or in a container, as the spec records it.
fn adopted_as(c: &mut Cluster, supervisor: crate::spec::adopted::AdoptedSupervisor) {
    c.plan.members[1].spec.adopted = Some(crate::spec::adopted::AdoptedMember {
        supervisor,
        settings_from: "flags".into(),
        config_file: None,
        binary: "/usr/local/bin/etcd".into(),
        version: "3.5.30".into(),
        tls: Default::default(),
        command_line: vec!["--name".into(), "etcd-2".into()],
        working_dir: "/".into(),
        environment: Default::default(),
    });
}

#[test]
fn an_adopted_static_pod_or_container_member_is_refused_with_what_replaces_it_before_any_change() {
    use crate::spec::adopted::AdoptedSupervisor as Supervisor;
    for (supervisor, says) in [
        (Supervisor::StaticPod { manifest: "/etc/kubernetes/manifests/etcd.yaml".into() }, "kubeadm join --control-plane"),
        (Supervisor::Container, "would mean editing that"),
    ] {
        let mut c = cluster();
        adopted_as(&mut c, supervisor);
        let world = fakes::world(&c.plan);
        dead(&world, "etcd-2");
        let e = replace_2(&c, &world, false).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
        assert!(effects(&world).iter().all(|e| !e.contains("retire") && !e.contains("remove") && !e.contains("add")), "{:?}", effects(&world));
        assert_eq!(under_way(&c), 0, "a refusal leaves nothing under way");
    }
}

/// A joiner whose etcd exits (here: a flag shadowing its ETCD_* variable) is reported within a
/// second or two with etcd's own fatal line, not after the catch-up bound, naming what goes on.
#[test]
fn a_joiner_that_exits_is_reported_at_once_with_etcds_message_and_the_next_step() {
    let c = cluster();
    let world = fakes::world(&c.plan);
    dead(&world, "etcd-2");
    world.lock().unwrap().exits_on_start.insert("etcd-2".into());
    let t = std::time::Instant::now();
    let e = run(&c, &world, |ctx| replace(ctx, "etcd-2", false, Duration::from_secs(60))).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(10), "reported at once, not after the 60 s bound: {:?}", t.elapsed());
    assert!(e.contains("etcd-2 exited: failed to start etcd: conflicting environment variable \"ETCD_INITIAL_CLUSTER_STATE\" is shadowed by corresponding command-line flag"), "{e}");
    assert!(e.contains("it was added as a learner and is not running: fix that, then run etcd-bootstrap"), "{e}");
    assert!(e.contains("replace etcd-2 again"), "{e}");
    assert_eq!(under_way(&c), 1, "unfinished at its promote step: the same command goes on");
}
