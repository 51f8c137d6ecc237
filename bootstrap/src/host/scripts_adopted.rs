//! Starting, stopping and checking an adopted member through the supervisor it was found with:
//! its systemd unit (started and stopped, never rewritten, enabled or disabled), its kubelet
//! static pod (the manifest moved out of kubelet's folder and back), or a plain process (found
//! from its client port; started again with the command line, `ETCD_*` environment and working
//! directory it was adopted with). A container's etcd is refused: its runtime owns it.

use crate::plan::{MemberPlan, sh_quote as q};
use crate::spec::adopted::AdoptedMember;
use crate::spec::adopted::AdoptedSupervisor as Supervisor;

/// The PATH a re-started plain process gets (the binary itself is absolute).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `p=PID` of the member's etcd: ours from the pid file (after a start by us), else the one that
/// listens on its client address and port; `is_etcd` comes from the caller's prelude.
fn find_pid(m: &MemberPlan) -> String {
    format!(
        "pidf={pidf}\np=$(cat \"$pidf\" 2>/dev/null || true)\nif [ -z \"$p\" ] || ! is_etcd \"$p\"; then\n  p=$(ss -Hltnp 'sport = :{port}' 2>/dev/null | awk -v a={addr}:{port} -v b='[{addr}]:{port}' '$4==a || $4==b || $4 ~ /^(0\\.0\\.0\\.0|\\*|\\[::\\]):{port}$/ {{print; exit}}' | sed -n 's/.*pid=\\([0-9]*\\).*/\\1/p')\nfi\n",
        pidf = q(&m.pid_file().display().to_string()),
        port = m.spec.client_port,
        addr = m.spec.address,
    )
}

/// Where a static pod's manifest waits while its member is stopped.
fn parked_manifest(m: &MemberPlan) -> String {
    m.spec.run_dir.join("etcd.yaml.stopped-by-etcd-bootstrap").display().to_string()
}

/// `running=1` (and `pid=`) when the member's etcd runs.
pub fn status_lines(m: &MemberPlan, a: &AdoptedMember, is_etcd: &str) -> String {
    match &a.supervisor {
        Supervisor::Systemd { unit, .. } => format!("if systemctl is-active --quiet -- {u}; then echo running=1; fi\n", u = q(unit)),
        _ => format!("{is_etcd}{find}if [ -n \"$p\" ] && is_etcd \"$p\"; then echo running=1; echo pid=$p; fi\n", find = find_pid(m)),
    }
}

/// Starts the member if it is not running, as its supervisor would.
pub fn start(m: &MemberPlan, a: &AdoptedMember, is_etcd: &str) -> String {
    let run = q(&m.spec.run_dir.display().to_string());
    match &a.supervisor {
        Supervisor::Systemd { unit, .. } => {
            format!("set -eu\nif ! systemctl is-active --quiet -- {u}; then systemctl start -- {u}; echo started=unit; fi\n", u = q(unit))
        }
        Supervisor::StaticPod { manifest } => format!(
            "set -eu\nif [ -f {parked} ] && [ ! -e {manifest} ]; then mv -- {parked} {manifest}; echo started=kubelet; fi\n",
            parked = q(&parked_manifest(m)),
            manifest = q(manifest),
        ),
        Supervisor::Container => container_refusal(),
        Supervisor::Process => {
            let env: Vec<String> = a.environment.iter().map(|(k, v)| q(&format!("{k}={v}"))).collect();
            let cmd: Vec<String> = std::iter::once(a.binary.display().to_string()).chain(a.command_line.iter().cloned()).map(|w| q(&w)).collect();
            format!(
                "set -eu\n{is_etcd}{find}if [ -z \"$p\" ] || ! is_etcd \"$p\"; then\n  mkdir -p {run}\n  cd {cwd}\n  env -i PATH={PATH} {env} setsid {cmd} </dev/null >>{log} 2>&1 &\n  echo $! > \"$pidf\"\n  echo started=$!\nfi\n",
                find = find_pid(m),
                cwd = q(&a.working_dir.display().to_string()),
                env = env.join(" "),
                cmd = cmd.join(" "),
                log = q(&m.log_file().display().to_string()),
            )
        }
    }
}

/// Stops the member: SIGTERM, up to `tenths` tenths of a second, then SIGKILL (a unit: its own
/// stop, bounded the same way; a static pod: its manifest parked and the process waited for).
pub fn stop(m: &MemberPlan, a: &AdoptedMember, is_etcd: &str, tenths: u32) -> String {
    let kill = format!(
        "if [ -n \"$p\" ] && is_etcd \"$p\"; then\n  kill -CONT \"$p\" 2>/dev/null; kill -TERM \"$p\"; i=0\n  while is_etcd \"$p\" && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done\n  is_etcd \"$p\" && kill -KILL \"$p\" && echo killed=$p\n  echo stopped=$p\nfi\n[ \"$(cat \"$pidf\" 2>/dev/null)\" = \"$p\" ] && rm -f -- \"$pidf\"\ntrue\n"
    );
    match &a.supervisor {
        Supervisor::Systemd { unit, .. } => format!(
            "set -u\nif systemctl is-active --quiet -- {u}; then\n  timeout {secs} systemctl stop -- {u} || {{ systemctl kill --signal=SIGKILL -- {u}; systemctl stop -- {u}; echo killed=unit; }}\n  echo stopped=unit\nfi\n",
            u = q(unit),
            secs = f64::from(tenths.max(1)) / 10.0,
        ),
        Supervisor::StaticPod { manifest } => format!(
            "set -u\n{is_etcd}{find}mkdir -p {run}\nif [ -f {manifest} ]; then mv -- {manifest} {parked}; echo parked={parked}; fi\n# kubelet stops the pod; past the bound, the process is stopped here\ni=0; while [ -n \"$p\" ] && is_etcd \"$p\" && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n{kill}",
            find = find_pid(m),
            run = q(&m.spec.run_dir.display().to_string()),
            manifest = q(manifest),
            parked = q(&parked_manifest(m)),
        ),
        Supervisor::Container => container_refusal(),
        Supervisor::Process => format!("set -u\n{is_etcd}{find}{kill}", find = find_pid(m)),
    }
}

fn container_refusal() -> String {
    "echo 'its etcd runs in a container outside kubelet: stop and start it with the container runtime that runs it' >&2\nexit 1\n".into()
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
    fn recorded_values_stay_words_in_every_supervisors_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("CANARY");
        let c = canary.display().to_string();
        for p in [format!("'; touch {c}; '"), format!("$(touch {c})"), format!("`touch {c}`"), format!("\"; touch {c}; \"")] {
            let m = member(&p, dir.path());
            let a = m.spec.adopted.clone().unwrap();
            let is_etcd = "is_etcd() { false; }\n";
            for script in [start(&m, &a, is_etcd), stop(&m, &a, is_etcd, 1), status_lines(&m, &a, is_etcd)] {
                let out = crate::host::transport::Local.run(&script, Duration::from_secs(20)).unwrap();
                assert!(out.ok(), "{}", out.stderr);
            }
            for supervisor in [Supervisor::Systemd { unit: p.clone(), fragment: p.clone() }, Supervisor::StaticPod { manifest: format!("/nonexistent/{p}") }] {
                let a = AdoptedMember { supervisor, ..a.clone() };
                for script in [start(&m, &a, is_etcd), stop(&m, &a, is_etcd, 1), status_lines(&m, &a, is_etcd)] {
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
