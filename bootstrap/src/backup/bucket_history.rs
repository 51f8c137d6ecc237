//! The history `backup --continuous --to s3://BUCKET/PREFIX` keeps under a prefix, read in place
//! of a folder (`restore --to-revision/--to-time --from s3://...`). The prefix is listed once and
//! the route found, or refused, from the names alone; only what it needs is fetched — the one
//! full snapshot and the segments after it (for `--to-time`, the segments first: the time is in
//! their lines) — byte for byte, still encrypted, into a private folder that is removed with
//! this value.

use crate::backup::history::{Index, SegmentFile};
use crate::backup::offsite::{Location, Settings, Store};
use crate::error::Result;
use crate::progress::Progress;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

pub struct BucketHistory {
    store: Store,
    location: Location,
    /// Every index over this holds paths in it.
    pub folder: tempfile::TempDir,
    index: Index,
    fetched: Mutex<HashSet<String>>,
}

impl BucketHistory {
    /// Lists the prefix (this cluster's snapshot and segment names only); `beside` holds the
    /// private folder the files are fetched into.
    pub fn list(location: &Location, settings: &Settings, cluster: &str, beside: &Path) -> Result<BucketHistory> {
        pki::lock::create_dir_tree(beside)?;
        crate::spec::rules::trusted_dir("restore (the folder the history is fetched into, beside the journal)", beside, pki::safe_fs::Writes::CreateExclusive)?;
        let store = Store::new(location, settings)?;
        let folder = tempfile::Builder::new().prefix(".history-").tempdir_in(beside).map_err(crate::error::io("create a folder in", beside))?;
        let names = store.names()?;
        let index = Index::from_names(folder.path(), cluster, names);
        Ok(BucketHistory { store, location: location.clone(), folder, index, fetched: Mutex::new(HashSet::new()) })
    }

    /// What the prefix holds, as a folder would (its files there once fetched).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Every segment a route could use (those above the oldest snapshot): `--to-time` reads
    /// them to find its revision.
    pub fn fetch_segments(&self, progress: &Progress) -> Result<()> {
        let stale: HashSet<&Path> = self.index.stale_segments().iter().map(|s| s.path.as_path()).collect();
        let wanted: Vec<&Path> = self.index.segments.iter().map(|s| s.path.as_path()).filter(|p| !stale.contains(p)).collect();
        self.fetch(&wanted, progress)
    }

    /// The files at `paths` (in [`Self::index`]'s folder) fetched from the prefix, each once.
    pub fn fetch(&self, paths: &[&Path], progress: &Progress) -> Result<()> {
        let t = Instant::now();
        let (mut files, mut bytes) = (0, 0);
        for path in paths {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            if !self.fetched.lock().map(|mut f| f.insert(name.clone())).unwrap_or(true) {
                continue;
            }
            let key = self.location.key(&name);
            // a new file only (O_EXCL: never through a planted link)
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(crate::error::io("create", path))?;
            let (n, _) = self.store.download(&key, &mut file)?;
            file.flush().map_err(crate::error::io("write", path))?;
            (files, bytes) = (files + 1, bytes + n);
        }
        if files > 0 {
            progress.step("history", &format!("{}: {files} files, {bytes} bytes fetched", self.location.url(&self.location.prefix)), Some(t.elapsed()));
        }
        Ok(())
    }
}

/// The segment paths of a route, for [`BucketHistory::fetch`].
pub fn paths<'a>(segments: &[&'a SegmentFile]) -> Vec<&'a Path> {
    segments.iter().map(|s| s.path.as_path()).collect()
}
