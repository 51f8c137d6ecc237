//! The verdict over hand-made observations: every state, from the same fixtures the golden
//! rendering tests use.

use super::*;
use crate::model::MemberList;

pub(crate) fn member(id: u64, name: &str, learner: bool) -> MemberInfo {
    MemberInfo {
        id,
        name: name.into(),
        peer_urls: vec![format!("https://10.0.0.{id}:2380")],
        client_urls: if name.is_empty() { vec![] } else { vec![format!("https://10.0.0.{id}:2379")] },
        is_learner: learner,
    }
}

pub(crate) fn status(id: u64, leader: u64, term: u64, applied: u64) -> StatusInfo {
    StatusInfo {
        cluster_id: 77,
        member_id: id,
        revision: 5,
        header_raft_term: term,
        version: "3.4.23".into(),
        db_size: 20480,
        db_size_in_use: 16384,
        leader,
        raft_index: applied,
        raft_term: term,
        raft_applied_index: applied,
        is_learner: false,
        errors: vec![],
        since_36: None,
    }
}

pub(crate) fn ok_probe(id: u64, leader: u64) -> Probe {
    Probe { endpoint: format!("https://10.0.0.{id}:2379"), status: Ok(status(id, leader, 2, 100)), read: Ok(Duration::from_millis(3)), alarms: vec![] }
}

pub(crate) fn failed_probe(id: u64, kind: FailureKind) -> Probe {
    let f = Failure { kind, message: format!("{kind:?}") };
    Probe { endpoint: format!("https://10.0.0.{id}:2379"), status: Err(f.clone()), read: Err(f), alarms: vec![] }
}

pub(crate) fn list(members: Vec<MemberInfo>) -> Option<MemberList> {
    Some(MemberList { cluster_id: 77, member_id: 1, raft_term: 2, members })
}

pub(crate) fn three(probes: Vec<Probe>) -> Observation {
    Observation { member_list: list(vec![member(1, "etcd-1", false), member(2, "etcd-2", false), member(3, "etcd-3", false)]), probes }
}

#[test]
fn quorum_table() {
    let expected = [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2), (6, 4, 2), (7, 4, 3)];
    for (voters, quorum, tolerates) in expected {
        assert_eq!(quorum_size(voters), quorum);
        assert_eq!(voters - quorum_size(voters), tolerates);
    }
}

#[test]
fn all_healthy() {
    let v = verdict(&three(vec![ok_probe(1, 1), ok_probe(2, 1), ok_probe(3, 1)]));
    assert_eq!(v.state, ClusterState::Healthy);
    assert_eq!((v.voters, v.quorum, v.healthy_voters, v.failures_tolerated), (3, 2, 3, 1));
    assert_eq!(v.leader.as_deref(), Some("etcd-1 (1)"));
    assert_eq!(v.members[0].role, Role::Leader);
}

#[test]
fn one_down_is_degraded_and_named() {
    let v = verdict(&three(vec![ok_probe(1, 1), ok_probe(2, 1), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::Degraded);
    assert_eq!(v.state.exit_code(), 1);
    assert_eq!(v.failures_tolerated, 0);
    assert_eq!(v.members[2].state, MemberState::Down);
    assert!(v.summary.contains("etcd-3 down"), "{}", v.summary);
}

#[test]
fn one_hung_is_degraded() {
    let v = verdict(&three(vec![ok_probe(1, 1), failed_probe(2, FailureKind::Timeout), ok_probe(3, 1)]));
    assert_eq!(v.state, ClusterState::Degraded);
    assert_eq!(v.members[1].state, MemberState::Hung);
}

#[test]
fn two_down_is_no_quorum_even_if_the_survivor_thinks_it_leads() {
    let mut survivor = ok_probe(1, 1);
    survivor.read = Err(Failure { kind: FailureKind::Timeout, message: "no answer".into() });
    let v = verdict(&three(vec![survivor, failed_probe(2, FailureKind::Refused), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
    assert_eq!(v.state.exit_code(), 2);
    assert_eq!(v.failures_tolerated, 0);
}

#[test]
fn no_leader_is_no_quorum() {
    let mut p = ok_probe(1, 0);
    if let Ok(s) = &mut p.status {
        s.errors = vec!["etcdserver: no leader".into()];
    }
    p.read = Err(Failure { kind: FailureKind::NoLeader, message: "no leader".into() });
    let v = verdict(&three(vec![p, failed_probe(2, FailureKind::Refused), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
    assert_eq!(v.members[0].state, MemberState::NoLeader);
    assert!(v.leader.is_none());
}

#[test]
fn nothing_answering_for_our_own_tls_files_is_unknown() {
    let v = verdict(&three(vec![failed_probe(1, FailureKind::Refused), failed_probe(2, FailureKind::Tls)]));
    assert_eq!(v.state, ClusterState::Unknown);
    assert_eq!(v.state.exit_code(), 3);
}

#[test]
fn every_member_down_is_no_quorum_not_unknown() {
    let v = verdict(&three(vec![failed_probe(1, FailureKind::Refused), failed_probe(2, FailureKind::Timeout), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
    assert_eq!(v.state.exit_code(), 2, "monitoring pages on it");
    assert!(v.summary.starts_with("no member reachable"), "{}", v.summary);
}

#[test]
fn unstarted_member_counts_as_a_voter() {
    let mut obs = three(vec![ok_probe(1, 1), ok_probe(2, 1), ok_probe(3, 1)]);
    if let Some(l) = &mut obs.member_list {
        l.members.push(member(4, "", false));
    }
    let v = verdict(&obs);
    assert_eq!((v.voters, v.quorum, v.healthy_voters), (4, 3, 3));
    assert_eq!(v.state, ClusterState::Degraded);
    assert_eq!(v.members[3].state, MemberState::NotStarted);
}

#[test]
fn learners_do_not_vote() {
    let mut obs = three(vec![ok_probe(1, 1), ok_probe(2, 1), ok_probe(3, 1)]);
    let mut learner = ok_probe(4, 1);
    learner.read = Err(Failure { kind: FailureKind::Learner, message: "learner".into() });
    if let Ok(s) = &mut learner.status {
        s.is_learner = true;
    }
    obs.probes.push(learner);
    if let Some(l) = &mut obs.member_list {
        l.members.push(member(4, "etcd-4", true));
    }
    let v = verdict(&obs);
    assert_eq!((v.voters, v.learners, v.quorum), (3, 1, 2));
    assert_eq!(v.state, ClusterState::Healthy);
    assert_eq!(v.members[3].role, Role::Learner);
}

#[test]
fn nospace_anywhere_is_read_only_and_the_alarmed_member_still_votes() {
    let mut p = ok_probe(2, 1);
    p.alarms = vec![AlarmInfo { member_id: 2, alarm: "NOSPACE".into() }];
    let v = verdict(&three(vec![ok_probe(1, 1), p, ok_probe(3, 1)]));
    assert_eq!(v.state, ClusterState::ReadOnly);
    assert_eq!(v.state.exit_code(), 2, "writes refused cluster-wide is critical");
    assert_eq!(v.members[1].state, MemberState::Alarmed);
    assert_eq!(v.alarms, vec!["NOSPACE on 2"]);
    // 3 voters all voting: one more failure is tolerated, whatever the alarm
    assert_eq!(v.failures_tolerated, 1, "{}", v.summary);
    assert!(v.summary.starts_with("writes refused cluster-wide: NOSPACE on etcd-2") && v.summary.contains("maintain"), "{}", v.summary);
    // CORRUPT too, with its own remedy
    let mut c = ok_probe(3, 1);
    c.alarms = vec![AlarmInfo { member_id: 3, alarm: "CORRUPT".into() }];
    let v = verdict(&three(vec![ok_probe(1, 1), ok_probe(2, 1), c]));
    assert_eq!(v.state, ClusterState::ReadOnly);
    assert!(v.summary.contains("CORRUPT on etcd-3") && v.summary.contains("replace"), "{}", v.summary);
    // a lost quorum still says so first
    let mut alone = ok_probe(1, 1);
    alone.alarms = vec![AlarmInfo { member_id: 1, alarm: "NOSPACE".into() }];
    alone.read = Err(Failure { kind: FailureKind::NoLeader, message: "no leader".into() });
    let v = verdict(&three(vec![alone, failed_probe(2, FailureKind::Refused), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
}

#[test]
fn lag_degrades() {
    let mut behind = ok_probe(3, 1);
    if let Ok(s) = &mut behind.status {
        s.raft_applied_index = 1;
    }
    let mut leader = ok_probe(1, 1);
    if let Ok(s) = &mut leader.status {
        s.raft_index = 5000;
        s.raft_applied_index = 5000;
    }
    let mut up_to_date = ok_probe(2, 1);
    if let Ok(s) = &mut up_to_date.status {
        s.raft_applied_index = 4990;
    }
    let v = verdict(&three(vec![leader, up_to_date, behind]));
    assert_eq!(v.state, ClusterState::Degraded);
    assert_eq!(v.members[2].state, MemberState::Lagging);
}

#[test]
fn without_a_member_list_members_come_from_the_endpoints() {
    let obs = Observation { member_list: None, probes: vec![ok_probe(1, 1), ok_probe(2, 1), failed_probe(3, FailureKind::Refused)] };
    let v = verdict(&obs);
    assert_eq!(v.voters, 3);
    assert_eq!(v.state, ClusterState::Degraded);
    assert!(v.notes[0].contains("no member list"));
}

#[test]
fn a_majority_without_a_leader_is_called_an_election_not_a_lost_quorum() {
    let leaderless = |id| {
        let mut p = ok_probe(id, 0);
        p.read = Err(Failure { kind: FailureKind::NoLeader, message: "etcdserver: no leader".into() });
        p
    };
    let v = verdict(&three(vec![leaderless(1), leaderless(2), failed_probe(3, FailureKind::Refused)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
    assert!(v.summary.starts_with("no leader: election in progress or stuck; 2 of 3 voters reachable"), "{}", v.summary);
    assert!(!v.summary.contains("quorum lost"), "{}", v.summary);
    assert!(v.electing, "a leaderless majority is an election worth re-checking");
}

#[test]
fn a_leaderless_minority_is_a_lost_quorum_not_an_election() {
    let mut p = ok_probe(1, 0);
    p.read = Err(Failure { kind: FailureKind::NoLeader, message: "etcdserver: no leader".into() });
    let v = verdict(&three(vec![p, failed_probe(2, FailureKind::Refused), failed_probe(3, FailureKind::Refused)]));
    assert!(!v.electing && v.summary.starts_with("quorum lost"), "{}", v.summary);
    let healthy = verdict(&three(vec![ok_probe(1, 1), ok_probe(2, 1), ok_probe(3, 1)]));
    assert!(!healthy.electing);
}

#[test]
fn reads_failing_across_a_leader_change_are_re_checked_not_reported_at_once() {
    // MoveLeader: the new leader answers, the reads of the moment fail ("leader changed")
    let changing = |id| {
        let mut p = ok_probe(id, 2);
        p.read = Err(Failure { kind: FailureKind::Other, message: "etcdserver: leader changed".into() });
        p
    };
    let v = verdict(&three(vec![changing(1), changing(2), changing(3)]));
    assert_eq!(v.state, ClusterState::NoQuorum);
    assert!(v.summary.starts_with("quorum unusable"), "{}", v.summary);
    assert!(v.electing, "a majority answering is a transition worth re-checking for one election timeout");
}
