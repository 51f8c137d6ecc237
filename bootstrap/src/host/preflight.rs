//! Judging what the preflight script found on a member's host (pure): is it safe to start, is it
//! already running, or must `up` refuse — and why, in words the operator can act on.

use crate::host::scripts::marker_text;
use crate::host::transport::ScriptOutput;
use crate::plan::MemberPlan;

/// What `up` will do with a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fresh member: start it (static bootstrap).
    Start,
    /// Its data dir is this cluster's (from an earlier, interrupted run): start it again.
    Restart,
    /// Running already: leave it alone.
    Running,
}

/// The facts for one member, or every reason it cannot be started. `binary_delivered`: `up`
/// brings the etcd binary itself (`etcd_archive`), so a missing one is not a problem.
pub fn judge(m: &MemberPlan, token: &str, facts: &ScriptOutput, binary_delivered: bool) -> Result<(Action, Option<String>), Vec<String>> {
    let sp = &m.spec;
    let who = format!("member {} ({})", sp.name, sp.host);
    let mut problems = Vec::new();
    let version = facts.value("etcd_version");
    if facts.value("etcd_missing").is_some() && !binary_delivered {
        problems.push(format!("{who}: etcd binary {:?} not found; install etcd (Debian: etcd-server) or set etcd_binary in the spec", m.binary));
    }
    if facts.value("running").is_some() {
        return if problems.is_empty() { Ok((Action::Running, version)) } else { Err(problems) };
    }
    for l in facts.values("listener") {
        let Some((port, local)) = l.split_once(' ') else { continue };
        let host = local.rsplit_once(':').map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']')).unwrap_or("");
        let ours = host == sp.address.to_string() || matches!(host, "0.0.0.0" | "*" | "::");
        if ours {
            problems.push(format!("{who}: port {port} on {} is in use ({local} listens); stop what listens there or change client_port/peer_port", sp.address));
        }
    }
    let mut action = Action::Start;
    if facts.value("data_nonempty").is_some() {
        match facts.value("marker") {
            Some(mark) if mark.trim() == marker_text(token, &sp.name) => action = Action::Restart,
            other => problems.push(format!(
                "{who}: data dir {} is not empty and was not created by this cluster ({}); etcd would ignore \
                 --initial-cluster or refuse to join (\"member has already been bootstrapped\"). Move it away or set \
                 another data_dir: etcd-bootstrap never deletes data",
                sp.data_dir.display(),
                match other {
                    Some(mark) => format!("its marker says {mark:?}"),
                    None => "no etcd-bootstrap marker".to_string(),
                }
            )),
        }
    }
    if let Some(state) = facts.value("systemd_unusable") {
        problems.push(format!(
            "{who}: supervisor systemd, but systemd does not run this host (systemctl is-system-running: {state}); set `supervisor: process` for this member"
        ));
    }
    for addr in facts.values("unroutable") {
        problems.push(format!("{who}: no route to peer {addr}"));
    }
    if problems.is_empty() { Ok((action, version)) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberPlan {
        let spec: crate::spec::MemberSpec = serde_yaml_ng::from_str("{name: etcd-1, address: 10.0.0.11, data_dir: /d}").unwrap();
        MemberPlan { args: vec![], binary: "etcd".into(), files: vec![], spec }
    }

    fn facts(s: &str) -> ScriptOutput {
        ScriptOutput { code: Some(0), stdout: s.into(), stderr: String::new() }
    }

    #[test]
    fn fresh_host() {
        assert_eq!(judge(&member(), "t", &facts("etcd_version=3.4.23\n"), false).unwrap(), (Action::Start, Some("3.4.23".into())));
    }

    #[test]
    fn refuses_a_foreign_data_dir_and_busy_ports_with_reasons() {
        let e = judge(&member(), "t", &facts("etcd_version=3.4.23\ndata_nonempty=1\nlistener=2379 0.0.0.0:2379\nlistener=2380 10.0.0.99:2380\n"), false)
            .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("port 2379 on 10.0.0.11 is in use"), "{e:?}");
        assert!(e[1].contains("never deletes data") && e[1].contains("no etcd-bootstrap marker"), "{e:?}");
    }

    #[test]
    fn own_data_dir_resumes_and_running_is_left_alone() {
        assert_eq!(judge(&member(), "t", &facts("data_nonempty=1\nmarker=t etcd-1\n"), false).unwrap().0, Action::Restart);
        assert_eq!(judge(&member(), "t", &facts("running=1\nlistener=2379 10.0.0.11:2379\n"), false).unwrap().0, Action::Running);
        let e = judge(&member(), "t", &facts("data_nonempty=1\nmarker=other-cluster etcd-1\n"), false).unwrap_err();
        assert!(e[0].contains("other-cluster"));
        assert!(judge(&member(), "t", &facts("etcd_missing=1\n"), false).unwrap_err()[0].contains("not found"));
        assert!(judge(&member(), "t", &facts("etcd_missing=1\n"), true).is_ok(), "up delivers etcd itself");
        let e = judge(&member(), "t", &facts("systemd_unusable=offline\n"), false).unwrap_err();
        assert!(e[0].contains("supervisor: process") && e[0].contains("offline"), "{e:?}");
    }
}
