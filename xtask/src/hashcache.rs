//! A cache of file content hashes, one file per build context, so that re-checking an
//! unchanged context reads no file contents. An entry is trusted only while the file's size, modification and change times,
//! inode and device are what they were; entries for files changed less than a timestamp tick
//! before they were hashed are never stored (the "racy clean" problem git's index solves the
//! same way), so an edit within the same tick as a check is never missed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

/// How recent a change must not be for its hash to be cached: wider than any file system's
/// timestamp granularity that Docker contexts live on.
const RACY_NS: i128 = 2_000_000_000;

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

/// FNV-1a: the cache's keys are short paths it made itself, so a keyed hasher buys nothing and
/// costs a tenth of a warm check.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

#[derive(PartialEq)]
struct Entry {
    key: FileKey,
    sha256: String,
}

pub struct HashCache {
    path: Option<Utf8PathBuf>,
    entries: HashMap<String, Entry, BuildHasherDefault<Fnv>>,
    /// When this run started: changes after `started - RACY_NS` are too recent to cache.
    started_ns: i128,
    dirty: bool,
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

impl HashCache {
    pub fn in_memory() -> HashCache {
        HashCache { path: None, entries: HashMap::default(), started_ns: now_ns(), dirty: false }
    }

    /// Loads the cache file; a missing or unreadable one is an empty cache (it only saves work).
    pub fn load(path: &Utf8Path) -> HashCache {
        let mut cache = HashCache::in_memory();
        cache.path = Some(path.to_path_buf());
        let Ok(text) = std::fs::read_to_string(path) else { return cache };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return cache;
        }
        for line in lines {
            let mut f = line.splitn(7, ' ');
            let parsed = (|| {
                let sha256 = f.next()?.to_string();
                let key = FileKey {
                    size: f.next()?.parse().ok()?,
                    mtime_ns: f.next()?.parse().ok()?,
                    ctime_ns: f.next()?.parse().ok()?,
                    ino: f.next()?.parse().ok()?,
                    dev: f.next()?.parse().ok()?,
                };
                let path = f.next()?.to_string();
                (sha256.len() == 64).then_some((path, Entry { key, sha256 }))
            })();
            if let Some((p, e)) = parsed {
                cache.entries.insert(p, e);
            }
        }
        cache
    }

    pub fn lookup(&self, path: &str, key: &FileKey) -> Option<&str> {
        self.entries.get(path).filter(|e| e.key == *key).map(|e| e.sha256.as_str())
    }

    /// Records a hash taken in this run, unless the file changed too recently to be sure that
    /// the content read matches the key.
    pub fn store(&mut self, path: &str, key: &FileKey, sha256: &str) {
        let newest = key.mtime_ns.max(key.ctime_ns);
        if newest > self.started_ns - RACY_NS || path.contains('\n') {
            self.dirty |= self.entries.remove(path).is_some();
            return;
        }
        let entry = Entry { key: *key, sha256: sha256.to_string() };
        if self.entries.get(path) != Some(&entry) {
            self.entries.insert(path.to_string(), entry);
            self.dirty = true;
        }
    }

    /// Replaces the entries with exactly these files (all a walk found), so that files that
    /// are gone leave the cache.
    pub fn replace<'a>(&mut self, files: impl Iterator<Item = (&'a str, &'a FileKey, &'a str)> + Clone) {
        // The common case, nothing changed, is checked without building anything.
        let mut count = 0;
        let same = files.clone().all(|(path, key, sha256)| {
            count += 1;
            self.entries.get(path).is_some_and(|e| e.key == *key && e.sha256 == sha256)
        });
        if same && count == self.entries.len() {
            return;
        }
        let mut old = std::mem::take(&mut self.entries);
        for (path, key, sha256) in files {
            if let Some(e) = old.remove(path) {
                self.entries.insert(path.to_string(), e);
            }
            self.store(path, key, sha256);
        }
        self.dirty |= !old.is_empty();
    }

    /// Writes the cache back when it changed.
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::with_capacity(self.entries.len() * 140);
        text.push_str(HEADER);
        text.push('\n');
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort();
        for p in paths {
            let e = &self.entries[p];
            let k = &e.key;
            text.push_str(&format!("{} {} {} {} {} {} {p}\n", e.sha256, k.size, k.mtime_ns, k.ctime_ns, k.ino, k.dev));
        }
        crate::atomic::write(path, text.as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

const HEADER: &str = "ai-infra hash cache v1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_only_while_the_key_matches_and_not_racy() {
        let dir = crate::testutil::TempDir::new("hashcache");
        let file = dir.path().join("cache");
        let mut c = HashCache::load(&file);
        let old = FileKey { size: 3, mtime_ns: 1_000, ctime_ns: 1_000, ino: 7, dev: 1 };
        let sha = "a".repeat(64);
        c.store("x", &old, &sha);
        // A change within the racy window is not cached.
        let fresh = FileKey { mtime_ns: now_ns(), ..old };
        c.store("y", &fresh, &sha);
        c.save().unwrap();
        let mut c = HashCache::load(&file);
        assert_eq!(c.lookup("x", &old), Some(sha.as_str()));
        assert_eq!(c.lookup("y", &fresh), None);
        assert_eq!(c.lookup("x", &FileKey { ctime_ns: 2_000, ..old }), None);
        assert_eq!(c.lookup("x", &FileKey { size: 4, ..old }), None);
        assert_eq!(c.lookup("x", &FileKey { ino: 8, ..old }), None);
        // Unchanged: nothing to write. A walk that no longer finds x drops it.
        c.replace([("x", &old, sha.as_str())].into_iter());
        assert!(!c.dirty);
        c.replace([("z", &old, sha.as_str())].into_iter());
        assert!(c.dirty);
        c.save().unwrap();
        let c = HashCache::load(&file);
        assert!(c.lookup("x", &old).is_none() && c.lookup("z", &old).is_some());
        std::fs::write(&file, "garbage").unwrap();
        assert!(HashCache::load(&file).entries.is_empty());
    }
}
