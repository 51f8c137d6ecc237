//! How commands reach a member's host: this machine, or the system OpenSSH client (so users'
//! ~/.ssh/config, agents and jump hosts work). Everything is a bash script sent on stdin — one
//! round trip per step and no quoting through ssh's command line.

use crate::spec::MemberSpec;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
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
    /// `key=value` lines of stdout.
    pub fn values(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}=");
        self.stdout.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
    }
    pub fn value(&self, key: &str) -> Option<String> {
        self.values(key).into_iter().next()
    }
}

/// Runs scripts on a member's host.
pub trait Transport: Send + Sync {
    /// `local`, or `ssh DEST`.
    fn describe(&self) -> String;
    /// Runs `script` with bash; the whole run is bounded by `limit`.
    fn run(&self, script: &str, limit: Duration) -> Result<ScriptOutput, String>;

    /// Puts files (path, mode, contents) atomically, leaving identical ones alone; returns how
    /// many were written. By default one delivery script; `Local` writes them directly.
    fn deliver(&self, files: &[(String, u32, Vec<u8>)], limit: Duration) -> Result<usize, String> {
        let out = self.run(&crate::scripts::deliver(files), limit)?;
        if !out.ok() {
            return Err(format!("delivering files failed (exit {:?}): {}", out.code, out.stderr.trim()));
        }
        Ok(out.stdout.matches("written ").count())
    }
}

pub struct Local;

impl Transport for Local {
    fn describe(&self) -> String {
        "local".into()
    }
    fn run(&self, script: &str, limit: Duration) -> Result<ScriptOutput, String> {
        run_with_stdin(Command::new("bash").arg("-s"), script, limit)
    }

    /// The same contract as the script, without a shell: pki's all-or-nothing atomic writes.
    fn deliver(&self, files: &[(String, u32, Vec<u8>)], _limit: Duration) -> Result<usize, String> {
        let planned: Vec<pki::files::PlannedFile> = files
            .iter()
            .map(|(p, mode, data)| pki::files::PlannedFile::new(p, data.clone(), *mode))
            .collect();
        let outcomes = pki::files::write_all(&planned, true).map_err(|e| e.to_string())?;
        Ok(outcomes.iter().filter(|o| **o != pki::files::Outcome::Unchanged).count())
    }
}

/// The system `ssh` client: `ssh -o BatchMode=yes [options] DEST bash -s`.
pub struct Ssh {
    pub destination: String,
    pub options: Vec<String>,
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        format!("ssh {}", self.destination)
    }
    fn run(&self, script: &str, limit: Duration) -> Result<ScriptOutput, String> {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"])
            .args(&self.options)
            // `--`: the destination is never read as an option, whatever it holds
            .arg("--")
            .arg(&self.destination)
            .args(["bash", "-s"]);
        let out = run_with_stdin(&mut cmd, script, limit)?;
        if out.code == Some(255) {
            return Err(format!(
                "ssh {} failed: {} (check the host, the key in your agent or ~/.ssh/config, and that sshd runs)",
                self.destination,
                out.stderr.trim()
            ));
        }
        Ok(out)
    }
}

/// The transport for a member.
pub fn for_member(m: &MemberSpec) -> Box<dyn Transport> {
    if m.is_local() { Box::new(Local) } else { Box::new(Ssh { destination: m.host.clone(), options: m.ssh_options.clone() }) }
}

fn run_with_stdin(cmd: &mut Command, script: &str, limit: Duration) -> Result<ScriptOutput, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let script = script.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
    }
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
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
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s; stopped it", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(ScriptOutput { code: status.code(), stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}
