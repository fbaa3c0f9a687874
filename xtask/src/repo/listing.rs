//! Each build context's listing as last walked, kept for checks backed by a file watcher
//! (`cargo xtask watch`): where the watcher vouches that nothing a context's walk would see has
//! changed since the listings were saved, the saved records stand in for the walk, so a check
//! stats no file of that context.
//!
//! A listing is trusted only with everything it was walked under unchanged: its fingerprint
//! covers the context's path and resolved path, its `.dockerignore` as parsed, what its builds
//! read, and this program's own file (another build of the tool walks anew). The watcher's
//! token each listing holds at goes in a file of its own, written after the listings: a run
//! that ends between the two leaves an older token, which only makes the next check walk more.
//! One run at a time reads and writes them, under a lock; a run that finds it taken walks, and
//! saves nothing.
//!
//! A listing file: a magic line, the fingerprint (64 hex digits), then per record its kind (one
//! byte), mode (u32) and path (u32 length, then bytes), a file's 64-digit hash or a link's or
//! special file's text (u32 length, then bytes), all little-endian; a checksum of everything
//! before it ends the file, so a damaged one is walked anew rather than trusted.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::base::Sha;
use crate::repo::context::{FileRecord, What};
use crate::repo::ignore::Ignore;
use crate::repo::reads::{self, Reads, Want};

const MAGIC: &[u8] = b"ai-infra listing v1\n";

/// The saved listings of a root, locked for this run.
pub struct Saved {
    dir: Utf8PathBuf,
    _lock: std::fs::File,
}

impl Saved {
    /// The saved listings, or None where another run holds them (or the state folder cannot
    /// be made): this run then walks every context and saves nothing.
    pub fn open(root: &Utf8Path) -> Option<Saved> {
        let dir = crate::base::state_dir(root).join("listing");
        std::fs::create_dir_all(&dir).ok()?;
        let (lock, held) = crate::base::try_lock(&dir.join("lock")).ok()?;
        held.then_some(Saved { dir, _lock: lock })
    }

    /// The watcher's token each listing was last known to hold at, as its text, by name.
    pub fn tokens(&self) -> std::collections::BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join("tokens")).unwrap_or_default();
        text.lines().filter_map(|l| l.split_once('\t')).map(|(n, t)| (n.to_string(), t.to_string())).collect()
    }

    /// Records that the listings of `names` hold at `token`; written after the listings, and
    /// only for names whose listing was saved or confirmed by this run (another run's
    /// listings keep their own token).
    pub fn set_tokens(&self, names: &[String], token: &str) -> Result<()> {
        let mut all = self.tokens();
        // A name that would break its line is never given a token: its context is walked.
        for n in names.iter().filter(|n| !n.contains(['\t', '\n'])) {
            all.insert(n.clone(), token.to_string());
        }
        let text: String = all.iter().map(|(n, t)| format!("{n}\t{t}\n")).collect();
        crate::base::atomic::write(&self.dir.join("tokens"), text.as_bytes())
    }

    /// The saved records of `name`'s listing, when saved under this `fingerprint` and intact.
    pub fn load(&self, name: &str, fingerprint: &Sha) -> Option<Vec<FileRecord>> {
        decode(&std::fs::read(self.dir.join(name)).ok()?, fingerprint)
    }

    /// Saves `records` as `name`'s listing under `fingerprint`.
    pub fn save(&self, name: &str, fingerprint: &Sha, records: &[FileRecord]) -> Result<()> {
        crate::base::atomic::write(&self.dir.join(name), &encode(fingerprint, records))
    }
}

/// What a context's listing depends on besides the files themselves, as one hash: its path
/// and resolved path, its ignore patterns (in the dialect they are matched in), the reads of
/// every build on it, the folder its walk leaves out, and this program's own file.
pub fn fingerprint(
    context: &Utf8Path,
    real: &Utf8Path,
    ignore: &Ignore,
    reads: &[&[crate::repo::dockerfile::Read]],
    state: Option<&str>,
) -> Sha {
    use sha2::Digest;
    // Asked once per process, not once per context.
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let program = PROGRAM.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                format!("{} {} {} {} {}", m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
            })
            .unwrap_or_default()
    });
    let text = format!("{MAGIC:?}\n{program}\n{context:?}\n{real:?}\n{ignore:?}\n{reads:?}\n{state:?}\n");
    Sha::of(&sha2::Sha256::digest(text.as_bytes()))
}

/// Whether a change the watcher reports at `changed` (absolute, links resolved) may change the
/// listing of the context at `real` (its resolved path): a path above or at the context, or one
/// inside it that its walk would visit. The walk's own rules decide (`context::walk`): a folder
/// it skips (its state folder, one excluded with no exception below, one nothing is read from)
/// hides every change below it; where either reading of the last part (file or folder) would be
/// recorded or walked, the change counts.
pub fn affects(real: &Utf8Path, changed: &Utf8Path, ignore: &Ignore, reads: &[Reads], state: Option<&str>) -> bool {
    let Ok(rel) = changed.strip_prefix(real) else {
        // Outside the context, or one of the folders that lead to it.
        return real.starts_with(changed);
    };
    let rel = rel.as_str();
    if rel.is_empty() {
        return true;
    }
    let mut read_whole = false;
    for (i, _) in rel.match_indices('/') {
        let dir = &rel[..i];
        if state == Some(dir) || (ignore.excludes(dir) && !ignore.has_exceptions()) {
            return false;
        }
        if !read_whole {
            match reads::want_any(reads, dir, true) {
                Want::No => return false,
                Want::Yes => read_whole = true,
                _ => {}
            }
        }
    }
    if state == Some(rel) {
        return false;
    }
    let excluded = ignore.excludes(rel);
    let as_file = !excluded && (read_whole || reads::want_any(reads, rel, false) == Want::Yes);
    let as_folder =
        (!excluded || ignore.has_exceptions()) && (read_whole || reads::want_any(reads, rel, true) != Want::No);
    as_file || as_folder
}

fn encode(fingerprint: &Sha, records: &[FileRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 64 + records.len() * 120 + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(fingerprint.as_str().as_bytes());
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    for r in records {
        let (kind, mode) = match &r.what {
            What::Dir { mode } => (0u8, *mode),
            What::File { mode, .. } => (1, *mode),
            What::Symlink(_) => (2, 0),
            What::Special(_) => (3, 0),
        };
        out.push(kind);
        out.extend_from_slice(&mode.to_le_bytes());
        bytes(&mut out, r.path.as_bytes());
        match &r.what {
            What::Dir { .. } => {}
            What::File { sha256, .. } => out.extend_from_slice(sha256.as_str().as_bytes()),
            What::Symlink(t) | What::Special(t) => bytes(&mut out, t.as_bytes()),
        }
    }
    let sum = crate::repo::hashcache::checksum(&out);
    out.extend_from_slice(&sum);
    out
}

/// The bytes of a listing file, read from the front.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (part, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(part)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode(data: &[u8], fingerprint: &Sha) -> Option<Vec<FileRecord>> {
    let (body, sum) = data.split_at_checked(data.len().checked_sub(8)?)?;
    if crate::repo::hashcache::checksum(body) != sum {
        return None;
    }
    let mut c = Cursor(body.strip_prefix(MAGIC)?.strip_prefix(fingerprint.as_str().as_bytes())?);
    let mut records = Vec::new();
    while let Some(kind) = c.take(1) {
        let kind = kind[0];
        let mode = c.u32()?;
        let path = c.text()?;
        let what = match kind {
            0 => What::Dir { mode },
            1 => What::File { mode, sha256: Sha::parse(std::str::from_utf8(c.take(64)?).ok()?)? },
            2 => What::Symlink(c.text()?),
            3 => What::Special(c.text()?),
            _ => return None,
        };
        records.push(FileRecord { path, what });
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<FileRecord> {
        vec![
            FileRecord { path: "a".into(), what: What::Dir { mode: 0o755 } },
            FileRecord { path: "a/f\nnew line".into(), what: What::File { mode: 0o4644, sha256: Sha::of(&[7; 32]) } },
            FileRecord { path: "l".into(), what: What::Symlink("../x".into()) },
            FileRecord { path: "p".into(), what: What::Special("fifo".into()) },
        ]
    }

    #[test]
    fn a_listing_reads_back_as_saved_and_only_under_its_fingerprint() {
        let fp = Sha::of(&[1; 32]);
        let data = encode(&fp, &records());
        assert_eq!(decode(&data, &fp), Some(records()));
        assert_eq!(decode(&data, &Sha::of(&[2; 32])), None, "another fingerprint walks anew");
        assert_eq!(decode(&encode(&fp, &[]), &fp), Some(vec![]));
    }

    #[test]
    fn a_damaged_or_cut_listing_is_not_trusted() {
        let fp = Sha::of(&[1; 32]);
        let data = encode(&fp, &records());
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad, &fp), None, "byte {i} changed");
        }
        for n in 0..data.len() {
            assert_eq!(decode(&data[..n], &fp), None, "cut at {n}");
        }
    }

    #[test]
    fn everything_a_listing_depends_on_changes_its_fingerprint() {
        let read = |s: &str| crate::repo::dockerfile::Read { line: 2, instruction: "COPY".into(), source: s.into() };
        let (a, b) = (vec![read("a.txt")], vec![read("a.txt"), read("b.txt")]);
        let ignore = Ignore::parse("x\n").unwrap();
        let base = || fingerprint(Utf8Path::new("services/w"), Utf8Path::new("/r/services/w"), &ignore, &[&a], None);
        assert_eq!(base(), base(), "the same inputs, the same fingerprint");
        let others = [
            fingerprint(Utf8Path::new("services/v"), Utf8Path::new("/r/services/w"), &ignore, &[&a], None),
            fingerprint(Utf8Path::new("services/w"), Utf8Path::new("/r/elsewhere"), &ignore, &[&a], None),
            fingerprint(
                Utf8Path::new("services/w"),
                Utf8Path::new("/r/services/w"),
                &Ignore::parse("y\n").unwrap(),
                &[&a],
                None,
            ),
            fingerprint(Utf8Path::new("services/w"), Utf8Path::new("/r/services/w"), &ignore, &[&b], None),
            fingerprint(Utf8Path::new("services/w"), Utf8Path::new("/r/services/w"), &ignore, &[&a, &b], None),
            fingerprint(Utf8Path::new("services/w"), Utf8Path::new("/r/services/w"), &ignore, &[&a], Some("target")),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(*other, base(), "input {i} left the fingerprint as it was");
        }
    }

    fn reads(sources: &[&str]) -> Vec<Reads> {
        let reads: Vec<crate::repo::dockerfile::Read> = sources
            .iter()
            .map(|s| crate::repo::dockerfile::Read { line: 1, instruction: "COPY".into(), source: s.to_string() })
            .collect();
        vec![Reads::new(&reads)]
    }

    #[test]
    fn changes_count_where_the_walk_would_see_them() {
        let real = Utf8Path::new("/r");
        let ignore = Ignore::parse(".git\nsrc/*.log\n").unwrap();
        let r = reads(&["src", "libs/a.txt"]);
        let at = |p: &str| affects(real, Utf8Path::new(p), &ignore, &r, Some("target"));
        // Above or at the context: its folder itself may be gone or replaced.
        assert!(at("/"));
        assert!(at("/r"));
        assert!(!at("/elsewhere/src/x"));
        assert!(!at("/rr/src/x"), "a sibling whose name starts the same");
        // Read, or on the way to what is read.
        assert!(at("/r/src"));
        assert!(at("/r/src/deep/x.c"));
        assert!(at("/r/libs"), "a folder the walk enters");
        assert!(at("/r/libs/a.txt"));
        assert!(!at("/r/libs/b.txt"), "not read");
        assert!(!at("/r/docs/x.md"), "nothing below is read");
        // Left out by the walk.
        assert!(!at("/r/target/xtask/hash-cache/x"));
        assert!(!at("/r/target"));
        assert!(!at("/r/.git/index"));
        assert!(!at("/r/src/build.log"));
        // A whole-context read sees every path but the ignored ones.
        let whole = reads(&["."]);
        let at = |p: &str| affects(real, Utf8Path::new(p), &ignore, &whole, Some("target"));
        assert!(at("/r/docs/x.md"));
        assert!(!at("/r/.git/HEAD"));
        assert!(!at("/r/target/debug/x"));
        // An exception below an excluded folder makes the walk enter it.
        let with_exception = Ignore::parse("docs\n!docs/keep.md\n").unwrap();
        assert!(affects(real, Utf8Path::new("/r/docs/keep.md"), &with_exception, &whole, None));
    }
}
