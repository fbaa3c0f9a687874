//! `cargo xtask watch up|status|down`, run as the binary on generated roots: the watcher starts
//! once, follows the tree, stops by the pid it recorded, and ends when its root goes away. No
//! engine needed (what the watcher reports is tested in `world/watcher.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Workspace;

/// The marker on the watcher's command line for a root.
fn marker(root: &Path) -> String {
    format!("ai-infra-watch={}", root.canonicalize().unwrap().display())
}

/// The private folder of the watcher's socket for a root.
fn socket_dir(root: &Path) -> PathBuf {
    use sha2::Digest;
    let real = root.canonicalize().unwrap();
    let hash = sha2::Sha256::digest(real.to_str().unwrap().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/tmp/ai-infra-watch-{}", &hex[..10]))
}

/// Whether the watcher `pid` runs (its command line holds the root's marker).
fn running(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).split('\0').any(|a| a == marker))
}

/// Every process whose command line holds `marker`: the watchers of one root.
fn watchers(marker: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| running(*pid, marker))
        .collect();
    pids.sort();
    pids
}

/// The pid `watch up` recorded for a root, if any.
fn recorded(root: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("target/watch/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(v.get("pid")?.as_u64()? as u32)
}

/// Sends `signal` to a watcher this test started.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {signal} {pid}");
}

/// The pid a line like `... (pid 123) ...` names.
fn pid_in(text: &str) -> u32 {
    let after = text.split("(pid ").nth(1).unwrap_or_else(|| panic!("no pid in {text:?}"));
    after.split(')').next().unwrap().parse().unwrap()
}

/// Stops the watcher a test started, by the pid it recorded, however the test ends.
struct Down<'a> {
    ws: &'a Workspace,
    root: PathBuf,
    marker: String,
}

impl<'a> Down<'a> {
    fn new(ws: &'a Workspace) -> Down<'a> {
        Down { ws, root: ws.root.clone(), marker: marker(&ws.root) }
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let pid = recorded(&self.root);
        self.ws.run(&["watch", "down"]);
        // Should `watch down` itself be what broke: the recorded pid, if it is still ours.
        if let Some(pid) = pid.filter(|p| running(*p, &self.marker)) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

#[test]
fn watch_up_status_and_down() {
    let ws = Workspace::offline("watch-cli");
    ws.write("services/a/Dockerfile", "FROM scratch\nCOPY f /\n");
    ws.write("services/a/f", "1\n");
    let _down = Down::new(&ws);
    let real = ws.root.canonicalize().unwrap();
    let out = ws.run(&["watch", "status"]);
    assert!(out.code == 1 && out.stdout.contains("no watcher runs"), "{out:?}");
    let out = ws.run(&["watch", "down"]);
    assert!(out.code == 0 && out.stdout.contains("nothing stopped"), "{out:?}");

    let out = ws.run(&["watch", "up"]);
    // The root, services/, services/a/; Dockerfile, f, and the test's own .test-workspace.
    let line = format!("watching 3 folders and 3 files under {}", real.display());
    assert!(out.code == 0 && out.stdout.contains(&line), "{out:?}");
    assert!(out.stdout.contains("cargo xtask watch down"), "{out:?}");
    let pid = pid_in(&out.stdout);
    assert!(running(pid, &marker(&ws.root)), "the watcher runs in the background");

    let again = ws.run(&["watch", "up"]);
    assert!(again.code == 0 && again.stdout.contains("already runs"), "{again:?}");
    assert_eq!(pid_in(&again.stdout), pid, "no second watcher");

    // It follows the tree: a new folder and its file are watched (target/ never is).
    ws.write("services/b/deep/g", "2\n");
    ws.write("target/xtask/cache", "state\n");
    let out = ws.run(&["watch", "status"]);
    assert!(out.code == 0 && out.stdout.contains("watching 5 folders and 5 files"), "{out:?}");
    assert_eq!(pid_in(&out.stdout), pid);

    let out = ws.run(&["watch", "down"]);
    assert!(out.code == 0 && out.stdout.contains(&format!("stopped the watcher (pid {pid})")), "{out:?}");
    assert!(!running(pid, &marker(&ws.root)), "stopped");
    assert!(!socket_dir(&ws.root).exists(), "its socket folder is gone");
    let out = ws.run(&["watch", "status"]);
    assert!(out.code == 1 && out.stdout.contains("no watcher runs"), "{out:?}");
    let out = ws.run(&["watch", "down"]);
    assert!(out.code == 0 && out.stdout.contains("nothing stopped"), "{out:?}");
}

/// A watcher that does not answer (stopped here; a long rescan looks the same) is not
/// replaced: `watch up` says so, keeps it recorded, and `watch down` stops it.
#[test]
fn watch_up_leaves_a_watcher_that_does_not_answer_recorded() {
    let ws = Workspace::offline("watch-stopped");
    let _down = Down::new(&ws);
    let marker = marker(&ws.root);
    let out = ws.run(&["watch", "up"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pid = pid_in(&out.stdout);
    signal(pid, "-STOP");
    let again = ws.run(&["watch", "up"]);
    signal(pid, "-CONT");
    let says = format!("a watcher (pid {pid}) runs for");
    assert!(again.code == 1 && again.stderr.contains(&says) && again.stderr.contains("watch down"), "{again:?}");
    assert_eq!(recorded(&ws.root), Some(pid), "the state file still records the first watcher");
    assert_eq!(watchers(&marker), [pid], "no second watcher");
    let out = ws.run(&["watch", "down"]);
    assert!(out.code == 0 && out.stdout.contains(&format!("stopped the watcher (pid {pid})")), "{out:?}");
    assert!(watchers(&marker).is_empty(), "stopped");
}

/// Two `watch up` at once start one watcher, the one recorded: the second waits for the first.
#[test]
fn watch_up_twice_at_once_starts_one_watcher() {
    let ws = Workspace::offline("watch-race");
    // A first scan long enough for both to be starting at once.
    for d in 0..100 {
        for f in 0..100 {
            ws.write(&format!("services/w/d{d}/f{f}"), "");
        }
    }
    let _down = Down::new(&ws);
    let marker = marker(&ws.root);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ws.run(&["watch", "up"]));
        let b = s.spawn(|| ws.run(&["watch", "up"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.code == 0 && b.code == 0, "{a:?}\n{b:?}");
    let running = watchers(&marker);
    assert_eq!(running.len(), 1, "watchers for this root: {running:?}\n{a:?}\n{b:?}");
    assert_eq!(recorded(&ws.root), Some(running[0]), "the one running is the one recorded");
    assert_eq!((pid_in(&a.stdout), pid_in(&b.stdout)), (running[0], running[0]), "{a:?}\n{b:?}");
}

/// A name the watcher cannot report, even in a folder no build reads: `watch up` fails with one
/// line naming it and what to do, and leaves no watcher behind.
#[test]
fn watch_up_names_a_path_it_cannot_report() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::offline("watch-names");
    ws.write("services/a/Dockerfile", "FROM scratch\n");
    let _down = Down::new(&ws);
    let marker = marker(&ws.root);
    let real = ws.root.canonicalize().unwrap();
    for name in [&b"two\nlines"[..], &b"not-utf8-\xff"[..]] {
        std::fs::create_dir_all(ws.path("docs")).unwrap();
        let bad = ws.path("docs").join(std::ffi::OsStr::from_bytes(name));
        std::fs::write(&bad, "").unwrap();
        let out = ws.run(&["watch", "up"]);
        let shown = format!("{:?}", real.join("docs").join(std::ffi::OsStr::from_bytes(name)));
        assert!(out.code == 1 && out.stderr.contains(&shown) && out.stderr.contains("rename or remove it"), "{out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
        assert!(!out.stderr.contains("error: the watcher exited while starting: error:"), "{out:?}");
        assert!(watchers(&marker).is_empty() && recorded(&ws.root).is_none(), "nothing left behind");
        std::fs::remove_file(&bad).unwrap();
    }
    let out = ws.run(&["watch", "up"]);
    assert_eq!(out.code, 0, "once renamed: {out:?}");
}

#[test]
fn watch_ends_when_its_root_is_moved_away() {
    let ws = Workspace::offline("watch-moved");
    let _down = Down::new(&ws);
    let out = ws.run(&["watch", "up"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pid = pid_in(&out.stdout);
    let marker = marker(&ws.root);
    let sockets = socket_dir(&ws.root);
    assert!(sockets.is_dir());
    let away = ws.root.with_extension("moved");
    std::fs::rename(&ws.root, &away).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid, &marker) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = !running(pid, &marker);
    std::fs::rename(&away, &ws.root).unwrap();
    assert!(ended, "the watcher of a root that moved away still runs");
    assert!(!sockets.exists(), "the watcher that ended left its socket folder {}", sockets.display());
}

#[test]
fn watch_mistakes_are_usage_errors() {
    let ws = Workspace::offline("watch-usage");
    for (args, says) in [
        (&["watch", "sideways"][..], "unknown watch action"),
        (&["watch"][..], "needs an action"),
        (&["watch", "up", "now"][..], "takes no arguments"),
        (&["watch", "serve", "ai-infra-watch=/elsewhere"][..], "started by `cargo xtask watch up`"),
    ] {
        let out = ws.run(args);
        assert!(out.code == 2 && out.stderr.contains(says), "{args:?}: {out:?}");
    }
    let help = ws.run(&["watch", "--help"]);
    assert!(help.code == 0 && help.stdout.contains("mmap"), "{help:?}");
}
