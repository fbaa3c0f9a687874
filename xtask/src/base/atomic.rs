//! The one write path for files the tool generates: write a temporary file beside the target,
//! then rename it over the target, so a reader never sees half a file and a crash loses nothing.
//! The new file keeps the mode (and, where it can, the owner) of the file it replaces, and a
//! target that is a symbolic link is updated where the link points.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Replaces `path` with `bytes` atomically, creating parent folders as needed; a new file gets
/// mode 0644 (less the umask), a replaced one keeps its mode and owner.
pub fn write(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    write_as(path, bytes, None)
}

/// Like `write`, but the file gets the mode and owner of `like` when it exists (`.env.bak`
/// holds what `.env` held, so it is as private as `.env`).
pub fn write_like(path: &Utf8Path, bytes: &[u8], like: &Utf8Path) -> Result<()> {
    write_as(path, bytes, std::fs::metadata(like).ok())
}

/// A symbolic link is followed to the file it names, so that the link stays a link.
pub fn resolve(path: &Utf8Path) -> Result<Utf8PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path).with_context(|| format!("cannot read the link {path}"))?;
                let target = Utf8PathBuf::from_path_buf(target)
                    .map_err(|t| anyhow::anyhow!("the link {path} points to a path that is not UTF-8: {t:?}"))?;
                path = match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(path),
        }
    }
    anyhow::bail!("{path}: too many levels of symbolic links")
}

/// The mode a file the tool writes gets where there is none to keep: `base` less the umask.
pub fn created_mode(base: u32) -> u32 {
    // The kernel reports the umask in /proc/self/status (Linux 4.7 and later).
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022);
    base & !umask
}

/// The mode of a file this tool creates: 0644 less the umask (the digest of a rendered file
/// counts it before the file is written).
pub fn new_file_mode() -> u32 {
    created_mode(0o644)
}

fn write_as(path: &Utf8Path, bytes: &[u8], like: Option<std::fs::Metadata>) -> Result<()> {
    use std::io::Write;
    let path = &resolve(path)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {parent}"))?;
    }
    let like = like.or_else(|| std::fs::metadata(path).ok());
    let mode = like.as_ref().map_or_else(new_file_mode, |m| m.permissions().mode() & 0o7777);
    let name = path.file_name().unwrap_or("file");
    let tmp = path.with_file_name(format!("{}{}", tmp_prefix(name), std::process::id()));
    remove_left_behind(path, name);
    let result = (|| -> Result<()> {
        // Created with the final mode (never readable by others for a moment), then set
        // exactly, as the umask may have taken bits away.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode & 0o777)
            .open(&tmp)
            .with_context(|| format!("cannot write {tmp}"))?;
        f.write_all(bytes).with_context(|| format!("cannot write {tmp}"))?;
        if let Some(m) = &like {
            // Only root may give a file away; others keep their own ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {tmp}"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {path}"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// How the temporary files of `name` begin (then the writer's PID): a name no one else gives.
fn tmp_prefix(name: &str) -> String {
    format!(".{name}.xtask-tmp-")
}

/// Removes the temporary files of `path` that a write killed mid-way left beside it more than
/// a minute ago (a live write renames its own within that time). Only names of the one form
/// this tool gives, each by its exact name.
fn remove_left_behind(path: &Utf8Path, name: &str) {
    let (Some(dir), prefix) = (path.parent(), tmp_prefix(name)) else { return };
    let dir = if dir.as_str().is_empty() { Utf8Path::new(".") } else { dir };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let old =
        |m: &std::fs::Metadata| m.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a.as_secs() > 60);
    for e in entries.flatten() {
        let file = e.file_name();
        let ours = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if ours && e.metadata().is_ok_and(|m| m.is_file() && old(&m)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Utf8Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_link_stays_a_link() {
        let dir = crate::testutil::TempDir::new("atomic");
        let env = dir.path().join(".env");
        std::fs::write(&env, "A=1\n").unwrap();
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&env, b"A=2\n").unwrap();
        assert_eq!((mode(&env), std::fs::read_to_string(&env).unwrap().as_str()), (0o600, "A=2\n"));
        let bak = dir.path().join(".env.bak");
        write_like(&bak, b"A=1\n", &env).unwrap();
        assert_eq!(mode(&bak), 0o600);
        // A new file, nothing to be like: the usual mode.
        let new = dir.path().join("sub/new");
        write(&new, b"x").unwrap();
        assert_eq!(mode(&new) & 0o600, 0o600);

        let real = dir.path().join("secrets/env");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "A=1\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("linked.env");
        std::os::unix::fs::symlink("secrets/env", &link).unwrap();
        write(&link, b"A=3\n").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "still a link");
        assert_eq!((mode(&real), std::fs::read_to_string(&real).unwrap().as_str()), (0o640, "A=3\n"));
    }

    #[test]
    fn a_write_removes_the_temporary_files_a_killed_write_left_a_minute_ago() {
        let dir = crate::testutil::TempDir::new("leftover");
        let env = dir.path().join(".env");
        let at = |name: &str, age: u64| {
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age)).unwrap();
            p
        };
        let killed = at("..env.xtask-tmp-4242", 120);
        let running = at("..env.xtask-tmp-4343", 5);
        let others = [at("..env.xtask-tmp-12x", 120), at("..env.tmp77", 120), at(".other.xtask-tmp-1", 120)];
        write(&env, b"A=1\n").unwrap();
        assert!(!killed.exists(), "left by a killed write");
        assert!(running.exists(), "a write may still be under way");
        for p in others {
            assert!(p.exists(), "{p}: not a name this tool gives to .env's temporary files");
        }
        assert_eq!(std::fs::read_to_string(&env).unwrap(), "A=1\n");
    }
}
