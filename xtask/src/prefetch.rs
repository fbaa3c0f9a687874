//! Step 1, prefetch: pull the external base images that the services to build need and that
//! are not present locally. A pull that fails fails only the services that need that image.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::docker::Docker;
use crate::plan::Plan;
use crate::status::Snapshot;

/// The missing bases of the planned services, each with the services that need it.
pub fn missing(snap: &Snapshot, plan: &Plan) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for step in plan.work() {
        if let Some(record) = snap.records.get(&step.service) {
            for (base, id) in &record.bases {
                if id.is_none() {
                    out.entry(base.clone()).or_default().push(step.service.clone());
                }
            }
        }
    }
    out
}

/// Pulls what is missing; returns the services that cannot build, with the reason.
pub fn run(docker: &Docker, snap: &Snapshot, plan: &Plan, cancel: &AtomicBool) -> Result<BTreeMap<String, String>> {
    let missing = missing(snap, plan);
    let needed: usize = plan.work().map(|s| snap.records.get(&s.service).map_or(0, |r| r.bases.len())).sum();
    if missing.is_empty() {
        println!("{}", if needed == 0 { "no external base images needed".to_string() } else { "every base image is present".to_string() });
        return Ok(BTreeMap::new());
    }
    let mut failed = BTreeMap::new();
    for (base, services) in missing {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        match docker.pull(&base) {
            Ok(()) => println!("pulled {base}"),
            Err(e) => {
                println!("could not pull {base}: {e:#}");
                for s in services {
                    failed.insert(s, format!("base image {base} could not be pulled: {e:#}"));
                }
            }
        }
    }
    Ok(failed)
}

/// Whether a base that was missing when the plan was made is present now.
pub fn pulled_any(snap: &Snapshot, plan: &Plan, docker: &Docker) -> Result<bool> {
    let missing: Vec<String> = missing(snap, plan).into_keys().collect();
    Ok(!missing.is_empty() && !docker.inspect(&missing)?.is_empty())
}
