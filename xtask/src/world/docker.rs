//! The one module that talks to the engine: connect (engine reachable, its platform), inspect
//! many images in one call, list them, build, tag, push, pull, remove. The engine is Docker, or
//! Podman (AI_INFRA_ENGINE=podman, or where only Podman is installed), always through its CLI.
//! Docker's questions asked on every run (version, inspect, list) go to the engine's API where
//! `api.rs` can reach it, else to the `docker` CLI; everything else goes through the CLI.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use serde_json::{Map, Value};
use xshell::{cmd, Shell};

use crate::repo::reference::{self, Reference};

/// Whether `program` is a file in one of PATH's folders.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// Which engine's CLI the tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// AI_INFRA_ENGINE when set (a value other than docker or podman is a usage error); else
    /// Docker, unless only Podman is installed.
    pub fn chosen() -> Result<Engine> {
        match std::env::var("AI_INFRA_ENGINE").ok().filter(|v| !v.is_empty()).as_deref() {
            Some("docker") => Ok(Engine::Docker),
            Some("podman") => Ok(Engine::Podman),
            Some(other) => Err(crate::UsageError(format!(
                "AI_INFRA_ENGINE={other:?} is not an engine this tool knows: set it to docker or podman, or unset it"
            ))
            .into()),
            None if !on_path("docker") && on_path("podman") => Ok(Engine::Podman),
            None => Ok(Engine::Docker),
        }
    }

    /// The chosen engine; an invalid AI_INFRA_ENGINE (refused by `main` first) means Docker.
    pub fn current() -> Engine {
        Engine::chosen().unwrap_or(Engine::Docker)
    }

    /// The engine's command-line program, also its name in reports.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The ignore files of a build context, the first found wins: Buildah (Podman's builder)
    /// reads `.containerignore` before `.dockerignore`; Docker reads only `.dockerignore`.
    pub fn ignore_files(self) -> &'static [&'static str] {
        match self {
            Engine::Docker => &[".dockerignore"],
            Engine::Podman => &[".containerignore", ".dockerignore"],
        }
    }
}

/// The engine: which one, where it is, and (once asked) what it says of itself. Each call
/// makes its own shell, so calls can run from several threads at once.
pub struct Docker {
    pub engine: Engine,
    /// DOCKER_HOST for the docker CLI, when not the default.
    host_env: Option<String>,
    /// Where the engine is, for messages.
    pub host: String,
    server: std::sync::OnceLock<Server>,
    /// How builds run, once decided for a run that builds, and what to say of it.
    builds: std::sync::OnceLock<(Builds, String)>,
    /// Whether that was said.
    said: std::sync::Once,
}

/// How the engine's CLI on PATH reads `.dockerignore` when it sends a build context (asked once
/// per run, and only where a pattern makes it matter; `docker --version` needs no engine;
/// `podman --version` reads as Podman's dialect).
pub fn ignore_dialect() -> crate::repo::ignore::Dialect {
    static DIALECT: std::sync::OnceLock<crate::repo::ignore::Dialect> = std::sync::OnceLock::new();
    *DIALECT.get_or_init(|| {
        let version = std::process::Command::new(Engine::current().program())
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        crate::repo::ignore::Dialect::of_cli(&version)
    })
}

/// The builder `docker build` uses; Podman always builds with Buildah.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    BuildKit,
    Legacy,
    Buildah,
}

impl Builder {
    pub fn name(self) -> &'static str {
        match self {
            Builder::BuildKit => "BuildKit",
            Builder::Legacy => "the legacy builder",
            Builder::Buildah => "Buildah",
        }
    }
}

/// How this run's builds are made: the builder, and whether RUN needs the host network (an
/// engine without a bridge network, which BuildKit needs for RUN by default; Podman, which
/// would otherwise create a bridge of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builds {
    pub builder: Builder,
    pub host_network: bool,
}

/// Decides the builder: `AI_INFRA_BUILDER` (buildkit or legacy) forces one, else
/// `DOCKER_BUILDKIT` as the CLI reads it, else the CLI's own default (BuildKit from 23.0, where
/// the buildx plugin builds; the legacy builder before). `cli` is the CLI's version, `buildx`
/// whether its buildx plugin answers. A choice the CLI cannot make is an error saying what to do.
pub fn choose_builder(forced: Option<&str>, docker_buildkit: Option<&str>, cli: &str, buildx: bool) -> Result<Builder> {
    let major: u32 = cli.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let wanted = match forced.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) if f.eq_ignore_ascii_case("buildkit") => Some(Builder::BuildKit),
        Some(f) if f.eq_ignore_ascii_case("legacy") => Some(Builder::Legacy),
        Some(f) => bail!("AI_INFRA_BUILDER={f:?} is not a builder: use buildkit or legacy"),
        None => match docker_buildkit.map(str::trim) {
            Some("1") | Some("true") => Some(Builder::BuildKit),
            Some("0") | Some("false") => Some(Builder::Legacy),
            _ => None,
        },
    };
    let builder = wanted.unwrap_or(if major >= 23 && buildx { Builder::BuildKit } else { Builder::Legacy });
    if builder == Builder::BuildKit && major >= 23 && !buildx {
        bail!(
            "BuildKit was asked for, but this docker CLI ({cli}) has no buildx plugin, which it needs for BuildKit: install docker-buildx, use a docker CLI that builds with BuildKit itself (20.10 with DOCKER_BUILDKIT=1), or set AI_INFRA_BUILDER=legacy"
        );
    }
    Ok(builder)
}

/// What `docker version` says of the engine.
#[derive(Debug, Clone)]
pub struct Server {
    pub version: String,
    pub os: String,
    pub arch: String,
}

/// What `docker image inspect` says of one image; every field is optional, as engines omit
/// unset ones.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub id: Option<String>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub size: Option<u64>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub labels: Map<String, Value>,
    pub layers: Option<usize>,
    /// `Config.OnBuild`: the triggers a build FROM this image runs first.
    pub onbuild: Vec<String>,
}

impl Image {
    pub fn from_json(v: &Value) -> Image {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let list = |p: &str| -> Vec<String> {
            v.pointer(p)
                .and_then(Value::as_array)
                .map_or_else(Vec::new, |a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        };
        let layers = v.pointer("/RootFS/Layers").and_then(Value::as_array).map(Vec::len);
        // Podman prints the ID without its algorithm, and counts an image's config in its
        // size, so that an image of no layers has a size; both read here as Docker says them.
        let id = s("/Id").map(|id| if id.contains(':') { id } else { format!("sha256:{id}") });
        let size = v.pointer("/Size").and_then(Value::as_u64).map(|n| if layers.unwrap_or(0) == 0 { 0 } else { n });
        Image {
            id,
            repo_tags: list("/RepoTags"),
            repo_digests: list("/RepoDigests"),
            created: s("/Created"),
            size,
            os: s("/Os"),
            arch: s("/Architecture"),
            labels: v.pointer("/Config/Labels").and_then(Value::as_object).cloned().unwrap_or_default(),
            layers,
            onbuild: list("/Config/OnBuild"),
        }
    }
}

/// The last meaningful lines of a build (or engine) log: without the builder's deprecation
/// notices (a `DEPRECATED:` line and the indented lines that go on with it).
pub fn tail(log: &str, n: usize) -> String {
    let mut notice = false;
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            let t = l.trim_start();
            notice = t.starts_with("DEPRECATED") || (notice && t.len() < l.len());
            !t.is_empty() && !notice && !t.contains("docs.docker.com/go/buildx")
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The arguments of `docker build` for a request, under the run's builder.
fn build_args(req: &BuildRequest, builds: Builds) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into(), "-f".into(), req.dockerfile.to_string()];
    if builds.builder == Builder::Buildah {
        // Docker's image format keeps SHELL, HEALTHCHECK and ONBUILD.
        args.push("--format=docker".into());
    }
    for (k, v) in req.args {
        args.push("--build-arg".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(t) = req.target {
        args.push("--target".into());
        args.push(t.to_string());
    }
    for (k, v) in req.labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    for t in req.tags {
        args.push("-t".into());
        args.push(t.clone());
    }
    if req.no_cache {
        args.push("--no-cache".into());
    }
    if builds.builder == Builder::BuildKit {
        args.push("--progress=plain".into());
    }
    if builds.host_network {
        args.push("--network".into());
        args.push("host".into());
    }
    // The legacy builder keeps the containers of failed steps unless told otherwise.
    args.push("--force-rm".into());
    args.push("--iidfile".into());
    args.push(req.iidfile.to_string());
    args.push(req.context.to_string());
    args
}

/// Turns a failed docker command into an error a person can act on.
fn failure(what: &str, host: &str, stderr: &str) -> anyhow::Error {
    let line =
        stderr.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.starts_with("DEPRECATED")).unwrap_or("no output");
    if stderr.contains("Cannot connect to the Docker daemon") || stderr.contains("Is the docker daemon running") {
        return anyhow::anyhow!(
            "no Docker engine answers at {host}: start one with `cargo xtask engine up`, or set DOCKER_HOST to a running engine ({line})"
        );
    }
    if line.contains("page not found") || line.contains("malformed HTTP") || line.contains("not a Docker") {
        return anyhow::anyhow!("{host} answers, but not as a Docker engine ({line}): point DOCKER_HOST at an engine, or run `cargo xtask engine up`");
    }
    anyhow::anyhow!("{what} failed: {line}")
}

/// Podman 4's storage changes an image's names by reading them and writing them back whole:
/// two processes that name the same image at once lose one of the names (eight `podman tag`
/// of one image at once keep two of them). Under Podman every change of names this tool makes
/// (tag, removal, pull, load) holds this machine-wide lock, since the storage is the machine's;
/// Docker's daemon orders them itself. The lock is released when the guard is dropped.
pub fn podman_names_lock() -> Option<std::fs::File> {
    let path = std::env::temp_dir().join("ai-infra-podman-names.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    file.lock().ok()?;
    Some(file)
}

impl Docker {
    /// The Docker engine at this address (None: the default socket), without calling it yet.
    pub fn with_host(host: Option<&str>) -> Docker {
        let shown =
            host.map_or_else(|| "unix:///var/run/docker.sock (DOCKER_HOST is not set)".to_string(), str::to_string);
        Docker {
            engine: Engine::Docker,
            host_env: host.map(str::to_string),
            host: shown,
            server: std::sync::OnceLock::new(),
            builds: std::sync::OnceLock::new(),
            said: std::sync::Once::new(),
        }
    }

    /// Podman, which runs without a daemon: its CLI is the engine, on the local storage.
    pub fn podman() -> Docker {
        Docker {
            engine: Engine::Podman,
            host_env: None,
            host: "podman (no daemon, local storage)".to_string(),
            server: std::sync::OnceLock::new(),
            builds: std::sync::OnceLock::new(),
            said: std::sync::Once::new(),
        }
    }

    /// The engine as every report names it on its first line: `docker at ADDRESS` or
    /// `podman (no daemon)`.
    pub fn describe(&self) -> String {
        match self.engine {
            Engine::Docker => format!("docker at {}", self.host),
            Engine::Podman => "podman (no daemon)".to_string(),
        }
    }

    /// The CLI program of this engine.
    pub fn program(&self) -> &'static str {
        self.engine.program()
    }

    /// Held while this engine's image names change: the machine-wide lock under Podman
    /// (`podman_names_lock`), nothing under Docker.
    fn names_guard(&self) -> Option<std::fs::File> {
        (self.engine == Engine::Podman).then(podman_names_lock).flatten()
    }

    /// The engine's CLI cannot be run at all.
    fn no_cli(&self, e: xshell::Error) -> anyhow::Error {
        match self.engine {
            Engine::Docker => anyhow::anyhow!("cannot run the docker command ({e}): install a Docker client, or run `cargo xtask engine up` (as root it installs Debian's docker.io)"),
            Engine::Podman => anyhow::anyhow!("cannot run the podman command ({e}): install Podman (Debian: `apt-get install podman`), or unset AI_INFRA_ENGINE to use Docker"),
        }
    }

    /// Podman asks a plain-HTTP registry only with `--tls-verify=false`; Docker's engine
    /// decides that itself (loopback, or its insecure-registries).
    fn tls_flags(&self, image: &str) -> Vec<&'static str> {
        let plain = image.contains('/') && reference::plain_http(reference::host(image));
        if self.engine == Engine::Podman && plain {
            vec!["--tls-verify=false"]
        } else {
            Vec::new()
        }
    }

    /// `docker ARGS` (or `podman ARGS`), reaching this engine; a failure is an error about `what`.
    fn checked(&self, what: &str, args: &[&str]) -> Result<std::process::Output> {
        let sh = self.sh()?;
        let program = self.program();
        let out = cmd!(sh, "{program} {args...}").quiet().ignore_status().output().map_err(|e| self.no_cli(e))?;
        if !out.status.success() {
            return Err(failure(what, &self.host, &String::from_utf8_lossy(&out.stderr)));
        }
        Ok(out)
    }

    /// A `docker` process reaching this engine, for the calls that must stream or be ended.
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(self.program());
        if let Some(h) = &self.host_env {
            command.env("DOCKER_HOST", h);
        }
        command
    }

    /// A shell whose docker commands reach this engine.
    pub fn sh(&self) -> Result<Shell> {
        let sh = Shell::new()?;
        if let Some(h) = &self.host_env {
            sh.set_var("DOCKER_HOST", h);
        }
        Ok(sh)
    }

    /// The platform this engine had when last asked, remembered per engine address under
    /// `root`'s state folder; None when never asked. A status check trusts it only while
    /// every image agrees with it, and asks the engine again otherwise.
    pub fn remembered_platform(&self, root: &Utf8Path) -> Option<(String, String)> {
        let text = std::fs::read_to_string(crate::base::state_dir(root).join("engine-platform")).ok()?;
        let mut f = text.trim_end().splitn(3, '\t');
        let (host, os, arch) = (f.next()?, f.next()?, f.next()?);
        (host == self.host && !os.is_empty()).then(|| (os.to_string(), arch.to_string()))
    }

    /// Asks the engine for its platform and remembers it for `root`.
    pub fn remember_platform(&self, root: &Utf8Path) -> Result<(String, String)> {
        let (os, arch) = self.platform()?;
        let _ = crate::base::atomic::write(
            &crate::base::state_dir(root).join("engine-platform"),
            format!("{}\t{os}\t{arch}\n", self.host).as_bytes(),
        );
        Ok((os, arch))
    }

    /// The engine's OS and architecture; the first call checks that the engine answers.
    pub fn platform(&self) -> Result<(String, String)> {
        let s = self.server()?;
        Ok((s.os, s.arch))
    }

    /// The engine's version and platform, from one `docker version`; an engine that does not
    /// answer, or not as an engine, is an error that says what to do.
    pub fn server(&self) -> Result<Server> {
        if let Some(s) = self.server.get() {
            return Ok(s.clone());
        }
        if self.engine == Engine::Podman {
            let s = self.podman_server()?;
            let _ = self.server.set(s.clone());
            return Ok(s);
        }
        let sh = self.sh()?;
        let host = &self.host;
        let format = "{{json .}}";
        let out = match cmd!(sh, "docker version --format {format}").quiet().ignore_status().output() {
            Ok(o) => o,
            Err(e) => return Err(self.no_cli(e)),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        let server = v.get("Server").filter(|s| !s.is_null());
        let Some(server) = server.filter(|_| out.status.success()) else {
            let line = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no answer");
            bail!("no Docker engine answers at {host}: start one with `cargo xtask engine up`, or set DOCKER_HOST to a running engine ({line})");
        };
        let field = |k: &str| server.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let s = Server { version: field("Version"), os: field("Os"), arch: field("Arch") };
        let _ = self.server.set(s.clone());
        Ok(s)
    }

    /// Podman in local mode has no server: its client is the engine, so `podman version`
    /// names the platform under Client.
    fn podman_server(&self) -> Result<Server> {
        let sh = self.sh()?;
        let out =
            cmd!(sh, "podman version --format json").quiet().ignore_status().output().map_err(|e| self.no_cli(e))?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let side =
            v.get("Server").filter(|s| !s.is_null()).or_else(|| v.get("Client")).filter(|_| out.status.success());
        let Some(side) = side else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no answer");
            bail!("podman does not answer ({line}): check `podman info`, or unset AI_INFRA_ENGINE to use Docker");
        };
        let field = |k: &str| side.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let os_arch = field("OsArch");
        let (os, arch) = os_arch.split_once('/').unwrap_or(("", ""));
        let os = if os.is_empty() { field("Os") } else { os.to_string() };
        Ok(Server { version: field("Version"), os, arch: arch.to_string() })
    }

    /// Inspects many images in one `docker image inspect` (or `podman image inspect`); the
    /// result maps each requested name that exists to what the engine says of it, with every
    /// name and digest of each image (push-deps compares digests).
    pub fn inspect(&self, names: &[String]) -> Result<BTreeMap<String, Image>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sh = self.sh()?;
        let program = self.program();
        let inspect = || cmd!(sh, "{program} image inspect {names...}").quiet().ignore_status().output();
        let mut out = inspect().map_err(|e| self.no_cli(e))?;
        // Podman prints `[]` for names it does not know; nothing at all where another process
        // removed an image while it read it (the race of `list`): it is asked again.
        for _ in 0..5 {
            let raced = self.engine == Engine::Podman
                && !out.status.success()
                && out.stdout.trim_ascii().is_empty()
                && podman_raced(&String::from_utf8_lossy(&out.stderr));
            if !raced {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            out = inspect().map_err(|e| self.no_cli(e))?;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        parse_inspect(names, &stdout, &stderr, out.status.success(), &self.host, self.engine == Engine::Podman)
    }

    /// Decides how this run builds (the builder; the host network where the engine has no
    /// bridge and BuildKit runs RUN), says so once, and keeps it for every build of the run.
    pub fn prepare_builds(&self) -> Result<Builds> {
        let (builds, said) = self.decide_builds()?;
        self.said.call_once(|| println!("{said}"));
        Ok(*builds)
    }

    /// How this run builds, decided once without saying so (a plan asks it before the run says
    /// it builds).
    pub fn builds(&self) -> Result<Builds> {
        Ok(self.decide_builds()?.0)
    }

    fn decide_builds(&self) -> Result<&(Builds, String)> {
        if let Some(b) = self.builds.get() {
            return Ok(b);
        }
        if self.engine == Engine::Podman {
            // BuildKit and the legacy builder are Docker's: Podman builds with Buildah only,
            // and DOCKER_BUILDKIT means nothing to it.
            if let Some(f) = std::env::var("AI_INFRA_BUILDER").ok().filter(|f| !f.trim().is_empty()) {
                bail!("AI_INFRA_BUILDER={f:?} is not a builder under Podman, which builds with Buildah only: unset AI_INFRA_BUILDER, or set AI_INFRA_ENGINE=docker for buildkit or legacy");
            }
            let version = self.server().map(|s| s.version).unwrap_or_default();
            let said = format!("builder: Buildah (podman {version}); builds run with --network host");
            return Ok(self.builds.get_or_init(|| (self.default_builds(), said)));
        }
        let sh = self.sh()?;
        let client = "{{.Client.Version}}";
        let cli = cmd!(sh, "docker version --format {client}").quiet().ignore_status().ignore_stderr().read()?;
        let cli = cli.trim().to_string();
        let buildx = cmd!(sh, "docker buildx version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
        let forced = std::env::var("AI_INFRA_BUILDER").ok();
        let env = std::env::var("DOCKER_BUILDKIT").ok();
        let builder = choose_builder(forced.as_deref(), env.as_deref(), &cli, buildx)?;
        let host_network = builder == Builder::BuildKit
            && cmd!(sh, "docker network inspect bridge").quiet().ignore_stdout().ignore_stderr().run().is_err();
        let why = match (&forced, &env) {
            (Some(_), _) => "AI_INFRA_BUILDER",
            (None, Some(_)) => "DOCKER_BUILDKIT",
            _ => "the docker CLI's default",
        };
        let mut said = format!("builder: {} (docker CLI {cli}, {why})", builder.name());
        if host_network {
            said.push_str("\nnote: the engine has no bridge network: BuildKit builds run with --network host");
        }
        Ok(self.builds.get_or_init(|| (Builds { builder, host_network }, said)))
    }

    /// How builds run when `prepare_builds` was not asked: the legacy builder under Docker,
    /// Buildah on the host network under Podman.
    fn default_builds(&self) -> Builds {
        match self.engine {
            Engine::Docker => Builds { builder: Builder::Legacy, host_network: false },
            Engine::Podman => Builds { builder: Builder::Buildah, host_network: true },
        }
    }

    /// Runs `docker build`, its output going line by line to `log` (and, with `echo`, to the
    /// terminal with that prefix). `cancel` ends the build. Builds must be interruptible and
    /// streamed, which xshell 0.2 cannot do, so this call uses std::process directly.
    pub fn build(
        &self,
        req: &BuildRequest,
        log: &Utf8Path,
        echo: Option<&str>,
        cancel: &AtomicBool,
    ) -> Result<BuildEnd> {
        let builds = self.builds.get().map(|(b, _)| *b).unwrap_or_else(|| self.default_builds());
        let args = build_args(req, builds);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {parent}"))?;
        }
        let file = std::fs::File::create(log).with_context(|| format!("cannot write {log}"))?;
        let file = std::sync::Mutex::new(std::io::LineWriter::new(file));
        let mut command = self.command();
        if self.engine == Engine::Docker {
            command.env("DOCKER_BUILDKIT", if builds.builder == Builder::BuildKit { "1" } else { "0" });
        }
        command
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("cannot run {} build", self.program()))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let status = std::thread::scope(|s| {
            let copy = |stream: Box<dyn std::io::Read + Send>| {
                let file = &file;
                s.spawn(move || {
                    use std::io::{BufRead, Write};
                    for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                        let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
                        if let Some(prefix) = echo {
                            println!("{prefix} | {line}");
                        }
                    }
                })
            };
            if let Some(o) = out {
                copy(Box::new(o));
            }
            if let Some(e) = err {
                copy(Box::new(e));
            }
            loop {
                if cancel.load(Ordering::Relaxed) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(None);
                }
                match child.try_wait() {
                    Ok(Some(status)) => return Ok(Some(status)),
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                    Err(e) => return Err(anyhow::anyhow!("waiting for {} build: {e}", self.program())),
                }
            }
        })?;
        Ok(match status {
            None => BuildEnd::Interrupted,
            Some(s) if s.success() => BuildEnd::Built,
            Some(_) => BuildEnd::Failed,
        })
    }

    /// Pulls an image; the error is the engine's last line. A pull that prints nothing for
    /// `AI_INFRA_PULL_TIMEOUT` seconds (default 300: a layer of a gigabyte on a slow link
    /// downloads in silence) is ended: the registry stopped answering.
    pub fn pull(&self, image: &str) -> Result<()> {
        let idle = pull_timeout()?;
        let program = self.program();
        let mut command = self.command();
        // Not --quiet: the progress lines are what shows the pull is still moving.
        command.arg("pull").args(self.tls_flags(image)).arg(image);
        let _names = self.names_guard();
        let Some(out) = run_bounded(command, idle).with_context(|| format!("cannot run {program} pull"))? else {
            bail!(
                "{program} pull {image}: the registry stopped answering (no progress for {} s; AI_INFRA_PULL_TIMEOUT sets the bound)",
                idle.as_secs()
            );
        };
        if !out.status.success() {
            return Err(failure(&format!("{program} pull {image}"), &self.host, &String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// `docker manifest inspect -v REF`, asked of the registry by the CLI itself; None when it
    /// has not answered within `timeout` (the process is then ended).
    pub fn manifest_inspect(
        &self,
        reference: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<std::process::Output>> {
        let mut command = self.command();
        // Podman's `manifest inspect` reads the registry itself and has no -v.
        let verbose: &[&str] = if self.engine == Engine::Podman { &[] } else { &["-v"] };
        command.args(["manifest", "inspect"]).args(verbose).arg(reference);
        run_bounded(command, timeout).with_context(|| format!("cannot run {} manifest inspect", self.program()))
    }

    /// `docker save IMAGE` as a running process whose stdout is the tar: the caller streams it
    /// (hashing it and showing progress) rather than letting the CLI write a file it cannot see.
    pub fn save(&self, image: &str) -> Result<std::process::Child> {
        let mut command = self.command();
        command.args(["save", image]).stdin(std::process::Stdio::null());
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        command.spawn().with_context(|| format!("cannot run {} save {image}", self.program()))
    }

    /// Loads the images of a tar written by `docker save`.
    pub fn load(&self, file: &Utf8Path) -> Result<()> {
        let _names = self.names_guard();
        self.checked(&format!("{} load -i {file}", self.program()), &["load", "--quiet", "-i", file.as_str()]).map(drop)
    }

    /// Pushes an image name to its registry. A push that prints nothing for
    /// `AI_INFRA_PUSH_TIMEOUT` seconds (default 120) is ended: the registry stopped answering.
    pub fn push(&self, image: &str) -> Result<()> {
        let idle = push_timeout()?;
        let program = self.program();
        let mut command = self.command();
        command.arg("push").args(self.tls_flags(image)).arg(image);
        let registry = reference::host(image);
        let Some(out) = run_bounded(command, idle).with_context(|| format!("cannot run {program} push"))? else {
            bail!(
                "{program} push {image}: the registry stopped answering (no progress for {} s; AI_INFRA_PUSH_TIMEOUT sets the bound); the local image is kept",
                idle.as_secs()
            );
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("unauthorized")
                || stderr.contains("authentication required")
                || stderr.contains("denied")
            {
                bail!("{program} push {image}: the registry refused it: run `{program} login {registry}`");
            }
            return Err(failure(&format!("{program} push {image}"), &self.host, &stderr));
        }
        Ok(())
    }

    /// Every tagged image: (repository:tag, ID), from one engine call.
    pub fn list(&self) -> Result<Vec<(String, String)>> {
        if self.engine == Engine::Podman {
            // Podman's listing fails as a whole when another process removes an image while it
            // reads the storage ("image not known", or its manifest "file does not exist" while
            // it looks for an image's parent): the listing is asked again.
            let mut tries = 0;
            let out = loop {
                match self.checked("podman image ls", &["image", "ls", "--format", "json"]) {
                    Err(e) if tries < 5 && podman_raced(&format!("{e:#}")) => tries += 1,
                    other => break other?,
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            return parse_podman_list(&String::from_utf8_lossy(&out.stdout));
        }
        let out = self.checked("docker image ls", &["image", "ls", "--format", "{{json .}}"])?;
        let mut images = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .map_err(|_| anyhow::anyhow!("docker image ls printed something that is not JSON: {line:?}"))?;
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let (repo, tag) = (field("Repository"), field("Tag"));
            if repo != "<none>" && tag != "<none>" && !repo.is_empty() {
                images.push((format!("{repo}:{tag}"), field("ID")));
            }
        }
        Ok(images)
    }

    /// Every tagged image whose name's last component starts with `prefix`, by name: one
    /// listing, then one inspection of the names it found.
    pub fn inspect_named(&self, prefix: &str) -> Result<BTreeMap<String, Image>> {
        let ours = |n: &str| Reference::parse(n).name().starts_with(prefix);
        let names: Vec<String> = self.list()?.into_iter().map(|(n, _)| n).filter(|n| ours(n)).collect();
        self.inspect(&names)
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let _names = self.names_guard();
        self.checked(&format!("{} tag {source} {target}", self.program()), &["tag", source, target]).map(drop)
    }

    /// Removes images by name, in one engine call; returns each name that is still there
    /// afterwards, with the engine's reason.
    pub fn remove(&self, names: &[String]) -> Result<Vec<(String, String)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let sh = self.sh()?;
        let program = self.program();
        let names_guard = self.names_guard();
        let out = cmd!(sh, "{program} image rm {names...}").quiet().ignore_status().output()?;
        drop(names_guard);
        if out.status.success() {
            return Ok(Vec::new());
        }
        // The outcome of each removal is what the engine holds now, not a guess from the words
        // of its messages.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let left = self.inspect(names)?;
        Ok(names
            .iter()
            .filter(|n| left.contains_key(*n))
            .map(|n| {
                let why = stderr.lines().find(|l| l.contains(n.as_str())).or_else(|| stderr.lines().next_back());
                (n.clone(), why.unwrap_or("not removed").trim().to_string())
            })
            .collect())
    }
}

/// The bound on a push's silence: `AI_INFRA_PUSH_TIMEOUT` seconds, default 120.
pub fn push_timeout() -> Result<std::time::Duration> {
    bound("AI_INFRA_PUSH_TIMEOUT", 120)
}

/// The bound on a pull's silence: `AI_INFRA_PULL_TIMEOUT` seconds, default 300.
pub fn pull_timeout() -> Result<std::time::Duration> {
    bound("AI_INFRA_PULL_TIMEOUT", 300)
}

/// A bound in whole seconds from the environment variable `var`, or `default`.
fn bound(var: &str, default: u64) -> Result<std::time::Duration> {
    match std::env::var(var) {
        Err(_) => Ok(std::time::Duration::from_secs(default)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n)),
            _ => Err(crate::base::UsageError(format!(
                "{var}={v:?} is not a whole number of seconds (at least 1): fix or unset it"
            ))
            .into()),
        },
    }
}

/// Runs a command to its end, reading its output while it runs, so that a large answer never
/// fills the pipe and stalls it; ends it and returns None when it prints nothing for `idle`.
pub fn run_bounded(
    mut command: std::process::Command,
    idle: std::time::Duration,
) -> Result<Option<std::process::Output>> {
    use std::io::Read;
    use std::time::Instant;
    // A bounded wait needs a child process to end, which xshell 0.2 cannot give.
    command.stdin(std::process::Stdio::null());
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn()?;
    let out: Option<Box<dyn Read + Send>> = child.stdout.take().map(|o| Box::new(o) as _);
    let err: Option<Box<dyn Read + Send>> = child.stderr.take().map(|e| Box::new(e) as _);
    let last = std::sync::Mutex::new(Instant::now());
    std::thread::scope(|s| {
        let read = |stream: Option<Box<dyn Read + Send>>| {
            let last = &last;
            s.spawn(move || {
                let mut all = Vec::new();
                let Some(mut stream) = stream else { return all };
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                }
                all
            })
        };
        let (stdout, stderr) = (read(out), read(err));
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if last.lock().unwrap_or_else(|e| e.into_inner()).elapsed() > idle {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
        Ok(status.map(|status| std::process::Output { status, stdout, stderr }))
    })
}

/// Whether Podman failed because another process removed an image while it read the storage
/// (Podman 4 reads an image's record, then its manifest or parent: either may be gone by then).
fn podman_raced(stderr: &str) -> bool {
    stderr.contains("image not known") || stderr.contains("file does not exist")
}

/// Reads `podman image ls --format json`: one array of images, each with its Names (every
/// repository:tag, `localhost/` for what it built, listed here as Docker would) and its Id.
pub fn parse_podman_list(stdout: &str) -> Result<Vec<(String, String)>> {
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|_| {
        let head: String = stdout.trim().chars().take(60).collect();
        anyhow::anyhow!("podman image ls printed something that is not a JSON array: {head:?}")
    })?;
    let mut images = Vec::new();
    for i in v.as_array().into_iter().flatten() {
        let id = i.get("Id").and_then(Value::as_str).unwrap_or_default();
        for n in i.get("Names").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            let pair = (reference::familiar(n).to_string(), id.to_string());
            if !images.contains(&pair) {
                images.push(pair);
            }
        }
    }
    Ok(images)
}

/// Reads `docker image inspect` output: a JSON array of the images found, one stderr line per
/// missing name (Podman: "image not known"). Anything else is an error that says so.
pub fn parse_inspect(
    names: &[String],
    stdout: &str,
    stderr: &str,
    success: bool,
    host: &str,
    podman: bool,
) -> Result<BTreeMap<String, Image>> {
    let missing_line = |l: &str| {
        let l = l.to_lowercase();
        l.contains("no such image") || l.contains("image not known")
    };
    let parsed: Value = match serde_json::from_str(stdout.trim()) {
        Ok(v @ Value::Array(_)) => v,
        _ if !success && stdout.trim().is_empty() && !stderr.lines().any(missing_line) => {
            return Err(failure("docker image inspect", host, stderr));
        }
        _ => {
            let head: String = stdout.trim().chars().take(60).collect();
            bail!("docker image inspect printed something that is not the expected JSON array ({head:?}): check that DOCKER_HOST ({host}) is a Docker engine");
        }
    };
    let unexpected: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !missing_line(l)).collect();
    if !unexpected.is_empty() && !success {
        return Err(failure("docker image inspect", host, &unexpected.join("\n")));
    }
    Ok(matching(names, parsed.as_array().map_or(&[][..], Vec::as_slice), podman))
}

/// Which of the inspected images each requested name names (by its familiar form: under
/// Docker `localhost/x` is another repository than `x`, under Podman it is where `x` is built).
fn matching(names: &[String], inspected: &[Value], podman: bool) -> BTreeMap<String, Image> {
    let familiar = if podman { reference::familiar } else { reference::docker_familiar };
    let wanted: BTreeSet<&str> = names.iter().map(|n| familiar(n)).collect();
    let mut found = BTreeMap::new();
    for v in inspected {
        let image = Image::from_json(v);
        for name in image.repo_tags.iter().chain(&image.repo_digests) {
            let f = familiar(name);
            if wanted.contains(f) {
                for n in names.iter().filter(|n| familiar(n) == f) {
                    found.insert(n.clone(), image.clone());
                }
            }
        }
    }
    found
}

/// How a build ended.
#[derive(Debug, PartialEq)]
pub enum BuildEnd {
    Built,
    Failed,
    Interrupted,
}

pub struct BuildRequest<'a> {
    pub context: &'a Utf8Path,
    pub dockerfile: &'a Utf8Path,
    pub target: Option<&'a str>,
    pub args: &'a BTreeMap<String, String>,
    pub labels: &'a [(String, String)],
    pub tags: &'a [String],
    pub no_cache: bool,
    pub iidfile: &'a Utf8Path,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_json_with_missing_fields() {
        let v: Value = serde_json::from_str(
            r#"{"Id":"sha256:1","RepoTags":["a:b"],"Size":0,"RootFS":{"Type":"layers"},"Config":{}}"#,
        )
        .unwrap();
        let i = Image::from_json(&v);
        assert_eq!(i.id.as_deref(), Some("sha256:1"));
        assert_eq!(i.size, Some(0));
        assert_eq!(i.layers, None);
        assert!(i.labels.is_empty() && i.os.is_none() && i.created.is_none());
        let i = Image::from_json(&Value::Null);
        assert!(i.id.is_none() && i.repo_tags.is_empty());
    }

    #[test]
    fn inspect_output() {
        let names = vec!["ai-infra-a:t".to_string(), "python:3.11".to_string(), "ai-infra-b:t".to_string()];
        let out = r#"[{"Id":"sha256:1","RepoTags":["ai-infra-a:t"]},{"Id":"sha256:2","RepoTags":["python:3.11"]}]"#;
        let found = parse_inspect(&names, out, "Error: No such image: ai-infra-b:t\n", false, "h", false).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), vec!["ai-infra-a:t", "python:3.11"]);
        assert!(parse_inspect(&names, "[]", "", true, "h", false).unwrap().is_empty());
        let err = parse_inspect(&names, "<html>oops</html>", "", true, "h", false).unwrap_err().to_string();
        assert!(err.contains("not the expected JSON") && err.contains("<html>"), "{err}");
        let err = parse_inspect(&names, "{\"Id\": 1}", "", true, "h", false).unwrap_err().to_string();
        assert!(err.contains("not the expected JSON"), "{err}");
        let err = parse_inspect(&names, "", "permission denied while trying to connect", false, "h", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("permission denied"), "{err}");
    }

    #[test]
    fn the_builder_is_chosen_as_docker_would() {
        use Builder::*;
        let c = |f: Option<&str>, e: Option<&str>, cli: &str, bx: bool| choose_builder(f, e, cli, bx);
        assert_eq!(c(None, None, "28.2.2", true).unwrap(), BuildKit);
        assert_eq!(c(None, None, "28.2.2", false).unwrap(), Legacy);
        assert_eq!(c(None, None, "20.10.24+dfsg1", false).unwrap(), Legacy);
        assert_eq!(c(None, Some("1"), "20.10.24+dfsg1", false).unwrap(), BuildKit);
        assert_eq!(c(None, Some("0"), "28.2.2", true).unwrap(), Legacy);
        assert_eq!(c(Some("legacy"), Some("1"), "28.2.2", true).unwrap(), Legacy);
        assert_eq!(c(Some("BuildKit"), None, "20.10.24", false).unwrap(), BuildKit);
        let e = c(Some("buildkit"), None, "28.2.2", false).unwrap_err().to_string();
        assert!(e.contains("no buildx plugin") && e.contains("AI_INFRA_BUILDER=legacy"), "{e}");
        assert!(c(None, Some("1"), "28.2.2", false).is_err());
        assert!(c(Some("kaniko"), None, "28.2.2", true).unwrap_err().to_string().contains("not a builder"));
    }

    #[test]
    fn bounded_runs_read_large_answers_and_end_silent_ones() {
        // 1 MiB is far beyond a pipe's buffer: read only after the exit, it would never end.
        let mut big = std::process::Command::new("sh");
        big.args(["-c", "head -c 1048576 /dev/zero; echo done >&2"]);
        let out = run_bounded(big, std::time::Duration::from_secs(5)).unwrap().expect("it ends");
        assert!(out.status.success());
        assert_eq!((out.stdout.len(), out.stderr.as_slice()), (1_048_576, &b"done\n"[..]));
        let mut silent = std::process::Command::new("sleep");
        silent.arg("30");
        let t = std::time::Instant::now();
        assert!(run_bounded(silent, std::time::Duration::from_millis(300)).unwrap().is_none());
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // Output keeps it going: the bound is on silence, not on the whole run.
        let mut talking = std::process::Command::new("sh");
        talking.args(["-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.2; done"]);
        let out = run_bounded(talking, std::time::Duration::from_millis(600)).unwrap().expect("it talks");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n4\n5\n");
    }

    #[test]
    fn build_argv() {
        let args: BTreeMap<String, String> = [("IMAGE_TAG".to_string(), "v1".to_string())].into();
        let labels = [("ai-infra.inputs".to_string(), "{}".to_string())];
        let tags = ["r.io/ai-infra-app:v1".to_string(), "ai-infra-app:v1".to_string()];
        let req = BuildRequest {
            context: Utf8Path::new("/ctx"),
            dockerfile: Utf8Path::new("/ctx/Dockerfile"),
            target: Some("app"),
            args: &args,
            labels: &labels,
            tags: &tags,
            no_cache: true,
            iidfile: Utf8Path::new("/iid"),
        };
        let legacy = build_args(&req, Builds { builder: Builder::Legacy, host_network: false });
        assert_eq!(
            legacy.join(" "),
            "build -f /ctx/Dockerfile --build-arg IMAGE_TAG=v1 --target app --label ai-infra.inputs={} \
             -t r.io/ai-infra-app:v1 -t ai-infra-app:v1 --no-cache --force-rm --iidfile /iid /ctx"
        );
        let kit = build_args(
            &BuildRequest { target: None, no_cache: false, ..req },
            Builds { builder: Builder::BuildKit, host_network: true },
        );
        assert_eq!(
            kit.join(" "),
            "build -f /ctx/Dockerfile --build-arg IMAGE_TAG=v1 --label ai-infra.inputs={} \
             -t r.io/ai-infra-app:v1 -t ai-infra-app:v1 --progress=plain --network host --force-rm --iidfile /iid /ctx"
        );
    }

    #[test]
    fn tails_skip_builder_noise() {
        let log = "Step 1/2 : FROM scratch\nDEPRECATED: The legacy builder is deprecated\n            Install the buildx component to build images with BuildKit:\n            https://docs.docker.com/go/buildx/\n\nCOPY failed: file not found\n";
        assert_eq!(tail(log, 2), "Step 1/2 : FROM scratch\nCOPY failed: file not found");
        // docker 28 with DOCKER_BUILDKIT=0, the error in a short log: the error comes first.
        let log = "DEPRECATED: The legacy builder is deprecated and will be removed in a future release.\n            BuildKit is currently disabled; enable it by removing the DOCKER_BUILDKIT=0\n            environment-variable.\n\nSending build context to Docker daemon  2.048kB\nStep 1/2 : FROM scratch\n ---> \nStep 2/2 : COPY nothere.txt /\nCOPY failed: file not found in build context\n";
        assert_eq!(
            tail(log, 8),
            "Sending build context to Docker daemon  2.048kB\nStep 1/2 : FROM scratch\n --->\nStep 2/2 : COPY nothere.txt /\nCOPY failed: file not found in build context"
        );
    }

    #[test]
    fn podman_inspect_reads_as_docker_does() {
        // Podman 4.3: an ID without its algorithm, names under localhost/, exit 125 and "image
        // not known" for a missing name, and a size (its config) for an image of no layers.
        let names = vec!["ai-infra-a:t".to_string(), "ai-infra-b:t".to_string(), "ai-infra-e:t".to_string()];
        let out = format!(
            r#"[{{"Id":"{a}","RepoTags":["localhost/ai-infra-a:t"],"Size":1992972,"RootFS":{{"Type":"layers","Layers":["sha256:1"]}},"Config":{{"Labels":{{"k":"v"}}}}}},
               {{"Id":"{e}","RepoTags":["localhost/ai-infra-e:t"],"Size":1068,"RootFS":{{"Type":"layers","Layers":[]}}}}]"#,
            a = "ab".repeat(32),
            e = "cd".repeat(32)
        );
        let found = parse_inspect(
            &names,
            &out,
            "Error: inspecting object: ai-infra-b:t: image not known\n",
            false,
            "podman",
            true,
        )
        .unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), vec!["ai-infra-a:t", "ai-infra-e:t"]);
        let a = &found["ai-infra-a:t"];
        assert_eq!(a.id, Some(format!("sha256:{}", "ab".repeat(32))));
        assert_eq!((a.size, a.labels["k"].as_str()), (Some(1992972), Some("v")));
        assert_eq!((found["ai-infra-e:t"].size, found["ai-infra-e:t"].layers), (Some(0), Some(0)));
        let err = parse_inspect(&names, "", "Error: database is locked\n", false, "podman", true).unwrap_err();
        assert!(err.to_string().contains("database is locked"), "{err}");
    }

    #[test]
    fn podman_image_list() {
        let out = r#"[{"Id":"aa","Names":["localhost/ai-infra-a:t","127.0.0.1:5000/ai-infra-a:t"]},
                      {"Id":"aa","Names":["localhost/ai-infra-a:t"]},{"Id":"bb"}]"#;
        let list = parse_podman_list(out).unwrap();
        assert_eq!(
            list,
            vec![("ai-infra-a:t".into(), "aa".into()), ("127.0.0.1:5000/ai-infra-a:t".into(), "aa".into())]
        );
        assert!(parse_podman_list("Error: oops").unwrap_err().to_string().contains("not a JSON array"));
    }

    #[test]
    fn failures_point_to_the_fix() {
        let e = failure(
            "x",
            "unix:///s",
            "Cannot connect to the Docker daemon at unix:///s. Is the docker daemon running?",
        )
        .to_string();
        assert!(e.contains("cargo xtask engine up") && e.contains("DOCKER_HOST"), "{e}");
        let e = failure("x", "tcp://127.0.0.1:5000", "Error response from daemon: 404 page not found").to_string();
        assert!(e.contains("not as a Docker engine"), "{e}");
    }
}
