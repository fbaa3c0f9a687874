//! A cache of file content hashes, one file per build context, so that re-checking an
//! unchanged context reads no file contents. An entry is trusted only while the file's size,
//! modification and change times, inode and device are what they were; entries for files
//! changed less than a timestamp tick before they were hashed are never stored (the "racy
//! clean" problem git's index solves the same way), so an edit within the same tick as a check
//! is never missed.
//!
//! The file holds the entries in the order the walk visits the files, in a binary layout that
//! is read as it is: loading is one read, and a lookup compares the entry at a cursor with the
//! file the walk is at. Only when the walk and the cache disagree (a file added, removed or
//! renamed) is an index of the remaining entries built. An unchanged context thus costs one
//! comparison per file, and writing back happens only when the bytes would differ. The file
//! ends with a checksum of everything before it: a damaged file (a bit changed on disk) is
//! discarded as a whole, so it can neither hide a change nor put a wrong hash in a digest.
//! The checksum guards against damage, not against an attacker (who could write the whole
//! file, which is this tool's own state): a 64-bit multiply-rotate hash, which a warm check
//! computes over every entry at a small part of sha256's cost.

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::base::Sha;

/// How recent a change must not be for its hash to be cached: wider than any file system's
/// timestamp granularity that Docker contexts live on.
const RACY_NS: i128 = 2_000_000_000;

/// The first bytes of a cache file; another version is read as an empty cache.
const MAGIC: &[u8] = b"ai-infra hash cache v4\n";

/// The checksum that ends the file, of the bytes before it.
const CHECKSUM: usize = 8;

/// Each 8-byte word (the last one padded with zeros) mixed in by a step that is a bijection of
/// the state for a given word and of the word for a given state, so a change confined to one
/// word always changes the result; the length and a final avalanche close it.
pub fn checksum(data: &[u8]) -> [u8; CHECKSUM] {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w.try_into().unwrap_or_default())).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^= data.len() as u64;
    // splitmix64's finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)).to_le_bytes()
}

/// One entry: path length (u32), size (u64), mtime and ctime in ns (i64: a time outside
/// 1677 to 2262 is not cached), inode and device (u64), all little-endian, the sha256's 32
/// bytes, then the path.
const FIXED: usize = 4 + 8 + 8 + 8 + 8 + 8 + 32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// One entry as it lies in the file.
struct Entry<'a> {
    path: &'a str,
    key: FileKey,
    sha256: Sha,
    /// Where the next entry starts.
    next: usize,
}

/// The entry at `at` as bytes: its fixed part, its path, and where the next entry starts;
/// None at the end or where the bytes are not a whole entry.
fn raw_at(data: &[u8], at: usize) -> Option<(&[u8], &[u8], usize)> {
    let fixed = data.get(at..at.checked_add(FIXED)?)?;
    let len = u32::from_le_bytes(fixed[0..4].try_into().unwrap_or_default()) as usize;
    let start = at + FIXED;
    let path = data.get(start..start.checked_add(len)?)?;
    Some((fixed, path, start + len))
}

/// An entry from its fixed part and its path.
fn entry_of<'a>(fixed: &[u8], path: &'a str, next: usize) -> Entry<'a> {
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or_default());
    let i64_at = |i: usize| u64_at(i) as i64 as i128;
    let key = FileKey { size: u64_at(4), mtime_ns: i64_at(12), ctime_ns: i64_at(20), ino: u64_at(28), dev: u64_at(36) };
    Entry { path, key, sha256: Sha::of(&fixed[44..FIXED]), next }
}

/// Reads the entry at `at`; None at the end or where the bytes are not a whole, valid entry.
fn entry_at(data: &[u8], at: usize) -> Option<Entry<'_>> {
    let (fixed, path, next) = raw_at(data, at)?;
    Some(entry_of(fixed, std::str::from_utf8(path).ok()?, next))
}

/// Appends an entry; false (nothing written) where a time does not fit the layout.
fn push_entry(out: &mut Vec<u8>, path: &str, key: &FileKey, sha256: &Sha) -> bool {
    let (Ok(mtime), Ok(ctime)) = (i64::try_from(key.mtime_ns), i64::try_from(key.ctime_ns)) else { return false };
    let Ok(len) = u32::try_from(path.len()) else { return false };
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&key.size.to_le_bytes());
    out.extend_from_slice(&mtime.to_le_bytes());
    out.extend_from_slice(&ctime.to_le_bytes());
    out.extend_from_slice(&key.ino.to_le_bytes());
    out.extend_from_slice(&key.dev.to_le_bytes());
    out.extend_from_slice(&sha256.bytes());
    out.extend_from_slice(path.as_bytes());
    true
}

pub struct HashCache {
    path: Option<Utf8PathBuf>,
    /// The file's bytes, magic included; what a save would write, once `replace` ran.
    data: Vec<u8>,
    /// Where the entry the walk most likely asks for next starts.
    cursor: Cell<usize>,
    /// Path to entry offset, built at the first lookup the cursor cannot answer.
    index: OnceCell<HashMap<String, usize>>,
    /// Lookups answered at the cursor with a matching key, while no other kind happened: when
    /// they cover every entry, the walk found exactly the cached files and `replace` has
    /// nothing to do.
    in_order: Cell<Option<usize>>,
    /// When this run started: changes after `started - RACY_NS` are too recent to cache.
    started_ns: i128,
    dirty: bool,
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

impl HashCache {
    pub fn in_memory() -> HashCache {
        HashCache {
            path: None,
            data: MAGIC.to_vec(),
            cursor: Cell::new(MAGIC.len()),
            index: OnceCell::new(),
            in_order: Cell::new(Some(0)),
            started_ns: now_ns(),
            dirty: false,
        }
    }

    /// A cache whose run started at `started_ns`, so that tests need not wait out the racy
    /// window for files they just wrote.
    #[cfg(test)]
    pub fn started_at(mut self, started_ns: i128) -> HashCache {
        self.started_ns = started_ns;
        self
    }

    /// Loads the cache file; a missing, unreadable, foreign or damaged one (its checksum
    /// does not match) is an empty cache (it only saves work), and is written anew.
    pub fn load(path: &Utf8Path) -> HashCache {
        let mut cache = HashCache::in_memory();
        cache.path = Some(path.to_path_buf());
        if let Ok(mut data) = std::fs::read(path) {
            let body = data.len().saturating_sub(CHECKSUM);
            if data.starts_with(MAGIC) && body >= MAGIC.len() && data[body..] == checksum(&data[..body]) {
                data.truncate(body);
                cache.data = data;
            }
        }
        cache
    }

    /// The cached hash of the file at `path` (relative to the context), if its key still
    /// matches. Cheapest when asked in the order of the last walk.
    pub fn lookup(&self, path: &str, key: &FileKey) -> Option<Sha> {
        // The path at the cursor is compared as bytes first: equal to `path`, it is UTF-8.
        let (found, at_cursor) = match raw_at(&self.data, self.cursor.get()) {
            Some((fixed, p, next)) if p == path.as_bytes() => (Some(entry_of(fixed, path, next)), true),
            _ => (self.index().get(path).and_then(|at| entry_at(&self.data, *at)), false),
        };
        let hit = found.as_ref().is_some_and(|e| e.key == *key);
        self.in_order.set(self.in_order.get().filter(|_| at_cursor && hit).map(|n| n + 1));
        let found = found?;
        self.cursor.set(found.next);
        hit.then_some(found.sha256)
    }

    fn index(&self) -> &HashMap<String, usize> {
        self.index.get_or_init(|| {
            let mut index = HashMap::new();
            let mut at = MAGIC.len();
            while let Some(e) = entry_at(&self.data, at) {
                index.insert(e.path.to_string(), at);
                at = e.next;
            }
            index
        })
    }

    /// Replaces the entries with exactly these files (all a walk found, in its order), so that
    /// files that are gone leave the cache. Hashes of files changed too recently to be sure
    /// that the content read matches the key are left out.
    pub fn replace<'a>(&mut self, files: impl ExactSizeIterator<Item = (&'a str, &'a FileKey, Option<&'a Sha>)>) {
        // The common case: every file was asked for, in order, and found unchanged.
        if self.in_order.get() == Some(files.len()) && self.cursor.get() == self.data.len() {
            return;
        }
        let mut data = Vec::with_capacity(self.data.len().max(MAGIC.len()));
        data.extend_from_slice(MAGIC);
        for (path, key, sha256) in files {
            let newest = key.mtime_ns.max(key.ctime_ns);
            let Some(sha256) = sha256.filter(|_| newest <= self.started_ns - RACY_NS) else {
                continue;
            };
            push_entry(&mut data, path, key, sha256);
        }
        if data != self.data {
            self.data = data;
            self.dirty = true;
        }
        self.cursor.set(MAGIC.len());
        self.index = OnceCell::new();
        self.in_order.set(Some(0));
    }

    /// Writes the cache back when it changed.
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        // Before the cache had a file per context, it was one file where the folder now is.
        // That file is this tool's own state: replace it, or no cache could ever be written.
        if let Some(dir) = path.parent().filter(|d| d.is_file()) {
            let _ = std::fs::remove_file(dir);
        }
        let mut bytes = Vec::with_capacity(self.data.len() + CHECKSUM);
        bytes.extend_from_slice(&self.data);
        bytes.extend_from_slice(&checksum(&self.data));
        crate::base::atomic::write(path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: FileKey = FileKey { size: 3, mtime_ns: 1_000, ctime_ns: 1_000, ino: 7, dev: 1 };

    fn sha(c: char) -> Sha {
        Sha::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn trusted_only_while_the_key_matches_and_not_racy() {
        let dir = crate::testutil::TempDir::new("hashcache");
        let file = dir.path().join("cache");
        let mut c = HashCache::load(&file);
        let (a, b) = (sha('a'), sha('b'));
        // A change within the racy window is not cached.
        let fresh = FileKey { mtime_ns: now_ns(), ..OLD };
        c.replace([("x", &OLD, Some(&a)), ("y", &fresh, Some(&b))].into_iter());
        c.save().unwrap();
        let c = HashCache::load(&file);
        assert_eq!(c.lookup("x", &OLD), Some(a));
        assert_eq!(c.lookup("y", &fresh), None);
        for changed in [
            FileKey { ctime_ns: 2_000, ..OLD },
            FileKey { mtime_ns: 2_000, ..OLD },
            FileKey { size: 4, ..OLD },
            FileKey { ino: 8, ..OLD },
            FileKey { dev: 2, ..OLD },
        ] {
            assert_eq!(c.lookup("x", &changed), None, "{changed:?}");
        }
    }

    #[test]
    fn any_one_bit_of_damage_is_seen_and_far_times_are_not_cached() {
        let data: Vec<u8> = (0..=200u8).collect();
        let sum = checksum(&data);
        for bit in 0..data.len() * 8 {
            let mut bad = data.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(checksum(&bad), sum, "bit {bit}");
        }
        assert_ne!(checksum(&[data.as_slice(), &[0]].concat()), sum, "a zero byte more");
        let dir = crate::testutil::TempDir::new("hashcache");
        let file = dir.path().join("cache");
        let mut c = HashCache::load(&file);
        let far = FileKey { mtime_ns: i128::from(i64::MIN) - 1, ..OLD };
        c.replace([("x", &far, Some(&sha('a'))), ("y", &OLD, Some(&sha('b')))].into_iter());
        c.save().unwrap();
        let c = HashCache::load(&file);
        assert_eq!((c.lookup("x", &far), c.lookup("y", &OLD)), (None, Some(sha('b'))));
    }

    #[test]
    fn found_in_any_order_and_written_only_when_changed() {
        let dir = crate::testutil::TempDir::new("hashcache");
        let file = dir.path().join("cache");
        let shas: Vec<Sha> = ['a', 'b', 'c', 'd'].into_iter().map(sha).collect();
        let names = ["d1/f", "d1/g", "d2/f", "e"];
        let mut c = HashCache::load(&file);
        c.replace(names.iter().zip(&shas).map(|(n, s)| (*n, &OLD, Some(s))));
        c.save().unwrap();
        let mut c = HashCache::load(&file);
        // In the walk's order, out of it, with a file added before and one gone.
        assert_eq!(c.lookup("d1/f", &OLD), Some(shas[0]));
        assert_eq!(c.lookup("new", &OLD), None);
        assert_eq!(c.lookup("d2/f", &OLD), Some(shas[2]));
        assert_eq!(c.lookup("e", &OLD), Some(shas[3]));
        assert_eq!(c.lookup("d1/g", &OLD), Some(shas[1]));
        assert_eq!(c.lookup("gone", &OLD), None);
        // The same files again: nothing to write. Without one of them: written, and it is gone.
        c.replace(names.iter().zip(&shas).map(|(n, s)| (*n, &OLD, Some(s))));
        assert!(!c.dirty);
        c.replace(names.iter().zip(&shas).skip(1).map(|(n, s)| (*n, &OLD, Some(s))));
        assert!(c.dirty);
        c.save().unwrap();
        let c = HashCache::load(&file);
        assert_eq!(c.lookup("d1/f", &OLD), None);
        assert_eq!(c.lookup("e", &OLD), Some(shas[3]));
    }

    #[test]
    fn a_file_of_an_older_layout_in_the_way_is_replaced() {
        let dir = crate::testutil::TempDir::new("hashcache");
        std::fs::write(dir.path().join("hash-cache"), "ai-infra hash cache v1\n").unwrap();
        let file = dir.path().join("hash-cache").join("services%2Fx");
        let mut c = HashCache::load(&file);
        let a = sha('a');
        c.replace([("x", &OLD, Some(&a))].into_iter());
        c.save().unwrap();
        assert_eq!(HashCache::load(&file).lookup("x", &OLD), Some(a));
    }

    #[test]
    fn damaged_or_foreign_files_are_an_empty_cache() {
        let dir = crate::testutil::TempDir::new("hashcache");
        let file = dir.path().join("cache");
        // The previous layout, whole and with its sha256 checksum: another version.
        let mut v3 = b"ai-infra hash cache v3\n".to_vec();
        v3.extend_from_slice(&[0; 32]);
        let (a, b) = (sha('a'), sha('b'));
        let mut c = HashCache::load(&file);
        c.replace([("x", &OLD, Some(&a)), ("y", &OLD, Some(&b))].into_iter());
        c.save().unwrap();
        let whole = std::fs::read(&file).unwrap();
        assert_eq!(HashCache::load(&file).lookup("y", &OLD), Some(b));
        // One bit of a hash changed: the whole file is discarded, not trusted.
        let at = whole.len() - CHECKSUM - 1 - 32 + 10;
        let mut bad = whole.clone();
        bad[at] ^= 4;
        // One byte of a key, and a file cut short.
        let mut key = whole.clone();
        key[MAGIC.len() + 5] ^= 1;
        for damaged in [bad, key, whole[..whole.len() - 3].to_vec()] {
            std::fs::write(&file, &damaged).unwrap();
            let c = HashCache::load(&file);
            assert_eq!((c.lookup("x", &OLD), c.lookup("y", &OLD)), (None, None));
        }
        // A damaged file is written anew by the next walk.
        let mut c = HashCache::load(&file);
        c.replace([("x", &OLD, Some(&a)), ("y", &OLD, Some(&b))].into_iter());
        c.save().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), whole);
        for foreign in [&b"garbage"[..], b"ai-infra hash cache v2\naaaa 3 1000 1000 7 1 x\n", MAGIC, b"", &v3] {
            std::fs::write(&file, foreign).unwrap();
            assert_eq!(HashCache::load(&file).lookup("x", &OLD), None);
        }
    }
}
