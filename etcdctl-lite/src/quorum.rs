//! The quorum verdict: a pure function from what was observed to HEALTHY, DEGRADED or NO-QUORUM,
//! with per-member detail. It does not trust a single source: members come from the member list
//! when one was obtained (so members that were added but never started count), and from the
//! endpoints that answered otherwise (etcd 3.5+ refuses the member list without quorum).

use crate::diagnose::{Failure, FailureKind};
use crate::model::{AlarmInfo, MemberInfo, MemberList, StatusInfo};
use serde::Serialize;
use std::time::Duration;

/// A member is lagging when its applied index is this far behind the leader's commit index.
pub const LAG_THRESHOLD: u64 = 1000;

/// Everything learned about one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub endpoint: String,
    pub status: Result<StatusInfo, Failure>,
    /// The linearizable read (needs a leader and a quorum).
    pub read: Result<Duration, Failure>,
    pub alarms: Vec<AlarmInfo>,
}

/// The input of the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub member_list: Option<MemberList>,
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClusterState {
    #[serde(rename = "HEALTHY")]
    Healthy,
    #[serde(rename = "DEGRADED")]
    Degraded,
    #[serde(rename = "NO-QUORUM")]
    NoQuorum,
    /// Quorum holds, but a NOSPACE or CORRUPT alarm makes etcd refuse writes cluster-wide.
    #[serde(rename = "READ-ONLY")]
    ReadOnly,
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl ClusterState {
    /// Monitoring-plugin exit codes (Nagios/Icinga): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            ClusterState::Healthy => pki::exit::OK,
            ClusterState::Degraded => pki::exit::WARNING,
            ClusterState::NoQuorum | ClusterState::ReadOnly => pki::exit::CRITICAL,
            ClusterState::Unknown => pki::exit::UNKNOWN,
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            ClusterState::Healthy => "HEALTHY",
            ClusterState::Degraded => "DEGRADED",
            ClusterState::NoQuorum => "NO-QUORUM",
            ClusterState::ReadOnly => "READ-ONLY",
            ClusterState::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    Healthy,
    /// Connection refused.
    Down,
    /// No answer in time.
    Hung,
    /// TLS or other failure: reachable but not usable.
    Unreachable,
    /// In the member list, never started (added, not joined).
    NotStarted,
    /// Answers, but has no leader.
    NoLeader,
    /// Answers, far behind the leader.
    Lagging,
    /// Has an active alarm (NOSPACE, CORRUPT).
    Alarmed,
    /// Answers, but linearizable reads fail.
    Failing,
    /// In the member list, with no client URL that was checked.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Leader,
    Follower,
    Learner,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberVerdict {
    pub name: String,
    pub id: String,
    pub endpoint: String,
    pub role: Role,
    pub state: MemberState,
    pub raft_term: Option<u64>,
    pub raft_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub state: ClusterState,
    /// Voting members (learners excluded).
    pub voters: usize,
    /// floor(voters/2) + 1.
    pub quorum: usize,
    /// Voters that are fully healthy.
    pub healthy_voters: usize,
    /// Voters that take part in consensus (healthy, lagging or alarmed).
    pub participating_voters: usize,
    /// How many more healthy voters may fail before quorum is lost.
    pub failures_tolerated: usize,
    pub leader: Option<String>,
    pub learners: usize,
    pub alarms: Vec<String>,
    pub summary: String,
    pub members: Vec<MemberVerdict>,
    pub notes: Vec<String>,
    /// No usable quorum while a majority of voters answers: an election, or a leadership change
    /// (MoveLeader) whose new leader answers while reads still fail; either normally ends within
    /// one election timeout (see [`crate::observe::assess`]).
    #[serde(skip)]
    pub electing: bool,
}

pub fn quorum_size(voters: usize) -> usize {
    voters / 2 + 1
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// Which state a failed probe means.
fn failed_state(f: &Failure) -> MemberState {
    match f.kind {
        FailureKind::Refused => MemberState::Down,
        FailureKind::Timeout => MemberState::Hung,
        FailureKind::NoLeader => MemberState::NoLeader,
        _ => MemberState::Unreachable,
    }
}

/// The verdict over `obs`: the leader as the members see it, each member's verdict, the counts,
/// then the cluster's state and a one-line summary.
pub fn verdict(obs: &Observation) -> Verdict {
    let answered: Vec<(&Probe, &StatusInfo)> = obs.probes.iter().filter_map(|p| p.status.as_ref().ok().map(|s| (p, s))).collect();
    if answered.is_empty() {
        return nobody_answered(obs);
    }
    let mut notes = Vec::new();
    let (leader_id, leader_index) = leader_of(&answered);
    let members = members_of(obs, &mut notes);
    let all_alarms = alarms_of(obs);
    let seen = Seen { obs, answered: &answered, leader_id, leader_index, alarms: &all_alarms };
    let verdicts: Vec<MemberVerdict> = members.iter().map(|m| seen.member(m)).collect();
    let counts = Counts::of(&verdicts, leader_id.is_some());
    // endpoints that answered for a member that is not in the list (another cluster?)
    for (p, s) in &answered {
        if obs.member_list.is_some() && !members.iter().any(|m| m.id == s.member_id) {
            notes.push(format!("{} answered as member {:x}, which is not in the member list (another cluster?)", p.endpoint, s.member_id));
        }
    }
    let leader_reachable = leader_id.is_some_and(|l| answered.iter().any(|(_, s)| s.member_id == l));
    let leader = leader_id.map(|l| {
        let name = members.iter().find(|m| m.id == l).map(|m| m.name.clone()).unwrap_or_default();
        let base = if name.is_empty() { hex(l) } else { format!("{name} ({})", hex(l)) };
        if leader_reachable { base } else { format!("{base}, as last seen: unreachable now") }
    });
    let blocking = blocking_alarms(&all_alarms, &members);
    let read_ok = obs.probes.iter().any(|p| p.read.is_ok());
    let state = cluster_state(&counts, &verdicts, leader_id.is_some(), read_ok, &blocking, all_alarms.is_empty());
    let summary = summary(state, &counts, &verdicts, &blocking, leader_reachable);
    Verdict {
        state,
        voters: counts.voters,
        quorum: counts.quorum(),
        healthy_voters: counts.healthy,
        participating_voters: counts.participating,
        failures_tolerated: if state == ClusterState::NoQuorum { 0 } else { counts.tolerated() },
        leader,
        learners: counts.learners,
        alarms: all_alarms.iter().map(|a| format!("{} on {:x}", a.alarm, a.member_id)).collect(),
        summary,
        members: verdicts,
        notes,
        electing: state == ClusterState::NoQuorum && counts.reachable >= counts.quorum(),
    }
}

/// No member answered a status request. Every one refused the connection or never answered: the
/// cluster is down (or cut off from here) — a critical state, not an unknown one. Only when
/// something else failed (our TLS files refused, a foreign service) could the check itself not
/// be made.
fn nobody_answered(obs: &Observation) -> Verdict {
    let all_down = !obs.probes.is_empty()
        && obs.probes.iter().all(|p| p.status.as_ref().err().is_some_and(|f| matches!(f.kind, FailureKind::Refused | FailureKind::Timeout)));
    let (state, summary) = if all_down {
        (
            ClusterState::NoQuorum,
            format!("no member reachable ({} endpoint(s) refused or did not answer); the cluster is down or cut off from here", obs.probes.len()),
        )
    } else {
        (ClusterState::Unknown, "no endpoint answered: cannot determine the cluster's state".to_string())
    };
    let members = obs
        .probes
        .iter()
        .map(|p| MemberVerdict {
            name: String::new(),
            id: String::new(),
            endpoint: p.endpoint.clone(),
            role: Role::Unknown,
            state: p.status.as_ref().err().map(failed_state).unwrap_or(MemberState::Unknown),
            raft_term: None,
            raft_index: None,
            applied_index: None,
            detail: p.status.as_ref().err().map(|f| f.message.clone()).unwrap_or_default(),
        })
        .collect();
    Verdict {
        state,
        voters: 0,
        quorum: 0,
        healthy_voters: 0,
        participating_voters: 0,
        failures_tolerated: 0,
        leader: None,
        learners: 0,
        alarms: vec![],
        summary,
        members,
        notes: vec![],
        electing: false,
    }
}

/// The leader, as seen by the members with the highest term that know one, and its raft index
/// (the highest seen when there is no leader).
fn leader_of(answered: &[(&Probe, &StatusInfo)]) -> (Option<u64>, u64) {
    let top_term = answered.iter().map(|(_, s)| s.raft_term).max().unwrap_or(0);
    let leader_id = answered.iter().filter(|(_, s)| s.raft_term == top_term && s.leader != 0 && !has_no_leader(s)).map(|(_, s)| s.leader).next();
    let leader_index = leader_id
        .and_then(|l| answered.iter().find(|(_, s)| s.member_id == l).map(|(_, s)| s.raft_index))
        .unwrap_or_else(|| answered.iter().map(|(_, s)| s.raft_index).max().unwrap_or(0));
    (leader_id, leader_index)
}

/// The members: from the member list, or inferred from what answered.
fn members_of(obs: &Observation, notes: &mut Vec<String>) -> Vec<MemberInfo> {
    if let Some(list) = &obs.member_list {
        return list.members.clone();
    }
    notes.push("no member list could be read (etcd 3.5+ refuses it without quorum); members inferred from the endpoints".into());
    let mut inferred: Vec<MemberInfo> = Vec::new();
    for p in &obs.probes {
        let one = |id: u64, is_learner: bool| MemberInfo { id, name: String::new(), peer_urls: vec![], client_urls: vec![p.endpoint.clone()], is_learner };
        match &p.status {
            Ok(s) if !inferred.iter().any(|m| m.id == s.member_id) => inferred.push(one(s.member_id, s.is_learner)),
            Ok(_) => {}
            Err(_) => inferred.push(one(0, false)),
        }
    }
    inferred
}

/// Every alarm any member reported, once.
fn alarms_of(obs: &Observation) -> Vec<&AlarmInfo> {
    let mut a: Vec<&AlarmInfo> = obs.probes.iter().flat_map(|p| p.alarms.iter()).collect();
    a.sort_by_key(|x| (x.member_id, x.alarm.clone()));
    a.dedup();
    a
}

/// NOSPACE or CORRUPT anywhere: etcd refuses every write (and CORRUPT more), cluster-wide.
fn blocking_alarms(alarms: &[&AlarmInfo], members: &[MemberInfo]) -> Vec<String> {
    alarms
        .iter()
        .filter(|a| matches!(a.alarm.as_str(), "NOSPACE" | "CORRUPT"))
        .map(|a| {
            let who = members.iter().find(|m| m.id == a.member_id).map(|m| m.name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| hex(a.member_id));
            format!("{} on {who}", a.alarm)
        })
        .collect()
}

/// What the member verdicts are judged against.
struct Seen<'a> {
    obs: &'a Observation,
    answered: &'a [(&'a Probe, &'a StatusInfo)],
    leader_id: Option<u64>,
    leader_index: u64,
    alarms: &'a [&'a AlarmInfo],
}

impl Seen<'_> {
    fn member(&self, m: &MemberInfo) -> MemberVerdict {
        let by_id = self.answered.iter().find(|(_, s)| s.member_id == m.id && m.id != 0);
        let by_url = self.obs.probes.iter().find(|p| m.client_urls.iter().any(|u| same_url(u, &p.endpoint)));
        let probe = by_id.map(|(p, _)| *p).or(by_url);
        let status = by_id.map(|(_, s)| *s).or_else(|| probe.and_then(|p| p.status.as_ref().ok()));
        let is_learner = m.is_learner || status.is_some_and(|s| s.is_learner);
        let role = match status {
            _ if is_learner => Role::Learner,
            Some(s) if Some(s.member_id) == self.leader_id => Role::Leader,
            Some(_) => Role::Follower,
            None => Role::Unknown,
        };
        let (state, detail) = self.member_state(m, probe, status, is_learner);
        MemberVerdict {
            name: if m.name.is_empty() && !m.started() { "(not started)".into() } else { m.name.clone() },
            id: if m.id == 0 { String::new() } else { hex(m.id) },
            endpoint: probe.map(|p| p.endpoint.clone()).or_else(|| m.client_urls.first().cloned()).unwrap_or_default(),
            role,
            state,
            raft_term: status.map(|s| s.raft_term),
            raft_index: status.map(|s| s.raft_index),
            applied_index: status.map(|s| s.raft_applied_index),
            detail,
        }
    }

    fn member_state(&self, m: &MemberInfo, probe: Option<&Probe>, status: Option<&StatusInfo>, is_learner: bool) -> (MemberState, String) {
        let alarms: Vec<&str> = self.alarms.iter().filter(|a| a.member_id == m.id).map(|a| a.alarm.as_str()).collect();
        let Some(s) = status else {
            if !m.started() {
                return (MemberState::NotStarted, "in the member list but never started (added, not joined): start it or remove it".to_string());
            }
            return match probe {
                Some(p) => {
                    let f = p.status.as_ref().err().cloned().unwrap_or(Failure { kind: FailureKind::Other, message: "no status".into() });
                    (failed_state(&f), f.message)
                }
                None => (MemberState::Unknown, format!("none of its client URLs ({}) was checked", m.client_urls.join(", "))),
            };
        };
        if !m.started() {
            (MemberState::NotStarted, "in the member list but never started (added, not joined): start it or remove it".to_string())
        } else if has_no_leader(s) {
            (MemberState::NoLeader, format!("answers, but: {}", s.errors.join("; ")))
        } else if !alarms.is_empty() {
            (MemberState::Alarmed, format!("active alarm: {}", alarms.join(", ")))
        } else if self.leader_index.saturating_sub(s.raft_applied_index) > LAG_THRESHOLD {
            (MemberState::Lagging, format!("applied index {} is {} behind the leader", s.raft_applied_index, self.leader_index - s.raft_applied_index))
        } else {
            match probe.map(|p| &p.read) {
                Some(Ok(took)) => (MemberState::Healthy, format!("linearizable read in {}", crate::model::go_duration(*took))),
                Some(Err(f)) if is_learner && f.kind == FailureKind::Learner => {
                    (MemberState::Healthy, "learner: serves no linearizable reads until promoted".to_string())
                }
                Some(Err(f)) => (MemberState::Failing, format!("status answers, linearizable read fails: {}", f.message)),
                None => (MemberState::Unknown, "not checked".to_string()),
            }
        }
    }
}

/// Voters and learners by what their verdicts say.
struct Counts {
    voters: usize,
    learners: usize,
    healthy: usize,
    /// voters that answered at all (a leaderless member answers status too)
    reachable: usize,
    /// voters that take part in the leader's quorum
    participating: usize,
    /// healthy voters plus alarmed ones: an alarmed member still votes
    voting_ok: usize,
}

impl Counts {
    fn of(verdicts: &[MemberVerdict], leader_known: bool) -> Counts {
        use MemberState::*;
        let voters: Vec<&MemberVerdict> = verdicts.iter().filter(|v| v.role != Role::Learner).collect();
        let count = |f: &dyn Fn(MemberState) -> bool| voters.iter().filter(|v| f(v.state)).count();
        Counts {
            voters: voters.len(),
            learners: verdicts.len() - voters.len(),
            healthy: count(&|s| s == Healthy),
            reachable: count(&|s| matches!(s, Healthy | Lagging | Alarmed | Failing | NoLeader)),
            participating: if leader_known { count(&|s| matches!(s, Healthy | Lagging | Alarmed | Failing)) } else { 0 },
            voting_ok: count(&|s| matches!(s, Healthy | Alarmed)),
        }
    }
    fn quorum(&self) -> usize {
        quorum_size(self.voters)
    }
    fn tolerated(&self) -> usize {
        self.voting_ok.saturating_sub(self.quorum())
    }
}

fn cluster_state(c: &Counts, verdicts: &[MemberVerdict], leader_known: bool, read_ok: bool, blocking: &[String], no_alarms: bool) -> ClusterState {
    if !leader_known || c.participating < c.quorum() || !read_ok {
        ClusterState::NoQuorum
    } else if !blocking.is_empty() {
        ClusterState::ReadOnly
    } else if c.healthy == c.voters && no_alarms && verdicts.iter().all(|v| v.state == MemberState::Healthy) {
        ClusterState::Healthy
    } else {
        ClusterState::Degraded
    }
}

fn summary(state: ClusterState, c: &Counts, verdicts: &[MemberVerdict], blocking: &[String], leader_reachable: bool) -> String {
    let (voters, quorum, healthy, tolerated) = (c.voters, c.quorum(), c.healthy, c.tolerated());
    match state {
        ClusterState::Healthy => format!("all {voters} voters healthy; quorum {quorum}; tolerates {tolerated} failure(s)"),
        ClusterState::Degraded => {
            let bad: Vec<String> = verdicts
                .iter()
                .filter(|v| v.state != MemberState::Healthy)
                .map(|v| format!("{} {}", if v.name.is_empty() { &v.endpoint } else { &v.name }, state_word(v.state)))
                .collect();
            format!("quorum holds ({healthy} of {voters} voters healthy, quorum {quorum}); tolerates {tolerated} more failure(s); {}", bad.join(", "))
        }
        ClusterState::ReadOnly => {
            let hint = if blocking.iter().any(|b| b.starts_with("NOSPACE")) {
                "compact, defragment and disarm: `etcd-bootstrap maintain` (or etcdctl compaction, defrag, alarm disarm)"
            } else {
                "a CORRUPT member must be replaced from a good member's data or a snapshot: `etcd-bootstrap replace MEMBER`"
            };
            format!(
                "writes refused cluster-wide: {}; quorum holds ({} of {voters} voters voting, quorum {quorum}; tolerates {tolerated} more failure(s)); {hint}",
                blocking.join(", "),
                c.voting_ok
            )
        }
        ClusterState::NoQuorum if c.reachable < quorum => {
            format!("quorum lost: {} of {voters} voters reachable, quorum needs {quorum}; writes and linearizable reads fail", c.reachable)
        }
        // enough voters answer, yet none leads (or the last leader is gone): an election, not a
        // lost quorum
        ClusterState::NoQuorum if !leader_reachable => {
            format!(
                "no leader: election in progress or stuck; {} of {voters} voters reachable (quorum {quorum}); writes and linearizable reads fail meanwhile",
                c.reachable
            )
        }
        ClusterState::NoQuorum => format!(
            "quorum unusable: a leader is known and {} of {voters} voters reachable, but no linearizable read succeeded; writes and linearizable reads fail",
            c.participating
        ),
        ClusterState::Unknown => String::new(),
    }
}

pub fn state_word(s: MemberState) -> &'static str {
    match s {
        MemberState::Healthy => "healthy",
        MemberState::Down => "down",
        MemberState::Hung => "hung",
        MemberState::Unreachable => "unreachable",
        MemberState::NotStarted => "not-started",
        MemberState::NoLeader => "no-leader",
        MemberState::Lagging => "lagging",
        MemberState::Alarmed => "alarmed",
        MemberState::Failing => "failing",
        MemberState::Unknown => "unknown",
    }
}

fn has_no_leader(s: &StatusInfo) -> bool {
    s.leader == 0 || s.errors.iter().any(|e| e.contains("no leader"))
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
pub(crate) mod tests;
