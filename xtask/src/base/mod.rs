//! What every layer shares and no layer owns: the usage error (exit code 2), the folder where
//! the tool keeps its own state, the content hash (`Sha`), the one write path (`atomic`), and
//! the OS lock files (`try_lock`).

pub mod atomic;

use camino::{Utf8Path, Utf8PathBuf};

/// A mistake in how the tool was called: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so that a name holding one
/// keeps a one-line message on one line and cannot move a terminal's cursor.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Where the tool keeps its own state (caches, records, logs) for a root.
pub fn state_dir(root: &Utf8Path) -> Utf8PathBuf {
    root.join("target").join("xtask")
}

/// A content hash as 64 lowercase hex digits, held inline: a context of thousands of files
/// would otherwise cost an allocation (and a free) per file on every check.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sha([u8; 64]);

impl Sha {
    /// Sixty-four zeros: the hash of a file that is never read.
    pub const ZERO: Sha = Sha([b'0'; 64]);

    /// A sha256 digest's 32 bytes as hex; a table rather than `format!` per byte, which cost
    /// a cold digest a tenth of its time.
    pub fn of(digest: &[u8]) -> Sha {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 64];
        for (i, b) in digest.iter().take(32).enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        Sha(out)
    }

    /// 64 lowercase hex digits, as recorded; anything else is None.
    pub fn parse(hex: &str) -> Option<Sha> {
        let bytes: [u8; 64] = hex.as_bytes().try_into().ok()?;
        bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')).then_some(Sha(bytes))
    }

    /// The 32 bytes the hex digits stand for (as this tool's hash cache stores them).
    pub fn bytes(&self) -> [u8; 32] {
        let digit = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            _ => c.wrapping_sub(b'a' - 10) & 15,
        };
        std::array::from_fn(|i| digit(self.0[2 * i]) << 4 | digit(self.0[2 * i + 1]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Sha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Sha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opens the lock file at `path` (made if missing, never truncated: its content names the
/// holder) and tries to take its OS lock without waiting: the file, and whether it is now held.
/// The system releases the lock when the file is closed, however the process ends.
pub fn try_lock(path: &Utf8Path) -> anyhow::Result<(std::fs::File, bool)> {
    use anyhow::Context;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock {path}"))?;
    match file.try_lock() {
        Ok(()) => Ok((file, true)),
        Err(std::fs::TryLockError::WouldBlock) => Ok((file, false)),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {path}")),
    }
}
