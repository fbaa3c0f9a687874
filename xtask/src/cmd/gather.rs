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
use crate::base::Sha;
use crate::repo::dockerfile::{Source, Triggers};
use crate::repo::hashcache::HashCache;
use crate::repo::listing;
use crate::repo::ignore::Dialect;
use crate::repo::project::{self, Project, Resolved};
use crate::repo::reads::{self, Reads, Want};
use crate::repo::record;
use crate::repo::reference;
use crate::repo::render::Output;
use crate::world::docker::{Docker, Image};
use crate::world::watcher::{self, Changes, Token};

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
    let Walked { mut files, mut unreadable, watch } = files?;
    let external = external_triggers(&bases, &found);
    if !external.is_empty() {
        (services, broken) = project::resolve(&project, tag, &values, &rendered, ignore_files, &external)?;
        Walked { files, unreadable, .. } = contexts(root, &services, &rendered, &crate::world::docker::ignore_dialect)?;
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
        watch,
    })
}

/// The ONBUILD triggers of the external bases the engine holds: known once it answered, they
/// read the context of the builds on them, which are then analysed and walked again.
fn external_triggers(bases: &BTreeSet<String>, found: &BTreeMap<String, Image>) -> Triggers {
    let triggers = bases.iter().filter_map(|b| Some((Source::External(b.clone()), found.get(b)?.onbuild.clone())));
    triggers.filter(|(_, t)| !t.is_empty()).collect()
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
    // With a watcher running (`cargo xtask watch`), a context it vouches for as unchanged since
    // its listing was saved is taken from that listing, unwalked.
    let watched = Watch::open(root);
    let reals: Vec<Option<Utf8PathBuf>> = unique
        .iter()
        .enumerate()
        .map(|(i, r)| vouchable(&watched.as_ref()?.1, &root.join(&r.service.context), state[i].as_deref()))
        .collect();
    let names: Vec<String> = unique.iter().map(|r| cache_name(&r.service.context)).collect();
    let asked: Vec<String> = names.iter().zip(&reals).filter(|(_, r)| r.is_some()).map(|(n, _)| n.clone()).collect();
    let watch = watched.and_then(|(saved, _)| Watch::ask(root, saved, &asked));
    let kept: Vec<Option<(Sha, Option<Vec<FileRecord>>)>> = unique
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let w = watch.as_ref()?;
            let real = reals[i].as_ref()?;
            let raw: Vec<&[crate::repo::dockerfile::Read]> = services
                .iter()
                .filter(|s| s.service.context == r.service.context)
                .map(|s| s.analysis.reads.as_slice())
                .collect();
            let fp = listing::fingerprint(&r.service.context, real, &ignores[i], &raw, state[i].as_deref());
            let unchanged = w.holds(&names[i])
                && w.changed.as_ref().is_ok_and(|c| {
                    !c.iter().any(|p| listing::affects(real, p, &ignores[i], &reads[i], state[i].as_deref()))
                });
            let records = unchanged.then(|| w.saved.load(&names[i], &fp)).flatten();
            Some((fp, records))
        })
        .collect();
    let to_walk: Vec<usize> =
        (0..unique.len()).filter(|&i| kept[i].as_ref().is_none_or(|(_, r)| r.is_none())).collect();
    let cache_dir = crate::base::state_dir(root).join("hash-cache");
    let walked = context::parallel(to_walk.len(), |k| -> Result<_> {
        let i = to_walk[k];
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
    let (fresh, unread) = context::finish(listings, &mut caches)?;
    let unreadable = to_walk.iter().map(|&i| unique[i].service.context.clone()).zip(unread).collect();
    let mut fresh = fresh.into_iter();
    let mut files = Vec::new();
    // The listings that hold at the watcher's token: those kept, and those walked and saved.
    let mut holding = Vec::new();
    for (kept, name) in kept.into_iter().zip(&names) {
        let name = name.clone();
        match kept {
            Some((_, Some(records))) => {
                files.push(records);
                holding.push(name);
            }
            kept => {
                let records = fresh.next().unwrap_or_default();
                let saved = match (&watch, kept) {
                    (Some(w), Some((fp, _))) => w.saved.save(&name, &fp, &records).is_ok(),
                    _ => false,
                };
                if saved {
                    holding.push(name);
                }
                files.push(records);
            }
        }
    }
    if let Some(w) = &watch {
        w.confirm(&holding);
    }
    for ((((r, ignore), records), reads), known) in unique.iter().zip(&ignores).zip(&mut files).zip(&reads).zip(&reals) {
        // Each generated file goes where its write lands, through any link on the way, compared
        // with the context's own resolved path (asked only where something is generated, unless
        // the watcher's check already asked).
        if rendered.is_empty() {
            break;
        }
        let real = match known {
            Some(real) => real.clone(),
            None => match root.join(&r.service.context).canonicalize_utf8() {
                Ok(real) => real,
                Err(_) => continue,
            },
        };
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
    let watch = watch.map(|w| w.said(to_walk.len(), unique.len()));
    let files = unique.iter().map(|r| r.service.context.clone()).zip(files.into_iter().map(Arc::new)).collect();
    Ok(Walked { files, unreadable, watch })
}

/// The contexts' records, by context, the paths each walk could not read, and what a running
/// watcher spared (`Snapshot::watch`).
pub struct Walked {
    pub files: BTreeMap<Utf8PathBuf, Arc<Vec<FileRecord>>>,
    pub unreadable: BTreeMap<Utf8PathBuf, Vec<Unreadable>>,
    pub watch: Option<String>,
}

/// The watcher's answer for this run's contexts, with their saved listings.
struct Watch {
    saved: listing::Saved,
    now: Token,
    /// What may have changed since every one of this run's listings was saved; None where
    /// nothing can be vouched for (no listing yet, another watcher, events lost): why.
    changed: std::result::Result<Vec<Utf8PathBuf>, String>,
    /// The token the watcher was asked with, and the tokens the listings held.
    since: Option<Token>,
    tokens: BTreeMap<String, String>,
}

impl Watch {
    /// The saved listings and the root's resolved path, where a watcher's socket is there;
    /// with none, nothing is asked and nothing is written.
    fn open(root: &Utf8Path) -> Option<(listing::Saved, Utf8PathBuf)> {
        let real = root.canonicalize_utf8().ok()?;
        if !watcher::socket(&real).exists() {
            return None;
        }
        Some((listing::Saved::open(root)?, real))
    }

    /// Asks the watcher what changed since the oldest token of the listings of `names` (the
    /// contexts it can vouch for); None where no watcher answers.
    fn ask(root: &Utf8Path, saved: listing::Saved, names: &[String]) -> Option<Watch> {
        let tokens = saved.tokens();
        let since = oldest(&tokens, names);
        let (now, changed) = match watcher::changes(root, since.as_ref()) {
            Changes::Since { now, paths } => (now, Ok(paths)),
            Changes::Unknown { now: Some(now), why } => (now, Err(why)),
            Changes::Unknown { now: None, .. } => return None,
        };
        Some(Watch { saved, now, changed, since, tokens })
    }

    /// Whether the listing of `name` holds at a token the answer covers: one of the watcher
    /// asked (the answer is of changes since the oldest of them). A listing with no token, or
    /// another watcher's, is walked.
    fn holds(&self, name: &str) -> bool {
        let held = self.tokens.get(name).and_then(|t| Token::parse(t));
        matches!((held, &self.since), (Some(h), Some(s)) if h.epoch == s.epoch && h.seq >= s.seq)
    }

    /// What the watcher spared this run, for the report.
    fn said(&self, walked: usize, all: usize) -> String {
        match &self.changed {
            Err(why) => format!("a watcher runs, but every context was walked: {why}"),
            Ok(_) => format!(
                "{} of {all} contexts taken unwalked, a watcher vouching they did not change; {walked} walked",
                all - walked
            ),
        }
    }

    /// The listings of `holding` hold at the token the watcher gave before the walk (kept
    /// ones were vouched for up to it, walked ones were walked after it). A listing this run
    /// could not save keeps its older token, so that its older records are never trusted
    /// under a newer one.
    fn confirm(&self, holding: &[String]) {
        let _ = self.saved.set_tokens(holding, &self.now.to_text());
    }
}

/// The token to ask the watcher with: the oldest of the listings of `names` of the watcher
/// most of them were saved under (a context saved later is then told of more than its own
/// changes, which only makes it walked again). None where none has a token.
fn oldest(tokens: &BTreeMap<String, String>, names: &[String]) -> Option<Token> {
    let held: Vec<Token> = names.iter().filter_map(|n| Token::parse(tokens.get(n)?)).collect();
    let mut epochs: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &held {
        *epochs.entry(t.epoch).or_default() += 1;
    }
    let (&epoch, _) = epochs.iter().max_by_key(|(_, n)| **n)?;
    held.into_iter().filter(|t| t.epoch == epoch).min_by_key(|t| t.seq)
}

/// The resolved path of the context at `context` where the watcher of the root at `real_root`
/// sees everything its walk does: inside the root, and never in the root's `target/`, which the
/// watcher leaves out (a context reaching the root through a link walks `target/` unless its
/// walk leaves out the tool's state, `state`). None: always walked.
fn vouchable(real_root: &Utf8Path, context: &Utf8Path, state: Option<&str>) -> Option<Utf8PathBuf> {
    let real = context.canonicalize_utf8().ok()?;
    let inside = real.starts_with(real_root) && !real.starts_with(real_root.join("target"));
    let enters_target = real == real_root && state != Some("target");
    (inside && !enters_target).then_some(real)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_is_asked_since_the_oldest_token_of_the_run() {
        let t = |epoch, seq| Token { epoch, seq };
        let tokens: BTreeMap<String, String> =
            [("a", t(7, 5)), ("b", t(7, 3)), ("c", t(7, 9)), ("other", t(8, 1))]
                .into_iter()
                .map(|(n, t)| (n.to_string(), t.to_text()))
                .collect();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(oldest(&tokens, &names(&["a", "b", "c"])), Some(t(7, 3)));
        assert_eq!(oldest(&tokens, &names(&["a", "c"])), Some(t(7, 5)));
        // A context never saved, or saved under another watcher, does not hold the others back
        // (it is walked: `Watch::holds`).
        assert_eq!(oldest(&tokens, &names(&["a", "new"])), Some(t(7, 5)));
        assert_eq!(oldest(&tokens, &names(&["a", "c", "other"])), Some(t(7, 5)));
        assert_eq!(oldest(&tokens, &names(&["new"])), None);
        assert_eq!(oldest(&tokens, &[]), None);
    }

    #[test]
    fn a_context_is_vouched_for_only_where_the_watcher_sees_all_its_walk_does() {
        let dir = std::env::temp_dir().join(format!("xtask-vouch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = Utf8PathBuf::from_path_buf(dir.join("root")).unwrap();
        for d in ["services/a", "target/x", "elsewhere"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::os::unix::fs::symlink("..", root.join("services/up")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), root.join("services/out")).unwrap();
        let real = root.canonicalize_utf8().unwrap();
        let at = |c: &str, state| vouchable(&real, &root.join(c), state);
        assert_eq!(at("services/a", None), Some(real.join("services/a")));
        assert_eq!(at(".", Some("target")), Some(real.clone()));
        // The root reached through a link: its walk enters target/, which is not watched.
        assert_eq!(at("services/up", None), None);
        assert_eq!(at(".", None), None);
        assert_eq!(at("services/out", None), None, "outside the root");
        assert_eq!(at("target/x", None), None, "under target/");
        assert_eq!(at("services/gone", None), None, "not there");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
