//! `cargo xtask test`: the whole test suite on a real engine and a real registry. Installs what
//! is missing (as root), starts an engine unless one answers and a registry on loopback, runs
//! nextest with DOCKER_HOST and AI_INFRA_TEST_REGISTRY set (every test with the legacy builder,
//! then the build tests again with BuildKit; the engine-facing tests under Podman all the while
//! beside them), and stops what it started.

use anyhow::Result;
use camino::Utf8Path;
use xshell::{cmd, Shell};

use crate::dev::podstore::{self, PodStore};
use crate::world::engine;

pub fn run(root: &Utf8Path, args: &[String]) -> Result<i32> {
    // busybox gives test images a shell without pulling anything.
    engine::install_missing(&[
        ("dockerd", "docker.io"),
        ("docker-registry", "docker-registry"),
        ("busybox", "busybox-static"),
        ("ssh-keygen", "openssh-client"),
        ("podman", "podman"),
        ("dot", "graphviz"),
    ])
    .or_else(|e| if std::env::var_os("DOCKER_HOST").is_some() { Ok(()) } else { Err(e) })?;
    // Every podman of the suite (the tool's, the tests', this harness's) uses a storage of
    // this run's own, set in this process's environment before any thread starts.
    let store = PodStore::open(&crate::base::state_dir(root).join("podman-storage"))?;
    match store.driver() {
        Ok(driver) => eprintln!("test Podman storage: {driver}"),
        Err(e) => eprintln!("warning: podman does not describe the test storage: {e:#}"),
    }
    // Ctrl-C reaches the test runner (same process group), which stops; this process lives on
    // to stop the engine and registry it started, and to remove the Podman storage.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, INTERRUPTED.clone());
    let (host, started) = engine::up(root, true)?;
    let result = with_engine(root, host.as_deref(), args, &store);
    if started {
        if let Err(e) = engine::down(root, true) {
            eprintln!("warning: could not stop the test engine: {e:#}");
        }
    }
    let graph = store.graph_root();
    let removed = store.remove();
    let code = result?;
    if let Err(e) = removed {
        eprintln!("error: the test Podman storage is left behind: {e:#}");
        return Ok(code.max(1));
    }
    if graph.exists() {
        eprintln!("error: the test Podman storage {graph} is still there after its removal");
        return Ok(code.max(1));
    }
    Ok(code)
}

fn with_engine(root: &Utf8Path, host: Option<&str>, args: &[String], store: &PodStore) -> Result<i32> {
    let registry = engine::Registry::start(root)?;
    eprintln!("test engine: {}; test registry: {}", host.unwrap_or("unix:///var/run/docker.sock"), registry.addr);
    let sh = Shell::new()?;
    sh.change_dir(root);
    if let Some(h) = host {
        sh.set_var("DOCKER_HOST", h);
    }
    sh.set_var("AI_INFRA_TEST_REGISTRY", &registry.addr);
    let nextest = cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let runner: &[&str] = if nextest {
        &["nextest", "run", "--workspace", "--no-fail-fast"]
    } else {
        &["test", "--workspace", "--no-fail-fast"]
    };
    // The runner's output goes straight to the terminal and its exact exit code is the
    // suite's: xshell 0.2 offers neither, so this call uses std::process directly.
    // Tests name the tags of the images they made here; they are removed after the run, since
    // removing images while other tests build races the engine's build cache.
    let cleanup = crate::base::state_dir(root).join("test-images");
    let _ = std::fs::create_dir_all(crate::base::state_dir(root));
    let _ = std::fs::remove_file(&cleanup);
    let mut command = std::process::Command::new("cargo");
    command.args(runner).args(args).current_dir(root).env("AI_INFRA_TEST_REGISTRY", &registry.addr);
    command.env("AI_INFRA_TEST_CLEANUP", &cleanup);
    if let Some(h) = host {
        command.env("DOCKER_HOST", h);
    }
    // First with the legacy builder (the docker CLI on PATH, DOCKER_BUILDKIT=0), then every
    // build test again with BuildKit: Debian's docker 20.10 CLI with DOCKER_BUILDKIT=1.
    command.env("DOCKER_BUILDKIT", "0").env("AI_INFRA_TEST_BUILDER", "legacy");
    let docker = crate::world::docker::Docker::with_host(host);
    let planted = plant_sentinel(&docker)?;
    // The engine-facing tests under Podman run beside the Docker runs: another engine, images
    // under this run's own tags (listed apart) in the run's own storage, and a pass that waits
    // on Podman far more than on the CPU (it took 15 of 33 minutes after them, at 40 % of two
    // cores, two tests at a time on the machine's storage).
    let podman_list = crate::base::state_dir(root).join("test-images-podman");
    let _ = std::fs::remove_file(&podman_list);
    let beside = Suite { root, runner, args, registry: &registry.addr, cleanup: &podman_list, host };
    let podman = podman_run(&beside);
    eprintln!("test run 1 of 3: every test, legacy builder");
    let mut tags = Tags::new();
    let status = command.status();
    // The first run's images go before the BuildKit run: an image of the same inputs would be
    // reused there instead of built.
    tags.extend(remove_test_images(&docker, &cleanup));
    let suite = Suite { root, runner, args, registry: &registry.addr, cleanup: &cleanup, host };
    let status = then(status, || buildkit_run(&suite));
    tags.extend(remove_test_images(&docker, &cleanup));
    // Podman's images are in the run's own storage (`podstore`), removed whole at the end.
    let podman = podman.and_then(Beside::wait);
    let status = then(status, || podman);
    let own_storage = own_storage(store, &podman_list, &mut tags);
    remove_test_images(&docker, &podman_list);
    let kept = docker.inspect(&[SENTINEL.to_string()]).is_ok_and(|found| found.contains_key(SENTINEL));
    if planted && kept {
        let _ = docker.remove(&[SENTINEL.to_string()]);
    }
    let stopped = registry.stop();
    let mut code = status.map_err(|e| anyhow::anyhow!("cannot run cargo: {e}"))?.code().unwrap_or(1);
    if !kept {
        eprintln!("error: {SENTINEL}, an image the tests did not make, is gone: a test or the tool removed it");
        code = code.max(1);
    }
    code = code.max(failed(own_storage));
    stopped?;
    Ok(code)
}

/// The tags of a clean-up list, one a line.
fn tags_in(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.is_empty())
}

/// 1 after printing the error, 0 without one.
fn failed(result: Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Checks that the Podman run's images (named with the tags it listed in `list`, added to
/// `all`) are in the run's own storage, and that no image of any test run's tags is in the
/// machine's.
fn own_storage(store: &PodStore, list: &Utf8Path, all: &mut Tags) -> Result<()> {
    let text = std::fs::read_to_string(list).unwrap_or_default();
    let podman: Tags = tags_in(&text).map(str::to_string).collect();
    all.extend(podman.iter().cloned());
    if podman.is_empty() {
        return Ok(());
    }
    let private = store.names()?;
    if podstore::tagged(&private, &podman).is_empty() {
        anyhow::bail!("none of the Podman run's images is in the run's own storage {}", store.graph_root());
    }
    let machine = podstore::machine_names()?;
    let leaked = podstore::tagged(&machine, all);
    if !leaked.is_empty() {
        anyhow::bail!("the Podman run put images into the machine's storage: {}", leaked.join(" "));
    }
    Ok(())
}

/// What the test runs after the first are given.
struct Suite<'a> {
    root: &'a Utf8Path,
    runner: &'a [&'a str],
    args: &'a [String],
    registry: &'a str,
    cleanup: &'a Utf8Path,
    host: Option<&'a str>,
}

impl Suite<'_> {
    /// The runner on the build tests, with the registry, the clean-up list and the test
    /// engine's DOCKER_HOST.
    fn cargo(&self) -> std::process::Command {
        let mut command = std::process::Command::new("cargo");
        command.args(self.runner).args(select(self.runner, &BUILD_TESTS)).args(self.args);
        command.current_dir(self.root);
        command.env("AI_INFRA_TEST_REGISTRY", self.registry).env("AI_INFRA_TEST_CLEANUP", self.cleanup);
        if let Some(h) = self.host {
            command.env("DOCKER_HOST", h);
        }
        command
    }
}

/// Set by Ctrl-C: no further test run starts, and the engine and registry stop.
static INTERRUPTED: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Runs the next test run after one that could run at all; the suite's status is the first
/// failure's, else the last run's.
fn then(
    before: std::io::Result<std::process::ExitStatus>,
    next: impl FnOnce() -> std::io::Result<std::process::ExitStatus>,
) -> std::io::Result<std::process::ExitStatus> {
    let before = before?;
    if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(before);
    }
    let after = next()?;
    Ok(if before.success() { after } else { before })
}

/// The build-facing tests again under BuildKit: a `docker` first on PATH that is Debian's
/// 20.10 CLI (which builds with the engine's BuildKit when DOCKER_BUILDKIT=1).
fn buildkit_run(s: &Suite) -> std::io::Result<std::process::ExitStatus> {
    let cli = Utf8Path::new("/usr/bin/docker");
    if !cli.exists() {
        return Err(std::io::Error::other(
            "Debian's docker CLI (/usr/bin/docker, package docker.io) is missing: the BuildKit run needs it",
        ));
    }
    let bin = crate::base::state_dir(s.root).join("buildkit-cli");
    std::fs::create_dir_all(&bin)?;
    let link = bin.join("docker");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(cli, &link)?;
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let mut command = s.cargo();
    command.env("PATH", path).env("DOCKER_BUILDKIT", "1").env("AI_INFRA_TEST_BUILDER", "buildkit");
    eprintln!("test run 2 of 3: the build tests ({}), BuildKit", BUILD_TESTS.join(", "));
    command.status()
}

/// The test modules that build images: they run under both builders, and under Podman.
const BUILD_TESTS: [&str; 6] = ["build_all", "config", "project_stack", "registry", "root_context", "status"];

/// The runner's arguments that select these modules of the one integration-test binary.
fn select(runner: &[&str], modules: &[&str]) -> Vec<String> {
    if runner[0] == "nextest" {
        let expr: Vec<String> = modules.iter().map(|m| format!("test(/^{m}::/)")).collect();
        vec!["-E".into(), format!("binary(it) & ({})", expr.join(" | "))]
    } else {
        let mut args = vec!["--test".to_string(), "it".to_string(), "--".to_string()];
        args.extend(modules.iter().map(|m| format!("{m}::")));
        args
    }
}

/// The build tests under Podman (AI_INFRA_ENGINE=podman, none of Docker's builder settings),
/// started in the background with their output kept in a log until they end. (tests/it/podman.rs
/// and the cross-engine bundle test name their engines themselves and run in the first run.)
fn podman_run(s: &Suite) -> std::io::Result<Beside> {
    if !crate::world::docker::on_path("podman") {
        return Err(std::io::Error::other(
            "podman is missing: the Podman run needs it (as root the suite installs Debian's podman)",
        ));
    }
    // DOCKER_HOST stays (see `Suite::cargo`): the tool must not follow it under Podman, and
    // the tests that compare with Docker find the test engine.
    let mut command = s.cargo();
    if s.runner[0] == "nextest" {
        // The pass waits on Podman's I/O far more than on the CPU: more tests at once than cores.
        command.arg(format!("--test-threads={PODMAN_THREADS}"));
    }
    command.env("AI_INFRA_ENGINE", "podman").env("AI_INFRA_TEST_BUILDER", "buildah");
    command.env_remove("DOCKER_BUILDKIT").env_remove("AI_INFRA_BUILDER");
    let log = crate::base::state_dir(s.root).join("podman-tests.log");
    let file = std::fs::File::create(&log)?;
    command.stdout(file.try_clone()?).stderr(file);
    eprintln!(
        "test run 3 of 3, beside the others: the build tests ({}), Podman (output in {log} until it ends)",
        BUILD_TESTS.join(", ")
    );
    Ok(Beside { child: command.spawn()?, log })
}

/// Tests at once in the Podman run (nextest's default is one per core).
const PODMAN_THREADS: usize = 4;

/// A test run going on in the background, its output in a log.
struct Beside {
    child: std::process::Child,
    log: camino::Utf8PathBuf,
}

impl Beside {
    /// Waits for the run to end, then shows its output.
    fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait();
        eprintln!("test run 3 of 3 (Podman), its output:");
        eprint!("{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        status
    }
}

/// An image of the user's named like the project's images (a service `base` is in many test
/// workspaces and in the benchmark's): the suite fails when it does not survive.
const SENTINEL: &str = "ai-infra-base:keep";

/// Makes the sentinel image unless it is there; true when this run made it.
fn plant_sentinel(docker: &crate::world::docker::Docker) -> Result<bool> {
    if docker.inspect(&[SENTINEL.to_string()])?.contains_key(SENTINEL) {
        return Ok(false);
    }
    let sh = docker.sh()?;
    let dockerfile = "FROM scratch\nLABEL ai-infra.test=sentinel\n";
    cmd!(sh, "docker build --quiet -t {SENTINEL} -")
        .stdin(dockerfile)
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|e| anyhow::anyhow!("cannot make the sentinel image {SENTINEL}: {e}"))?;
    Ok(true)
}

/// Removes the images the tests listed by tag: every ai-infra-* name with one of those tags,
/// and the content-tag names of the same images. Nothing else, since the engine may be the
/// developer's own. (Podman's images go with the run's own storage, at the end.)
/// Returns the tags it read.
fn remove_test_images(docker: &crate::world::docker::Docker, list: &Utf8Path) -> Tags {
    let Ok(text) = std::fs::read_to_string(list) else { return Tags::new() };
    let tags: Tags = tags_in(&text).map(str::to_string).collect();
    remove_tagged(docker, &tags);
    let _ = std::fs::remove_file(list);
    tags
}

/// The tags of the tests' images, unique to a run.
type Tags = std::collections::BTreeSet<String>;

/// Removes from one engine every ai-infra-* name with one of these tags, and the content-tag
/// names of the same images.
fn remove_tagged(docker: &crate::world::docker::Docker, tags: &Tags) {
    let images: Vec<(String, String)> =
        docker.list().unwrap_or_default().into_iter().filter(|(n, _)| n.contains("ai-infra-")).collect();
    let tag_of = |n: &str| n.rsplit_once(':').map_or("", |(_, t)| t).to_string();
    let ids: std::collections::BTreeSet<&str> =
        images.iter().filter(|(n, _)| tags.contains(tag_of(n).as_str())).map(|(_, id)| id.as_str()).collect();
    let names: Vec<String> = images
        .iter()
        .filter(|(n, id)| {
            tags.contains(tag_of(n).as_str()) || (tag_of(n).starts_with("inputs-") && ids.contains(id.as_str()))
        })
        .map(|(n, _)| n.clone())
        .collect();
    if !names.is_empty() {
        let _ = docker.remove(&names);
    }
}
