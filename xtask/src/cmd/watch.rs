//! `cargo xtask watch up|status|down`: the opt-in file watcher (`world/watcher.rs`) started in
//! the background for this root, so that check-status re-reads only what changed; its state
//! (pid, log) under `target/watch`, its socket in a private folder under /tmp.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::world::{engine, watcher};

fn state_dir(root: &Utf8Path) -> Utf8PathBuf {
    root.join("target").join("watch")
}

fn state_file(root: &Utf8Path) -> Utf8PathBuf {
    state_dir(root).join("state.json")
}

/// The root by its real path: the watcher, its socket and its marker are known by it.
fn real(root: &Utf8Path) -> Result<Utf8PathBuf> {
    root.canonicalize_utf8().with_context(|| format!("cannot resolve {root}"))
}

/// `20000` as `20,000`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn watching(s: &watcher::Status, root: &Utf8Path) -> String {
    format!("watching {} folders and {} files under {root} (pid {})", grouped(s.folders), grouped(s.files), s.pid)
}

pub fn run(root: &Utf8Path, action: &str, marker: Option<&str>) -> Result<i32> {
    match action {
        "up" => up(root),
        "status" => status(root),
        "down" => down(root).map(|_| 0),
        "serve" => serve(root, marker),
        other => Err(crate::base::UsageError(format!("unknown watch action {other:?}: use up, status or down")).into()),
    }
}

/// Serialises `watch up` for a root: a second one waits here until the first has started its
/// watcher (or given up), then finds it answering. The lock goes when the file is closed (the
/// watcher does not inherit it: Rust opens files close-on-exec).
fn lock_up(real: &Utf8Path) -> Result<std::fs::File> {
    let path = state_dir(real).join("up.lock");
    let (file, held) = crate::base::try_lock(&path)?;
    if !held {
        eprintln!("another `cargo xtask watch up` is starting a watcher for {real}: waiting for it");
        file.lock().with_context(|| format!("cannot lock {path}"))?;
    }
    Ok(file)
}

/// Removes the state file only while it records `pid`: a watcher recorded by another run is
/// never forgotten (its pid is what `watch down` stops it by).
fn forget(real: &Utf8Path, pid: u32) {
    if engine::read_state(&state_file(real)).is_some_and(|s| s.pid == pid) {
        let _ = std::fs::remove_file(state_file(real));
    }
}

fn up(root: &Utf8Path) -> Result<i32> {
    let real = real(root)?;
    let dir = state_dir(&real);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    let _lock = lock_up(&real)?;
    if let Some(s) = watcher::status(&real) {
        println!("a watcher already runs: {}", watching(&s, &real));
        return Ok(0);
    }
    let marker = watcher::marker(&real);
    // Stopped (SIGSTOP), or busy rescanning a large tree: a second watcher would find the socket
    // taken and exit, and this one must stay recorded for `watch down`.
    if let Some(s) = engine::read_state(&state_file(&real)).filter(|s| engine::alive(s.pid, &marker)) {
        bail!("a watcher (pid {}) runs for {real} but does not answer; stop it with cargo xtask watch down", s.pid);
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let exe = Utf8PathBuf::from_path_buf(exe).map_err(|p| anyhow::anyhow!("this program's path {p:?} is not UTF-8"))?;
    let log = dir.join("watch.log");
    let args = vec!["watch".to_string(), "serve".to_string(), marker.clone()];
    let pid = engine::spawn(exe.as_str(), &args, &log)?;
    let socket = watcher::socket(&real);
    let state = serde_json::json!({"pid": pid, "host": socket.as_str(), "started_by": "cargo xtask watch up"});
    crate::base::atomic::write(&state_file(&real), state.to_string().as_bytes())?;
    // The first scan of a large tree takes a while; the watcher answers only once it is done.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(s) = watcher::status(&real).filter(|s| s.pid == pid) {
            println!(
                "{}; check-status now re-reads only what changed; stop it with cargo xtask watch down",
                watching(&s, &real)
            );
            return Ok(0);
        }
        if engine::ended(pid) {
            forget(&real, pid);
            let tail = engine::log_tail(&log);
            // The watcher's own one-line error, without the `error: ` the log gives it.
            let tail = tail.trim();
            bail!("the watcher exited while starting: {}", tail.strip_prefix("error: ").unwrap_or(tail));
        }
        if Instant::now() > deadline {
            engine::stop(pid, &marker)?;
            forget(&real, pid);
            bail!("the watcher (pid {pid}) did not answer within 300 s, and was stopped; see {log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(root: &Utf8Path) -> Result<i32> {
    let real = real(root)?;
    match watcher::status(&real) {
        Some(s) => {
            println!("{}, at token {}", watching(&s, &real), s.now.to_text());
            if let Some(why) = &s.broken {
                println!("it vouches for nothing (check-status walks everything): {why}; restart it with cargo xtask watch down && cargo xtask watch up");
            }
            Ok(0)
        }
        None => {
            let recorded = engine::read_state(&state_file(&real));
            if let Some(s) = recorded.filter(|s| !engine::alive(s.pid, &watcher::marker(&real))) {
                println!("the watcher `cargo xtask watch up` started (pid {}) is no longer running", s.pid);
            }
            println!("no watcher runs for {real}: check-status walks every file; start one with cargo xtask watch up");
            Ok(1)
        }
    }
}

/// Stops the watcher that `up` recorded for this root, and no other process.
fn down(root: &Utf8Path) -> Result<bool> {
    let real = real(root)?;
    let file = state_file(&real);
    let Some(s) = engine::read_state(&file) else {
        println!("no watcher started by `cargo xtask watch up` for {real}; nothing stopped");
        return Ok(false);
    };
    let stopped = engine::stop(s.pid, &watcher::marker(&real))?;
    let _ = std::fs::remove_file(&file);
    // The socket folder of a watcher that ended without removing it, unless one answers there.
    if watcher::status(&real).is_none() {
        let _ = std::fs::remove_dir_all(engine::socket_dir("watch", &real));
    }
    if stopped {
        println!("stopped the watcher (pid {}) for {real}", s.pid);
    } else {
        println!("the watcher recorded in {file} (pid {}) was no longer running", s.pid);
    }
    Ok(stopped)
}

/// The daemon itself, as `up` starts it (with the marker that names this root).
fn serve(root: &Utf8Path, marker: Option<&str>) -> Result<i32> {
    let real = real(root)?;
    if marker != Some(watcher::marker(&real).as_str()) {
        return Err(crate::base::UsageError(
            "`watch serve` is started by `cargo xtask watch up`; run that instead".to_string(),
        )
        .into());
    }
    // A client that hangs up before reading its answer must not end the watcher, nor the
    // terminal `watch up` ran in closing.
    // SAFETY: sets signals' dispositions before any thread starts; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let never = std::sync::atomic::AtomicBool::new(false);
    watcher::serve(&real, &never)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_by_thousands() {
        let g = super::grouped;
        assert_eq!(
            (g(0), g(221), g(1000), g(20000), g(1234567)),
            ("0".into(), "221".into(), "1,000".into(), "20,000".into(), "1,234,567".into())
        );
    }
}
