//! Starting, stopping and checking an adopted member through the supervisor it was found with:
//! its systemd unit (started and stopped, never rewritten, enabled or disabled), its kubelet
//! static pod (the manifest moved out of kubelet's folder and back), or a plain process (found
//! from its client port; started again with the command line, `ETCD_*` environment and working
//! directory it was adopted with). A container's etcd is refused: its runtime owns it. The
//! bodies are `host/scripts/adopted_*.sh`.

use crate::host::script::{Script, body};
use crate::plan::MemberPlan;
use crate::spec::adopted::AdoptedMember;
use crate::spec::adopted::AdoptedSupervisor as Supervisor;

/// The PATH a re-started plain process gets (the binary itself is absolute).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a static pod's manifest waits while its member is stopped.
fn parked_manifest(m: &MemberPlan) -> String {
    m.spec.run_dir.join("etcd.yaml.stopped-by-etcd-bootstrap").display().to_string()
}

/// The values every adopted script reads, with the functions they call.
fn base(m: &MemberPlan, a: &AdoptedMember) -> Script {
    let (kind, unit) = match &a.supervisor {
        Supervisor::Systemd { unit, .. } => ("systemd", unit.as_str()),
        Supervisor::StaticPod { .. } => ("static-pod", ""),
        Supervisor::Container => ("container", ""),
        Supervisor::Process => ("process", ""),
    };
    Script::of(body::IS_ETCD)
        .then(body::ADOPTED_FIND_PID)
        .set("adopted_supervisor", kind)
        .set("adopted_unit", unit)
        .set("pid_file", m.pid_file().display().to_string())
        .set("client_port", m.spec.client_port.to_string())
        .set("client_address", m.spec.address.to_string())
}

/// What starting and stopping also read: where a static pod's manifest is and waits.
fn changing(m: &MemberPlan, a: &AdoptedMember) -> Script {
    let manifest = match &a.supervisor {
        Supervisor::StaticPod { manifest } => manifest.as_str(),
        _ => "",
    };
    base(m, a).set("manifest", manifest).set("parked", parked_manifest(m)).set("run_dir", m.spec.run_dir.display().to_string())
}

/// `running=1` (and `pid=`) when the member's etcd runs.
pub fn status(m: &MemberPlan, a: &AdoptedMember) -> Script {
    base(m, a).then(body::ADOPTED_STATUS)
}

/// Starts the member if it is not running, as its supervisor would.
pub fn start(m: &MemberPlan, a: &AdoptedMember) -> String {
    changing(m, a)
        .set("working_dir", a.working_dir.display().to_string())
        .set("search_path", PATH)
        .set_words("environment", a.environment.iter().map(|(k, v)| format!("{k}={v}")))
        .set_words("command", std::iter::once(a.binary.display().to_string()).chain(a.command_line.iter().cloned()))
        .set("log_file", m.log_file().display().to_string())
        .then(body::ADOPTED_START)
        .text()
}

/// Stops the member: SIGTERM, up to `tenths` tenths of a second, then SIGKILL (a unit: its own
/// stop, bounded the same way; a static pod: its manifest parked and the process waited for).
pub fn stop(m: &MemberPlan, a: &AdoptedMember, tenths: u32) -> Script {
    changing(m, a)
        .set("grace_tenths", tenths.to_string())
        .set("grace_seconds", (f64::from(tenths.max(1)) / 10.0).to_string())
        .then(body::STOP_ETCD)
        .then(body::ADOPTED_STOP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::transport::Transport;
    use std::time::Duration;

    /// An adopted plain process whose every recorded value is a payload.
    fn member(payload: &str, run: &std::path::Path) -> MemberPlan {
        let mut spec: crate::spec::MemberSpec = serde_yaml_ng::from_str("{name: etcd-1, address: 127.0.0.1, client_port: 1, data_dir: /var/lib/etcd}").unwrap();
        spec.run_dir = run.to_path_buf();
        let a = AdoptedMember {
            supervisor: Supervisor::Process,
            settings_from: "flags".into(),
            config_file: None,
            binary: "/bin/echo".into(),
            version: "3.5.30".into(),
            tls: Default::default(),
            command_line: vec!["--name".into(), payload.into()],
            working_dir: run.to_path_buf(),
            environment: [("ETCD_NAME".to_string(), payload.to_string())].into(),
        };
        spec.adopted = Some(a.clone());
        MemberPlan { spec, files: vec![], args: a.command_line, binary: "/bin/echo".into() }
    }

    #[test]
    fn every_supervisors_scripts_pass_shellcheck() {
        let dir = tempfile::tempdir().unwrap();
        let m = member("etcd-1", dir.path());
        let a = m.spec.adopted.clone().unwrap();
        let kinds = [
            Supervisor::Process,
            Supervisor::Container,
            Supervisor::Systemd { unit: "etcd.service".into(), fragment: "/x".into() },
            Supervisor::StaticPod { manifest: "/m".into() },
        ];
        for supervisor in kinds {
            let a = AdoptedMember { supervisor, ..a.clone() };
            for script in [start(&m, &a), stop(&m, &a, 1).text(), status(&m, &a).text()] {
                crate::host::script::shellcheck(&script, &[]).unwrap_or_else(|f| panic!("{f}\n{script}"));
            }
        }
    }

    #[test]
    fn recorded_values_stay_words_in_every_supervisors_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("CANARY");
        let c = canary.display().to_string();
        for p in [format!("'; touch {c}; '"), format!("$(touch {c})"), format!("`touch {c}`"), format!("\"; touch {c}; \"")] {
            let m = member(&p, dir.path());
            let a = m.spec.adopted.clone().unwrap();
            for script in [start(&m, &a), stop(&m, &a, 1).text(), status(&m, &a).text()] {
                let out = crate::host::transport::Local.run(&script, Duration::from_secs(20)).unwrap();
                assert!(out.ok(), "{}", out.stderr);
            }
            for supervisor in [Supervisor::Systemd { unit: p.clone(), fragment: p.clone() }, Supervisor::StaticPod { manifest: format!("/nonexistent/{p}") }] {
                let a = AdoptedMember { supervisor, ..a.clone() };
                for script in [start(&m, &a), stop(&m, &a, 1).text(), status(&m, &a).text()] {
                    let _ = crate::host::transport::Local.run(&script, Duration::from_secs(20)).unwrap();
                }
            }
        }
        // the started "etcd" (echo, in the background) wrote its arguments, payloads among them,
        // as data: once all four lines are there, nothing ran the canary
        let log = dir.path().join("etcd-1.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&log).map(|l| l.lines().count()).unwrap_or(0) < 4 {
            assert!(std::time::Instant::now() < deadline, "the started processes wrote no log");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!canary.exists(), "a payload ran as a command");
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("--name '; touch"), "the command line reached the process verbatim: {log}");
    }
}
