//! Building images: one service with `docker build`, labelled with its input digest, and
//! `cargo xtask build SERVICE`, which builds it and any parent that is not OK, parents first.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{bail, Result};
use camino::Utf8PathBuf;

use crate::digest;
use crate::docker::{self, BuildRequest, Docker};
use crate::reference;
use crate::status::{Snapshot, State};

/// A finished build.
pub struct Built {
    pub id: String,
    pub seconds: f64,
    pub log: Utf8PathBuf,
}

/// A failed build, with the log to read.
pub struct Failed {
    pub log: Utf8PathBuf,
    pub tail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (full log: {})", self.tail, self.log)
    }
}

/// The last meaningful lines of a build log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("DEPRECATED") && !l.contains("docs.docker.com/go/buildx") && !l.contains("Install the buildx component"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n    ")
}

/// Builds one service as the snapshot describes it: its build args, target, and the labels
/// that record its input digest; tagged with its plain local name (and the registry name).
pub fn build_service(docker: &Docker, snap: &Snapshot, name: &str, no_cache: bool) -> Result<Built, Failed> {
    let started = Instant::now();
    let dir = crate::state_dir(&snap.root);
    let log = dir.join("logs").join(format!("{name}.log"));
    let fail = |tail: String| Failed { log: log.clone(), tail };
    let r = snap.services.iter().find(|r| r.service.name == name).expect("service is in the snapshot");
    let d = &snap.digests[name];
    let Some(total) = d.total.clone() else {
        let missing: Vec<&String> = snap.records[name].bases.iter().filter(|(_, id)| id.is_none()).map(|(b, _)| b).collect();
        return Err(fail(format!("cannot build: base image(s) not present locally: {missing:?}")));
    };
    let labels = digest::labels(name, d);
    let mut tags = vec![reference::image_name(name, &snap.tag, None)];
    if snap.registry.is_some() {
        tags.push(reference::image_name(name, &snap.tag, snap.registry.as_deref()));
    }
    let iidfile = dir.join("iid").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("iid"));
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let req = BuildRequest {
        context: &snap.root.join(&r.service.context),
        dockerfile: &snap.root.join(&r.service.dockerfile),
        target: r.service.target.as_deref(),
        args: &r.build_args,
        labels: &labels,
        tags: &tags,
        no_cache,
        iidfile: &iidfile,
    };
    let (ok, output) = match docker.build(&req) {
        Ok(x) => x,
        Err(e) => return Err(fail(format!("cannot run docker build: {e:#}"))),
    };
    if let Err(e) = crate::atomic::write(&log, output.as_bytes()) {
        return Err(fail(format!("{e:#}")));
    }
    if !ok {
        return Err(fail(tail(&output, 6)));
    }
    let id = docker::read_iid(&iidfile).map_err(|e| fail(format!("{e:#}")))?;
    let _ = std::fs::remove_file(&iidfile);
    // The record lets later checks name the files and args that changed since this build.
    if let Err(e) = digest::save_record(&snap.root, &total, &snap.records[name]) {
        eprintln!("warning: {e:#}");
    }
    Ok(Built { id, seconds: started.elapsed().as_secs_f64(), log })
}

/// Rejects a service name the project does not have, listing the ones it has.
pub fn check_service(project: &crate::project::Project, name: &str) -> Result<()> {
    if project.service(name).is_none() {
        bail!(crate::UsageError(format!("unknown service {name:?}; known services: {}", project.names().join(", "))));
    }
    Ok(())
}

/// `cargo xtask build SERVICE`: the service and any parent that is not OK, parents first.
pub fn run(docker: &Docker, snap: &Snapshot, name: &str, force: bool) -> Result<i32> {
    let chain = crate::project::with_ancestors(&snap.services, name);
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for r in chain {
        let svc = &r.service.name;
        let st = snap.status(svc);
        if let Some(p) = r.analysis.parents.iter().find(|p| failed.contains(*p)) {
            println!("skipped {svc}: parent {p} failed");
            failed.insert(svc.clone());
            continue;
        }
        let forced = force && svc == name;
        if st.state == State::Ok && !forced {
            println!("{svc} is OK ({}), not rebuilt", st.image);
            continue;
        }
        let why = if forced { "forced, without cache".to_string() } else { format!("{}: {}", st.state.name(), st.reason) };
        println!("building {svc} ({why})");
        match build_service(docker, snap, svc, forced) {
            Ok(b) => println!("built {svc} in {:.1}s: {} (log: {})", b.seconds, digest::short(&b.id), b.log),
            Err(f) => {
                println!("FAILED {svc}:\n    {f}");
                failed.insert(svc.clone());
            }
        }
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}
