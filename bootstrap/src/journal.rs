//! One journal per cluster: which operation is under way — running now, paused for the operator
//! (`rotate ca`'s stops), or stopped unfinished (killed, or failed after its first change) — kept
//! next to the spec in `SPEC.journal/`, with the cluster lock beside it.
//!
//! The lock is a `flock` on `SPEC.journal/lock`: shared for what only reads the cluster
//! (`backup`), exclusive for what changes it. Under the lock, [`admit`] (pure, no I/O) decides
//! from what is under way whether an operation may start, resume, or must be refused — before
//! its first effect, naming the other operation and the command that finishes it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The operations that change the cluster or depend on its membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Up,
    Down,
    /// `down --purge`: deletes data dirs, so never while anything is under way.
    Purge,
    RotateCerts,
    RotateCa,
    Replace,
    Restore,
    Upgrade,
    Downgrade,
    Maintain,
    Backup,
}

impl OpKind {
    pub const ALL: [OpKind; 11] = [
        OpKind::Up,
        OpKind::Down,
        OpKind::Purge,
        OpKind::RotateCerts,
        OpKind::RotateCa,
        OpKind::Replace,
        OpKind::Restore,
        OpKind::Upgrade,
        OpKind::Downgrade,
        OpKind::Maintain,
        OpKind::Backup,
    ];

    /// The command's words, as typed.
    pub fn command(self) -> &'static str {
        match self {
            OpKind::Up => "up",
            OpKind::Down => "down",
            OpKind::Purge => "down --purge",
            OpKind::RotateCerts => "rotate certs",
            OpKind::RotateCa => "rotate ca",
            OpKind::Replace => "replace",
            OpKind::Restore => "restore",
            OpKind::Upgrade => "upgrade",
            OpKind::Downgrade => "downgrade",
            OpKind::Maintain => "maintain",
            OpKind::Backup => "backup",
        }
    }

    /// `backup` only reads the cluster: it shares the lock with other readers.
    pub fn lock_mode(self) -> LockMode {
        if self == OpKind::Backup { LockMode::Shared } else { LockMode::Exclusive }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// An operation asking to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: OpKind,
    /// What makes a second run the same job: the member of `replace`, the snapshot of
    /// `restore`, the release of `upgrade`. `None` for operations that are the same whatever
    /// their flags.
    pub target: Option<String>,
    /// The full command line that finishes this operation if it stops midway.
    pub finish: String,
}

/// One operation in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: OpKind,
    #[serde(default)]
    pub target: Option<String>,
    /// The command that finishes it.
    pub finish: String,
    pub pid: u32,
    /// The process's start time (clock ticks after boot, `/proc/PID/stat`): a reused pid is
    /// not mistaken for the operation.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub started: String,
    /// Paused for the operator: what they must do before `finish`.
    #[serde(default)]
    pub paused: Option<String>,
    /// It made its first change: stopped now, the cluster may be half-changed.
    #[serde(default)]
    pub changed: bool,
    /// The last step it started.
    #[serde(default)]
    pub step: Option<String>,
    /// The error it stopped with.
    #[serde(default)]
    pub error: Option<String>,
}

/// Where an entry stands, given whether its process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Running,
    Paused,
    Unfinished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderWay {
    pub entry: Entry,
    pub standing: Standing,
}

impl UnderWay {
    /// One line for the operator: what, since when, where it stands, and what finishes it.
    pub fn describe(&self) -> String {
        match self.standing {
            Standing::Running => self.summary(),
            _ => format!("{}; finish it with: {}", self.summary(), self.entry.finish),
        }
    }

    /// What, since when and where it stands.
    fn named(&self) -> String {
        match &self.entry.target {
            Some(t) => format!("`{} {t}`", self.entry.kind),
            None => format!("`{}`", self.entry.kind),
        }
    }

    /// One short phrase for a progress line: `` `rotate ca`, paused since … ``.
    pub fn brief(&self) -> String {
        let e = &self.entry;
        let state = match self.standing {
            Standing::Running => format!("running since {}", e.started),
            Standing::Paused => format!("paused since {}", e.started),
            Standing::Unfinished => format!("stopped unfinished{}", e.step.as_deref().map(|s| format!(" at step '{s}'")).unwrap_or_default()),
        };
        format!("{}, {state}", self.named())
    }

    pub fn summary(&self) -> String {
        let e = &self.entry;
        let what = self.named();
        let detail = match self.standing {
            Standing::Running => format!("is running (pid {}, started {})", e.pid, e.started),
            Standing::Paused => format!("is paused since {}: {}", e.started, e.paused.as_deref().unwrap_or("waiting for the operator")),
            Standing::Unfinished => {
                let at = e.step.as_deref().map(|s| format!(" at step '{s}'")).unwrap_or_default();
                let why = e.error.as_deref().map(|s| format!(": {}", first_line(s))).unwrap_or_else(|| " (its process was stopped)".into());
                format!("stopped unfinished{at} (started {}){why}", e.started)
            }
        };
        format!("{what} {detail}")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// What [`admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing stands in the way.
    Start,
    /// The same operation was paused or stopped unfinished: this run goes on with it.
    Resume,
}

/// Why an operation may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub wanted: String,
    pub blocking: Box<UnderWay>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing to start `{}`: {}", self.wanted, self.blocking.describe())
    }
}

/// May `new` start while `other` is in `standing`? The operations allowed beside another are
/// listed here, explicitly; everything else waits for the other to be finished.
pub fn allowed_during(new: OpKind, other: OpKind, standing: Standing) -> bool {
    use OpKind::*;
    match (new, other) {
        // a backup only reads the cluster; one that stopped changed nothing
        (_, Backup) => true,
        // a snapshot of a half-restored cluster is not a backup of it
        (Backup, Restore) => false,
        (Backup, _) => true,
        // the stop button: members can always be stopped, their data kept
        (Down, _) => true,
        // deleting data only when nothing is under way
        (Purge, _) => false,
        // up restarts members with the files of the current stage; it issues nothing new and
        // leaves the rotation's control-plane files alone
        (Up, RotateCa | Down | Maintain | RotateCerts) => true,
        // compaction and defragmentation touch neither certificates nor membership
        (Maintain, RotateCa) => standing == Standing::Paused,
        _ => false,
    }
}

/// Decides whether `req` may start while `under_way` holds, before its first effect.
pub fn admit(req: &Request, under_way: &[UnderWay]) -> Result<Admission, Refusal> {
    let mut admission = Admission::Start;
    for u in under_way {
        let e = &u.entry;
        let same_job = e.kind == req.kind && e.target == req.target;
        if same_job && u.standing != Standing::Running {
            admission = Admission::Resume;
            continue;
        }
        // two readers share the lock; the same job twice at once cannot happen under it
        if same_job && req.kind.lock_mode() == LockMode::Shared {
            continue;
        }
        if !allowed_during(req.kind, e.kind, u.standing) {
            let wanted = match &req.target {
                Some(t) => format!("{} {t}", req.kind),
                None => req.kind.to_string(),
            };
            return Err(Refusal { wanted, blocking: Box::new(u.clone()) });
        }
    }
    Ok(admission)
}

/// The journal's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub operations: Vec<Entry>,
}

impl Entry {
    /// Its process still runs it: not paused, not ended with an error, the process alive.
    pub fn running(&self, alive: impl Fn(u32, Option<u64>) -> bool) -> bool {
        self.paused.is_none() && self.error.is_none() && alive(self.pid, self.pid_start)
    }
}

impl Journal {
    /// Each entry's standing; an entry whose process is gone and that changed nothing (it
    /// failed its preconditions, or was killed before its first change) is left out.
    pub fn under_way(&self, alive: impl Fn(u32, Option<u64>) -> bool) -> Vec<UnderWay> {
        self.operations
            .iter()
            .filter_map(|e| {
                let standing = if e.paused.is_some() {
                    Standing::Paused
                } else if e.error.is_none() && alive(e.pid, e.pid_start) {
                    Standing::Running
                } else if e.changed && e.kind != OpKind::Backup {
                    Standing::Unfinished
                } else {
                    return None;
                };
                Some(UnderWay { entry: e.clone(), standing })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
