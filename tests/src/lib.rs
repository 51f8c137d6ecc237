#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report
//! Test support: finding the workspace's binaries and the real tools (etcd, etcdctl, openssl,
//! cfssl), running commands with a bound, and starting real etcd clusters with mutual TLS.

pub mod bootstrap;
pub mod cluster;
pub mod lab;
pub mod netns;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A binary of this workspace (`pki`, `etcdctl-lite`, `etcd-bootstrap`), built by
/// `cargo build --workspace` next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // a test runs from target/<profile>/deps, a benchmark binary from target/<profile>
    let parent = exe.parent().expect("the executable's directory");
    let dir = if parent.ends_with("deps") { parent.parent().expect("target/<profile> directory") } else { parent };
    let path = dir.join(name);
    assert!(path.exists(), "{} not found: build the workspace first (cargo build --workspace), as the README's test command does", path.display());
    path
}

/// A real tool from PATH, or from the environment variable `env_var` if set.
pub fn tool(name: &str, env_var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found on PATH (set {env_var}); the README's test command installs it")
}

/// The outcome of a bounded command.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with the full output unless the command succeeded.
    pub fn assert_ok(self) -> Ran {
        assert!(self.ok(), "command failed ({:?})\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr);
        self
    }
    pub fn assert_fails(self) -> Ran {
        assert!(!self.ok(), "command unexpectedly succeeded\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs `cmd` with a hard time limit; past it the child is killed (by its PID) and the test fails.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    use std::io::Read;
    let started = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}; killed (pid {})", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        elapsed,
    }
}

/// Runs a command with the default bound of 60 s.
pub fn run(cmd: &mut Command) -> Ran {
    run_bounded(cmd, Duration::from_secs(60))
}

/// Whether etcdctl's error says a request timed out (at the client or at etcd) — what a write
/// sent just as the leader hands off gets, as opposed to a refused or unavailable member.
pub fn timed_out(stderr: &str) -> bool {
    stderr.contains("context deadline exceeded") || stderr.contains("request timed out")
}

/// Whether etcdctl's error says the member it sent to stopped under it: etcd keeps accepting
/// connections while it shuts down, and a request in flight on one when the member is killed
/// (`received prior goaway` then EOF) or when etcd's shutdown stops its gRPC server (HTTP 200
/// without a gRPC content type: etcd 3.5) is lost — as opposed to a request refused for want of
/// a member to send it to.
pub fn cut_by_a_stopping_member(stderr: &str) -> bool {
    stderr.contains("received prior goaway") || stderr.contains("transport: missing content-type field")
}

/// Whether etcd dropped the write's raft proposal: raft drops a proposal while the leader hands
/// off (a stopping leader transfers its leadership first) and on a follower that knows no leader
/// yet; etcd 3.4 returns that to the client as `raft proposal dropped`, where later versions
/// mostly time out. Not a refusal: the member was there and would take the write a moment later.
pub fn dropped_in_a_hand_off(stderr: &str) -> bool {
    stderr.contains("raft proposal dropped")
}

/// What a client with every endpoint may lose while one member at a time is stopped: a request
/// sent as the leader hands off ([`timed_out`], [`dropped_in_a_hand_off`]) or one in flight on
/// the member as it stops ([`cut_by_a_stopping_member`]).
pub fn lost_to_a_stop_or_hand_off(stderr: &str) -> bool {
    timed_out(stderr) || dropped_in_a_hand_off(stderr) || cut_by_a_stopping_member(stderr)
}

/// A signal the harness sends (with kill(1), so this crate needs no unsafe code).
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Term,
    Kill,
    Stop,
    Cont,
}

pub fn signal(pid: u32, sig: Signal) {
    let name = match sig {
        Signal::Term => "TERM",
        Signal::Kill => "KILL",
        Signal::Stop => "STOP",
        Signal::Cont => "CONT",
    };
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Waits (bounded) until the process `pid` is gone (or a zombie: dead, not yet reaped by a
/// parent that is not this test); panics naming it past `limit`.
pub fn wait_gone(pid: u32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')));
    while alive() {
        assert!(std::time::Instant::now() < deadline, "process {pid} still runs {}s after it was signalled", limit.as_secs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("fixtures").join(name)
}

/// Runs the `pki` binary with `args` in `cwd`.
pub fn pki(cwd: &Path, args: &[&str]) -> Ran {
    run(Command::new(bin("pki")).current_dir(cwd).args(args))
}

/// Runs `openssl` with `args` in `cwd`.
pub fn openssl(cwd: &Path, args: &[&str]) -> Ran {
    run(Command::new(tool("openssl", "OPENSSL_BIN")).current_dir(cwd).args(args))
}

/// Every file below `dir`, relative, sorted — except a PKI directory's own lock file (`.lock`
/// directly in a PKI directory), which every writing command leaves and which holds nothing.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.file_name().is_some_and(|n| n == ".lock") && std::fs::metadata(&p).is_ok_and(|m| m.len() == 0) {
                continue;
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Last resort after a test: SIGKILLs every etcd whose pid file lies below `dir` (a member that
/// `down` could not reach, e.g. behind a cut link), so no test leaves a process behind.
pub fn kill_etcds_from_pid_files(dir: &Path) {
    for f in tree(dir).into_iter().filter(|f| f.ends_with(".pid")) {
        let Ok(pid) = std::fs::read_to_string(dir.join(&f)) else { continue };
        let pid = pid.trim();
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() == "etcd").unwrap_or(false)
            && let Ok(pid) = pid.parse()
        {
            signal(pid, Signal::Cont);
            signal(pid, Signal::Kill);
        }
    }
}

/// `cmd` with `file` on its stdin (run_bounded gives none): a shell redirects it.
pub fn run_bounded_with_stdin(cmd: &Command, file: &Path, limit: Duration) -> Ran {
    let mut sh = Command::new("sh");
    sh.args(["-c", r#"f="$1"; shift; exec "$@" < "$f""#, "sh"]).arg(file).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    run_bounded(&mut sh, limit)
}

/// A command started by [`start_until_stderr_says`]; killed by its PID when dropped.
pub struct Running {
    pub child: std::process::Child,
    /// Every stderr line, as it arrives (also after the awaited one).
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Waits (bounded) for it to exit; its exit code, or `None` if it had to be killed.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (bounded) until a line of its stderr contains `needle`; returns it
/// still running, or (killed) the stderr it printed if the line never came.
pub fn start_until_stderr_says(cmd: &mut Command, needle: &str, limit: Duration) -> Result<Running, String> {
    use std::io::BufRead;
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let hit = line.contains(&needle);
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            if hit {
                let _ = tx.send(());
            }
        }
    });
    let mut running = Running { child, stderr: lines };
    match rx.recv_timeout(limit) {
        Ok(()) => Ok(running),
        Err(_) => {
            // ended (or killed now): the reader thread sees EOF and has every line
            let _ = running.child.kill();
            let _ = running.child.wait();
            std::thread::sleep(Duration::from_millis(50));
            Err(running.stderr.lock().unwrap_or_else(|e| e.into_inner()).join("\n"))
        }
    }
}

/// Starts `cmd`, waits (bounded) until a line of its stderr contains `needle`, then kills it by
/// its PID: a run interrupted at a known point. Returns whether the line was seen.
pub fn kill_when_stderr_says(cmd: &mut Command, needle: &str, limit: Duration) -> bool {
    start_until_stderr_says(cmd, needle, limit).is_ok()
}

/// etcdutl beside the etcd this run uses (3.5 and later ship one; Debian's 3.4 does not: then
/// upstream 3.5.1's, which reads 3.4 snapshots as 3.4's etcdctl did). It reads a snapshot as the
/// etcdutl of the cluster's own line does (3.6+ count live keys and name the storage version).
pub fn etcdutl_of_run() -> PathBuf {
    let etcd = tool("etcd", "ETCD_BIN");
    let beside = etcd.canonicalize().unwrap_or(etcd).with_file_name("etcdutl");
    if beside.is_file() { beside } else { workspace_root().join(".etcd/v3.5.1/etcdutl") }
}

#[cfg(test)]
mod tests {
    use super::*;

    // etcdctl's own words, from CI runs on etcd 3.5.1 and Debian's 3.4.23 and a local loop on 3.7.4
    const CUT_AT_KILL: &str = r#"Error: rpc error: code = Unknown desc = closing transport due to: connection error: desc = "error reading from server: EOF", received prior goaway: code: NO_ERROR, debug data: "#;
    const CUT_AT_GRPC_STOP: &str = "Error: rpc error: code = Unknown desc = OK: HTTP status code 200; transport: missing content-type field";
    const DROPPED_AT_HAND_OFF: &str = "Error: rpc error: code = Unknown desc = raft proposal dropped";
    const REFUSED: &str = r#"Error: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing dial tcp 127.0.0.11:2379: connect: connection refused""#;

    #[test]
    fn a_request_cut_by_a_stopping_member_is_told_from_one_refused() {
        assert!(lost_to_a_stop_or_hand_off(CUT_AT_KILL) && lost_to_a_stop_or_hand_off(CUT_AT_GRPC_STOP));
        assert!(lost_to_a_stop_or_hand_off("Error: context deadline exceeded"));
        assert!(lost_to_a_stop_or_hand_off(DROPPED_AT_HAND_OFF) && !cut_by_a_stopping_member(DROPPED_AT_HAND_OFF));
        assert!(!lost_to_a_stop_or_hand_off(REFUSED));
        assert!(!cut_by_a_stopping_member("Error: etcdserver: request timed out"));
    }
}
