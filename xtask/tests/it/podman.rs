//! Podman as the engine, where it differs from Docker: how the engine is chosen and named,
//! fully qualified `localhost/` names, `.containerignore`, and the plain-HTTP registry. (The
//! harness also runs the engine-facing tests of the other files under Podman.)

use crate::common;

use common::Workspace;

/// The first line of `check-status` in the human format.
fn first_line(o: &common::Output) -> &str {
    o.stdout.lines().next().unwrap_or("")
}

#[test]
fn the_engine_is_chosen_by_env_or_by_what_is_installed_and_every_report_names_it() {
    let ws = Workspace::stack_under("podman", "choose");
    let o = ws.ok(&["check-status", &ws.tag]);
    assert!(first_line(&o).ends_with("engine podman (no daemon)"), "{o:?}");
    let json: serde_json::Value =
        serde_json::from_str(&ws.ok(&["check-status", &ws.tag, "--format", "json"]).stdout).unwrap();
    assert_eq!(json["engine"], "podman (no daemon)");
    let o = ws.ok(&["build", "solo", &ws.tag]);
    assert!(first_line(&o).contains("engine podman (no daemon)"), "{o:?}");
    let o = ws.ok(&["clean-all", &ws.tag]);
    assert!(first_line(&o).contains("engine podman (no daemon)"), "{o:?}");

    // Under Docker the same root names the Docker engine.
    let o = ws.run_env(&["check-status", &ws.tag], &[("AI_INFRA_ENGINE", "docker")]);
    assert!(first_line(&o).contains("engine docker at "), "{o:?}");

    // Without AI_INFRA_ENGINE, a machine with only Podman installed uses Podman.
    let only_podman = ws.path("only-podman");
    std::fs::create_dir_all(&only_podman).unwrap();
    std::os::unix::fs::symlink(which("podman"), only_podman.join("podman")).unwrap();
    let path = only_podman.to_str().unwrap();
    let o = ws.run_env(&["check-status", &ws.tag], &[("AI_INFRA_ENGINE", ""), ("PATH", path)]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(first_line(&o).ends_with("engine podman (no daemon)"), "{o:?}");
    let up = ws.run_env(&["engine", "up"], &[("AI_INFRA_ENGINE", ""), ("PATH", path)]);
    assert_eq!(up.code, 0, "{up:?}");
    assert!(up.stdout.contains("only Podman is installed") && up.stdout.contains("no engine needs starting"), "{up:?}");
    let status = ws.run(&["engine", "status"]);
    assert!(status.stdout.contains("engine podman") && status.stdout.contains("without a daemon"), "{status:?}");
    // With docker installed too, Docker stays the default.
    let both = ws.path("both");
    std::fs::create_dir_all(&both).unwrap();
    std::os::unix::fs::symlink(which("podman"), both.join("podman")).unwrap();
    std::os::unix::fs::symlink(which("docker"), both.join("docker")).unwrap();
    let o = ws.run_env(&["check-status", &ws.tag], &[("AI_INFRA_ENGINE", ""), ("PATH", both.to_str().unwrap())]);
    assert!(first_line(&o).contains("engine docker at "), "{o:?}");

    let o = ws.run_env(&["check-status", &ws.tag], &[("AI_INFRA_ENGINE", "containerd")]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("AI_INFRA_ENGINE=\"containerd\"") && o.stderr.contains("docker or podman"), "{o:?}");
}

/// Where a program is on PATH.
fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("{program} is not installed: run the suite with `cargo xtask test`, which installs it")
    })
}

#[test]
fn podman_names_images_localhost_and_internal_parents_still_resolve() {
    let ws = Workspace::stack_under("podman", "pnames");
    let o = ws.ok(&["build", "leaf", &ws.tag]);
    assert_eq!(Workspace::built(&o.stdout), vec!["base", "mid", "leaf"], "{o:?}");
    // Podman calls the image localhost/ai-infra-base:TAG ...
    let inspect = ws.cli(&["image", "inspect", "--format", "{{json .RepoTags}}", &format!("ai-infra-base:{}", ws.tag)]);
    let tags = String::from_utf8_lossy(&inspect.stdout);
    assert!(tags.contains(&format!("\"localhost/ai-infra-base:{}\"", ws.tag)), "{tags}");
    // ... and the tool still finds it, as FROM ai-infra-base:${IMAGE_TAG} did for mid.
    ws.expect(&[("base", "OK"), ("mid", "OK"), ("leaf", "OK"), ("solo", "MISSING")]);
    let plain = ws.ok(&["check-status", &ws.tag, "--format", "plain"]);
    assert!(plain.stdout.contains(&format!("base|OK|ai-infra-base:{}\n", ws.tag)), "{plain:?}");
    let clean = ws.ok(&["clean-all", &ws.tag]);
    assert!(clean.stdout.contains(&format!("  ai-infra-mid:{}\n", ws.tag)), "names as Docker prints them: {clean:?}");
    // The parent's label reaches the child through Podman's storage: a change to base's
    // files makes every descendant STALE, naming base.
    ws.write("services/base/rootfs/etc/base.conf", "base=2\n");
    ws.expect(&[("base", "STALE"), ("mid", "STALE"), ("leaf", "STALE")]);
    assert!(ws.reason("mid").contains("base"), "{}", ws.reason("mid"));
}

#[test]
fn containerignore_takes_precedence_over_dockerignore() {
    let ws = Workspace::under("podman", "cignore");
    ws.write("services/app/busybox", "");
    std::fs::copy(common::busybox(), ws.path("services/app/busybox")).unwrap();
    // The build itself fails unless Podman sent exactly what .containerignore lets through.
    ws.write(
        "services/app/Dockerfile",
        "FROM scratch\nCOPY . /c/\nRUN [\"/c/busybox\", \"sh\", \"-c\", \"test -f /c/docker-only.txt && test ! -e /c/container-only.txt && test -f /c/a+b.txt && test ! -e /c/aab.txt\"]\n",
    );
    ws.write("services/app/.dockerignore", "docker-only.txt\n");
    // `a+b.txt` as Podman 4 reads it (`podman --version` asked): a regular expression that
    // excludes aab.txt and keeps the file a+b.txt (docker 23+ would read it literally).
    ws.write("services/app/.containerignore", "container-only.txt\na+b.txt\n");
    ws.write("services/app/docker-only.txt", "excluded by .dockerignore only\n");
    ws.write("services/app/container-only.txt", "excluded by .containerignore only\n");
    ws.write("services/app/a+b.txt", "sent\n");
    ws.write("services/app/aab.txt", "excluded by the pattern a+b.txt\n");
    let o = ws.run(&["build", "app", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}\n{}", ws.read_opt("target/xtask/logs/app.log"));
    ws.expect(&[("app", "OK")]);
    // What .containerignore excludes does not count; what only .dockerignore excludes does.
    ws.write("services/app/container-only.txt", "changed\n");
    ws.write("services/app/aab.txt", "changed\n");
    ws.expect(&[("app", "OK")]);
    ws.write("services/app/a+b.txt", "changed\n");
    ws.expect(&[("app", "STALE")]);
    assert!(ws.reason("app").contains("a+b.txt"), "{}", ws.reason("app"));
    ws.write("services/app/a+b.txt", "sent\n");
    ws.expect(&[("app", "OK")]);
    ws.write("services/app/docker-only.txt", "changed\n");
    ws.expect(&[("app", "STALE")]);
    assert!(ws.reason("app").contains("docker-only.txt"), "{}", ws.reason("app"));
    // Docker reads only .dockerignore: the same root has other inputs under Docker.
    let digest = |engine: &str| {
        let o = ws.run_env(&["check-status", &ws.tag, "--format", "json"], &[("AI_INFRA_ENGINE", engine)]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
        v["services"][0]["expected_digest"].as_str().unwrap_or_default().to_string()
    };
    let (podman, docker) = (digest("podman"), digest("docker"));
    assert!(!podman.is_empty() && !docker.is_empty() && podman != docker, "{podman} vs {docker}");
}

#[test]
fn podman_pushes_to_and_pulls_from_a_plain_http_loopback_registry() {
    let reg = common::registry().expect("AI_INFRA_TEST_REGISTRY: run the suite with `cargo xtask test`");
    let ws = Workspace::stack_under("podman", "pregistry");
    // Podman refuses plain HTTP without --tls-verify=false: the push must pass it.
    let o = ws.run(&["build", "solo", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("push FAILED"), "{o:?}");
    let remote = ws.ok(&["check-status", &ws.tag, &reg, "--remote", "--format", "plain"]);
    let solo = format!("solo|OK|{reg}/ai-infra-solo:{}|OK\n", ws.tag);
    assert!(remote.stdout.contains(&solo), "{remote:?}");
    // A machine without the image pulls it (again over plain HTTP) instead of building.
    ws.remove_own_images();
    let o = ws.run(&["build", "solo", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(Workspace::built(&o.stdout).is_empty() && o.stdout.contains("pulled solo"), "{o:?}");
    ws.expect(&[("solo", "OK")]);
}

/// Under Podman the Docker engine is never asked, even where DOCKER_HOST points at one that
/// answers, and even where Podman was chosen by itself: each engine sees only its own images.
#[test]
fn podman_never_asks_the_docker_engine() {
    std::env::var("DOCKER_HOST").expect("DOCKER_HOST names the suite's Docker engine: run `cargo xtask test`");
    let ws = Workspace::stack_under("podman", "noapi");
    ws.build(&["solo"]);
    // base only in the Docker engine, solo only in Podman's storage.
    let o = ws.run_env(&["build", "base", &ws.tag], &[("AI_INFRA_ENGINE", "docker")]);
    assert_eq!(o.code, 0, "{o:?}");
    let plain = |env: &[(&str, &str)]| {
        let o = ws.run_env(&["check-status", &ws.tag, "--format", "plain"], env);
        assert_eq!(o.code, 0, "{o:?}");
        let line = |s: &str| o.stdout.lines().find(|l| l.starts_with(&format!("{s}|"))).unwrap_or("").to_string();
        (line("base"), line("solo"))
    };
    let want = (format!("base|MISSING|ai-infra-base:{}", ws.tag), format!("solo|OK|ai-infra-solo:{}", ws.tag));
    assert_eq!(plain(&[]), want, "AI_INFRA_ENGINE=podman");
    let only_podman = ws.path("only-podman");
    std::fs::create_dir_all(&only_podman).unwrap();
    std::os::unix::fs::symlink(which("podman"), only_podman.join("podman")).unwrap();
    let auto = [("AI_INFRA_ENGINE", ""), ("PATH", only_podman.to_str().unwrap())];
    assert_eq!(plain(&auto), want, "Podman chosen by itself");
    // The Docker engine sees the opposite.
    let docker = plain(&[("AI_INFRA_ENGINE", "docker")]);
    assert_eq!(docker, (format!("base|OK|ai-infra-base:{}", ws.tag), format!("solo|MISSING|ai-infra-solo:{}", ws.tag)));
    let _ = std::process::Command::new("docker").args(["image", "rm", &format!("ai-infra-base:{}", ws.tag)]).output();
}
