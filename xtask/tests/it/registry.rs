//! The registry as shared truth, against the real registry the harness runs on loopback.

use crate::common;

use common::Workspace;

fn registry() -> String {
    common::registry().expect("AI_INFRA_TEST_REGISTRY is not set: run the suite with `cargo xtask test`")
}

fn plain_remote(ws: &Workspace, reg: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let o = ws.ok(&["check-status", &ws.tag, reg, "--remote", "--format", "plain"]);
    o.stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].to_string(), (f[1].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
fn a_second_machine_pulls_instead_of_building() {
    let reg = registry();
    let ws = Workspace::stack("regpull");
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.matches("push ").count(), 5, "{o:?}");
    assert!(o.stdout.contains(&format!("push base: pushed {reg}/ai-infra-base:{} and inputs-", ws.tag)), "{o:?}");
    let remote = plain_remote(&ws, &reg);
    assert!(remote.values().all(|(l, r)| l == "OK" && r == "OK"), "{remote:?}");

    // A fresh runner: no local image of the project at all.
    ws.remove_own_images();
    ws.expect(&[("base", "MISSING"), ("leaf", "MISSING")]);
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(Workspace::built(&o.stdout).is_empty(), "nothing is built: {o:?}");
    assert_eq!(o.stdout.matches("] pulled ").count(), 5, "{o:?}");
    assert_eq!(o.stdout.matches("already in registry").count(), 5, "nothing is pushed again: {o:?}");
    let st = ws.ok(&["check-status", &ws.tag, &reg, "--format", "plain"]);
    assert_eq!(st.stdout.matches("|OK|").count(), 5, "{st:?}");

    // One change: only that service and its descendants are built and pushed.
    ws.write("services/mid/mid.txt", "changed on the second machine\n");
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, vec!["leaf", "mid"], "{o:?}");
    assert!(o.stdout.contains("push mid: pushed") && o.stdout.contains("push leaf: pushed"), "{o:?}");
    assert!(
        o.stdout.contains("push base: already in registry") && o.stdout.contains("push solo: already in registry"),
        "{o:?}"
    );
    let remote = plain_remote(&ws, &reg);
    assert!(remote.values().all(|(_, r)| r == "OK"), "{remote:?}");
}

#[test]
fn no_push_builds_and_remote_status_says_what_is_missing() {
    let reg = registry();
    let ws = Workspace::stack("nopush");
    let o = ws.ok(&["build-all", &ws.tag, &reg, "--no-push"]);
    assert!(!o.stdout.contains("push "), "{o:?}");
    let remote = plain_remote(&ws, &reg);
    assert_eq!(remote["solo"], ("OK".to_string(), "MISSING".to_string()));
    let json = ws.ok(&["check-status", &ws.tag, &reg, "--remote", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let solo = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "solo").unwrap();
    assert_eq!(solo["remote"]["status"], "MISSING");
    assert_eq!(ws.run(&["check-status", &ws.tag, &reg, "--remote", "--exit-code"]).code, 1);
}

#[test]
fn a_registry_that_is_down_fails_the_push_not_the_build() {
    let ws = Workspace::stack("regdown");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let reg = format!("127.0.0.1:{port}");
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(Workspace::built(&o.stdout).len(), 5, "the build succeeds locally: {o:?}");
    assert_eq!(o.stdout.matches("push FAILED ").count(), 5, "{o:?}");
    assert!(o.stdout.contains(&format!("registry {reg} does not answer")), "{o:?}");
    ws.expect(&[("base", "OK")]); // the plain local names are tagged too
    let st = ws.ok(&["check-status", &ws.tag, &reg, "--format", "plain"]);
    assert_eq!(st.stdout.matches("|OK|").count(), 5, "nothing lost: {st:?}");
}

#[test]
fn a_silent_registry_gets_a_clear_error_in_bounded_time() {
    let ws = Workspace::stack("regsilent");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reg = listener.local_addr().unwrap().to_string();
    // Accepts connections and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let t = std::time::Instant::now();
    let o = ws.run(&["check-status", &ws.tag, &reg, "--remote", "--format", "plain"]);
    assert!(t.elapsed().as_secs_f64() < 10.0, "bounded: {:?}", t.elapsed());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().filter(|l| l.ends_with("|ERROR")).count(), 5, "{o:?}");
    let human = ws.run(&["check-status", &ws.tag, &reg, "--remote"]);
    assert!(human.stdout.contains("does not answer (no answer within 3 s)"), "{human:?}");
}

#[test]
fn a_content_tag_with_another_digest_is_never_trusted() {
    let reg = registry();
    let ws = Workspace::stack("untrusted");
    // Find solo's content tag, and put another image there.
    let json = ws.ok(&["check-status", &ws.tag, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let digest = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "solo").unwrap()["expected_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let impostor = format!("{reg}/ai-infra-solo:inputs-{}", digest.trim_start_matches("sha256:"));
    ws.ok(&["build", "base", &ws.tag]);
    let docker = |args: &[&str]| ws.cli(args);
    assert!(docker(&["tag", &format!("ai-infra-base:{}", ws.tag), &impostor]).status.success());
    assert!(docker(&["push", &impostor]).status.success());
    docker(&["image", "rm", &impostor]);
    let o = ws.run(&["build-all", &ws.tag, &reg, "--no-push"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("pull, else build solo"), "the plan pulls it, else builds it: {o:?}");
    assert!(o.stdout.contains("carries another input digest") && o.stdout.contains("not trusted"), "{o:?}");
    assert!(Workspace::built(&o.stdout).contains(&"solo".to_string()), "{o:?}");
    ws.expect(&[("solo", "OK")]);
}

/// Makes a "Docker Hub" base image `base` that only the mirror `reg` has (pushed there as
/// `reg/base`, then removed here); returns the mirror's name for it.
fn only_in_the_mirror(ws: &Workspace, reg: &str, base: &str) -> String {
    in_the_mirror_holding(ws, reg, base, &format!("{base}\n"))
}

/// `only_in_the_mirror`, the image holding `content`: pushed again with other content, the
/// mirror's image of that name is another.
fn in_the_mirror_holding(ws: &Workspace, reg: &str, base: &str, content: &str) -> String {
    ws.write("seed/Dockerfile", "FROM scratch\nCOPY f /f\n");
    ws.write("seed/f", content);
    let mirrored = format!("{reg}/{base}");
    // --no-cache: the legacy builder's cache lookup of this common layer raced with another
    // test's removal of the same layer in a suite run (the build failed in 0.4 s).
    let b = ws.cli(&["build", "--no-cache", "-q", "-t", &mirrored, ws.path("seed").to_str().unwrap()]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(ws.cli(&["push", &mirrored]).status.success());
    ws.cli(&["image", "rm", &mirrored]);
    mirrored
}

#[test]
fn base_images_come_through_a_mirror() {
    let reg = registry();
    let ws = Workspace::new("mirror");
    let base = format!("mirrortest-{}:1", std::process::id());
    let mirrored = only_in_the_mirror(&ws, &reg, &base);
    let docker = |args: &[&str]| ws.cli(args);
    ws.write(".env", &format!("BASE_IMAGE_MIRROR={reg}\n"));
    ws.write("services/app/Dockerfile", &format!("FROM {base}\nCOPY app.txt /\n"));
    ws.write("services/app/app.txt", "app\n");
    let o = ws.run(&["build-all", &ws.tag]);
    docker(&["image", "rm", &base, &mirrored]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("pulled {base} through the mirror as {mirrored}")), "{o:?}");
    assert_eq!(Workspace::built(&o.stdout), vec!["app"]);
}

/// On a fresh machine the plan, made before anything runs, pulls the missing base first (through
/// the mirror) and says that the service waits for it; once the base is here the service's
/// inputs are known, and the registry's build of them is pulled instead of building.
#[test]
fn a_fresh_machine_pulls_the_base_then_the_registry_build_of_its_inputs() {
    let reg = registry();
    let ws = Workspace::new("settle");
    let base = format!("settletest-{}:1", std::process::id());
    let mirrored = only_in_the_mirror(&ws, &reg, &base);
    ws.write(".env", &format!("BASE_IMAGE_MIRROR={reg}\n"));
    ws.write("services/app/Dockerfile", &format!("FROM {base}\nCOPY app.txt /\n"));
    ws.write("services/app/app.txt", "app\n");
    let first = ws.run(&["build-all", &ws.tag, &reg]);
    // The second machine: neither the base nor the service's image.
    ws.remove_own_images();
    ws.cli(&["image", "rm", &base, &mirrored]);
    let dry = ws.run(&["build-all", &ws.tag, &reg, "--dry-run"]);
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    ws.cli(&["image", "rm", &base, &mirrored]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(Workspace::built(&first.stdout), vec!["app"]);
    let pull_base = format!("pull base        {base} (through {mirrored} first): for app;");
    assert!(dry.stdout.contains(&pull_base), "{dry:?}");
    assert!(dry.stdout.contains(&format!("its inputs are known once {base} is pulled")), "{dry:?}");
    assert_eq!(o.code, 0, "{o:?}");
    let plan = o.stdout.split("[step 1/5]").next().unwrap_or_default();
    assert!(plan.contains(&pull_base), "the plan before anything runs: {o:?}");
    assert!(o.stdout.contains(&format!("pulled {base} through the mirror as {mirrored}")), "{o:?}");
    assert!(o.stdout.contains("app: pull instead of building: the registry has this build as"), "{o:?}");
    assert!(Workspace::built(&o.stdout).is_empty(), "nothing is built: {o:?}");
    ws.expect(&[("app", "OK")]);
}

/// An image checked while its base was not here is OK with its base "not checked". When step 1
/// pulls that base for another service, the image is checked again: the base pulled is another
/// build than the one it was built on, so it is STALE and rebuilt, never left as OK.
#[test]
fn an_image_checked_without_its_base_is_checked_again_once_step_1_pulls_it() {
    let reg = registry();
    let ws = Workspace::new("recheck");
    let base = format!("rechecktest-{}:1", std::process::id());
    let mirrored = only_in_the_mirror(&ws, &reg, &base);
    ws.write(".env", &format!("BASE_IMAGE_MIRROR={reg}\n"));
    ws.write("services/old/Dockerfile", &format!("FROM {base}\nCOPY old.txt /\n"));
    ws.write("services/old/old.txt", "old\n");
    let first = ws.run(&["build-all", &ws.tag, "--no-push"]);
    // The base is gone from here, and the mirror now holds another build under its name.
    ws.cli(&["image", "rm", &base, &mirrored]);
    in_the_mirror_holding(&ws, &reg, &base, "the base, rebuilt\n");
    let checked = ws.reason("old");
    let before = ws.statuses();
    // A new service on the same base: step 1 pulls it.
    ws.write("services/new/Dockerfile", &format!("FROM {base}\nCOPY new.txt /\n"));
    ws.write("services/new/new.txt", "new\n");
    let o = ws.run(&["build-all", &ws.tag, "--no-push"]);
    let after = ws.statuses();
    ws.cli(&["image", "rm", &base, &mirrored]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(Workspace::built(&first.stdout), ["old"], "{first:?}");
    assert!(checked.contains("bases not checked"), "{checked}");
    assert_eq!(before.get("old").map(String::as_str), Some("OK"), "{before:?}");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("old was checked without a base image step 1 brought: checking and planning again"),
        "{o:?}"
    );
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, ["new", "old"], "old is rebuilt on the base now here: {o:?}");
    assert_eq!(after.get("old").map(String::as_str), Some("OK"), "{after:?}");
    assert_eq!(after.get("new").map(String::as_str), Some("OK"), "{after:?}");
}

/// The builder this run of the suite uses (`cargo xtask test` runs this binary under both).
fn builder() -> String {
    std::env::var("AI_INFRA_TEST_BUILDER").unwrap_or_else(|_| "legacy".into())
}

#[test]
fn a_syntax_frontend_is_a_base_image_pulled_through_the_mirror() {
    let reg = registry();
    let ws = Workspace::new("frontend");
    // A "Docker Hub" frontend that only the mirror has, made here (no network): two versions.
    let frontend = format!("frontendtest-{}/dockerfile:1", std::process::id());
    let mirrored = format!("{reg}/{frontend}");
    // The engine under test: under Podman the frontend is pulled into Podman's storage, and
    // Buildah, like the legacy builder, reads `# syntax=` as a comment.
    let docker = |args: &[&str]| ws.cli(args);
    let make = |version: &str| {
        ws.write(&format!("fe{version}/Dockerfile"), "FROM scratch\nCOPY f /f\n");
        ws.write(&format!("fe{version}/f"), &format!("frontend {version} {}\n", ws.tag));
        let dir = ws.path(&format!("fe{version}"));
        // --no-cache: the legacy builder's cache lookup races with other tests' removals
        // ("unable to find image sha256:...").
        let o = docker(&["build", "-q", "--no-cache", "-t", &mirrored, dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let v1 = make("1");
    assert!(docker(&["push", &mirrored]).status.success());
    docker(&["image", "rm", &mirrored]);
    ws.write(".env", &format!("BASE_IMAGE_MIRROR={reg}\n"));
    ws.write("services/app/Dockerfile", &format!("# syntax={frontend}\nFROM scratch\nCOPY app.txt /\n"));
    ws.write("services/app/app.txt", "app\n");
    let o = ws.run(&["build-all", &ws.tag]);
    // Step 1 pulled the frontend through the mirror, under the name the Dockerfile gives.
    assert!(o.stdout.contains(&format!("pulled {frontend} through the mirror as {mirrored}")), "{o:?}");
    let local = docker(&["image", "inspect", "--format", "{{.Id}}", &frontend]);
    assert_eq!(String::from_utf8_lossy(&local.stdout).trim(), v1, "{o:?}");
    if builder() == "buildkit" {
        // BuildKit resolves the frontend in the engine's local images (the pull of step 1; there
        // is no network to fetch it from) and starts it. A frontend runs in a container on the
        // bridge network, which the test engine has none of (as `engine up` starts it), so the
        // build fails there, and nothing passes as OK.
        assert!(o.stdout.contains("builder: BuildKit"), "{o:?}");
        assert_eq!(o.code, 1, "{o:?}");
        let log = ws.read("target/xtask/logs/app.log");
        assert!(
            log.contains(&format!("docker-image://docker.io/{frontend}")),
            "BuildKit took the pulled frontend: {log}"
        );
        assert!(log.contains("network bridge not found"), "{log}");
        ws.expect(&[("app", "MISSING")]);
        // The legacy builder ignores `# syntax=`; the input digest does not depend on the
        // builder, so its image stands for the one BuildKit would have made.
        let o = ws.run_env(&["build-all", &ws.tag], &[("AI_INFRA_BUILDER", "legacy")]);
        assert_eq!(o.code, 0, "{o:?}");
        assert!(o.stdout.contains("every base image is present"), "{o:?}");
    } else {
        assert_eq!(o.code, 0, "{o:?}");
    }
    ws.expect(&[("app", "OK")]);
    // The frontend's local image ID is in the digest: the ref moved to another image, the image
    // is STALE and the reason names the frontend.
    let v2 = make("2");
    assert!(docker(&["tag", &mirrored, &frontend]).status.success());
    ws.expect(&[("app", "STALE")]);
    let reason = ws.reason("app");
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    assert!(reason.contains(&format!("base image {frontend} moved: {} -> {}", short(&v1), short(&v2))), "{reason}");
    docker(&["image", "rm", &frontend, &mirrored]);
    docker(&["image", "rm", &v1]);
}

#[test]
fn a_build_whose_inputs_are_not_known_here_is_pushed_without_a_content_tag() {
    let reg = registry();
    let ws = Workspace::new("unknownpush");
    // A base named after a loopback port nothing listens on: no pull of it leaves the machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("127.0.0.1:{port}/pushbase-{}:1", ws.tag);
    ws.write("seed/Dockerfile", &format!("FROM scratch\nLABEL t={}\n", ws.tag));
    // The engine under test (under Podman the base is in Podman's storage).
    let docker = |args: &[&str]| ws.cli(args);
    // --no-cache: see only_in_the_mirror.
    let b = docker(&["build", "--no-cache", "-q", "-t", &base, ws.path("seed").to_str().unwrap()]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    ws.write("services/app/Dockerfile", &format!("FROM {base}\nCOPY app.txt /\n"));
    ws.write("services/app/app.txt", "app\n");
    ws.ok(&["build-all", &ws.tag, &reg, "--no-push"]);
    // The base goes: the image is OK with its base not checked, and its digest is unknown.
    assert!(docker(&["image", "rm", &base]).status.success());
    let st = ws.ok(&["check-status", &ws.tag, &reg, "--format", "plain"]);
    assert!(st.stdout.starts_with("app|OK|"), "{st:?}");
    let o = ws.run(&["build-all", &ws.tag, &reg]);
    assert_eq!(o.code, 0, "{o:?}");
    let tag_name = format!("{reg}/ai-infra-app:{}", ws.tag);
    assert!(o.stdout.contains(&format!("push app: pushed {tag_name} only: its inputs are not known here")), "{o:?}");
    assert!(!o.stdout.contains("inputs-"), "no content tag without a digest: {o:?}");
    let remote = plain_remote(&ws, &reg);
    assert_eq!(remote["app"].1, "STALE", "{remote:?}");
    let human = ws.ok(&["check-status", &ws.tag, &reg, "--remote"]);
    assert!(human.stdout.contains("its inputs are not known here"), "{human:?}");
    docker(&["image", "rm", &tag_name]);
}

#[test]
fn the_legacy_builder_gets_the_bases_of_stages_its_target_does_not_need() {
    let reg = registry();
    let ws = Workspace::new("unneededbase");
    // A base only the loopback registry has, read by a stage the target does not need: the
    // legacy builder builds that stage anyway (a probe build showed it), BuildKit skips it.
    let base = format!("{reg}/unneeded-{}:1", ws.tag);
    ws.write("seed/Dockerfile", &format!("FROM scratch\nLABEL t={}\n", ws.tag));
    let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output().unwrap();
    assert!(docker(&["build", "-q", "-t", &base, ws.path("seed").to_str().unwrap()]).status.success());
    assert!(docker(&["push", &base]).status.success());
    assert!(docker(&["image", "rm", &base]).status.success());
    ws.write(
        "services/app/Dockerfile",
        &format!("FROM {base} AS tools\nLABEL unused=1\nFROM scratch AS app\nCOPY a.txt /\n"),
    );
    ws.write("services/app/a.txt", "a\n");
    let o = ws.run(&["build-all", &ws.tag]);
    let present = docker(&["image", "inspect", &base]).status.success();
    docker(&["image", "rm", &base]);
    assert_eq!(o.code, 0, "{o:?}");
    ws.expect(&[("app", "OK")]);
    if builder() == "legacy" {
        assert!(o.stdout.contains(&format!("pulled {base}")), "{o:?}");
        assert!(present);
    } else {
        assert!(!o.stdout.contains(&format!("pulled {base}")), "BuildKit does not need it: {o:?}");
        assert!(!present);
    }
}
