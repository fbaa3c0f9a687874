//! The one write path for files the tool generates: write a temporary file beside the target,
//! then rename it over the target, so a reader never sees half a file and a crash loses nothing.

use anyhow::{Context, Result};
use camino::Utf8Path;

/// Replaces `path` with `bytes` atomically, creating parent folders as needed.
pub fn write(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {parent}"))?;
    }
    let name = path.file_name().unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes)
        .with_context(|| format!("cannot write {tmp}"))
        .and_then(|()| std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {path}")));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
