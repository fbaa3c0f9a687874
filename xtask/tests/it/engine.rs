//! An engine of the tool's own (`engine up`), and a build that loses its engine halfway.

use crate::common;

use std::path::Path;

use common::Workspace;

/// Stops the workspace's own engine however the test ends.
struct Down<'a>(&'a Workspace);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run_own_engine(&["engine", "down"]);
    }
}

fn can_start_an_engine() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"].iter().any(|p| Path::new(p).exists());
    // With a system engine on the default socket, `engine up` rightly uses that one.
    root && dockerd && !Path::new("/var/run/docker.sock").exists()
}

#[test]
fn the_engine_dying_mid_build_is_reported_and_the_next_run_builds_only_the_rest() {
    if !can_start_an_engine() {
        eprintln!("skipped: needs root, dockerd, and no engine on the default socket (as in CI)");
        return;
    }
    let ws = Workspace::new("enginedeath");
    common::slow_service(&ws, "quick", None, 0.0);
    common::slow_service(&ws, "slow", None, 60.0);
    common::slow_service(&ws, "child", Some("slow"), 0.0);
    let up = ws.run_own_engine(&["engine", "up"]);
    let _down = Down(&ws);
    assert_eq!(up.code, 0, "{up:?}");
    assert!(up.stdout.contains("started Docker engine"), "{up:?}");
    let status = ws.run_own_engine(&["engine", "status"]);
    assert!(status.stdout.contains("started by `cargo xtask engine up`"), "{status:?}");
    let state: serde_json::Value = serde_json::from_str(&ws.read("target/engine/state.json")).unwrap();
    let pid = state["pid"].as_u64().unwrap().to_string();

    let run = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-all", &ws.tag])
        .env("AI_INFRA_ROOT", &ws.root)
        .env_remove("DOCKER_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ws.read_opt("target/xtask/logs/slow.log").contains("Running in") {
        assert!(std::time::Instant::now() < deadline, "slow never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The engine stops under the build (SIGTERM: it ends its containers and unmounts, so
    // nothing is left behind; SIGKILL would leave mounts and shims on the test machine).
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED slow"), "{stdout}");
    assert!(stdout.contains("skipped child: parent slow did not build"), "{stdout}");
    assert!(stdout.contains("cannot verify: no Docker engine answers"), "{stdout}");
    assert!(stdout.contains("summary: built "), "the report comes anyway: {stdout}");
    // Stopping takes the engine a moment (it ends its containers first).
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
        assert!(std::time::Instant::now() < gone, "dockerd did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = ws.run_own_engine(&["engine", "status"]);
    assert!(status.stdout.contains("is no longer running"), "{status:?}");

    // The engine is back: only what is not OK is built.
    let up = ws.run_own_engine(&["engine", "up"]);
    assert_eq!(up.code, 0, "{up:?}\n{}", ws.read_opt("target/engine/dockerd.log"));
    common::slow_service(&ws, "slow", None, 0.1);
    let o = ws.run_own_engine(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(Workspace::built(&o.stdout), vec!["slow", "child"], "{o:?}");
    let down = ws.run_own_engine(&["engine", "down"]);
    assert!(down.stdout.contains("stopped the Docker engine"), "{down:?}");
}

#[test]
fn a_planted_socket_folder_is_refused() {
    use sha2::Digest;
    let ws = Workspace::new("planted");
    // The engine's socket folder for this root, as someone else could plant it beforehand.
    let root = ws.root.to_str().unwrap();
    let hex: String = sha2::Sha256::digest(root.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let exec = format!("/tmp/ai-infra-engine-{}", &hex[..10]);
    let theirs = ws.path("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    let _ = std::fs::remove_file(&exec);
    std::os::unix::fs::symlink(&theirs, &exec).unwrap();
    let up = ws.run_own_engine(&["engine", "up"]);
    let _down = Down(&ws);
    let _ = std::fs::remove_file(&exec);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(up.stderr.contains(&format!("{exec} is a symbolic link")), "{up:?}");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0, "nothing written through the link");
}
