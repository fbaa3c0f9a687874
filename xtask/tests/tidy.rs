//! Tidy: the conventions a reviewer would otherwise repeat, checked on the source itself (as
//! rust-analyzer's `tidy.rs` does). No engine needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_module_says_what_it_is() {
    let mut missing = Vec::new();
    for f in rust_files(&crate_dir().join("src")).into_iter().chain(rust_files(&crate_dir().join("tests"))) {
        let text = std::fs::read_to_string(&f).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            missing.push(f.strip_prefix(crate_dir()).unwrap().display().to_string());
        }
    }
    assert!(missing.is_empty(), "these files do not start with a `//!` line saying what they are: {missing:?}");
}

#[test]
fn every_module_is_in_the_code_map() {
    let map = std::fs::read_to_string(crate_dir().join("../ARCHITECTURE.md")).unwrap();
    let src = crate_dir().join("src");
    let mut missing = Vec::new();
    for f in rust_files(&src) {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if rel == "testutil.rs" || name == "mod.rs" && map.contains(&format!("`{}/`", rel.trim_end_matches("/mod.rs")))
        {
            continue;
        }
        if !map.contains(&format!("`{rel}`")) && !map.contains(&format!("`{name}`")) {
            missing.push(rel);
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map has no entry for {missing:?}");
}

/// The `--flags` named in a piece of text.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let rest = &text[i + 2..];
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '-') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
        if !name.is_empty() && name != "help" {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// The README's command list: each command with the flags its line names.
fn readme_commands() -> Vec<(String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(crate_dir().join("../README.md")).unwrap();
    let section = readme.split("## Commands").nth(1).expect("README.md has a ## Commands section");
    let block = section.split("```").nth(1).expect("the Commands section starts with a code block");
    let mut out = Vec::new();
    for line in block.lines() {
        let Some(rest) = line.strip_prefix("cargo xtask ") else { continue };
        let command = rest.split_whitespace().next().unwrap().to_string();
        if command.starts_with('<') {
            continue;
        }
        out.push((command, flags_in(rest)));
    }
    out
}

/// The flags a usage text defines: those on its `Usage:` line and those that start an option's
/// line (not the flags of other commands that its prose mentions).
fn usage_flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help.lines() {
        if line.starts_with("Usage:") {
            out.extend(flags_in(line));
        } else if let Some(first) = line.split_whitespace().next().filter(|w| w.starts_with("--")) {
            out.extend(flags_in(first));
        }
    }
    out
}

fn help_of(command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([command, "--help"])
        .env("AI_INFRA_ROOT", crate_dir().join(".."))
        .output()
        .unwrap();
    assert!(out.status.success(), "`xtask {command} --help` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn readme_and_usage_name_the_same_commands_and_flags() {
    let readme = readme_commands();
    assert!(readme.len() >= 10, "the README's command list looks cut short: {readme:?}");
    let general = help_of("help");
    let listed: BTreeSet<String> = general
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty() || l.is_empty())
        .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_whitespace().next()).map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    let in_readme: BTreeSet<String> = readme.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(in_readme, listed, "the README's command list and `cargo xtask --help` differ");
    let mut differences = Vec::new();
    for (command, flags) in &readme {
        let usage = usage_flags(&help_of(command));
        if &usage != flags {
            differences.push(format!(
                "{command}: only in the README {:?}, only in --help {:?}",
                flags.difference(&usage).collect::<Vec<_>>(),
                usage.difference(flags).collect::<Vec<_>>()
            ));
        }
    }
    assert!(differences.is_empty(), "README.md's command list and the usage texts differ:\n{}", differences.join("\n"));
}

#[test]
fn flags_are_found_in_text() {
    let f = flags_in("build-all [--force] --jobs N, `--format human|json` and a--b, [-- NEXTEST-ARGS]");
    assert_eq!(f, ["--force", "--format", "--jobs"].into_iter().map(String::from).collect());
}

/// The modules that hold the repository's knowledge and the decisions (ARCHITECTURE.md): they
/// may read files, but never run a process or talk over a network; that is the outer layer's job.
const PURE: &[&str] = &[
    "base/atomic.rs",
    "repo/context.rs",
    "decide/digest.rs",
    "repo/dockerfile.rs",
    "repo/env.rs",
    "repo/hashcache.rs",
    "repo/ignore.rs",
    "decide/plan.rs",
    "repo/project.rs",
    "repo/record.rs",
    "repo/reference.rs",
    "repo/render.rs",
    "decide/report.rs",
    "decide/schedule.rs",
];

const EFFECTS: &[&str] = &[
    "std::process::Command",
    "process::Command",
    "Command::new",
    "cmd!",
    "xshell",
    "std::net",
    "TcpStream",
    "TcpListener",
    "UnixStream",
    "UdpSocket",
    "crate::docker::",
    "crate::registry::",
    "crate::engine::",
    "crate::api::",
    "crate::http::",
];

#[test]
fn pure_modules_run_no_process_and_use_no_network() {
    let src = crate_dir().join("src");
    let mut found = Vec::new();
    for name in PURE {
        let Ok(text) = std::fs::read_to_string(src.join(name)) else {
            found.push(format!("{name}: listed as pure but not found (moved? update PURE)"));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for e in EFFECTS {
                if line.contains(e) {
                    found.push(format!("{name}:{}: {e}", n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "pure modules reach the outside world:\n{}", found.join("\n"));
}
