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
