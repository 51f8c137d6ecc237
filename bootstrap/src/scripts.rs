//! The bash scripts run on members' hosts: delivering files, preflight, starting, stopping and
//! checking a member under a background-process or systemd supervisor. Pure functions from the
//! plan to text, so they are tested without a host.

use crate::plan::{sh_quote as q, MemberPlan};
use crate::spec::Supervisor;
use base64::Engine;

/// Delivers files atomically (temp + rename), with their modes, leaving identical files alone.
/// Prints `written PATH` or `unchanged PATH` for each.
pub fn deliver(files: &[(String, u32, Vec<u8>)]) -> String {
    let mut s = String::from(
        "set -eu\numask 077\ndeliver() {\n  mkdir -p \"$(dirname \"$1\")\"\n  tmp=\"$1.tmp.$$\"\n  printf '%s' \"$3\" | base64 -d > \"$tmp\"\n  chmod \"$2\" \"$tmp\"\n  if [ -f \"$1\" ] && cmp -s \"$tmp\" \"$1\"; then rm -f \"$tmp\"; echo \"unchanged $1\"; else mv -f \"$tmp\" \"$1\"; echo \"written $1\"; fi\n}\n",
    );
    for (path, mode, data) in files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        s.push_str(&format!("deliver {} {:o} '{}'\n", q(path), mode, b64));
    }
    s
}

/// Facts about a member's host as `key=value` lines; judged by [`crate::preflight`].
pub fn preflight(m: &MemberPlan, others: &[String]) -> String {
    let sp = &m.spec;
    let mut s = String::from("set -u\n");
    s.push_str(&format!("bin={}\n", q(&m.binary)));
    s.push_str("if command -v \"$bin\" >/dev/null 2>&1; then echo \"etcd_version=$(\"$bin\" --version 2>/dev/null | head -n1 | sed 's/.*: *//')\"; else echo etcd_missing=1; fi\n");
    for port in [sp.client_port, sp.peer_port] {
        s.push_str(&format!("ss -Hltn 'sport = :{port}' 2>/dev/null | awk '{{print \"listener={port} \" $4}}'\n"));
    }
    s.push_str(&status_lines(m));
    s.push_str(&format!("if [ -d {d} ] && [ -n \"$(ls -A {d} 2>/dev/null)\" ]; then echo data_nonempty=1; fi\n", d = q(&sp.data_dir.display().to_string())));
    s.push_str(&format!("if [ -f {f} ]; then echo \"marker=$(cat {f})\"; fi\n", f = q(&m.marker_file().display().to_string())));
    for o in others {
        s.push_str(&format!("ip route get {} >/dev/null 2>&1 || echo unroutable={}\n", q(o), o));
    }
    s
}

/// True for a live (not zombie) process named etcd: `kill -0` alone also succeeds on a zombie
/// and on an unrelated process that reused the PID.
const IS_ETCD: &str = "is_etcd() { [ -r /proc/$1/stat ] && [ \"$(cat /proc/$1/comm 2>/dev/null)\" = etcd ] && [ \"$(awk '{print $3}' /proc/$1/stat 2>/dev/null)\" != Z ]; }\n";

/// `running=1` if the member is up (process alive with etcd's name, or the unit active).
pub fn status_lines(m: &MemberPlan) -> String {
    match m.spec.supervisor() {
        Supervisor::Process => format!(
            "{IS_ETCD}pidf={}\nif [ -f \"$pidf\" ]; then p=$(cat \"$pidf\"); if is_etcd \"$p\"; then echo running=1; echo pid=$p; fi; fi\n",
            q(&m.pid_file().display().to_string())
        ),
        Supervisor::Systemd => format!("if systemctl is-active --quiet {u}; then echo running=1; fi\n", u = q(&m.unit_name())),
    }
}

/// The marker that proves the data dir is this cluster's own: `TOKEN NAME`.
pub fn marker_text(token: &str, name: &str) -> String {
    format!("{token} {name}")
}

/// Starts the member (if it is not running), writing the marker first.
pub fn start(m: &MemberPlan, token: &str) -> String {
    let sp = &m.spec;
    let mut s = String::from("set -eu\n");
    s.push_str(&format!(
        "mkdir -p {run} {data}\nchmod 700 {data}\n[ -f {marker} ] || printf '%s\\n' {text} > {marker}\n",
        run = q(&sp.run_dir.display().to_string()),
        data = q(&sp.data_dir.display().to_string()),
        marker = q(&m.marker_file().display().to_string()),
        text = q(&marker_text(token, &sp.name)),
    ));
    let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| q(&a)).collect();
    match sp.supervisor() {
        Supervisor::Process => {
            s.push_str(&status_lines(m));
            s.push_str(&format!(
                "if [ -z \"$(cat {pid} 2>/dev/null)\" ] || ! is_etcd \"$(cat {pid})\"; then\n  cd {run}\n  setsid {cmd} </dev/null >>{log} 2>&1 &\n  echo $! > {pid}\n  echo started=$!\nfi\n",
                pid = q(&m.pid_file().display().to_string()),
                run = q(&sp.run_dir.display().to_string()),
                log = q(&m.log_file().display().to_string()),
                cmd = cmd.join(" "),
            ));
        }
        Supervisor::Systemd => {
            s.push_str(&format!(
                "cat > /etc/systemd/system/{unit} <<'UNIT'\n{body}UNIT\nsystemctl daemon-reload\nif ! systemctl is-active --quiet {unit}; then systemctl enable --now {unit}; echo started=unit; fi\n",
                unit = m.unit_name(),
                body = unit_file(m),
            ));
        }
    }
    s
}

/// The systemd unit for a member.
pub fn unit_file(m: &MemberPlan) -> String {
    let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| q(&a)).collect();
    format!(
        "[Unit]\nDescription=etcd member {name} (managed by etcd-bootstrap)\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=notify\nExecStart={cmd}\nRestart=on-failure\nRestartSec=5s\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        name = m.spec.name,
        cmd = cmd.join(" "),
    )
}

/// Stops the member (SIGTERM, bounded wait, SIGKILL) — only a process that is etcd.
/// With `purge`, also removes its data dir and marker (the only place anything is deleted).
pub fn stop(m: &MemberPlan, purge: bool) -> String {
    let sp = &m.spec;
    let mut s = String::from("set -u\n");
    match sp.supervisor() {
        Supervisor::Process => s.push_str(&format!(
            "{IS_ETCD}pidf={pid}\nif [ -f \"$pidf\" ]; then p=$(cat \"$pidf\")\n  if is_etcd \"$p\"; then\n    kill -CONT \"$p\" 2>/dev/null; kill -TERM \"$p\"; i=0\n    while is_etcd \"$p\" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n    is_etcd \"$p\" && kill -KILL \"$p\" && echo killed=$p\n    echo stopped=$p\n  fi\n  # only our pid file: a start that raced this stop may have written a new one\n  [ \"$(cat \"$pidf\" 2>/dev/null)\" = \"$p\" ] && rm -f \"$pidf\"\nfi\n",
            pid = q(&m.pid_file().display().to_string())
        )),
        Supervisor::Systemd => s.push_str(&format!(
            "if systemctl is-active --quiet {u}; then systemctl stop {u}; echo stopped=unit; fi\nsystemctl disable {u} >/dev/null 2>&1 || true\n",
            u = q(&m.unit_name())
        )),
    }
    if purge {
        s.push_str(&format!(
            "rm -rf -- {data}\nrm -f -- {marker}\necho purged={data}\n",
            data = q(&sp.data_dir.display().to_string()),
            marker = q(&m.marker_file().display().to_string())
        ));
    }
    s
}

/// For a replacement: stops an old process if one still runs, moves a non-empty data dir aside
/// (`DATA.replaced-TIME`: kept, never deleted) and drops the old marker.
pub fn retire(m: &MemberPlan) -> String {
    let sp = &m.spec;
    format!(
        "{stop}d={data}
if [ -d \"$d\" ] && [ -n \"$(ls -A \"$d\" 2>/dev/null)\" ]; then to=\"$d.replaced-$(date -u +%Y%m%dT%H%M%S)\"; mv \"$d\" \"$to\"; echo moved=$to; fi\nrm -f {marker}\n",
        stop = stop(m, false),
        data = q(&sp.data_dir.display().to_string()),
        marker = q(&m.marker_file().display().to_string()),
    )
}

/// The last lines of the member's log, for error messages.
pub fn log_tail(m: &MemberPlan, lines: usize) -> String {
    match m.spec.supervisor() {
        Supervisor::Process => format!("tail -n {lines} {} 2>/dev/null\n", q(&m.log_file().display().to_string())),
        Supervisor::Systemd => format!("journalctl -u {} -n {lines} --no-pager 2>/dev/null\n", q(&m.unit_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn member(supervisor: Supervisor) -> MemberPlan {
        let spec: crate::spec::MemberSpec = serde_yaml_ng::from_str("{name: etcd-1, address: 10.0.0.11, run_dir: /run/x, data_dir: /data/etcd-1}").unwrap();
        let spec = crate::spec::MemberSpec { supervisor: Some(supervisor), ..spec };
        MemberPlan { args: vec!["--name".into(), "etcd-1".into()], binary: "etcd".into(), files: vec![], spec }
    }

    #[test]
    fn delivery_is_atomic_and_idempotent_in_real_bash() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a/b/server.key").display().to_string();
        let script = deliver(&[(path.clone(), 0o600, b"secret\n".to_vec())]);
        let run = |s: &str| Command::new("bash").arg("-c").arg(s).output().unwrap();
        let out = run(&script);
        assert!(String::from_utf8_lossy(&out.stdout).contains("written"), "{out:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = run(&script);
        assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"));
        assert_eq!(std::fs::read(&path).unwrap(), b"secret\n");
    }

    #[test]
    fn scripts_parse_as_bash() {
        for sup in [Supervisor::Process, Supervisor::Systemd] {
            let m = member(sup);
            for script in [start(&m, "tok"), stop(&m, true), stop(&m, false), preflight(&m, &["10.0.0.12".into()]), log_tail(&m, 5)] {
                let out = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
                assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }

    #[test]
    fn only_purge_deletes_and_only_the_data_dir() {
        let m = member(Supervisor::Process);
        assert!(!stop(&m, false).contains("rm -rf"));
        let purge = stop(&m, true);
        assert_eq!(purge.matches("rm -rf").count(), 1);
        assert!(purge.contains("rm -rf -- /data/etcd-1"));
    }

    #[test]
    fn systemd_unit() {
        let u = unit_file(&member(Supervisor::Systemd));
        assert!(u.contains("Type=notify") && u.contains("ExecStart=etcd --name etcd-1") && u.contains("Restart=on-failure"));
    }
}
