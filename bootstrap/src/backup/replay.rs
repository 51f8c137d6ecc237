//! The snapshot `restore --to-revision R` / `--to-time T` restores: built here, before anything
//! stops. The route (the newest full snapshot at or below R and the segments after it) is found
//! or refused, naming what the folder reaches; the snapshot is restored by etcdutl into a private
//! folder beside the spec, a one-member etcd of the cluster's release serves it on loopback, every
//! change up to R is applied in its original transaction (each must land at its own revision),
//! and that etcd's snapshot, at exactly revision R, is what the ordinary restore then puts on the
//! members (the revision raised past the old history as always). The result is kept as
//! `pitr-rR.db` beside the journal until the restore finishes, so a resumed restore reads the same
//! file.

use crate::backup::bucket_history::BucketHistory;
use crate::backup::history::{self, Index};
use crate::error::{BootError, Result};
use crate::plan::{Plan, sh_quote};
use crate::progress::Progress;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which moment to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Revision(i64),
    /// Unix milliseconds.
    Time(i64),
}

fn refuse(reason: String) -> BootError {
    BootError::Precondition { what: "restore".into(), reason }
}

/// Where the replayed snapshot for `revision` is kept until the restore finishes.
pub fn output_path(plan: &Plan, revision: i64) -> PathBuf {
    journal_dir(plan).join(format!("pitr-r{revision}.db"))
}

/// The spec's journal folder (private to the operator).
fn journal_dir(plan: &Plan) -> PathBuf {
    let beside = crate::run::journal_store::Store::for_spec(Path::new(&plan.loaded.file)).last_backup_path();
    beside.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Where the history is: a folder, or the prefix `backup --continuous --to` uploads it to.
pub enum History {
    Folder(PathBuf),
    Bucket { url: String, location: crate::backup::offsite::Location, settings: crate::backup::offsite::Settings },
}

impl History {
    /// `--from s3://BUCKET/PREFIX` (the endpoint and credentials from the `AWS_*` environment
    /// or `~/.aws`), else `--dir` (default: `backups/` beside the spec).
    pub fn from_flags(spec: &Path, dir: Option<PathBuf>, from: Option<&str>) -> Result<History> {
        let bad = |reason: String| BootError::BadArgument { flag: "--from".into(), reason };
        if let Some(url) = from {
            let location = crate::backup::offsite::Location::parse(url).map_err(bad)?;
            let settings = crate::backup::offsite::Settings::from_env(|k| std::env::var(k).ok()).map_err(bad)?;
            return Ok(History::Bucket { url: url.to_string(), location, settings });
        }
        let base = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Ok(History::Folder(dir.unwrap_or_else(|| base.join("backups"))))
    }

    /// How the command names it, for its journal and a resumed run.
    fn flag(&self) -> String {
        match self {
            History::Folder(dir) => format!("--dir {}", sh_quote(&dir.display().to_string())),
            History::Bucket { url, .. } => format!("--from {}", sh_quote(url)),
        }
    }
    fn place(&self) -> String {
        match self {
            History::Folder(dir) => dir.display().to_string(),
            History::Bucket { url, .. } => url.clone(),
        }
    }
}

/// The snapshot at the target, replayed (or the one an interrupted restore replayed already).
pub fn prepare(plan: &Plan, history: &History, target: Target, identity: Option<&Path>, progress: &Progress) -> Result<crate::backup::source::Snapshot> {
    let cluster = &plan.loaded.spec.name;
    let (bucket, folder) = match history {
        History::Bucket { location, settings, .. } => (Some(BucketHistory::list(location, settings, cluster, &journal_dir(plan))?), None),
        History::Folder(dir) => (None, Some(Index::read(dir, cluster)?)),
    };
    let Some(ix) = bucket.as_ref().map(BucketHistory::index).or(folder.as_ref()) else {
        return Err(refuse(format!("{}: no history", history.place())));
    };
    let ids = match identity {
        Some(p) => Some(crate::backup::sealed::identities(p)?),
        None => None,
    };
    let revision = match target {
        Target::Revision(r) => r,
        Target::Time(ms) => {
            if let Some(b) = &bucket {
                b.fetch_segments(progress)?;
            }
            let r = history::revision_at(ix, ms, ids.as_deref())?;
            progress.step("history", &format!("{}: the cluster was at revision {r}", history::rfc3339(ms)), None);
            r
        }
    };
    let route = ix.route_to(revision).map_err(|e| refuse(if bucket.is_some() { e.replacen("this folder", &history.place(), 1) } else { e }))?;
    let out = output_path(plan, revision);
    let mut args = format!("restore {} --to-revision {revision}", history.flag());
    if let Some(p) = identity {
        args.push_str(&format!(" --identity {}", sh_quote(&p.display().to_string())));
    }
    let label = format!("{} at revision {revision}", history.place());
    if out.is_file() && etcdctl_lite::snapshot_status::verify(&out).is_ok_and(|(s, _)| s.revision == revision) {
        progress.step("history", &format!("{}: replayed before, reused", out.display()), None);
        return Ok(crate::backup::source::Snapshot::replayed(out, label, args));
    }
    if let Some(b) = &bucket {
        let mut wanted = vec![route.snapshot.path.as_path()];
        wanted.extend(crate::backup::bucket_history::paths(&route.segments));
        b.fetch(&wanted, progress)?;
    }
    let (etcd, etcdutl) = local_etcd(plan)?;
    let t = Instant::now();
    let base = crate::backup::source::local(&route.snapshot.path, ids.as_deref(), progress)?;
    let work =
        tempfile::Builder::new().prefix(".pitr-").tempdir_in(out.parent().unwrap_or(Path::new("."))).map_err(|e| refuse(format!("a work folder: {e}")))?;
    // etcdutl opens a decrypted snapshot through this process's descriptor
    let base_path = PathBuf::from(base.path.display().to_string().replacen("/proc/self/", &format!("/proc/{}/", std::process::id()), 1));
    let server = Replayer::start(&etcd, &etcdutl, &base_path, work.path())?;
    progress.step("history", &format!("replaying from the snapshot at revision {} to {revision} on {}", route.snapshot.revision, etcd.display()), None);
    let applied = server.apply(&route, ids.as_deref(), progress)?;
    let partial = work.path().join("pitr.db");
    server.save(&partial, revision)?;
    drop(server);
    std::fs::rename(&partial, &out).map_err(|e| BootError::Output { path: out.display().to_string(), reason: e.to_string() })?;
    progress.step("history", &format!("{applied} changes replayed; {} at revision {revision}", out.display()), Some(t.elapsed()));
    Ok(crate::backup::source::Snapshot::replayed(out, label, args))
}

/// etcd and etcdutl of the cluster's release on this machine: beside the spec's etcd binary,
/// or of the same minor among the others `up --local` would find.
fn local_etcd(plan: &Plan) -> Result<(PathBuf, PathBuf)> {
    let version_of = |p: &Path| {
        let out = Command::new(p).arg("--version").output().ok()?;
        crate::spec::versions::etcd_version_output(&String::from_utf8_lossy(&out.stdout))
    };
    let own = PathBuf::from(&plan.loaded.spec.etcd_binary);
    let wanted = version_of(&own);
    let cwd = std::env::current_dir().unwrap_or_default();
    let candidates = std::iter::once(own).chain(crate::spec::local::etcd_candidates(&cwd, std::env::current_exe().ok().as_deref()));
    for etcd in candidates {
        let utl = etcd.with_file_name("etcdutl");
        let Some(v) = version_of(&etcd) else { continue };
        if utl.is_file() && wanted.is_none_or(|w| (w.0, w.1) == (v.0, v.1)) {
            return Ok((etcd, utl));
        }
    }
    let which = wanted.map(|w| format!("{}.{}", w.0, w.1)).unwrap_or_else(|| "3.5 or newer".into());
    Err(refuse(format!("replaying the history needs etcd and etcdutl {which} on this machine (beside the spec's etcd_binary, or on PATH); none was found")))
}

/// A one-member etcd on loopback, serving the restored snapshot; stopped by its PID when dropped.
struct Replayer {
    child: Child,
    endpoint: String,
    rt: tokio::runtime::Runtime,
    log: PathBuf,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| refuse(format!("a loopback port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| refuse(format!("a loopback port: {e}")))
}

impl Replayer {
    fn start(etcd: &Path, etcdutl: &Path, snapshot: &Path, work: &Path) -> Result<Replayer> {
        let (client, peer) = (free_port()?, free_port()?);
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = work.join("data");
        let out = Command::new(etcdutl)
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "pitr", "--initial-cluster", &format!("pitr={peer_url}"), "--initial-advertise-peer-urls", &peer_url])
            .output()
            .map_err(|e| refuse(format!("{}: {e}", etcdutl.display())))?;
        if !out.status.success() {
            return Err(refuse(format!("etcdutl snapshot restore of the base snapshot failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let endpoint = format!("http://127.0.0.1:{client}");
        let log = work.join("etcd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| refuse(format!("{}: {e}", log.display())))?;
        let err_file = log_file.try_clone().map_err(|e| refuse(e.to_string()))?;
        let child = Command::new(etcd)
            .args(["--name", "pitr", "--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url, "--initial-cluster", &format!("pitr={peer_url}")])
            // a throwaway etcd whose only product is the snapshot taken after the replay: no fsync
            // per transaction (a crash mid-replay redoes the replay; nothing else reads it)
            .args(["--quota-backend-bytes", "8589934592", "--log-level", "warn", "--unsafe-no-fsync"])
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| refuse(format!("{}: {e}", etcd.display())))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| refuse(e.to_string()))?;
        let r = Replayer { child, endpoint, rt, log };
        r.wait_ready()?;
        Ok(r)
    }

    fn options(&self) -> Result<etcdctl_lite::options::ClientOptions> {
        etcdctl_lite::options::ClientOptions::new(std::slice::from_ref(&self.endpoint), None, None, None, Duration::from_secs(2), Duration::from_secs(30))
            .map_err(|e| refuse(e.to_string()))
    }

    fn wait_ready(&self) -> Result<()> {
        let opts = self.options()?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let s = self.rt.block_on(etcdctl_lite::ops::status(&opts));
            if s.iter().any(|s| s.result.is_ok()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
        Err(refuse(format!("the replay etcd did not answer within 60 s: {}", tail.lines().last().unwrap_or(""))))
    }

    /// Every change after the snapshot up to the route's revision, in order; how many.
    fn apply(&self, route: &history::Route, ids: Option<&[Box<dyn age::Identity>]>, progress: &Progress) -> Result<u64> {
        let opts = self.options()?;
        let mut client = self.rt.block_on(etcdctl_lite::connect::client_for(&self.endpoint, &opts)).map_err(|e| refuse(e.to_string()))?;
        let mut granted: HashMap<i64, i64> = HashMap::new();
        let (from, to) = (route.snapshot.revision, route.revision);
        let mut applied = 0u64;
        let mut shown = Instant::now();
        for seg in &route.segments {
            history::read_segment(seg, ids, |c| {
                if c.rev <= from {
                    return Ok(true);
                }
                if c.rev > to {
                    return Ok(false);
                }
                self.rt
                    .block_on(etcdctl_lite::changes::apply(&mut client, c, &mut granted))
                    .map_err(|e| BootError::Verification(format!("{}: {e}", seg.name())))?;
                applied += 1;
                if shown.elapsed() > Duration::from_secs(5) {
                    shown = Instant::now();
                    progress.step("history", &format!("at revision {} of {to}", c.rev), None);
                }
                Ok(true)
            })?;
        }
        Ok(applied)
    }

    /// The replayed etcd's snapshot; it must be at exactly `revision`.
    fn save(&self, to: &Path, revision: i64) -> Result<()> {
        let opts = self.options()?;
        let s = self.rt.block_on(etcdctl_lite::ops::status(&opts));
        let at = s.iter().find_map(|s| s.result.as_ref().ok().map(|x| x.revision)).unwrap_or(0);
        if at != revision {
            return Err(BootError::Verification(format!("the replay ended at revision {at}, not {revision}: the history has a gap")));
        }
        self.rt.block_on(etcdctl_lite::snapshot::save(&opts, to)).map_err(|e| BootError::Etcd { what: "the replayed snapshot".into(), source: e })?;
        Ok(())
    }
}

impl Drop for Replayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
