//! The opt-in file watcher (`cargo xtask watch`), as git's core.fsmonitor and watchman do: a
//! daemon that watches a root recursively with inotify and answers, over a unix socket, which
//! paths may have changed since a token it gave out; and `changes`, the client every
//! check-status calls, which falls back to "walk everything" whenever it cannot vouch.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The first words of every request and reply: the protocol and its version.
const PROTOCOL: &str = "ai-infra-watch 1";

/// How long a client waits for the watcher, connecting and reading included.
const CLIENT_BOUND: Duration = Duration::from_secs(1);

/// Changed paths kept before the oldest are dropped (tokens older than them then answer Unknown).
const LOG_BOUND: usize = 200_000;

/// A point in a watcher's history: `epoch` is new for every watcher start, `seq` counts the
/// changes it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub epoch: u64,
    pub seq: u64,
}

impl Token {
    /// One word, no spaces: `<epoch in hex>.<seq>`.
    pub fn to_text(&self) -> String {
        format!("{:x}.{}", self.epoch, self.seq)
    }

    pub fn parse(s: &str) -> Option<Token> {
        let (epoch, seq) = s.trim().split_once('.')?;
        let digits = |t: &str, hex: bool| {
            !t.is_empty() && t.chars().all(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() })
        };
        if !digits(epoch, true) || !digits(seq, false) {
            return None;
        }
        Some(Token { epoch: u64::from_str_radix(epoch, 16).ok()?, seq: seq.parse().ok()? })
    }
}

#[derive(Debug)]
pub enum Changes {
    /// Nothing can be vouched for since `since`: no watcher for this root, no `since`, another
    /// epoch, events lost (queue overflow, log trimmed, a watch that could not be added), the
    /// mount table changed, an unanswered/garbled reply. `now` is the current token when a
    /// watcher answered (the caller walks everything, then saves its listing with `now`).
    Unknown { now: Option<Token>, why: String },
    /// Every path that may differ between `since` and `now`: absolute, links resolved, under
    /// the watched root. A path means: this file or folder, or an entry directly in it, was
    /// created, removed, renamed (both old and new paths), written, or had its mode/owner/times
    /// changed. The caller treats a context as changed if any path is inside it, equal to it, or
    /// an ancestor of it.
    Since { now: Token, paths: Vec<Utf8PathBuf> },
}

/// The watcher's socket for a root (its real path).
pub fn socket(real_root: &Utf8Path) -> Utf8PathBuf {
    crate::world::engine::socket_dir("watch", real_root).join("watch.sock")
}

/// The argument that tells the watcher `watch up` started for this root from any other process.
pub fn marker(real_root: &Utf8Path) -> String {
    format!("ai-infra-watch={real_root}")
}

/// What a running watcher says about itself.
pub struct Status {
    pub pid: u32,
    pub folders: usize,
    pub files: usize,
    pub now: Token,
    /// Why it can vouch for nothing any more (a watch it could not add), if so.
    pub broken: Option<String>,
}

/// Never fails, never blocks more than ~1 s (connect + read timeouts); cheap: the coordinator
/// calls it on every check-status. `root` as the tool gets it (canonicalized here).
pub fn changes(root: &Utf8Path, since: Option<&Token>) -> Changes {
    let unknown = |now: Option<Token>, why: String| Changes::Unknown { now, why };
    let real = match root.canonicalize_utf8() {
        Ok(r) => r,
        Err(e) => return unknown(None, format!("cannot resolve {root}: {e}")),
    };
    let token = since.map_or_else(|| "-".to_string(), Token::to_text);
    let reply = match ask(&real, &format!("since {token} {real}")) {
        Ok(r) => r,
        Err(why) => return unknown(None, why),
    };
    let now = match reply.get("now").and_then(Token::parse) {
        Some(n) => n,
        None => return unknown(None, "the watcher's reply has no token: garbled".into()),
    };
    if let Some(why) = reply.get("unknown") {
        return unknown(Some(now), why.to_string());
    }
    if since.is_none() {
        return unknown(Some(now), "no token to compare with".into());
    }
    if reply.get("since").is_none() {
        return unknown(Some(now), "the watcher's reply says neither since nor unknown: garbled".into());
    }
    let mut paths = Vec::new();
    for p in reply.paths {
        let p = Utf8PathBuf::from(p);
        if !p.starts_with(&real) {
            return unknown(Some(now), format!("the watcher reported {p}, outside {real}: garbled"));
        }
        paths.push(p);
    }
    Changes::Since { now, paths }
}

/// The running watcher's own account, or None when none answers for this root.
pub fn status(root: &Utf8Path) -> Option<Status> {
    let real = root.canonicalize_utf8().ok()?;
    let reply = ask(&real, &format!("status {real}")).ok()?;
    let number = |k: &str| reply.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(Status {
        pid: number("pid")? as u32,
        folders: number("folders")? as usize,
        files: number("files")? as usize,
        now: reply.get("now").and_then(Token::parse)?,
        broken: reply.get("broken").map(str::to_string),
    })
}

/// A reply: its `key value` lines, and its `path` lines in order.
#[derive(Debug)]
struct Reply {
    fields: Vec<(String, String)>,
    paths: Vec<String>,
}

impl Reply {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Sends one request line to the watcher of `real_root` and reads its whole reply, within
/// `CLIENT_BOUND`; every failure is a reason to walk everything.
fn ask(real_root: &Utf8Path, request: &str) -> std::result::Result<Reply, String> {
    if real_root.as_str().contains('\n') {
        return Err(format!("{real_root:?} holds a line break: the watcher protocol cannot name it"));
    }
    let path = socket(real_root);
    let mut stream = UnixStream::connect(&path)
        .map_err(|e| format!("no watcher answers for {real_root} ({e}); `cargo xtask watch up` starts one"))?;
    let deadline = Instant::now() + CLIENT_BOUND;
    let _ = stream.set_write_timeout(Some(CLIENT_BOUND));
    stream
        .write_all(format!("{PROTOCOL} {request}\n").as_bytes())
        .map_err(|e| format!("the watcher did not take the request: {e}"))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the watcher did not answer within {} s", CLIENT_BOUND.as_secs()));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("the watcher's reply was cut short: {e}")),
        }
    }
    let text = String::from_utf8(text).map_err(|_| "the watcher's reply is not UTF-8: garbled".to_string())?;
    parse_reply(&text, real_root)
}

fn parse_reply(text: &str, real_root: &Utf8Path) -> std::result::Result<Reply, String> {
    let mut lines = text.split('\n');
    let head = lines.next().unwrap_or_default();
    let Some(root) = head.strip_prefix(PROTOCOL).and_then(|r| r.strip_prefix(" root ")) else {
        return Err(format!("the watcher's reply does not start with {PROTOCOL:?}: another version, or garbled"));
    };
    if root != real_root.as_str() {
        return Err(format!("the watcher on this socket watches {root}, not {real_root}"));
    }
    let mut reply = Reply { fields: Vec::new(), paths: Vec::new() };
    for line in lines {
        if line == "end" {
            return Ok(reply);
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        if k == "path" {
            reply.paths.push(v.to_string());
        } else {
            reply.fields.push((k.to_string(), v.to_string()));
        }
    }
    Err("the watcher's reply was cut short (no end line)".into())
}

// The daemon.

/// What every folder's watch reports.
const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

/// What every regular file's watch reports: a write through a hard link from outside the tree
/// is seen only there.
const FILE_MASK: u32 = libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_CLOSE_WRITE | libc::IN_DONT_FOLLOW;

/// The name of a network or FUSE file system by its statfs magic number, where inotify sees
/// only this machine's own changes.
pub fn remote_fs(f_type: i64) -> Option<&'static str> {
    Some(match f_type as u32 {
        0x6969 => "NFS",
        0x517B => "SMB",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x6573_5546 => "FUSE",
        0x0102_1997 => "9p",
        0x00C3_6400 => "Ceph",
        0x5346_414F | 0x6B41_4653 => "AFS",
        0x7375_7245 => "Coda",
        0x564C => "NCP",
        0x0116_1970 => "GFS2",
        0x0BD0_0BD0 => "Lustre",
        0x0102_1994 => "tmpfs",
        _ => return None,
    })
    .filter(|name| *name != "tmpfs")
}

/// One inotify watch: a folder or a regular file, and every path it is reached by.
struct Watch {
    paths: Vec<Utf8PathBuf>,
    dir: bool,
}

/// The watches of one inotify instance.
struct Tree {
    fd: OwnedFd,
    root_wd: i32,
    watches: HashMap<i32, Watch>,
    by_path: HashMap<Utf8PathBuf, i32>,
    /// Watches left with no path: removed by `prune` once the events queued with them are
    /// processed, unless a path of theirs was found again (one half of a move drops a path,
    /// the other finds the same inode at its new path and keeps its watch).
    orphans: Vec<i32>,
}

/// The path to report for `name` in a folder reported as `parent`: the folder itself when the
/// name cannot be written on one line of UTF-8 (an entry directly in it changed).
fn child(parent: &Utf8Path, name: &[u8]) -> Utf8PathBuf {
    match std::str::from_utf8(name) {
        Ok(n) if !n.contains('\n') && !n.is_empty() => parent.join(n),
        _ => parent.to_path_buf(),
    }
}

impl Tree {
    /// A new inotify instance watching `root` and everything below it but `root/target`.
    fn scan(root: &Utf8Path) -> Result<Tree> {
        // SAFETY: creates a file descriptor that `OwnedFd` then owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            bail!("cannot start inotify: {} (raise fs.inotify.max_user_instances)", std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut tree = Tree { fd, root_wd: -1, watches: HashMap::new(), by_path: HashMap::new(), orphans: Vec::new() };
        tree.add_tree(root.as_std_path(), root, root)?;
        tree.root_wd = tree.by_path.get(root).copied().context("the root could not be watched")?;
        Ok(tree)
    }

    fn folders(&self) -> usize {
        self.watches.values().filter(|w| w.dir).count()
    }

    fn add_watch(&mut self, fs: &Path, report: &Utf8Path, dir: bool) -> Result<Option<i32>> {
        let c = CString::new(fs.as_os_str().as_bytes()).context("a path holds a NUL byte")?;
        let mask = if dir { DIR_MASK } else { FILE_MASK };
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                // Gone or replaced before it could be watched: its parent's watch reports that.
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Ok(None),
                Some(libc::ENOSPC) => bail!(
                    "cannot watch {report}: the limit of inotify watches is reached; raise it (`sysctl fs.inotify.max_user_watches=1048576`) and run `cargo xtask watch up` again"
                ),
                _ => bail!("cannot watch {report}: {e}"),
            };
        }
        let w = self.watches.entry(wd).or_insert_with(|| Watch { paths: Vec::new(), dir });
        if !w.paths.iter().any(|p| p == report) {
            w.paths.push(report.to_path_buf());
        }
        self.by_path.insert(report.to_path_buf(), wd);
        Ok(Some(wd))
    }

    /// Watches the folder `fs` (reported as `report`) and everything below it, skipping
    /// `root/target`; refuses network and FUSE file systems.
    fn add_tree(&mut self, fs: &Path, report: &Utf8Path, root: &Utf8Path) -> Result<()> {
        let skip = root.join("target");
        let mut stack = vec![(fs.to_path_buf(), report.to_path_buf())];
        let mut last_dev = None;
        while let Some((dir, rep)) = stack.pop() {
            use std::os::unix::fs::MetadataExt;
            let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
            if last_dev != Some(meta.dev()) {
                last_dev = Some(meta.dev());
                check_local(&dir, &rep)?;
            }
            if self.add_watch(&dir, &rep, true)?.is_none() {
                continue;
            }
            // A folder whose entries cannot be listed could hold anything, unwatched.
            let gone = |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR));
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if gone(&e) => continue,
                Err(e) => bail!("cannot list {rep}: {e}; the watcher cannot vouch for what it holds"),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if gone(&e) => break,
                    Err(e) => bail!("cannot list {rep}: {e}; the watcher cannot vouch for what it holds"),
                };
                let Ok(kind) = entry.file_type() else { continue };
                let path = entry.path();
                let r = child(&rep, entry.file_name().as_bytes());
                if r == rep {
                    bail!(
                        "{:?} is a name that is not UTF-8 or holds a line break, which the watcher cannot report: rename or remove it, or use check-status without a watcher",
                        path
                    );
                }
                if kind.is_dir() && r != skip {
                    stack.push((path, r));
                } else if kind.is_file() {
                    self.add_watch(&path, &r, false)?;
                }
            }
        }
        Ok(())
    }

    /// Forgets every path at or below `old`, and the watches left with none.
    fn drop_tree(&mut self, old: &Utf8Path) {
        let gone: Vec<Utf8PathBuf> = self.by_path.keys().filter(|p| p.starts_with(old)).cloned().collect();
        for p in gone {
            self.forget(&p);
        }
    }

    /// Forgets one path; a watch reached by no path any more goes at the next `prune`.
    fn forget(&mut self, path: &Utf8Path) {
        let Some(wd) = self.by_path.remove(path) else { return };
        let Some(w) = self.watches.get_mut(&wd) else { return };
        w.paths.retain(|p| p != path);
        if w.paths.is_empty() {
            self.orphans.push(wd);
        }
    }

    /// Removes the watches that are reached by no path any more.
    fn prune(&mut self) {
        for wd in std::mem::take(&mut self.orphans) {
            if self.watches.get(&wd).is_some_and(|w| w.paths.is_empty()) {
                self.watches.remove(&wd);
                // SAFETY: removes a watch of this inotify instance; an error only means it is gone.
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            }
        }
    }

    /// Something at `path` was created, deleted, or moved from or to it: forgets every path at
    /// or below it, then watches whatever is there on disk now. Read from disk, not replayed
    /// from the events, so that it is right however the events are batched: a swap
    /// (renameat2 RENAME_EXCHANGE) leaves a folder or file at both of its paths, a folder moved
    /// out may have been made anew at its name already.
    fn rewatch(&mut self, path: &Utf8Path, root: &Utf8Path) -> Result<()> {
        self.drop_tree(path);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && path != root.join("target") => self.add_tree(path.as_std_path(), path, root),
            Ok(m) if m.is_file() => self.add_watch(path.as_std_path(), path, false).map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// Refuses a folder on a network or FUSE file system: inotify does not see other machines'
/// (or a FUSE server's own) changes there.
fn check_local(fs: &Path, report: &Utf8Path) -> Result<()> {
    let c = CString::new(fs.as_os_str().as_bytes()).context("a path holds a NUL byte")?;
    // SAFETY: statfs fills the zeroed struct it is given.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct of the right type.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(());
    }
    if let Some(name) = remote_fs(st.f_type as i64) {
        bail!("{report} is on a file system of type {name}, where inotify does not see every change: the watcher cannot vouch for it; use check-status without `watch up`");
    }
    Ok(())
}

/// The lines of a mount table whose mount point is the root, above it, or inside it (but not
/// in `root/target`): a mount anywhere else hides or reveals none of the root's files.
pub fn relevant_mounts(mountinfo: &str, root: &Utf8Path) -> String {
    let skip = root.join("target");
    let unescape = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    mountinfo
        .lines()
        .filter(|l| {
            let Some(point) = l.split(' ').nth(4) else { return true };
            let point = Utf8PathBuf::from(unescape(point));
            root.starts_with(&point) || (point.starts_with(root) && !point.starts_with(&skip))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn mounts(root: &Utf8Path) -> String {
    relevant_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(), root)
}

/// The daemon's state: the watches, and the log of changed paths by sequence number.
struct Watcher {
    root: Utf8PathBuf,
    tree: Tree,
    epoch: u64,
    seq: u64,
    /// Tokens before this answer Unknown, for `lost`.
    valid_from: u64,
    lost: String,
    /// Set when a watch could not be added: nothing can be vouched for from then on.
    broken: Option<String>,
    /// Each changed path once, at the last sequence number it changed at.
    log: BTreeMap<u64, Utf8PathBuf>,
    latest: HashMap<Utf8PathBuf, u64>,
    bound: usize,
    mounts: String,
    root_gone: bool,
    /// The root's device and inode: a root path that names another folder now (an ancestor
    /// was renamed, another folder made in its place) is not the tree watched.
    root_id: (u64, u64),
    buf: Vec<u8>,
    /// Why the tree must be watched afresh at the end of this drain, if it must.
    rescan: Option<String>,
}

impl Watcher {
    fn start(root: &Utf8Path) -> Result<Watcher> {
        use std::os::unix::fs::MetadataExt;
        let mounts = mounts(root);
        let meta = std::fs::metadata(root).with_context(|| format!("cannot read {root}"))?;
        let tree = Tree::scan(root)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let epoch = (u64::from(std::process::id()) << 32) ^ (nanos as u64);
        Ok(Watcher {
            root: root.to_path_buf(),
            tree,
            epoch,
            seq: 0,
            valid_from: 0,
            lost: String::new(),
            broken: None,
            log: BTreeMap::new(),
            latest: HashMap::new(),
            bound: LOG_BOUND,
            mounts,
            root_gone: false,
            root_id: (meta.dev(), meta.ino()),
            buf: vec![0u8; 256 * 1024],
            rescan: None,
        })
    }

    fn now(&self) -> Token {
        Token { epoch: self.epoch, seq: self.seq }
    }

    /// Every token given out so far answers Unknown, for `why`.
    fn lose(&mut self, why: String) {
        self.seq += 1;
        self.valid_from = self.seq;
        self.lost = why;
    }

    fn report(&mut self, path: Utf8PathBuf) {
        self.seq += 1;
        if let Some(old) = self.latest.insert(path.clone(), self.seq) {
            self.log.remove(&old);
        }
        self.log.insert(self.seq, path);
        if self.log.len() > self.bound {
            let mut last = 0;
            while self.log.len() > self.bound / 2 {
                let Some((seq, p)) = self.log.pop_first() else { break };
                self.latest.remove(&p);
                last = seq;
            }
            self.valid_from = self.valid_from.max(last);
            self.lost = format!("more than {} paths changed since then: the oldest were dropped", self.bound);
        }
    }

    /// Reads every queued event (until EAGAIN) and processes it.
    fn drain(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            // SAFETY: reads into a buffer of the given length.
            let n = unsafe { libc::read(self.tree.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if n == 0 {
                break;
            }
            let mut at = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while at + header <= n as usize {
                // SAFETY: the kernel wrote a whole event here; read unaligned from the buffer.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let name_end = (at + header + ev.len as usize).min(n as usize);
                let raw = &buf[at + header..name_end];
                let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                self.event(ev.wd, ev.mask, name);
                at = name_end;
            }
        }
        self.buf = buf;
        self.tree.prune();
        if let Some(why) = self.rescan.take() {
            self.watch_afresh(why);
        }
        use std::os::unix::fs::MetadataExt;
        let here = std::fs::metadata(&self.root).map(|m| (m.dev(), m.ino()));
        if here.ok() != Some(self.root_id) {
            self.root_gone = true;
        }
    }

    // long because: one arm per kind of inotify event, each short, kept together so that what
    // every event does is read in one place.
    fn event(&mut self, wd: i32, mask: u32, name: &[u8]) {
        // Lost events may have been folders that arrived and are not watched: the whole tree is
        // watched afresh once the queue is drained.
        if mask & libc::IN_Q_OVERFLOW != 0 {
            self.rescan =
                Some("events were lost (the inotify queue overflowed; raise fs.inotify.max_queued_events)".into());
            return;
        }
        if mask & libc::IN_UNMOUNT != 0 {
            self.rescan = Some("a file system under the root was unmounted".into());
            return;
        }
        let Some(w) = self.tree.watches.get(&wd) else { return };
        let (paths, dir) = (w.paths.clone(), w.dir);
        if mask & libc::IN_IGNORED != 0 {
            self.tree.watches.remove(&wd);
            for p in &paths {
                if self.tree.by_path.get(p) == Some(&wd) {
                    self.tree.by_path.remove(p);
                }
            }
            return;
        }
        if wd == self.tree.root_wd && mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            self.root_gone = true;
            return;
        }
        if name.is_empty() {
            for p in paths {
                self.report(p);
            }
            return;
        }
        if wd == self.tree.root_wd && name == b"target" {
            return;
        }
        let parents = paths.clone();
        for parent in &parents {
            let path = child(parent, name);
            self.report(path.clone());
            if path == *parent {
                // Reported as its folder; what arrives under a name that cannot be written is
                // not watched, so nothing can be vouched for from then on.
                if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                    self.broken = Some(format!("{parent} got an entry whose name is not UTF-8 or holds a line break ({:?}): the watcher cannot name it; rename it and restart the watcher", String::from_utf8_lossy(name)));
                }
                continue;
            }
            // Each half of a move is handled on its own, from what is on disk: a move's two
            // halves need no pairing, and a swap (whose halves are two moves) comes out right.
            if dir && mask & (libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                let root = self.root.clone();
                if let Err(e) = self.tree.rewatch(&path, &root) {
                    self.broken = Some(format!("{e:#}"));
                }
            }
        }
    }

    /// Before every answer: the mount table is compared with the last one; a change makes
    /// every earlier token Unknown and the tree is watched afresh (a mount hides or reveals
    /// files with no event).
    fn check_mounts(&mut self) {
        let now = mounts(&self.root);
        if now == self.mounts {
            return;
        }
        self.mounts = now;
        self.watch_afresh("the mount table changed under the root".into());
    }

    /// Every token given out so far answers Unknown, for `why`, and the whole tree is watched
    /// again by a new inotify instance (what the old one missed is then watched too).
    fn watch_afresh(&mut self, why: String) {
        self.lose(why);
        match Tree::scan(&self.root) {
            Ok(tree) => self.tree = tree,
            Err(e) => self.broken = Some(format!("{e:#}")),
        }
    }

    /// The answer to `since TOKEN ROOT`.
    fn since(&mut self, token: &str, root: &str) -> String {
        self.drain();
        self.check_mounts();
        let mut out = format!("now {}\n", self.now().to_text());
        let unknown = |why: &str| format!("unknown {}\n", why.replace('\n', " "));
        if root != self.root.as_str() {
            out += &unknown(&format!("this watcher watches {}, not {root}", self.root));
        } else if self.root_gone {
            out += &unknown("the watched root was deleted or moved: the watcher stops");
        } else if let Some(why) = &self.broken {
            out += &unknown(why);
        } else if token == "-" {
            out += &unknown("no token to compare with");
        } else {
            match Token::parse(token) {
                None => out += &unknown(&format!("{token:?} is not a watcher token")),
                Some(t) if t.epoch != self.epoch => {
                    out += &unknown("the token is from another watcher (it was restarted since)")
                }
                Some(t) if t.seq < self.valid_from => out += &unknown(&self.lost.clone()),
                Some(t) if t.seq > self.seq => out += &unknown("the token is from the future: garbled"),
                Some(t) => {
                    out += "since\n";
                    for p in self.log.range(t.seq + 1..).map(|(_, p)| p) {
                        out += &format!("path {p}\n");
                    }
                }
            }
        }
        out
    }

    fn status(&mut self) -> String {
        self.drain();
        self.check_mounts();
        let mut out = format!(
            "now {}\npid {}\nfolders {}\nfiles {}\n",
            self.now().to_text(),
            std::process::id(),
            self.tree.folders(),
            self.tree.watches.len() - self.tree.folders()
        );
        if let Some(why) = &self.broken {
            out += &format!("broken {}\n", why.replace('\n', " "));
        }
        out
    }

    /// Answers one connection: one request line, one reply.
    fn answer(&mut self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CLIENT_BOUND));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stream.take(64 * 1024));
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut stream = reader.into_inner().into_inner();
        let line = line.trim_end_matches('\n');
        let body = match line.strip_prefix(PROTOCOL).and_then(|r| r.strip_prefix(' ')) {
            Some(r) => match r.split_once(' ') {
                Some(("since", rest)) => {
                    let (token, root) = rest.split_once(' ').unwrap_or((rest, ""));
                    self.since(token, root)
                }
                Some(("status", _)) => self.status(),
                _ => format!("unknown unknown request {r:?}\n"),
            },
            None => "unknown not a request of this protocol version\n".to_string(),
        };
        let reply = format!("{PROTOCOL} root {}\n{body}end\n", self.root);
        let _ = stream.write_all(reply.as_bytes());
    }
}

/// Runs the watcher for `root` until `stop` is set or the root is deleted or moved: watches
/// it, then answers on its socket. The socket is made only once the first scan is done, so a
/// client that is answered is answered about the whole tree.
pub fn serve(root: &Utf8Path, stop: &AtomicBool) -> Result<()> {
    let real = root.canonicalize_utf8().with_context(|| format!("cannot resolve {root}"))?;
    let mut watcher = Watcher::start(&real)?;
    let path = socket(&real);
    let dir = path.parent().context("the socket has a folder")?;
    crate::world::engine::private_dir(dir)?;
    if UnixStream::connect(&path).is_ok() {
        bail!("a watcher already answers for {real} at {path}");
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {path}"))?;
    listener.set_nonblocking(true)?;
    let result = run(&mut watcher, &listener, stop);
    // The socket goes with the watcher: clients then hear that none answers. Its folder too,
    // when nothing else is in it.
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(dir);
    result
}

fn run(watcher: &mut Watcher, listener: &UnixListener, stop: &AtomicBool) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            libc::pollfd { fd: watcher.tree.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfd entries.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 500) };
        watcher.drain();
        if watcher.root_gone {
            eprintln!("{} was deleted or moved: the watcher stops", watcher.root);
            return Ok(());
        }
        while let Ok((stream, _)) = listener.accept() {
            watcher.answer(stream);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::testutil::TempDir;

    #[test]
    fn tokens_are_one_word_and_read_back() {
        let t = Token { epoch: 0xdead_beef_0000_0001, seq: 42 };
        assert!(!t.to_text().contains(' '));
        assert_eq!(Token::parse(&t.to_text()), Some(t));
        for bad in ["", "1", "x.1", "1.", ".1", "1.-2", "1.2.3", "1 .2"] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    /// A watcher served in a thread of the test, on a root of its own; stopped when dropped,
    /// a failing test included.
    struct Served {
        tmp: TempDir,
        root: Utf8PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<Result<()>>>,
    }

    impl Served {
        fn start(name: &str, prepare: impl FnOnce(&Utf8Path)) -> Served {
            let tmp = TempDir::new(name);
            let root = tmp.path().canonicalize_utf8().unwrap();
            prepare(&root);
            let stop = Arc::new(AtomicBool::new(false));
            let (r, s) = (root.clone(), stop.clone());
            let thread = std::thread::spawn(move || serve(&r, &s));
            let mut served = Served { tmp, root, stop, thread: Some(thread) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while status(&served.root).is_none() {
                if served.thread.as_ref().is_some_and(|t| t.is_finished()) {
                    let e = served.thread.take().unwrap().join().unwrap();
                    panic!("the watcher ended while starting: {e:?}");
                }
                assert!(Instant::now() < deadline, "the watcher did not answer within 20 s");
                std::thread::sleep(Duration::from_millis(10));
            }
            served
        }

        fn now(&self) -> Token {
            match changes(&self.root, None) {
                Changes::Unknown { now: Some(now), .. } => now,
                other => panic!("no token: {other:?}"),
            }
        }

        fn end(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(crate::world::engine::socket_dir("watch", &self.root));
        }
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.end();
            let _ = self.tmp.path();
        }
    }

    /// Whether a reported path stands for a change of `want`: equal, its folder, an ancestor,
    /// or inside it.
    fn covers(reported: &Utf8Path, want: &Utf8Path) -> bool {
        want.starts_with(reported) || reported.starts_with(want)
    }

    fn write(p: &Utf8Path, text: &str) {
        std::fs::write(p, text).unwrap();
    }

    /// Swaps two paths in one step, as renameat2(RENAME_EXCHANGE) does.
    fn exchange(a: &Utf8Path, b: &Utf8Path) {
        let (a, b) = (CString::new(a.as_str()).unwrap(), CString::new(b.as_str()).unwrap());
        // SAFETY: two NUL-terminated paths.
        let r =
            unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
    }

    type Op = Box<dyn Fn(&Utf8Path, &Utf8Path)>;

    /// One change made in a case's own folder (`base`, watched) or outside the root, and the
    /// paths under `base` that must be reported for it (none: nothing may be).
    struct Step {
        what: &'static str,
        op: Op,
        expect: &'static [&'static str],
    }

    fn step(what: &'static str, expect: &'static [&'static str], op: impl Fn(&Utf8Path, &Utf8Path) + 'static) -> Step {
        Step { what, op: Box::new(op), expect }
    }

    /// Every kind of change the contract names, each in a folder of its own so that a report
    /// outside it is caught too.
    // long because: the table of cases is one list, read in one place.
    fn cases() -> Vec<Vec<Step>> {
        use std::os::unix::fs::PermissionsExt;
        vec![
            vec![step("write", &["f.txt"], |b, _| write(&b.join("f.txt"), "changed"))],
            vec![step("append", &["f.txt"], |b, _| {
                let mut f = std::fs::OpenOptions::new().append(true).open(b.join("f.txt")).unwrap();
                f.write_all(b"more").unwrap();
            })],
            vec![step("truncate", &["f.txt"], |b, _| {
                std::fs::OpenOptions::new().write(true).open(b.join("f.txt")).unwrap().set_len(0).unwrap()
            })],
            vec![step("chmod", &["f.txt"], |b, _| {
                std::fs::set_permissions(b.join("f.txt"), std::fs::Permissions::from_mode(0o600)).unwrap()
            })],
            vec![step("touch", &["f.txt"], |b, _| {
                let f = std::fs::File::options().write(true).open(b.join("f.txt")).unwrap();
                f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
            })],
            vec![step("create", &["new.txt"], |b, _| write(&b.join("new.txt"), "new"))],
            vec![step("delete", &["f.txt"], |b, _| std::fs::remove_file(b.join("f.txt")).unwrap())],
            vec![step("rename a file", &["f.txt", "g2.txt"], |b, _| {
                std::fs::rename(b.join("f.txt"), b.join("g2.txt")).unwrap()
            })],
            vec![
                step("rename a folder", &["d", "e"], |b, _| std::fs::rename(b.join("d"), b.join("e")).unwrap()),
                step("write a file in its new place", &["e/g.txt"], |b, _| write(&b.join("e/g.txt"), "moved")),
                step("write deeper in its new place", &["e/deep/h.txt"], |b, _| write(&b.join("e/deep/h.txt"), "x")),
            ],
            vec![
                step("mkdir -p a/b/c and write a/b/c/f at once", &["a/b/c/f"], |b, _| {
                    std::fs::create_dir_all(b.join("a/b/c")).unwrap();
                    write(&b.join("a/b/c/f"), "fast");
                }),
                step("write a/b/c/f again", &["a/b/c/f"], |b, _| write(&b.join("a/b/c/f"), "again")),
            ],
            vec![
                step("move a folder in from outside", &["x"], |b, o| {
                    std::fs::rename(o.join("x"), b.join("x")).unwrap()
                }),
                step("write in the folder moved in", &["x/sub/inner.txt"], |b, _| {
                    write(&b.join("x/sub/inner.txt"), "in")
                }),
                step("move it out again", &["x"], |b, o| std::fs::rename(b.join("x"), o.join("y")).unwrap()),
                step("write in it, now outside", &[], |_, o| write(&o.join("y/sub/inner.txt"), "out")),
            ],
            vec![
                step("write through a hard link made outside", &["hl"], |_, o| {
                    write(&o.join("hl"), "through the link")
                }),
                step("create a file", &["h2"], |b, _| write(&b.join("h2"), "new")),
                step("link it from outside", &["h2"], |b, o| std::fs::hard_link(b.join("h2"), o.join("h2")).unwrap()),
                step("write it through the outside link", &["h2"], |_, o| write(&o.join("h2"), "via outside")),
            ],
            vec![
                step("replace a file by renaming another over it", &["f.txt"], |b, _| {
                    write(&b.join("f.new"), "replaced");
                    std::fs::rename(b.join("f.new"), b.join("f.txt")).unwrap();
                }),
                step("link the new file from outside", &["f.txt"], |b, o| {
                    std::fs::hard_link(b.join("f.txt"), o.join("f2")).unwrap()
                }),
                step("write it through that link", &["f.txt"], |_, o| write(&o.join("f2"), "via the link")),
            ],
            vec![
                step("chmod a folder", &["d"], |b, _| {
                    std::fs::set_permissions(b.join("d"), std::fs::Permissions::from_mode(0o700)).unwrap()
                }),
                step("delete the folder", &["d"], |b, _| std::fs::remove_dir_all(b.join("d")).unwrap()),
                step("make it again and write in it", &["d/g.txt"], |b, _| {
                    std::fs::create_dir(b.join("d")).unwrap();
                    write(&b.join("d/g.txt"), "again");
                }),
                step("write in it again", &["d/g.txt"], |b, _| write(&b.join("d/g.txt"), "and again")),
            ],
            vec![
                step("make a second folder", &["e/h.txt"], |b, _| {
                    std::fs::create_dir(b.join("e")).unwrap();
                    write(&b.join("e/h.txt"), "e");
                }),
                step("swap it with d (RENAME_EXCHANGE)", &["d", "e"], |b, _| exchange(&b.join("d"), &b.join("e"))),
                step("write in d, the folder that was e", &["d/h.txt"], |b, _| write(&b.join("d/h.txt"), "in d")),
                step("write in e, the folder that was d", &["e/g.txt"], |b, _| write(&b.join("e/g.txt"), "in e")),
                step("write deeper in e", &["e/deep/n.txt"], |b, _| write(&b.join("e/deep/n.txt"), "deep")),
                step("swap them back", &["d", "e"], |b, _| exchange(&b.join("d"), &b.join("e"))),
                step("write in d again", &["d/g.txt"], |b, _| write(&b.join("d/g.txt"), "back")),
            ],
            vec![
                step("swap a file with one linked from outside (RENAME_EXCHANGE)", &["f.txt", "hl"], |b, _| {
                    exchange(&b.join("f.txt"), &b.join("hl"))
                }),
                step("write the one now at f.txt through its outside link", &["f.txt"], |_, o| {
                    write(&o.join("hl"), "via the outside link")
                }),
                step("link the one now at hl from outside", &["hl"], |b, o| {
                    std::fs::hard_link(b.join("hl"), o.join("f3")).unwrap()
                }),
                step("write it through that link", &["hl"], |_, o| write(&o.join("f3"), "via f3")),
            ],
            vec![
                step("move a folder out and make one at its name at once", &["d"], |b, o| {
                    std::fs::rename(b.join("d"), o.join("d-out")).unwrap();
                    std::fs::create_dir(b.join("d")).unwrap();
                }),
                step("write in the new folder", &["d/new.txt"], |b, _| write(&b.join("d/new.txt"), "new")),
                step("write in the one moved out", &[], |_, o| write(&o.join("d-out/g.txt"), "out")),
            ],
            vec![step("replace a symlink", &["link"], |b, _| {
                std::os::unix::fs::symlink("d", b.join("link.new")).unwrap();
                std::fs::rename(b.join("link.new"), b.join("link")).unwrap();
            })],
        ]
    }

    /// Each case's folder under `root` (and its counterpart outside the root), as the cases
    /// expect them.
    fn prepare_cases(root: &Utf8Path, outside: &Utf8Path) {
        for n in 0..cases().len() {
            let base = root.join(format!("c{n}"));
            std::fs::create_dir_all(base.join("d/deep")).unwrap();
            write(&base.join("f.txt"), "hello");
            write(&base.join("d/g.txt"), "g");
            std::os::unix::fs::symlink("f.txt", base.join("link")).unwrap();
            let out = outside.join(format!("c{n}"));
            std::fs::create_dir_all(out.join("x/sub")).unwrap();
            write(&out.join("x/sub/inner.txt"), "i");
            write(&out.join("hl"), "linked");
            std::fs::hard_link(out.join("hl"), base.join("hl")).unwrap();
        }
    }

    /// Runs every case's steps, asking `ask` after each, and says what went wrong.
    fn check_cases(root: &Utf8Path, outside: &Utf8Path, ask: &mut dyn FnMut(Option<&Token>) -> Changes) -> Vec<String> {
        let mut failures = Vec::new();
        for (n, steps) in cases().into_iter().enumerate() {
            let base = root.join(format!("c{n}"));
            let out = outside.join(format!("c{n}"));
            for s in steps {
                let Changes::Unknown { now: Some(before), .. } = ask(None) else { panic!("no token") };
                (s.op)(&base, &out);
                let Changes::Since { now, paths } = ask(Some(&before)) else {
                    failures.push(format!("{}: not answered with Since", s.what));
                    continue;
                };
                for want in s.expect {
                    if !paths.iter().any(|p| covers(p, &base.join(want))) {
                        failures.push(format!("{}: {want} is not reported, only {paths:?}", s.what));
                    }
                }
                if s.expect.is_empty() && !paths.is_empty() {
                    failures.push(format!("{}: nothing changed under the root, yet {paths:?}", s.what));
                }
                if let Some(p) = paths.iter().find(|p| !p.starts_with(&base)) {
                    failures.push(format!("{}: {p} is reported, outside {base}", s.what));
                }
                match ask(Some(&now)) {
                    Changes::Since { paths, .. } if paths.is_empty() => {}
                    other => failures.push(format!("{}: asked again, {other:?}", s.what)),
                }
            }
        }
        failures
    }

    /// Through the socket, with the daemon draining events as they come.
    #[test]
    fn every_change_is_reported_and_then_not_again() {
        let outside = TempDir::new("watch-outside");
        let served = Served::start("watch-changes", |root| prepare_cases(root, outside.path()));
        let failures = check_cases(&served.root, outside.path(), &mut |since| changes(&served.root, since));
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Asked directly, so that every step's events are drained together, in one batch: a
    /// move's two halves and what follows it are then always processed at once.
    #[test]
    fn every_change_is_reported_when_drained_in_one_batch() {
        let tmp = TempDir::new("watch-batch");
        let outside = TempDir::new("watch-batch-outside");
        let root = tmp.path().canonicalize_utf8().unwrap();
        prepare_cases(&root, outside.path());
        let mut w = Watcher::start(&root).unwrap();
        let failures = check_cases(&root, outside.path(), &mut |since| {
            let token = since.map_or_else(|| "-".to_string(), Token::to_text);
            let body = w.since(&token, root.as_str());
            let reply = parse_reply(&format!("{PROTOCOL} root {root}\n{body}end\n"), &root).unwrap();
            let now = reply.get("now").and_then(Token::parse).unwrap();
            match reply.get("unknown") {
                Some(why) => Changes::Unknown { now: Some(now), why: why.to_string() },
                None => Changes::Since { now, paths: reply.paths.into_iter().map(Utf8PathBuf::from).collect() },
            }
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_target_folder_is_not_watched() {
        let served = Served::start("watch-target", |root| {
            std::fs::create_dir_all(root.join("target/xtask")).unwrap();
            std::fs::create_dir_all(root.join("src")).unwrap();
        });
        let before = served.now();
        write(&served.root.join("target/xtask/cache"), "state");
        std::fs::create_dir_all(served.root.join("target/new/deeper")).unwrap();
        let Changes::Since { paths, now } = changes(&served.root, Some(&before)) else { panic!("not Since") };
        assert!(paths.is_empty(), "{paths:?}");
        write(&served.root.join("src/main.rs"), "fn main() {}");
        let Changes::Since { paths, .. } = changes(&served.root, Some(&now)) else { panic!("not Since") };
        assert_eq!(paths, [served.root.join("src/main.rs")]);
        let s = status(&served.root).unwrap();
        assert_eq!((s.folders, s.files), (2, 1), "the root and src/, src/main.rs");
    }

    #[test]
    fn what_cannot_be_vouched_for_is_unknown() {
        let other = TempDir::new("watch-none");
        match changes(other.path(), Some(&Token { epoch: 1, seq: 1 })) {
            Changes::Unknown { now: None, why } => assert!(why.contains("watch up"), "{why}"),
            c => panic!("no watcher: {c:?}"),
        }
        let mut served = Served::start("watch-unknown", |_| {});
        let now = served.now();
        match changes(&served.root, None) {
            Changes::Unknown { now: Some(n), .. } => assert_eq!(n, now),
            c => panic!("no token: {c:?}"),
        }
        let foreign = Token { epoch: now.epoch ^ 1, seq: now.seq };
        assert!(matches!(changes(&served.root, Some(&foreign)), Changes::Unknown { now: Some(_), .. }));
        let ahead = Token { epoch: now.epoch, seq: now.seq + 5 };
        assert!(matches!(changes(&served.root, Some(&ahead)), Changes::Unknown { now: Some(_), .. }));
        // A root without a watcher of its own, even beside one that runs.
        assert!(matches!(changes(other.path(), Some(&now)), Changes::Unknown { now: None, .. }));
        assert!(matches!(changes(&served.root, Some(&now)), Changes::Since { .. }));
        served.end();
        assert!(matches!(changes(&served.root, Some(&now)), Changes::Unknown { now: None, .. }), "stopped");
        // A reply about another root, another version, or cut short.
        let root = Utf8Path::new("/r");
        assert!(parse_reply("ai-infra-watch 1 root /other\nnow 1.1\nsince\nend\n", root)
            .unwrap_err()
            .contains("/other"));
        assert!(parse_reply("ai-infra-watch 2 root /r\nnow 1.1\nsince\nend\n", root).is_err());
        assert!(parse_reply("ai-infra-watch 1 root /r\nnow 1.1\nsince\npath /r/a\n", root)
            .unwrap_err()
            .contains("cut short"));
        let r = parse_reply("ai-infra-watch 1 root /r\nnow 1.1\nsince\npath /r/a b\nend\n", root).unwrap();
        assert_eq!((r.get("now"), &r.paths[..]), (Some("1.1"), &["/r/a b".to_string()][..]));
    }

    /// Unmounts, by its exact path, the file system a test mounted, however the test ends.
    struct Mounted(Utf8PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0.as_str()).status();
        }
    }

    /// A file system mounted inside the root hides what was there with no event: older tokens
    /// are Unknown, and what is written on the new file system is reported afterwards.
    #[test]
    fn a_mount_under_the_root_makes_older_tokens_unknown_and_is_watched() {
        let served = Served::start("watch-mount", |root| std::fs::create_dir(root.join("m")).unwrap());
        let point = served.root.join("m");
        let before = served.now();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "ai-infra-watch-test", point.as_str()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {point}: the suite runs as root, as CI does");
        let _mounted = Mounted(point.clone());
        match changes(&served.root, Some(&before)) {
            Changes::Unknown { now: Some(_), why } => assert!(why.contains("mount table"), "{why}"),
            c => panic!("after a mount: {c:?}"),
        }
        let after = served.now();
        write(&point.join("f"), "on the tmpfs");
        let Changes::Since { paths, .. } = changes(&served.root, Some(&after)) else { panic!("not Since") };
        assert!(paths.contains(&point.join("f")), "{paths:?}");
    }

    /// A socket that answers wrongly, or not at all, is no watcher to trust: Unknown, within
    /// about a second.
    #[test]
    fn garbled_and_missing_answers_are_unknown() {
        let tmp = TempDir::new("watch-garbled");
        let root = tmp.path().canonicalize_utf8().unwrap();
        let path = socket(&root);
        crate::world::engine::private_dir(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let replies = [
            format!("{PROTOCOL} root {root}\nnow 1.5\npath {root}/a\nend\n"),
            format!("{PROTOCOL} root {root}\nnow 1.5\nsince\npath /elsewhere\nend\n"),
            format!("{PROTOCOL} root {root}\nnow 1.5\nsince\npath {root}/a\n"),
            format!("ai-infra-watch 9 root {root}\nnow 1.5\nsince\nend\n"),
            format!("{PROTOCOL} root {root}\nsince\nend\n"),
            String::new(),
        ];
        let n = replies.len();
        let server = std::thread::spawn(move || {
            for reply in replies {
                let (mut s, _) = listener.accept().unwrap();
                let mut line = String::new();
                std::io::BufReader::new(&s).read_line(&mut line).unwrap();
                s.write_all(reply.as_bytes()).unwrap();
            }
            // One that never answers.
            let (_s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let since = Token { epoch: 1, seq: 4 };
        for i in 0..=n {
            let started = Instant::now();
            let c = changes(&root, Some(&since));
            assert!(matches!(c, Changes::Unknown { .. }), "reply {i}: {c:?}");
            assert!(started.elapsed() < Duration::from_millis(1500), "reply {i} took {:?}", started.elapsed());
        }
        let _ = server.join();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// The daemon's bookkeeping, asked directly: lost events, a trimmed log, a mount change.
    #[test]
    fn lost_history_makes_older_tokens_unknown() {
        let tmp = TempDir::new("watch-lost");
        let root = tmp.path().canonicalize_utf8().unwrap();
        let mut w = Watcher::start(&root).unwrap();
        let ask = |w: &mut Watcher, t: &Token| w.since(&t.to_text(), root.as_str());
        let t0 = w.now();
        assert!(ask(&mut w, &t0).contains("\nsince\n"));
        w.lose("events were lost".into());
        let t1 = w.now();
        assert!(ask(&mut w, &t0).contains("unknown events were lost"));
        assert!(ask(&mut w, &t1).contains("\nsince\n"));
        // The log keeps each path once, and drops the oldest past its bound.
        w.bound = 4;
        for i in 0..3 {
            w.report(root.join("same"));
            w.report(root.join(format!("p{i}")));
        }
        assert_eq!(w.log.len(), 4, "{:?}", w.log);
        let t2 = w.now();
        for i in 3..6 {
            w.report(root.join(format!("p{i}")));
        }
        assert!(ask(&mut w, &t1).contains("unknown more than 4 paths changed"));
        assert!(ask(&mut w, &t2).contains("path") && ask(&mut w, &t2).contains("since"), "{}", ask(&mut w, &t2));
        // The mount table under the root changed since the last answer.
        let t3 = w.now();
        w.mounts = "something else".into();
        assert!(ask(&mut w, &t3).contains("unknown the mount table changed"));
        let t4 = w.now();
        assert!(ask(&mut w, &t4).contains("\nsince\n"));
        // A watch that could not be added: nothing is vouched for from then on.
        w.broken = Some("cannot watch x".into());
        let t5 = w.now();
        assert!(ask(&mut w, &t5).contains("unknown cannot watch x"));
    }

    /// Events lost to a full queue may have been a folder that arrived: the tree is watched
    /// afresh, so what changes in that folder afterwards is reported.
    #[test]
    fn an_overflowed_queue_makes_older_tokens_unknown_and_is_watched_afresh() {
        let tmp = TempDir::new("watch-overflow");
        let root = tmp.path().canonicalize_utf8().unwrap();
        std::fs::create_dir(root.join("many")).unwrap();
        let mut w = Watcher::start(&root).unwrap();
        let t0 = w.now();
        // Each new file queues at least two events (IN_CREATE, IN_CLOSE_WRITE), none merged.
        let queue: usize =
            std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events").unwrap().trim().parse().unwrap();
        for i in 0..queue / 2 + 100 {
            std::fs::File::create(root.join(format!("many/{i}"))).unwrap();
        }
        std::fs::create_dir(root.join("late")).unwrap();
        let answer = w.since(&t0.to_text(), root.as_str());
        assert!(answer.contains("unknown events were lost"), "{}", &answer[..answer.len().min(300)]);
        let t1 = w.now();
        write(&root.join("late/f"), "after");
        let answer = w.since(&t1.to_text(), root.as_str());
        assert!(answer.contains(&format!("path {}\n", root.join("late/f"))), "{answer}");
    }

    #[test]
    fn mounts_that_matter_and_file_systems_refused() {
        let table = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:5 / /proc rw - proc proc rw
31 22 0:6 / /work/r/data rw - tmpfs t rw
32 22 0:7 / /work/r/target/engine rw - overlay o rw
33 22 0:8 / /work/r\\040x rw - tmpfs t rw
34 22 0:9 / /work rw - ext4 /dev/vdb rw";
        let kept = relevant_mounts(table, Utf8Path::new("/work/r"));
        let ids: Vec<&str> = kept.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(ids, ["22", "31", "34"]);
        assert!(relevant_mounts(table, Utf8Path::new("/work/r x")).contains("33 22"));
        assert_eq!(remote_fs(0x6969), Some("NFS"));
        assert_eq!(remote_fs(0x6573_5546), Some("FUSE"));
        assert_eq!(remote_fs(0xFF53_4D42u32 as i64), Some("CIFS"));
        assert_eq!(remote_fs(0xEF53), None, "ext4");
        assert_eq!(remote_fs(0x0102_1994), None, "tmpfs");
    }
}
