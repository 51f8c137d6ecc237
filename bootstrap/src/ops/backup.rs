//! `backup`: one verified snapshot of the cluster ([`crate::backups`]), taken under the cluster's
//! shared lock: beside other backups and during a paused operation, never during a change.

use crate::context::Ctx;
use crate::error::Result;
pub use crate::backups::{is_backup_name, timer, Backup};
use std::path::Path;

pub fn backup(ctx: &Ctx, dir: &Path, keep: Option<usize>, seal: Option<&crate::sealed::Recipients>) -> Result<Backup> {
    crate::backups::backup(ctx, dir, keep, seal)
}
