//! `backup`: one verified snapshot of the cluster ([`crate::backup`]), taken under the cluster's
//! shared lock: beside other backups and during a paused operation, never during a change. With
//! `--to s3://...` the upload (read back and compared) is part of the same operation, under the
//! same lock and journal entry: a library caller gets it too, and a failed upload is the
//! operation's error, the local backup kept.

pub use crate::backup::{Backup, is_backup_name, timer};
use crate::error::Result;
use crate::run::context::Ctx;
use std::path::Path;

pub fn backup(ctx: &Ctx, dir: &Path, keep: Option<usize>, seal: Option<&crate::backup::sealed::Recipients>) -> Result<Backup> {
    crate::backup::backup(ctx, dir, keep, seal)
}

/// Where `backup --to` sends the snapshot.
pub struct Offsite<'a> {
    pub location: &'a crate::backup::offsite::Location,
    pub settings: &'a crate::backup::offsite::Settings,
}

/// [`backup`], then, if asked, the upload of the file just taken: verified by reading it back,
/// older objects beyond `keep` removed, recorded for `doctor`.
pub fn backup_and_ship(
    ctx: &Ctx,
    dir: &Path,
    keep: Option<usize>,
    seal: Option<&crate::backup::sealed::Recipients>,
    to: Option<Offsite<'_>>,
) -> Result<(Backup, Option<crate::backup::offsite::Shipped>)> {
    let b = backup(ctx, dir, keep, seal)?;
    let Some(to) = to else { return Ok((b, None)) };
    let t = std::time::Instant::now();
    let plan = ctx.plan;
    let shipped = crate::backup::offsite::ship(to.location, to.settings, Path::new(&b.path), &plan.loaded.spec.name, keep).map_err(|e| match e {
        crate::error::BootError::Offsite { url, reason } => {
            crate::error::BootError::Offsite { url, reason: format!("{reason}; the backup is kept here: {}", b.path) }
        }
        other => other,
    })?;
    crate::backup::record_remote(Path::new(&plan.loaded.file), &shipped.url);
    let removed = if shipped.deleted.is_empty() { String::new() } else { format!("; {} older removed", shipped.deleted.len()) };
    ctx.progress.step("upload", &format!("{} ({} bytes) read back, SHA-256 the same{removed}", shipped.url, shipped.bytes), Some(t.elapsed()));
    Ok((b, Some(shipped)))
}

/// `backup`'s flags, checked before anything is read: the recipients parsed, the off-host target
/// and its credentials, and the folder (new names only, so a sticky one is fine).
pub struct Request {
    pub dir: std::path::PathBuf,
    pub keep: Option<usize>,
    pub encrypt_to: Vec<String>,
    seal: Option<crate::backup::sealed::Recipients>,
    offsite: Option<(crate::backup::offsite::Location, crate::backup::offsite::Settings, String)>,
}

impl Request {
    /// `env` reads AWS_* (the process environment, or a test's).
    pub fn from_flags(
        spec: &Path,
        dir: Option<std::path::PathBuf>,
        keep: Option<usize>,
        encrypt_to: &[String],
        to: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Request> {
        use crate::error::BootError;
        let bad = |flag: String| move |reason: String| BootError::BadArgument { flag, reason };
        let seal = if encrypt_to.is_empty() {
            None
        } else {
            Some(crate::backup::sealed::Recipients::parse(encrypt_to).map_err(|e| bad("--encrypt-to".into())(e.to_string()))?)
        };
        let offsite = match to {
            Some(t) => {
                let location = crate::backup::offsite::Location::parse(t).map_err(bad("--to".into()))?;
                let settings = crate::backup::offsite::Settings::from_env(env).map_err(bad(format!("--to {t}")))?;
                Some((location, settings, t.to_string()))
            }
            None => None,
        };
        let base = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = dir.unwrap_or_else(|| base.join("backups"));
        // backups land under new names only (O_EXCL, then link(2)), so a sticky dir is fine
        crate::spec::rules::trusted_dir("backup --dir", &dir, pki::safe_fs::Writes::CreateExclusive)?;
        Ok(Request { dir, keep, encrypt_to: encrypt_to.to_vec(), seal, offsite })
    }

    /// The backup (and the upload), inside the operation.
    pub fn run(&self, ctx: &Ctx) -> Result<(Backup, Option<crate::backup::offsite::Shipped>)> {
        let to = self.offsite.as_ref().map(|(location, settings, _)| Offsite { location, settings });
        backup_and_ship(ctx, &self.dir, self.keep, self.seal.as_ref(), to)
    }

    /// `backup --continuous`: follows the cluster until `stop` (see [`crate::backup::continuous`]).
    pub fn follow(
        &self,
        plan: &crate::plan::Plan,
        progress: &crate::progress::Progress,
        lock_wait: std::time::Duration,
        segment_every: std::time::Duration,
        full_every: std::time::Duration,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<crate::backup::continuous::Status> {
        let settings = crate::backup::continuous::Settings {
            dir: self.dir.clone(),
            keep: self.keep,
            seal: self.seal.as_ref(),
            offsite: self.offsite.as_ref().map(|(l, s, _)| (l, s)),
            segment_every,
            full_every,
            lock_wait,
        };
        crate::backup::continuous::run(plan, progress, &settings, stop)
    }

    /// The systemd service that runs `backup --continuous` for good.
    pub fn continuous_service(&self, exe: &Path, spec: &Path, cluster: &str) -> Result<String> {
        let to = self.offsite.as_ref().map(|(_, _, url)| url.as_str());
        crate::backup::continuous_service(
            exe,
            &crate::spec::rules::absolute(spec),
            &crate::spec::rules::absolute(&self.dir),
            self.keep.unwrap_or(48),
            cluster,
            &self.encrypt_to,
            to,
        )
    }

    /// The systemd service + timer (and cron line) that take this backup hourly.
    pub fn timer(&self, exe: &Path, spec: &Path, cluster: &str) -> Result<String> {
        let to = self.offsite.as_ref().map(|(_, _, url)| url.as_str());
        timer(exe, &crate::spec::rules::absolute(spec), &crate::spec::rules::absolute(&self.dir), self.keep.unwrap_or(48), cluster, &self.encrypt_to, to)
    }
}

/// `backup --continuous`'s closing line for people.
pub fn continuous_text(s: &crate::backup::continuous::Status) -> String {
    format!("{}: followed to revision {} ({} segments sealed; the last full snapshot at revision {})\n", s.dir, s.sealed_to, s.segments, s.full_revision)
}

/// `backup`'s lines for people.
pub fn text(b: &Backup, shipped: Option<&crate::backup::offsite::Shipped>) -> String {
    let mut s = String::new();
    if let Some(shipped) = shipped {
        s.push_str(&format!("uploaded to {} (verified by reading it back)\n", shipped.url));
    }
    let unhealthy = if b.healthy { "" } else { "; the cluster was not healthy" };
    s.push_str(&format!("{} (revision {}, {} keys, {} bytes, sha256 {}) from {}{unhealthy}\n", b.path, b.revision, b.keys, b.bytes, b.sha256, b.endpoint));
    s
}
