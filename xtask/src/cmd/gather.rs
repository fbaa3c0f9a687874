//! The gather step every command starts with: the project and its Dockerfiles, the templates
//! as they would render, the contexts walked and hashed (through the hash cache), the engine's
//! images in one inspect, its platform, and the records of earlier builds. The statuses are
//! then decided from these facts (`status::statuses`), purely.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::decide::status::{self, Inputs, Snapshot};
use crate::repo::context::{self, FileRecord, Unreadable};
use crate::repo::dockerfile::{Source, Triggers};
use crate::repo::hashcache::HashCache;
use crate::repo::ignore::Dialect;
use crate::repo::project::{self, Project, Resolved};
use crate::repo::reads::{self, Reads, Want};
use crate::repo::record;
use crate::repo::reference;
use crate::repo::render::Output;
use crate::world::docker::{Docker, Image};

/// Gathers the facts for one tag (the engine asked once, while the contexts are walked) and
/// decides every image's status from them.
///
/// Long because the engine's answers and the walks, which run at once, complete each other
/// (the bases' ONBUILD triggers and IDs, the platform) before anything is decided.
pub fn snapshot(docker: &Docker, root: &Utf8Path, tag: &str, registry: Option<&str>) -> Result<Snapshot> {
    let project = Project::load(root)?;
    let values = crate::repo::env::Values::load(root)?;
    let mut rendered = crate::repo::render::outputs(root, &project.names())?;
    // `.env` as step 2 would leave it: a build that copies it reads it so.
    if let Some(pending) = crate::repo::env::pending(root)? {
        rendered.extend(crate::repo::env::synced_files(root, &pending));
    }
    let ignore_files = docker.engine.ignore_files();
    let (mut services, mut broken) =
        project::resolve(&project, tag, &values, &rendered, ignore_files, &Triggers::new())?;
    let image_names: BTreeMap<String, String> =
        project.services.iter().map(|s| (s.name.clone(), reference::image_name(&s.name, tag, registry))).collect();
    for name in image_names.values() {
        reference::validate_image_name(name)?;
    }
    let bases: std::collections::BTreeSet<String> =
        services.iter().flat_map(|r| r.analysis.bases.iter().cloned()).collect();
    let mut names: Vec<String> = image_names.values().cloned().collect();
    names.extend(bases.iter().cloned());
    // The engine's platform is asked only when not remembered: then one engine call serves
    // the whole check. The engine calls run while the contexts are walked.
    let remembered = docker.remembered_platform(root);
    let (platform, found, files) = std::thread::scope(|s| {
        let platform = s.spawn(|| match &remembered {
            Some(p) => Ok(p.clone()),
            None => docker.remember_platform(root),
        });
        let found = s.spawn(|| docker.inspect(&names));
        let files = contexts(root, &services, &rendered, &crate::world::docker::ignore_dialect);
        (joined(platform.join()), joined(found.join()), files)
    });
    // An engine that does not answer is the first thing to say.
    let (mut os, mut arch) = platform?;
    let found = found?;
    let disagrees = |os: &str, arch: &str| {
        image_names
            .values()
            .filter_map(|n| found.get(n))
            .any(|i| i.os.as_deref() != Some(os) || i.arch.as_deref() != Some(arch))
    };
    if remembered.is_some() && disagrees(&os, &arch) {
        // An image of another platform, or another engine at the same address: ask.
        (os, arch) = docker.remember_platform(root)?;
    }
    let Walked { mut files, mut unreadable } = files?;
    let external = external_triggers(&bases, &found);
    if !external.is_empty() {
        (services, broken) = project::resolve(&project, tag, &values, &rendered, ignore_files, &external)?;
        Walked { files, unreadable } = contexts(root, &services, &rendered, &crate::world::docker::ignore_dialect)?;
    }
    let services = status::readable(services, &mut broken, &files, &unreadable);
    let base_ids: BTreeMap<String, String> =
        bases.iter().filter_map(|b| Some((b.clone(), found.get(b)?.id.clone()?))).collect();
    let Inputs { services, records, digests } = status::digests(services, &files, &base_ids);
    // The records that explain a STALE image: read only for the images built from other inputs.
    let platform = (os.as_str(), arch.as_str());
    let mut kept = BTreeMap::new();
    for r in &services {
        let name = &r.service.name;
        let image = found.get(&image_names[name]);
        let Some(total) = status::built_from_other_inputs(&digests[name], image, platform) else { continue };
        let Some(old) = record::load(root, &total) else { continue };
        if let Ok(new) = record::as_recorded(root, &records[name]) {
            kept.insert(name.clone(), (old, new));
        }
    }
    let facts = status::Found { image_names: &image_names, images: &found, platform, records: &kept };
    let statuses = status::statuses(&services, &digests, &facts, broken);
    Ok(Snapshot {
        root: root.to_path_buf(),
        tag: tag.to_string(),
        registry: registry.map(str::to_string),
        services,
        records,
        digests,
        statuses,
        platform: (os, arch),
        engine: docker.describe(),
        base_ids,
        mirror: crate::cmd::prefetch::mirror_in(&values),
    })
}

/// The ONBUILD triggers of the external bases the engine holds: known once it answered, they
/// read the context of the builds on them, which are then analysed and walked again.
fn external_triggers(bases: &BTreeSet<String>, found: &BTreeMap<String, Image>) -> Triggers {
    let triggers = bases.iter().filter_map(|b| Some((Source::External(b.clone()), found.get(b)?.onbuild.clone())));
    triggers.filter(|(_, t)| !t.is_empty()).collect()
}

/// The contexts' records, by context, and the paths each walk could not read.
pub struct Walked {
    pub files: BTreeMap<Utf8PathBuf, Arc<Vec<FileRecord>>>,
    pub unreadable: BTreeMap<Utf8PathBuf, Vec<Unreadable>>,
}

fn joined<T>(r: std::thread::Result<Result<T>>) -> Result<T> {
    r.unwrap_or_else(|_| Err(anyhow::anyhow!("an engine call panicked")))
}

/// Lists and hashes every distinct build context once, walking them on every core; the
/// hash cache spares reading files whose identity has not changed. Only the files some build
/// reads are listed: a context shared by many services is walked and hashed once for all.
/// `rendered` are template outputs as they would be written now: they stand in for the files
/// on disk, so that a changed `.env` value shows before `render` runs.
///
/// Long because the walks, one per context on every core, share one thread scope and one hash
/// cache per context.
pub fn contexts(
    root: &Utf8Path,
    services: &[Resolved],
    rendered: &[Output],
    dialect: &(dyn Fn() -> Dialect + Sync),
) -> Result<Walked> {
    let mut unique: Vec<&Resolved> = Vec::new();
    for r in services {
        if !unique.iter().any(|u| u.service.context == r.service.context) {
            unique.push(r);
        }
    }
    // Each engine's builder reads its own ignore files: `project::resolve` read the ones of
    // the engine in use.
    let ignores = unique
        .iter()
        .map(|r| {
            let ignore = r.ignore.clone();
            // Which CLI sends the context is asked only where a pattern means different
            // things to different CLIs (see `ignore::Dialect`).
            if !ignore.dialect_matters() {
                return Ok(ignore);
            }
            ignore.with_dialect(dialect()).with_context(|| format!("{}", r.service.context.join(".dockerignore")))
        })
        .collect::<Result<Vec<_>>>()?;
    let reads: Vec<Vec<Reads>> = unique
        .iter()
        .map(|u| {
            services
                .iter()
                .filter(|r| r.service.context == u.service.context)
                .map(|r| Reads::new(&r.analysis.reads))
                .collect()
        })
        .collect();
    // The tool's own state (target/) changes with every run: never an input. A context that
    // holds it still sends it to the engine, which a .dockerignore line avoids.
    let state: Vec<Option<String>> = unique
        .iter()
        .zip(&ignores)
        .map(|(r, ignore)| {
            let rel = context::own_state(&r.service.context)?;
            if !ignore.excludes(&rel) {
                let file = match r.service.context.as_str() {
                    "." | "" => Utf8PathBuf::from(".dockerignore"),
                    c => Utf8Path::new(c).join(".dockerignore"),
                };
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!(
                    "note: build context {} holds this tool's target/ folder, which the engine is sent with every build (it is no input of any image); add the line `/{rel}` to {file}",
                    r.service.context,
                ));
            }
            Some(rel)
        })
        .collect();
    let names: Vec<String> = unique.iter().map(|r| cache_name(&r.service.context)).collect();
    let cache_dir = crate::base::state_dir(root).join("hash-cache");
    let walked = context::parallel(unique.len(), |i| -> Result<_> {
        let s = &unique[i].service;
        let cache = HashCache::load(&cache_dir.join(&names[i]));
        let want = |path: &str, dir: bool| {
            if state[i].as_deref() == Some(path) {
                return Want::No;
            }
            reads::want_any(&reads[i], path, dir)
        };
        let listing = context::list(root, &s.context, &ignores[i], &cache, &want)
            .with_context(|| format!("service {}", s.name))?;
        Ok((listing, cache))
    });
    let mut listings = Vec::new();
    let mut caches = Vec::new();
    for w in walked {
        let (l, c) = w?;
        listings.push(l);
        caches.push(c);
    }
    let (mut files, unread) = context::finish(listings, &mut caches)?;
    let unreadable = unique.iter().map(|r| r.service.context.clone()).zip(unread).collect();
    for (((r, ignore), records), reads) in unique.iter().zip(&ignores).zip(&mut files).zip(&reads) {
        // Each generated file goes where its write lands, through any link on the way, compared
        // with the context's own resolved path (asked only where something is generated).
        if rendered.is_empty() {
            break;
        }
        let Ok(real) = root.join(&r.service.context).canonicalize_utf8() else { continue };
        let landed: Vec<(String, &Output)> = rendered
            .iter()
            .filter_map(|o| Some((context::landed_within(&real, o.lands.as_deref()?)?, o)))
            .filter(|(rel, _)| !rel.is_empty() && reads::want_any(reads, rel, false) == Want::Yes)
            .collect();
        context::overlay(records, ignore, landed.iter().map(|(rel, o)| (rel.as_str(), o.bytes.as_slice(), o.mode)));
    }
    // Saving the cache is an optimisation: a read-only target/ must not fail the check, but
    // a check that will stay slow says why, once.
    let unsaved = caches.iter_mut().filter_map(|c| c.save().err()).next();
    if let Some(e) = unsaved {
        eprintln!("note: cannot save the hash cache ({e:#}); the next check will read every file again");
    }
    let files = unique.iter().map(|r| r.service.context.clone()).zip(files.into_iter().map(Arc::new)).collect();
    Ok(Walked { files, unreadable })
}

/// The cache file of a context: its path, made a file name (`.` and `..` are no file names).
fn cache_name(context: &Utf8Path) -> String {
    let name = context.as_str().replace('%', "%25").replace('/', "%2F");
    match name.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => name,
    }
}

/// Contexts and digests together, for callers that need no engine.
pub fn inputs(root: &Utf8Path, services: Vec<Resolved>, base_ids: &BTreeMap<String, String>) -> Result<Inputs> {
    let files = contexts(root, &services, &[], &|| Dialect::Current)?.files;
    Ok(status::digests(services, &files, base_ids))
}
