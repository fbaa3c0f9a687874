//! Step 4, the build: each planned service built (or an identical image reused), parents
//! before children, up to `--jobs` at a time; a failure skips only its descendants.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::decide::digest;
use crate::decide::plan::{Action, Plan, Step};
use crate::decide::schedule::{self, Decision};
use crate::decide::status::Snapshot;
use crate::repo::reference;
use crate::world::docker::{BuildEnd, BuildRequest, Docker, Engine};

/// What happened to one planned service.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Built,
    Reused,
    Pulled,
    Failed,
    /// A parent failed, or the run was interrupted before it started.
    NotStarted,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub service: String,
    pub result: Ended,
    /// Why it was built, or why it failed or did not start.
    pub reason: String,
    pub seconds: f64,
    pub log: Option<Utf8PathBuf>,
    /// The last lines of a failed build's log.
    pub tail: String,
    /// The ID of the image the service now names, where known (see `restore_names`).
    pub image: Option<String>,
    /// When its work began (None: it never started).
    pub began: Option<std::time::SystemTime>,
}

impl Outcome {
    /// An outcome with no time, log or log tail (yet).
    pub fn new(service: &str, result: Ended, reason: impl Into<String>) -> Outcome {
        Outcome {
            service: service.to_string(),
            result,
            reason: reason.into(),
            seconds: 0.0,
            log: None,
            tail: String::new(),
            image: None,
            began: None,
        }
    }
}

/// Whether a failed build log shows the engine's cache-lookup race with a concurrent image
/// removal (legacy builder: "unable to find image" for an image it was itself listing).
fn engine_race(log: &str) -> bool {
    // Podman's builder says the same as "checking if cached image exists ...: layer not known".
    log.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| {
        l.contains("unable to find image \"sha256:")
            || (l.contains("checking if cached image exists") && l.contains("not known"))
    })
}

/// The names a service's image gets: the plain local name, and the registry name.
pub fn tags(snap: &Snapshot, name: &str) -> Vec<String> {
    let mut tags = vec![reference::image_name(name, &snap.tag, None)];
    if snap.registry.is_some() {
        tags.push(reference::image_name(name, &snap.tag, snap.registry.as_deref()));
    }
    tags
}

/// Builds one service as the snapshot describes it: its build args, target, and the labels
/// that record its input digest.
fn build_one(
    docker: &Docker,
    snap: &Snapshot,
    name: &str,
    no_cache: bool,
    verbose: bool,
    cancel: &AtomicBool,
) -> Outcome {
    let started = Instant::now();
    let dir = crate::base::state_dir(&snap.root);
    let log = dir.join("logs").join(format!("{name}.log"));
    let mut outcome = Outcome { log: Some(log.clone()), ..Outcome::new(name, Ended::Failed, "") };
    let r = snap.services.iter().find(|r| r.service.name == name).expect("planned services are in the snapshot");
    let d = &snap.digests[name];
    let (total, before) = match ready(docker, snap, name) {
        Ok(found) => found,
        Err(reason) => {
            outcome.reason = reason;
            return outcome;
        }
    };
    let labels = digest::labels(name, d);
    let tags = tags(snap, name);
    // Buildah names an image it finds in its cache by rewriting that image's names outside
    // any lock (see `docker::podman_names_lock`): under Podman the build makes the image
    // unnamed, and the names are given under the lock afterwards.
    let podman = docker.engine == Engine::Podman;
    let iidfile = dir.join("iid").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("iid"));
    let req = BuildRequest {
        context: &snap.root.join(&r.service.context),
        dockerfile: &snap.root.join(&r.service.dockerfile),
        target: r.service.target.as_deref(),
        args: &r.build_args,
        labels: &labels,
        tags: if podman { &[] } else { &tags },
        no_cache,
        iidfile: &iidfile,
    };
    let (end, text) = build_once_more_after_a_race(docker, &req, &log, verbose.then_some(name), cancel);
    outcome.seconds = started.elapsed().as_secs_f64();
    let own = reference::image_name(name, &snap.tag, None);
    match end {
        Err(e) => outcome.reason = format!("{e:#}"),
        Ok(BuildEnd::Interrupted) => {
            outcome.result = Ended::NotStarted;
            outcome.reason = "interrupted".into();
        }
        Ok(BuildEnd::Failed) if made_anyway(docker, &own, before.as_deref(), &total) => {
            let last = crate::world::docker::tail(&text, 1);
            println!("{name}: docker build reported a failure after it made the image ({last}); the image is there");
            built(&mut outcome);
        }
        Ok(BuildEnd::Failed) => {
            outcome.reason = "docker build failed".into();
            outcome.tail = crate::world::docker::tail(&text, 8);
        }
        // Success is docker's exit code; the ID file only confirms it, and may be empty on a
        // full disk.
        Ok(BuildEnd::Built) => built(&mut outcome),
    }
    if outcome.result == Ended::Built {
        let id = std::fs::read_to_string(&iidfile).unwrap_or_default().trim().to_string();
        outcome.image = Some(id).filter(|id| id.starts_with("sha256:"));
        if podman {
            name_built(docker, &mut outcome, &tags, &iidfile);
        }
    }
    let _ = std::fs::remove_file(&iidfile);
    if outcome.result == Ended::Built {
        // The record lets later checks name the files and args that changed.
        if let Err(e) = crate::repo::record::save(&snap.root, &total, &snap.records[name]) {
            eprintln!("warning: {e:#}");
        }
    }
    outcome
}

/// What a build needs before it starts: its total input digest (every base image present)
/// and its parents' images (one may have been removed during the run), with the ID the
/// service's own name held before (asked in the same engine call: a build that reports a
/// failure after it made the image, a full disk for --iidfile, is known by the change). Else
/// why it cannot start.
fn ready(docker: &Docker, snap: &Snapshot, name: &str) -> Result<(String, Option<String>), String> {
    let r = snap.services.iter().find(|r| r.service.name == name).expect("planned services are in the snapshot");
    let Some(total) = snap.digests[name].total.clone() else {
        let missing: Vec<&String> =
            snap.records[name].bases.iter().filter(|(_, id)| id.is_none()).map(|(b, _)| b).collect();
        return Err(format!(
            "base image not present locally: {}",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
    };
    // A parent image that vanished would make the engine try to pull it from Docker Hub:
    // fail here instead, saying so.
    let parents: Vec<String> = r.analysis.parents.iter().map(|p| reference::image_name(p, &snap.tag, None)).collect();
    let own = reference::image_name(name, &snap.tag, None);
    let found = docker.inspect(&[parents.clone(), vec![own.clone()]].concat()).map_err(|e| format!("{e:#}"))?;
    if let Some(gone) = parents.iter().find(|p| !found.contains_key(*p)) {
        return Err(format!("parent image {gone} is not present locally (removed during the run?): run again"));
    }
    Ok((total, found.get(&own).and_then(|i| i.id.clone())))
}

/// Runs the build, and once more when the builder's cache lookup failed because another
/// process removed an image at the same moment (the build itself was fine). The second build
/// makes no cache lookup at all (`--no-cache`): a lookup over the same storage entry could trip
/// over it again, so the same failure cannot happen twice in a row. Returns how it ended and its
/// log.
fn build_once_more_after_a_race(
    docker: &Docker,
    req: &BuildRequest,
    log: &Utf8Path,
    echo: Option<&str>,
    cancel: &AtomicBool,
) -> (Result<BuildEnd>, String) {
    build_retrying(req, log, |r| docker.build(r, log, echo, cancel))
}

/// `build_once_more_after_a_race` with the build given: its second request is the first with
/// the cache turned off.
fn build_retrying(
    req: &BuildRequest,
    log: &Utf8Path,
    mut build: impl FnMut(&BuildRequest) -> Result<BuildEnd>,
) -> (Result<BuildEnd>, String) {
    let mut end = build(req);
    let mut text = std::fs::read_to_string(log).unwrap_or_default();
    if matches!(end, Ok(BuildEnd::Failed)) && engine_race(&text) {
        end = build(&BuildRequest { no_cache: true, ..*req });
        let again = std::fs::read_to_string(log).unwrap_or_default();
        text = format!(
            "{text}\n[xtask] the engine lost an image during its cache lookup (removed meanwhile); built again without the cache:\n{again}"
        );
        let _ = std::fs::write(log, &text);
    }
    (end, text)
}

/// Under Podman, gives back the names that a concurrent change of the same image's names took
/// (see `docker::podman_names_lock`: a process that does not hold the lock, such as another
/// program's `podman tag`), once every job has ended: each image built, reused or pulled
/// carries all its names again. Says what it named again.
pub fn restore_names(docker: &Docker, snap: &Snapshot, outcomes: &[Outcome]) {
    if docker.engine != Engine::Podman {
        return;
    }
    let wanted: Vec<(String, &str)> = outcomes
        .iter()
        .filter_map(|o| o.image.as_deref().map(|id| (o, id)))
        .flat_map(|(o, id)| tags(snap, &o.service).into_iter().map(move |t| (t, id)))
        .collect();
    let names: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
    let Ok(found) = docker.inspect(&names) else { return };
    for (t, id) in &wanted {
        if found.get(t).and_then(|i| i.id.as_deref()) == Some(*id) {
            continue;
        }
        match docker.tag(id, t) {
            Ok(()) => println!("{t}: podman lost this name in a concurrent change of the image's names; named again"),
            Err(e) => println!("{t}: podman lost this name in a concurrent change of the image's names: {e:#}"),
        }
    }
}

/// Gives an image Podman built unnamed its names; a failure to do so fails the service.
fn name_built(docker: &Docker, outcome: &mut Outcome, tags: &[String], iidfile: &camino::Utf8Path) {
    let Some(id) = outcome.image.clone() else {
        outcome.result = Ended::Failed;
        outcome.reason = format!("podman build wrote no image ID to {iidfile}: run again");
        return;
    };
    for t in tags {
        if let Err(e) = docker.tag(&id, t) {
            outcome.result = Ended::Failed;
            outcome.reason = format!("{e:#}");
            return;
        }
    }
}

fn built(outcome: &mut Outcome) {
    outcome.result = Ended::Built;
    outcome.reason.clear();
}

/// Whether `name` now names a new image that carries the expected input digest.
fn made_anyway(docker: &Docker, name: &str, before: Option<&str>, total: &str) -> bool {
    let Ok(found) = docker.inspect(&[name.to_string()]) else { return false };
    found.get(name).is_some_and(|i| {
        i.id.as_deref() != before && digest::from_labels(&i.labels).and_then(|d| d.total).as_deref() == Some(total)
    })
}

/// Tags an image that already carries the expected input digest instead of building.
fn reuse_one(docker: &Docker, snap: &Snapshot, name: &str, image: &str) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome::new(name, Ended::Reused, format!("tagged {image}"));
    // Under Podman the ID is kept (see `restore_names`), and names it rather than the name a
    // concurrent change may have taken from it.
    if docker.engine == Engine::Podman {
        outcome.image = docker.inspect(&[image.to_string()]).ok().and_then(|f| f.get(image).and_then(|i| i.id.clone()));
    }
    let source = outcome.image.clone().unwrap_or_else(|| image.to_string());
    for t in tags(snap, name) {
        if let Err(e) = docker.tag(&source, &t) {
            outcome.result = Ended::Failed;
            outcome.reason = format!("{e:#}");
            break;
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// Pulls the registry's build of the expected inputs and tags it, once its label shows the
/// expected digest. Else why not (the plan says what then).
fn pull_one(docker: &Docker, snap: &Snapshot, name: &str, image: &str) -> Result<Outcome, String> {
    let started = Instant::now();
    let expected = snap.digests[name].total.clone().unwrap_or_default();
    let found = docker.pull(image).and_then(|()| docker.inspect(&[image.to_string()]));
    match &found {
        Err(e) => Err(format!("pulling {image} failed ({e:#})")),
        Ok(images) => match images.get(image).and_then(|i| digest::from_labels(&i.labels)).and_then(|d| d.total) {
            Some(t) if t == expected => {
                let mut o = reuse_one(docker, snap, name, image);
                if o.result == Ended::Reused {
                    o.result = Ended::Pulled;
                    o.reason = format!("pulled {image}");
                }
                o.seconds = started.elapsed().as_secs_f64();
                Ok(o)
            }
            Some(t) => Err(format!(
                "{image} carries another input digest ({}, expected {}): not trusted",
                digest::short(&t),
                digest::short(&expected)
            )),
            None => Err(format!("{image} carries no input digest: not trusted")),
        },
    }
}

/// The one warning a run gives about secret-looking build args of the services it builds:
/// build args go on the `docker build` command line and stay in the image's history, where
/// anyone with the image reads them. None when no build passes one.
pub fn secret_args_warning(snap: &Snapshot, plan: &Plan) -> Option<String> {
    let mut found: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for step in plan.work().filter(|s| matches!(s.action, Action::Build { .. })) {
        let Some(r) = snap.services.iter().find(|r| r.service.name == step.service) else { continue };
        for name in r.build_args.keys().filter(|k| crate::repo::env::is_secret(k)) {
            found.entry(name).or_default().push(&step.service);
        }
    }
    if found.is_empty() {
        return None;
    }
    let list: Vec<String> = found.iter().map(|(arg, svcs)| format!("{arg} ({})", svcs.join(", "))).collect();
    Some(format!(
        "warning: build arg{} {} look{} secret: build args stay in the image history, readable by anyone with the image; pass secrets with `RUN --mount=type=secret` (docker build --secret) instead",
        if found.len() == 1 { "" } else { "s" },
        list.join(", "),
        if found.len() == 1 { "s" } else { "" },
    ))
}

/// Runs one service's work in a worker; a panic becomes that service's FAILED outcome, so
/// the scheduler always hears back and never waits for ever.
fn guarded(service: &str, work: impl FnOnce() -> Outcome) -> Outcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Outcome::new(service, Ended::Failed, format!("internal error in the tool ({what}); please report it"))
    })
}

/// Runs the plan's actions along the graph, `jobs` at a time, as `schedule::next` says; a
/// failed service's dependents are not started. A worker that panics is a FAILED service.
/// Stops starting new work once `cancel` is set.
pub fn execute(
    docker: &Docker,
    snap: &Snapshot,
    plan: &Plan,
    jobs: usize,
    verbose: bool,
    cancel: &AtomicBool,
) -> Vec<Outcome> {
    let work: Vec<_> = plan.work().collect();
    let total = work.len();
    let mut pending = work.clone();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut finished = 0;
    let (tx, rx) = std::sync::mpsc::channel::<Outcome>();
    let progress = Progress::new(total, std::io::stdout().is_terminal() && !verbose);
    std::thread::scope(|s| {
        let mut running = 0;
        loop {
            let succeeded: BTreeMap<String, bool> = outcomes
                .iter()
                .map(|(n, o)| (n.clone(), matches!(o.result, Ended::Built | Ended::Reused | Ended::Pulled)))
                .collect();
            for decision in schedule::next(&pending, &succeeded, jobs.saturating_sub(running)) {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                let service = match &decision {
                    Decision::Start(service) | Decision::Skip { service, .. } => service,
                };
                let Some(i) = pending.iter().position(|p| &p.service == service) else { continue };
                let step = pending.remove(i);
                if let Decision::Skip { parent, .. } = &decision {
                    finished += 1;
                    progress
                        .say(&format!("[{finished}/{total}] skipped {}: parent {parent} did not build", step.service));
                    let o = Outcome::new(&step.service, Ended::NotStarted, format!("parent {parent} did not build"));
                    outcomes.insert(step.service.clone(), o);
                    continue;
                }
                running += 1;
                progress.started(&step.service);
                let verb = match step.action {
                    Action::Reuse { .. } => "reusing",
                    Action::Pull { .. } => "pulling",
                    _ => "building",
                };
                progress.say(&format!("{verb} {} ({})", step.service, step.reason));
                let tx = tx.clone();
                s.spawn(move || {
                    // The receiver is gone only when the run itself has ended.
                    let began = std::time::SystemTime::now();
                    let outcome = guarded(&step.service, || act(docker, snap, step, verbose, cancel));
                    let _ = tx.send(Outcome { began: Some(began), ..outcome });
                });
            }
            if running == 0 {
                break;
            }
            progress.redraw(finished);
            let o = match rx.recv_timeout(std::time::Duration::from_millis(500)) {
                Ok(o) => o,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            progress.ended(&o.service);
            running -= 1;
            finished += 1;
            progress.say(&ended_line(finished, total, &o));
            outcomes.insert(o.service.clone(), o);
        }
    });
    for step in pending {
        outcomes.insert(
            step.service.clone(),
            Outcome::new(&step.service, Ended::NotStarted, "interrupted before it started"),
        );
    }
    work.iter().filter_map(|s| outcomes.remove(&s.service)).collect()
}

/// Performs one step of the plan, as the plan says: the executor decides nothing.
fn act(docker: &Docker, snap: &Snapshot, step: &Step, verbose: bool, cancel: &AtomicBool) -> Outcome {
    match &step.action {
        Action::Reuse { image } => reuse_one(docker, snap, &step.service, image),
        Action::Pull { image } => match (pull_one(docker, snap, &step.service, image), &step.otherwise) {
            (Ok(o), _) => o,
            (Err(why_not), Some(Action::Build { no_cache })) => {
                println!("{}: {why_not}; building it instead", step.service);
                let mut o = build_one(docker, snap, &step.service, *no_cache, verbose, cancel);
                o.reason = if o.result == Ended::Built { why_not } else { format!("{}; {why_not}", o.reason) };
                o
            }
            (Err(why_not), _) => Outcome::new(&step.service, Ended::Failed, why_not),
        },
        Action::Build { no_cache } => build_one(docker, snap, &step.service, *no_cache, verbose, cancel),
        Action::Skip => unreachable!("work has no skips"),
    }
}

/// The line that says how a step ended.
fn ended_line(finished: usize, total: usize, o: &Outcome) -> String {
    match o.result {
        Ended::Built => format!("[{finished}/{total}] built {} in {:.1}s", o.service, o.seconds),
        Ended::Reused => format!("[{finished}/{total}] reused {} ({})", o.service, o.reason),
        Ended::Pulled => format!("[{finished}/{total}] pulled {} ({})", o.service, o.reason),
        Ended::Failed => format!(
            "[{finished}/{total}] FAILED {} after {:.1}s: {}{}",
            o.service,
            o.seconds,
            o.reason,
            o.log.as_ref().map_or(String::new(), |l| format!(" (log: {l})"))
        ),
        Ended::NotStarted => format!("[{finished}/{total}] stopped {}: {}", o.service, o.reason),
    }
}

/// The run's progress on stdout. On a terminal, one status line at the bottom says what is
/// building; event lines are printed above it. Elsewhere, plain lines only.
struct Progress {
    total: usize,
    live: bool,
    started: std::cell::RefCell<BTreeMap<String, Instant>>,
}

impl Progress {
    fn new(total: usize, live: bool) -> Progress {
        Progress { total, live, started: Default::default() }
    }

    fn say(&self, line: &str) {
        if self.live {
            print!("\r\x1b[2K");
        }
        println!("{line}");
    }

    fn started(&self, service: &str) {
        self.started.borrow_mut().insert(service.to_string(), Instant::now());
    }

    fn ended(&self, service: &str) {
        self.started.borrow_mut().remove(service);
    }

    fn redraw(&self, done: usize) {
        if self.live {
            let now: Vec<String> =
                self.started.borrow().iter().map(|(n, t)| format!("{n} {:.0}s", t.elapsed().as_secs_f64())).collect();
            print!("\r\x1b[2K  {done}/{} done; building {}", self.total, now.join(", "));
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }
}

/// Rejects a service name the project does not have, listing the ones it has.
pub fn check_service(project: &crate::repo::project::Project, name: &str) -> Result<()> {
    if project.service(name).is_none() {
        bail!(crate::base::UsageError(format!(
            "unknown service {name:?}; known services: {}",
            project.names().join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_cache_lookup_race_is_retried() {
        let log = "STEP 2/3: COPY solo.txt /\nError: checking if cached image exists from a previous build: getting top layer info: layer not known\n";
        assert!(engine_race(log));
        assert!(!engine_race("STEP 2/3: COPY solo.txt /\nError: building at STEP \"COPY x /\": no such file\n"));
    }

    #[test]
    fn a_build_that_lost_the_cache_race_is_built_again_without_the_cache() {
        let dir = crate::testutil::TempDir::new("race");
        let log = dir.path().join("x.log");
        let lost = "STEP 2/3: COPY x /\nError: checking if cached image exists from a previous build: getting top layer info: layer not known\n";
        let (path, args, labels) = (dir.path(), BTreeMap::new(), Vec::new());
        let req = BuildRequest {
            context: path,
            dockerfile: path,
            target: None,
            args: &args,
            labels: &labels,
            tags: &[],
            no_cache: false,
            iidfile: path,
        };
        // A builder that trips over the removed image whenever it looks its cache up.
        let mut asked = Vec::new();
        let (end, text) = build_retrying(&req, &log, |r| {
            asked.push(r.no_cache);
            std::fs::write(&log, if r.no_cache { "Successfully built\n" } else { lost }).unwrap();
            Ok(if r.no_cache { BuildEnd::Built } else { BuildEnd::Failed })
        });
        assert_eq!(asked, [false, true], "the second build must make no cache lookup");
        assert!(matches!(end, Ok(BuildEnd::Built)));
        assert!(text.contains("layer not known") && text.contains("without the cache"), "{text}");
        // Any other failure is not built again.
        let mut calls = 0;
        let _ = build_retrying(&req, &log, |_| {
            calls += 1;
            std::fs::write(&log, "COPY failed: file not found\n").unwrap();
            Ok(BuildEnd::Failed)
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_cache_race_is_recognised_and_nothing_else() {
        assert!(engine_race("Step 3/4 : COPY rootfs/ /\nunable to find image \"sha256:98847\"\n"));
        assert!(!engine_race("Step 3/4 : COPY rootfs/ /\nCOPY failed: file not found\n"));
        assert!(!engine_race("unable to find image \"sha256:1\"\nStep 4/4 : RUN false\nreturned a non-zero code: 1\n"));
    }

    #[test]
    fn a_panicking_worker_is_a_failed_service() {
        let o = guarded("web", || panic!("boom"));
        assert_eq!((o.service.as_str(), &o.result), ("web", &Ended::Failed));
        assert!(o.reason.contains("internal error in the tool (boom)"), "{}", o.reason);
        assert_eq!(guarded("web", || Outcome::new("web", Ended::Built, "")).result, Ended::Built);
        // The label of a pulled image may hold anything; cutting it never panics.
        assert_eq!(digest::short("sha256:ééééééééééééé"), "éééééééééééé");
        assert_eq!(digest::short("ab"), "ab");
    }
}
