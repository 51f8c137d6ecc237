//! Writing as root where others might reach: modes set on open descriptors (never `chmod` by path,
//! which follows a symlink swapped in between), and directories checked before anything is written
//! into them.
//!
//! The threat: root writes into a directory the operator named (node_exporter's textfile
//! directory, a backup directory). If another user can change that directory's entries, or those
//! of any directory above it, it can swap in a symlink or a directory of its own between two of
//! root's steps and have root write or `chmod` a file of its choosing. So a directory is trusted
//! only when it and every directory above it is owned by root or the invoking user and is not
//! writable by group or others (a sticky directory such as /tmp is allowed above it, and as the
//! directory itself only when every file is created with `O_EXCL`).

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory is not one root may write into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dir}: {why}; root writing there could be redirected by {who}: {fix}")]
pub struct Untrusted {
    pub dir: PathBuf,
    pub why: String,
    pub who: String,
    pub fix: String,
}

/// How files land in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// A temporary file renamed onto a fixed name: the directory itself must be closed to others.
    ReplaceByRename,
    /// Only new names created with `O_EXCL`: a sticky, world-writable directory is acceptable.
    CreateExclusive,
}

/// Checks `dir` (it need not exist yet: missing trailing parts are what this run will create) and
/// every directory above it, along the path as given and along the path its symlinks lead to.
pub fn check_dir(dir: &Path, writes: Writes) -> Result<(), Untrusted> {
    let abs = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.to_path_buf()) };
    let me = rustix::process::geteuid().as_raw();
    let real = rustix::process::getuid().as_raw();
    let mut seen = Vec::new();
    let mut walk = |path: &Path| -> Result<(), Untrusted> {
        for (i, d) in path.ancestors().enumerate() {
            if seen.iter().any(|s: &PathBuf| s == d) {
                continue;
            }
            seen.push(d.to_path_buf());
            let md = match fs::symlink_metadata(d) {
                Ok(md) => md,
                Err(_) => continue, // not there yet: created by this run, with its own modes
            };
            if md.file_type().is_symlink() {
                continue; // the link's own directory is an ancestor; its target is walked below
            }
            judge(d, &md, me, real, i == 0 && writes == Writes::ReplaceByRename)?;
        }
        Ok(())
    };
    walk(&abs)?;
    // the directory the symlinks lead to (the nearest part that exists)
    if let Some((existing, canon)) = abs.ancestors().find(|a| a.exists()).and_then(|e| fs::canonicalize(e).ok().map(|c| (e, c))) {
        let rest = abs.strip_prefix(existing).map(Path::to_path_buf).unwrap_or_default();
        walk(&canon.join(rest))?;
    }
    Ok(())
}

fn judge(d: &Path, md: &fs::Metadata, me: u32, real: u32, strict: bool) -> Result<(), Untrusted> {
    let owner = md.uid();
    let mode = md.mode();
    let fix_own = format!("chown root {}", d.display());
    if owner != 0 && owner != me && owner != real {
        return Err(Untrusted {
            dir: d.to_path_buf(),
            why: format!("owned by {}", user_name(owner)),
            who: user_name(owner),
            fix: format!("use a directory owned by root whose parents are too, or run `{fix_own}`"),
        });
    }
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if writable_by_others && (strict || !sticky) {
        let whom = if mode & 0o002 != 0 { "every user".to_string() } else { format!("group {}", group_name(md.gid())) };
        return Err(Untrusted {
            dir: d.to_path_buf(),
            why: format!("writable by {whom} (mode {:o}{})", mode & 0o7777, if sticky { ", sticky" } else { "" }),
            who: whom,
            fix: format!("run `chmod go-w {}` or use another directory", d.display()),
        });
    }
    Ok(())
}

fn name_in(file: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

fn user_name(uid: u32) -> String {
    match name_in("/etc/passwd", uid) {
        Some(n) => format!("user {n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn group_name(gid: u32) -> String {
    match name_in("/etc/group", gid) {
        Some(n) => format!("{n} (gid {gid})"),
        None => format!("gid {gid}"),
    }
}

/// Sets the mode of the file or directory at `path` through a descriptor opened without
/// following a symlink: a link planted at `path` is refused (`ELOOP`), never followed.
pub fn set_mode_nofollow(path: &Path, mode: u32) -> std::io::Result<()> {
    let f =
        fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() && !ft.is_dir() {
        return Err(std::io::Error::other("neither a file nor a directory"));
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_mode(parent: &Path, name: &str, mode: u32) -> PathBuf {
        let d = parent.join(name);
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn a_private_tree_is_trusted_and_missing_parts_are_fine() {
        let t = tempfile::tempdir().unwrap();
        let d = dir_with_mode(t.path(), "ok", 0o755);
        assert_eq!(check_dir(&d, Writes::ReplaceByRename), Ok(()));
        assert_eq!(check_dir(&d.join("not/yet"), Writes::ReplaceByRename), Ok(()));
    }

    #[test]
    fn a_world_writable_directory_or_parent_is_refused_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let open = dir_with_mode(t.path(), "open", 0o777);
        let inner = dir_with_mode(&open, "inner", 0o755);
        let e = check_dir(&inner, Writes::CreateExclusive).unwrap_err();
        assert_eq!(e.dir, open);
        assert!(e.to_string().contains("writable by every user (mode 777)"), "{e}");
        assert!(e.to_string().contains("chmod go-w"), "{e}");
    }

    #[test]
    fn a_sticky_directory_is_allowed_above_and_for_exclusive_creation_only() {
        let t = tempfile::tempdir().unwrap();
        let sticky = dir_with_mode(t.path(), "tmp", 0o1777);
        let inner = dir_with_mode(&sticky, "inner", 0o755);
        assert_eq!(check_dir(&inner, Writes::ReplaceByRename), Ok(()));
        assert_eq!(check_dir(&sticky, Writes::CreateExclusive), Ok(()));
        assert!(check_dir(&sticky, Writes::ReplaceByRename).is_err());
    }

    #[test]
    fn a_symlinked_directory_is_judged_where_it_leads() {
        let t = tempfile::tempdir().unwrap();
        let open = dir_with_mode(t.path(), "open", 0o777);
        let safe = dir_with_mode(t.path(), "safe", 0o755);
        std::os::unix::fs::symlink(&open, safe.join("link")).unwrap();
        let e = check_dir(&safe.join("link"), Writes::CreateExclusive).unwrap_err();
        assert_eq!(e.dir, fs::canonicalize(&open).unwrap());
    }

    #[test]
    fn set_mode_refuses_a_symlink_and_leaves_its_target_alone() {
        let t = tempfile::tempdir().unwrap();
        let canary = t.path().join("canary");
        fs::write(&canary, "x").unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o600)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&canary, &link).unwrap();
        assert!(set_mode_nofollow(&link, 0o644).is_err());
        assert_eq!(fs::metadata(&canary).unwrap().mode() & 0o777, 0o600);
        set_mode_nofollow(&canary, 0o640).unwrap();
        assert_eq!(fs::metadata(&canary).unwrap().mode() & 0o777, 0o640);
    }
}
