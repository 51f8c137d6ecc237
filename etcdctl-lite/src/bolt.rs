//! A read-only reader of etcd's backend file format (bbolt), enough for `snapshot status`: walk
//! every bucket's key/value pairs in order. Pages are read on demand (`pread`), and of a value
//! only as much as the caller asks (a key count reads a value's first bytes, not the 100 KB
//! behind them), so memory stays small and a walk reads a fraction of a large file. Every
//! offset, length and page id is checked against the file before it is used: a truncated or
//! corrupt file is an error, never a panic or a hang.
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

/// Called for each element of a tree: key, value (read on demand), whether it is a bucket.
type ElementFn<'a> = dyn FnMut(&[u8], Value<'_>, bool) -> Result<(), Corrupt> + 'a;
/// Called with a bucket's name (`None`), then with each of its pairs.
pub type PairFn<'a> = dyn FnMut(&[u8], Option<(&[u8], Value<'_>)>) -> Result<(), Corrupt> + 'a;

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

    /// Page `id` with its overflow pages: the first page read, the rest on demand.
    fn page(&self, id: u64) -> Result<Group<'_>, Corrupt> {
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
        let end = id
            .checked_add(overflow)
            .filter(|e| *e < self.meta.pgid)
            .ok_or_else(|| corrupt(format!("page {id}: {overflow} overflow pages run past the end")))?;
        let len = ((end - id + 1) * ps).min(self.len - id * ps) as usize;
        Ok(Group { id, file: Some((&self.file, id * ps)), head, len })
    }

    /// Calls `f(key, value, is_bucket)` for every element of the tree rooted at page `root` (or
    /// of `inline`, an inline bucket's page), in key order.
    fn walk(&self, root: u64, inline: Option<Vec<u8>>, depth: usize, f: &mut ElementFn) -> Result<(), Corrupt> {
        if depth > MAX_DEPTH {
            return Err(corrupt("the tree is deeper than any bbolt tree (a cycle?)"));
        }
        let is_inline = inline.is_some();
        let page = match inline {
            Some(bytes) => Group { id: root, file: None, len: bytes.len(), head: bytes },
            None => self.page(root)?,
        };
        let flags = u16_at(&page.head, 8).ok_or_else(|| corrupt("page header cut short"))?;
        let count = usize::from(u16_at(&page.head, 10).unwrap_or(0));
        let headers = page.bytes(HEADER, count * ELEMENT).map_err(|_| corrupt(format!("page {root}: {count} elements do not fit")))?;
        for i in 0..count {
            let e = &headers[i * ELEMENT..(i + 1) * ELEMENT];
            let at = HEADER + i * ELEMENT;
            let (a, b, c) = (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0), u32_at(e, 8).unwrap_or(0));
            if flags & BRANCH != 0 {
                // {pos, ksize, pgid}
                let child = u64_at(e, 8).unwrap_or(0);
                page.element(at, a, b)?;
                if is_inline {
                    return Err(corrupt("an inline bucket with a branch page"));
                }
                self.walk(child, None, depth + 1, f)?;
            } else if flags & LEAF != 0 {
                // {flags, pos, ksize, vsize}
                let vsize = u32_at(e, 12).unwrap_or(0);
                let key = page.bytes(page.element(at, b, c)?, c as usize)?;
                let value =
                    Value { group: &page, start: page.element(at, b.checked_add(c).ok_or_else(|| corrupt("element overflows"))?, vsize)?, len: vsize as usize };
                f(&key, value, a & BUCKET_LEAF != 0)?;
            } else {
                return Err(corrupt(format!("page {root}: neither branch nor leaf (flags {flags:#x})")));
            }
        }
        Ok(())
    }

    /// Every top-level bucket with its pairs: `f(bucket, key, value)`. A top-level key that is
    /// not a bucket is an error, as in etcd's `snapshot status`. A value is read only as far as
    /// `f` asks ([`Value::head`]): a file's structure is walked without reading its values.
    pub fn for_each(&self, f: &mut PairFn) -> Result<(), Corrupt> {
        self.walk(self.meta.root, None, 0, &mut |name, value, is_bucket| {
            if !is_bucket {
                return Err(corrupt(format!("top-level key {:?} is not a bucket", String::from_utf8_lossy(name))));
            }
            f(name, None)?;
            let header = value.whole()?;
            let root = u64_at(&header, 0).ok_or_else(|| corrupt("bucket header cut short"))?;
            let inline = if root == 0 { Some(header.get(16..).ok_or_else(|| corrupt("inline bucket cut short"))?.to_vec()) } else { None };
            self.walk(root, inline, 1, &mut |k, v, nested| f(name, Some((k, if nested { Value::empty() } else { v }))))
        })
    }
}

/// A page and its overflow pages (`len` bytes in all), of which `head` has been read.
struct Group<'a> {
    id: u64,
    /// The file and the group's offset in it; `None` for an inline bucket (all in `head`).
    file: Option<(&'a File, u64)>,
    head: Vec<u8>,
    len: usize,
}

impl Group<'_> {
    /// Where an element's data starts (`pos` counts from the element's header at `at`), checked
    /// to lie with its `len` bytes inside the group.
    fn element(&self, at: usize, pos: u32, len: u32) -> Result<usize, Corrupt> {
        let start = at.checked_add(pos as usize).ok_or_else(|| corrupt("element offset overflows"))?;
        let end = start.checked_add(len as usize).ok_or_else(|| corrupt("element length overflows"))?;
        if end > self.len {
            return Err(corrupt(format!("page {}: element data outside the page", self.id)));
        }
        Ok(start)
    }

    /// `len` bytes at `start` of the group: from the page read already, else read now.
    fn bytes(&self, start: usize, len: usize) -> Result<std::borrow::Cow<'_, [u8]>, Corrupt> {
        let end = start.checked_add(len).filter(|e| *e <= self.len).ok_or_else(|| corrupt(format!("page {}: data outside the page", self.id)))?;
        if let Some(b) = self.head.get(start..end) {
            return Ok(std::borrow::Cow::Borrowed(b));
        }
        let (file, offset) = self.file.ok_or_else(|| corrupt(format!("page {}: data outside the page", self.id)))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset + start as u64).map_err(|e| corrupt(format!("page {}: {e}", self.id)))?;
        Ok(std::borrow::Cow::Owned(buf))
    }
}

/// A value in the file, its bounds checked, its bytes read when asked for.
#[derive(Clone, Copy)]
pub struct Value<'a> {
    group: &'a Group<'a>,
    start: usize,
    len: usize,
}

static NO_GROUP: Group<'static> = Group { id: 0, file: None, head: Vec::new(), len: 0 };

impl<'a> Value<'a> {
    /// A nested bucket's value, as `snapshot status` sees it.
    fn empty() -> Value<'static> {
        Value { group: &NO_GROUP, start: 0, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes (all of them if fewer).
    pub fn head(&self, n: usize) -> Result<std::borrow::Cow<'a, [u8]>, Corrupt> {
        self.group.bytes(self.start, n.min(self.len))
    }

    pub fn whole(&self) -> Result<std::borrow::Cow<'a, [u8]>, Corrupt> {
        self.head(self.len)
    }
}

/// bbolt files built byte by byte, for tests here and in `snapshot_status`.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    pub const PS: usize = 4096;

    /// A leaf page (with overflow pages as needed) holding `elements` (flags, key, value).
    pub fn leaf(id: u64, elements: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER + elements.len() * ELEMENT];
        for (i, (flags, k, v)) in elements.iter().enumerate() {
            let at = HEADER + i * ELEMENT;
            let pos = (p.len() - at) as u32;
            for (o, x) in [(0, *flags), (4, pos), (8, k.len() as u32), (12, v.len() as u32)] {
                p[at + o..at + o + 4].copy_from_slice(&x.to_le_bytes());
            }
            p.extend_from_slice(k);
            p.extend_from_slice(v);
        }
        let pages = p.len().div_ceil(PS);
        p.resize(pages * PS, 0);
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&LEAF.to_le_bytes());
        p[10..12].copy_from_slice(&(elements.len() as u16).to_le_bytes());
        p[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        p
    }

    pub fn meta(id: u64, root: u64, pgid: u64) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&META.to_le_bytes());
        let mut m = vec![0u8; 64];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&(PS as u32).to_le_bytes());
        m[16..24].copy_from_slice(&root.to_le_bytes());
        m[40..48].copy_from_slice(&pgid.to_le_bytes());
        m[48..56].copy_from_slice(&(id + 1).to_le_bytes());
        let sum = fnv1a64(&m[..56]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        p[HEADER..HEADER + 64].copy_from_slice(&m);
        p
    }

    /// A bucket's key/value pairs.
    pub type Pairs<'a> = &'a [(&'a [u8], &'a [u8])];

    /// A database of top-level buckets (name, pairs), each on its own leaf page(s).
    pub fn database(buckets: &[(&[u8], Pairs<'_>)]) -> Vec<u8> {
        let mut pages = vec![];
        let mut next = 3u64;
        let mut headers = vec![];
        for (_, pairs) in buckets {
            let elements: Vec<(u32, &[u8], &[u8])> = pairs.iter().map(|(k, v)| (0, *k, *v)).collect();
            let p = leaf(next, &elements);
            let mut header = next.to_le_bytes().to_vec();
            header.extend_from_slice(&[0u8; 8]);
            headers.push(header);
            next += (p.len() / PS) as u64;
            pages.push(p);
        }
        let elements: Vec<(u32, &[u8], &[u8])> = buckets.iter().zip(&headers).map(|((name, _), h)| (BUCKET_LEAF, *name, h.as_slice())).collect();
        let root = leaf(2, &elements);
        assert_eq!(root.len(), PS, "the root fits one page");
        [meta(0, 2, next), meta(1, 2, next), root, pages.concat()].concat()
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

    use fixture::{PS, leaf, meta};

    /// A database with a bucket `key` (its own pages: a small value, then one spanning three
    /// pages) and an inline bucket `meta`.
    fn sample() -> (Vec<u8>, Vec<u8>) {
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let pairs = leaf(3, &[(0, b"a", b"small"), (0, b"b", &big)]);
        let mut inline_meta = vec![0u8; 16];
        inline_meta.extend_from_slice(&leaf(0, &[(0, b"storageVersion", b"3.7.0")])[..HEADER + ELEMENT + 19]);
        let mut key_bucket = 3u64.to_le_bytes().to_vec();
        key_bucket.extend_from_slice(&[0u8; 8]);
        let root = leaf(2, &[(BUCKET_LEAF, b"key", &key_bucket), (BUCKET_LEAF, b"meta", &inline_meta)]);
        let pgid = (2 + root.len() / PS + pairs.len() / PS) as u64;
        let file = [meta(0, 2, pgid), meta(1, 2, pgid), root, pairs].concat();
        (file, big)
    }

    fn open(bytes: &[u8]) -> (tempfile::TempDir, Result<Db, Corrupt>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        std::fs::write(&p, bytes).unwrap();
        let db = Db::open(File::open(&p).unwrap(), bytes.len() as u64);
        (d, db)
    }

    #[test]
    fn values_are_read_as_far_as_asked_across_overflow_pages() {
        let (file, big) = sample();
        let (_d, db) = open(&file);
        let db = db.unwrap();
        let mut seen = vec![];
        db.for_each(&mut |bucket, pair| {
            if let Some((k, v)) = pair {
                let head = v.head(3)?.into_owned();
                seen.push((String::from_utf8_lossy(bucket).into_owned(), k.to_vec(), v.len(), head, v.whole()?.into_owned()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], ("key".into(), b"a".to_vec(), 5, b"sma".to_vec(), b"small".to_vec()));
        assert_eq!((seen[1].1.as_slice(), seen[1].2, seen[1].3.as_slice()), (&b"b"[..], 10_000, &big[..3]));
        assert_eq!(seen[1].4, big, "a value spanning overflow pages reads whole");
        assert_eq!((seen[2].0.as_str(), seen[2].4.as_slice()), ("meta", &b"3.7.0"[..]));
    }

    #[test]
    fn a_value_said_to_run_past_its_pages_is_refused() {
        let (mut file, _) = sample();
        // the big value's vsize (page 3, second element) claims more than its three pages hold
        let at = 3 * PS + HEADER + ELEMENT + 12;
        file[at..at + 4].copy_from_slice(&20_000u32.to_le_bytes());
        let (_d, db) = open(&file);
        let err = db.unwrap().for_each(&mut |_, _| Ok(())).unwrap_err();
        assert!(err.0.contains("outside the page"), "{err:?}");
    }

    proptest::proptest! {
        #[test]
        fn no_damage_to_a_database_makes_the_reader_panic(flips in proptest::collection::vec((0usize..7 * PS, proptest::num::u8::ANY), 1..8)) {
            let (mut file, _) = sample();
            let n = file.len();
            for (at, byte) in flips {
                file[at % n] = byte;
            }
            let (_d, db) = open(&file);
            if let Ok(db) = db {
                let _ = db.for_each(&mut |_, pair| {
                    if let Some((_, v)) = pair {
                        v.head(1024)?;
                        v.whole()?;
                    }
                    Ok(())
                });
            }
        }
    }
}
