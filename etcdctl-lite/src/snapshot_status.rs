//! `snapshot status FILE`: etcdutl's fields (hash, revision, total keys, total size) read from the
//! file alone, computed as etcd computes them: CRC-32C over every bucket name and every key and
//! value in order, the revision of the last key of the `key` bucket, bbolt's size. A snapshot saved
//! from etcd carries a SHA-256 of the rest as its last 32 bytes; it is checked first.
//!
//! As the etcdutl of the snapshot's own line: a snapshot of etcd 3.6 or later names its storage
//! version (`meta` bucket, `storageVersion`), and etcdutl 3.6+ then shows it (`version`) and counts
//! the keys a user sees (live keys, tombstones removed: etcd PR #19344); before 3.6 etcdutl counts
//! every key of every bucket. A 3.6+ cluster writes its storage version seconds after it starts;
//! a snapshot taken before that is known by its cluster version (`cluster` bucket) instead (seen
//! in CI: a backup of a fresh 3.7 cluster counted 1011 where etcdutl 3.7 said 1001).

use crate::bolt::{Corrupt, Db};
use crate::error::{CtlError, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// etcdutl's `snapshot status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
    /// The snapshot's storage version (3.6 and later; empty, as etcdutl 3.6+ prints it, for a
    /// 3.6+ snapshot taken before its member wrote one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The minor of the etcdutl line the snapshot is shown as (its storage version's, else its
    /// cluster version's): the table style.
    #[serde(skip)]
    pub line: Option<u64>,
}

/// Whether a snapshot carries etcd's SHA-256 trailer, and if so whether it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    Matched,
    Absent,
}

fn file_err(path: &Path, reason: impl Into<String>) -> CtlError {
    CtlError::File { path: path.display().to_string(), reason: reason.into() }
}

pub fn status(path: &Path) -> Result<(SnapshotStatus, Trailer)> {
    inspect(path, true, true)
}

/// For a restore: the SHA-256 trailer verified and the structure walked, without etcd's CRC
/// (`hash` is 0); returns the trailer too (hex), which names the snapshot's contents.
pub fn verify(path: &Path) -> Result<(SnapshotStatus, Option<String>)> {
    let (s, trailer) = inspect(path, true, false)?;
    if trailer == Trailer::Absent {
        return Ok((s, None));
    }
    let file = File::open(path).map_err(|e| file_err(path, e.to_string()))?;
    let len = file.metadata().map_err(|e| file_err(path, e.to_string()))?.len();
    let mut t = [0u8; 32];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut t, len - 32).map_err(|e| file_err(path, e.to_string()))?;
    Ok((s, Some(hex::encode(t))))
}

/// Revision, keys and size only, for a file whose SHA-256 trailer the caller has just verified
/// while writing it (`snapshot save`): the structure is still walked and checked, but neither the
/// trailer nor etcd's CRC is computed again. `hash` is 0.
pub fn read_back(path: &Path) -> Result<SnapshotStatus> {
    inspect(path, false, false).map(|(s, _)| s)
}

fn inspect(path: &Path, verify_trailer: bool, with_hash: bool) -> Result<(SnapshotStatus, Trailer)> {
    let file = File::open(path).map_err(|e| file_err(path, e.to_string()))?;
    let len = file.metadata().map_err(|e| file_err(path, e.to_string()))?.len();
    // bbolt files are whole pages (multiples of 512); `snapshot save` appends a 32-byte SHA-256
    let has_trailer = len % 512 == 32;
    let data_len = if has_trailer { len - 32 } else { len };
    if data_len == 0 || data_len % 512 != 0 {
        return Err(file_err(path, format!("truncated or not an etcd snapshot: {len} bytes is not a whole number of pages (plus etcd's 32-byte hash)")));
    }
    let trailer = if has_trailer {
        if verify_trailer {
            check_trailer(path, &file, data_len)?;
        }
        Trailer::Matched
    } else {
        Trailer::Absent
    };
    let bad = |c: Corrupt| file_err(path, format!("corrupt: {}", c.0));
    let db = Db::open(file, data_len).map_err(bad)?;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut digest = crc.digest();
    let (mut revision, mut total_key) = (0i64, 0u64);
    let mut live: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut version = None;
    let mut cluster_minor = None;
    db.for_each(&mut |bucket, pair| {
        match pair {
            None if with_hash => digest.update(bucket),
            None => {}
            Some((k, v)) => {
                if with_hash {
                    digest.update(k);
                    digest.update(&v.whole()?);
                }
                if bucket == b"key" && k.len() >= 8 {
                    // etcd's revision key: main revision, big-endian, then '_' and the sub revision
                    revision = i64::from_be_bytes(k[..8].try_into().unwrap_or_default());
                    // a deletion's revision key is marked with a trailing 't' (mvcc.IsTombstone)
                    let tombstone = k.len() == 18 && k[17] == b't';
                    // the user's key leads the value: read that far, not the value behind it
                    let head = v.head(KEY_HEAD)?;
                    let head = match kv_key_end(&head) {
                        Some(end) if end > head.len() => v.head(end)?,
                        _ => head,
                    };
                    if let Some(key) = kv_key(&head) {
                        if tombstone {
                            live.remove(key);
                        } else {
                            live.insert(key.to_vec());
                        }
                    }
                }
                if bucket == b"meta" && k == b"storageVersion" {
                    version = Some(String::from_utf8_lossy(&v.whole()?).into_owned());
                }
                if bucket == b"cluster" && k == b"clusterVersion" {
                    cluster_minor = crate::version::minor_of(&String::from_utf8_lossy(&v.whole()?));
                }
                total_key += 1;
            }
        }
        Ok(())
    })
    .map_err(bad)?;
    let hash = if with_hash { digest.finalize() } else { 0 };
    // etcdutl 3.6+ counts live keys, 3.5 every pair of every bucket. A 3.6+ cluster's snapshot
    // says so by its storage version, or, taken before the cluster wrote that (seconds after its
    // start), by its cluster version; etcdutl 3.6+ then prints an empty version (seen in CI: a
    // 3.7 snapshot with none)
    let line = version.as_deref().and_then(crate::version::minor_of).or(cluster_minor);
    if version.is_some() || cluster_minor >= Some(6) {
        total_key = live.len() as u64;
        version.get_or_insert_default();
    }
    Ok((SnapshotStatus { hash, revision, total_key, total_size: db.size(), version, line }, trailer))
}

/// How much of a `key` bucket value is read first: a Kubernetes key and its field header fit.
const KEY_HEAD: usize = 1024;

/// Where the key of an mvccpb.KeyValue ends when it is the value's first field, as etcd writes
/// it (fields in order): read from the field's header alone, so a longer key can be read whole.
fn kv_key_end(v: &[u8]) -> Option<usize> {
    let (tag, n) = varint(v)?;
    if tag != (1 << 3 | 2) {
        return None;
    }
    let (len, m) = varint(v.get(n..)?)?;
    (n + m).checked_add(usize::try_from(len).ok()?)
}

/// The key of an mvccpb.KeyValue (field 1, bytes), read without a protobuf library.
fn kv_key(v: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at < v.len() {
        let (tag, n) = varint(&v[at..])?;
        at += n;
        match tag & 7 {
            0 => at += varint(v.get(at..)?)?.1,
            2 => {
                let (len, n) = varint(v.get(at..)?)?;
                at += n;
                let end = at.checked_add(usize::try_from(len).ok()?)?;
                if tag >> 3 == 1 {
                    return v.get(at..end);
                }
                at = end;
            }
            _ => return None,
        }
    }
    None
}

/// A protobuf varint and its length in bytes.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The last 32 bytes must be the SHA-256 of the rest (streamed, bounded memory).
fn check_trailer(path: &Path, file: &File, data_len: u64) -> Result<()> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut left = data_len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(left as usize);
        reader.read_exact(&mut buf[..want]).map_err(|e| file_err(path, e.to_string()))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    let mut trailer = [0u8; 32];
    reader.read_exact(&mut trailer).map_err(|e| file_err(path, e.to_string()))?;
    if hasher.finalize()[..] != trailer {
        return Err(file_err(path, "corrupt: the SHA-256 trailer does not match the data (damaged or truncated)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::fixture::{Pairs, database};

    /// etcd's revision key (main, `_`, sub; a trailing `t` marks a deletion) and an
    /// mvccpb.KeyValue of `key` and `value` (fields 1 and 5).
    fn rev(main: u64, tombstone: bool) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }
    fn kv(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x0a, key.len() as u8];
        v.extend_from_slice(key);
        v.extend_from_slice(&[0x2a, value.len() as u8]);
        v.extend_from_slice(value);
        v
    }

    fn status_of(cluster: &[u8], storage: Option<&[u8]>) -> SnapshotStatus {
        let (r1, r2, r3) = (rev(1, false), rev(2, false), rev(3, true));
        let (a, b, gone) = (kv(b"/a", b"1"), kv(b"/b", b"2"), kv(b"/a", b""));
        let keys: Pairs = &[(&r1, &a), (&r2, &b), (&r3, &gone)];
        let versions: Pairs = &[(b"clusterVersion", cluster)];
        let mut buckets: Vec<(&[u8], Pairs)> = vec![(b"cluster", versions), (b"key", keys)];
        let meta: Vec<(&[u8], &[u8])> = storage.map(|s| vec![(&b"storageVersion"[..], s)]).unwrap_or_default();
        if storage.is_some() {
            buckets.push((b"meta", &meta));
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        std::fs::write(&p, database(&buckets)).unwrap();
        status(&p).unwrap().0
    }

    #[test]
    fn a_snapshot_is_shown_as_the_etcdutl_of_its_line_shows_it() {
        // 3.5: every pair of every bucket, no version
        let s = status_of(b"3.5.0", None);
        assert_eq!((s.revision, s.total_key, s.version.as_deref(), s.line), (3, 4, None, Some(5)));
        // 3.6+: live keys, the storage version
        let s = status_of(b"3.6.0", Some(b"3.6.0"));
        assert_eq!((s.total_key, s.version.as_deref(), s.line), (1, Some("3.6.0"), Some(6)));
        // 3.7, taken before the member wrote its storage version: etcdutl 3.7 prints "version":""
        // and its own table style (seen in CI)
        let s = status_of(b"3.7.0", None);
        assert_eq!((s.total_key, s.version.as_deref(), s.line), (1, Some(""), Some(7)));
        let json = crate::render::snapshot_status(&s, crate::render::Format::Json).stdout;
        assert!(json.contains(r#""version":"""#), "{json}");
        let table = crate::render::snapshot_status(&s, crate::render::Format::Table).stdout;
        assert!(table.contains('│') || table.contains('┃') || table.contains('║'), "the 3.7 table style: {table}");
    }
}
