//! Writing a set of files all-or-nothing. Every file is first written to a temporary file in its
//! own directory (so the final rename is atomic), with its final mode from the start (keys are
//! never readable by others, not even briefly). Only when every temporary file is complete and
//! on disk are they renamed into place; if any step fails, the temporaries and anything already
//! renamed are removed, and directories this set created are removed again.
//!
//! Durability costs one `syncfs` per filesystem before the renames, instead of an fsync per file:
//! a PKI is ~20 small files, and 20 fsyncs cost more than the cryptography. After a crash each
//! path holds either its complete new contents or what it held before (or nothing, if new).

use crate::error::{PkiError, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode for private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode for certificates and other public files.
pub const PUBLIC_MODE: u32 = 0o644;

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl PlannedFile {
    pub fn secret(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        PlannedFile { path: path.into(), contents: contents.into(), mode: KEY_MODE }
    }
    pub fn public(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        PlannedFile { path: path.into(), contents: contents.into(), mode: PUBLIC_MODE }
    }
}

/// What happened to each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Replaced,
    Unchanged,
}

/// Writes all files or none. Existing files with identical contents (and mode) are left alone.
/// Existing files with other contents are replaced only if `replace` is true; otherwise nothing
/// is written and the error names the first such file.
pub fn write_all(files: &[PlannedFile], replace: bool) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(files.len());
    for f in files {
        outcomes.push(match fs::read(&f.path) {
            Ok(old) if old == f.contents => Outcome::Unchanged,
            Ok(_) if !replace => {
                return Err(PkiError::Exists {
                    path: f.path.clone(),
                    hint: "refusing to overwrite it; pass --force to replace it".into(),
                });
            }
            Ok(_) => Outcome::Replaced,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Created,
            Err(source) => return Err(PkiError::Read { path: f.path.clone(), source }),
        });
    }
    if let Some(root) = fresh_root(files) {
        match write_fresh_tree(&root, files) {
            Ok(()) => return Ok(outcomes),
            // Someone else created the directory meanwhile (another writer in parallel): fall
            // back to file-by-file, which copes with an existing tree.
            Err(_) if root.exists() => {}
            Err(e) => return Err(e),
        }
    }
    let mut txn = Transaction::default();
    match txn.run(files, &outcomes) {
        Ok(()) => Ok(outcomes),
        Err(e) => {
            txn.rollback();
            Err(e)
        }
    }
}

/// Writes one file atomically (temp + rename) with `mode`, replacing what is there.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_all(&[PlannedFile { path: path.into(), contents: contents.into(), mode }], true).map(|_| ())
}

#[derive(Default)]
struct Transaction {
    temps: Vec<PathBuf>,
    renamed_new: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

impl Transaction {
    fn run(&mut self, files: &[PlannedFile], outcomes: &[Outcome]) -> Result<()> {
        let mut staged = Vec::new();
        for (f, outcome) in files.iter().zip(outcomes) {
            if *outcome == Outcome::Unchanged {
                let _ = fs::set_permissions(&f.path, fs::Permissions::from_mode(f.mode));
                continue;
            }
            let dir = f.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            self.create_dirs(dir)?;
            let tmp = temp_name(&f.path);
            let err = |source| PkiError::Write { path: f.path.clone(), source };
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&tmp).map_err(err)?;
            self.temps.push(tmp.clone());
            file.set_permissions(fs::Permissions::from_mode(f.mode)).map_err(err)?;
            file.write_all(&f.contents).map_err(err)?;
            staged.push((tmp, f.path.clone(), *outcome));
        }
        let dirs: Vec<PathBuf> = staged.iter().filter_map(|(_, p, _)| p.parent().map(Path::to_path_buf)).collect();
        sync_filesystems(&dirs)?;
        // A replaced file cannot be restored after its rename, so replaced files go last: a
        // failure before them leaves every old file as it was.
        staged.sort_by_key(|(_, _, o)| *o == Outcome::Replaced);
        for (tmp, path, outcome) in staged {
            fs::rename(&tmp, &path).map_err(|source| PkiError::Write { path: path.clone(), source })?;
            self.temps.retain(|t| t != &tmp);
            if outcome == Outcome::Created {
                self.renamed_new.push(path);
            }
        }
        Ok(())
    }

    fn create_dirs(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.as_os_str().is_empty() && !d.exists() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => {
                    let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o755));
                    self.created_dirs.push(d);
                }
                // created by a parallel writer in the meantime: fine, and not ours to remove
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(source) => return Err(PkiError::Write { path: d.clone(), source }),
            }
        }
        Ok(())
    }

    fn rollback(&mut self) {
        for p in self.temps.iter().chain(self.renamed_new.iter()) {
            let _ = fs::remove_file(p);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The highest directory that does not exist yet and holds every file, if there is one: then the
/// whole tree can be built aside and renamed into place at once.
fn fresh_root(files: &[PlannedFile]) -> Option<PathBuf> {
    let first = files.first()?.path.parent()?;
    let mut root = None;
    let mut d = first;
    while !d.as_os_str().is_empty() && !d.exists() {
        root = Some(d.to_path_buf());
        d = d.parent()?;
    }
    let root = root?;
    files.iter().all(|f| f.path.starts_with(&root)).then_some(root)
}

/// Builds the tree under a temporary sibling of `root`, flushes it, and renames it to `root`:
/// one atomic step for the whole set, and no per-file renames.
fn write_fresh_tree(root: &Path, files: &[PlannedFile]) -> Result<()> {
    let staging = temp_name(root);
    let result = (|| {
        // each directory once, parents first
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.path.strip_prefix(root).ok().and_then(|r| r.parent()).map(|p| staging.join(p)))
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in std::iter::once(&staging).chain(dirs.iter()) {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(d).map_err(|source| PkiError::Write { path: d.clone(), source })?;
        }
        for f in files {
            let rel = f.path.strip_prefix(root).map_err(|_| PkiError::Write {
                path: f.path.clone(),
                source: std::io::Error::other("file outside the new directory"),
            })?;
            let path = staging.join(rel);
            let err = |source| PkiError::Write { path: f.path.clone(), source };
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&path).map_err(err)?;
            file.set_permissions(fs::Permissions::from_mode(f.mode)).map_err(err)?;
            file.write_all(&f.contents).map_err(err)?;
        }
        sync_filesystems(std::slice::from_ref(&staging))?;
        fs::rename(&staging, root).map_err(|source| PkiError::Write { path: root.to_path_buf(), source })
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Flushes every filesystem that holds one of `dirs` (once per filesystem).
fn sync_filesystems(dirs: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut done = Vec::new();
    for d in dirs {
        let d = if d.as_os_str().is_empty() { Path::new(".") } else { d.as_path() };
        let dir = fs::File::open(d).map_err(|source| PkiError::Write { path: d.into(), source })?;
        let dev = dir.metadata().map(|m| m.dev()).unwrap_or(0);
        if done.contains(&dev) {
            continue;
        }
        rustix::fs::syncfs(&dir).map_err(|e| PkiError::Write { path: d.into(), source: e.into() })?;
        done.push(dev);
    }
    Ok(())
}

/// A sibling name unique to this process and call (threads may write near each other).
fn temp_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_0600_and_nothing_is_overwritten_silently() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a/b/server.key");
        let crt = dir.path().join("a/b/server.crt");
        let files = vec![PlannedFile::secret(&key, "k1"), PlannedFile::public(&crt, "c1")];
        assert_eq!(write_all(&files, false).unwrap(), vec![Outcome::Created, Outcome::Created]);
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&crt).unwrap().permissions().mode() & 0o777, 0o644);
        // same contents: unchanged
        assert_eq!(write_all(&files, false).unwrap(), vec![Outcome::Unchanged, Outcome::Unchanged]);
        // new contents: refused, old contents kept
        let other = vec![PlannedFile::secret(&key, "k2")];
        assert!(write_all(&other, false).unwrap_err().to_string().contains("--force"));
        assert_eq!(fs::read(&key).unwrap(), b"k1");
        assert_eq!(write_all(&other, true).unwrap(), vec![Outcome::Replaced]);
        assert_eq!(fs::read(&key).unwrap(), b"k2");
    }

    #[test]
    fn parallel_writers_under_one_new_parent_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("members");
        std::thread::scope(|s| {
            for i in 0..4 {
                let root = root.clone();
                s.spawn(move || {
                    let f = vec![PlannedFile::secret(root.join(format!("m{i}/pki/server.key")), format!("k{i}"))];
                    write_all(&f, false).unwrap();
                });
            }
        });
        for i in 0..4 {
            assert_eq!(fs::read_to_string(root.join(format!("m{i}/pki/server.key"))).unwrap(), format!("k{i}"));
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no staging directories left");
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "i am a file").unwrap();
        let files = vec![
            PlannedFile::public(dir.path().join("new/ok.crt"), "c"),
            PlannedFile::public(blocker.join("impossible.crt"), "c"),
        ];
        assert!(write_all(&files, false).is_err());
        assert!(!dir.path().join("new").exists(), "created directory must be removed");
        // a fresh tree that fails half-way leaves nothing either
        let files = vec![
            PlannedFile::public(dir.path().join("fresh/a/ok.crt"), "c"),
            PlannedFile::public(dir.path().join("fresh/a/ok.crt"), "twice"),
        ];
        assert!(write_all(&files, false).is_err());
        assert!(!dir.path().join("fresh").exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
