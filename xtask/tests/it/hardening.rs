//! Faults and bad input on a real engine: nothing lost (images, `.env`), one run at a time
//! really, nothing hangs (signals, a stalled registry, a closed stdout), errors that name what
//! went wrong and exit codes CI can trust.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Workspace;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("run docker")
}

fn image_exists(name: &str) -> bool {
    docker(&["image", "inspect", name]).status.success()
}

/// A sentinel image of "the user's", named like the workspace's images but under another tag.
fn sentinel(name: &str) {
    let o = Command::new("docker")
        .args(["build", "--quiet", "-t", name, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(format!("FROM scratch\nLABEL sentinel={name}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_bench_removes_only_the_images_it_made() {
    let ws = Workspace::stack("benchkeep");
    let keep = [format!("ai-infra-base:keep-{}", ws.tag), format!("ai-infra-mid:keep-{}", ws.tag)];
    for k in &keep {
        sentinel(k);
    }
    // Every part that makes images, small (the scale and digest parts build none of a
    // workspace's services, and take minutes). root and builders check what they measure
    // (exactly the changed service and its descendants rebuilt; every image OK after each
    // builder's run) and fail otherwise.
    let (mut stdout, mut stderr, mut pids) = (String::new(), String::new(), Vec::new());
    let small = ["--services", "2", "--files", "3"];
    let parts: [(&str, &[&str]); 7] = [
        ("status", &small),
        ("noop", &small),
        ("remote", &small),
        ("parallel", &small),
        ("export", &[]),
        ("root", &["--services", "7", "--files", "60"]),
        ("builders", &["--rounds", "1"]),
    ];
    for (part, args) in parts {
        let bench = spawn(&ws, &[&["bench", "--only", part][..], args].concat());
        pids.push(bench.id());
        let out = bench.wait_with_output().unwrap();
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{part}: {stdout}\n{stderr}");
    }
    let kept: Vec<bool> = keep.iter().map(|k| image_exists(k)).collect();
    let _ = docker(&["image", "rm", &keep[0], &keep[1]]);
    for said in [
        "check-status --remote",
        "parallel build",
        "export of the project's",
        "build-all rebuilt svc02, svc06 in",
        "root / per-service",
        "legacy / BuildKit",
    ] {
        assert!(stdout.contains(said), "every part ran ({said}): {stdout}");
    }
    assert_eq!(kept, [true, true], "the user's images survive every part of the bench: {stdout}\n{stderr}");
    // And the bench removed what it made: its tags end with its process id.
    let ls = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let left: Vec<String> = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .filter(|l| pids.iter().any(|pid| l.ends_with(&format!("-{pid}"))) && l.contains(":bench-"))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "the bench left {left:?}\n{stderr}");
    assert!(!stderr.contains("could not remove"), "{stderr}");
}

#[test]
fn sync_env_keeps_a_private_linked_env_private_and_every_value() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new("envmode");
    ws.write(".env.example", "A=1\nB=2\nC=3\n");
    // A .env of passwords, 0600, kept elsewhere and linked; written with bare CR line ends.
    ws.write("private/env", "A=cr\rB=x\rA=again\r");
    ws.chmod("private/env", 0o600);
    std::os::unix::fs::symlink("private/env", ws.path(".env")).unwrap();
    let o = ws.ok(&["sync-env"]);
    assert!(o.stderr.contains("A on lines 1 and 3"), "a duplicate key is named with both lines: {o:?}");
    assert!(std::fs::symlink_metadata(ws.path(".env")).unwrap().file_type().is_symlink(), "still a link");
    let mode = |p: &str| std::fs::metadata(ws.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("private/env"), mode(".env.bak")), (0o600, 0o600));
    assert_eq!(
        ws.read("private/env"),
        "A=cr\rB=x\rA=again\r\r# Added by `cargo xtask sync-env` from .env.example\rC=3\r"
    );
    assert_eq!(ws.read(".env.bak"), "A=cr\rB=x\rA=again\r");
}

/// A workspace whose build takes about half a second: a scratch service with one file.
fn tiny(name: &str) -> Workspace {
    let ws = Workspace::new(name);
    ws.write("services/one/Dockerfile", "FROM scratch\nCOPY one.txt /\n");
    ws.write("services/one/one.txt", &ws.tag);
    ws.run(&["engine", "status"]); // writes the workspace ids
    ws
}

fn spawn(ws: &Workspace, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("AI_INFRA_ROOT", &ws.root)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn of_twenty_pairs_of_runs_exactly_one_builds_each_time() {
    let ws = tiny("lockpairs");
    for i in 0..20 {
        let (a, b) = (spawn(&ws, &["build-all", &ws.tag, "--force"]), spawn(&ws, &["build-all", &ws.tag, "--force"]));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let built = [&a, &b].iter().filter(|o| String::from_utf8_lossy(&o.stdout).contains("] built one")).count();
        let refused: Vec<String> = [&a, &b]
            .iter()
            .filter(|o| o.status.code() == Some(1))
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        let show =
            || format!("pair {i}:\n{}\n{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
        assert_eq!(built, 1, "{}", show());
        assert_eq!(refused.len(), 1, "{}", show());
        // The PID names the holder once it has written it; a run refused in the instant
        // between the lock and the write says "another build" without it.
        assert!(refused[0].contains("another build") && refused[0].contains("is running"), "{}", show());
    }
}

/// The PIDs of a process's children (started by any of its threads).
fn children(pid: u32) -> Vec<u32> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    tasks
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Waits until the workspace's `slow` service is building; returns the docker build's PID.
fn wait_for_slow_build(ws: &Workspace, run: &std::process::Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kids = children(run.id());
        if ws.read_opt("target/xtask/logs/slow.log").contains("Step 3/") && !kids.is_empty() {
            return kids[0];
        }
        assert!(Instant::now() < deadline, "slow never started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_run_never_blocks_the_next() {
    let ws = Workspace::new("lockkill");
    common::slow_service(&ws, "slow", None, 30.0);
    ws.run(&["engine", "status"]);
    let mut run = spawn(&ws, &["build-all", &ws.tag]);
    let build = wait_for_slow_build(&ws, &run);
    run.kill().unwrap(); // SIGKILL: no handler runs, nothing is cleaned up
    run.wait().unwrap();
    // The docker build it left would go on for 30 s: end it, it is this test's.
    let _ = Command::new("kill").args(["-KILL", &build.to_string()]).status();
    let t = Instant::now();
    common::slow_service(&ws, "slow", None, 0.0);
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(Workspace::built(&o.stdout), vec!["slow"], "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "not blocked by the dead run");
}

#[test]
fn sigterm_stops_the_builds_reports_releases_the_lock_and_exits_143() {
    let ws = Workspace::new("sigterm");
    common::slow_service(&ws, "slow", None, 30.0);
    common::slow_service(&ws, "child", Some("slow"), 0.0);
    ws.run(&["engine", "status"]);
    let run = spawn(&ws, &["build-all", &ws.tag]);
    let build = wait_for_slow_build(&ws, &run);
    let t = Instant::now();
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(t.elapsed() < Duration::from_secs(15), "stops without waiting for the 30 s build");
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("stopped slow: interrupted") && stdout.contains("summary: "), "the report: {stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("terminated (SIGTERM)"), "{out:?}");
    assert!(std::fs::metadata(format!("/proc/{build}")).is_err(), "no orphaned docker build");
    ws.expect(&[("slow", "MISSING"), ("child", "MISSING")]);
    // The lock is free: the next run goes ahead.
    common::slow_service(&ws, "slow", None, 0.0);
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn a_registry_that_accepts_and_stalls_fails_the_push_in_bounded_time() {
    let ws = Workspace::new("stall");
    ws.write("services/one/Dockerfile", "FROM scratch\nCOPY one.txt /\n");
    ws.write("services/one/one.txt", &ws.tag);
    let reg = stalling_registry();
    let t = Instant::now();
    let o = ws.run_env(&["build-all", &ws.tag, &reg], &[("AI_INFRA_PUSH_TIMEOUT", "3")]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(90), "bounded: {:?}", t.elapsed());
    assert!(o.stdout.contains("push FAILED one") && o.stdout.contains("the registry stopped answering"), "{o:?}");
    assert!(image_exists(&format!("ai-infra-one:{}", ws.tag)), "the local image stays");
    a_bad_bound_is_a_usage_error(&ws, &reg, "AI_INFRA_PUSH_TIMEOUT", "soon");
}

/// A bad bound is a usage error, said before anything runs.
fn a_bad_bound_is_a_usage_error(ws: &Workspace, reg: &str, var: &str, value: &str) {
    let bad = ws.run_env(&["build-all", &ws.tag, reg], &[(var, value)]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains(&format!("{var}={value:?} is not a whole number")), "{bad:?}");
}

/// A registry on loopback that answers the version check and manifest lookups (nothing is
/// there) and then stalls every upload: it accepts the request and never answers.
fn stalling_registry() -> String {
    let api = "Docker-Distribution-API-Version: registry/2.0";
    loopback_registry(move |_, path| {
        if path == "/v2/" {
            Some(format!("HTTP/1.1 200 OK\r\n{api}\r\nContent-Length: 0\r\n\r\n"))
        } else if path.contains("/manifests/") {
            Some(format!("HTTP/1.1 404 Not Found\r\n{api}\r\nContent-Length: 0\r\n\r\n"))
        } else {
            None
        }
    })
}

/// A plain-HTTP server on loopback that answers each request (method, path) as `answer` says,
/// and stalls it, never answering, where `answer` gives None.
fn loopback_registry(answer: impl Fn(&str, &str) -> Option<String> + Send + Sync + 'static) -> String {
    use std::io::{Read, Write};
    let answer = std::sync::Arc::new(answer);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    match c.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                    if head == [0x16] {
                        return; // TLS: the engine then speaks plain HTTP
                    }
                    if !head.ends_with(b"\r\n\r\n") {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    head.clear();
                    let (method, path) = (text.split(' ').next().unwrap_or(""), text.split(' ').nth(1).unwrap_or(""));
                    let Some(reply) = answer(method, path) else {
                        std::thread::sleep(Duration::from_secs(600));
                        return;
                    };
                    if c.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_registry_that_stalls_mid_pull_ends_the_pull_in_bounded_time() {
    let ws = Workspace::new("pullstall");
    ws.write("services/one/Dockerfile", "FROM scratch\nCOPY one.txt /\n");
    ws.write("services/one/one.txt", &ws.tag);
    let reg = registry_that_stalls_on_layers();
    let t = Instant::now();
    let o =
        ws.run_env(&["build-all", &ws.tag, &reg], &[("AI_INFRA_PULL_TIMEOUT", "3"), ("AI_INFRA_PUSH_TIMEOUT", "3")]);
    assert!(t.elapsed() < Duration::from_secs(120), "bounded: {:?}", t.elapsed());
    assert!(o.stdout.contains("the registry stopped answering (no progress for 3 s; AI_INFRA_PULL_TIMEOUT"), "{o:?}");
    assert!(o.stdout.contains("building it instead") && Workspace::built(&o.stdout) == ["one"], "{o:?}");
    assert!(image_exists(&format!("ai-infra-one:{}", ws.tag)), "built here");
    a_bad_bound_is_a_usage_error(&ws, &reg, "AI_INFRA_PULL_TIMEOUT", "0");
}

/// A registry on loopback that says it holds every tag (one small manifest, under its digest)
/// and stalls every other request: the layers of a pull and every upload.
fn registry_that_stalls_on_layers() -> String {
    use sha2::Digest;
    let config = format!("sha256:{}", "c".repeat(64));
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":2,\"digest\":\"{config}\"}},\"layers\":[]}}"
    );
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(manifest.as_bytes()));
    let api = "Docker-Distribution-API-Version: registry/2.0";
    loopback_registry(move |method, path| {
        if path == "/v2/" {
            Some(format!("HTTP/1.1 200 OK\r\n{api}\r\nContent-Length: 0\r\n\r\n"))
        } else if path.contains("/manifests/") && (method == "HEAD" || method == "GET") {
            let body = if method == "GET" { manifest.as_str() } else { "" };
            Some(format!(
                "HTTP/1.1 200 OK\r\n{api}\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nDocker-Content-Digest: {digest}\r\nContent-Length: {}\r\n\r\n{body}",
                manifest.len()
            ))
        } else {
            None
        }
    })
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let ws = Workspace::stack("headone");
    ws.run(&["engine", "status"]);
    let mut run = spawn(&ws, &["build-all", &ws.tag, "--verbose", "--jobs", "1"]);
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(run.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // The reader is dropped here: stdout is closed, as `| head -1` does.
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!("the run hangs once its stdout is closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "the lock is free and the next run builds: {o:?}");
}

#[test]
fn flags_before_the_command_and_port_zero_are_usage_errors() {
    let ws = Workspace::stack("flagfirst");
    for args in [&["--verbose", "build-all"][..], &["--exit-code", "check-status"], &["build-all", "v1", "127.0.0.1:0"]]
    {
        let o = ws.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.starts_with("error: ") && o.stdout.is_empty(), "{args:?}: {o:?}");
    }
}

#[test]
fn state_errors_name_the_path_and_a_history_failure_comes_after_the_report() {
    let ws = Workspace::stack("statepath");
    ws.write("target/xtask", "a file where the state folder goes\n");
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("target/xtask"), "the error names the path: {o:?}");
    std::fs::remove_file(ws.path("target/xtask")).unwrap();
    // history.jsonl cannot be written (a folder is in its place): the report comes all the
    // same, then a warning; the build itself succeeded.
    std::fs::create_dir_all(ws.path("target/xtask/history.jsonl")).unwrap();
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("summary: built 5"), "{o:?}");
    assert!(o.stderr.contains("warning: the build history was not recorded"), "{o:?}");
}

#[test]
fn clean_all_reports_each_removal_as_it_went() {
    let ws = Workspace::stack("cleanfail");
    ws.ok(&["build-all", &ws.tag]);
    // A container of solo's image keeps the engine from removing that image's only name.
    let name = format!("xtask-it-cleanfail-{}", std::process::id());
    let solo = format!("ai-infra-solo:{}", ws.tag);
    let created = docker(&["create", "--network", "none", "--name", &name, &solo, "/solo.txt"]);
    assert!(created.status.success(), "{created:?}");
    let o = ws.run(&["clean-all", &ws.tag, "--force"]);
    let _ = docker(&["rm", &name]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("removed 4 of 5 images"), "{o:?}");
    assert!(o.stdout.contains(&format!("not removed {solo}: ")), "{o:?}");
    assert!(image_exists(&solo) && !image_exists(&format!("ai-infra-mid:{}", ws.tag)));
}

#[test]
fn a_failed_legacy_build_leaves_no_container() {
    let ws = Workspace::new("forcerm");
    let marker = format!("marker-{}", ws.tag);
    common::slow_service(&ws, "bad", None, 0.0);
    ws.write(
        "services/bad/Dockerfile",
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"exit 3 # {marker}\"]\n"
        ),
    );
    // The machine's docker 28 CLI has no buildx: the legacy builder, which runs RUN in a
    // container of its own.
    let o = ws.run_env(&["build-all", &ws.tag], &[("DOCKER_BUILDKIT", "0")]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(ws.read("target/xtask/logs/bad.log").contains("Step 3/"), "the legacy builder ran it");
    let ps = docker(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]);
    let left: Vec<String> =
        String::from_utf8_lossy(&ps.stdout).lines().filter(|l| l.contains(&marker)).map(str::to_string).collect();
    for l in &left {
        let _ = docker(&["rm", l.split(' ').next().unwrap()]);
    }
    assert!(left.is_empty(), "stopped containers left behind: {left:?}");
}

#[test]
fn a_fresh_machine_gets_its_engine_started_by_build_all() {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    assert!(root, "the suite runs as root (as CI does): `cargo xtask test`");
    if std::path::Path::new("/var/run/docker.sock").exists() {
        eprintln!("skipped: an engine socket is at /var/run/docker.sock (CI has none)");
        return;
    }
    let ws = Workspace::new("autoengine");
    ws.write("services/one/Dockerfile", "FROM scratch\nCOPY one.txt /\n");
    ws.write("services/one/one.txt", &ws.tag);
    let config = ws.path("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("AI_INFRA_ROOT", &ws.root)
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    type Run<'a> = &'a dyn Fn(&[&str]) -> (Option<i32>, String, String);
    struct Down<'a>(Run<'a>);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)(&["engine", "down"]);
        }
    }
    let _down = Down(&run);
    let (code, stdout, stderr) = run(&["build-all", &ws.tag]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("started a private one")).collect();
    assert_eq!(said.len(), 1, "one line says so: {stderr}");
    assert!(said[0].contains("`cargo xtask engine down`"), "and how to stop it: {stderr}");
    assert!(stdout.contains("] built one"), "{stdout}");
    // The next command finds that engine: nothing started, nothing to build.
    let (code, stdout, stderr) = run(&["build-all", &ws.tag]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing to build") && !stderr.contains("started a private one"), "{stdout}\n{stderr}");
    let (_, stdout, _) = run(&["engine", "down"]);
    assert!(stdout.contains("stopped the Docker engine"), "{stdout}");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a small tmpfs over `dir`, keeping what `dir` held.
    fn over(dir: &std::path::Path, size: &str) -> Tmpfs {
        let held = dir.with_extension("held");
        std::fs::rename(dir, &held).unwrap();
        std::fs::create_dir(dir).unwrap();
        let m = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(m.status.success(), "mount a tmpfs (the suite runs as root): {}", String::from_utf8_lossy(&m.stderr));
        let guard = Tmpfs(dir.to_path_buf());
        let c = Command::new("cp").arg("-a").arg(held.join(".")).arg(dir).output().unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        guard
    }

    /// Writes a file until the file system is full.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_reports_the_image_that_was_built_and_releases_the_lock() {
    let ws = tiny("fulldisk");
    ws.ok(&["build-all", &ws.tag]);
    let disk = Tmpfs::over(&ws.path("target/xtask"), "256k");
    ws.write("services/one/one.txt", &format!("{} changed", ws.tag));
    let filler = disk.fill();
    let o = ws.run(&["build-all", &ws.tag]);
    // The build made the image: that is the outcome reported, whatever the state files could
    // not record; each failed write names its file.
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(Workspace::built(&o.stdout), ["one"], "{o:?}");
    assert!(o.stdout.contains("summary: built 1,") && o.stdout.contains("failed 0"), "{o:?}");
    assert!(o.stdout.contains("1/1 images OK"), "{o:?}");
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(all.contains("No space left on device") || all.contains("no space left on device"), "{o:?}");
    assert!(all.contains(&format!("{}/target/xtask/", ws.root.display())), "the path is named: {o:?}");
    // The lock was released: the next run (disk still full) starts, and the image is OK.
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("nothing to build"), "{o:?}");
    std::fs::remove_file(filler).unwrap();
    ws.expect(&[("one", "OK")]);
}
