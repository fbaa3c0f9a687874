//! `.dockerignore` against real Docker: a probe image made with `COPY . /ctx/` under each
//! builder holds exactly the files Docker sent, and the tool's record of the build's inputs
//! must name the same files. Patterns Docker rejects must fail the check as they fail the build.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::Workspace;

/// The two builders: Debian's docker 20.10 CLI with `DOCKER_BUILDKIT=1` is BuildKit; the
/// machine's docker 28 CLI (no buildx plugin) is the legacy builder, else 20.10 told so.
fn builders() -> Vec<(&'static str, &'static str, &'static str)> {
    let buildkit = "/usr/bin/docker";
    assert!(
        std::path::Path::new(buildkit).exists(),
        "{buildkit} is missing: run the suite with `cargo xtask test`, which installs docker.io"
    );
    let legacy =
        if std::path::Path::new("/usr/local/bin/docker").exists() { "/usr/local/bin/docker" } else { buildkit };
    vec![("buildkit", buildkit, "1"), ("legacy", legacy, "0")]
}

fn docker(cli: &str, buildkit: &str, args: &[&str]) -> std::process::Output {
    Command::new(cli).args(args).env("DOCKER_BUILDKIT", buildkit).output().expect("run docker")
}

/// Builds the probe context with one builder; returns the paths under /ctx (folders end in
/// `/`), or the build's error output.
fn probe(ws: &Workspace, (name, cli, buildkit): (&str, &str, &str), image: &str) -> Result<BTreeSet<String>, String> {
    let context = ws.path("services/probe");
    let b = docker(cli, buildkit, &["build", "-q", "-t", image, context.to_str().unwrap()]);
    if !b.status.success() {
        return Err(String::from_utf8_lossy(&b.stderr).into_owned());
    }
    let c = docker(cli, buildkit, &["create", image, "none"]);
    assert!(c.status.success(), "{name}: create: {}", String::from_utf8_lossy(&c.stderr));
    let id = String::from_utf8_lossy(&c.stdout).trim().to_string();
    let tar = ws.path(&format!("{name}.tar"));
    let e = docker(cli, buildkit, &["export", "-o", tar.to_str().unwrap(), &id]);
    let _ = docker(cli, buildkit, &["rm", &id]);
    assert!(e.status.success(), "{name}: export: {}", String::from_utf8_lossy(&e.stderr));
    let t = Command::new("tar").arg("-tf").arg(&tar).output().expect("run tar");
    assert!(t.status.success(), "tar: {}", String::from_utf8_lossy(&t.stderr));
    Ok(String::from_utf8_lossy(&t.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ctx/"))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The paths the tool recorded for the probe's one build (folders end in `/`).
fn recorded(ws: &Workspace) -> BTreeSet<String> {
    let dir = ws.path("target/xtask/inputs");
    let records: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(records.len(), 1, "one build, one record in {dir:?}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(records[0].path()).unwrap()).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f[0].as_str().unwrap();
            if f[1] == "dir" {
                format!("{path}/")
            } else {
                path.to_string()
            }
        })
        .collect()
}

const PATTERNS: &str = "\
# `!` in a class is a character; `^` negates, and then matches `/` too
[!a]bc
a[^x]b
logs
!logs/keep.log
# a wildcard exception: into logs/ (walked for the exception above), and into cache/, which
# these builders do not walk into (newer BuildKit does): the tool counts cache/c.keep
cache
!*/*.keep
m/**/*.txt
q\\*
**/*.tmp
!**/important.tmp
/lead/
trail/
?x
 spaced.txt 
";

const FILES: &[&str] = &[
    "abc",
    "xbc",
    "!bc",
    "ybc",
    "a/b",
    "a/c",
    "axb",
    "logs/keep.log",
    "logs/drop.log",
    "logs/x.keep",
    "deep/logs/y.keep",
    "cache/c.keep",
    "cache/c.drop",
    "q*",
    "qz",
    "m/p.txt",
    "m/n/o.txt",
    "m/n/o.md",
    "t/one.tmp",
    "t/deeper/important.tmp",
    "lead/f",
    "sub/lead/f",
    "trail/f",
    "1x",
    "12x",
    "spaced.txt",
    "sp ace.txt",
];

#[test]
fn the_context_is_what_docker_sends_under_both_builders() {
    let mut ws = Workspace::new("ignore-probe");
    ws.write("services/probe/Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    ws.write("services/probe/.dockerignore", PATTERNS);
    for f in FILES {
        ws.write(&format!("services/probe/{f}"), f);
    }
    std::fs::create_dir_all(ws.path("services/probe/empty-dir")).unwrap();
    let o = ws.ok(&["build", "probe", &ws.tag]);
    assert_eq!(Workspace::built(&o.stdout), ["probe"], "{o:?}");
    let tool = recorded(&ws);
    let files =
        |set: &BTreeSet<String>| -> BTreeSet<String> { set.iter().filter(|p| !p.ends_with('/')).cloned().collect() };
    // The table the matcher was written from, checked here too.
    let want: BTreeSet<String> =
        ["xbc", "ybc", "a/c", "axb", "logs/keep.log", "logs/x.keep", "deep/logs/y.keep", "cache/c.keep", "qz"]
            .into_iter()
            .chain([
                "m/n/o.md",
                "t/deeper/important.tmp",
                "sub/lead/f",
                "12x",
                "sp ace.txt",
                "Dockerfile",
                ".dockerignore",
            ])
            .chain([".test-workspace"])
            .map(str::to_string)
            .collect();
    assert_eq!(files(&tool), want, "the tool's record");
    assert!(tool.contains("empty-dir/"), "{tool:?}");
    for builder in builders() {
        let tag = format!("{}-{}", ws.tag, builder.0);
        ws.also_tag(&tag);
        let sent =
            probe(&ws, builder, &format!("ai-infra-probe:{tag}")).unwrap_or_else(|e| panic!("{}: {e}", builder.0));
        // Every file Docker sent is in the record; the record has more only where the
        // builders disagree by design.
        let only_tool: Vec<_> = files(&tool).difference(&files(&sent)).cloned().collect();
        let only_docker: Vec<_> = files(&sent).difference(&files(&tool)).cloned().collect();
        assert!(only_docker.is_empty(), "{}: Docker sent files the tool does not count: {only_docker:?}", builder.0);
        assert_eq!(only_tool, ["cache/c.keep"], "{}: the tool counts files Docker did not send", builder.0);
        let dirs: Vec<_> = tool.iter().filter(|p| p.ends_with('/') && !sent.contains(*p)).collect();
        assert!(dirs.is_empty(), "{}: folders the image lacks: {dirs:?}", builder.0);
    }
}

#[test]
fn patterns_docker_rejects_are_errors_naming_the_line() {
    let ws = Workspace::new("ignore-bad");
    ws.write("services/probe/Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    ws.write("services/probe/f", "f");
    for bad in ["[]]x", "[x-]bc"] {
        ws.write("services/probe/.dockerignore", &format!("ok\n{bad}\n"));
        for builder in builders() {
            let image = format!("ai-infra-probe:{}-bad", ws.tag);
            let err = probe(&ws, builder, &image).expect_err(&format!("{}: {bad} is accepted", builder.0));
            assert!(err.contains("syntax error in pattern"), "{}: {err}", builder.0);
        }
        // The service is ERROR with the file, line and pattern; the check itself goes on.
        ws.expect(&[("probe", "ERROR")]);
        let reason = ws.reason("probe");
        assert!(
            reason.contains("services/probe/.dockerignore") && reason.contains("line 2") && reason.contains(bad),
            "{bad}: {reason}"
        );
        assert_eq!(ws.run(&["check-status", &ws.tag, "--exit-code"]).code, 1);
    }
}

/// Patterns the docker 28 CLI and the docker 20.10 CLI read differently (`ignore::Dialect`):
/// the tool, run with each CLI in turn, counts exactly the files that CLI sends.
#[test]
fn patterns_that_cli_versions_read_differently_follow_the_cli_that_sends_the_context() {
    let mut ws = Workspace::new("ignore-dialect");
    ws.write("services/probe/Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    ws.write("services/probe/.dockerignore", "a+b\n(x)*\n**.md\n\\d\n[[:alpha:]]\n");
    let files = ["a+b", "ab", "aab", "(x)", "(x)y", "x1", "x", "r.md", "dd/r.md", ".md", "dd/.md", "5", "_", "zz"];
    for f in files {
        ws.write(&format!("services/probe/{f}"), f);
    }
    let mut seen = Vec::new();
    for (name, cli, buildkit) in builders() {
        let bin = ws.path(&format!("bin-{name}"));
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(cli, bin.join("docker")).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let tag = format!("{}-{name}", ws.tag);
        ws.also_tag(&tag);
        let _ = std::fs::remove_dir_all(ws.path("target/xtask/inputs"));
        let o = ws.run_env(&["build", "probe", &tag], &[("PATH", &path), ("DOCKER_BUILDKIT", buildkit)]);
        assert_eq!(o.code, 0, "{name}: {o:?}");
        let tool: BTreeSet<String> = recorded(&ws).into_iter().filter(|p| !p.ends_with('/')).collect();
        let sent: BTreeSet<String> = probe(&ws, (name, cli, buildkit), &format!("ai-infra-probe:{tag}"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_iter()
            .filter(|p| !p.ends_with('/'))
            .collect();
        assert_eq!(tool, sent, "{name}: the tool's record against what {cli} sent");
        seen.push(sent);
    }
    if builders().iter().map(|b| b.1).collect::<BTreeSet<_>>().len() == 2 {
        assert_ne!(seen[0], seen[1], "the two CLIs send different contexts for these patterns");
    }
}
