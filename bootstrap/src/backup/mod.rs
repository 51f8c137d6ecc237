//! Verified backups, below the operations (`backup` takes one; `upgrade` takes one before its
//! first change): a snapshot streamed from a healthy member (any member that answers the Maintenance
//! API when none is), verified from the file (etcd's SHA-256 trailer, then revision, keys and
//! size read back), kept 0600 as `CLUSTER-YYYYMMDDTHHMMSSZ-rREVISION.db`, and only the newest N
//! of the files this command names so kept. `--print-timer` prints a systemd service and timer
//! (and a cron line) that run it.

use crate::error::{BootError, Result};
use crate::run::context::Ctx;

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `backup` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub path: String,
    pub revision: i64,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The member it was streamed from.
    pub endpoint: String,
    /// Whether that member passed a health check.
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Older backups removed by `--keep`.
    pub removed: Vec<String>,
}

/// `NAME-YYYYMMDDTHHMMSSZ-rREVISION.db` (`.db.age` encrypted) of this cluster: the only files
/// retention may delete.
pub fn is_backup_name(cluster: &str, file: &str) -> bool {
    let Some(rest) = file.strip_prefix(cluster).and_then(|r| r.strip_prefix('-')) else { return false };
    let Some(rest) = rest.strip_suffix(".db.age").or_else(|| rest.strip_suffix(".db")) else { return false };
    let Some((stamp, rev)) = rest.split_once("-r") else { return false };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && !rev.is_empty()
        && rev.bytes().all(|c| c.is_ascii_digit())
}

/// Oldest first: the stamp sorts by time; the revision (a number) breaks ties within a second.
/// For a name [`is_backup_name`] accepts.
pub fn age_order(cluster: &str, name: &str) -> (String, u64) {
    let rest = name.get(cluster.len() + 1..).unwrap_or("");
    let rest = rest.strip_suffix(".db.age").or_else(|| rest.strip_suffix(".db")).unwrap_or(rest);
    let (stamp, rev) = rest.split_once("-r").unwrap_or((rest, "0"));
    (stamp.to_string(), rev.parse::<u64>().unwrap_or(0))
}

fn dir_err(dir: &Path, reason: impl std::fmt::Display) -> BootError {
    BootError::Output { path: dir.display().to_string(), reason: reason.to_string() }
}

pub fn backup(ctx: &Ctx, dir: &Path, keep: Option<usize>, seal: Option<&crate::backup::sealed::Recipients>) -> Result<Backup> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    if keep == Some(0) {
        return Err(BootError::BadArgument { flag: "--keep 0".into(), reason: "would delete the backup just taken; give 1 or more".into() });
    }
    crate::spec::rules::trusted_dir("backup --dir", dir, pki::safe_fs::Writes::CreateExclusive)?;
    std::fs::create_dir_all(dir).map_err(|e| dir_err(dir, e))?;
    // again now that it exists: a folder someone else made in a sticky parent is refused
    crate::spec::rules::trusted_dir("backup --dir", dir, pki::safe_fs::Writes::CreateExclusive)?;
    let t = Instant::now();
    let partial = dir.join(format!(".{}-backup-{}.partial", plan.loaded.spec.name, std::process::id()));
    let (saved, status) = match seal {
        None => stream_to_file(ctx, &partial)?,
        Some(to) => stream_sealed(ctx, &partial, to)?,
    };
    // 3. its final name, never replacing a file
    let stamp = time::OffsetDateTime::now_utc().format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap_or_default();
    let name = format!("{}-{stamp}-r{}.db{}", plan.loaded.spec.name, status.revision, if seal.is_some() { ".age" } else { "" });
    let path = dir.join(&name);
    let linked = std::fs::hard_link(&partial, &path);
    let _ = std::fs::remove_file(&partial);
    linked.map_err(|e| dir_err(&path, format!("{e} (a backup by that name exists; nothing was replaced)")))?;
    progress.step(
        "backup",
        &format!("{name}: revision {}, {} keys, {} bytes from {}", status.revision, status.total_key, saved.bytes, saved.endpoint),
        Some(t.elapsed()),
    );
    if let Some(w) = &saved.warning {
        progress.step("backup", &format!("warning: {w}"), None);
    }
    let removed = match keep {
        Some(n) => retain_newest(dir, &plan.loaded.spec.name, n)?,
        None => vec![],
    };
    for r in &removed {
        progress.step("keep", &format!("removed {r}"), None);
    }
    record_last(plan, &path, status.revision, &saved.sha256);
    Ok(Backup {
        path: path.display().to_string(),
        revision: status.revision,
        keys: status.total_key,
        bytes: saved.bytes,
        sha256: saved.sha256,
        endpoint: saved.endpoint,
        healthy: saved.healthy,
        warning: saved.warning,
        removed,
    })
}

/// The last successful backup, as `doctor` reads it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LastBackup {
    pub path: String,
    pub taken_at: i64,
    pub revision: i64,
    pub sha256: String,
    /// The last backup verified off-host (`backup --to`), and when it was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_at: Option<i64>,
}

/// Records an off-host copy of the last backup (best effort, as the local record).
pub fn record_remote(spec_file: &Path, url: &str) {
    let store = crate::run::journal_store::Store::for_spec(spec_file);
    let Ok(text) = std::fs::read_to_string(store.last_backup_path()) else { return };
    let Ok(mut rec) = serde_json::from_str::<LastBackup>(&text) else { return };
    rec.remote = Some(url.to_string());
    rec.remote_at = Some(time::OffsetDateTime::now_utc().unix_timestamp());
    if let Ok(text) = serde_json::to_string_pretty(&rec) {
        let _ = pki::files::write_all(&[pki::files::PlannedFile::public(store.last_backup_path(), text + "\n")], true);
    }
}

/// The recorded last off-host backup and when it went, whether or not a local file is still there.
pub fn last_remote(spec_file: &Path) -> Option<(String, i64)> {
    let store = crate::run::journal_store::Store::for_spec(spec_file);
    let rec: LastBackup = serde_json::from_str(&std::fs::read_to_string(store.last_backup_path()).ok()?).ok()?;
    Some((rec.remote?, rec.remote_at?))
}

/// Records the backup just taken beside the journal (best effort: the backup itself is done).
fn record_last(plan: &crate::plan::Plan, path: &Path, revision: i64, sha256: &str) {
    let store = crate::run::journal_store::Store::for_spec(Path::new(&plan.loaded.file));
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // the off-host copy recorded before stays until a new one is made
    let earlier = std::fs::read_to_string(store.last_backup_path()).ok().and_then(|t| serde_json::from_str::<LastBackup>(&t).ok());
    let (remote, remote_at) = earlier.map(|e| (e.remote, e.remote_at)).unwrap_or_default();
    let rec = LastBackup {
        path: abs.display().to_string(),
        taken_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        revision,
        sha256: sha256.to_string(),
        remote,
        remote_at,
    };
    if let Ok(text) = serde_json::to_string_pretty(&rec) {
        let _ = pki::files::write_all(&[pki::files::PlannedFile::public(store.last_backup_path(), text + "\n")], true);
    }
}

/// The recorded last backup, if its file is still there.
pub fn last_recorded(spec_file: &Path) -> Option<LastBackup> {
    let store = crate::run::journal_store::Store::for_spec(spec_file);
    let rec: LastBackup = serde_json::from_str(&std::fs::read_to_string(store.last_backup_path()).ok()?).ok()?;
    Path::new(&rec.path).is_file().then_some(rec)
}

fn etcd_err(source: etcdctl_lite::CtlError) -> BootError {
    BootError::Etcd { what: "backup".into(), source }
}

fn unreadable(e: etcdctl_lite::CtlError) -> BootError {
    BootError::Verification(format!("backup: the snapshot does not read back: {e}"))
}

/// 1. streamed into a hidden name in the same directory (0600, SHA-256 trailer checked);
/// 2. read back as a restore would (revision, keys, structure).
fn stream_to_file(ctx: &Ctx, partial: &Path) -> Result<(etcdctl_lite::snapshot::SavedSnapshot, etcdctl_lite::snapshot_status::SnapshotStatus)> {
    let (opts, rt) = ctx.etcd.client()?;
    let watched = partial.to_path_buf();
    let live = ctx.progress.watch("snapshot", snapshot_size(ctx), move || std::fs::metadata(&watched).map(|m| m.len()).unwrap_or(0));
    let saved = rt.block_on(etcdctl_lite::snapshot::save(&opts, partial)).map_err(etcd_err);
    drop(live);
    let saved = saved?;
    match etcdctl_lite::snapshot_status::read_back(partial) {
        Ok(s) => Ok((saved, s)),
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(unreadable(e))
        }
    }
}

/// The same, encrypted: streamed and read back in memory, then encrypted into the hidden name;
/// the plaintext never reaches a filesystem.
fn stream_sealed(
    ctx: &Ctx,
    partial: &Path,
    to: &crate::backup::sealed::Recipients,
) -> Result<(etcdctl_lite::snapshot::SavedSnapshot, etcdctl_lite::snapshot_status::SnapshotStatus)> {
    let (opts, rt) = ctx.etcd.client()?;
    let mut plain = crate::backup::sealed::in_memory("etcd-bootstrap-backup")?;
    let watched = crate::backup::sealed::fd_path(&plain);
    let live = ctx.progress.watch("snapshot (in memory)", snapshot_size(ctx), move || std::fs::metadata(&watched).map(|m| m.len()).unwrap_or(0));
    let saved = rt.block_on(etcdctl_lite::snapshot::save_into(&opts, &mut plain, "the in-memory snapshot")).map_err(etcd_err);
    drop(live);
    let saved = saved?;
    let status = etcdctl_lite::snapshot_status::read_back(&crate::backup::sealed::fd_path(&plain)).map_err(unreadable)?;
    if let Err(e) = crate::backup::sealed::encrypt(&mut plain, partial, to) {
        let _ = std::fs::remove_file(partial);
        return Err(e);
    }
    ctx.progress.step("backup", &format!("encrypted to {} recipient(s); the plaintext stayed in memory", to.len()), None);
    Ok((saved, status))
}

/// What a snapshot will weigh, for the live line: the largest member database (a snapshot is
/// the database file). Asked only when the line is drawn.
fn snapshot_size(ctx: &Ctx) -> Option<u64> {
    if !ctx.progress.draws() {
        return None;
    }
    let (opts, rt) = ctx.etcd.client().ok()?;
    rt.block_on(etcdctl_lite::ops::status(&opts)).into_iter().filter_map(|s| s.result.ok()).map(|s| s.db_size.max(0) as u64).max()
}

/// Removes all but the newest `keep` of this cluster's backups in `dir` (by the time in their
/// names); only regular files with a backup's exact name and this user's ownership are candidates.
fn retain_newest(dir: &Path, cluster: &str, keep: usize) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let mut ours: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| dir_err(dir, e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            (is_backup_name(cluster, &name) && meta.file_type().is_file() && meta.uid() == me).then(|| (name, e.path()))
        })
        .collect();
    ours.sort_by_key(|(name, _)| age_order(cluster, name));
    let excess = ours.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (name, path) in ours.into_iter().take(excess) {
        std::fs::remove_file(&path).map_err(|e| dir_err(&path, e))?;
        removed.push(name);
    }
    Ok(removed)
}

/// `backup`'s command line as a unit runs it (paths absolute; a control character refused: a
/// newline would split a cron line).
fn backup_command(exe: &Path, spec: &Path, dir: &Path, keep: usize, encrypt_to: &[String], to: Option<&str>) -> Result<Vec<String>> {
    for p in [exe, spec, dir] {
        crate::spec::rules::no_control(&p.display().to_string()).map_err(|e| dir_err(p, format!("{e}: cannot be put in a unit file or a cron line")))?;
    }
    let mut cmd = vec![
        exe.display().to_string(),
        "-f".into(),
        spec.display().to_string(),
        "backup".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--keep".into(),
        keep.to_string(),
    ];
    for r in encrypt_to {
        crate::spec::rules::no_control(r).map_err(|e| dir_err(Path::new("--encrypt-to"), e))?;
        cmd.extend(["--encrypt-to".to_string(), r.clone()]);
    }
    if let Some(t) = to {
        crate::spec::rules::no_control(t).map_err(|e| dir_err(Path::new("--to"), e))?;
        cmd.extend(["--to".to_string(), t.to_string()]);
    }
    Ok(cmd)
}

/// The S3 credentials from a root-only file, never in the unit.
fn env_file_lines(cluster: &str, to: Option<&str>) -> String {
    if to.is_none() {
        return String::new();
    }
    format!(
        "EnvironmentFile=/etc/etcd-backup/{cluster}.env\n# /etc/etcd-backup/{cluster}.env (0600): AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=... (AWS_ENDPOINT_URL=... for S3-compatible storage)\n"
    )
}

/// A systemd service + timer pair and a cron line running `backup`.
pub fn timer(exe: &Path, spec: &Path, dir: &Path, keep: usize, cluster: &str, encrypt_to: &[String], to: Option<&str>) -> Result<String> {
    use crate::host::scripts::systemd_quote;
    let cmd = backup_command(exe, spec, dir, keep, encrypt_to, to)?;
    let env_file = env_file_lines(cluster, to);
    let unit_cmd: Vec<String> = cmd.iter().map(|a| systemd_quote(a)).collect();
    // cron reads an unescaped % as a newline
    let shell_cmd: Vec<String> = cmd.iter().map(|a| crate::plan::sh_quote(a).replace('%', "\\%")).collect();
    Ok(format!(
        "# /etc/systemd/system/etcd-backup-{cluster}.service\n[Unit]\nDescription=etcd backup of cluster {cluster} (etcd-bootstrap)\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={}\nUMask=0077\n{env_file}\n\
         # /etc/systemd/system/etcd-backup-{cluster}.timer\n[Unit]\nDescription=etcd backup of cluster {cluster}, hourly\n\n\
         [Timer]\nOnCalendar=hourly\nRandomizedDelaySec=5min\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n\n\
         # enable: systemctl daemon-reload && systemctl enable --now etcd-backup-{cluster}.timer\n\
         # or cron (/etc/cron.d/etcd-backup-{cluster}):\n# 17 * * * * root {}\n",
        unit_cmd.join(" "),
        shell_cmd.join(" ")
    ))
}

/// A systemd service running `backup --continuous` for good: restarted when it exits, stopped
/// with SIGTERM (it seals what it holds).
pub fn continuous_service(exe: &Path, spec: &Path, dir: &Path, keep: usize, cluster: &str, encrypt_to: &[String], to: Option<&str>) -> Result<String> {
    use crate::host::scripts::systemd_quote;
    let mut cmd = backup_command(exe, spec, dir, keep, encrypt_to, to)?;
    cmd.push("--continuous".into());
    let env_file = env_file_lines(cluster, to);
    let unit_cmd: Vec<String> = cmd.iter().map(|a| systemd_quote(a)).collect();
    Ok(format!(
        "# /etc/systemd/system/etcd-backup-continuous-{cluster}.service\n[Unit]\nDescription=etcd continuous backup of cluster {cluster} (etcd-bootstrap)\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=simple\nExecStart={}\nRestart=always\nRestartSec=5\nKillSignal=SIGTERM\nTimeoutStopSec=60\nUMask=0077\n{env_file}\n\
         [Install]\nWantedBy=multi-user.target\n\n\
         # enable: systemctl daemon-reload && systemctl enable --now etcd-backup-continuous-{cluster}.service\n",
        unit_cmd.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_order_by_time_then_revision_as_a_number_encrypted_or_not() {
        let mut names = vec!["prod-20261126T001500Z-r10.db.age", "prod-20261126T001500Z-r9.db", "prod-20261125T235959Z-r200.db"];
        names.sort_by_key(|n| age_order("prod", n));
        assert_eq!(names, ["prod-20261125T235959Z-r200.db", "prod-20261126T001500Z-r9.db", "prod-20261126T001500Z-r10.db.age"]);
    }

    #[test]
    fn only_exact_backup_names_are_ours() {
        assert!(is_backup_name("prod", "prod-20261122T020000Z-r485261.db"));
        for not in [
            "prod-20261122T020000Z-r485261.db.bak",
            "prod2-20261122T020000Z-r1.db",
            "prod-20261122T0200Z-r1.db",
            "prod-20261122T020000Z-r.db",
            "prod-20261122T020000Z-rx.db",
            "other-20261122T020000Z-r1.db",
            "prod-20261122X020000Z-r1.db",
            "notes.txt",
        ] {
            assert!(!is_backup_name("prod", not), "{not}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_touches_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for n in ["prod-20261120T000000Z-r5.db", "prod-20261121T000000Z-r9.db", "prod-20261122T000000Z-r12.db", "prod-notes.db", "other-20261101T000000Z-r1.db"]
        {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("prod-20261101T000000Z-r1.db")).unwrap();
        let removed = retain_newest(d.path(), "prod", 2).unwrap();
        assert_eq!(removed, ["prod-20261120T000000Z-r5.db"]);
        let mut left: Vec<String> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            ["other-20261101T000000Z-r1.db", "prod-20261101T000000Z-r1.db", "prod-20261121T000000Z-r9.db", "prod-20261122T000000Z-r12.db", "prod-notes.db"]
        );
    }

    #[test]
    fn the_continuous_service_restarts_and_quotes_as_the_timer_does() {
        let t = continuous_service(Path::new("/usr/bin/etcd-bootstrap"), Path::new("/ops/my spec.yaml"), Path::new("/b"), 3, "prod", &[], Some("s3://x/y"))
            .unwrap();
        assert!(t.contains("ExecStart=/usr/bin/etcd-bootstrap -f \"/ops/my spec.yaml\" backup --dir /b --keep 3 --to s3://x/y --continuous"), "{t}");
        assert!(
            t.contains("Type=simple")
                && t.contains("Restart=always")
                && t.contains("KillSignal=SIGTERM")
                && t.contains("EnvironmentFile=/etc/etcd-backup/prod.env"),
            "{t}"
        );
        assert!(continuous_service(Path::new("/e"), Path::new("/s\n[Service]"), Path::new("/b"), 1, "prod", &[], None).is_err());
    }

    #[test]
    fn the_timer_quotes_every_path() {
        let t =
            timer(Path::new("/usr/local/bin/etcd-bootstrap"), Path::new("/ops/my spec%.yaml"), Path::new("/var/backups/etcd"), 24, "prod", &[], None).unwrap();
        assert!(t.contains("ExecStart=/usr/local/bin/etcd-bootstrap -f \"/ops/my spec%%.yaml\" backup --dir /var/backups/etcd --keep 24"), "{t}");
        assert!(t.contains("root /usr/local/bin/etcd-bootstrap -f '/ops/my spec\\%.yaml' backup --dir /var/backups/etcd --keep 24"), "{t}");
        assert!(t.contains("OnCalendar=hourly"));
        // a newline would start a new cron line (a command of the attacker's): refused
        let e = timer(Path::new("/usr/local/bin/etcd-bootstrap"), Path::new("/ops/x\n* * * * * root touch /CANARY"), Path::new("/b"), 1, "prod", &[], None);
        assert!(e.is_err());
        // recipients go into both, each one argument (an SSH key has spaces)
        let ssh = "ssh-ed25519 AAAAC3Nza alice@ops".to_string();
        let t = timer(Path::new("/e"), Path::new("/s.yaml"), Path::new("/b"), 2, "prod", &["age1abc".into(), ssh], Some("s3://backups/etcd")).unwrap();
        assert!(t.contains("--keep 2 --encrypt-to age1abc --encrypt-to \"ssh-ed25519 AAAAC3Nza alice@ops\""), "{t}");
        assert!(t.contains("--encrypt-to 'ssh-ed25519 AAAAC3Nza alice@ops'"), "{t}");
        // off-host: the target in the command, the credentials from a root-only file
        assert!(t.contains("--to s3://backups/etcd") && t.contains("EnvironmentFile=/etc/etcd-backup/prod.env"), "{t}");
    }
}

pub mod bucket_history;
pub mod continuous;
pub mod history;
pub mod offsite;
pub mod replay;
pub mod sealed;
pub mod source;
