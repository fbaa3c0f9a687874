//! Dependency images: the third-party images the stack runs but does not build (postgres,
//! redis, ...), declared once in `dependency-images.txt` with their tags from `.env`;
//! `pull-deps`, `push-deps REGISTRY` (skipping what the registry holds, by digest) and their
//! part of `check-status --deps`.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use serde_json::{json, Value};

use crate::decide::report::Format;
use crate::world::docker::{Docker, Image};
use crate::world::registry::{self, Lookup};

/// The one place the dependency images are declared, at the project root.
pub const FILE: &str = "dependency-images.txt";

/// Reads the list: one image reference per line, `${NAME}` (and `${NAME:-default}`) taken from
/// the values builds see; `#` starts a comment. A name that is not set is an error, as is a
/// line that does not expand to an image reference.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut images: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let unset = std::cell::RefCell::new(Vec::new());
        let expanded = crate::repo::dockerfile::expand(line, '\\', &|name: &str| {
            let v = lookup(name);
            if v.as_deref().is_none_or(str::is_empty) {
                unset.borrow_mut().push(name.to_string());
            }
            v
        })
        .with_context(|| format!("{FILE} line {}", n + 1))?;
        if let Some(name) = unset.borrow().first() {
            if !line.contains(&format!("{name}:-")) {
                bail!("{FILE} line {}: {name} is not set: add it to .env.example (or .env)", n + 1);
            }
        }
        if expanded.contains(char::is_whitespace) || !crate::repo::reference::is_valid_reference(&expanded) {
            bail!("{FILE} line {}: {expanded:?} is not an image reference (write one image per line, e.g. postgres:${{POSTGRES_VERSION}})", n + 1);
        }
        let image = crate::repo::reference::normalize_external(crate::repo::reference::familiar(&expanded));
        if !images.contains(&image) {
            images.push(image);
        }
    }
    Ok(images)
}

/// The project's dependency images; none when the file does not exist.
pub fn load(root: &Utf8Path) -> Result<Vec<String>> {
    let path = root.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    let values = crate::repo::env::Values::load(root)?;
    parse(&text, &|name| values.get(name))
}

/// Repository and tag of a reference written `repo:tag` (as `parse` leaves every one).
fn split(image: &str) -> (&str, &str) {
    let r = crate::repo::reference::Reference::parse(image);
    (r.repository, r.tag.unwrap_or("latest"))
}

/// The name of a dependency image in a registry: `REGISTRY/<image as written>`.
pub fn in_registry(registry: &str, image: &str) -> String {
    format!("{}/{image}", registry.trim_end_matches('/'))
}

/// One dependency image: what the engine has, and (when asked) what the registry holds.
pub struct Dep {
    pub image: String,
    pub local: Option<Image>,
    /// OK (the registry holds this image), DIFFERENT (another image under the name), MISSING,
    /// PRESENT (there, but no local image to compare with), ERROR.
    pub remote: Option<(&'static str, String)>,
}

/// Whether the manifest digest a registry named is one the local image was pushed or pulled as.
fn same_image(local: &Image, digest: &str) -> bool {
    local.repo_digests.iter().any(|d| d.rsplit_once('@').is_some_and(|(_, x)| x == digest))
}

/// The state of every dependency image, locally and, with a registry, there too (all lookups
/// at once, each bounded in time, as `check-status --remote` asks).
pub fn states(docker: &Docker, images: &[String], registry: Option<&str>) -> Result<Vec<Dep>> {
    let found = docker.inspect(images)?;
    let lookups = match registry {
        Some(r) => {
            let refs: Vec<(String, String)> =
                images.iter().map(|i| split(i)).map(|(repo, tag)| (repo.to_string(), tag.to_string())).collect();
            registry::lookup_all(docker, r, &refs).into_iter().map(Some).collect()
        }
        None => vec![None; images.len()],
    };
    Ok(images
        .iter()
        .zip(lookups)
        .map(|(image, lookup)| {
            let local = found.get(image).cloned();
            let remote = lookup.map(|l| match (l, &local) {
                (Lookup::Error(e), _) => ("ERROR", e),
                (Lookup::Absent, _) => ("MISSING", "not in the registry".to_string()),
                (Lookup::Found(_), None) => ("PRESENT", "not present locally to compare".to_string()),
                (Lookup::Found(Some(d)), Some(l)) if same_image(l, &d) => ("OK", String::new()),
                (Lookup::Found(d), Some(_)) => (
                    "DIFFERENT",
                    format!("the registry holds another image ({})", d.as_deref().unwrap_or("no digest named")),
                ),
            });
            Dep { image: image.clone(), local, remote }
        })
        .collect())
}

/// Whether every dependency is present (and, when asked, the same in the registry).
pub fn all_ok(deps: &[Dep]) -> bool {
    deps.iter().all(|d| d.local.is_some() && d.remote.as_ref().is_none_or(|(s, _)| *s == "OK"))
}

/// The dependency part of `check-status --deps`, added to the report in its format: human
/// and plain lines follow it (`dependency|PRESENT|image[|REMOTE]`); json gets a
/// "dependencies" array.
pub fn add_to_report(report: String, deps: &[Dep], format: Format) -> String {
    let local = |d: &Dep| if d.local.is_some() { "PRESENT" } else { "MISSING" };
    match format {
        // `check-status` refuses --deps with a graph.
        Format::Dot | Format::Mermaid => report,
        Format::Json => {
            let mut v: Value = serde_json::from_str(&report).unwrap_or_else(|_| json!({}));
            v["dependencies"] = deps
                .iter()
                .map(|d| {
                    let mut e = json!({
                        "image": d.image,
                        "status": local(d),
                        "image_id": d.local.as_ref().and_then(|i| i.id.clone()),
                    });
                    if let Some((state, reason)) = &d.remote {
                        e["remote"] = json!({ "status": state, "reason": reason });
                    }
                    e
                })
                .collect();
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        Format::Plain => {
            let mut out = report;
            for d in deps {
                let remote = d.remote.as_ref().map_or(String::new(), |(s, _)| format!("|{s}"));
                let _ = writeln!(out, "dependency|{}|{}{remote}", local(d), d.image);
            }
            out
        }
        Format::Human => {
            let mut out = report;
            let _ = writeln!(out, "\ndependency images ({FILE}):");
            if deps.is_empty() {
                let _ = writeln!(out, "  none declared");
            }
            let width = deps.iter().map(|d| d.image.len()).max().unwrap_or(0);
            for d in deps {
                let what = match &d.local {
                    Some(i) => crate::decide::digest::short(i.id.as_deref().unwrap_or_default()).to_string(),
                    None => "run `cargo xtask pull-deps`".to_string(),
                };
                let remote = d.remote.as_ref().map_or(String::new(), |(s, why)| {
                    if why.is_empty() {
                        format!("  remote {s}")
                    } else {
                        format!("  remote {s}: {why}")
                    }
                });
                let _ = writeln!(out, "  {:<width$}  {:<8} {what}{remote}", d.image, local(d));
            }
            out
        }
    }
}

/// `cargo xtask pull-deps`: pulls the dependency images that are not present, through
/// BASE_IMAGE_MIRROR first.
pub fn pull(root: &Utf8Path) -> Result<i32> {
    let images = load(root)?;
    if images.is_empty() {
        println!("no dependency images declared (add them to {FILE})");
        return Ok(0);
    }
    let docker = crate::world::engine::connect(root)?;
    let mirror = crate::cmd::prefetch::mirror(root)?;
    let found = docker.inspect(&images)?;
    let (mut pulled, mut failed) = (0, 0);
    for image in images.iter().filter(|i| !found.contains_key(*i)) {
        match crate::cmd::prefetch::pull_through(&docker, mirror.as_deref(), image) {
            Ok(how) => {
                println!("{how}");
                pulled += 1;
            }
            Err(e) => {
                println!("could not pull {image}: {e:#}");
                failed += 1;
            }
        }
    }
    let present = images.len() - pulled - failed;
    println!("dependency images: {present} already present, {pulled} pulled, {failed} failed");
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `cargo xtask push-deps REGISTRY`: puts every dependency image into the registry as
/// `REGISTRY/<image>`, skipping those it already holds (the same manifest digest).
pub fn push(root: &Utf8Path, registry: &str) -> Result<i32> {
    let images = load(root)?;
    if images.is_empty() {
        println!("no dependency images declared (add them to {FILE})");
        return Ok(0);
    }
    let docker = crate::world::engine::connect(root)?;
    let deps = states(&docker, &images, Some(registry))?;
    let results = crate::repo::context::parallel(deps.len(), |i| {
        let d = &deps[i];
        let target = in_registry(registry, &d.image);
        match (&d.local, &d.remote) {
            (None, _) => Err("not present locally: run `cargo xtask pull-deps` first".to_string()),
            (_, Some(("ERROR", e))) => Err(e.clone()),
            (_, Some(("OK", _))) => Ok("already in registry".to_string()),
            (Some(_), _) => docker
                .tag(&d.image, &target)
                .and_then(|()| docker.push(&target))
                .map(|()| format!("pushed {target}"))
                .map_err(|e| format!("{e:#}")),
        }
    });
    let mut failed = 0;
    for (d, r) in deps.iter().zip(&results) {
        match r {
            Ok(what) => println!("push-deps {}: {what}", d.image),
            Err(why) => {
                println!("push-deps FAILED {}: {why}", d.image);
                failed += 1;
            }
        }
    }
    let skipped = results.iter().filter(|r| r.as_deref().is_ok_and(|w| w == "already in registry")).count();
    println!(
        "dependency images in {registry}: {} pushed, {skipped} already there, {failed} failed",
        deps.len() - skipped - failed
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Option<String> {
        match name {
            "POSTGRES_VERSION" => Some("15.4".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn the_list_takes_its_tags_from_the_values() {
        let text = "# third-party images\npostgres:${POSTGRES_VERSION}  # the database\n\nredis:${REDIS_VERSION:-7}\nquay.io/x/y\ndocker.io/library/postgres:${POSTGRES_VERSION}\n";
        assert_eq!(parse(text, &values).unwrap(), vec!["postgres:15.4", "redis:7", "quay.io/x/y:latest"]);
    }

    #[test]
    fn mistakes_name_the_line() {
        let e = parse("postgres:15\nredis:${REDIS_VERSION}\n", &values).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("REDIS_VERSION is not set"), "{e}");
        let e = parse("a:${EMPTY}\n", &values).unwrap_err().to_string();
        assert!(e.contains("EMPTY is not set"), "{e}");
        let e = parse("Postgres:15\n", &values).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not an image reference"), "{e}");
        let e = parse("postgres 15\n", &values).unwrap_err().to_string();
        assert!(e.contains("not an image reference"), "{e}");
        assert!(parse("x:${UNCLOSED\n", &values).unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn names_in_a_registry() {
        assert_eq!(split("bitnami/kafka:3.6"), ("bitnami/kafka", "3.6"));
        assert_eq!(split("127.0.0.1:5000/x"), ("127.0.0.1:5000/x", "latest"));
        assert_eq!(in_registry("r.io/team/", "bitnami/kafka:3.6"), "r.io/team/bitnami/kafka:3.6");
        let i = Image { repo_digests: vec!["r.io/x@sha256:aa".into()], ..Default::default() };
        assert!(same_image(&i, "sha256:aa") && !same_image(&i, "sha256:bb"));
    }
}
