//! `cargo xtask test`: the whole test suite on a real engine and a real registry. Installs what
//! is missing (as root), starts an engine unless one answers and a registry on loopback, runs
//! nextest with DOCKER_HOST and AI_INFRA_TEST_REGISTRY set (every test with the legacy builder,
//! then the status tests through the docker CLI instead of the engine's API, then the build
//! tests again with BuildKit), and stops what it started.

use anyhow::Result;
use camino::Utf8Path;
use xshell::{cmd, Shell};

use crate::world::engine;

pub fn run(root: &Utf8Path, args: &[String]) -> Result<i32> {
    // busybox gives test images a shell without pulling anything.
    engine::install_missing(&[
        ("dockerd", "docker.io"),
        ("docker-registry", "docker-registry"),
        ("busybox", "busybox-static"),
    ])
    .or_else(|e| if std::env::var_os("DOCKER_HOST").is_some() { Ok(()) } else { Err(e) })?;
    // Ctrl-C reaches the test runner (same process group), which stops; this process lives on
    // to stop the engine and registry it started.
    let _ = ctrlc::set_handler(|| {});
    let (host, started) = engine::up(root, true)?;
    let result = with_engine(root, host.as_deref(), args);
    if started {
        if let Err(e) = engine::down(root, true) {
            eprintln!("warning: could not stop the test engine: {e:#}");
        }
    }
    result
}

fn with_engine(root: &Utf8Path, host: Option<&str>, args: &[String]) -> Result<i32> {
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
    eprintln!("test run 1 of 3: every test, legacy builder");
    let docker = crate::world::docker::Docker::with_host(host);
    let planted = plant_sentinel(&docker)?;
    let mut status = command.status();
    if args.is_empty() && status.as_ref().is_ok_and(|s| s.success()) {
        // The first run's images go first: an image of the same inputs would be reused in the
        // second run instead of built.
        remove_test_images(host, &cleanup);
        // The status tests once more through the docker CLI, which the tool uses where it
        // cannot speak the engine's API (ssh://, contexts, TLS): both must answer alike.
        eprintln!("test run 2 of 3: the status tests again, through the docker CLI (AI_INFRA_ENGINE_CLIENT=cli)");
        command.args(["--test", "status"]).env("AI_INFRA_ENGINE_CLIENT", "cli");
        status = command.status();
    }
    // The first runs' images go before the BuildKit run: an image of the same inputs would be
    // reused there instead of built.
    remove_test_images(host, &cleanup);
    let status = match status {
        Ok(first) => buildkit_run(root, runner, args, &registry.addr, &cleanup, host).map(|second| {
            if first.success() {
                second
            } else {
                first
            }
        }),
        Err(e) => Err(e),
    };
    remove_test_images(host, &cleanup);
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
    stopped?;
    Ok(code)
}

/// The build-facing tests again under BuildKit: a `docker` first on PATH that is Debian's
/// 20.10 CLI (which builds with the engine's BuildKit when DOCKER_BUILDKIT=1).
fn buildkit_run(
    root: &Utf8Path,
    runner: &[&str],
    args: &[String],
    registry: &str,
    cleanup: &Utf8Path,
    host: Option<&str>,
) -> std::io::Result<std::process::ExitStatus> {
    let cli = Utf8Path::new("/usr/bin/docker");
    if !cli.exists() {
        return Err(std::io::Error::other(
            "Debian's docker CLI (/usr/bin/docker, package docker.io) is missing: the BuildKit run needs it",
        ));
    }
    let bin = crate::base::state_dir(root).join("buildkit-cli");
    std::fs::create_dir_all(&bin)?;
    let link = bin.join("docker");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(cli, &link)?;
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let mut command = std::process::Command::new("cargo");
    command.args(runner);
    if runner[0] == "nextest" {
        command.args(["-E", BUILD_TESTS_FILTER]);
    } else {
        for t in BUILD_TESTS {
            command.args(["--test", t]);
        }
    }
    command
        .args(args)
        .current_dir(root)
        .env("PATH", path)
        .env("DOCKER_BUILDKIT", "1")
        .env("AI_INFRA_TEST_BUILDER", "buildkit")
        .env("AI_INFRA_TEST_REGISTRY", registry)
        .env("AI_INFRA_TEST_CLEANUP", cleanup);
    if let Some(h) = host {
        command.env("DOCKER_HOST", h);
    }
    eprintln!("test run 3 of 3: the build tests ({}), BuildKit", BUILD_TESTS.join(", "));
    command.status()
}

/// The test binaries that build images: they run under both builders.
const BUILD_TESTS: [&str; 6] = ["build_all", "config", "project_stack", "registry", "root_context", "status"];
const BUILD_TESTS_FILTER: &str = "binary(build_all) | binary(config) | binary(project_stack) | binary(registry) | binary(root_context) | binary(status)";

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
/// developer's own.
fn remove_test_images(host: Option<&str>, list: &Utf8Path) {
    let Ok(text) = std::fs::read_to_string(list) else { return };
    let tags: std::collections::BTreeSet<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let docker = crate::world::docker::Docker::with_host(host);
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
    let _ = std::fs::remove_file(list);
}
