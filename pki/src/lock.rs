//! One writer per PKI directory. Every command that writes a PKI directory holds an exclusive
//! `flock` on `DIR/.lock` from its first look at the directory to its last write, so two runs
//! can never both decide "there is no CA yet" and both create one.
//!
//! The lock is re-entrant within a process (`etcd-bootstrap rotate ca` holds it across several
//! library calls that each take it too) and waits a bounded time for another process before
//! saying the directory is busy. The lock file is never deleted while the directory lives, so
//! two processes can never hold locks on two different lock files for one directory; a lock
//! taken on a file that was unlinked meanwhile is detected (inode check) and taken again.
//!
//! The first holder in a process also removes what an interrupted run left behind: temporary
//! files and staging directories whose names only [`crate::files`] makes.

use crate::error::{PkiError, Result};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The lock file's name inside the directory.
pub const LOCK_FILE: &str = ".lock";

/// How long a second writer waits before it is told the directory is busy.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

struct Held {
    dir: PathBuf,
    /// Keeps the flock (released when the file is closed).
    _file: fs::File,
    /// This holder created the directory: remove it again if nothing else was put there.
    created: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.created {
            // Still holding the lock: a failed first run leaves no empty directory behind.
            let only_lock = fs::read_dir(&self.dir).map(|entries| entries.filter_map(|e| e.ok()).all(|e| e.file_name() == LOCK_FILE)).unwrap_or(false);
            if only_lock {
                let _ = fs::remove_file(self.dir.join(LOCK_FILE));
                let _ = fs::remove_dir(&self.dir);
            }
        }
    }
}

/// Proof that this process holds the directory's lock; released when the last clone drops.
#[derive(Clone)]
pub struct DirLock {
    held: Arc<Held>,
    /// Leftovers of an interrupted run that this acquisition removed.
    pub removed_leftovers: Vec<PathBuf>,
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirLock({})", self.held.dir.display())
    }
}

impl DirLock {
    pub fn dir(&self) -> &Path {
        &self.held.dir
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Held>>> {
    static HELD: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<Held>>>> = std::sync::OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Locks `dir` (creating it, mode 0755, if it does not exist), waiting at most `wait` for
/// another process.
pub fn lock_dir(dir: &Path, wait: Duration) -> Result<DirLock> {
    let created = create_dir_tree(dir)?;
    let key = dir.canonicalize().map_err(|source| PkiError::Read { path: dir.into(), source })?;
    check_ownership(&key)?;
    let mut held = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.get(&key).and_then(Weak::upgrade) {
        return Ok(DirLock { held: h, removed_leftovers: vec![] });
    }
    let file = acquire(&key, wait)?;
    let h = Arc::new(Held { dir: key.clone(), _file: file, created });
    held.insert(key.clone(), Arc::downgrade(&h));
    drop(held);
    let removed_leftovers = crate::files::remove_leftovers(&key);
    for p in &removed_leftovers {
        eprintln!("pki: removed {} (left by an interrupted run)", p.display());
    }
    Ok(DirLock { held: h, removed_leftovers })
}

fn acquire(dir: &Path, wait: Duration) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let started = Instant::now();
    loop {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|source| PkiError::Write { path: path.clone(), source })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // The file we locked must still be the one at the path (not unlinked meanwhile).
                let ours = file.metadata().map(|m| m.ino()).ok();
                let now = fs::symlink_metadata(&path).map(|m| m.ino()).ok();
                if ours.is_some() && ours == now {
                    return Ok(file);
                }
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
            Err(e) => return Err(PkiError::Write { path, source: e.into() }),
        }
        if started.elapsed() >= wait {
            return Err(PkiError::Busy { path: dir.into(), waited: wait });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A PKI directory must belong to this user (or root) and not be writable by others:
/// otherwise someone else could swap files under the CA.
fn check_ownership(dir: &Path) -> Result<()> {
    let meta = fs::metadata(dir).map_err(|source| PkiError::Read { path: dir.into(), source })?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(PkiError::Refused(format!("{} belongs to uid {}, not to you (uid {me}); a PKI directory must be your own", dir.display(), meta.uid())));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(PkiError::Refused(format!(
            "{} is writable by everyone (mode {:o}); a PKI directory must not be (chmod o-w it)",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Creates `dir` and its missing parents. Each is made 0700 and then opened up to 0755, so the
/// umask never makes one wider, not even briefly. Returns whether `dir` itself was created.
pub fn create_dir_tree(dir: &Path) -> Result<bool> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    let created = !missing.is_empty();
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => crate::safe_fs::set_mode_nofollow(&d, 0o755).map_err(|source| PkiError::Write { path: d.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(source) => return Err(PkiError::Write { path: d.clone(), source }),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reentrant_within_a_process_and_exclusive_across_processes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pki");
        let a = lock_dir(&dir, Duration::from_millis(50)).unwrap();
        let b = lock_dir(&dir, Duration::from_millis(50)).unwrap();
        assert_eq!(a.dir(), b.dir());
        // another open file description (as another process would have) cannot take it
        let other = fs::OpenOptions::new().write(true).open(dir.join(LOCK_FILE)).unwrap();
        assert!(rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err());
        drop(a);
        assert!(rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err(), "b still holds it");
        drop(b);
        // the directory was created by the lock and nothing was written: it is gone again
        assert!(!dir.exists());
    }

    #[test]
    fn a_busy_directory_is_reported_after_the_wait() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(LOCK_FILE), "").unwrap();
        let other = fs::OpenOptions::new().write(true).open(d.path().join(LOCK_FILE)).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        let e = lock_dir(d.path(), Duration::from_millis(100)).unwrap_err().to_string();
        assert!(e.contains("busy"), "{e}");
    }

    #[test]
    fn directories_are_never_wider_than_0755_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b/c");
        create_dir_tree(&dir).unwrap();
        for p in [d.path().join("a"), d.path().join("a/b"), dir] {
            assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o755, "{}", p.display());
        }
    }

    #[test]
    fn a_world_writable_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = lock_dir(d.path(), Duration::from_millis(10)).unwrap_err().to_string();
        assert!(e.contains("writable by everyone"), "{e}");
    }
}
