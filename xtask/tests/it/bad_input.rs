//! Bad input gets one clear line, the right exit code, and writes nothing.

use crate::common;

use common::Workspace;

fn one_error_line(o: &common::Output) -> &str {
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of error: {o:?}");
    assert!(lines[0].starts_with("error: "), "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    lines[0]
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::stack_offline("usage");
    for (args, needle) in [
        (&["frobnicate"][..], "unknown command"),
        (&["check-status", "--colour"], "unknown flag --colour"),
        (&["check-status", "a", "b.io", "c"], "unexpected argument"),
        (&["check-status", "v1 2"], "invalid tag"),
        (&["check-status", "-x"], "unknown flag -x"),
        (&["check-status", &"a".repeat(129)], "129 characters"),
        (&["check-status", ""], "empty"),
        (&["check-status", "v1", "reg.io/Team"], "lowercase"),
        (&["check-status", "v1", "http://reg.io"], "scheme"),
        (&["check-status", "v1", "reg.io:port"], "port"),
        (&["build", "nosuch", "v1"], "unknown service \"nosuch\"; known services: base, leaf, mid, other, solo"),
        // A form the command does not have is refused, not answered with text.
        (&["build-all", "--format", "json"], "add --dry-run"),
        (&["clean-all", "--format", "json"], "unknown flag --format"),
    ] {
        let o = ws.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        let line = one_error_line(&o);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let help = ws.ok(&["--help"]);
    for cmd in
        ["check-status", "build-all", "build", "clean-all", "history", "sync-env", "render", "engine", "test", "bench"]
    {
        assert!(help.stdout.contains(cmd), "{help:?}");
        let o = ws.ok(&[cmd, "--help"]);
        assert!(o.stdout.starts_with(&format!("Usage: cargo xtask {cmd}")), "{o:?}");
        assert_eq!(ws.ok(&["help", cmd]).stdout, o.stdout, "`help {cmd}` is `{cmd} --help`");
    }
}

#[test]
fn bad_environment_values_are_usage_errors_before_anything_runs() {
    let ws = Workspace::stack_offline("badenv");
    assert!(!common::exists(&ws.path(".env")), "the workspace starts without .env");
    for (var, value, args) in [
        ("FORCE_REBUILD", "yes", &["build-all", "v1"][..]),
        ("FORCE_REBUILD", "maybe", &["check-status", "v1"]),
        ("AI_INFRA_BUILDER", "foo", &["build-all", "v1"]),
        ("AI_INFRA_BUILDER", "foo", &["check-status", "v1"]),
        ("AI_INFRA_ENGINE", "dockr", &["build-all", "v1"]),
        ("AI_INFRA_PULL_TIMEOUT", "soon", &["check-status", "v1"]),
        ("AI_INFRA_PUSH_TIMEOUT", "0", &["build-all", "v1"]),
    ] {
        let o = ws.run_env(args, &[(var, value)]);
        assert_eq!(o.code, 2, "{var}={value} {args:?}: {o:?}");
        let line = one_error_line(&o);
        assert!(line.contains(&format!("{var}=\"{value}\"")), "{line}");
        assert!(o.stdout.is_empty(), "nothing runs before the check: {o:?}");
        assert!(!common::exists(&ws.path(".env")), "{var}={value}: .env written before the check");
    }
    // The values it takes pass the check (and fail later here, where no engine answers).
    for value in ["TRUE", "1", "false", "0", "False", ""] {
        let o = ws.run_env(&["build-all", "v1"], &[("FORCE_REBUILD", value)]);
        assert!(o.code == 1 && !o.stderr.contains("FORCE_REBUILD"), "FORCE_REBUILD={value}: {o:?}");
    }
}

#[test]
fn a_name_holding_a_control_character_keeps_the_error_on_one_line() {
    let ws = Workspace::stack_offline("ctrlname");
    ws.write("templates/solo/x\ny\u{1b}[2J/a.conf.tpl", "{{NOPE}}\n");
    let o = ws.run(&["render"]);
    assert_eq!(o.code, 1, "{o:?}");
    let line = one_error_line(&o);
    assert!(line.contains("templates/solo/x\\ny\\u{1b}[2J/a.conf.tpl:1:1: NOPE is not defined"), "{line}");
}

#[test]
fn broken_projects_fail_with_one_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("services/nodf/README", "no Dockerfile", "has no Dockerfile at services/nodf/Dockerfile"),
        ("services/x/Dockerfile", "ARG B\nFROM ${B}\n", "expands to nothing"),
        ("services/x/Dockerfile", "FROM scratch\nCOPY --from=builder /a /a\n", "names no stage defined before it"),
        ("services/x/Dockerfile", "FROM scratch AS a\nFROM b\nFROM scratch AS b\n", "defined later"),
        ("services/x/.dockerignore", "tmp\n!\n", "lone '!'"),
        ("services.toml", "[ghost]\ntarget = \"x\"\n", "must set dockerfile"),
    ];
    for (file, content, needle) in cases {
        let ws = Workspace::stack("broken");
        if *file == "services/nodf/README" {
            ws.write(file, content);
        } else {
            if file.starts_with("services/x/") {
                ws.write("services/x/Dockerfile", "FROM scratch\nCOPY . /\n");
            }
            ws.write(file, content);
        }
        let o = ws.run(&["check-status", &ws.tag]);
        if file.ends_with("Dockerfile") || file.ends_with(".dockerignore") {
            // A Dockerfile (or .dockerignore) that cannot be read as the builders read it
            // makes that service ERROR, with its reason, and the others are classified as usual.
            assert_eq!(o.code, 0, "{file}: {o:?}");
            let line = o.stdout.lines().find(|l| l.starts_with("  x ")).unwrap_or_default();
            assert!(o.stdout.contains("\n! ERROR\n") && line.contains(needle), "{file}: {o:?}");
            assert!(o.stdout.contains("  solo "), "{o:?}");
            continue;
        }
        assert_eq!(o.code, 1, "{file}: {o:?}");
        let line = one_error_line(&o);
        assert!(line.contains(needle), "{file}: {line}");
        assert!(!ws.path("target/xtask/hash-cache").exists(), "nothing written for {file}");
    }
}

#[test]
fn a_dependency_cycle_is_named() {
    let ws = Workspace::new("cycle");
    ws.write("services/a/Dockerfile", "ARG IMAGE_TAG\nFROM ai-infra-b:${IMAGE_TAG}\n");
    ws.write("services/b/Dockerfile", "ARG IMAGE_TAG\nFROM ai-infra-c:${IMAGE_TAG}\n");
    ws.write("services/c/Dockerfile", "ARG IMAGE_TAG\nFROM ai-infra-a:${IMAGE_TAG}\n");
    let o = ws.run(&["check-status", &ws.tag]);
    assert_eq!(o.code, 1);
    assert!(one_error_line(&o).contains("dependency cycle: a -> b -> c -> a"), "{o:?}");
}

#[test]
fn symlinks_are_recorded_not_followed() {
    let ws = Workspace::stack("symlinks");
    // A loop inside a context is two links, as Docker sends them.
    std::os::unix::fs::symlink("loop2", ws.path("services/solo/loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", ws.path("services/solo/loop2")).unwrap();
    ws.expect(&[("solo", "MISSING")]);
    // A Dockerfile that is a link loop is a clear error.
    std::fs::remove_file(ws.path("services/solo/Dockerfile")).unwrap();
    std::os::unix::fs::symlink("Dockerfile", ws.path("services/solo/Dockerfile")).unwrap();
    let o = ws.run(&["check-status", &ws.tag]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(one_error_line(&o).contains("services/solo"), "{o:?}");
}

#[test]
fn an_unreadable_context_file_is_named() {
    let ws = Workspace::stack("unreadable");
    ws.write("services/solo/secret.txt", "x\n");
    ws.chmod("services/solo/secret.txt", 0o000);
    if std::fs::read(ws.path("services/solo/secret.txt")).is_ok() {
        // Root reads every file; the unit test context::unreadable_paths_are_clear_errors covers it.
        return;
    }
    // That service's ERROR alone.
    ws.expect(&[("solo", "ERROR"), ("base", "MISSING")]);
    assert!(ws.reason("solo").contains("cannot read secret.txt: fix its permissions"), "{}", ws.reason("solo"));
}

#[test]
fn no_engine_names_docker_host_and_engine_up() {
    let ws = Workspace::stack("noengine");
    let o = ws.run_env(&["check-status", &ws.tag], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(o.code, 1, "{o:?}");
    let line = one_error_line(&o);
    assert!(
        line.contains("unix:///nonexistent/docker.sock")
            && line.contains("cargo xtask engine up")
            && line.contains("DOCKER_HOST"),
        "{line}"
    );
    let o = ws.run_env(&["engine", "status"], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("no Docker engine answers"), "{o:?}");
    let o = ws.run_env(&["engine", "up"], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(one_error_line(&o).contains("does not answer"), "{o:?}");
    let o = ws.ok(&["engine", "status"]);
    assert!(o.stdout.contains("answers at"), "{o:?}");
    let o = ws.ok(&["engine", "down"]);
    assert!(o.stdout.contains("nothing stopped"), "{o:?}");
}

#[test]
fn docker_host_that_is_not_an_engine() {
    let Some(reg) = common::registry() else { panic!("run the suite with `cargo xtask test`") };
    let ws = Workspace::stack("notengine");
    let host = format!("tcp://{reg}");
    let o = ws.run_env(&["check-status", &ws.tag], &[("DOCKER_HOST", &host)]);
    assert_eq!(o.code, 1, "{o:?}");
    let line = one_error_line(&o);
    assert!(line.contains(&host) && line.contains("cargo xtask engine up"), "{line}");
    let o = ws.run_env(&["history", "nosuch"], &[]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(one_error_line(&o).contains("unknown service \"nosuch\""), "{o:?}");
}
