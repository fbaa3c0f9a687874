//! Generated workspaces for integration tests: files written under a temporary root, the xtask
//! binary run against it with AI_INFRA_ROOT, and a tag of the test's own so that tests running
//! at the same time on one engine never see each other's images. Dropping a workspace removes
//! its folder and every image it tagged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Workspace {
    pub root: PathBuf,
    pub tag: String,
    /// The engine's CLI the tool runs here: `docker`, or `podman`.
    pub engine: &'static str,
    extra_tags: Vec<String>,
    /// For a test of what needs no engine (sync-env, render, usage errors): none is required,
    /// and the tool is pointed at an address where none can answer, so that a command that
    /// asked one would fail the test.
    offline: bool,
}

/// Where no engine answers: an offline workspace's DOCKER_HOST.
const NO_ENGINE: &str = "unix:///nonexistent/ai-infra-tests-no-engine.sock";

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The engine the tests run under: Podman in the harness's Podman pass (AI_INFRA_ENGINE),
/// else Docker.
pub fn engine() -> &'static str {
    match std::env::var("AI_INFRA_ENGINE").as_deref() {
        Ok("podman") => "podman",
        _ => "docker",
    }
}

/// Fails the test with a clear message when no engine answers: run `cargo xtask test`.
pub fn require_engine(engine: &str) {
    // Podman in local mode has no server: its client answering is the engine answering.
    let format = if engine == "podman" { "{{.Client.Version}}" } else { "{{.Server.Version}}" };
    let ok = Command::new(engine).args(["version", "--format", format]).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no {engine} engine answers (DOCKER_HOST={:?}): run the suite with `cargo xtask test`, which installs and starts what it needs",
        std::env::var("DOCKER_HOST")
    );
}

/// The registry the harness started, if any.
pub fn registry() -> Option<String> {
    std::env::var("AI_INFRA_TEST_REGISTRY").ok().filter(|r| !r.is_empty())
}

impl Workspace {
    /// An empty root (with a services/ folder) for the test `name`, under the suite's engine.
    pub fn new(name: &str) -> Workspace {
        Workspace::under(engine(), name)
    }

    /// An empty root for the test `name` whose commands run under `engine`.
    pub fn under(engine: &'static str, name: &str) -> Workspace {
        require_engine(engine);
        Workspace::unchecked(engine, name, false)
    }

    /// An empty root for a test that needs no engine: its commands run with none to answer.
    pub fn offline(name: &str) -> Workspace {
        Workspace::unchecked("docker", name, true)
    }

    fn unchecked(engine: &'static str, name: &str, offline: bool) -> Workspace {
        let tag = format!("t-{name}-{}", std::process::id());
        let root = std::env::temp_dir().join(format!("xtask-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("services")).unwrap();
        Workspace { root, tag, engine, extra_tags: Vec::new(), offline }
    }

    /// A small stack: base <- mid <- leaf, base <- other (with a .dockerignore), solo (scratch).
    pub fn stack(name: &str) -> Workspace {
        Workspace::stack_under(engine(), name)
    }

    /// The small stack, its commands running under `engine`.
    pub fn stack_under(engine: &'static str, name: &str) -> Workspace {
        Workspace::with_stack(Workspace::under(engine, name))
    }

    /// The small stack, for a test that needs no engine (see `offline`).
    pub fn stack_offline(name: &str) -> Workspace {
        Workspace::with_stack(Workspace::offline(name))
    }

    fn with_stack(ws: Workspace) -> Workspace {
        ws.write("services/base/Dockerfile", "ARG IMAGE_TAG=latest\nFROM scratch\nCOPY rootfs/ /\n");
        ws.write("services/base/rootfs/etc/base.conf", "base=1\n");
        // Layers from scratch that were the same in every test would be shared through the
        // engine's build cache, and one test's clean-up could delete a layer another's build
        // is using: each workspace's own content keeps them apart.
        ws.write("services/base/rootfs/etc/workspace", &ws.tag);
        ws.write(
            "services/mid/Dockerfile",
            "ARG IMAGE_TAG=latest\nFROM ai-infra-base:${IMAGE_TAG}\nCOPY mid.txt /mid.txt\n",
        );
        ws.write("services/mid/mid.txt", "mid\n");
        ws.write(
            "services/leaf/Dockerfile",
            "ARG IMAGE_TAG=latest\nFROM ai-infra-mid:${IMAGE_TAG}\nCOPY leaf.sh /leaf.sh\n",
        );
        ws.write("services/leaf/leaf.sh", "#!/bin/sh\necho leaf\n");
        ws.write(
            "services/other/Dockerfile",
            "ARG IMAGE_TAG=latest\nFROM ai-infra-base:${IMAGE_TAG}\nCOPY . /other/\n",
        );
        ws.write("services/other/.dockerignore", "data/\n*.log\n");
        ws.write("services/other/app.conf", "port=80\n");
        ws.write("services/other/data/state.db", "local state\n");
        ws.write("services/solo/Dockerfile", "FROM scratch\nCOPY solo.txt /\n");
        ws.write("services/solo/solo.txt", &format!("solo {}\n", ws.tag));
        ws
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap()
    }

    /// A file's text, or nothing when it is not there (yet).
    pub fn read_opt(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap_or_default()
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.root.join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Runs the xtask with this root; `args` as on the command line.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.exec(args, env, false)
    }

    /// Runs without DOCKER_HOST, so that the tool finds the engine `engine up` started for
    /// this root.
    pub fn run_own_engine(&self, args: &[&str]) -> Output {
        self.exec(args, &[], true)
    }

    fn exec(&self, args: &[&str], env: &[(&str, &str)], own_engine: bool) -> Output {
        // Tests with identical files would share input digests, and build-all reuses an image
        // with the same inputs: a file naming the workspace keeps each test's images its own.
        if let Ok(dirs) = std::fs::read_dir(self.root.join("services")) {
            for d in dirs.flatten().filter(|d| d.path().is_dir()) {
                let id = d.path().join(".test-workspace");
                if !id.exists() {
                    let _ = std::fs::write(id, &self.tag);
                }
            }
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(args).env("AI_INFRA_ROOT", &self.root).env_remove("FORCE_REBUILD").env("NO_COLOR", "1");
        // Under Docker the tool's own choice is what most tests are about (an engine started
        // where none answers, for one): AI_INFRA_ENGINE is set only for Podman.
        if self.engine == "podman" {
            c.env("AI_INFRA_ENGINE", "podman");
        } else {
            c.env_remove("AI_INFRA_ENGINE");
        }
        if own_engine {
            c.env_remove("DOCKER_HOST");
        }
        if self.offline {
            c.env("DOCKER_HOST", NO_ENGINE).env("AI_INFRA_ENGINE", "docker");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().expect("run xtask");
        Output {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs and asserts the exit code.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        o
    }

    /// `check-status --format plain` for this workspace's tag: service -> STATUS.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        let o = self.ok(&["check-status", &self.tag, "--format", "plain"]);
        o.stdout
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                assert_eq!(f.len(), 3, "plain lines have three fields: {l:?}");
                (f[0].to_string(), f[1].to_string())
            })
            .collect()
    }

    /// The human report's reason line for one service.
    pub fn reason(&self, service: &str) -> String {
        let o = self.ok(&["check-status", &self.tag]);
        let prefix = format!("  {service} ");
        o.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {service}: {o:?}"))
            .to_string()
    }

    /// The services a build run's output says it built, in the order they finished.
    pub fn built(out: &str) -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once("] built ").map(|(_, rest)| rest.split(' ').next().unwrap_or("").to_string()))
            .collect()
    }

    /// Builds services (and their parents) with this workspace's tag.
    pub fn build(&self, services: &[&str]) -> Output {
        let mut out = String::new();
        for s in services {
            let o = self.ok(&["build", s, &self.tag]);
            out.push_str(&o.stdout);
        }
        Output { code: 0, stdout: out, stderr: String::new() }
    }

    /// Asserts each named service has a status; others are not checked.
    pub fn expect(&self, want: &[(&str, &str)]) {
        let got = self.statuses();
        for (s, st) in want {
            assert_eq!(got.get(*s).map(String::as_str), Some(*st), "status of {s} in {got:?}");
        }
    }

    /// Runs the workspace's engine CLI (`docker ARGS` or `podman ARGS`); under Podman, a push
    /// or pull reaches the plain-HTTP test registry only with `--tls-verify=false`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(self.engine);
        match args.split_first() {
            Some((verb, rest)) if self.engine == "podman" && (*verb == "push" || *verb == "pull") => {
                c.arg(verb).arg("--tls-verify=false").args(rest)
            }
            _ => c.args(args),
        };
        c.output().expect("run the engine CLI")
    }

    /// The stdout of `ENGINE ARGS`, asserting that it succeeds.
    pub fn cli_under(&self, engine: &str, args: &[&str]) -> String {
        let o = engine_output(engine, args);
        assert!(o.status.success(), "{engine} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Remembers a further tag whose images this test makes, for clean-up.
    pub fn also_tag(&mut self, tag: &str) {
        self.extra_tags.push(tag.to_string());
    }
}

/// Every ai-infra-* name with one of these tags, and every other ai-infra-* name of the same
/// images (the content tags a push adds).
fn images_with_tags(engine: &str, tags: &[String]) -> Vec<String> {
    let o = engine_output(engine, &["image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    if !o.status.success() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<(&str, &str)> =
        text.lines().filter_map(|l| l.split_once(' ')).filter(|(n, _)| n.contains("ai-infra-")).collect();
    let ids: Vec<&str> =
        rows.iter().filter(|(n, _)| tags.iter().any(|t| n.ends_with(&format!(":{t}")))).map(|(_, id)| *id).collect();
    rows.iter()
        .filter(|(n, id)| {
            ids.contains(id) && (n.contains(":inputs-") || tags.iter().any(|t| n.ends_with(&format!(":{t}"))))
        })
        .map(|(n, _)| n.to_string())
        .collect()
}

/// `ENGINE ARGS` run to its end. Podman 4 fails a reading command when another test removes an
/// image while it reads it ("image not known", "file does not exist"): that is asked again.
fn engine_output(engine: &str, args: &[&str]) -> std::process::Output {
    let run = || Command::new(engine).args(args).output().expect("run the engine CLI");
    let mut o = run();
    for _ in 0..5 {
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() || !(stderr.contains("image not known") || stderr.contains("file does not exist")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        o = run();
    }
    o
}

impl Workspace {
    /// Removes this workspace's images, as a fresh machine would not have them; never
    /// another test's (tests share the engine).
    pub fn remove_own_images(&self) {
        self.remove_own_images_under(self.engine);
    }

    /// Removes this workspace's images from one engine (a test that uses both).
    pub fn remove_own_images_under(&self, engine: &str) {
        let names = images_with_tags(engine, &self.all_tags());
        if !names.is_empty() {
            let _ = Command::new(engine).args(["image", "rm", "--force"]).args(&names).output();
        }
    }

    fn all_tags(&self) -> Vec<String> {
        let mut tags = self.extra_tags.clone();
        tags.push(self.tag.clone());
        tags
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.offline {
            let _ = std::fs::remove_dir_all(&self.root);
            return;
        }
        // Under `cargo xtask test` the harness removes every test's images in one go after the
        // run: removing them while other tests build races the engine's build cache.
        match std::env::var("AI_INFRA_TEST_CLEANUP") {
            Ok(list) if !list.is_empty() => {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&list) {
                    let _ = f.write_all(format!("{}\n", self.all_tags().join("\n")).as_bytes());
                }
            }
            _ => self.remove_own_images(),
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A service whose build takes `seconds` (a RUN sleep in an image that carries busybox).
pub fn slow_service(ws: &Workspace, name: &str, from: Option<&str>, seconds: f64) {
    // The RUN names the workspace: a builder's cache never gives another test's step in its
    // place (Podman's storage, and so Buildah's cache, is the machine's and outlives a run).
    let run = format!("RUN [\"/bin/busybox\", \"sh\", \"-c\", \"sleep {seconds} # {}\"]\n", ws.tag);
    let dockerfile = match from {
        None => {
            std::fs::create_dir_all(ws.path(&format!("services/{name}"))).unwrap();
            std::fs::copy(busybox(), ws.path(&format!("services/{name}/busybox"))).unwrap();
            format!("ARG IMAGE_TAG=latest\nFROM scratch\nCOPY busybox /bin/busybox\n{run}")
        }
        Some(parent) => format!("ARG IMAGE_TAG=latest\nFROM ai-infra-{parent}:${{IMAGE_TAG}}\n{run}"),
    };
    // The workspace's own label: another test's service of the same shape must never be
    // reused in its place (an image of identical inputs is tagged instead of built).
    let dockerfile = format!("{dockerfile}LABEL ai-infra.test-workspace=\"{}\"\n", ws.tag);
    ws.write(&format!("services/{name}/Dockerfile"), &dockerfile);
}

/// The static busybox the harness installs (busybox-static).
pub fn busybox() -> &'static str {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("busybox is missing: run the suite with `cargo xtask test`, which installs busybox-static")
}

/// The repository's own stack (services, templates, settings, .env.example) in a workspace.
pub fn project_stack(name: &str) -> Workspace {
    let ws = Workspace::new(name);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for item in
        ["services", "templates", "services.toml", ".env.example", ".dockerignore", "src", "third_party", "docs"]
    {
        copy(&repo.join(item), &ws.root.join(item));
    }
    ws
}

fn copy(from: &Path, to: &Path) {
    let meta = std::fs::symlink_metadata(from).unwrap();
    if meta.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}
