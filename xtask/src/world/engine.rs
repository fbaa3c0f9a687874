//! `cargo xtask engine up|status|down`: a Docker engine for machines that have none (Debian's
//! docker.io, installed when missing and run as root), started on a private socket with no
//! bridge, no iptables and no masquerading, its state under `target/engine`. Also the loopback
//! registry the test harness starts beside it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::world::docker::on_path;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

fn state_dir(root: &Utf8Path) -> Utf8PathBuf {
    root.join("target").join("engine")
}

/// A short folder for the engine's sockets: unix socket paths are limited to 107 bytes.
fn exec_dir(root: &Utf8Path) -> Utf8PathBuf {
    socket_dir("engine", root)
}

/// A short folder under /tmp for the sockets of the `kind` of process this tool starts for
/// `root` (named by a hash of the root's path, since root paths can be long).
pub fn socket_dir(kind: &str, root: &Utf8Path) -> Utf8PathBuf {
    use sha2::Digest;
    let h = crate::base::Sha::of(&sha2::Sha256::digest(root.as_str().as_bytes()));
    Utf8PathBuf::from(format!("/tmp/ai-infra-{kind}-{}", &h.as_str()[..10]))
}

/// Makes `dir` (in the shared /tmp) this user's own: created 0700, and refused when it is a
/// symbolic link, not a folder, someone else's, or writable by others; someone who planted it
/// could otherwise swap the engine's socket (a root engine) for one of their own.
pub fn private_dir(dir: &Utf8Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("cannot create {dir}"));
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {dir}"))?;
    let refuse = |what: String| {
        anyhow::anyhow!("{dir} {what}: this tool did not make it; remove it (`rm -r {dir}`, after checking what it holds) and run again")
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a folder".into()));
    }
    // /proc/self belongs to the user this process runs as.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).context("cannot read /proc/self")?;
    if meta.uid() != me {
        return Err(refuse(format!("belongs to user {}, not to user {me}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!("is writable by others (mode {:o})", meta.mode() & 0o7777)));
    }
    if meta.mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {dir} private"))?;
    }
    Ok(())
}

/// A background process this tool started, as recorded in its state file.
pub struct Started {
    pub pid: u32,
    /// Where it answers (an engine's DOCKER_HOST).
    pub host: String,
}

pub fn read_state(file: &Utf8Path) -> Option<Started> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    Some(Started { pid: v.get("pid")?.as_u64()? as u32, host: v.get("host")?.as_str()?.to_string() })
}

/// Whether process `pid` runs and its command line holds `marker`: an argument only the
/// process this tool started has (its own data root or config file), so that a recorded PID
/// the system has since given to another process, another engine among them, is never ours.
pub fn alive(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).split('\0').any(|arg| arg == marker))
        .unwrap_or(false)
}

/// The argument that tells the engine `engine up` started for this root from any other.
fn engine_marker(root: &Utf8Path) -> String {
    format!("--data-root={}", state_dir(root).join("root"))
}

/// Whether something accepts connections on a unix socket (a socket file left by an engine
/// that is gone does not).
fn socket_answers(path: &Utf8Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Whether the user chose where the Docker engine is: DOCKER_HOST, or a docker context
/// (DOCKER_CONTEXT, or a current context in the CLI's config).
fn address_chosen() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if set("DOCKER_HOST") || set("DOCKER_CONTEXT") {
        return true;
    }
    current_context().is_some_and(|c| c != "default")
}

/// The docker CLI's current context, from its config file (`DOCKER_CONFIG`, else
/// `~/.docker`); None where none is set.
fn current_context() -> Option<String> {
    let dir = std::env::var("DOCKER_CONFIG")
        .ok()
        .filter(|d| !d.is_empty())
        .map(Utf8PathBuf::from)
        .or_else(|| std::env::var("HOME").ok().map(|h| Utf8PathBuf::from(h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("currentContext")?.as_str().filter(|c| !c.is_empty()).map(str::to_string)
}

/// Whether the user chose an engine: its address, or AI_INFRA_ENGINE. No private engine is
/// started by itself then.
fn configured() -> bool {
    address_chosen() || std::env::var("AI_INFRA_ENGINE").is_ok_and(|v| !v.is_empty())
}

/// The engine address for this root: DOCKER_HOST when set; else the CLI's own choice when a
/// context is chosen or an engine listens on the default socket; else the engine `engine up`
/// started for this root, while it runs.
pub fn docker_host(root: &Utf8Path) -> Option<String> {
    if let Some(h) = docker_host_env() {
        return Some(h);
    }
    // AI_INFRA_ENGINE=docker names the engine, not its address: the engine `engine up` started
    // for this root is still found.
    if address_chosen() || socket_answers(Utf8Path::new(DEFAULT_SOCKET)) {
        return None;
    }
    let s = read_state(&state_dir(root).join("state.json"))?;
    alive(s.pid, &engine_marker(root)).then_some(s.host)
}

/// The engine for a command that needs one. Where none answers and none is chosen, and this
/// tool can start one (as root, with dockerd or apt-get), it starts the private engine as
/// `engine up` does and says so in one line; elsewhere the first engine call says what to do.
pub fn docker(root: &Utf8Path) -> Result<crate::world::docker::Docker> {
    if crate::world::docker::Engine::current() == crate::world::docker::Engine::Podman {
        // Podman runs without a daemon: nothing to start, and no Docker address to look for.
        return Ok(crate::world::docker::Docker::podman());
    }
    let host = docker_host(root);
    let only_podman = on_path("podman") && !on_path("docker");
    let can_start = is_root() && (on_path("dockerd") || on_path("apt-get")) && !only_podman;
    if host.is_none() && can_start && !configured() && !socket_answers(Utf8Path::new(DEFAULT_SOCKET)) {
        let (host, started) = up(root, true).context("no Docker engine answers, and starting one failed")?;
        if started {
            eprintln!(
                "no Docker engine answered: started a private one for this root at {} (state in {}); stop it with `cargo xtask engine down`",
                host.as_deref().unwrap_or(DEFAULT_SOCKET),
                state_dir(root)
            );
        }
    }
    Ok(crate::world::docker::Docker::with_host(docker_host(root).as_deref()))
}

/// The engine for a command that needs one (see `docker`), checked to answer.
pub fn connect(root: &Utf8Path) -> Result<crate::world::docker::Docker> {
    let d = docker(root)?;
    d.platform()?;
    Ok(d)
}

/// The version of the engine that answers at `host` (None: the default socket), if one does.
fn answers(host: Option<&str>) -> Option<String> {
    crate::world::docker::Docker::with_host(host).server().ok().map(|s| s.version).filter(|v| !v.is_empty())
}

/// DOCKER_HOST, when set to something.
fn docker_host_env() -> Option<String> {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty())
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Installs Debian packages whose programs are missing, when running as root.
pub fn install_missing(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().filter(|(program, _)| !on_path(program)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !on_path("apt-get") {
        bail!(
            "{} not installed and this tool can install it only as root on Debian: run `sudo apt-get install {}`, or set DOCKER_HOST to a running engine",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing {} with apt-get", missing.join(", "));
    let names = missing.join(" ");
    let sh = Shell::new()?;
    sh.set_var("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -qq").quiet().ignore_stdout().run().context("apt-get update failed")?;
    cmd!(sh, "apt-get install -y -qq --no-install-recommends {missing...}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("apt-get install {names} failed"))?;
    Ok(())
}

/// Processes this run started, so that stopping them in the same run also reaps them.
static CHILDREN: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Starts a program in the background, in its own process group, its output going to `log`.
pub fn spawn(program: &str, args: &[String], log: &Utf8Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).with_context(|| format!("cannot create {log}"))?;
    // xshell 0.2 cannot leave a process running; this is the one place that needs to.
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id();
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(child);
    Ok(pid)
}

/// Whether a process this run started has ended. Asked of the child itself: its
/// `/proc/PID/cmdline` was seen not to name the program yet on a loaded machine, and a
/// registry that was starting was then taken for one that had exited.
pub fn ended(pid: u32) -> bool {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    children.iter_mut().find(|c| c.id() == pid).is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
}

pub fn log_tail(log: &Utf8Path) -> String {
    crate::world::docker::tail(&std::fs::read_to_string(log).unwrap_or_default(), 5)
}

/// Makes sure an engine answers; starts one when none does. Returns the DOCKER_HOST to use and
/// whether this call started it.
pub fn up(root: &Utf8Path, quiet: bool) -> Result<(Option<String>, bool)> {
    let host = docker_host(root);
    if let Some(version) = answers(host.as_deref()) {
        if !quiet {
            println!("a Docker engine {version} already answers at {}", host.as_deref().unwrap_or(DEFAULT_SOCKET));
        }
        return Ok((host, false));
    }
    if let Some(h) = docker_host_env() {
        bail!("DOCKER_HOST={h} does not answer: start that engine, or unset DOCKER_HOST to let `cargo xtask engine up` start one");
    }
    install_missing(&[("dockerd", "docker.io")])?;
    let dir = state_dir(root);
    let exec = exec_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    private_dir(&exec)?;
    let socket = exec.join("docker.sock");
    let host = format!("unix://{socket}");
    let args: Vec<String> = vec![
        engine_marker(root),
        format!("--exec-root={}", exec.join("exec")),
        format!("--pidfile={}", exec.join("docker.pid")),
        format!("--host={host}"),
        "--bridge=none".into(),
        "--iptables=false".into(),
        "--ip-masq=false".into(),
    ];
    let log = dir.join("dockerd.log");
    let pid = spawn("dockerd", &args, &log)?;
    let state = json!({"pid": pid, "host": host, "started_by": "cargo xtask engine up"});
    crate::base::atomic::write(&dir.join("state.json"), state.to_string().as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(version) = answers(Some(&host)) {
            if !quiet {
                println!("started Docker engine {version} (pid {pid}) at {host}, state in {dir}");
                println!("this tool finds it by itself; for your own docker commands: export DOCKER_HOST={host}");
            }
            return Ok((Some(host), true));
        }
        if ended(pid) {
            let _ = std::fs::remove_file(dir.join("state.json"));
            bail!("dockerd exited while starting; the end of {log}:\n{}", log_tail(&log));
        }
        if Instant::now() > deadline {
            // Not left running: it was started for this call.
            let _ = down(root, true);
            bail!("dockerd (pid {pid}) did not answer within 60 s, and was stopped; see {log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the engine that `up` started for this root, and only that one.
pub fn down(root: &Utf8Path, quiet: bool) -> Result<bool> {
    let file = state_dir(root).join("state.json");
    let Some(s) = read_state(&file) else {
        if !quiet {
            println!("no engine started by `cargo xtask engine up` for {root}; nothing stopped");
        }
        return Ok(false);
    };
    let stopped = stop(s.pid, &engine_marker(root))?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(exec_dir(root));
    if !quiet {
        if stopped {
            println!("stopped the Docker engine (pid {}) at {}", s.pid, s.host);
        } else {
            println!("the engine recorded in {file} (pid {}) was no longer running", s.pid);
        }
    }
    Ok(stopped)
}

/// Ends a process this tool started (known by `marker`, see `alive`): SIGTERM, then SIGKILL
/// after 30 s.
pub fn stop(pid: u32, marker: &str) -> Result<bool> {
    if !alive(pid, marker) {
        return Ok(false);
    }
    let sh = Shell::new()?;
    let p = pid.to_string();
    cmd!(sh, "kill -TERM {p}").quiet().ignore_status().run()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid, marker) {
        if Instant::now() > deadline {
            cmd!(sh, "kill -KILL {p}").quiet().ignore_status().run()?;
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = children.iter().position(|c| c.id() == pid) {
        let _ = children.remove(i).wait();
    }
    Ok(true)
}

pub fn status(root: &Utf8Path) -> Result<i32> {
    let host = docker_host(root);
    let shown = host.clone().unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}"));
    let ours = read_state(&state_dir(root).join("state.json")).filter(|s| alive(s.pid, &engine_marker(root)));
    match answers(host.as_deref()) {
        Some(version) => {
            let how = match &ours {
                Some(s) if s.host == shown => format!("started by `cargo xtask engine up` (pid {})", s.pid),
                _ if docker_host_env().is_some() => "named by DOCKER_HOST".to_string(),
                _ => "the system's engine (default socket)".to_string(),
            };
            println!("Docker engine {version} answers at {shown}: {how}");
            Ok(0)
        }
        None => {
            if let Some(s) =
                read_state(&state_dir(root).join("state.json")).filter(|s| !alive(s.pid, &engine_marker(root)))
            {
                println!("the engine `cargo xtask engine up` started (pid {}, {}) is no longer running", s.pid, s.host);
            }
            println!("no Docker engine answers at {shown}: run `cargo xtask engine up`, or set DOCKER_HOST to a running engine");
            Ok(1)
        }
    }
}

/// A distribution registry on a free loopback port, for the tests.
pub struct Registry {
    pub addr: String,
    pid: u32,
    dir: Utf8PathBuf,
}

impl Registry {
    pub fn start(root: &Utf8Path) -> Result<Registry> {
        install_missing(&[("docker-registry", "docker-registry")])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = root.join("target").join("registry").join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {dir}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        );
        crate::base::atomic::write(&dir.join("config.yml"), config.as_bytes())?;
        let log = dir.join("registry.log");
        let pid = spawn("docker-registry", &["serve".into(), dir.join("config.yml").to_string()], &log)?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = crate::world::registry::head(&addr, "/v2/").map(|r| r.status);
            if matches!(answer, Ok(200)) {
                break;
            }
            let running = !ended(pid);
            if !running || Instant::now() > deadline {
                let _ = stop(pid, dir.join("config.yml").as_str());
                let why = if running { format!("no answer within 20 s ({answer:?})") } else { "it exited".to_string() };
                bail!("the registry did not start on {addr}: {why}; the end of {log}:\n{}", log_tail(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Registry { addr, pid, dir })
    }

    pub fn stop(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if self.pid == 0 {
            return Ok(());
        }
        let pid = std::mem::take(&mut self.pid);
        stop(pid, self.dir.join("config.yml").as_str())?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A registry is stopped on every path, an error or a panic included.
impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Under Podman there is no engine to start: `up` and `status` say so. `down` still stops a
/// Docker engine that `up` started earlier for this root.
fn podman(action: &str) -> Result<i32> {
    let why = match std::env::var("AI_INFRA_ENGINE") {
        Ok(v) if !v.is_empty() => "AI_INFRA_ENGINE=podman",
        _ => "only Podman is installed",
    };
    let podman = crate::world::docker::Docker::podman();
    match (action, podman.server()) {
        ("up", Ok(s)) => {
            println!("engine podman {} ({why}) runs without a daemon: no engine needs starting; `engine up` starts a Docker engine only under AI_INFRA_ENGINE=docker", s.version);
            Ok(0)
        }
        (_, Ok(s)) => {
            println!("engine podman {} ({why}) answers: it runs without a daemon, on the local storage", s.version);
            Ok(0)
        }
        (_, Err(e)) => {
            println!("{e:#}");
            Ok(1)
        }
    }
}

pub fn run(root: &Utf8Path, action: &str) -> Result<i32> {
    let podman_chosen = crate::world::docker::Engine::chosen()? == crate::world::docker::Engine::Podman;
    match action {
        "up" | "status" if podman_chosen => podman(action),
        "up" => up(root, false).map(|_| 0),
        "down" => down(root, false).map(|_| 0),
        "status" => status(root),
        other => {
            Err(crate::base::UsageError(format!("unknown engine action {other:?}: use up, status or down")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// Ends a stand-in started in its own process group, with its sleep.
    fn end_group(child: &mut std::process::Child) {
        // SAFETY: signals the process group this test created, by its ID.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }

    #[test]
    fn a_recorded_pid_that_is_now_another_engine_is_never_stopped() {
        // A state file left from before a reboot whose PID now belongs to another dockerd (here
        // a process whose command line names dockerd, with another data root).
        let tmp = crate::testutil::TempDir::new("engine-pid");
        let root = tmp.path();
        let mut other = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "dockerd", "--data-root=/var/lib/docker"])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = other.id();
        // Until the child has run sh, its command line is still this test's.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !alive(pid, "dockerd") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::create_dir_all(state_dir(root)).unwrap();
        let state = json!({"pid": pid, "host": "unix:///tmp/x.sock"});
        std::fs::write(state_dir(root).join("state.json"), state.to_string()).unwrap();
        assert!(alive(pid, "dockerd"), "the stand-in looks like a dockerd");
        assert!(!alive(pid, &engine_marker(root)));
        assert!(!down(root, true).unwrap(), "nothing of ours was running");
        assert!(matches!(other.try_wait(), Ok(None)), "the other process still runs");
        end_group(&mut other);
        // Our own engine's command line holds the marker.
        let mut ours = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "dockerd", &engine_marker(root)])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !alive(ours.id(), &engine_marker(root)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(alive(ours.id(), &engine_marker(root)));
        end_group(&mut ours);
    }

    #[test]
    fn the_socket_folder_is_private_and_planted_ones_are_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = crate::testutil::TempDir::new("private-dir");
        let dir = tmp.path().join("engine");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        // Again: fine; one of ours made 0755 by an older version is made private.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        let err = |p: &Utf8Path| format!("{:#}", private_dir(p).unwrap_err());
        // A symbolic link to a folder someone else controls.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(err(&link).contains("is a symbolic link") && err(&link).contains("rm -r"), "{}", err(&link));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(err(&file).contains("is not a folder"));
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(err(&open).contains("writable by others"), "{}", err(&open));
        // Another user's folder (the suite runs as root, as CI does).
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("the suite runs as root");
        assert!(err(&theirs).contains("belongs to user 65534"), "{}", err(&theirs));
    }

    #[test]
    fn a_stale_socket_does_not_answer() {
        let dir = crate::testutil::TempDir::new("socket");
        let path = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(socket_answers(&path));
        drop(listener);
        assert!(path.exists() && !socket_answers(&path), "the file is left, nothing listens");
        assert!(!socket_answers(&dir.path().join("none.sock")));
    }

    #[test]
    fn the_registry_starts_every_time_and_is_always_stopped() {
        let dir = crate::testutil::TempDir::new("registry");
        for _ in 0..20 {
            let r = Registry::start(dir.path()).expect("the registry starts");
            let (pid, data) = (r.pid, r.dir.clone());
            assert!(crate::world::registry::head(&r.addr, "/v2/").is_ok_and(|a| a.status == 200));
            drop(r);
            assert!(ended(pid) && !data.exists(), "stopped and cleaned up when dropped");
        }
    }
}
