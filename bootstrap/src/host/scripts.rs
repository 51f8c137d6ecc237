//! The bash scripts run on members' hosts: delivering files, preflight, starting, stopping and
//! checking a member under a background-process or systemd supervisor. Pure functions from the
//! plan to text, so they are tested without a host.

use crate::host::script::{Script, body};
use crate::plan::MemberPlan;
use crate::spec::Supervisor;
use base64::Engine;

/// Delivers files atomically (temp + rename), with their modes, leaving identical files alone;
/// prints `written PATH` or `unchanged PATH` for each (see `deliver.sh`).
pub fn deliver(files: &[(String, u32, Vec<u8>)]) -> String {
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    Script::of(body::DELIVER)
        .set_words("paths", files.iter().map(|(path, _, _)| path.as_str()))
        .set_words("modes", files.iter().map(|(_, mode, _)| format!("{mode:o}")))
        .set_words("contents", files.iter().map(|(_, _, data)| b64(data)))
        .text()
}

/// The remote half of the SSH transport's streamed file: stdin to `path`, atomically, `mode`.
pub fn put_file(path: &str, mode: u32) -> String {
    Script::of(body::PUT_FILE).set("path", path).set("mode", format!("{mode:o}")).text()
}

fn supervisor_word(m: &MemberPlan) -> &'static str {
    match m.spec.supervisor() {
        Supervisor::Process => "process",
        Supervisor::Systemd => "systemd",
    }
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Facts about a member's host as `key=value` lines; judged by [`crate::host::preflight`].
pub fn preflight(m: &MemberPlan, others: &[String]) -> String {
    let sp = &m.spec;
    status(m)
        .set("supervisor", supervisor_word(m))
        .set("binary", &m.binary)
        .set("client_port", sp.client_port.to_string())
        .set("peer_port", sp.peer_port.to_string())
        .set("data_dir", path(&sp.data_dir))
        .set("marker_file", path(&m.marker_file()))
        .set_words("others", others)
        .then(body::PREFLIGHT)
        .text()
}

/// `running=1` (and `pid=`) if the member is up: its process alive with etcd's name, or its
/// unit active; an adopted member through the supervisor it was found with.
fn status(m: &MemberPlan) -> Script {
    if let Some(a) = &m.spec.adopted {
        return crate::host::scripts_adopted::status(m, a);
    }
    Script::of(body::IS_ETCD).set("supervisor", supervisor_word(m)).set("pid_file", path(&m.pid_file())).set("unit", m.unit_name()).then(body::STATUS)
}

/// `running=1` if the member is up.
pub fn status_lines(m: &MemberPlan) -> String {
    status(m).text()
}

/// The marker that proves the data dir is this cluster's own: `TOKEN NAME`.
pub fn marker_text(token: &str, name: &str) -> String {
    format!("{token} {name}")
}

/// What says whether the cluster this member's data dir belongs to ever formed: `running=1`
/// when its etcd runs, and `elected=N` (see `formation.sh`).
pub fn formation(m: &MemberPlan) -> String {
    status(m)
        .set("supervisor", supervisor_word(m))
        .set("log_file", path(&m.log_file()))
        .set("marker_file", path(&m.marker_file()))
        .set("unit", m.unit_name())
        .then(body::FORMATION)
        .text()
}

/// Starts the member (if it is not running), writing the marker first.
pub fn start(m: &MemberPlan, token: &str) -> String {
    start_waiting(m, token, true)
}

/// [`start`]; with `wait_ready` false a systemd unit is started without waiting for etcd's
/// READY, which a new cluster's member sends only once a majority has started: `up` starts
/// those in turn, so waiting there would last until systemd's start timeout.
pub fn start_waiting(m: &MemberPlan, token: &str, wait_ready: bool) -> String {
    // an adopted member's data dir is its operator's: no marker, started as it was found
    if let Some(a) = &m.spec.adopted {
        return crate::host::scripts_adopted::start(m, a);
    }
    let sp = &m.spec;
    status(m)
        .set("wait_ready", if wait_ready { "1" } else { "0" })
        .set("run_dir", path(&sp.run_dir))
        .set("data_dir", path(&sp.data_dir))
        .set("marker_file", path(&m.marker_file()))
        .set("marker", marker_text(token, &sp.name))
        .set("log_file", path(&m.log_file()))
        .set_words("command", std::iter::once(&m.binary).chain(&m.args))
        .then(body::START)
        .text()
}

/// Where a member's systemd unit goes, with its contents, for a transport's file delivery
/// (`None` for the process supervisor).
pub fn unit_delivery(m: &MemberPlan) -> Option<(String, u32, Vec<u8>)> {
    (m.spec.adopted.is_none() && m.spec.supervisor() == Supervisor::Systemd)
        .then(|| (format!("/etc/systemd/system/{}", m.unit_name()), 0o644, unit_file(m).into_bytes()))
}

/// The systemd unit for a member. Every value is escaped for systemd's own syntax.
pub fn unit_file(m: &MemberPlan) -> String {
    let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| systemd_quote(&a)).collect();
    format!(
        "[Unit]\nDescription=etcd member {name} (managed by etcd-bootstrap)\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=notify\nExecStart={cmd}\nRestart=on-failure\nRestartSec=5s\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        name = systemd_text(&m.spec.name),
        cmd = cmd.join(" "),
    )
}

/// One word of an `ExecStart=` line (systemd.syntax, systemd.service "Command lines"): plain
/// when it is only safe characters, otherwise double-quoted with `\\`, `\"` and C escapes for
/// control characters; `%` (specifiers) and `$` (variables) doubled in both cases.
pub fn systemd_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
    if plain {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => crate::spec::rules::push_hex_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Free text in a unit (a `Description=`): one line, specifiers doubled.
fn systemd_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect::<String>().replace('%', "%%")
}

/// Stops the member (SIGTERM, bounded wait, SIGKILL) — only a process that is etcd. A process
/// is killed as soon as it has closed its listeners: etcd closes its peer port last, after its
/// server stopped, then only waits up to 1 s for idle peer connections (`lib_stop_etcd.sh`).
/// With `purge` (this cluster's marker text), also removes its data dir and marker — the only
/// place anything is deleted, and only with proof of ownership (see `purge.sh`).
pub fn stop(m: &MemberPlan, purge: Option<&str>) -> String {
    let script = stopping(m, Grace::Graceful);
    match purge {
        Some(marker) => script.set("data_dir", path(&m.spec.data_dir)).set("marker_file", path(&m.marker_file())).set("marker", marker).then(body::PURGE),
        None => script,
    }
    .text()
}

/// Stops a member that leads no more (its leadership handed off) for a short while: SIGTERM,
/// up to 2 s for the requests under way to finish (less once its listeners are closed) (etcd sends the clients already connected away at
/// once, though it accepts new connections until it exits), then SIGKILL. etcd's own stop would
/// wait its request timeout (7 s) for open watches, which it then cuts anyway; a killed etcd
/// restarts from its WAL.
pub fn stop_drained(m: &MemberPlan) -> String {
    stopping(m, Grace::Drained).text()
}

/// How long a stopping etcd may take before SIGKILL.
#[derive(Debug, Clone, Copy)]
enum Grace {
    /// 10 s: a leadership hand-off and open watches drained (etcd's own shutdown, less its last
    /// second of waiting for idle peer connections).
    Graceful,
    /// 2 s: requests under way finished; open watches cut, as etcd's shutdown cuts them later.
    Drained,
    /// 0.2 s: for data about to be replaced.
    Short,
}

impl Grace {
    fn tenths(self) -> u32 {
        match self {
            Grace::Graceful => 100,
            Grace::Drained => 20,
            Grace::Short => 2,
        }
    }
}

fn stopping(m: &MemberPlan, grace: Grace) -> Script {
    if let Some(a) = &m.spec.adopted {
        // never purged: `down --purge` is refused on an adopted cluster
        return crate::host::scripts_adopted::stop(m, a, grace.tenths());
    }
    Script::of(body::IS_ETCD)
        .set("supervisor", supervisor_word(m))
        .set("pid_file", path(&m.pid_file()))
        .set("unit", m.unit_name())
        .set("grace", if matches!(grace, Grace::Graceful) { "graceful" } else { "short" })
        .set("grace_tenths", grace.tenths().to_string())
        .set("grace_seconds", (f64::from(grace.tenths()) / 10.0).to_string())
        .then(body::STOP_ETCD)
        .then(body::STOP)
}

/// Whether the member's running etcd serves the v2 API (gone in 3.6): `v2=flag` / `v2=env`.
pub fn v2_probe(m: &MemberPlan) -> String {
    Script::of(body::V2_PROBE).set("pid_file", path(&m.pid_file())).set("unit", format!("etcd-{}.service", m.spec.name)).text()
}

/// Whether the member's data holds v2 store content (etcd 3.6 refuses to start on it):
/// `v2store=clean|custom|wal|no-tool|error` (see `v2store_probe.sh`).
pub fn v2store_probe(m: &MemberPlan) -> String {
    Script::of(body::V2STORE_PROBE).set("binary", &m.binary).set("data_dir", path(&m.spec.data_dir)).text()
}

/// For `doctor`: the host's clock (`now=` seconds since the epoch), the free space beside the
/// member's data dir (`free_kib=`) and its database's size (`db_bytes=`).
pub fn clock_and_space(m: &MemberPlan) -> String {
    Script::of(body::FREE_SPACE)
        .set("data_dir", path(&m.spec.data_dir))
        .set("db_file", path(&m.spec.data_dir.join("member/snap/db")))
        .then(body::CLOCK_AND_SPACE)
        .text()
}

/// The free space (KiB) on the filesystem that holds (or will hold) the member's data dir.
pub fn free_space(m: &MemberPlan) -> String {
    Script::of(body::FREE_SPACE).set("data_dir", path(&m.spec.data_dir)).text()
}

/// For a replacement: stops an old process if one still runs, moves a non-empty data dir aside
/// (`DATA.replaced-TIME`: kept, never deleted) and drops the old marker.
pub fn retire(m: &MemberPlan) -> String {
    retiring(m, Grace::Graceful)
}

/// `retire` for a whole-cluster restore: the data is replaced anyway (the old kept aside, as a
/// crash leaves it), so a member still draining watches or handing off leadership after 0.2 s is
/// killed instead of waited for.
pub fn retire_now(m: &MemberPlan) -> String {
    retiring(m, Grace::Short)
}

fn retiring(m: &MemberPlan, grace: Grace) -> String {
    stopping(m, grace).set("data_dir", path(&m.spec.data_dir)).set("marker_file", path(&m.marker_file())).then(body::RETIRE).text()
}

/// Whether the member's restore tool can bump the revision (etcdutl 3.5.10 and later):
/// prints `tool=PATH` and `bump=yes` or `bump=no`.
pub fn restore_tool_probe(m: &MemberPlan) -> String {
    Script::of(body::RESTORE_TOOL).set("binary", &m.binary).then(body::RESTORE_TOOL_PROBE).text()
}

/// Restores `snapshot` into the member's data dir with etcd's own tool (see
/// `restore_snapshot.sh`); with `bump` > 0 the revision is raised and the old history compacted.
pub fn restore_snapshot(m: &MemberPlan, snapshot: &str, initial_cluster: &str, token: &str, bump: u64) -> String {
    let sp = &m.spec;
    Script::of(body::RESTORE_TOOL)
        .set("binary", &m.binary)
        .set("data_dir", path(&sp.data_dir))
        .set("snapshot", snapshot)
        .set("name", &sp.name)
        .set("initial_cluster", initial_cluster)
        .set("token", token)
        .set("peer_url", sp.peer_url())
        .set("bump", bump.to_string())
        .then(body::RESTORE_SNAPSHOT)
        .text()
}

/// Whether the member's defrag tool can rewrite a stopped member's database: prints `tool=PATH`
/// and `defrag=yes` or `defrag=no`.
pub fn defrag_tool_probe(m: &MemberPlan) -> String {
    Script::of(body::RESTORE_TOOL).set("binary", &m.binary).then(body::DEFRAG_TOOL_PROBE).text()
}

/// Rewrites the stopped member's database without its free pages (see `defrag_offline.sh`):
/// prints `before=BYTES` and `after=BYTES`.
pub fn defrag_offline(m: &MemberPlan) -> String {
    Script::of(body::RESTORE_TOOL).set("binary", &m.binary).set("data_dir", path(&m.spec.data_dir)).then(body::DEFRAG_OFFLINE).text()
}

/// Prints `owner=PACKAGE` when a package (dpkg, else rpm) owns the file at `path`.
pub fn package_owner(file: &str) -> String {
    Script::of(body::PACKAGE_OWNER).set("file", file).text()
}

/// `check lb` from a control-plane node: prints one `seen=...` line (see `lb_probe.sh`).
pub fn lb_probe(host: &str, port: u16, ca_pem: &str, timeout_secs: u64) -> String {
    Script::of(body::LB_PROBE).set("lb_host", host).set("lb_port", port.to_string()).set("timeout_secs", timeout_secs.to_string()).set("ca_pem", ca_pem).text()
}

/// The last lines of the member's log, for error messages.
pub fn log_tail(m: &MemberPlan, lines: usize) -> String {
    let adopted_unit = match m.spec.adopted.as_ref().map(|a| &a.supervisor) {
        Some(crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. }) => Some(unit.clone()),
        _ => None,
    };
    // an adopted plain process logs to our file once started by us; before, wherever its
    // operator sent it
    let journal = adopted_unit.is_some() || (m.spec.adopted.is_none() && m.spec.supervisor() == Supervisor::Systemd);
    Script::of(body::LOG_TAIL)
        .set("log_source", if journal { "journal" } else { "file" })
        .set("unit", adopted_unit.unwrap_or_else(|| m.unit_name()))
        .set("log_file", path(&m.log_file()))
        .set("lines", lines.to_string())
        .text()
}

/// What `binary --version` prints on the member's host.
pub fn etcd_version(binary: &str) -> String {
    Script::of(body::ETCD_VERSION).set("binary", binary).text()
}

/// Removes one file on the host (absent is fine).
pub fn remove_file(file: &str) -> String {
    Script::of(body::REMOVE_FILE).set("file", file).text()
}

/// `content=BASE64` of a file on the host when it is there.
pub fn file_content(file: &str) -> String {
    Script::of(body::FILE_CONTENT).set("file", file).text()
}

/// `systemctl daemon-reload`.
pub fn daemon_reload() -> String {
    Script::of(body::DAEMON_RELOAD).text()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_a_package_installed_is_named_with_its_package() {
        let run =
            |p: &str| crate::host::transport::Transport::run(&crate::host::transport::Local, &package_owner(p), std::time::Duration::from_secs(20)).unwrap();
        // this machine is Debian: dpkg's own binary belongs to the package dpkg
        assert_eq!(run("/usr/bin/dpkg").value("owner").as_deref(), Some("dpkg"));
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("etcd");
        std::fs::write(&mine, "").unwrap();
        assert_eq!(run(&mine.display().to_string()).value("owner"), None, "a file no package owns");
    }

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
    fn every_composed_script_passes_shellcheck() {
        let mut scripts = vec![deliver(&[("/a b/c".into(), 0o600, b"k".to_vec())]), put_file("/x", 0o755), package_owner("/x"), lb_probe("lb", 6443, "PEM", 2)];
        scripts.extend([etcd_version("etcd"), remove_file("/x"), file_content("/x"), daemon_reload()]);
        for sup in [Supervisor::Process, Supervisor::Systemd] {
            let m = member(sup);
            scripts.extend([start(&m, "tok"), stop(&m, Some("tok etcd-1")), stop(&m, None), preflight(&m, &["10.0.0.12".into()]), log_tail(&m, 5)]);
            scripts.extend([status_lines(&m), formation(&m), v2_probe(&m), v2store_probe(&m), clock_and_space(&m), free_space(&m), retire(&m), retire_now(&m)]);
            scripts.extend([restore_tool_probe(&m), restore_snapshot(&m, "/s.db", "etcd-1=https://10.0.0.11:2380", "tok", 1000)]);
            scripts.extend([defrag_tool_probe(&m), defrag_offline(&m), stop_drained(&m)]);
        }
        let findings: Vec<String> = scripts.iter().filter_map(|s| crate::host::script::shellcheck(s, &[]).err().map(|f| format!("{f}\n{s}"))).collect();
        assert!(findings.is_empty(), "{}", findings.join("\n----\n"));
    }

    #[test]
    fn scripts_parse_as_bash() {
        for sup in [Supervisor::Process, Supervisor::Systemd] {
            let m = member(sup);
            for script in [start(&m, "tok"), stop(&m, Some("tok etcd-1")), stop(&m, None), preflight(&m, &["10.0.0.12".into()]), log_tail(&m, 5)] {
                let out = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
                assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }

    #[test]
    fn only_purge_deletes_and_only_the_data_dir() {
        let m = member(Supervisor::Process);
        assert!(!stop(&m, None).contains("rm -rf"));
        let purge = stop(&m, Some("tok etcd-1"));
        assert_eq!(purge.matches("rm -rf").count(), 1);
        assert!(purge.contains("\ndata_dir='/data/etcd-1'\n") && purge.contains("rm -rf -- \"$d\""));
    }

    /// A member whose paths live under `root` (a temp dir), process-supervised.
    fn member_in(root: &std::path::Path) -> MemberPlan {
        let mut m = member(Supervisor::Process);
        m.spec.data_dir = root.join("data");
        m.spec.run_dir = root.join("run");
        m
    }

    fn bash(script: &str) -> std::process::Output {
        Command::new("bash").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn purge_deletes_only_with_proof_of_ownership() {
        let d = tempfile::tempdir().unwrap();
        let m = member_in(d.path());
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::fs::create_dir_all(d.path().join("run")).unwrap();
        let purge = stop(&m, Some("tok etcd-1"));
        // 1. no marker: refused
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("purge_refused=") && out.contains("no marker"), "{out}");
        assert!(data.join("member/wal").exists());
        // 2. another cluster's marker: refused
        std::fs::write(m.marker_file(), "other etcd-1\n").unwrap();
        assert!(String::from_utf8_lossy(&bash(&purge).stdout).contains("purge_refused="));
        // 3. our marker, but someone's files too: refused
        std::fs::write(m.marker_file(), "tok etcd-1\n").unwrap();
        std::fs::write(data.join("precious.txt"), "not etcd's").unwrap();
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("holds files etcd did not make (precious.txt"), "{out}");
        assert!(data.join("precious.txt").exists());
        // 4. a symlink to someone's directory: refused
        std::fs::remove_file(data.join("precious.txt")).unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::rename(&data, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &data).unwrap();
        assert!(String::from_utf8_lossy(&bash(&purge).stdout).contains("not a directory"));
        assert!(elsewhere.join("member/wal").exists());
        // 5. ours: purged
        std::fs::remove_file(&data).unwrap();
        std::fs::rename(&elsewhere, &data).unwrap();
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("purged="), "{out}");
        assert!(!data.exists() && !m.marker_file().exists());
    }

    /// A stand-in etcd (a perl script named etcd): listens on a port, writes its pid file once it
    /// does, and on SIGTERM runs `on_term` (perl). Waits, bounded, for the pid file.
    fn fake_etcd(m: &MemberPlan, dir: &std::path::Path, on_term: &str) -> std::process::Child {
        let exe = dir.join("etcd");
        let body = format!(
            "#!/usr/bin/perl\nuse IO::Socket::INET;\nmy $l = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0) or die \"listen: $!\";\n$SIG{{TERM}} = sub {{ {on_term} }};\nopen(my $f, '>', $ARGV[0]) or die; print $f \"$$\\n\"; close $f;\nsleep 1 while 1;\n"
        );
        std::fs::write(&exe, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(&m.spec.run_dir).unwrap();
        let child = Command::new(&exe).arg(m.pid_file()).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(m.pid_file()).map_or(true, |p| p.trim() != child.id().to_string()) {
            assert!(std::time::Instant::now() < deadline, "the stand-in etcd did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn a_stopping_etcd_is_killed_once_it_has_closed_its_listeners_and_not_before() {
        let d = tempfile::tempdir().unwrap();
        let m = member_in(d.path());
        // like etcd: the listener closed (its server stopped), then a wait for idle peer connections
        let mut etcd = fake_etcd(&m, d.path(), "close $l; sleep 30; exit 0");
        let out = String::from_utf8_lossy(&bash(&stop_drained(&m)).stdout).into_owned();
        let pid = etcd.id();
        assert!(out.contains(&format!("closed={pid}")) && out.contains(&format!("stopped={pid}")) && !out.contains("killed="), "{out}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(etcd.wait().unwrap().signal(), Some(9), "cut by SIGKILL, not left to its 30 s");
        assert!(!m.pid_file().exists());
        // one that ignores SIGTERM and keeps listening: SIGKILL only past the grace
        let mut etcd = fake_etcd(&m, d.path(), "");
        let out = String::from_utf8_lossy(&bash(&stop_drained(&m)).stdout).into_owned();
        assert!(out.contains(&format!("killed={}", etcd.id())) && !out.contains("closed="), "{out}");
        assert_eq!(etcd.wait().unwrap().signal(), Some(9));
    }

    const CANARY_PAYLOADS: &[&str] = &[
        "/x\nUNIT\ntouch CANARY\ncat >/dev/null <<'UNIT'",
        "/x\nExecStartPre=/bin/touch CANARY",
        "/x'; touch CANARY; echo '",
        "/x$(touch CANARY)",
        "/x`touch CANARY`",
        "/x\\\"; touch CANARY; #",
        "/x%n$HOME\\x41\u{1b}[2J",
    ];

    #[test]
    fn hostile_values_stay_one_word_in_the_unit_file() {
        for payload in CANARY_PAYLOADS {
            let mut m = member(Supervisor::Systemd);
            m.spec.name = format!("etcd-1\nExecStartPre=/bin/touch {payload}");
            m.args = vec!["--data-dir".into(), payload.to_string(), "--name".into(), m.spec.name.clone()];
            m.binary = payload.to_string();
            let unit = unit_file(&m);
            let keys: Vec<&str> = unit.lines().filter(|l| !l.is_empty()).map(|l| l.split('=').next().unwrap_or(l)).collect();
            let want =
                ["[Unit]", "Description", "After", "Wants", "[Service]", "Type", "ExecStart", "Restart", "RestartSec", "LimitNOFILE", "[Install]", "WantedBy"];
            assert_eq!(keys, want, "payload {payload:?} changed the unit's shape:\n{unit}");
            // the start script carries no unit text at all
            assert!(!start(&m, "tok").contains("[Service]"), "the unit is delivered as a file");
        }
    }

    #[test]
    fn systemd_quoting_follows_systemd_syntax() {
        assert_eq!(systemd_quote("--name"), "--name");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("100%"), "\"100%%\"");
        assert_eq!(systemd_quote("$HOME"), "\"$$HOME\"");
        assert_eq!(systemd_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(systemd_quote("a\nb"), "\"a\\x0ab\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn hostile_values_never_run_in_the_process_start_and_delivery_scripts() {
        for payload in CANARY_PAYLOADS {
            let d = tempfile::tempdir().unwrap();
            let canary = d.path().join("CANARY");
            let payload = payload.replace("CANARY", &canary.display().to_string());
            let mut m = member_in(d.path());
            // a stub etcd that records its arguments, one per line
            let stub = d.path().join("etcd");
            std::fs::write(&stub, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$(dirname \"$0\")/args\"\nexec sleep 30\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
            m.binary = stub.display().to_string();
            m.args = vec!["--data-dir".into(), payload.clone()];
            let out = bash(&start(&m, &payload));
            assert!(out.status.success(), "{out:?}");
            std::thread::sleep(std::time::Duration::from_millis(200));
            let args = std::fs::read_to_string(d.path().join("args")).unwrap_or_default();
            assert!(args.contains(&payload), "the payload arrives as one argument: {args:?}");
            let _ = bash(&stop(&m, None));
            // delivery to a hostile path
            let target = d.path().join(format!("pki{}", payload.replace('/', "_")));
            let out = bash(&deliver(&[(target.display().to_string(), 0o600, b"k".to_vec())]));
            assert!(out.status.success(), "{out:?}");
            assert_eq!(std::fs::read(&target).unwrap(), b"k");
            assert!(!canary.exists(), "payload {payload:?} ran");
        }
    }

    #[test]
    fn hostile_data_dirs_reach_the_offline_defrag_tool_as_one_word_and_never_run() {
        for payload in CANARY_PAYLOADS {
            let d = tempfile::tempdir().unwrap();
            let canary = d.path().join("CANARY");
            let payload = payload.replace("CANARY", &canary.display().to_string());
            let mut m = member_in(d.path());
            // the data dir named by the payload, its database present; stubs for etcd and etcdutl
            // (the tool records its arguments, one per line)
            let data = d.path().join(format!("data{}", payload.replace('/', "_")));
            std::fs::create_dir_all(data.join("member/snap")).unwrap();
            std::fs::write(data.join("member/snap/db"), b"0123456789").unwrap();
            m.spec.data_dir = data.clone();
            use std::os::unix::fs::PermissionsExt;
            for (name, body) in [
                (
                    "etcd",
                    "#!/bin/sh
exit 0
",
                ),
                (
                    "etcdutl",
                    "#!/bin/sh
for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$(dirname \"$0\")/args\"\n",
                ),
            ] {
                let stub = d.path().join(name);
                std::fs::write(&stub, body).unwrap();
                std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            m.binary = d.path().join("etcd").display().to_string();
            let probe = bash(&defrag_tool_probe(&m));
            assert!(String::from_utf8_lossy(&probe.stdout).contains("defrag=no"), "{probe:?}");
            let out = bash(&defrag_offline(&m));
            assert!(out.status.success(), "{out:?}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("before=10\nafter=10"), "{out:?}");
            let args = std::fs::read_to_string(d.path().join("args")).unwrap();
            assert_eq!(args, format!("defrag\n--data-dir\n{}\n", data.display()), "the data dir arrives as one argument");
            assert!(!canary.exists(), "payload {payload:?} ran");
        }
    }

    #[test]
    fn a_delivery_whose_reader_is_gone_still_renames_every_file() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("etcd.pem"), d.path().join("etcd-key.pem"));
        std::fs::write(&cert, "old cert").unwrap();
        std::fs::write(&key, "old key").unwrap();
        let script = deliver(&[(cert.display().to_string(), 0o644, b"new cert".to_vec()), (key.display().to_string(), 0o600, b"new key".to_vec())]);
        // stdout is a pipe whose reader is already closed, as when etcd-bootstrap is killed
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = Command::new("bash").arg("-c").arg(&script).stdout(writer).status().unwrap();
        assert_eq!((std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap()), ("new cert".into(), "new key".into()), "{status:?}");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("pki-tmp")).collect();
        assert!(left.is_empty(), "no temporary left: {left:?}");
    }

    #[test]
    fn systemd_unit() {
        let u = unit_file(&member(Supervisor::Systemd));
        assert!(u.contains("Type=notify") && u.contains("ExecStart=etcd --name etcd-1") && u.contains("Restart=on-failure"));
    }
}
