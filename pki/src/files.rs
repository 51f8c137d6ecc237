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

/// The largest input file read (a PEM bundle, a key, cfssl JSON, a CRL state): far above any
/// real one, and small enough that a mistaken path (a disk image, /dev/zero) is refused.
pub const MAX_INPUT: u64 = 16 << 20;

/// Reads a user-supplied input file, at most [`MAX_INPUT`] bytes.
pub fn read_input(path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
    read_bounded(fs::File::open(path)?)
}

/// Reads at most [`MAX_INPUT`] bytes from `r` (stdin), refusing more.
pub fn read_bounded(r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    r.take(MAX_INPUT + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {} MiB; not an input this tool reads", MAX_INPUT >> 20)));
    }
    Ok(buf)
}

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
    /// Only ever created, never replaced (a CA key): the final step is `link(2)`, which fails
    /// if the name exists, as `O_EXCL` does, so not even a racing writer can be overwritten.
    pub create_only: bool,
}

impl PlannedFile {
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        PlannedFile { path: path.into(), contents: contents.into(), mode, create_only: false }
    }
    pub fn secret(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        Self::new(path, contents, KEY_MODE)
    }
    pub fn public(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        Self::new(path, contents, PUBLIC_MODE)
    }
    /// A CA key: 0600 and create-only.
    pub fn ca_key(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        PlannedFile { create_only: true, ..Self::secret(path, contents) }
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
        // a symlink at the path is never written through nor called unchanged: it is replaced
        let link = fs::symlink_metadata(&f.path).is_ok_and(|m| m.file_type().is_symlink());
        outcomes.push(match fs::read(&f.path) {
            Ok(old) if old == f.contents && !link => Outcome::Unchanged,
            Ok(_) if !replace || f.create_only => {
                return Err(PkiError::Exists { path: f.path.clone(), hint: "refusing to overwrite it; pass --force to replace it".into() });
            }
            Ok(_) => Outcome::Replaced,
            Err(_) if link && !replace => {
                return Err(PkiError::Exists { path: f.path.clone(), hint: "a symlink is there; refusing to replace it; pass --force to replace it".into() });
            }
            Err(_) if link => Outcome::Replaced,
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
    write_all(&[PlannedFile::new(path, contents, mode)], true).map(|_| ())
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
                // through a descriptor, never by path: a symlink swapped in meanwhile is refused
                let _ = crate::safe_fs::set_mode_nofollow(&f.path, f.mode);
                continue;
            }
            let dir = f.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            self.create_dirs(dir)?;
            let tmp = temp_name(&f.path)?;
            let err = |source| PkiError::Write { path: f.path.clone(), source };
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&tmp).map_err(err)?;
            self.temps.push(tmp.clone());
            file.set_permissions(fs::Permissions::from_mode(f.mode)).map_err(err)?;
            file.write_all(&f.contents).map_err(err)?;
            staged.push((tmp, f.path.clone(), *outcome, f.create_only));
        }
        let dirs: Vec<PathBuf> = staged.iter().filter_map(|(_, p, _, _)| p.parent().map(Path::to_path_buf)).collect();
        sync_filesystems(&dirs)?;
        // A replaced file cannot be restored after its rename, so replaced files go last: a
        // failure before them leaves every old file as it was.
        staged.sort_by_key(|(_, _, o, _)| *o == Outcome::Replaced);
        for (tmp, path, outcome, create_only) in staged {
            if create_only {
                fs::hard_link(&tmp, &path).map_err(|source| match source.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        PkiError::Exists { path: path.clone(), hint: "it appeared while this run was writing (another writer?); it was not replaced".into() }
                    }
                    _ => PkiError::Write { path: path.clone(), source },
                })?;
                let _ = fs::remove_file(&tmp);
            } else {
                fs::rename(&tmp, &path).map_err(|source| PkiError::Write { path: path.clone(), source })?;
            }
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
            // 0700 first, then 0755: the umask can never make it wider, not even briefly
            match fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {
                    self.created_dirs.push(d.clone());
                    crate::safe_fs::set_mode_nofollow(&d, 0o755).map_err(|source| PkiError::Write { path: d.clone(), source })?;
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
    let staging = temp_name(root)?;
    // Not recursive: creating the staging directory fails if anything (a planted symlink
    // included) has its name, so nothing is ever written through someone else's link.
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(|source| PkiError::Write { path: staging.clone(), source })?;
    let result = (|| {
        // each directory once, parents first (every ancestor inside the staging directory)
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.path.strip_prefix(root).ok().and_then(|r| r.parent()))
            .flat_map(|p| p.ancestors().filter(|a| !a.as_os_str().is_empty()).map(|a| staging.join(a)).collect::<Vec<_>>())
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            fs::DirBuilder::new().mode(0o700).create(d).map_err(|source| PkiError::Write { path: d.clone(), source })?;
        }
        for d in std::iter::once(&staging).chain(dirs.iter()) {
            crate::safe_fs::set_mode_nofollow(d, 0o755).map_err(|source| PkiError::Write { path: d.clone(), source })?;
        }
        for f in files {
            let rel = f
                .path
                .strip_prefix(root)
                .map_err(|_| PkiError::Write { path: f.path.clone(), source: std::io::Error::other("file outside the new directory") })?;
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

/// The marker in every temporary name this module makes; [`remove_leftovers`] relies on it.
const TEMP_MARK: &str = ".pki-tmp-";

/// A sibling name nobody can predict (128 random bits): a name planted in advance cannot
/// match it, and it is created with `O_EXCL`/`mkdir`, which never follow a symlink.
fn temp_name(path: &Path) -> Result<PathBuf> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Write { path: path.into(), source: std::io::Error::other("the system random generator failed") })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}{TEMP_MARK}{}", hex::encode(bytes))))
}

/// Is `name` a temporary this module makes (or the previous version made:
/// `.NAME.tmp-PID-N`)?
fn is_temp_name(name: &str) -> bool {
    if !name.starts_with('.') {
        return false;
    }
    if let Some((_, tail)) = name.rsplit_once(TEMP_MARK) {
        return tail.len() == 32 && tail.chars().all(|c| c.is_ascii_hexdigit());
    }
    name.rsplit_once(".tmp-")
        .and_then(|(_, tail)| tail.split_once('-'))
        .is_some_and(|(pid, n)| !pid.is_empty() && !n.is_empty() && pid.chars().chain(n.chars()).all(|c| c.is_ascii_digit()))
}

/// Removes what an interrupted run left under `dir` (a few levels deep): temporary files
/// (possibly holding private keys) and staging directories. Only names this module makes are
/// touched; call it while holding the directory's lock, so no live writer owns them.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, removed: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                let gone = if kind.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                if gone.is_ok() {
                    removed.push(path);
                }
            } else if kind.is_dir() && depth > 0 {
                walk(&path, depth - 1, removed);
            }
        }
    }
    let mut removed = Vec::new();
    walk(dir, 4, &mut removed);
    removed
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
    fn inputs_are_bounded_in_size() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        fs::File::create(&big).unwrap().set_len(MAX_INPUT + 1).unwrap();
        assert!(read_input(&big).unwrap_err().to_string().contains("larger than 16 MiB"));
        assert!(read_input("/dev/zero").is_err(), "an endless input ends");
        fs::File::create(&big).unwrap().set_len(10).unwrap();
        assert_eq!(read_input(&big).unwrap().len(), 10);
    }

    #[test]
    fn a_create_only_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        fs::write(&key, "theirs").unwrap();
        // even with replace = true
        let e = write_all(&[PlannedFile::ca_key(&key, "mine")], true).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(fs::read(&key).unwrap(), b"theirs");
        fs::remove_file(&key).unwrap();
        write_all(&[PlannedFile::ca_key(&key, "mine")], false).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn temporary_names_are_unpredictable_and_recognised_as_leftovers() {
        let a = temp_name(Path::new("/x/server.key")).unwrap();
        let b = temp_name(Path::new("/x/server.key")).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temp_name(&name), "{name}");
        assert!(is_temp_name(".server.key.tmp-1234-0"), "the previous version's names");
        assert!(!is_temp_name("server.key") && !is_temp_name(".lock") && !is_temp_name(".server.key.tmp-x-0"));
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("members/etcd-1")).unwrap();
        let left = dir.path().join("members/etcd-1").join(&name);
        fs::write(&left, "half a key").unwrap();
        fs::write(dir.path().join("members/etcd-1/server.key"), "k").unwrap();
        assert_eq!(remove_leftovers(dir.path()), vec![left.clone()]);
        assert!(!left.exists() && dir.path().join("members/etcd-1/server.key").exists());
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        // whatever name an attacker plants, the fresh tree's staging name differs and is made
        // with mkdir (fails on an existing name), so files land only where they were meant to
        let dir = tempfile::tempdir().unwrap();
        let trap = tempfile::tempdir().unwrap();
        for guess in [".pki.tmp-1-0", ".pki.pki-tmp-00000000000000000000000000000000"] {
            std::os::unix::fs::symlink(trap.path(), dir.path().join(guess)).unwrap();
        }
        let files = vec![PlannedFile::ca_key(dir.path().join("pki/ca.key"), "k")];
        write_all(&files, false).unwrap();
        assert_eq!(fs::read(dir.path().join("pki/ca.key")).unwrap(), b"k");
        assert_eq!(fs::read_dir(trap.path()).unwrap().count(), 0, "nothing in the attacker's directory");
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "i am a file").unwrap();
        let files = vec![PlannedFile::public(dir.path().join("new/ok.crt"), "c"), PlannedFile::public(blocker.join("impossible.crt"), "c")];
        assert!(write_all(&files, false).is_err());
        assert!(!dir.path().join("new").exists(), "created directory must be removed");
        // a fresh tree that fails half-way leaves nothing either
        let files = vec![PlannedFile::public(dir.path().join("fresh/a/ok.crt"), "c"), PlannedFile::public(dir.path().join("fresh/a/ok.crt"), "twice")];
        assert!(write_all(&files, false).is_err());
        assert!(!dir.path().join("fresh").exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
