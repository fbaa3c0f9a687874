//! The build context as Docker sends it: every directory, file and symlink below the context
//! folder that `.dockerignore` does not exclude, each with what the image can see of it (type,
//! permission bits, content hash or link target).

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::base::Sha;
use crate::repo::hashcache::{FileKey, HashCache};
use crate::repo::ignore::Ignore;
use crate::repo::reads::Want;

/// One entry of the context, as recorded in the input digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRecord {
    pub path: String,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    /// A folder and its permission bits (COPY keeps them).
    Dir {
        mode: u32,
    },
    /// A file, its permission bits (every one of `0o7777`: COPY keeps them all) and content.
    File {
        mode: u32,
        sha256: Sha,
    },
    Symlink(String),
    Special(String),
}

impl FileRecord {
    /// The canonical line of this entry in the files category of the digest.
    #[cfg(test)]
    pub fn line(&self) -> String {
        let mut s = String::new();
        self.write_line(&mut s);
        s
    }

    /// Appends the line to `out`: the digest of a large context hashes many lines, and this
    /// spares an allocation each. Every field is length-prefixed (`field`), so no file name
    /// (a newline or ` -> ` in it) can make two contexts read the same.
    pub fn write_line(&self, out: &mut String) {
        match &self.what {
            What::Dir { mode } => {
                out.push_str("dir ");
                octal_mode(out, *mode);
                field(out, &self.path);
            }
            What::File { mode, sha256 } => {
                out.push_str("file ");
                octal_mode(out, *mode);
                out.push_str(sha256.as_str());
                out.push(' ');
                field(out, &self.path);
            }
            What::Symlink(t) => {
                out.push_str("link ");
                field(out, &self.path);
                field(out, t);
            }
            What::Special(kind) => {
                field(out, kind);
                field(out, &self.path);
            }
        }
        out.push('\n');
    }
}

/// Permission bits as four octal digits and a space, as `{:04o} ` writes them (whose
/// formatting machinery cost more than the rest of a line).
fn octal_mode(out: &mut String, mode: u32) {
    for shift in [9, 6, 3, 0] {
        out.push(char::from(b'0' + ((mode >> shift) & 7) as u8));
    }
    out.push(' ');
}

/// One field of a digest line: its length in bytes, `:`, the bytes, then `,`; read back
/// unambiguously whatever the bytes are.
pub fn field(out: &mut String, s: &str) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = s.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
    out.push(':');
    out.push_str(s);
    out.push(',');
}

/// Reads the first of the engine's ignore files (`names`: `.dockerignore`; under Podman,
/// `.containerignore` first) that a context has. A Dockerfile-specific ignore file is
/// refused: BuildKit reads it and the legacy builder does not, so the context would depend
/// on the builder.
pub fn read_ignore(root: &Utf8Path, context: &Utf8Path, dockerfile: &Utf8Path, names: &[&str]) -> Result<Ignore> {
    let specific = Utf8PathBuf::from(format!("{dockerfile}.dockerignore"));
    if root.join(&specific).exists() {
        bail!("{specific}: BuildKit reads this file and the legacy builder ignores it; move its patterns into {context}/.dockerignore");
    }
    for name in names {
        let path = context.join(name);
        match std::fs::read(root.join(&path)) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{path} is not UTF-8 text"))?;
                return Ignore::parse(&text).with_context(|| format!("{path}"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        }
    }
    Ok(Ignore::default())
}

/// What the builders read through symbolic links: a COPY, ADD or bind-mount source that is a
/// link, or that passes through one, is followed to what it points to (an absolute target
/// starts at the context's top, as both builders scope links to the context); a link found
/// below a copied folder is copied as a link. Returns a read of each target reached that way,
/// so that its content counts too. A wildcard is matched against the folder's names, as the
/// builders expand it. A target whose name holds a wildcard character counts the whole context.
/// `generated` are the files a run writes before it builds (paths relative to the context, as
/// their writes land): a link to one of them that does not exist yet reads it all the same.
pub fn followed_links(
    root: &Utf8Path,
    context: &Utf8Path,
    reads: &[crate::repo::dockerfile::Read],
    generated: &[&str],
) -> Vec<crate::repo::dockerfile::Read> {
    let top = root.join(context);
    let mut out = Vec::new();
    for r in reads.iter().filter(|r| r.source != ".") {
        let parts: Vec<String> = r.source.split('/').map(str::to_string).collect();
        let mut targets = Vec::new();
        let at = At { top: &top, generated };
        at.follow(String::new(), &parts, false, 0, &mut targets);
        for t in targets {
            let source = if t.is_empty() || t.contains(crate::repo::reads::WILDCARDS) { ".".to_string() } else { t };
            if source != r.source
                && !out.iter().chain(reads).any(|o: &crate::repo::dockerfile::Read| o.source == source)
            {
                out.push(crate::repo::dockerfile::Read { source, ..r.clone() });
            }
        }
    }
    out
}

/// The context a link is followed in, with the files a run will have written by the build.
struct At<'a> {
    top: &'a Utf8Path,
    generated: &'a [&'a str],
}

impl At<'_> {
    /// Resolves `rest` below the real (link-free) folder `at` of the context; pushes the real
    /// path of what it names when a link was passed on the way (`followed`).
    fn follow(&self, at: String, rest: &[String], followed: bool, hops: usize, out: &mut Vec<String>) {
        // Linux gives up after 40 links; so do the builders.
        if hops > 40 {
            return;
        }
        let Some((name, rest)) = rest.split_first() else {
            if followed {
                out.push(at);
            }
            return;
        };
        let join = |name: &str| if at.is_empty() { name.to_string() } else { format!("{at}/{name}") };
        let names: Vec<String> = if name.contains(crate::repo::reads::WILDCARDS) {
            let Ok(pattern) = crate::repo::ignore::Pattern::new(name) else { return };
            let Ok(entries) = std::fs::read_dir(self.top.join(&at)) else { return };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| pattern.matches_or_parent(n))
                .collect();
            names.sort();
            names
        } else {
            vec![name.clone()]
        };
        for name in names {
            let path = join(&name);
            let Ok(meta) = std::fs::symlink_metadata(self.top.join(&path)) else {
                // Not there yet, but written before the build: a file, or a folder on its way.
                let below = |g: &&str| g.strip_prefix(path.as_str()).is_some_and(|r| r.starts_with('/'));
                if self.generated.contains(&path.as_str()) || self.generated.iter().any(below) {
                    self.follow(path, rest, followed, hops, out);
                }
                continue;
            };
            if meta.file_type().is_symlink() {
                let Ok(target) = std::fs::read_link(self.top.join(&path)) else { continue };
                let target = target.to_string_lossy();
                let real = if target.starts_with('/') { target.to_string() } else { format!("/{at}/{target}") };
                let real = crate::repo::ignore::clean(&real);
                let mut parts: Vec<String> =
                    real.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).map(str::to_string).collect();
                parts.extend(rest.iter().cloned());
                self.follow(String::new(), &parts, true, hops + 1, out);
            } else if meta.is_dir() || rest.is_empty() {
                self.follow(path, rest, followed, hops, out);
            }
        }
    }
}

/// The tool's state folder (`target/`) relative to a context that holds it: never walked.
pub fn own_state(context: &Utf8Path) -> Option<String> {
    let context = context.as_str().trim_start_matches("./");
    if context.is_empty() || context == "." {
        return Some("target".to_string());
    }
    None
}

/// A file to hash, found by the walk.
struct Pending {
    index: usize,
    abs: Utf8PathBuf,
}

/// A context path the walk could not read (a name that is not UTF-8, a folder or file it may
/// not open): the builds that read it are ERROR, the others not concerned. `path` shows every
/// byte that is not UTF-8 as `\xNN`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub path: String,
    pub dir: bool,
    pub why: String,
}

/// A walked context: its records, some still waiting for their content hash.
pub struct Listing {
    records: Vec<FileRecord>,
    unreadable: Vec<Unreadable>,
    pending: Vec<Pending>,
    /// The identity of every file, by index into `records`.
    keys: Vec<(usize, FileKey)>,
    context: Utf8PathBuf,
}

/// Walks a context, taking hashes from `cache` where a file's identity (size, times, inode)
/// is unchanged. Reads no file contents.
/// `want` tells which paths the builds read: the others are neither recorded nor hashed, and
/// folders nothing is read from are not walked.
pub fn list(
    root: &Utf8Path,
    context: &Utf8Path,
    ignore: &Ignore,
    cache: &HashCache,
    want: &dyn Fn(&str, bool) -> Want,
) -> Result<Listing> {
    let abs = root.join(context);
    let meta = std::fs::metadata(&abs).with_context(|| format!("cannot read build context {context}"))?;
    if !meta.is_dir() {
        bail!("build context {context} is not a folder");
    }
    let mut listing = Listing {
        records: Vec::new(),
        unreadable: Vec::new(),
        pending: Vec::new(),
        keys: Vec::new(),
        context: context.to_path_buf(),
    };
    walk(&abs, "", ignore, context, cache, want, &mut listing)?;
    Ok(listing)
}

/// Each listing's records (sorted by path) and the paths it could not read.
pub type Finished = (Vec<Vec<FileRecord>>, Vec<Vec<Unreadable>>);

/// Hashes what the listings are missing, on every core, and makes each listing's cache hold
/// exactly its files. A file that cannot be read is left out of the records and named among
/// the listing's unreadable paths.
pub fn finish(mut listings: Vec<Listing>, caches: &mut [HashCache]) -> Result<Finished> {
    // Each file to hash, with where its hash goes: (listing, record).
    let (slots, pending): (Vec<_>, Vec<_>) = listings
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.pending.iter().map(move |p| ((i, p.index), (p, l.context.as_path()))))
        .unzip();
    let hashed = hash_all(&pending);
    let mut failed: Vec<Vec<usize>> = vec![Vec::new(); listings.len()];
    for ((i, index), sha) in slots.into_iter().zip(hashed) {
        match sha {
            Ok(sha) => {
                if let What::File { sha256, .. } = &mut listings[i].records[index].what {
                    *sha256 = sha;
                }
            }
            Err(e) => {
                let path = listings[i].records[index].path.clone();
                listings[i].unreadable.push(Unreadable { path, dir: false, why: format!("{e:#}") });
                failed[i].push(index);
            }
        }
    }
    let mut out = (Vec::new(), Vec::new());
    for (i, l) in listings.into_iter().enumerate() {
        let mut records = l.records;
        if let Some(cache) = caches.get_mut(i) {
            // Keys are taken of files only; anything else would be left out for its empty hash.
            cache.replace(l.keys.iter().map(|(index, key)| match &records[*index].what {
                What::File { sha256, .. } if !failed[i].contains(index) => {
                    (records[*index].path.as_str(), key, Some(sha256))
                }
                _ => ("", key, None),
            }));
        }
        for index in failed[i].iter().rev() {
            records.swap_remove(*index);
        }
        // Paths are unique, so an unstable sort by path is the full order, without a scratch copy.
        records.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        out.0.push(records);
        out.1.push(l.unreadable);
    }
    Ok(out)
}

/// Where a generated file that lands at `lands` (`render::lands`: absolute, links resolved)
/// sits in the context whose resolved path is `real_context`; None outside it. Resolved paths
/// on both sides: a context reached through a link (or under a linked `services/`) still
/// finds the files written into it.
pub fn landed_within(real_context: &Utf8Path, lands: &Utf8Path) -> Option<String> {
    lands.strip_prefix(real_context).ok().map(|p| p.to_string())
}

/// Puts generated files (path relative to the context, content) into a context's records, in
/// place of what is on disk, with the folders that lead to them.
pub fn overlay<'a>(
    records: &mut Vec<FileRecord>,
    ignore: &Ignore,
    files: impl Iterator<Item = (&'a str, &'a [u8], Option<u32>)>,
) {
    use sha2::Digest;
    let mut changed = false;
    // The umask is read from /proc, which costs more than the rest of a warm check's overlay:
    // only when a generated file is put in.
    let modes = std::cell::OnceCell::new();
    let modes =
        || *modes.get_or_init(|| (crate::base::atomic::new_file_mode(), crate::base::atomic::created_mode(0o777)));
    for (rel, bytes, new_mode) in files {
        if rel.is_empty() || ignore.excludes(rel) {
            continue;
        }
        // A file written over another keeps its mode; a new one gets the default, or the mode
        // the writer gives it (`.env.bak` takes `.env`'s).
        let mode = new_mode
            .or_else(|| {
                records.iter().find_map(|r| match r.what {
                    What::File { mode, .. } if r.path == rel => Some(mode),
                    _ => None,
                })
            })
            .unwrap_or_else(|| modes().0);
        records.retain(|r| r.path != rel);
        records.push(FileRecord {
            path: rel.to_string(),
            what: What::File { mode, sha256: Sha::of(&sha2::Sha256::digest(bytes)) },
        });
        for (i, _) in rel.match_indices('/') {
            let dir = &rel[..i];
            if !records.iter().any(|r| r.path == dir) && !ignore.excludes(dir) {
                records.push(FileRecord { path: dir.to_string(), what: What::Dir { mode: modes().1 } });
            }
        }
        changed = true;
    }
    if changed {
        records.sort();
    }
}

/// Lists one context and hashes its files.
#[cfg(test)]
pub fn records(root: &Utf8Path, context: &Utf8Path, ignore: &Ignore, cache: HashCache) -> Result<Vec<FileRecord>> {
    let listing = list(root, context, ignore, &cache, &|_, _| Want::Yes)?;
    Ok(finish(vec![listing], &mut [cache])?.0.remove(0))
}

/// Lists a folder of the context, and every folder below it, into `listing`.
///
/// Long because the walk is one loop over a stack of folders that uses the ignore rules, the hash
/// cache and the wanted paths at every entry.
fn walk(
    dir: &Utf8Path,
    rel: &str,
    ignore: &Ignore,
    context: &Utf8Path,
    cache: &HashCache,
    want: &dyn Fn(&str, bool) -> Want,
    listing: &mut Listing,
) -> Result<()> {
    let shown = |r: &str| if r.is_empty() { context.to_string() } else { format!("{context}/{r}") };
    let join = |name: &str| if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
    let mut entries = Vec::new();
    let folder = match std::fs::read_dir(dir) {
        // A folder below the context that cannot be listed concerns only the builds reading it.
        Err(e) if !rel.is_empty() => {
            let why =
                format!("cannot read folder {}: {e}: fix its permissions or exclude it in .dockerignore", shown(rel));
            listing.unreadable.push(Unreadable { path: rel.to_string(), dir: true, why });
            return Ok(());
        }
        folder => folder.with_context(|| format!("cannot read folder {}", shown(rel)))?,
    };
    for e in folder {
        let e = e.with_context(|| format!("cannot read folder {}", shown(rel)))?;
        match e.file_name().into_string() {
            Ok(name) => entries.push((name, e)),
            Err(name) => {
                let path = join(&escaped(name.as_encoded_bytes()));
                let dir = e.file_type().is_ok_and(|t| t.is_dir());
                if !ignore.excludes(&path) && want(&path, dir) != Want::No {
                    let why =
                        format!("{}: file name is not UTF-8: rename it (or exclude it in .dockerignore)", shown(&path));
                    listing.unreadable.push(Unreadable { path, dir, why });
                }
            }
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in entries {
        let name_len = name.len();
        let path = if rel.is_empty() {
            name
        } else {
            let mut p = String::with_capacity(rel.len() + 1 + name.len());
            p.push_str(rel);
            p.push('/');
            p.push_str(&name);
            p
        };
        let excluded = ignore.excludes(&path);
        // The type comes with the folder listing; only files need a stat, and it is made
        // relative to the open folder rather than by resolving the whole path again.
        let ft = entry.file_type().with_context(|| format!("cannot read {}", shown(&path)))?;
        let abs = || dir.join(&path[path.len() - name_len..]);
        if ft.is_dir() {
            // An excluded folder is walked only when an exception could re-include something.
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            let wanted = want(&path, true);
            if wanted == Want::No {
                continue;
            }
            if !excluded && wanted == Want::Yes {
                let meta = entry.metadata().with_context(|| format!("cannot read {}", shown(&path)))?;
                listing.records.push(FileRecord { path: path.clone(), what: What::Dir { mode: meta.mode() & 0o7777 } });
            }
            // What a build reads of a folder it reads whole is everything below: asked once
            // per folder, not once per file.
            let below: &dyn Fn(&str, bool) -> Want = if wanted == Want::Yes { &|_, _| Want::Yes } else { want };
            walk(&abs(), &path, ignore, context, cache, below, listing)?;
            continue;
        }
        if excluded || want(&path, false) != Want::Yes {
            continue;
        }
        let what = if ft.is_symlink() {
            let target = std::fs::read_link(abs()).with_context(|| format!("cannot read link {}", shown(&path)))?;
            What::Symlink(target.to_string_lossy().into_owned())
        } else if ft.is_file() {
            let meta = entry.metadata().with_context(|| format!("cannot read {}", shown(&path)))?;
            let key = FileKey::of(&meta);
            let mode = meta.mode() & 0o7777;
            listing.keys.push((listing.records.len(), key));
            match cache.lookup(&path, &key) {
                Some(sha) => What::File { mode, sha256: sha },
                None => {
                    // Filled in by `finish`.
                    listing.pending.push(Pending { index: listing.records.len(), abs: abs() });
                    What::File { mode, sha256: Sha::ZERO }
                }
            }
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() {
                "block-device"
            } else {
                "char-device"
            };
            What::Special(kind.to_string())
        };
        listing.records.push(FileRecord { path, what });
    }
    Ok(())
}

/// A name as bytes, its UTF-8 parts as they are and every other byte as `\xNN`.
fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Hashes files on every core, each with its own answer.
fn hash_all(pending: &[(&Pending, &Utf8Path)]) -> Vec<Result<Sha>> {
    if pending.is_empty() {
        return Vec::new();
    }
    let results = parallel(pending.len(), |i| {
        let (p, context) = pending[i];
        hash_file(&p.abs).with_context(|| {
            let rel =
                p.abs.strip_prefix(context).ok().or_else(|| p.abs.file_name().map(Utf8Path::new)).unwrap_or(&p.abs);
            format!("cannot read {rel}: fix its permissions or exclude it in .dockerignore")
        })
    });
    results
}

/// Runs `f(0..n)` on every core and returns the results in order.
pub fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    parallel_at_most(n, std::thread::available_parallelism().map_or(2, |c| c.get()), f)
}

/// Runs `f(0..n)` on at most `workers` threads and returns the results in order.
pub fn parallel_at_most<T: Send>(n: usize, workers: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = workers.min(n).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> = (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every index ran")).collect()
}

/// The sha256 of a file's content.
pub fn hash_file(path: &Utf8Path) -> Result<Sha> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Sha::of(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_reach_a_root_context() {
        let at = |context: &str| landed_within(context.into(), "/r/services/a/x".into());
        assert_eq!(at("/r").as_deref(), Some("services/a/x"));
        assert_eq!(at("/r/services").as_deref(), Some("a/x"));
        assert_eq!(at("/r/services/b"), None);
        assert_eq!(at("/r/services/a/x").as_deref(), Some(""));
        assert_eq!(landed_within("/r/services/a".into(), "/r/services/ab/x".into()), None, "whole names only");
        let mut recs = Vec::new();
        overlay(&mut recs, &Ignore::default(), [(".env", &b"A=1\n"[..], None)].into_iter());
        assert_eq!(recs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), [".env"]);
        overlay(&mut recs, &Ignore::default(), [(".env.bak", &b"A=0\n"[..], Some(0o600))].into_iter());
        assert!(recs.iter().any(|r| r.path == ".env.bak" && matches!(r.what, What::File { mode: 0o600, .. })));
    }

    #[test]
    fn lines_write_modes_and_lengths_as_format_would() {
        for mode in [0, 0o7, 0o644, 0o755, 0o4644, 0o7777, 0o100644] {
            let mut out = String::new();
            octal_mode(&mut out, mode);
            assert_eq!(out, format!("{:04o} ", mode & 0o7777));
        }
        for len in [0, 1, 9, 10, 99, 100, 12345] {
            let s = "x".repeat(len);
            let mut out = String::new();
            field(&mut out, &s);
            assert_eq!(out, format!("{len}:{s},"));
        }
    }

    #[test]
    fn no_file_name_can_pass_for_another_context() {
        let sha = |c: char| Sha::parse(&c.to_string().repeat(64)).unwrap();
        let file =
            |path: &str, c: char| FileRecord { path: path.into(), what: What::File { mode: 0o644, sha256: sha(c) } };
        let lines = |recs: &[FileRecord]| recs.iter().map(FileRecord::line).collect::<String>();
        // Two files against one whose name holds the second one's line, under the old layout.
        let two = [file("a", '1'), file("b", '2')];
        let forged = [file(&format!("a\nfile - {} b", "2".repeat(64)), '1')];
        assert_ne!(lines(&two), lines(&forged));
        let forged = [file(&format!("a,\nfile 0644 {} 1:b", "2".repeat(64)), '1')];
        assert_ne!(lines(&two), lines(&forged));
        // A link whose name holds the arrow.
        let link = |p: &str, t: &str| FileRecord { path: p.into(), what: What::Symlink(t.into()) };
        assert_ne!(lines(&[link("a -> b", "c")]), lines(&[link("a", "b -> c")]));
        assert_ne!(lines(&[link("a", "b,1:c")]), lines(&[link("a,1:b", "c")]));
    }

    #[test]
    fn sources_through_links_read_what_the_links_point_to() {
        // The layout of a probe built with both builders: each link given as a source (or on
        // its path) was copied as the file or folder it points to, an absolute target taken
        // from the context's top; a link inside a copied folder stayed a link.
        let dir = crate::testutil::TempDir::new("ctx-links");
        let ctx = dir.path();
        std::fs::create_dir_all(ctx.join("real/sub")).unwrap();
        std::fs::create_dir_all(ctx.join("d")).unwrap();
        for f in ["real/a.txt", "real/b.txt", "real/sub/c.txt", "plain.txt"] {
            std::fs::write(ctx.join(f), f).unwrap();
        }
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, ctx.join(at)).unwrap();
        link("real/a.txt", "top");
        link("real", "dlink");
        link("/real/b.txt", "abs");
        link("../real/a.txt", "d/inner");
        link("real/a.txt", "g1.lnk");
        link("../../..", "up");
        link("top", "chain");
        link("loop", "loop");
        let read =
            |source: &str| crate::repo::dockerfile::Read { line: 3, instruction: "COPY".into(), source: source.into() };
        let followed = |sources: &[&str]| -> Vec<String> {
            let reads: Vec<_> = sources.iter().map(|s| read(s)).collect();
            followed_links(Utf8Path::new("/"), ctx, &reads, &[]).into_iter().map(|r| r.source).collect()
        };
        assert_eq!(followed(&["top"]), ["real/a.txt"]);
        assert_eq!(followed(&["dlink"]), ["real"]);
        assert_eq!(followed(&["dlink/sub/c.txt"]), ["real/sub/c.txt"]);
        assert_eq!(followed(&["abs"]), ["real/b.txt"]);
        assert_eq!(followed(&["chain"]), ["real/a.txt"]);
        assert_eq!(followed(&["*.lnk"]), ["real/a.txt"]);
        assert_eq!(followed(&["up"]), ["."], "a link above the top is the top");
        // A folder copied whole keeps its links as links; a plain file, a missing one and a
        // loop read nothing more.
        assert!(followed(&["d", "plain.txt", "missing", "loop", "real"]).is_empty());
        // The extra read names the instruction that reads through the link.
        let extra = followed_links(Utf8Path::new("/"), ctx, &[read("top")], &[]);
        assert_eq!((extra[0].line, extra[0].instruction.as_str()), (3, "COPY"));
        // A link to a file the run writes before the build reads it, as it will be then.
        link("gen/out.conf", "to-gen");
        let reads = [read("to-gen")];
        assert!(followed_links(Utf8Path::new("/"), ctx, &reads, &[]).is_empty());
        let sources = |generated: &[&str]| -> Vec<String> {
            followed_links(Utf8Path::new("/"), ctx, &reads, generated).into_iter().map(|r| r.source).collect()
        };
        assert_eq!(sources(&["gen/out.conf"]), ["gen/out.conf"]);
        assert!(sources(&["gen/other.conf"]).is_empty(), "only the file the link names");
    }

    #[test]
    fn a_rendered_file_counts_with_the_mode_its_write_gives_it() {
        // Whatever the umask, the digest taken before `render` writes a new file must equal
        // the one taken after (else the image is STALE once, then OK, for nothing).
        // SAFETY: umask only swaps the process's mask; the first one is put back at the end.
        let before = unsafe { libc::umask(0o022) };
        for umask in [0o002, 0o027, 0o022] {
            // SAFETY: as above.
            unsafe { libc::umask(umask) };
            let dir = crate::testutil::TempDir::new("ctx-render-mode");
            let written = dir.path().join("c/new.conf");
            crate::base::atomic::write(&written, b"x").unwrap();
            let on_disk = std::fs::metadata(&written).unwrap().mode() & 0o7777;
            let mut recs = Vec::new();
            overlay(&mut recs, &Ignore::default(), [("other.conf", &b"y"[..], None)].into_iter());
            let predicted = recs.iter().find_map(|r| match r.what {
                What::File { mode, .. } => Some(mode),
                _ => None,
            });
            assert_eq!(predicted, Some(on_disk), "umask {umask:03o}");
        }
        // SAFETY: as above.
        unsafe { libc::umask(before) };
    }

    #[test]
    fn unreadable_paths_are_clear_errors() {
        let dir = crate::testutil::TempDir::new("ctx-unreadable");
        assert!(hash_file(&dir.path().join("nope")).is_err());
        // Reading a folder as a file fails even for root.
        let p = Pending { index: 0, abs: dir.path().join("sub") };
        std::fs::create_dir(&p.abs).unwrap();
        let err = hash_all(&[(&p, dir.path())]).remove(0).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read sub: fix its permissions"), "{err:#}");
        // A name that is not UTF-8 and a file that cannot be read are the listing's unreadable
        // paths, where a build reads them; the rest is listed as usual.
        use std::os::unix::ffi::OsStrExt;
        let c = dir.path().join("c");
        std::fs::create_dir_all(c.join("in")).unwrap();
        std::fs::write(c.join("ok.txt"), "ok").unwrap();
        std::fs::write(c.join("in").as_std_path().join(std::ffi::OsStr::from_bytes(b"n\xffa\xfe.txt")), "x").unwrap();
        std::os::unix::fs::symlink(".", c.join("in/loop")).unwrap();
        let walk = |want: &dyn Fn(&str, bool) -> Want| {
            let listing = list(dir.path(), "c".into(), &Ignore::default(), &HashCache::in_memory(), want).unwrap();
            let (mut records, mut unreadable) = finish(vec![listing], &mut []).unwrap();
            let paths: Vec<String> = records.remove(0).into_iter().map(|r| r.path).collect();
            (paths, unreadable.remove(0))
        };
        let (paths, unreadable) = walk(&|_, _| Want::Yes);
        assert_eq!(paths, ["in", "in/loop", "ok.txt"]);
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].path, "in/n\\xffa\\xfe.txt");
        assert!(
            unreadable[0].why.contains("c/in/n\\xffa\\xfe.txt: file name is not UTF-8: rename it"),
            "{unreadable:?}"
        );
        let (paths, unreadable) = walk(&|p, _| if p == "ok.txt" { Want::Yes } else { Want::No });
        assert_eq!((paths, unreadable), (vec!["ok.txt".to_string()], vec![]));
        // A file that cannot be hashed (here a folder) is left out, with why.
        let listing = Listing {
            records: vec![FileRecord { path: "sub".into(), what: What::File { mode: 0, sha256: Sha::ZERO } }],
            unreadable: Vec::new(),
            pending: vec![p],
            keys: Vec::new(),
            context: dir.path().to_path_buf(),
        };
        let (records, unreadable) = finish(vec![listing], &mut []).unwrap();
        assert!(records[0].is_empty() && unreadable[0][0].path == "sub", "{unreadable:?}");
        assert!(unreadable[0][0].why.contains("cannot read sub: fix its permissions"), "{unreadable:?}");
    }

    #[test]
    fn hashes_are_64_lowercase_hex_digits() {
        use sha2::Digest;
        let a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
        let sha = Sha::of(&sha2::Sha256::digest(b"a"));
        assert_eq!((sha.as_str(), format!("{sha}"), format!("{sha:?}")), (a, a.to_string(), a.to_string()));
        assert_eq!(Sha::parse(a), Some(sha));
        for bad in [&a[1..], &a.to_uppercase(), &format!("{}g", &a[1..]), ""] {
            assert_eq!(Sha::parse(bad), None, "{bad}");
        }
        assert_eq!(Sha::of(&sha.bytes()), sha);
    }

    #[test]
    fn a_second_walk_reads_only_what_changed() {
        let dir = crate::testutil::TempDir::new("ctx-warm");
        let root = dir.path();
        let write = |p: &str, s: &str| {
            let f = root.join("c").join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, s).unwrap();
        };
        for p in ["a.txt", "b/x", "b/y", "b.txt", "d/e/f"] {
            write(p, p);
        }
        let ignore = Ignore::default();
        // As if the files were written long before this run: no racy window to wait out.
        let mut cache = [HashCache::in_memory().started_at(i128::MAX / 2)];
        let walk = |cache: &HashCache| {
            let listing = list(root, "c".into(), &ignore, cache, &|_, _| Want::Yes).unwrap();
            let mut read: Vec<String> =
                listing.pending.iter().map(|p| p.abs.strip_prefix(root.join("c")).unwrap().to_string()).collect();
            read.sort();
            (listing, read)
        };
        let (listing, read) = walk(&cache[0]);
        assert_eq!(read.len(), 5);
        let first = finish(vec![listing], &mut cache).unwrap();
        let (listing, read) = walk(&cache[0]);
        assert!(read.is_empty(), "a warm walk reads no file: {read:?}");
        assert_eq!(finish(vec![listing], &mut cache).unwrap(), first);
        // Same size, new content; a file added before the others and one removed.
        write("b/x", "B/X");
        write("0new", "n");
        std::fs::remove_file(root.join("c/b.txt")).unwrap();
        let (listing, read) = walk(&cache[0]);
        assert_eq!(read, ["0new", "b/x"]);
        let second = finish(vec![listing], &mut cache).unwrap();
        let lines: String = second.0[0].iter().map(|r| r.line()).collect();
        assert!(lines.contains(" 4:0new,\n") && !lines.contains("b.txt"), "{lines}");
        assert_ne!(second, first);
        let (_, read) = walk(&cache[0]);
        assert!(read.is_empty(), "{read:?}");
    }

    #[test]
    fn the_first_ignore_file_found_is_the_only_one_read() {
        let dir = crate::testutil::TempDir::new("ctx-ignore-files");
        let root = dir.path();
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("c/.dockerignore"), "*.tmp\n").unwrap();
        std::fs::write(root.join("c/.containerignore"), "*.log\n").unwrap();
        let docker = read_ignore(root, "c".into(), "c/Dockerfile".into(), &[".dockerignore"]).unwrap();
        assert!(docker.excludes("a.tmp") && !docker.excludes("a.log"));
        // Podman's builder reads .containerignore first, and then only that file.
        let podman = [".containerignore", ".dockerignore"];
        let ignore = read_ignore(root, "c".into(), "c/Dockerfile".into(), &podman).unwrap();
        assert!(ignore.excludes("a.log") && !ignore.excludes("a.tmp"));
        std::fs::remove_file(root.join("c/.containerignore")).unwrap();
        let ignore = read_ignore(root, "c".into(), "c/Dockerfile".into(), &podman).unwrap();
        assert!(ignore.excludes("a.tmp") && !ignore.excludes("a.log"));
    }

    #[test]
    fn lists_what_docker_sends() {
        let dir = crate::testutil::TempDir::new("ctx-list");
        let root = dir.path();
        let write = |p: &str, s: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, s).unwrap();
        };
        write("c/.dockerignore", "logs\n!logs/keep.log\n*.tmp\n");
        write("c/a.txt", "a");
        write("c/x.tmp", "x");
        write("c/logs/keep.log", "k");
        write("c/logs/drop.log", "d");
        write("c/sub/b.sh", "b");
        std::os::unix::fs::symlink("a.txt", root.join("c/link")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("c/loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("c/loop2")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &str, mode: u32| std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode));
        chmod("c/sub/b.sh", 0o755).unwrap();
        chmod("c/a.txt", 0o640).unwrap();
        chmod("c/logs/keep.log", 0o4644).unwrap();
        chmod("c/sub", 0o2750).unwrap();
        let ignore = read_ignore(root, "c".into(), "c/Dockerfile".into(), &[".dockerignore"]).unwrap();
        let recs = records(root, "c".into(), &ignore, HashCache::in_memory()).unwrap();
        let lines: String = recs.iter().map(|r| r.line()).collect();
        let sha_a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
        // Every permission bit COPY keeps, for files and folders.
        assert!(lines.contains(&format!("file 0640 {sha_a} 5:a.txt,\n")), "{lines}");
        assert!(lines.contains("file 4644 ") && lines.contains(" 13:logs/keep.log,\n"), "{lines}");
        assert!(!lines.contains("drop.log") && !lines.contains("x.tmp"), "{lines}");
        assert!(!lines.contains("4:logs,"), "an excluded folder is not itself sent: {lines}");
        assert!(lines.contains("link 4:link,5:a.txt,\n") && lines.contains("link 5:loop1,5:loop2,\n"), "{lines}");
        assert!(lines.contains("dir 2750 3:sub,\n") && lines.contains("file 0755 "), "{lines}");
        assert!(lines.contains(" 8:sub/b.sh,\n") && lines.contains(" 13:.dockerignore,\n"), "{lines}");

        // Generated content stands in for the file on disk, with its folders.
        let mut with = recs.clone();
        let gen = [("new/dir/gen.conf", &b"a"[..], None), ("a.txt", &b"b"[..], None)];
        overlay(&mut with, &ignore, gen.into_iter());
        let lines: String = with.iter().map(|r| r.line()).collect();
        // A new file and its folders get the modes the tool's writes give them; a file written
        // over keeps its mode.
        let (file, folder) = (crate::base::atomic::new_file_mode(), crate::base::atomic::created_mode(0o777));
        assert!(lines.contains(&format!("file {file:04o} {sha_a} 16:new/dir/gen.conf,\n")), "{lines}");
        assert!(lines.contains(&format!("dir {folder:04o} 3:new,\ndir {folder:04o} 7:new/dir,\n")), "{lines}");
        assert!(!lines.contains(&format!("{sha_a} 5:a.txt")) && lines.contains("file 0640 "), "{lines}");
        assert!(lines.contains(" 5:a.txt,\n"), "{lines}");

        std::fs::write(root.join("c/Dockerfile.dockerignore"), "x").unwrap();
        let err = read_ignore(root, "c".into(), "c/Dockerfile".into(), &[".dockerignore"]).unwrap_err().to_string();
        assert!(err.contains("legacy builder"), "{err}");
    }
}
