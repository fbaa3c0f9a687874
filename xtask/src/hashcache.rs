//! A cache of file content hashes, so that re-checking an unchanged context reads no file
//! contents. An entry is trusted only while the file's size, modification and change times,
//! inode and device are what they were; entries for files changed less than a timestamp tick
//! before they were hashed are never stored (the "racy clean" problem git's index solves the
//! same way), so an edit within the same tick as a check is never missed.

use std::collections::HashMap;
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

struct Entry {
    key: FileKey,
    sha256: String,
    used: bool,
}

pub struct HashCache {
    path: Option<Utf8PathBuf>,
    entries: HashMap<String, Entry>,
    /// When this run started: changes after `started - RACY_NS` are too recent to cache.
    started_ns: i128,
    pub hits: usize,
    pub misses: usize,
    dirty: bool,
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

impl HashCache {
    pub fn in_memory() -> HashCache {
        HashCache { path: None, entries: HashMap::new(), started_ns: now_ns(), hits: 0, misses: 0, dirty: false }
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
                (sha256.len() == 64).then_some((path, Entry { key, sha256, used: false }))
            })();
            if let Some((p, e)) = parsed {
                cache.entries.insert(p, e);
            }
        }
        cache
    }

    pub fn lookup(&mut self, path: &str, key: &FileKey) -> Option<String> {
        match self.entries.get_mut(path) {
            Some(e) if e.key == *key => {
                e.used = true;
                self.hits += 1;
                Some(e.sha256.clone())
            }
            _ => {
                self.misses += 1;
                None
            }
        }
    }

    /// Records a hash taken in this run, unless the file changed too recently to be sure that
    /// the content read matches the key.
    pub fn store(&mut self, path: &str, key: &FileKey, sha256: &str) {
        let newest = key.mtime_ns.max(key.ctime_ns);
        if newest > self.started_ns - RACY_NS || path.contains('\n') {
            self.entries.remove(path);
            return;
        }
        self.entries.insert(path.to_string(), Entry { key: *key, sha256: sha256.to_string(), used: true });
        self.dirty = true;
    }

    /// Writes the cache back. With `prune`, entries not used in this run are dropped (a run that
    /// looked at every context knows the rest are gone).
    pub fn save(&mut self, prune: bool) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if prune {
            let before = self.entries.len();
            self.entries.retain(|_, e| e.used);
            self.dirty |= before != self.entries.len();
        }
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
        c.store("/x", &old, &sha);
        // A change within the racy window is not cached.
        let fresh = FileKey { mtime_ns: now_ns(), ..old };
        c.store("/y", &fresh, &sha);
        c.save(false).unwrap();
        let mut c = HashCache::load(&file);
        assert_eq!(c.lookup("/x", &old), Some(sha.clone()));
        assert_eq!(c.lookup("/y", &fresh), None);
        assert_eq!(c.lookup("/x", &FileKey { ctime_ns: 2_000, ..old }), None);
        assert_eq!(c.lookup("/x", &FileKey { size: 4, ..old }), None);
        assert_eq!(c.lookup("/x", &FileKey { ino: 8, ..old }), None);
        assert_eq!((c.hits, c.misses), (1, 4));
        // Pruning keeps only what this run used.
        c.store("/z", &old, &sha);
        c.save(true).unwrap();
        let mut c = HashCache::load(&file);
        assert!(c.lookup("/x", &old).is_some() && c.lookup("/z", &old).is_some());
        std::fs::write(&file, "garbage").unwrap();
        assert!(HashCache::load(&file).entries.is_empty());
    }
}
