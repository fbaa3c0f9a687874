//! check-status and build on a real engine: every status for real, content not timestamps.

use crate::common;

use common::Workspace;

#[test]
fn missing_then_built_then_ok() {
    let ws = Workspace::stack("missing");
    ws.expect(&[("base", "MISSING"), ("mid", "MISSING"), ("leaf", "MISSING"), ("solo", "MISSING")]);
    let line = ws.reason("base");
    // The image is named once, and the reason says what to know.
    assert!(line.ends_with("not built yet") && line.matches("ai-infra-base").count() == 1, "{line}");
    let check = ws.ok(&["check-status", &ws.tag]);
    let next = format!("next: `cargo xtask build-all {}` builds the 5 images that are not OK", ws.tag);
    assert!(check.stdout.ends_with(&format!("\n{next}\n")), "{check:?}");
    let out = ws.build(&["leaf"]);
    // Parents first, and only what leaf needs.
    assert_eq!(Workspace::built(&out.stdout), vec!["base", "mid", "leaf"], "{}", out.stdout);
    ws.expect(&[("base", "OK"), ("mid", "OK"), ("leaf", "OK"), ("other", "MISSING"), ("solo", "MISSING")]);
    // A second build of an OK service builds nothing.
    let again = ws.ok(&["build", "leaf", &ws.tag]);
    assert!(Workspace::built(&again.stdout).is_empty(), "{again:?}");
    assert!(again.stdout.contains("all 3 images are up to date: nothing to build"), "{again:?}");
}

#[test]
fn a_size_zero_image_is_invalid() {
    let ws = Workspace::new("invalid");
    ws.write("services/empty/Dockerfile", "FROM scratch\nLABEL purpose=nothing\n");
    // Built by hand, without this tool's input record: nothing says it is what was meant.
    let image = format!("ai-infra-empty:{}", ws.tag);
    let b = ws.cli(&["build", "-q", "-t", &image, ws.path("services/empty").to_str().unwrap()]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    ws.expect(&[("empty", "INVALID")]);
    let reason = ws.reason("empty");
    assert!(reason.contains("size 0") && reason.contains("no layers"), "{reason}");
    // The tool's own build records its inputs: OK from then on, and not built again.
    let o = ws.ok(&["build-all", &ws.tag, "--no-push"]);
    assert_eq!(Workspace::built(&o.stdout), ["empty"], "{o:?}");
}

#[test]
fn an_image_empty_by_design_is_ok_and_not_rebuilt() {
    let ws = Workspace::new("empty-ok");
    // A label of its own: another test's image of the same inputs would be reused instead.
    ws.write("services/labels/Dockerfile", &format!("FROM scratch\nLABEL purpose=nothing ws={}\n", ws.tag));
    let o = ws.ok(&["build-all", &ws.tag, "--no-push"]);
    assert_eq!(Workspace::built(&o.stdout), ["labels"], "{o:?}");
    ws.expect(&[("labels", "OK")]);
    assert!(ws.reason("labels").contains("empty image"), "{}", ws.reason("labels"));
    let again = ws.ok(&["build-all", &ws.tag, "--no-push"]);
    assert!(Workspace::built(&again.stdout).is_empty(), "{again:?}");
    assert!(again.stdout.contains("nothing to build"), "{again:?}");
}

#[test]
fn content_decides_not_timestamps() {
    let ws = Workspace::stack("content");
    // Modes as a checkout with umask 022 makes them, whatever this machine's umask.
    ws.chmod("services/leaf/leaf.sh", 0o644);
    ws.chmod("services/base/rootfs/etc", 0o755);
    ws.build(&["leaf", "other", "solo"]);
    let all_ok = [("base", "OK"), ("mid", "OK"), ("leaf", "OK"), ("other", "OK"), ("solo", "OK")];
    ws.expect(&all_ok);

    // Touching a file, or changing it and changing it back, leaves everything OK.
    let f = ws.path("services/mid/mid.txt");
    let t = std::fs::File::options().append(true).open(&f).unwrap();
    t.set_modified(std::time::SystemTime::now()).unwrap();
    ws.write("services/mid/mid.txt", "changed\n");
    ws.write("services/mid/mid.txt", "mid\n");
    ws.expect(&all_ok);

    // A changed ignored file: still OK.
    ws.write("services/other/data/state.db", "new local state\n");
    ws.write("services/other/debug.log", "a new ignored file\n");
    ws.expect(&[("other", "OK")]);

    // A changed file: that service STALE, its descendants too, with reasons.
    ws.write("services/mid/mid.txt", "mid v2\n");
    ws.expect(&[("base", "OK"), ("mid", "STALE"), ("leaf", "STALE"), ("other", "OK")]);
    assert!(
        ws.reason("mid").contains("files changed: mid.txt (modified, read by COPY at line 3)"),
        "{}",
        ws.reason("mid")
    );
    assert!(ws.reason("leaf").contains("parent mid changed"), "{}", ws.reason("leaf"));

    // Reverted: OK again.
    ws.write("services/mid/mid.txt", "mid\n");
    ws.expect(&all_ok);

    // A changed parent: every descendant STALE.
    ws.write("services/base/rootfs/etc/base.conf", "base=2\n");
    ws.expect(&[("base", "STALE"), ("mid", "STALE"), ("leaf", "STALE"), ("other", "STALE"), ("solo", "OK")]);
    ws.write("services/base/rootfs/etc/base.conf", "base=1\n");
    ws.expect(&all_ok);

    // A new executable bit; every other permission bit too, as COPY keeps them all, of
    // files and of folders.
    ws.chmod("services/leaf/leaf.sh", 0o755);
    ws.expect(&[("mid", "OK"), ("leaf", "STALE")]);
    assert!(ws.reason("leaf").contains("leaf.sh (mode 644 -> 755, read by COPY at line 3)"), "{}", ws.reason("leaf"));
    ws.chmod("services/leaf/leaf.sh", 0o600);
    ws.expect(&[("mid", "OK"), ("leaf", "STALE")]);
    assert!(ws.reason("leaf").contains("leaf.sh (mode 644 -> 600, read by COPY at line 3)"), "{}", ws.reason("leaf"));
    ws.chmod("services/leaf/leaf.sh", 0o644);
    ws.chmod("services/base/rootfs/etc", 0o700);
    ws.expect(&[("base", "STALE"), ("solo", "OK")]);
    assert!(
        ws.reason("base").contains("rootfs/etc (mode 755 -> 700, read by COPY at line 3)"),
        "{}",
        ws.reason("base")
    );
    ws.chmod("services/base/rootfs/etc", 0o755);
    ws.expect(&all_ok);

    // A changed Dockerfile.
    ws.write("services/solo/Dockerfile", "FROM scratch\nCOPY solo.txt /solo.txt\n");
    ws.expect(&[("solo", "STALE"), ("leaf", "OK")]);
    assert!(ws.reason("solo").contains("Dockerfile changed"), "{}", ws.reason("solo"));

    // A new file in a context that no instruction reads: still OK.
    ws.write("services/solo/Dockerfile", "FROM scratch\nCOPY solo.txt /\n");
    ws.write("services/solo/notes.txt", "not copied\n");
    ws.expect(&[("solo", "OK")]);
    // An empty folder where the build copies everything (Docker copies folders too).
    std::fs::create_dir(ws.path("services/other/empty")).unwrap();
    ws.expect(&[("other", "STALE")]);
    assert!(ws.reason("other").contains("empty (added, read by COPY at line 3)"), "{}", ws.reason("other"));
}

#[test]
fn a_rebuilt_image_is_ok_and_force_rebuilds() {
    let ws = Workspace::stack("force");
    ws.build(&["mid"]);
    ws.write("services/mid/mid.txt", "v2\n");
    ws.expect(&[("mid", "STALE")]);
    let out = ws.ok(&["build", "mid", &ws.tag]);
    assert_eq!(Workspace::built(&out.stdout), vec!["mid"], "{out:?}");
    // The plan counts the up-to-date parent in one line instead of a line of its own.
    assert!(out.stdout.contains("plan: 1 to build, reuse or pull, 1 up to date\n"), "{out:?}");
    assert!(!out.stdout.contains("skip "), "{out:?}");
    ws.expect(&[("base", "OK"), ("mid", "OK")]);
    let forced = ws.ok(&["build", "mid", &ws.tag, "--force"]);
    assert!(forced.stdout.contains("building mid (forced: rebuilt without cache)"), "{forced:?}");
    assert_eq!(Workspace::built(&forced.stdout), vec!["mid"], "{forced:?}");
    let env = ws.run_env(&["build", "mid", &ws.tag], &[("FORCE_REBUILD", "true")]);
    assert!(env.stdout.contains("forced"), "{env:?}");
}

#[test]
fn reports_in_three_formats() {
    let ws = Workspace::stack("formats");
    ws.build(&["solo"]);
    let plain = ws.ok(&["check-status", &ws.tag, "--format", "plain"]);
    assert_eq!(plain.stdout.lines().count(), 5);
    assert!(plain.stdout.contains(&format!("solo|OK|ai-infra-solo:{}\n", ws.tag)), "{plain:?}");
    let json = ws.ok(&["check-status", &ws.tag, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["tag"], ws.tag.as_str());
    assert_eq!(v["counts"]["OK"], 1);
    assert_eq!(v["counts"]["MISSING"], 4);
    let solo = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "solo").unwrap();
    assert_eq!(solo["status"], "OK");
    assert_eq!(solo["expected_digest"], solo["found_digest"]);
    assert!(solo["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert!(solo["size"].as_u64().unwrap() > 0);
    assert!(solo["created"].as_str().is_some());
    let human = ws.ok(&["check-status", &ws.tag]);
    assert!(human.stdout.contains(&format!("tag {}, local build", ws.tag)), "{human:?}");
    assert!(human.stdout.contains("✓ OK         1/5") && human.stdout.contains("✗ MISSING    4/5"), "{human:?}");
    assert!(!human.stdout.contains('\x1b'), "no colour when not a terminal");
    // --exit-code: 1 while anything is not OK.
    assert_eq!(ws.run(&["check-status", &ws.tag, "--exit-code"]).code, 1);
    ws.build(&["leaf", "other"]);
    assert_eq!(ws.run(&["check-status", &ws.tag, "--exit-code"]).code, 0);
}

#[test]
fn the_graph_is_drawn_coloured_by_status() {
    let ws = Workspace::stack("graph");
    ws.build(&["mid"]);
    ws.write("services/mid/mid.txt", "changed\n");
    let dot = ws.ok(&["check-status", &ws.tag, "--format", "dot"]).stdout;
    for line in [
        "\"base\" [shape=box, label=\"base\\nOK\", fillcolor=\"#b7e1a1\"",
        "\"mid\" [shape=box, label=\"mid\\nSTALE\", fillcolor=\"#ffd59a\", tooltip=\"files changed: mid.txt (modified",
        "\"leaf\" [shape=box, label=\"leaf\\nMISSING\"",
        "\"base\" -> \"mid\";",
        "\"mid\" -> \"leaf\";",
        "\"base\" -> \"other\";",
    ] {
        assert!(dot.contains(line), "{line}: {dot}");
    }
    // Graphviz reads it.
    let mut svg = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz's dot (the suite installs Debian's graphviz)");
    std::io::Write::write_all(&mut svg.stdin.take().unwrap(), dot.as_bytes()).unwrap();
    let out = svg.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("<svg"), "{out:?}");
    let mermaid = ws.ok(&["check-status", &ws.tag, "--format", "mermaid"]).stdout;
    assert!(mermaid.starts_with("flowchart LR\n") && mermaid.contains("[\"mid: STALE\"]:::stale"), "{mermaid}");
    assert_eq!(mermaid.matches(" --> ").count(), 3, "{mermaid}");
    let o = ws.run(&["check-status", &ws.tag, "--format", "dot", "--deps"]);
    assert_eq!(o.code, 2, "{o:?}");
    let o = ws.run(&["build-all", &ws.tag, "--dry-run", "--format", "mermaid"]);
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn tag_comes_from_env_file() {
    let ws = Workspace::stack("envtag");
    ws.write(".env", &format!("IMAGE_TAG={}\n", ws.tag));
    let o = ws.ok(&["check-status", "--format", "plain"]);
    assert!(o.stdout.contains(&format!("ai-infra-solo:{}", ws.tag)), "{o:?}");
    ws.write(".env", "IMAGE_TAG='bad tag'\n");
    let o = ws.run(&["check-status"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("IMAGE_TAG in .env"), "{o:?}");
}

#[test]
fn second_image_from_one_dockerfile_with_targets() {
    let ws = Workspace::new("targets");
    ws.write(
        "services/app/Dockerfile",
        "ARG IMAGE_TAG=latest\nFROM scratch AS init\nCOPY init.sql /\nFROM scratch AS app\nCOPY app.txt /\n",
    );
    ws.write("services/app/init.sql", "select 1;\n");
    ws.write("services/app/app.txt", "app for the targets test\n");
    ws.write(
        "services.toml",
        "[app]\ntarget = \"app\"\n\n[app-init]\ndockerfile = \"services/app/Dockerfile\"\ntarget = \"init\"\n",
    );
    ws.build(&["app", "app-init"]);
    ws.expect(&[("app", "OK"), ("app-init", "OK")]);
    // Both build from one context, but only init's stage reads init.sql: app stays OK.
    ws.write("services/app/init.sql", "select 2;\n");
    ws.expect(&[("app", "OK"), ("app-init", "STALE")]);
    assert!(ws.reason("app-init").contains("init.sql (modified, read by COPY at line 3)"), "{}", ws.reason("app-init"));
}

#[test]
fn a_remembered_platform_that_disagrees_is_asked_again() {
    let ws = Workspace::stack("platform");
    ws.build(&["solo"]);
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    // As if another engine (arm64) had answered at this address before.
    ws.write("target/xtask/engine-platform", &format!("{host}\tlinux\tarm64\n"));
    ws.expect(&[("solo", "OK")]);
    let remembered = ws.read("target/xtask/engine-platform");
    assert!(!remembered.contains("arm64"), "asked again and remembered: {remembered}");
}

#[test]
fn a_hash_cache_that_cannot_be_saved_is_named_and_the_check_goes_on() {
    let ws = Workspace::new("cache-blocked");
    ws.write("services/solo/Dockerfile", "FROM scratch\nCOPY solo.txt /\n");
    ws.write("services/solo/solo.txt", "solo\n");
    // A folder where the context's cache file goes: the save's rename must fail, even as root.
    ws.write("target/xtask/hash-cache/services%2Fsolo/in-the-way", "");
    // Only a file older than the racy window (2 s) is worth a cache entry, and so a save.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let o = ws.ok(&["check-status", &ws.tag, "--format", "plain"]);
    assert_eq!(o.stdout.trim(), format!("solo|MISSING|ai-infra-solo:{}", ws.tag), "{o:?}");
    assert!(o.stderr.contains("note: cannot save the hash cache") && o.stderr.contains("services%2Fsolo"), "{o:?}");
}

#[test]
fn a_damaged_hash_cache_is_discarded_and_the_check_stays_right() {
    let ws = Workspace::new("cache-damaged");
    ws.write("services/solo/Dockerfile", "FROM scratch\nCOPY solo.txt /\n");
    ws.write("services/solo/solo.txt", &format!("solo {}\n", ws.tag));
    // Only a file older than the racy window (2 s) gets a cache entry.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    ws.build(&["solo"]);
    ws.expect(&[("solo", "OK")]);
    // One bit of the file's hash (its 32 bytes, as the cache keeps it) changed on disk.
    use sha2::Digest;
    let sha = sha2::Sha256::digest(ws.read("services/solo/solo.txt"));
    let cache = ws.path("target/xtask/hash-cache/services%2Fsolo");
    let mut bytes = std::fs::read(&cache).unwrap();
    let at = bytes.windows(32).position(|w| w == sha.as_slice()).expect("the file's hash is cached") + 10;
    bytes[at] ^= 4;
    std::fs::write(&cache, &bytes).unwrap();
    ws.expect(&[("solo", "OK")]);
    // And the cache was written anew, right.
    assert!(std::fs::read(&cache).unwrap().windows(32).any(|w| w == sha.as_slice()));
}

/// One `image inspect` of every name answers for the names engines treat apart: a
/// `localhost/` name (under Docker another repository than the plain one), names with a
/// registry's port, and a base whose digest the engine refuses to parse; without the engine's
/// CLI, the check says what to do.
#[test]
fn one_inspect_answers_for_every_name() {
    let ws = Workspace::stack("byname");
    ws.build(&["base", "other"]);
    let o = ws.cli(&["tag", &format!("ai-infra-other:{}", ws.tag), &format!("localhost/ai-infra-solo:{}", ws.tag)]);
    assert!(o.status.success(), "{o:?}");
    ws.write("services/pinned/Dockerfile", &format!("FROM busybox@sha256:{}\n", "0".repeat(40)));
    let statuses = ws.statuses();
    if common::engine() == "docker" {
        assert_eq!(statuses.get("solo").map(String::as_str), Some("MISSING"), "{statuses:?}");
    }
    assert_eq!(statuses.get("other").map(String::as_str), Some("OK"), "{statuses:?}");
    assert_eq!(statuses.get("pinned").map(String::as_str), Some("ERROR"), "{statuses:?}");
    let o = ws.ok(&["check-status", &ws.tag, "127.0.0.1:5999", "--format", "plain"]);
    let other = format!("other|MISSING|127.0.0.1:5999/ai-infra-other:{}", ws.tag);
    assert!(o.stdout.lines().any(|l| l == other), "{o:?}");
    let no_cli = ws.path("no-cli");
    std::fs::create_dir_all(&no_cli).unwrap();
    let o = ws.run_env(&["check-status", &ws.tag, "--format", "plain"], &[("PATH", no_cli.to_str().unwrap())]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains(&format!("cannot run the {} command", common::engine())), "{o:?}");
}

#[test]
fn a_shift_in_run_is_not_a_heredoc() {
    let ws = Workspace::new("shift");
    ws.write("services/calc/Dockerfile", "FROM scratch\nRUN echo $((1<<3)) > /x\nCOPY a /\n");
    ws.write("services/calc/a", "a\n");
    ws.expect(&[("calc", "MISSING")]);
}

#[test]
fn one_broken_service_hides_no_other() {
    let ws = Workspace::stack("broken");
    ws.write("services/bad/Dockerfile", "FROM scratch\nCOPY x /\n!!! not an instruction\n");
    ws.write("services/badarg/Dockerfile", "ARG BASE\nFROM ${BASE}\n");
    ws.write("services/badtarget/Dockerfile", "FROM scratch AS one\nCOPY t.txt /\n");
    ws.write("services/badtarget/t.txt", "t\n");
    ws.write("services.toml", "[badtarget]\ntarget = \"nosuch\"\n");
    ws.write("services/child/Dockerfile", "ARG IMAGE_TAG=latest\nFROM ai-infra-bad:${IMAGE_TAG}\n");
    ws.write("services/badignore/Dockerfile", "FROM scratch\nCOPY . /\n");
    ws.write("services/badignore/.dockerignore", "ok\n[\n");
    let o = ws.run(&["check-status", &ws.tag, "--format", "plain"]);
    assert_eq!(o.code, 0, "{o:?}");
    for line in [
        "bad|ERROR|",
        "badarg|ERROR|",
        "badtarget|ERROR|",
        "badignore|ERROR|",
        "child|ERROR|",
        "base|MISSING|",
        "solo|MISSING|",
    ] {
        assert!(o.stdout.lines().any(|l| l.starts_with(line)), "{line}: {o:?}");
    }
    let reason = ws.reason("bad");
    assert!(reason.contains("services/bad/Dockerfile") && reason.contains("line 3"), "{reason}");
    assert!(ws.reason("badarg").contains("expands to nothing"), "{}", ws.reason("badarg"));
    assert!(ws.reason("badtarget").contains("target stage 'nosuch' is not defined"), "{}", ws.reason("badtarget"));
    assert!(ws.reason("child").contains("its parent bad is ERROR"), "{}", ws.reason("child"));
    let reason = ws.reason("badignore");
    assert!(reason.contains("services/badignore/.dockerignore") && reason.contains("line 2"), "{reason}");
    let human = ws.ok(&["check-status", &ws.tag]).stdout;
    assert!(human.contains("ERROR      5/10"), "{human}");
    let json: serde_json::Value =
        serde_json::from_str(&ws.ok(&["check-status", &ws.tag, "--format", "json"]).stdout).unwrap();
    assert_eq!(json["counts"]["ERROR"], 5, "{json}");
    assert_eq!(ws.run(&["check-status", &ws.tag, "--exit-code"]).code, 1);

    // The preview fails as the run would, and names the broken ones (human and JSON).
    let o = ws.run(&["build-all", &ws.tag, "--dry-run"]);
    assert!(o.code == 1 && o.stdout.contains("ERROR bad: "), "{o:?}");
    let o = ws.run(&["build-all", &ws.tag, "--dry-run", "--format", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let mut errors: Vec<&str> =
        plan["errors"].as_array().unwrap().iter().map(|e| e["service"].as_str().unwrap()).collect();
    errors.sort();
    assert_eq!(errors, ["bad", "badarg", "badignore", "badtarget", "child"], "{plan}");
    let o = ws.run(&["build", "bad", &ws.tag, "--dry-run"]);
    assert!(o.code == 1 && o.stdout.contains("1 of 1 images need work") && o.stdout.contains("ERROR bad: "), "{o:?}");

    // build-all builds everything else, names the broken ones, and fails.
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 1, "{o:?}");
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, vec!["base", "leaf", "mid", "other", "solo"], "{o:?}");
    assert!(o.stdout.contains("ERROR bad: ") && o.stdout.contains("ERROR child: its parent bad is ERROR"), "{o:?}");
    ws.expect(&[("base", "OK"), ("leaf", "OK"), ("solo", "OK"), ("bad", "ERROR")]);
    // Building the broken one alone says why and fails; a no-op build-all still fails.
    let o = ws.run(&["build", "bad", &ws.tag]);
    assert!(o.code == 1 && o.stdout.contains("ERROR bad: "), "{o:?}");
    let o = ws.run(&["build-all", &ws.tag]);
    assert!(o.code == 1 && o.stdout.contains("nothing else to build"), "{o:?}");
}

/// A parent whose base image is not here has no known digest, so its child's parents cannot
/// be compared: the child is then OK only while the parent is.
#[test]
fn a_child_is_not_ok_while_its_unknowable_parent_is_stale() {
    let ws = Workspace::new("unknowable");
    let base = format!("xtask-base-{}:1", ws.tag);
    ws.write("base/Dockerfile", &format!("FROM scratch\nLABEL t={}\n", ws.tag));
    // The engine under test (under Podman the base is in Podman's storage).
    let docker = |args: &[&str]| ws.cli(args);
    let b = docker(&["build", "-q", "-t", &base, ws.path("base").to_str().unwrap()]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    ws.write("services/parent/Dockerfile", &format!("FROM {base}\nCOPY p.txt /\n"));
    ws.write("services/parent/p.txt", "1\n");
    ws.write("services/child/Dockerfile", "ARG IMAGE_TAG=latest\nFROM ai-infra-parent:${IMAGE_TAG}\nCOPY c.txt /\n");
    ws.write("services/child/c.txt", "1\n");
    ws.ok(&["build-all", &ws.tag]);
    ws.expect(&[("parent", "OK"), ("child", "OK")]);
    // The base goes (its name only); the parent's own file changes.
    let rm = docker(&["image", "rm", &base]);
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    ws.write("services/parent/p.txt", "2\n");
    ws.expect(&[("parent", "STALE"), ("child", "STALE")]);
    let reason = ws.reason("child");
    assert!(reason.contains("its parent parent is STALE"), "{reason}");
}

#[test]
fn a_source_through_a_link_reads_the_file_it_points_to() {
    let ws = Workspace::new("links");
    // Both builders follow a COPY source that is a link, or passes through one, and copy what
    // it points to (a probe build under each showed it): that file is an input.
    ws.write("services/app/shared/app.conf", "port=1\n");
    ws.write("services/app/shared/lib/x.txt", "x1\n");
    ws.write(
        "services/app/Dockerfile",
        &format!("FROM scratch\nCOPY conf /conf\nCOPY lib/x.txt /x\nLABEL t={}\n", ws.tag),
    );
    std::os::unix::fs::symlink("shared/app.conf", ws.path("services/app/conf")).unwrap();
    std::os::unix::fs::symlink("/shared/lib", ws.path("services/app/lib")).unwrap();
    ws.ok(&["build-all", &ws.tag]);
    ws.expect(&[("app", "OK")]);
    ws.write("services/app/shared/app.conf", "port=2\n");
    ws.expect(&[("app", "STALE")]);
    let reason = ws.reason("app");
    assert!(reason.contains("shared/app.conf (modified, read by COPY at line 2)"), "{reason}");
    ws.write("services/app/shared/app.conf", "port=1\n");
    ws.expect(&[("app", "OK")]);
    ws.write("services/app/shared/lib/x.txt", "x2\n");
    ws.expect(&[("app", "STALE")]);
    let reason = ws.reason("app");
    assert!(reason.contains("shared/lib/x.txt (modified, read by COPY at line 3)"), "{reason}");
}
