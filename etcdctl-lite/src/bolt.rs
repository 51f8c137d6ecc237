//! A read-only reader of etcd's backend file format (bbolt), enough for `snapshot status`: walk
//! every bucket's key/value pairs in order. Pages are read on demand (`pread`), so memory stays
//! small whatever the file's size, and every offset, length and page id is checked against the
//! file before it is used: a truncated or corrupt file is an error, never a panic or a hang.
//!
//! Layout (bbolt's `page.go`, `node.go`, `db.go`): pages of `page_size` bytes; a 16-byte page
//! header `{id u64, flags u16, count u16, overflow u32}`; pages 0 and 1 hold the two meta pages
//! (the valid one with the higher txid wins), whose root bucket points at a B+tree of branch
//! elements `{pos u32, ksize u32, pgid u64}` and leaf elements `{flags u32, pos u32, ksize u32,
//! vsize u32}`; a leaf element with flag 1 is a bucket `{root u64, sequence u64}`, inline (its
//! page follows in the value) when root is 0.

use std::fs::File;
use std::os::unix::fs::FileExt;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const BUCKET_LEAF: u32 = 0x01;
/// A B+tree deeper than this is a cycle or garbage (bbolt trees are a handful of levels deep).
const MAX_DEPTH: usize = 64;

/// Why the file is not a usable bbolt database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

fn corrupt(msg: impl Into<String>) -> Corrupt {
    Corrupt(msg.into())
}

/// Called for each element of a tree: key, value, whether it is a bucket.
type ElementFn<'a> = dyn FnMut(&[u8], &[u8], bool) -> Result<(), Corrupt> + 'a;
/// Called with a bucket's name (`None`), then with each of its pairs.
pub type PairFn<'a> = dyn FnMut(&[u8], Option<(&[u8], &[u8])>) -> Result<(), Corrupt> + 'a;

/// The meta page that was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub root: u64,
    /// High-water mark: pages in use; `pgid * page_size` is bbolt's `tx.Size()`.
    pub pgid: u64,
    pub txid: u64,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes)
}

/// FNV-1a, 64 bit: bbolt's meta checksum.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses and checks one meta page's bytes (header included).
fn parse_meta(page: &[u8]) -> Result<Meta, Corrupt> {
    let flags = u16_at(page, 8).ok_or_else(|| corrupt("meta page too short"))?;
    if flags & META == 0 {
        return Err(corrupt(format!("page is not a meta page (flags {flags:#x})")));
    }
    let m = page.get(HEADER..HEADER + 64).ok_or_else(|| corrupt("meta page too short"))?;
    let field = |o| u64_at(m, o).ok_or_else(|| corrupt("meta page too short"));
    if u32_at(m, 0) != Some(MAGIC) {
        return Err(corrupt("no bbolt magic number: not an etcd database or snapshot"));
    }
    if u32_at(m, 4) != Some(VERSION) {
        return Err(corrupt(format!("bbolt format version {:?}, expected {VERSION}", u32_at(m, 4))));
    }
    if field(56)? != fnv1a64(&m[..56]) {
        return Err(corrupt("meta page checksum mismatch"));
    }
    let page_size = u32_at(m, 8).unwrap_or(0);
    if !(512..=1 << 16).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(corrupt(format!("implausible page size {page_size}")));
    }
    Ok(Meta { page_size, root: field(16)?, pgid: field(40)?, txid: field(48)? })
}

/// A bbolt file opened for reading.
pub struct Db {
    file: File,
    len: u64,
    pub meta: Meta,
}

impl Db {
    /// Opens `file` of `len` bytes (the data part: a snapshot's 32-byte hash trailer excluded).
    pub fn open(file: File, len: u64) -> Result<Db, Corrupt> {
        let mut first = vec![0u8; 4096.min(len as usize)];
        file.read_exact_at(&mut first, 0).map_err(|e| corrupt(format!("cannot read the first page: {e}")))?;
        let meta0 = parse_meta(&first);
        // page 1 sits one page size in: take the size from page 0 if it parsed, else try the usual ones
        let sizes: Vec<u64> = match &meta0 {
            Ok(m) => vec![u64::from(m.page_size)],
            Err(_) => vec![4096, 8192, 16384, 65536],
        };
        let mut meta1 = Err(corrupt("second meta page unreadable"));
        for size in sizes {
            if size + 4096 > len && size + 128 > len {
                continue;
            }
            let mut buf = vec![0u8; (len - size).min(4096) as usize];
            if file.read_exact_at(&mut buf, size).is_ok() {
                meta1 = parse_meta(&buf);
                if meta1.is_ok() {
                    break;
                }
            }
        }
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid && b.page_size == a.page_size {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e),
        };
        let db = Db { file, len, meta };
        let needed = meta.pgid.checked_mul(u64::from(meta.page_size)).ok_or_else(|| corrupt("page count overflows"))?;
        if needed > len {
            return Err(corrupt(format!("truncated: the database claims {needed} bytes ({} pages), the file has {len}", meta.pgid)));
        }
        Ok(db)
    }

    /// bbolt's `tx.Size()`.
    pub fn size(&self) -> u64 {
        self.meta.pgid * u64::from(self.meta.page_size)
    }

    /// Reads page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, Corrupt> {
        if id < 2 || id >= self.meta.pgid {
            return Err(corrupt(format!("page id {id} outside 2..{}", self.meta.pgid)));
        }
        let ps = u64::from(self.meta.page_size);
        let mut head = vec![0u8; self.meta.page_size as usize];
        self.file.read_exact_at(&mut head, id * ps).map_err(|e| corrupt(format!("page {id}: {e}")))?;
        if u64_at(&head, 0) != Some(id) {
            return Err(corrupt(format!("page {id} says it is page {:?}", u64_at(&head, 0))));
        }
        let overflow = u64::from(u32_at(&head, 12).unwrap_or(0));
        if overflow == 0 {
            return Ok(head);
        }
        let end = id
            .checked_add(overflow)
            .filter(|e| *e < self.meta.pgid)
            .ok_or_else(|| corrupt(format!("page {id}: {overflow} overflow pages run past the end")))?;
        let total = ((end - id + 1) * ps).min(self.len - id * ps);
        let mut all = vec![0u8; total as usize];
        self.file.read_exact_at(&mut all, id * ps).map_err(|e| corrupt(format!("page {id}: {e}")))?;
        Ok(all)
    }

    /// Calls `f(key, value, is_bucket)` for every element of the tree rooted at page `root` (or
    /// of `inline`, an inline bucket's page), in key order.
    fn walk(&self, root: u64, inline: Option<&[u8]>, depth: usize, f: &mut ElementFn) -> Result<(), Corrupt> {
        if depth > MAX_DEPTH {
            return Err(corrupt("the tree is deeper than any bbolt tree (a cycle?)"));
        }
        let owned;
        let page: &[u8] = match inline {
            Some(p) => p,
            None => {
                owned = self.page(root)?;
                &owned
            }
        };
        let flags = u16_at(page, 8).ok_or_else(|| corrupt("page header cut short"))?;
        let count = usize::from(u16_at(page, 10).unwrap_or(0));
        let elements = HEADER + count * ELEMENT;
        if elements > page.len() {
            return Err(corrupt(format!("page {root}: {count} elements do not fit")));
        }
        let slice = |at: usize, pos: u32, len: u32| -> Result<&[u8], Corrupt> {
            let start = at.checked_add(pos as usize).ok_or_else(|| corrupt("element offset overflows"))?;
            let end = start.checked_add(len as usize).ok_or_else(|| corrupt("element length overflows"))?;
            page.get(start..end).ok_or_else(|| corrupt(format!("page {root}: element data outside the page")))
        };
        for i in 0..count {
            let at = HEADER + i * ELEMENT;
            let e = &page[at..at + ELEMENT];
            let (a, b, c) = (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0), u32_at(e, 8).unwrap_or(0));
            if flags & BRANCH != 0 {
                // {pos, ksize, pgid}
                let child = u64_at(e, 8).unwrap_or(0);
                slice(at, a, b)?;
                if inline.is_some() {
                    return Err(corrupt("an inline bucket with a branch page"));
                }
                self.walk(child, None, depth + 1, f)?;
            } else if flags & LEAF != 0 {
                // {flags, pos, ksize, vsize}
                let vsize = u32_at(e, 12).unwrap_or(0);
                let key = slice(at, b, c)?;
                let value = slice(at, b.checked_add(c).ok_or_else(|| corrupt("element overflows"))?, vsize)?;
                f(key, value, a & BUCKET_LEAF != 0)?;
            } else {
                return Err(corrupt(format!("page {root}: neither branch nor leaf (flags {flags:#x})")));
            }
        }
        Ok(())
    }

    /// Every top-level bucket with its pairs: `f(bucket, key, value)`. A top-level key that is
    /// not a bucket is an error, as in etcd's `snapshot status`.
    pub fn for_each(&self, f: &mut PairFn) -> Result<(), Corrupt> {
        self.walk(self.meta.root, None, 0, &mut |name, value, is_bucket| {
            if !is_bucket {
                return Err(corrupt(format!("top-level key {:?} is not a bucket", String::from_utf8_lossy(name))));
            }
            f(name, None)?;
            let root = u64_at(value, 0).ok_or_else(|| corrupt("bucket header cut short"))?;
            let inline = if root == 0 { Some(value.get(16..).ok_or_else(|| corrupt("inline bucket cut short"))?) } else { None };
            self.walk(root, inline, 1, &mut |k, v, nested| f(name, Some((k, if nested { &[] } else { v }))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for bytes in [vec![], vec![0u8; 10], vec![0xffu8; 8192], b"hello world".repeat(1000)] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("x.db");
            std::fs::write(&p, &bytes).unwrap();
            let f = File::open(&p).unwrap();
            assert!(Db::open(f, bytes.len() as u64).is_err());
        }
    }
}
