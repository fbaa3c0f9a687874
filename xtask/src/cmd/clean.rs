//! `cargo xtask clean-all [TAG] [--force]`: lists the project's images (named
//! `ai-infra-<service>`, or `REGISTRY/ai-infra-<service>` for a registry this root has built
//! for, for a service of this project) and, only with --force, removes those names. Never
//! touches another image: `someone/ai-infra-base` pulled from elsewhere is not ours, and an
//! image under a project name without this tool's input label is kept unless
//! `--include-unlabelled` is given.

use anyhow::Result;
use camino::Utf8Path;

use crate::repo::project::Project;

/// Whether `name` (repository:tag) is one of this project's image names, for `tag` if given:
/// `ai-infra-<service>` (Podman: `localhost/ai-infra-<service>`) or, for one of `registries`,
/// `REGISTRY/ai-infra-<service>`.
pub fn ours(name: &str, services: &[&str], tag: Option<&str>, registries: &[String]) -> bool {
    let r = crate::repo::reference::Reference::parse(name);
    let Some(t) = r.tag else { return false };
    if r.digest.is_some() || tag.is_some_and(|want| want != t) {
        return false;
    }
    let Some(svc) = r.service().filter(|svc| services.contains(svc)) else { return false };
    let repository = &name[..name.len() - t.len() - 1];
    let local = crate::repo::reference::repository(svc, None);
    repository == local
        || repository == format!("localhost/{local}")
        || registries.iter().any(|reg| repository == crate::repo::reference::repository(svc, Some(reg)))
}

fn registries_file(root: &Utf8Path) -> camino::Utf8PathBuf {
    crate::base::state_dir(root).join("registries")
}

/// The registries this root has built or pushed for, one per line (see `remember_registry`).
pub fn registries_used(root: &Utf8Path) -> Vec<String> {
    std::fs::read_to_string(registries_file(root))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Notes that this root names images after `registry`, so that `clean-all` knows those names
/// are its own. A failed write costs only that: a warning.
pub fn remember_registry(root: &Utf8Path, registry: &str) {
    let registry = registry.trim_end_matches('/');
    let mut known = registries_used(root);
    if known.iter().any(|r| r == registry) {
        return;
    }
    known.push(registry.to_string());
    let text = known.join("\n") + "\n";
    let path = registries_file(root);
    let written = std::fs::create_dir_all(crate::base::state_dir(root))
        .map_err(anyhow::Error::from)
        .and_then(|_| crate::base::atomic::write(&path, text.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "warning: cannot note the registry {registry} in {path} ({e:#}); clean-all will not list its image names"
        );
    }
}

pub fn run(root: &Utf8Path, tag: Option<&str>, force: bool, include_unlabelled: bool) -> Result<i32> {
    let project = Project::load(root)?;
    let names = project.names();
    let docker = crate::world::engine::connect(root)?;
    let registries = registries_used(root);
    let mut found: Vec<String> =
        docker.list()?.into_iter().map(|(n, _)| n).filter(|n| ours(n, &names, tag, &registries)).collect();
    found.sort();
    // What this tool built carries its input label; an image under a project name without one
    // was made some other way (by hand, by the test suite's sentinel) and is kept unless asked.
    let images = docker.inspect(&found)?;
    let (mine, kept): (Vec<String>, Vec<String>) = found.into_iter().partition(|n| {
        include_unlabelled || images.get(n).is_some_and(|i| i.labels.contains_key(crate::decide::digest::LABEL))
    });
    let which = format!("{}, engine {}", tag.map_or("all tags".to_string(), |t| format!("tag {t}")), docker.describe());
    for n in &kept {
        println!("  {n}: not built by this tool: kept (--include-unlabelled removes it too)");
    }
    if mine.is_empty() {
        println!("no images of this project built by this tool ({which})");
        return Ok(0);
    }
    if !force {
        println!("{} images of this project ({which}):", mine.len());
        for n in &mine {
            println!("  {n}");
        }
        println!(
            "nothing removed: run `cargo xtask clean-all{} --force` to remove them",
            tag.map_or(String::new(), |t| format!(" {t}"))
        );
        return Ok(0);
    }
    let failed = docker.remove(&mine)?;
    println!("removed {} of {} images of this project ({which})", mine.len() - failed.len(), mine.len());
    for (name, why) in &failed {
        println!("  not removed {name}: {why}");
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_projects_names() {
        let svcs = ["base", "web"];
        let regs = ["127.0.0.1:5000".to_string(), "registry.example.com/team".to_string()];
        let ours = |name| super::ours(name, &svcs, None, &regs);
        assert!(ours("ai-infra-base:v1"));
        assert!(ours("localhost/ai-infra-base:v1"));
        assert!(super::ours("127.0.0.1:5000/ai-infra-web:v1", &svcs, Some("v1"), &regs));
        assert!(ours("registry.example.com/team/ai-infra-web:v1"));
        assert!(!super::ours("ai-infra-web:v2", &svcs, Some("v1"), &regs));
        assert!(!ours("ai-infra-other:v1"));
        assert!(!ours("python:3.11"));
        assert!(!ours("my-ai-infra-base:v1"));
        // The same last component elsewhere is someone else's image.
        assert!(!ours("someuser/ai-infra-base:v1"));
        assert!(!ours("ghcr.io/other/ai-infra-web:prod"));
        assert!(!ours("registry.example.com/ai-infra-web:v1"));
        assert!(!super::ours("127.0.0.1:5000/ai-infra-web:v1", &svcs, None, &[]));
    }

    #[test]
    fn registries_are_remembered_once() {
        let dir = std::env::temp_dir().join(format!("xtask-registries-{}", std::process::id()));
        let root = camino::Utf8PathBuf::from_path_buf(dir.clone()).unwrap();
        super::remember_registry(&root, "127.0.0.1:5000");
        super::remember_registry(&root, "127.0.0.1:5000/");
        super::remember_registry(&root, "registry.example.com/team");
        assert_eq!(super::registries_used(&root), ["127.0.0.1:5000", "registry.example.com/team"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
