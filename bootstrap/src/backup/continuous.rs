//! `backup --continuous`: a full snapshot, then every change the cluster makes, kept in sealed
//! segments beside it (see [`crate::backup::history`]), so `restore --to-revision`/`--to-time`
//! can rebuild any moment the folder covers.
//!
//! The follower watches the whole keyspace from the revision after the last one kept. Changes are
//! buffered in memory (at most [`MAX_BUFFER`] bytes) and sealed every `segment_every` (5 s by
//! default), at once when the member goes away (what a whole-cluster crash would lose is what
//! had not reached the follower), and on SIGTERM/SIGINT. A sealed segment is written under a hidden
//! name, synced, then linked to its final name, encrypted first with `--encrypt-to`, uploaded with
//! `--to`. Killed at any point, a restart resumes from the last sealed revision; when that
//! history has been compacted away, or the cluster is another one (restored), a new full
//! snapshot starts a new chain.
//!
//! It never holds the cluster lock while following (a full snapshot takes the shared one, as
//! `backup` does), and it stands aside while a `restore` or `downgrade` is under way. One
//! follower per folder and cluster (a lock file); its state is in `continuous.json` beside the
//! journal, which `doctor` reads for the lag.

use crate::backup::history::{self, Header, Index};
use crate::error::{BootError, Result};
use crate::journal::OpKind;
use crate::plan::Plan;
use crate::progress::Progress;
use etcdctl_lite::changes::{Change, FollowError, Follower};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Changes held in memory before a segment is sealed early.
pub const MAX_BUFFER: usize = 16 << 20;

/// How the follower runs.
pub struct Settings<'a> {
    pub dir: PathBuf,
    pub keep: Option<usize>,
    pub seal: Option<&'a crate::backup::sealed::Recipients>,
    pub offsite: Option<(&'a crate::backup::offsite::Location, &'a crate::backup::offsite::Settings)>,
    pub segment_every: Duration,
    pub full_every: Duration,
    pub lock_wait: Duration,
}

/// What `doctor` reads: how far the history reaches, and when that was true.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    pub dir: String,
    pub cluster_id: String,
    /// The last revision sealed into a segment (or the full snapshot's, before any).
    pub sealed_to: i64,
    /// When the follower last knew it had every revision up to `sealed_to` (unix ms).
    pub covered_at_ms: i64,
    pub full_revision: i64,
    pub segments: u64,
    /// Why it stands aside (a restore or downgrade under way), or the member it lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Sealed segments in the folder that `--to` could not upload yet (tried again at each seal).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unshipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn status_path(spec_file: &Path) -> PathBuf {
    crate::run::journal_store::Store::for_spec(spec_file).last_backup_path().with_file_name("continuous.json")
}

/// The follower's last state, if one ever ran for this spec.
pub fn read_status(spec_file: &Path) -> Option<Status> {
    serde_json::from_str(&std::fs::read_to_string(status_path(spec_file)).ok()?).ok()
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn dir_err(dir: &Path, reason: impl std::fmt::Display) -> BootError {
    BootError::Output { path: dir.display().to_string(), reason: reason.to_string() }
}

/// One follower per folder and cluster: an exclusive `flock` held while it runs.
fn lock(dir: &Path, cluster: &str, spec_file: &Path) -> Result<std::fs::File> {
    let path = dir.join(format!(".{cluster}-continuous.lock"));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| dir_err(&path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(_) => {
            let pid = read_status(spec_file).map(|s| format!(" (pid {})", s.pid)).unwrap_or_default();
            Err(BootError::Precondition {
                what: "backup --continuous".into(),
                reason: format!("another continuous backup{pid} already follows cluster {cluster} into {}; stop it first", dir.display()),
            })
        }
    }
}

struct Follow<'a> {
    plan: &'a Plan,
    progress: &'a Progress,
    s: &'a Settings<'a>,
    status: Status,
    buffer: Vec<Change>,
    weight: usize,
    /// The revision the next segment starts at.
    next_from: i64,
    cluster_id: u64,
    /// Sealed segments (oldest first) that `--to` could not upload yet.
    unshipped: Vec<PathBuf>,
}

/// Runs until `stop` is set (SIGTERM/SIGINT in the binary); returns the last state.
pub fn run(plan: &Plan, progress: &Progress, s: &Settings, stop: Arc<AtomicBool>) -> Result<Status> {
    let spec_file = Path::new(&plan.loaded.file);
    let cluster = &plan.loaded.spec.name;
    crate::spec::rules::trusted_dir("backup --dir", &s.dir, pki::safe_fs::Writes::CreateExclusive)?;
    std::fs::create_dir_all(&s.dir).map_err(|e| dir_err(&s.dir, e))?;
    crate::spec::rules::trusted_dir("backup --dir", &s.dir, pki::safe_fs::Writes::CreateExclusive)?;
    let _lock = lock(&s.dir, cluster, spec_file)?;
    let earlier = read_status(spec_file).filter(|st| Path::new(&st.dir) == s.dir.as_path());
    let ix = Index::read(&s.dir, cluster)?;
    let newest_full = ix.snapshots.iter().map(|x| x.revision).max();
    let last_sealed = ix.segments.iter().map(|x| x.to).max();
    let mut f = Follow {
        plan,
        progress,
        s,
        status: Status { pid: std::process::id(), dir: s.dir.display().to_string(), ..earlier.clone().unwrap_or_default() },
        buffer: Vec::new(),
        weight: 0,
        next_from: newest_full.max(last_sealed).map(|r| r + 1).unwrap_or(0),
        cluster_id: earlier.and_then(|e| u64::from_str_radix(&e.cluster_id, 16).ok()).unwrap_or(0),
        unshipped: Vec::new(),
    };
    f.status.pid = std::process::id();
    f.find_unshipped(&ix);
    f.ship();
    if f.next_from == 0 {
        f.full_snapshot("no full snapshot in the folder yet")?;
    } else {
        progress.step("continuous", &format!("resuming from revision {} ({})", f.next_from, ix.describe_reach()), None);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| BootError::Verification(format!("starting the runtime: {e}")))?;
    let mut last_full = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(why) = f.stand_aside() {
            f.wait(&why, &stop);
            continue;
        }
        // asked again at every (re)connection: a CA rotation changes what is trusted
        let opts = crate::run::etcd_view::EtcdView::client(&crate::run::etcd_view::LiveEtcd::new(plan)?)?.0;
        match rt.block_on(Follower::start(&opts, f.next_from)) {
            Ok(follower) => {
                if f.cluster_id != 0 && follower.cluster_id != f.cluster_id {
                    if f.renew(&format!("the cluster is another one now (ID {:x}, was {:x}): restored", follower.cluster_id, f.cluster_id), &stop) {
                        f.cluster_id = 0;
                    }
                    continue;
                }
                f.cluster_id = follower.cluster_id;
                f.status.cluster_id = format!("{:x}", follower.cluster_id);
                progress.step("continuous", &format!("following {} from revision {}", follower.endpoint, f.next_from), None);
                // following again: whatever kept it waiting is over (doctor reads this)
                f.status.waiting = None;
                f.save_status();
                let ended = f.follow(&rt, follower, &stop, &mut last_full);
                f.seal()?;
                match ended {
                    Ok(()) => {}
                    Err(FollowError::Compacted(at)) => _ = f.renew(&format!("the history before revision {at} was compacted away"), &stop),
                    Err(e @ FollowError::Lost { .. }) => f.lost(&e.to_string(), &stop),
                }
            }
            Err(FollowError::Compacted(at)) => _ = f.renew(&format!("the history before revision {at} was compacted away"), &stop),
            Err(e) => f.lost(&e.to_string(), &stop),
        }
    }
    f.seal()?;
    progress.step("continuous", &format!("stopped; sealed to revision {}", f.status.sealed_to), None);
    Ok(f.status)
}

impl Follow<'_> {
    /// Follows until the stream ends, the stop flag, or a full snapshot is due (then `Ok`).
    fn follow(
        &mut self,
        rt: &tokio::runtime::Runtime,
        mut follower: Follower,
        stop: &AtomicBool,
        last_full: &mut Instant,
    ) -> std::result::Result<(), FollowError> {
        let mut sealed_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let changes = rt.block_on(follower.next(Duration::from_millis(250), now_ms))?;
            for c in changes {
                self.weight += c.weight();
                self.buffer.push(c);
            }
            if self.weight >= MAX_BUFFER || sealed_at.elapsed() >= self.s.segment_every {
                rt.block_on(follower.ask_progress())?;
                if let Err(e) = self.seal() {
                    self.progress.step("continuous", &format!("warning: {e}"), None);
                }
                sealed_at = Instant::now();
                if self.buffer.is_empty() && follower.seen >= self.next_from - 1 {
                    self.status.covered_at_ms = now_ms();
                    self.save_status();
                }
                if self.stand_aside().is_some() {
                    return Ok(());
                }
            }
            if last_full.elapsed() >= self.s.full_every {
                *last_full = Instant::now();
                let _ = self.seal();
                if let Err(e) = self.full_snapshot("the periodic full snapshot") {
                    self.progress.step("continuous", &format!("warning: the periodic full snapshot failed: {e}"), None);
                }
            }
        }
        Ok(())
    }

    /// Writes the buffer as one segment (nothing when empty).
    fn seal(&mut self) -> Result<()> {
        let Some(last) = self.buffer.last().map(|c| c.rev) else {
            if !self.unshipped.is_empty() {
                self.ship();
                self.save_status();
            }
            return Ok(());
        };
        let cluster = &self.plan.loaded.spec.name;
        let header = Header {
            cluster: cluster.clone(),
            cluster_id: format!("{:x}", self.cluster_id),
            from: self.next_from.min(self.buffer[0].rev),
            to: last,
            sealed_at_ms: now_ms(),
        };
        let name = history::segment_name(cluster, header.from, header.to, self.s.seal.is_some());
        let path = self.s.dir.join(&name);
        let partial = self.s.dir.join(format!(".{name}.partial-{}", std::process::id()));
        let mut plain = crate::backup::sealed::in_memory("etcd-bootstrap-changes")?;
        let mut text = serde_json::to_string(&header).unwrap_or_default();
        text.push('\n');
        plain.write_all(text.as_bytes()).map_err(|e| dir_err(&partial, e))?;
        for c in &self.buffer {
            let mut line = etcdctl_lite::changes::to_line(c);
            line.push('\n');
            plain.write_all(line.as_bytes()).map_err(|e| dir_err(&partial, e))?;
        }
        match self.s.seal {
            Some(to) => {
                crate::backup::sealed::encrypt(&mut plain, &partial, to)?;
            }
            None => write_private(&mut plain, &partial)?,
        }
        let linked = std::fs::hard_link(&partial, &path);
        let _ = std::fs::remove_file(&partial);
        linked.map_err(|e| dir_err(&path, format!("{e} (a segment by that name exists; nothing was replaced)")))?;
        if let Ok(d) = std::fs::File::open(&self.s.dir) {
            let _ = d.sync_all();
        }
        self.unshipped.push(path);
        self.ship();
        self.status.sealed_to = header.to;
        self.status.covered_at_ms = header.sealed_at_ms;
        self.status.segments += 1;
        self.status.waiting = None;
        self.next_from = header.to + 1;
        self.buffer.clear();
        self.weight = 0;
        self.save_status();
        Ok(())
    }

    /// Uploads the sealed segments `--to` has not got yet, oldest first; those that fail stay for
    /// the next seal (the folder has them: only the bucket's copy of the chain waits).
    fn ship(&mut self) {
        // retention may have removed one meanwhile: below the oldest snapshot, no route needs it
        self.unshipped.retain(|p| p.is_file());
        let Some((location, settings)) = self.s.offsite.filter(|_| !self.unshipped.is_empty()) else {
            self.unshipped.clear();
            return;
        };
        let store = crate::backup::offsite::Store::new(location, settings);
        let before = self.unshipped.len();
        let mut failed = None;
        self.unshipped.retain(|path| {
            if failed.is_some() {
                return true;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match store.as_ref().map_err(|e| e.to_string()).and_then(|st| st.upload(&location.key(&name), path).map_err(|e| e.to_string())) {
                Ok(_) => false,
                Err(e) => {
                    failed = Some(e);
                    true
                }
            }
        });
        let n = self.unshipped.len();
        if let Some(e) = failed.filter(|_| n as u64 > self.status.unshipped) {
            // said when another one waits, not at every try
            self.progress.step("continuous", &format!("warning: {n} segment(s) not uploaded yet, tried again at each seal: {e}"), None);
        } else if n == 0 && self.status.unshipped > 0 {
            self.progress.step("continuous", &format!("uploaded {before} segment(s) that had waited: the bucket holds the whole chain again"), None);
        }
        self.status.unshipped = n as u64;
    }

    /// At start with `--to`: the folder's segments above the bucket's oldest full snapshot that
    /// the bucket lacks (an upload that failed before a restart), to upload with the next seal.
    fn find_unshipped(&mut self, local: &Index) {
        let Some((location, settings)) = self.s.offsite else { return };
        let listed = crate::backup::offsite::Store::new(location, settings).and_then(|st| st.names());
        let names: std::collections::HashSet<String> = match listed {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                self.progress.step("continuous", &format!("warning: could not list {}: {e}", location.url(&location.prefix)), None);
                return;
            }
        };
        let remote = Index::from_names(Path::new(""), &self.plan.loaded.spec.name, names.iter().cloned());
        let Some(oldest) = remote.snapshots.iter().map(|x| x.revision).min() else { return };
        self.unshipped = local.segments.iter().filter(|x| x.to > oldest && !names.contains(&x.name())).map(|x| x.path.clone()).collect();
        self.status.unshipped = self.unshipped.len() as u64;
        if !self.unshipped.is_empty() {
            self.progress.step("continuous", &format!("the bucket lacks {} sealed segment(s) of the folder; uploading them", self.unshipped.len()), None);
        }
    }

    /// A full snapshot (as `backup` takes it, under the shared lock), then the chain goes on
    /// from its revision.
    fn full_snapshot(&mut self, why: &str) -> Result<()> {
        self.progress.step("continuous", &format!("full snapshot: {why}"), None);
        let (plan, s) = (self.plan, self.s);
        let req = crate::run::context::request(plan, OpKind::Backup, None, "backup");
        let b = crate::run::context::run(plan, self.progress, req, s.lock_wait, |ctx| crate::backup::backup(ctx, &s.dir, s.keep, s.seal))?;
        if let Some((location, settings)) = s.offsite {
            let shipped = crate::backup::offsite::ship(location, settings, Path::new(&b.path), &plan.loaded.spec.name, s.keep)?;
            crate::backup::record_remote(Path::new(&plan.loaded.file), &shipped.url);
            if s.keep.is_some() {
                for url in retain_remote_segments(location, settings, &plan.loaded.spec.name)? {
                    self.progress.step("keep", &format!("removed {url}"), None);
                }
            }
        }
        if s.keep.is_some() {
            self.retain()?;
        }
        // changes already buffered above the snapshot stay; below it they are in the snapshot
        self.buffer.retain(|c| c.rev > b.revision);
        self.weight = self.buffer.iter().map(Change::weight).sum();
        self.next_from = self.next_from.max(b.revision + 1);
        if self.buffer.is_empty() {
            self.next_from = b.revision + 1;
        }
        self.status.full_revision = b.revision;
        self.status.sealed_to = self.status.sealed_to.max(b.revision);
        self.status.covered_at_ms = now_ms();
        self.save_status();
        Ok(())
    }

    fn retain(&self) -> Result<()> {
        for name in retain_segments(&self.s.dir, &self.plan.loaded.spec.name)? {
            self.progress.step("keep", &format!("removed {name}"), None);
        }
        Ok(())
    }

    /// A restore or downgrade under way: the follower stands aside until it is done.
    fn stand_aside(&self) -> Option<String> {
        let store = crate::run::journal_store::Store::for_spec(Path::new(&self.plan.loaded.file));
        let all = crate::run::context::under_way(self.plan, &store).ok()?;
        all.iter().find(|u| matches!(u.entry.kind, OpKind::Restore | OpKind::Downgrade)).map(|u| format!("{} under way", u.entry.kind.command()))
    }

    fn wait(&mut self, why: &str, stop: &AtomicBool) {
        self.idle("standing aside: ", why, stop, Duration::from_secs(1));
    }

    fn lost(&mut self, why: &str, stop: &AtomicBool) {
        self.idle("lost the cluster, retrying every second: ", why, stop, Duration::from_secs(1));
    }

    /// A full snapshot the chain needs before following goes on. When it cannot be taken now
    /// (the cluster lock held by a rotation, no member answering), it is said and tried again in
    /// 10 s: the follower outlives what a single backup would fail on.
    fn renew(&mut self, why: &str, stop: &AtomicBool) -> bool {
        match self.full_snapshot(why) {
            Ok(()) => true,
            Err(e) => {
                self.idle("the full snapshot failed, trying again in 10 s: ", &e.to_string(), stop, Duration::from_secs(10));
                false
            }
        }
    }

    /// A while without following: said (and recorded for doctor) once per reason.
    fn idle(&mut self, said: &str, why: &str, stop: &AtomicBool, pause: Duration) {
        if self.status.waiting.as_deref() != Some(why) {
            self.progress.step("continuous", &format!("{said}{why}"), None);
            self.status.waiting = Some(why.to_string());
            self.save_status();
        }
        sleep_unless(stop, pause);
    }

    fn save_status(&self) {
        if let Ok(text) = serde_json::to_string_pretty(&self.status) {
            let _ = pki::files::write_atomic(&status_path(Path::new(&self.plan.loaded.file)), (text + "\n").as_bytes(), 0o644);
        }
    }
}

/// The same under the S3 prefix (after `--keep` pruned the snapshots there): this cluster's
/// segment names only. Their URLs.
pub fn retain_remote_segments(location: &crate::backup::offsite::Location, settings: &crate::backup::offsite::Settings, cluster: &str) -> Result<Vec<String>> {
    let store = crate::backup::offsite::Store::new(location, settings)?;
    let names = store.names()?;
    let ix = Index::from_names(Path::new(""), cluster, names);
    let mut removed = Vec::new();
    for seg in ix.stale_segments() {
        let key = location.key(&seg.name());
        store.delete(&key)?;
        removed.push(location.url(&key));
    }
    Ok(removed)
}

/// Segments wholly at or below the oldest full snapshot `--keep` left lead nowhere: removed
/// (regular files with a segment's exact name and this user's ownership only). Their names.
pub fn retain_segments(dir: &Path, cluster: &str) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let ix = Index::read(dir, cluster)?;
    let me = rustix::process::geteuid().as_raw();
    let mut removed = Vec::new();
    for seg in ix.stale_segments() {
        let ours = std::fs::symlink_metadata(&seg.path).map(|m| m.file_type().is_file() && m.uid() == me).unwrap_or(false);
        if ours {
            std::fs::remove_file(&seg.path).map_err(|e| dir_err(&seg.path, e))?;
            removed.push(seg.name());
        }
    }
    Ok(removed)
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let t = Instant::now();
    while t.elapsed() < total && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The in-memory segment copied to its hidden name: 0600, new (O_EXCL), synced.
fn write_private(plain: &mut std::fs::File, partial: &Path) -> Result<()> {
    use std::io::Seek;
    use std::os::unix::fs::OpenOptionsExt;
    plain.rewind().map_err(|e| dir_err(partial, e))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(partial)
        .map_err(|e| dir_err(partial, e))?;
    std::io::copy(plain, &mut out).map_err(|e| dir_err(partial, e))?;
    out.sync_all().map_err(|e| dir_err(partial, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_drops_the_segments_below_the_oldest_snapshot_kept_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "prod-20261206T100000Z-r200.db",
            "prod-r101-r150.changes",
            "prod-r151-r220.changes.age",
            "prod-r221-r260.changes",
            "prod-notes.changes",
            "other-r1-r5.changes",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        // a link named as a segment is not ours to delete
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("prod-r1-r100.changes")).unwrap();
        assert_eq!(retain_segments(d.path(), "prod").unwrap(), ["prod-r101-r150.changes"]);
        let mut left: Vec<String> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other-r1-r5.changes",
                "prod-20261206T100000Z-r200.db",
                "prod-notes.changes",
                "prod-r1-r100.changes",
                "prod-r151-r220.changes.age",
                "prod-r221-r260.changes"
            ]
        );
    }
}
