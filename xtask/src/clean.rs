//! `cargo xtask clean-all [TAG] [--force]`: lists the project's images (named
//! `[REGISTRY/]ai-infra-<service>` for a service of this project) and, only with --force,
//! removes those names. Never touches another image.

use anyhow::Result;
use camino::Utf8Path;

use crate::project::Project;

/// Whether `name` (repository:tag) is one of this project's image names, for `tag` if given.
pub fn ours(name: &str, services: &[&str], tag: Option<&str>) -> bool {
    let r = crate::reference::Reference::parse(name);
    let Some(t) = r.tag else { return false };
    if r.digest.is_some() || tag.is_some_and(|want| want != t) {
        return false;
    }
    r.service().is_some_and(|svc| services.contains(&svc))
}

pub fn run(root: &Utf8Path, tag: Option<&str>, force: bool) -> Result<i32> {
    let project = Project::load(root)?;
    let names = project.names();
    let docker = crate::engine::connect(root)?;
    let mut mine: Vec<String> = docker.list()?.into_iter().map(|(n, _)| n).filter(|n| ours(n, &names, tag)).collect();
    mine.sort();
    let which = tag.map_or("all tags".to_string(), |t| format!("tag {t}"));
    if mine.is_empty() {
        println!("no images of this project ({which})");
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
        assert!(super::ours("ai-infra-base:v1", &svcs, None));
        assert!(super::ours("127.0.0.1:5000/ai-infra-web:v1", &svcs, Some("v1")));
        assert!(!super::ours("ai-infra-web:v2", &svcs, Some("v1")));
        assert!(!super::ours("ai-infra-other:v1", &svcs, None));
        assert!(!super::ours("python:3.11", &svcs, None));
        assert!(!super::ours("my-ai-infra-base:v1", &svcs, None));
    }
}
