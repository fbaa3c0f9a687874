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

/// The layers, lowest first (ARCHITECTURE.md): a module imports from its own layer and the
/// ones below, never from one above; `main.rs` is above them all.
const LAYERS: &[&str] = &["base", "repo", "world", "decide", "cmd", "dev"];

/// The folders whose modules hold the repository's knowledge and the decisions: they may read
/// files, but never run a process or talk over a network; that is the world's job.
const PURE: &[&str] = &["base", "repo", "decide"];

/// The world's answers, which a pure module may hold as data (it never asks for them).
const ANSWERS: &[&str] = &["crate::world::docker::Image", "crate::world::registry::Lookup"];

/// What the decisions never do: they are functions of the gathered facts (`cmd/gather.rs`).
const FILE_EFFECTS: &[&str] = &["std::fs", "File::", "atomic::", "state_dir", "::load(", ".save("];

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
    "crate::world::",
];

/// The source files under `src/`, each with its path relative to `src/` and its text up to its
/// unit tests (which may use anything).
fn sources() -> Vec<(String, String)> {
    let src = crate_dir().join("src");
    rust_files(&src)
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&f).unwrap();
            let tests = ["#[cfg(test)]\nmod tests", "#[cfg(test)]\npub mod tests"];
            let end = tests.iter().filter_map(|t| text.find(t)).min().unwrap_or(text.len());
            let code = text[..end].to_string();
            (rel, code)
        })
        .collect()
}

#[test]
fn pure_modules_run_no_process_and_use_no_network() {
    let mut found = Vec::new();
    let mut checked = 0;
    for (rel, text) in sources() {
        if !PURE.iter().any(|p| rel.starts_with(&format!("{p}/"))) {
            continue;
        }
        checked += 1;
        let decides = rel.starts_with("decide/");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let line = ANSWERS.iter().fold(line.to_string(), |l, a| l.replace(a, ""));
            let effects = EFFECTS.iter().chain(if decides { FILE_EFFECTS } else { &[] });
            for e in effects {
                if line.contains(e) {
                    found.push(format!("{rel}:{}: {e}", n + 1));
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} pure modules found: were the folders renamed? update PURE");
    assert!(found.is_empty(), "pure modules reach the outside world:\n{}", found.join("\n"));
}

/// The modules a piece of code names through `crate::`, as `folder/module` (or `folder` for a
/// folder's own items), with the line: `crate::repo::env::Values` and
/// `use crate::repo::{env, project}` both count.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let path: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '{' | '}' | ',' | ' '))
                .collect();
            let mut parts = path.splitn(2, "::");
            let folder = parts.next().unwrap_or_default().trim().to_string();
            let rest = parts.next().unwrap_or_default();
            let modules: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|m| m.trim().split("::").next().unwrap_or_default().to_string())
                    .collect(),
                None => vec![rest.split("::").next().unwrap_or_default().trim().to_string()],
            };
            for m in modules {
                let is_module = m.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && m != "self";
                out.push((n + 1, if is_module { format!("{folder}/{m}") } else { folder.clone() }));
            }
        }
    }
    out
}

/// A source file's module, as `imports` names it (`repo/env`, `base` for `base/mod.rs`).
fn module_of(rel: &str) -> String {
    rel.trim_end_matches(".rs").trim_end_matches("/mod").to_string()
}

fn rank(module: &str) -> Option<usize> {
    let folder = module.split('/').next().unwrap_or_default();
    if module == "main" {
        return Some(LAYERS.len());
    }
    LAYERS.iter().position(|l| *l == folder)
}

#[test]
fn imports_run_only_downwards() {
    let mut up = Vec::new();
    let mut layered = 0;
    for (rel, text) in sources() {
        let Some(own) = rank(&module_of(&rel)) else { continue };
        layered += 1;
        for (line, target) in imports(&text) {
            if rank(&target).is_some_and(|r| r > own) {
                up.push(format!("{rel}:{line}: imports {target}, a higher layer"));
            }
        }
    }
    assert!(layered >= 30, "only {layered} modules in the layers {LAYERS:?}: were the folders renamed?");
    assert!(
        up.is_empty(),
        "imports from a lower layer to a higher one (layers, lowest first: {LAYERS:?}):\n{}",
        up.join("\n")
    );
}

#[test]
fn no_module_imports_itself_through_others() {
    let mut graph: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (rel, text) in sources() {
        let own = module_of(&rel);
        let to: BTreeSet<String> = imports(&text).into_iter().map(|(_, m)| m).filter(|m| *m != own).collect();
        graph.insert(own, to);
    }
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].iter().cloned().chain([m.to_string()]).collect());
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn layering_is_read_from_the_code() {
    let found = imports("use crate::repo::{env, project::Project};\nlet x = crate::world::docker::tail(a);\n// crate::cmd::x\nuse crate::base::UsageError;");
    let names: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(names, ["repo/env", "repo/project", "world/docker", "base"]);
    assert_eq!(module_of("base/mod.rs"), "base");
    assert!(rank("cmd/flags") > rank("decide/plan") && rank("main") > rank("cmd/flags"));
}

/// Functions longer than this need a comment, beside them, that says why (`long because`).
const LONG: usize = 80;

#[test]
fn long_functions_say_why() {
    let mut long = Vec::new();
    for (rel, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            let signature =
                ["fn ", "pub fn ", "pub(crate) fn ", "const fn ", "pub const fn "].iter().any(|p| t.starts_with(p));
            if !signature {
                continue;
            }
            let close = format!("{indent}}}");
            let Some(end) = lines[i..].iter().position(|l| *l == close) else { continue };
            let mut k = i;
            let mut said = false;
            while k > 0 && lines[k - 1].trim_start().starts_with(['/', '#']) {
                k -= 1;
                said |= lines[k].to_lowercase().contains("long because");
            }
            if end + 1 > LONG && !said {
                long.push(format!("{rel}:{}: {} lines", i + 1, end + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {LONG} lines without a comment saying why (`long because ...`):\n{}",
        long.join("\n")
    );
}
