//! `cargo xtask import DIR`: loads a bundle that `export` wrote. Each tar's size and sha256 are
//! checked against the manifest before it is loaded (a damaged or altered tar is refused by
//! name and nothing of it is loaded); then every image is tagged and checked: a project image
//! is OK when its label carries the manifest's input digest, another when it has its ID.

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::cmd::export::{bare_id, mib, Entry, Manifest, MANIFEST};

/// Why a tar must not be loaded, if it must not.
fn damaged(dir: &Utf8Path, e: &Entry) -> Option<String> {
    let path = dir.join(&e.file);
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(_) => return Some("the file is missing".to_string()),
    };
    if size != e.size {
        return Some(format!("it has {size} bytes, the manifest says {}", e.size));
    }
    match crate::repo::context::hash_file(&path) {
        Err(err) => Some(format!("cannot read it ({err})")),
        Ok(h) if h.as_str() != e.sha256 => {
            Some("its sha256 is not the manifest's: the file is damaged or altered".to_string())
        }
        Ok(_) => None,
    }
}

/// The state of one imported image on this engine, with the reason when not OK.
fn check(e: &Entry, image: Option<&crate::world::docker::Image>, platform: (&str, &str)) -> (&'static str, String) {
    let Some(image) = image else { return ("MISSING", format!("no image named {}", e.name)) };
    if e.kind != "service" {
        return match image.id.as_deref().map(bare_id) {
            Some(id) if id == bare_id(&e.id) => ("OK", String::new()),
            _ => ("DIFFERENT", format!("{} is another image than the bundle's", e.name)),
        };
    }
    let problems = crate::decide::status::invalid(image, platform.0, platform.1);
    if !problems.is_empty() {
        return ("INVALID", problems.join(", "));
    }
    let carried = crate::decide::digest::from_labels(&image.labels).and_then(|d| d.total);
    match (&carried, &e.input_digest) {
        (Some(c), Some(m)) if c == m => match e.status.as_deref() {
            Some(s) if s != "OK" => ("OK", format!("as exported; it was {s} where it was exported")),
            _ => ("OK", String::new()),
        },
        (None, _) => ("STALE", "carries no input digest".to_string()),
        _ => ("STALE", "its label carries another input digest than the bundle's manifest".to_string()),
    }
}

pub fn run(root: &Utf8Path, dir: &Utf8Path) -> Result<i32> {
    let manifest = Manifest::read(dir)?
        .with_context(|| format!("{dir} has no {MANIFEST}: give the folder that `cargo xtask export` wrote"))?;
    let docker = crate::world::engine::connect(root)?;
    let (mut loaded, mut refused) = (Vec::<&Entry>::new(), Vec::<&Entry>::new());
    for e in &manifest.entries {
        // Several names may share one tar: it is checked and loaded once.
        if let Some(done) = loaded.iter().chain(&refused).find(|d| d.file == e.file).copied() {
            if loaded.iter().any(|l| l.file == done.file) && docker.tag(bare_id(&e.id), &e.name).is_ok() {
                loaded.push(e);
            } else {
                refused.push(e);
            }
            continue;
        }
        if let Some(why) = damaged(dir, e) {
            println!("refused {} ({}): {why}; nothing of it was loaded: export it again", e.file, e.name);
            refused.push(e);
            continue;
        }
        match docker.load(&dir.join(&e.file)).and_then(|()| docker.tag(bare_id(&e.id), &e.name)) {
            Ok(()) => {
                println!("loaded {} ({})", e.name, mib(e.size));
                loaded.push(e);
            }
            Err(err) => {
                println!("failed {} ({}): {err:#}", e.file, e.name);
                refused.push(e);
            }
        }
    }
    let names: Vec<String> = manifest.entries.iter().map(|e| e.name.clone()).collect();
    let found = docker.inspect(&names)?;
    let (os, arch) = docker.platform()?;
    let states: Vec<(&Entry, (&str, String))> =
        manifest.entries.iter().map(|e| (e, check(e, found.get(&e.name), (&os, &arch)))).collect();
    let ok = states.iter().filter(|(_, (s, _))| *s == "OK").count();
    println!(
        "\nimported into {}: {} loaded, {} refused; {ok}/{} OK",
        docker.host,
        loaded.len(),
        refused.len(),
        states.len()
    );
    let width = states.iter().map(|(e, _)| e.name.len()).max().unwrap_or(0);
    for (e, (state, why)) in &states {
        let why = if why.is_empty() { String::new() } else { format!("  {why}") };
        println!("  {state:<9} {:<width$}  {}{why}", e.name, e.kind);
    }
    Ok(if refused.is_empty() && ok == states.len() { 0 } else { 1 })
}
