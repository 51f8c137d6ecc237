//! How commands reach a member's host: this machine, or the system OpenSSH client (so users'
//! ~/.ssh/config, agents and jump hosts work). Everything is a bash script sent on stdin — one
//! round trip per step and no quoting through ssh's command line. Within one process, every
//! script to the same host shares one SSH connection (OpenSSH ControlMaster), so a step costs a
//! round trip, not a TCP + key exchange + authentication each time.

pub use crate::error::TransportError;
use crate::spec::{Become, MemberSpec};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The outcome of a script.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// The exit status as people read it: `1`, or `killed by a signal`.
    pub fn status(&self) -> String {
        self.code.map_or_else(|| "killed by a signal".to_string(), |c| c.to_string())
    }
    /// `key=value` lines of stdout.
    pub fn values(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}=");
        self.stdout.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
    }
    pub fn value(&self, key: &str) -> Option<String> {
        self.values(key).into_iter().next()
    }
}

impl TransportError {
    /// A script that ran and failed, with its exit status and stderr.
    pub fn failed(what: &str, out: &ScriptOutput) -> TransportError {
        TransportError::Failed { what: what.to_string(), status: out.status(), stderr: out.stderr.trim().to_string() }
    }
}

type Outcome<T> = Result<T, TransportError>;

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |source| TransportError::Io { path: path.display().to_string(), source }
}

/// Runs scripts on a member's host.
pub trait Transport: Send + Sync {
    /// `local`, or `ssh DEST`.
    fn describe(&self) -> String;

    /// Whether the host sees this machine's files at the same paths (a member run here): a
    /// file it only reads need not be copied to it.
    fn shares_files(&self) -> bool {
        false
    }
    /// Runs `script` with bash; the whole run is bounded by `limit`.
    fn run(&self, script: &str, limit: Duration) -> Outcome<ScriptOutput>;

    /// Puts files (path, mode, contents) atomically, leaving identical ones alone; returns how
    /// many were written. By default one delivery script; `Local` writes them directly.
    fn deliver(&self, files: &[(String, u32, Vec<u8>)], limit: Duration) -> Outcome<usize> {
        let out = self.run(&crate::host::scripts::deliver(files), limit)?;
        if !out.ok() {
            return Err(TransportError::failed("delivering files", &out));
        }
        Ok(out.stdout.matches("written ").count())
    }

    /// Puts one large file (an etcd binary) atomically with `mode`. By default the same as
    /// [`Transport::deliver`]; `Ssh` streams the bytes instead of embedding them in a script.
    fn put_file(&self, path: &str, mode: u32, data: &[u8], limit: Duration) -> Outcome<()> {
        self.deliver(&[(path.to_string(), mode, data.to_vec())], limit).map(|_| ())
    }

    /// Puts the local file `src` at `path` (atomically, `mode`) without holding it in memory:
    /// a snapshot may be gigabytes. The bytes sent so far are added to `sent` as they go (a live
    /// progress line reads it). By default read whole and passed to `put_file`.
    fn put_path(&self, path: &str, mode: u32, src: &std::path::Path, limit: Duration, sent: &AtomicU64) -> Outcome<()> {
        let data = std::fs::read(src).map_err(io_error(src))?;
        self.put_file(path, mode, &data, limit)?;
        sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

pub struct Local;

impl Transport for Local {
    fn describe(&self) -> String {
        "local".into()
    }
    fn shares_files(&self) -> bool {
        true
    }
    fn run(&self, script: &str, limit: Duration) -> Outcome<ScriptOutput> {
        run_with_stdin(Command::new("bash").arg("-s"), script.as_bytes(), limit)
    }

    /// A copy through a private temporary beside `path` (0600 until chmod), then rename.
    fn put_path(&self, path: &str, mode: u32, src: &std::path::Path, _limit: Duration, sent: &AtomicU64) -> Outcome<()> {
        use std::os::unix::fs::PermissionsExt;
        let dest = std::path::Path::new(path);
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut tmp = tempfile::Builder::new().prefix(".put-").tempfile_in(dir).map_err(io_error(dir))?;
        let mut from = std::fs::File::open(src).map_err(io_error(src))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).map_err(io_error(src))?;
            if n == 0 {
                break;
            }
            tmp.as_file_mut().write_all(&buf[..n]).map_err(io_error(dest))?;
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        tmp.as_file().sync_all().map_err(io_error(dest))?;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_error(dest))?;
        tmp.persist(dest).map_err(|e| io_error(dest)(e.error))?;
        Ok(())
    }

    /// The same contract as the script, without a shell: pki's all-or-nothing atomic writes.
    fn deliver(&self, files: &[(String, u32, Vec<u8>)], _limit: Duration) -> Outcome<usize> {
        let planned: Vec<pki::files::PlannedFile> = files.iter().map(|(p, mode, data)| pki::files::PlannedFile::new(p, data.clone(), *mode)).collect();
        let outcomes = pki::files::write_all(&planned, true)?;
        Ok(outcomes.iter().filter(|o| **o != pki::files::Outcome::Unchanged).count())
    }
}

/// The system `ssh` client: `ssh -o BatchMode=yes [options] DEST [sudo -n --] bash -s`.
pub struct Ssh {
    pub destination: String,
    pub options: Vec<String>,
    /// `Sudo`: every script runs as root through `sudo -n` (never a password prompt), one remote
    /// command per script as without it.
    pub become_with: Become,
}

/// `sudo -n --` when the host's user becomes root through sudo.
fn elevate(become_with: Become) -> &'static [&'static str] {
    match become_with {
        Become::Sudo => &["sudo", "-n", "--"],
        Become::None => &[],
    }
}

/// sudo's own refusals (it ran nothing): a password wanted, or the user not allowed.
fn sudo_refused(out: &ScriptOutput) -> bool {
    out.code == Some(1)
        && out.stdout.is_empty()
        && [
            "sudo: a password is required",
            "sudo: a terminal is required",
            "is not in the sudoers file",
            "is not allowed to execute",
            "sudo: command not found",
        ]
        .iter()
        .any(|s| out.stderr.contains(s))
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        format!("ssh {}", self.destination)
    }
    fn run(&self, script: &str, limit: Duration) -> Outcome<ScriptOutput> {
        let mut cmd = self.command();
        cmd.args(elevate(self.become_with)).args(["bash", "-s"]);
        let out = run_with_stdin(&mut cmd, script.as_bytes(), limit)?;
        self.checked(out)
    }

    fn put_file(&self, path: &str, mode: u32, data: &[u8], limit: Duration) -> Outcome<()> {
        self.put(path, mode, Input::Bytes(data), limit)
    }

    fn put_path(&self, path: &str, mode: u32, src: &std::path::Path, limit: Duration, sent: &AtomicU64) -> Outcome<()> {
        self.put(path, mode, Input::File(src, sent), limit)
    }
}

impl Ssh {
    fn put(&self, path: &str, mode: u32, input: Input, limit: Duration) -> Outcome<()> {
        let mut cmd = self.command();
        // one word for the remote shell: sh -c '<script>'
        let sh = format!("sh -c {}", crate::plan::sh_quote(&crate::host::scripts::put_file(path, mode)));
        cmd.arg([elevate(self.become_with).join(" "), sh].join(" ").trim_start());
        let out = self.checked(run_with_input(&mut cmd, input, limit)?)?;
        if out.ok() { Ok(()) } else { Err(TransportError::failed(&format!("writing {path}"), &out)) }
    }

    /// ssh's own failure (255) and sudo's refusals are errors; a script's exit is its caller's.
    fn checked(&self, out: ScriptOutput) -> Outcome<ScriptOutput> {
        if out.code == Some(255) {
            return Err(TransportError::Connect { destination: self.destination.clone(), stderr: out.stderr.trim().to_string() });
        }
        if self.become_with == Become::Sudo && sudo_refused(&out) {
            return Err(TransportError::Sudo { destination: self.destination.clone(), stderr: out.stderr.trim().to_string() });
        }
        Ok(out)
    }
}

impl Ssh {
    fn command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"])
            .args(&self.options)
            .args(shared_connection(&self.options, &self.destination))
            // `--`: the destination is never read as an option, whatever it holds
            .arg("--")
            .arg(&self.destination);
        cmd
    }
}

/// The sockets of this process's shared SSH connections: a private (0700, random name)
/// directory, and the destinations that may have a master connection in it.
struct SharedConnections {
    dir: tempfile::TempDir,
    opened: Vec<(Vec<String>, String)>,
}

static SHARED: std::sync::Mutex<Option<SharedConnections>> = std::sync::Mutex::new(None);

/// How long a master connection outlives its last use if this process dies without closing it
/// (SIGKILL): it then exits by itself.
const CONTROL_PERSIST_SECS: u32 = 60;

fn control_path(dir: &std::path::Path) -> String {
    // %C: a hash of local host, remote host, port and user — short, whatever the names
    format!("ControlPath={}/%C", dir.display())
}

/// `-o ControlMaster=auto -o ControlPath=... -o ControlPersist=...` for a destination, recording
/// it for [`close_shared_connections`]. Nothing (one connection per script, as before) if the
/// directory cannot be made.
fn shared_connection(options: &[String], destination: &str) -> Vec<String> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if shared.is_none() {
        // a socket path must fit in 108 bytes: a long TMPDIR falls back to /tmp
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() <= 40 { base } else { std::path::PathBuf::from("/tmp") };
        match tempfile::Builder::new().prefix("etcd-bootstrap-ssh-").tempdir_in(base) {
            Ok(dir) => *shared = Some(SharedConnections { dir, opened: Vec::new() }),
            Err(_) => return Vec::new(),
        }
    }
    let Some(s) = shared.as_mut() else { return Vec::new() };
    let key = (options.to_vec(), destination.to_string());
    if !s.opened.contains(&key) {
        s.opened.push(key);
    }
    ["-o", "ControlMaster=auto", "-o", &control_path(s.dir.path()), "-o", &format!("ControlPersist={CONTROL_PERSIST_SECS}")]
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// Closes every shared SSH connection this process opened (`ssh -O exit`, bounded) and removes
/// their socket directory. Safe to call more than once.
pub fn close_shared_connections() {
    let Some(s) = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    for (options, destination) in &s.opened {
        let mut cmd = Command::new("ssh");
        cmd.args(options).args(["-o", &control_path(s.dir.path()), "-O", "exit", "--", destination]);
        let _ = run_with_stdin(&mut cmd, b"", Duration::from_secs(5));
    }
}

/// Closes the shared SSH connections when dropped: held by `main` for the whole run.
pub struct SharedConnectionsGuard;

impl Drop for SharedConnectionsGuard {
    fn drop(&mut self) {
        close_shared_connections();
    }
}

/// The transport for a member.
pub fn for_member(m: &MemberSpec) -> Box<dyn Transport> {
    for_host(&m.host, &m.ssh_options, m.become_with.unwrap_or_default())
}

/// The transport for a control-plane node (`local` when it names no host).
pub fn for_node(n: &crate::spec::NodeSpec) -> Box<dyn Transport> {
    for_host(n.host.as_deref().unwrap_or("local"), &n.ssh_options, n.become_with.unwrap_or_default())
}

/// The transport for `host` (`local`, or an ssh destination validated by `rules::ssh_destination`).
pub fn for_host(host: &str, ssh_options: &[String], become_with: Become) -> Box<dyn Transport> {
    if host == "local" { Box::new(Local) } else { Box::new(Ssh { destination: host.to_string(), options: ssh_options.to_vec(), become_with }) }
}

/// What a command reads on stdin: bytes, or a file handed to it directly (how far the command
/// has read it is added to the counter, from /proc/PID/fdinfo/0: no copy through this process).
#[derive(Clone, Copy)]
enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a std::path::Path, &'a AtomicU64),
}

fn run_with_stdin(cmd: &mut Command, input: &[u8], limit: Duration) -> Outcome<ScriptOutput> {
    run_with_input(cmd, Input::Bytes(input), limit)
}

fn run_with_input(cmd: &mut Command, input: Input, limit: Duration) -> Outcome<ScriptOutput> {
    let stdin = match input {
        Input::Bytes(_) => Stdio::piped(),
        Input::File(p, _) => Stdio::from(std::fs::File::open(p).map_err(io_error(p))?),
    };
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_error = |source| TransportError::Spawn { program: program.clone(), source };
    let mut child = cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_error)?;
    if let (Some(mut stdin), Input::Bytes(data)) = (child.stdin.take(), input) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let no_pipe = || spawn_error(std::io::Error::other("no pipe to the child"));
    let mut out = child.stdout.take().ok_or_else(no_pipe)?;
    let mut err = child.stderr.take().ok_or_else(no_pipe)?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (counter, pid) = (if let Input::File(_, c) = input { Some(c) } else { None }, child.id());
    let mut read_so_far = 0u64;
    let mut count_read = || {
        if let Some(c) = counter {
            let pos = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/0"))
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("pos:").and_then(|v| v.trim().parse::<u64>().ok())))
                .unwrap_or(read_so_far);
            c.fetch_add(pos.saturating_sub(read_so_far), Ordering::Relaxed);
            read_so_far = read_so_far.max(pos);
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TransportError::TimedOut { limit });
            }
            Ok(None) => {
                count_read();
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(spawn_error(e)),
        }
    };
    // a command that read its whole stdin and ended: the rest of the file counted
    if let (Input::File(p, c), true) = (input, status.success()) {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(read_so_far);
        c.fetch_add(size.saturating_sub(read_so_far), Ordering::Relaxed);
    }
    Ok(ScriptOutput { code: status.code(), stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_file_streams_bytes_atomically_through_one_quoted_word() {
        let d = tempfile::tempdir().unwrap();
        let canary = d.path().join("CANARY");
        let path = d.path().join(format!("bin dir/it's $(touch {})/etcd", canary.display())).display().to_string();
        let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        // what the remote login shell receives: `sh -c '<script>'`
        let remote = format!("sh -c {}", crate::plan::sh_quote(&crate::host::scripts::put_file(&path, 0o755)));
        let out = run_with_stdin(Command::new("sh").arg("-c").arg(&remote), &data, Duration::from_secs(30)).unwrap();
        assert!(out.ok(), "{out:?}");
        assert_eq!(std::fs::read(&path).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(!canary.exists());
        let dir = std::path::Path::new(&path).parent().unwrap();
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn a_caller_tells_a_timeout_from_a_failed_script_from_a_refused_connection() {
        let slow = Local.run("sleep 5", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(slow, TransportError::TimedOut { .. }), "{slow:?}");
        let failed = Local.run("echo broken >&2; exit 3", Duration::from_secs(10)).unwrap();
        assert_eq!((failed.code, TransportError::failed("the step", &failed).to_string()), (Some(3), "the step failed (exit 3): broken".to_string()));
        // port 1 on loopback: nothing listens, ssh gives up with its code 255
        let ssh = Ssh { destination: "nobody@127.0.0.1".into(), options: vec!["-p".into(), "1".into()], become_with: Become::None };
        let refused = ssh.run("true", Duration::from_secs(20)).unwrap_err();
        assert!(matches!(&refused, TransportError::Connect { destination, .. } if destination == "nobody@127.0.0.1"), "{refused:?}");
        assert!(refused.to_string().contains("could not connect"), "{refused}");
        close_shared_connections();
    }

    #[test]
    fn sudos_own_refusals_are_told_from_a_failed_script() {
        let out = |code, stdout: &str, stderr: &str| ScriptOutput { code: Some(code), stdout: stdout.into(), stderr: stderr.into() };
        assert!(sudo_refused(&out(1, "", "sudo: a password is required\n")));
        assert!(sudo_refused(&out(1, "", "ops is not in the sudoers file.  This incident will be reported.\n")));
        assert!(!sudo_refused(&out(1, "started=1\n", "sudo: a password is required")), "the script ran: its output is there");
        assert!(!sudo_refused(&out(1, "", "etcd: permission denied")), "a script that failed");
        let e = TransportError::Sudo { destination: "ubuntu@10.0.0.11".into(), stderr: "sudo: a password is required".into() }.to_string();
        assert!(e.starts_with("sudo on ubuntu@10.0.0.11 refused: sudo: a password is required") && e.contains("NOPASSWD"), "{e}");
    }

    #[test]
    fn under_sudo_the_remote_command_is_sudo_n_then_bash_and_the_destination_stays_after_dashes() {
        let ssh = Ssh { destination: "ops@10.0.0.11".into(), options: vec![], become_with: Become::Sudo };
        let mut cmd = ssh.command();
        cmd.args(elevate(ssh.become_with)).args(["bash", "-s"]);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let at = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[at + 1..], ["ops@10.0.0.11", "sudo", "-n", "--", "bash", "-s"]);
        close_shared_connections();
    }

    #[test]
    fn what_a_command_read_of_a_file_and_what_local_copied_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("snapshot.db");
        std::fs::write(&src, vec![7u8; 3 << 20]).unwrap();
        let sent = AtomicU64::new(0);
        // a slow reader: the count grows while it reads (polled), and is whole when it ends
        let slow = "while [ \"$(head -c 262144 | wc -c)\" -gt 0 ]; do sleep 0.01; done";
        let out = run_with_input(Command::new("sh").arg("-c").arg(slow), Input::File(&src, &sent), Duration::from_secs(30)).unwrap();
        assert!(out.ok(), "{out:?}");
        assert_eq!(sent.load(Ordering::Relaxed), 3 << 20);
        let local = AtomicU64::new(0);
        Local.put_path(&d.path().join("copy.db").display().to_string(), 0o600, &src, Duration::from_secs(30), &local).unwrap();
        assert_eq!(local.load(Ordering::Relaxed), 3 << 20);
    }
}
