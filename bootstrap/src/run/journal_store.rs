//! Where the journal lives and how it is locked: `SPEC.journal/` beside the spec holds
//! `journal.json` (written atomically), `lock` (the cluster lock: shared or exclusive `flock`,
//! held for a whole operation) and `edit.lock` (held only while the journal is read, changed and
//! written, so two readers sharing the cluster lock never lose each other's entry).

use crate::error::{BootError, Result};
use crate::journal::{Entry, Journal, LockMode, UnderWay};
use rustix::fs::FlockOperation;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an operation waits for the cluster lock before saying who holds it.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The cluster lock, held until dropped.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
}

impl Store {
    /// The journal of the cluster whose spec is `spec_file`.
    pub fn for_spec(spec_file: &Path) -> Store {
        let name = spec_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cluster".into());
        let parent = spec_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Store { dir: parent.join(format!("{name}.journal")) }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// Where the last successful backup is recorded (`doctor` reads it wherever the backup went).
    pub fn last_backup_path(&self) -> PathBuf {
        self.dir.join("last-backup.json")
    }

    /// `doctor`'s earlier samples of counters it judges over a window (leader changes).
    pub fn doctor_samples_path(&self) -> PathBuf {
        self.dir.join("doctor-samples.json")
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> BootError {
        BootError::Io { path: path.to_path_buf(), op: "use the journal file", source }
    }

    fn open_lock_file(&self, name: &str) -> Result<File> {
        pki::lock::create_dir_tree(&self.dir)?;
        let path = self.dir.join(name);
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| self.io_err(&path, e))
    }

    /// Takes the cluster lock in `mode`, waiting at most `wait`; past it, the error names the
    /// operation that holds it (from the journal).
    pub fn lock(&self, mode: LockMode, wait: Duration) -> Result<ClusterLock> {
        let file = self.open_lock_file("lock")?;
        let op = match mode {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let started = Instant::now();
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(ClusterLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(self.io_err(&self.dir.join("lock"), e.into())),
            }
            if started.elapsed() >= wait {
                let holders: Vec<String> =
                    self.read()?.under_way(process_alive).iter().filter(|u| u.standing == crate::journal::Standing::Running).map(UnderWay::describe).collect();
                let holder = if holders.is_empty() { "another etcd-bootstrap process".to_string() } else { holders.join("; ") };
                return Err(BootError::Busy { holder, waited: wait, lock: self.dir.join("lock").display().to_string() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The journal as it is now (empty when there is none). Read without any lock: it is only
    /// ever replaced whole (rename).
    pub fn read(&self) -> Result<Journal> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| BootError::Journal {
                path: path.display().to_string(),
                reason: format!("{e}; the journal is damaged: check what its operations were doing (`status`, `rotate ca --status`), then move the file aside"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(self.io_err(&path, e)),
        }
    }

    /// Reads, changes and writes the journal under the edit lock.
    pub fn edit<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> Result<T> {
        let lock = self.open_lock_file("edit.lock")?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).map_err(|e| self.io_err(&self.dir.join("edit.lock"), e.into()))?;
        let mut journal = self.read()?;
        let out = f(&mut journal);
        let json = serde_json::to_string_pretty(&journal).map_err(|source| BootError::Record {
            path: self.path(),
            what: "operations (the journal)".into(),
            source,
        })? + "\n";
        pki::files::write_atomic(&self.path(), json.as_bytes(), 0o644)?;
        Ok(out)
    }
}

/// This process's entry, before any step.
pub fn own_entry(req: &crate::journal::Request, now: time::OffsetDateTime) -> Entry {
    let pid = std::process::id();
    Entry {
        kind: req.kind,
        target: req.target.clone(),
        finish: req.finish.clone(),
        pid,
        pid_start: process_start(pid),
        started: now.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")).unwrap_or_default(),
        paused: None,
        changed: false,
        step: None,
        error: None,
    }
}

/// The process's start time in clock ticks after boot (field 22 of `/proc/PID/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is still the process that wrote the entry.
pub fn process_alive(pid: u32, start: Option<u64>) -> bool {
    match (process_start(pid), start) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let start = process_start(me);
        assert!(start.is_some());
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start.map(|s| s + 1)), "same pid, another start time: another process");
        assert!(!process_alive(u32::MAX - 1, None));
    }

    #[test]
    fn an_exclusive_holder_makes_a_second_one_wait_then_fail_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::for_spec(&dir.path().join("cluster.yaml"));
        let req = crate::journal::Request { kind: crate::journal::OpKind::RotateCerts, target: None, finish: "etcd-bootstrap rotate certs".into() };
        // bounded, not zero: another test's fork() may hold a copy of a descriptor until its exec
        let _held = store.lock(LockMode::Exclusive, Duration::from_secs(5)).unwrap();
        store.edit(|j| j.operations.push(own_entry(&req, time::OffsetDateTime::now_utc()))).unwrap();
        // a second open file description: flock excludes it as it would another process
        let err = store.lock(LockMode::Shared, Duration::from_millis(120)).unwrap_err().to_string();
        assert!(err.contains("`rotate certs` is running (pid"), "{err}");
        assert!(err.contains("waited 0.1"), "{err}");
    }

    #[test]
    fn readers_share_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::for_spec(&dir.path().join("c.yaml"));
        let _a = store.lock(LockMode::Shared, Duration::from_secs(5)).unwrap();
        let _b = store.lock(LockMode::Shared, Duration::from_secs(5)).unwrap();
        assert!(store.lock(LockMode::Exclusive, Duration::ZERO).is_err());
    }

    #[test]
    fn a_damaged_journal_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::for_spec(&dir.path().join("c.yaml"));
        std::fs::create_dir_all(dir.path().join("c.yaml.journal")).unwrap();
        std::fs::write(store.path(), "{not json").unwrap();
        let err = store.read().unwrap_err().to_string();
        assert!(err.contains("c.yaml.journal/journal.json") && err.contains("damaged"), "{err}");
    }
}
