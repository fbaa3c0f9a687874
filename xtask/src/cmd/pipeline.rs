//! `build-all` and `build SERVICE`: status, plan, prefetch, sync config, render, build, verify,
//! each step with a heading; one run at a time per root; Ctrl-C stops cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::cmd::build::{self, Ended, Outcome};
use crate::cmd::flags::Build;
use crate::cmd::gather;
use crate::cmd::history;
use crate::cmd::prefetch;
use crate::decide::digest;
use crate::decide::plan::{self, Action, Plan};
use crate::decide::report::Format;
use crate::decide::status::{self, Snapshot, State};
use crate::repo::project;
use crate::repo::reference;
use crate::world::docker::Docker;

/// Set by Ctrl-C or SIGTERM: start nothing new, end what runs, report.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// The signal that stopped the run: SIGTERM (how CI systems cancel a job) ends it with 143.
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// Ctrl-C and SIGTERM stop the run: the builds are ended, the report printed, the lock
/// released. A second one while stopping ends the process at once (130 or 143).
fn on_stop_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if CANCEL.swap(true, Ordering::SeqCst) {
                std::process::exit(128 + signal);
            }
            STOPPED_BY.store(signal, Ordering::SeqCst);
            let what = if signal == SIGTERM { "terminated (SIGTERM)" } else { "interrupted" };
            eprintln!("\n{what}: stopping the running builds");
        }
    });
}

/// One build per root at a time: an OS lock on `target/xtask/build.lock`, held for the life
/// of the run and released by the system however the process ends (even SIGKILL). The file
/// holds the holder's PID, for the message only; it is never deleted, so no two runs can
/// ever lock two different files.
pub struct Lock(std::fs::File);

/// The PID goes with the run; the file stays (deleting it could let two runs lock two files).
impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.set_len(0);
    }
}

impl Lock {
    pub fn acquire(root: &Utf8Path) -> Result<Lock> {
        use std::io::{Read, Seek, Write};
        let dir = crate::base::state_dir(root);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        let path = dir.join("build.lock");
        let (mut file, held) = crate::base::try_lock(&path)?;
        if !held {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = match holder.trim() {
                "" => "another build".to_string(),
                pid => format!("another build (pid {pid})"),
            };
            let stop =
                holder.trim().parse::<u32>().map_or(String::new(), |p| format!(", or stop it with `kill -INT {p}`"));
            bail!("{who} is running on {root}: wait for it to finish{stop}");
        }
        // The PID only names the holder in the message above: failing to write it (a full
        // disk) does not stop the run, which holds the lock all the same.
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
        Ok(Lock(file))
    }
}

fn heading(k: usize, what: &str) {
    println!("[step {k}/5] {what}");
}

/// Images that already carry a service's expected input digest under another name.
fn reusable(docker: &Docker, snap: &Snapshot, plan: &Plan) -> Result<BTreeMap<String, String>> {
    let wanted: BTreeMap<&str, &str> = plan
        .work()
        .filter(|s| s.action == Action::Build { no_cache: false })
        .filter_map(|s| Some((snap.digests.get(&s.service)?.total.as_deref()?, s.service.as_str())))
        .collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let images = docker.inspect_named(reference::PREFIX)?;
    let (os, arch) = &snap.platform;
    let mut out = BTreeMap::new();
    for (name, image) in &images {
        let Some(found) = digest::from_labels(&image.labels).and_then(|d| d.total) else { continue };
        let Some(service) = wanted.get(found.as_str()) else { continue };
        let own = reference::image_name(service, &snap.tag, snap.registry.as_deref());
        if *name != own && status::invalid(image, os, arch).is_empty() {
            out.entry(service.to_string()).or_insert_with(|| name.clone());
        }
    }
    Ok(out)
}

/// Services the registry holds a build of, under their content tag, for steps that would build.
fn pullable(
    docker: &Docker,
    snap: &Snapshot,
    plan: &Plan,
    reuse: &BTreeMap<String, String>,
    registry: &str,
    answers: &crate::world::registry::Answers,
) -> BTreeMap<String, String> {
    let candidates: Vec<(String, String)> = plan
        .work()
        .filter(|s| s.action == Action::Build { no_cache: false } && !reuse.contains_key(&s.service))
        .filter_map(|s| Some((s.service.clone(), snap.digests.get(&s.service)?.total.clone()?)))
        .collect();
    let refs: Vec<(String, String)> = candidates
        .iter()
        .map(|(s, total)| (reference::repository(s, None), crate::world::registry::content_tag(total)))
        .collect();
    let found = answers.lookup_all(docker, registry, &refs);
    let mut out = BTreeMap::new();
    for ((service, total), lookup) in candidates.iter().zip(found) {
        match lookup {
            crate::world::registry::Lookup::Found(_) => {
                out.insert(
                    service.clone(),
                    reference::image_name(service, &crate::world::registry::content_tag(total), Some(registry)),
                );
            }
            crate::world::registry::Lookup::Error(e) => {
                // stderr: a dry run's JSON plan is stdout.
                eprintln!("registry lookup for {service}: {e}; it is built here")
            }
            crate::world::registry::Lookup::Absent => {}
        }
    }
    out
}

/// Pushes every planned service whose image is OK; prints one line each. False on a failure.
fn push_all(
    docker: &Docker,
    snap: &Snapshot,
    registry: &str,
    plan: &Plan,
    answers: &crate::world::registry::Answers,
) -> bool {
    let services: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| snap.statuses.iter().any(|st| st.name == s.service && st.state == State::Ok))
        .map(|s| s.service.clone())
        .collect();
    let mut ok = true;
    for p in crate::cmd::push::push(docker, snap, registry, &services, answers) {
        if p.ok {
            println!("push {}: {}", p.service, p.what);
        } else {
            ok = false;
            println!("push FAILED {}: {}", p.service, p.what);
        }
    }
    ok
}

/// Runs build-all (`o.service` None) or build SERVICE.
pub fn run(root: &Utf8Path, o: Build) -> Result<i32> {
    let started = Instant::now();
    let project = project::Project::load(root)?;
    if let Some(s) = &o.service {
        build::check_service(&project, s)?;
    }
    let tag = crate::cmd::flags::tag(root, o.tag.as_deref())?;
    // A bad bound is said before anything runs, not when a pull or a push first needs it.
    crate::world::docker::pull_timeout().and(crate::world::docker::push_timeout())?;
    let docker = crate::world::engine::docker(root)?;
    let _lock = if o.dry_run { None } else { Some(Lock::acquire(root)?) };
    if !o.dry_run {
        on_stop_signals();
    }
    if let (Some(r), false) = (o.registry.as_deref(), o.dry_run) {
        crate::cmd::clean::remember_registry(root, r);
    }
    let snap = gather::snapshot(&docker, root, &tag, o.registry.as_deref())?;
    let wanted: Option<BTreeSet<String>> = o.service.as_ref().map(|s| {
        let mut set: BTreeSet<String> =
            project::with_ancestors(&snap.services, s).iter().map(|r| r.service.name.clone()).collect();
        // A service that cannot be analysed has no ancestors here, but is in scope.
        set.insert(s.clone());
        set
    });
    let force: BTreeSet<String> = match (&o.service, o.force) {
        (_, false) => BTreeSet::new(),
        (Some(s), true) => [s.clone()].into(),
        (None, true) => snap.services.iter().map(|r| r.service.name.clone()).collect(),
    };
    let run = Run { root, o: &o, tag, docker, wanted, force, answers: Default::default() };
    // Services whose inputs cannot be read are reported and make the run fail; everything
    // that does not depend on them is built as usual.
    let errors: Vec<String> = snap
        .statuses
        .iter()
        .filter(|s| s.state == State::Error && o.service.as_ref().is_none_or(|w| *w == s.name))
        .map(|s| format!("ERROR {}: {}", s.name, s.reason))
        .collect();
    let status_line = run.status_line(&snap);
    if o.dry_run && o.format == Format::Json {
        // stdout carries the JSON document alone.
        eprintln!("[step 0/5] {status_line}");
    } else {
        heading(0, &status_line);
    }
    let plan = run.plan(&snap)?;
    if o.dry_run {
        match o.format {
            Format::Json => {
                let mut doc = plan::to_json(&plan, &snap);
                let listed: Vec<serde_json::Value> = snap
                    .statuses
                    .iter()
                    .filter(|s| s.state == State::Error && o.service.as_ref().is_none_or(|w| *w == s.name))
                    .map(|s| serde_json::json!({ "service": s.name, "reason": s.reason }))
                    .collect();
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("errors".into(), listed.into());
                }
                println!("{}", serde_json::to_string_pretty(&doc)?)
            }
            _ => {
                print!("{}", plan::human(&plan));
                for e in &errors {
                    println!("{e}");
                }
            }
        }
        // The real run would fail on a service it cannot analyse: so does its preview.
        return Ok(if errors.is_empty() { 0 } else { 1 });
    }
    if plan.is_empty() {
        return Ok(run.nothing_to_build(&snap, &plan, &errors));
    }
    print!("{}", plan::human(&plan));
    let (snap, plan, failed_bases) = run.prepare(&project, snap, plan)?;
    let outcomes = run.build(&snap, &plan, &failed_bases)?;
    Ok(run.verify(started, &snap, &plan, &outcomes, &errors))
}

/// What the steps of one run share.
struct Run<'a> {
    root: &'a Utf8Path,
    o: &'a Build,
    tag: String,
    docker: Docker,
    /// The services `build SERVICE` is about (with their parents); None for build-all.
    wanted: Option<BTreeSet<String>>,
    /// The services built without cache.
    force: BTreeSet<String>,
    /// What the registry said, for the plan and then the push.
    answers: crate::world::registry::Answers,
}

impl Run<'_> {
    fn registry(&self) -> Option<&str> {
        self.o.registry.as_deref()
    }

    fn snapshot(&self) -> Result<Snapshot> {
        gather::snapshot(&self.docker, self.root, &self.tag, self.registry())
    }

    /// Step 0's line: how many of the images in scope need work.
    fn status_line(&self, snap: &Snapshot) -> String {
        let target = snap.registry.as_deref().map_or("local build".to_string(), |r| format!("registry {r}"));
        if self.o.force && self.o.service.is_none() {
            return format!("status: skipped, --force rebuilds every service without cache (engine {})", snap.engine);
        }
        let in_scope: Vec<_> =
            snap.statuses.iter().filter(|s| self.wanted.as_ref().is_none_or(|w| w.contains(&s.name))).collect();
        let not_ok = in_scope.iter().filter(|s| s.state != State::Ok).count();
        format!(
            "status: {not_ok} of {} images need work (tag {}, {target}, engine {})",
            in_scope.len(),
            self.tag,
            snap.engine
        )
    }

    /// The plan; images with the same inputs, here or in the registry, are taken instead of
    /// built.
    fn plan(&self, snap: &Snapshot) -> Result<Plan> {
        let make = |reuse: &BTreeMap<String, String>, pull: &BTreeMap<String, String>, legacy: bool| {
            plan::make(snap, self.wanted.as_ref(), &self.force, reuse, pull, legacy)
        };
        let plan = make(&BTreeMap::new(), &BTreeMap::new(), false);
        if plan.is_empty() {
            return Ok(plan);
        }
        // Whether the builder builds stages the targets do not need is asked (three docker
        // calls) only where a planned build has such a stage whose base is missing.
        let unneeded_missing = plan.work().filter(|s| matches!(s.action, Action::Build { .. })).any(|s| {
            snap.services
                .iter()
                .filter(|r| r.service.name == s.service)
                .any(|r| r.analysis.bases.difference(&r.analysis.needed_bases).any(|b| !snap.base_ids.contains_key(b)))
        });
        let legacy = unneeded_missing && self.docker.builds()?.builder == crate::world::docker::Builder::Legacy;
        let (reuse, pull) = self.same_inputs(snap, &plan)?;
        Ok(if reuse.is_empty() && pull.is_empty() && !legacy { plan } else { make(&reuse, &pull, legacy) })
    }

    /// The images here (`reusable`) and the registry's builds (`pullable`) of the inputs of the
    /// steps that would build.
    fn same_inputs(
        &self,
        snap: &Snapshot,
        plan: &Plan,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let reuse = reusable(&self.docker, snap, plan)?;
        let pull = self
            .registry()
            .map_or_else(BTreeMap::new, |r| pullable(&self.docker, snap, plan, &reuse, r, &self.answers));
        Ok((reuse, pull))
    }

    /// Nothing to build: say so, record it, push what the registry lacks; the exit code.
    fn nothing_to_build(&self, snap: &Snapshot, plan: &Plan, errors: &[String]) -> i32 {
        if errors.is_empty() {
            println!("all {} images are up to date: nothing to build", plan.steps.len());
        } else {
            println!("nothing else to build: {} of {} images are up to date", plan.steps.len(), snap.statuses.len());
        }
        if let Err(e) = history::append(self.root, &self.tag, plan, &[], snap) {
            eprintln!("warning: the build history was not recorded: {e:#}");
        }
        let pushed = match self.registry().filter(|_| !self.o.no_push) {
            Some(r) => push_all(&self.docker, snap, r, plan, &self.answers),
            None => true,
        };
        for e in errors {
            println!("{e}");
        }
        if pushed && errors.is_empty() {
            0
        } else {
            1
        }
    }

    /// Steps 1 to 3: prefetch, sync config, render. Returns the snapshot and plan the builds
    /// use, and the services whose base image could not be pulled (why). The bases pulled only
    /// complete the digests of the steps that waited for them, which then take an image or a
    /// registry build of the same inputs where one exists (`plan::settle`); the gather step
    /// already counted `.env` and the templates as steps 2 and 3 write them.
    fn prepare(
        &self,
        project: &project::Project,
        mut snap: Snapshot,
        mut plan: Plan,
    ) -> Result<(Snapshot, Plan, BTreeMap<String, String>)> {
        heading(1, "prefetch external base images");
        let prefetched = prefetch::run(&self.docker, &snap, &plan, &CANCEL)?;
        if !prefetched.ids.is_empty() {
            let changed = status::with_bases(&mut snap, &prefetched.ids);
            let waited = |s: &String| plan.steps.iter().any(|p| p.service == *s && !p.waits.is_empty());
            if let Some(s) = changed.iter().find(|s| !waited(s)) {
                // An image checked without its base (a base not here is "not checked") may
                // not be up to date once the base is here: its status, not only its digest,
                // is open again, and so is the plan.
                println!("{s} was checked without a base image step 1 brought: checking and planning again");
                snap = self.snapshot()?;
                plan = self.plan(&snap)?;
                print!("{}", plan::human(&plan));
            } else {
                let (reuse, pull) = self.same_inputs(&snap, &plan)?;
                let said;
                (plan, said) = plan::settle(plan, &reuse, &pull);
                for line in said {
                    println!("{line}");
                }
            }
        }
        heading(2, "sync config (.env from .env.example)");
        crate::cmd::sync_env::run(self.root, false, false)?;
        heading(3, "render templates");
        crate::cmd::render::run(self.root, &project.names(), false, false)?;
        Ok((snap, plan, prefetched.failed))
    }

    /// Step 4: the plan's actions, but for the services whose base could not be pulled (they
    /// fail) and their descendants (the steps are in order, parents first: they cannot build).
    fn build(&self, snap: &Snapshot, plan: &Plan, failed_bases: &BTreeMap<String, String>) -> Result<Vec<Outcome>> {
        let n = plan.work().count();
        if plan.work().any(|s| matches!(s.action, Action::Build { .. })) {
            self.docker.prepare_builds()?;
        }
        heading(4, &format!("build: {n} service{}, up to {} at a time", if n == 1 { "" } else { "s" }, self.o.jobs));
        if let Some(warning) = build::secret_args_warning(snap, plan) {
            eprintln!("{warning}");
        }
        let mut outcomes = Vec::new();
        let mut runnable = plan.clone();
        let mut out_of_play: BTreeSet<String> = BTreeSet::new();
        for step in &mut runnable.steps {
            if let Some(why) = failed_bases.get(&step.service).filter(|_| matches!(step.action, Action::Build { .. })) {
                outcomes.push(Outcome::new(&step.service, Ended::Failed, why.clone()));
            } else if let Some(p) = step.after.iter().find(|p| out_of_play.contains(*p)) {
                outcomes.push(Outcome::new(&step.service, Ended::NotStarted, format!("parent {p} did not build")));
            } else {
                continue;
            }
            out_of_play.insert(step.service.clone());
            step.action = Action::Skip;
        }
        outcomes.extend(build::execute(&self.docker, snap, &runnable, self.o.jobs, self.o.verbose, &CANCEL));
        build::restore_names(&self.docker, snap, &outcomes);
        Ok(outcomes)
    }

    /// Step 5: classify again, push, record the history, print the summary; the exit code.
    fn verify(&self, started: Instant, snap: &Snapshot, plan: &Plan, outcomes: &[Outcome], errors: &[String]) -> i32 {
        let registry = self.registry();
        heading(5, if registry.is_some() && !self.o.no_push { "verify and push" } else { "verify" });
        // The engine may have gone away during the build: the report is still owed.
        let after = match self.snapshot() {
            Ok(after) => {
                let ok = after.statuses.iter().filter(|s| s.state == State::Ok).count();
                println!("{ok}/{} images OK", after.statuses.len());
                Some(after)
            }
            Err(e) => {
                println!("cannot verify: {e:#}");
                None
            }
        };
        let pushed = match (registry.filter(|_| !self.o.no_push && !CANCEL.load(Ordering::Relaxed)), &after) {
            (Some(r), Some(after)) => push_all(&self.docker, after, r, plan, &self.answers),
            (Some(_), None) => false,
            (None, _) => after.is_some(),
        };
        // The report comes first: a history that cannot be written is a warning after it.
        let recorded = history::append(self.root, &self.tag, plan, outcomes, after.as_ref().unwrap_or(snap));
        // Every image in the run's scope must be OK now, planned or not (ERROR is reported apart).
        let still_bad: Vec<&str> = after
            .iter()
            .flat_map(|a| &a.statuses)
            .filter(|s| self.wanted.as_ref().is_none_or(|w| w.contains(&s.name)))
            .filter(|s| s.state != State::Ok && s.state != State::Error)
            .map(|s| s.name.as_str())
            .collect();
        let clean = summary(started, plan, outcomes, errors, &still_bad) && pushed;
        if let Err(e) = recorded {
            eprintln!("warning: the build history was not recorded: {e:#}");
        }
        match STOPPED_BY.load(Ordering::SeqCst) {
            signal_hook::consts::SIGTERM => 143,
            _ if clean => 0,
            _ => 1,
        }
    }
}

/// The run's summary: counts, each failure with its log's tail, what was not built, the
/// errors. Whether the run is clean so far (nothing failed, stopped or still not OK).
fn summary(started: Instant, plan: &Plan, outcomes: &[Outcome], errors: &[String], still_bad: &[&str]) -> bool {
    let count = |r: Ended| outcomes.iter().filter(|o| o.result == r).count();
    println!(
        "summary: built {}, reused {}, pulled {}, failed {}, not started {}, up to date {}, in {:.1}s",
        count(Ended::Built),
        count(Ended::Reused),
        count(Ended::Pulled),
        count(Ended::Failed),
        count(Ended::NotStarted),
        plan.steps.len() - plan.work().count(),
        started.elapsed().as_secs_f64()
    );
    for f in outcomes.iter().filter(|o| o.result == Ended::Failed) {
        println!("FAILED {}: {}", f.service, f.reason);
        for line in f.tail.lines() {
            println!("    {line}");
        }
        if let Some(l) = &f.log {
            println!("    full log: {l}");
        }
    }
    for n in outcomes.iter().filter(|o| o.result == Ended::NotStarted) {
        println!("not built {}: {}", n.service, n.reason);
    }
    for e in errors {
        println!("{e}");
    }
    if CANCEL.load(Ordering::Relaxed) {
        println!("interrupted: the next run builds only what is still not OK");
    }
    if !still_bad.is_empty() && count(Ended::Failed) == 0 {
        println!("not OK after the build: {}", still_bad.join(", "));
    }
    // An interrupted run is never a success, even when every build had ended.
    errors.is_empty()
        && !CANCEL.load(Ordering::Relaxed)
        && count(Ended::Failed) == 0
        && count(Ended::NotStarted) == 0
        && still_bad.is_empty()
}
