//! The snapshot `restore` reads, made ready before anything stops: an `s3://` one fetched into a
//! private file beside the spec (removed when the run ends), an age-encrypted one decrypted into
//! memory (never written in the clear), and the command that resumes the restore with it.

use crate::error::{BootError, Result};
use crate::plan::{Plan, sh_quote};
use crate::progress::Progress;
use std::path::{Path, PathBuf};

/// A snapshot ready to restore from; holds the fetched file and the decrypted memory alive.
pub struct Snapshot {
    _fetched: Option<tempfile::NamedTempFile>,
    _decrypted: Option<std::fs::File>,
    /// What etcd's tool reads (a local file, or the decrypted memory's /proc path).
    pub path: PathBuf,
    /// The snapshot as the operator named it (a path or an s3:// URL): the restore's record.
    pub label: String,
    /// `restore SNAPSHOT [--identity FILE]`, shell-quoted: what resumes it.
    pub args: String,
    /// Built by a point-in-time replay: removed once the restore is done.
    replayed: bool,
}

impl Snapshot {
    /// After the restore succeeded: a replayed snapshot is no longer needed to resume it.
    pub fn finished(&self) {
        if self.replayed {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// The snapshot a point-in-time restore replayed (a private file beside the journal).
    pub fn replayed(path: PathBuf, label: String, args: String) -> Snapshot {
        Snapshot { _fetched: None, _decrypted: None, path, label, args, replayed: true }
    }
}

/// A local snapshot as etcd's tool can read it: as it is, or decrypted into memory with `ids`.
pub fn local(path: &Path, ids: Option<&[Box<dyn age::Identity>]>, progress: &Progress) -> Result<Snapshot> {
    let label = path.display().to_string();
    if !crate::backup::sealed::is_encrypted(path) {
        return Ok(Snapshot { _fetched: None, _decrypted: None, path: path.to_path_buf(), label, args: String::new(), replayed: false });
    }
    let Some(ids) = ids else {
        return Err(BootError::BadArgument {
            flag: label,
            reason: "the snapshot is age-encrypted; give --identity FILE (the age identity or SSH private key it was encrypted to)".into(),
        });
    };
    let t = std::time::Instant::now();
    let plain = crate::backup::sealed::decrypt(path, ids)?;
    progress.step("snapshot", &format!("{label}: decrypted into memory"), Some(t.elapsed()));
    Ok(Snapshot { path: crate::backup::sealed::fd_path(&plain), _fetched: None, _decrypted: Some(plain), label, args: String::new(), replayed: false })
}

pub fn prepare(plan: &Plan, snapshot: &Path, identity: Option<&Path>, progress: &Progress) -> Result<Snapshot> {
    let label = snapshot.display().to_string();
    crate::spec::rules::no_control(&label).map_err(|reason| BootError::BadArgument { flag: "restore SNAPSHOT".into(), reason })?;
    let mut args = format!("restore {}", sh_quote(&label));
    let fetched = if label.starts_with("s3://") {
        let base = Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let settings =
            crate::backup::offsite::Settings::from_env(|k| std::env::var(k).ok()).map_err(|reason| BootError::Offsite { url: label.clone(), reason })?;
        Some(crate::backup::offsite::fetch(&label, &settings, base, progress)?)
    } else {
        None
    };
    let local = fetched.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_else(|| snapshot.to_path_buf());
    let decrypted = match (crate::backup::sealed::is_encrypted(&local), identity) {
        (false, _) => None,
        (true, None) => {
            return Err(BootError::BadArgument {
                flag: local.display().to_string(),
                reason: "the snapshot is age-encrypted; give --identity FILE (the age identity or SSH private key it was encrypted to)".into(),
            });
        }
        (true, Some(id)) => {
            let shown = id.display().to_string();
            crate::spec::rules::no_control(&shown).map_err(|reason| BootError::BadArgument { flag: "--identity".into(), reason })?;
            args.push_str(&format!(" --identity {}", sh_quote(&shown)));
            let ids = crate::backup::sealed::identities(id)?;
            let t = std::time::Instant::now();
            let plain = crate::backup::sealed::decrypt(&local, &ids)?;
            progress.step("snapshot", &format!("{}: decrypted into memory", local.display()), Some(t.elapsed()));
            Some(plain)
        }
    };
    let path = decrypted.as_ref().map(crate::backup::sealed::fd_path).unwrap_or(local);
    Ok(Snapshot { _fetched: fetched, _decrypted: decrypted, path, label, args, replayed: false })
}
