//! A backup folder as a history: full snapshots (`CLUSTER-STAMP-rREV.db[.age]`, as `backup` names
//! them) and sealed segments of changes (`CLUSTER-rFROM-rTO.changes[.age]`, written by `backup
//! --continuous`). Which revisions and times the folder can restore to, and the route to one:
//! the newest snapshot at or below it, then segments that cover every revision after it without
//! a gap. Pure over file names and headers; reading is in [`read_segment`].

use crate::error::{BootError, Result};
use etcdctl_lite::changes::Change;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// A segment's first line: what it covers and for which cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub cluster: String,
    /// etcd's cluster ID (hex) the changes were read from.
    pub cluster_id: String,
    pub from: i64,
    pub to: i64,
    /// When it was sealed: nothing happened between its last change and then.
    pub sealed_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub revision: i64,
    pub taken_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub from: i64,
    pub to: i64,
}

impl SegmentFile {
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// `CLUSTER-rFROM-rTO.changes` (`.changes.age` encrypted).
pub fn segment_name(cluster: &str, from: i64, to: i64, encrypted: bool) -> String {
    format!("{cluster}-r{from}-r{to}.changes{}", if encrypted { ".age" } else { "" })
}

/// FROM and TO of a segment name of this cluster (1 ≤ FROM ≤ TO), or `None`.
pub fn parse_segment_name(cluster: &str, file: &str) -> Option<(i64, i64)> {
    let rest = file.strip_prefix(cluster)?.strip_prefix("-r")?;
    let rest = rest.strip_suffix(".changes.age").or_else(|| rest.strip_suffix(".changes"))?;
    let (from, to) = rest.split_once("-r")?;
    let number = |s: &str| (!s.is_empty() && s.len() <= 18 && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<i64>().ok()).flatten();
    let (from, to) = (number(from)?, number(to)?);
    (from >= 1 && from <= to).then_some((from, to))
}

/// The seconds since the epoch in a snapshot name's stamp.
fn stamp_seconds(stamp: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(stamp, fmt).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// What a backup folder holds for `cluster`, each list oldest first.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub snapshots: Vec<SnapshotFile>,
    pub segments: Vec<SegmentFile>,
}

/// One stretch the folder can restore to: from a snapshot's revision to the last revision its
/// segments reach without a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub snapshot: usize,
    pub from: i64,
    pub to: i64,
}

/// The way to one revision: a snapshot and the segments to replay over it, in order.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    pub snapshot: &'a SnapshotFile,
    pub segments: Vec<&'a SegmentFile>,
    pub revision: i64,
}

impl Index {
    /// Reads the names in `dir` (regular files only; everything else is left alone).
    pub fn read(dir: &Path, cluster: &str) -> Result<Index> {
        let entries = std::fs::read_dir(dir).map_err(|e| BootError::Output { path: dir.display().to_string(), reason: e.to_string() })?;
        let names = entries.flatten().filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false)).map(|e| e.file_name().to_string_lossy().into_owned());
        Ok(Index::from_names(dir, cluster, names))
    }

    pub fn from_names(dir: &Path, cluster: &str, names: impl IntoIterator<Item = String>) -> Index {
        let mut ix = Index::default();
        for name in names {
            if crate::backup::is_backup_name(cluster, &name) {
                let (stamp, rev) = crate::backup::age_order(cluster, &name);
                if let (Some(taken_at), Ok(revision)) = (stamp_seconds(&stamp), i64::try_from(rev)) {
                    ix.snapshots.push(SnapshotFile { path: dir.join(&name), revision, taken_at });
                }
            } else if let Some((from, to)) = parse_segment_name(cluster, &name) {
                ix.segments.push(SegmentFile { path: dir.join(&name), from, to });
            }
        }
        ix.snapshots.sort_by_key(|s| (s.revision, s.taken_at));
        ix.segments.sort_by_key(|s| (s.from, s.to));
        ix
    }

    /// The last revision reachable from `rev` through segments without a gap.
    fn reach_from(&self, rev: i64) -> (i64, Vec<&SegmentFile>) {
        let (mut at, mut used) = (rev, Vec::new());
        loop {
            let next = self.segments.iter().filter(|s| s.from <= at + 1 && s.to > at).max_by_key(|s| s.to);
            match next {
                Some(s) => {
                    at = s.to;
                    used.push(s);
                }
                None => return (at, used),
            }
        }
    }

    /// Segments wholly at or below the oldest snapshot: no route uses them (retention's to delete).
    pub fn stale_segments(&self) -> Vec<&SegmentFile> {
        let Some(oldest) = self.snapshots.iter().map(|x| x.revision).min() else { return vec![] };
        self.segments.iter().filter(|x| x.to <= oldest).collect()
    }

    /// Every stretch the folder reaches, one per snapshot.
    pub fn reaches(&self) -> Vec<Reach> {
        self.snapshots.iter().enumerate().map(|(i, s)| Reach { snapshot: i, from: s.revision, to: self.reach_from(s.revision).0 }).collect()
    }

    /// The newest snapshot at or below `revision` whose segments reach it; otherwise a refusal
    /// that names what can be reached.
    pub fn route_to(&self, revision: i64) -> std::result::Result<Route<'_>, String> {
        let best = self.snapshots.iter().filter(|s| s.revision <= revision).rev().find(|s| self.reach_from(s.revision).0 >= revision);
        match best {
            Some(snapshot) => {
                let (_, all) = self.reach_from(snapshot.revision);
                // only what lies between the snapshot and the revision
                let mut at = snapshot.revision;
                let segments = all
                    .into_iter()
                    .take_while(|s| {
                        let needed = at < revision;
                        at = s.to;
                        needed
                    })
                    .collect();
                Ok(Route { snapshot, segments, revision })
            }
            None => Err(format!("revision {revision} cannot be reached from this folder: {}", self.describe_reach())),
        }
    }

    /// "it reaches revisions 10-250 and 400-512" (merged), or that it holds no snapshot.
    pub fn describe_reach(&self) -> String {
        let mut spans: Vec<(i64, i64)> = self.reaches().iter().map(|r| (r.from, r.to)).collect();
        spans.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if merged.is_empty() {
            return "it holds no full snapshot of this cluster (take one with `backup`, or run `backup --continuous`)".into();
        }
        let shown: Vec<String> = merged.iter().map(|(a, b)| if a == b { format!("{a}") } else { format!("{a}-{b}") }).collect();
        format!("it reaches revision{} {}", if shown.len() == 1 && merged[0].0 == merged[0].1 { "" } else { "s" }, shown.join(", "))
    }
}

/// A segment's header and changes, read line by line (an encrypted one decrypted in memory
/// first): `each` sees every change in order; a damaged line is an error naming the file.
pub fn read_segment(seg: &SegmentFile, ids: Option<&[Box<dyn age::Identity>]>, mut each: impl FnMut(&Change) -> Result<bool>) -> Result<Header> {
    let bad = |reason: String| BootError::Output { path: seg.path.display().to_string(), reason };
    let file = if crate::backup::sealed::is_encrypted(&seg.path) {
        let Some(ids) = ids else {
            return Err(BootError::BadArgument {
                flag: seg.path.display().to_string(),
                reason: "the history is age-encrypted; give --identity FILE (the age identity or SSH private key it was encrypted to)".into(),
            });
        };
        crate::backup::sealed::decrypt(&seg.path, ids)?
    } else {
        std::fs::File::open(&seg.path).map_err(|e| bad(e.to_string()))?
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let first = lines.next().transpose().map_err(|e| bad(e.to_string()))?.unwrap_or_default();
    let header: Header = serde_json::from_str(&first).map_err(|e| bad(format!("not a segment of changes ({e})")))?;
    if (header.from, header.to) != (seg.from, seg.to) {
        return Err(bad(format!("its header says revisions {}-{}, its name {}-{}: renamed or damaged", header.from, header.to, seg.from, seg.to)));
    }
    let mut last = header.from - 1;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        let c = etcdctl_lite::changes::from_line(&line).ok_or_else(|| bad(format!("line {} is not a change", n + 2)))?;
        if c.rev <= last || c.rev > header.to {
            return Err(bad(format!("line {}: revision {} out of order", n + 2, c.rev)));
        }
        last = c.rev;
        if !each(&c)? {
            break;
        }
    }
    Ok(header)
}

/// The revision the cluster was at, at `at_ms`: the last change received by then, through the
/// segments after the newest snapshot taken by then. Refused past what the folder covers.
pub fn revision_at(ix: &Index, at_ms: i64, ids: Option<&[Box<dyn age::Identity>]>) -> Result<i64> {
    let refuse = |reason: String| BootError::Precondition { what: "restore --to-time".into(), reason };
    let Some(base) = ix.snapshots.iter().filter(|s| s.taken_at * 1000 <= at_ms).max_by_key(|s| (s.taken_at, s.revision)) else {
        return Err(refuse(format!("no full snapshot was taken by then; {}", ix.describe_reach())));
    };
    let (_, segments) = ix.reach_from(base.revision);
    let (mut rev, mut covered_ms) = (base.revision, base.taken_at * 1000);
    for seg in segments {
        let mut past = false;
        let h = read_segment(seg, ids, |c| {
            if c.rev > base.revision && c.at_ms <= at_ms {
                rev = c.rev;
            }
            past = c.at_ms > at_ms;
            Ok(!past)
        })?;
        if past {
            return Ok(rev);
        }
        covered_ms = covered_ms.max(h.sealed_at_ms);
    }
    if covered_ms < at_ms {
        let when = rfc3339(covered_ms);
        return Err(refuse(format!("the history from the snapshot at revision {} reaches only to {when} (revision {rev})", base.revision)));
    }
    Ok(rev)
}

/// Unix milliseconds as RFC 3339 UTC (seconds), as `--to-time` takes them.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// `--to-time`: RFC 3339 (`2026-12-06T10:15:00Z`, or with an offset) as unix milliseconds.
pub fn parse_time(text: &str) -> std::result::Result<i64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e}: give a time as RFC 3339, e.g. 2026-12-06T10:15:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ix(names: &[&str]) -> Index {
        Index::from_names(Path::new("/b"), "prod", names.iter().map(|s| s.to_string()))
    }

    #[test]
    fn segment_names_are_exact_and_round_trip() {
        assert_eq!(parse_segment_name("prod", &segment_name("prod", 11, 250, false)), Some((11, 250)));
        assert_eq!(parse_segment_name("prod", &segment_name("prod", 11, 11, true)), Some((11, 11)));
        for not in ["prod-r0-r5.changes", "prod-r9-r5.changes", "prod-r1-r.changes", "prod2-r1-r2.changes", "prod-r1-r2.changes.bak", "prod-r+1-r2.changes"] {
            assert_eq!(parse_segment_name("prod", not), None, "{not}");
        }
    }

    #[test]
    fn a_revision_is_reached_from_the_newest_snapshot_below_it_without_a_gap() {
        let i = ix(&[
            "prod-20261206T100000Z-r100.db",
            "prod-r101-r150.changes",
            "prod-r151-r220.changes.age",
            "prod-20261206T110000Z-r200.db",
            "prod-r221-r260.changes",
            // a gap: 261-299 lost (the follower was down and the history compacted)
            "prod-r300-r400.changes",
            "notes.txt",
        ]);
        let r = i.route_to(180).unwrap();
        assert_eq!((r.snapshot.revision, r.segments.len()), (100, 2));
        // the newer snapshot is the shorter replay
        let r = i.route_to(230).unwrap();
        assert_eq!(r.snapshot.revision, 200);
        assert_eq!(r.segments.iter().map(|s| s.name()).collect::<Vec<_>>(), ["prod-r151-r220.changes.age", "prod-r221-r260.changes"]);
        assert_eq!(i.route_to(260).unwrap().segments.len(), 2);
        // a snapshot's own revision needs no segment
        assert!(i.route_to(200).unwrap().segments.is_empty());
        let e = i.route_to(300).unwrap_err();
        assert_eq!(e, "revision 300 cannot be reached from this folder: it reaches revisions 100-260");
        assert!(i.route_to(99).is_err());
        assert!(ix(&["prod-r1-r5.changes"]).route_to(3).unwrap_err().contains("holds no full snapshot"));
    }

    proptest! {
        #[test]
        fn no_folder_makes_the_index_panic(names in proptest::collection::vec("prod-(r[0-9]{1,3}){0,2}\\PC{0,12}", 0..12), r in any::<i64>()) {
            let i = Index::from_names(Path::new("/b"), "prod", names);
            let _ = i.route_to(r);
            let _ = i.describe_reach();
        }
    }
}
