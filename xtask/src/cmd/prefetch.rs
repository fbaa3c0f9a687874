//! Step 1, prefetch: pull the external base images that the services to build need and that
//! are not present locally. A pull that fails fails only the services that need that image.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::decide::plan::Plan;
use crate::decide::status::Snapshot;
use crate::world::docker::Docker;

/// The mirror or private-registry prefix that Docker Hub base images are pulled through:
/// BASE_IMAGE_MIRROR from the environment or `.env`.
pub fn mirror(root: &camino::Utf8Path) -> Result<Option<String>> {
    Ok(mirror_in(&crate::repo::env::Values::load(root)?))
}

/// The mirror among these values.
pub fn mirror_in(values: &crate::repo::env::Values) -> Option<String> {
    let value = values.get("BASE_IMAGE_MIRROR");
    value.map(|v| v.trim_end_matches('/').to_string()).filter(|v| !v.is_empty())
}

/// Pulls `image` through the mirror first (a Docker Hub image, when a mirror is set), tagging
/// it with the name as written, then as written; says how it came.
pub fn pull_through(docker: &Docker, mirror: Option<&str>, image: &str) -> Result<String> {
    let through = mirror.and_then(|m| crate::repo::reference::mirrored(m, image));
    pull_via(docker, through.as_deref(), image)
}

/// Pulls `image` as `through` names it first (then tags it as written), else as written.
fn pull_via(docker: &Docker, through: Option<&str>, image: &str) -> Result<String> {
    if let Some(m) = through {
        match docker.pull(m).and_then(|()| docker.tag(m, image)) {
            Ok(()) => return Ok(format!("pulled {image} through the mirror as {m}")),
            Err(e) => println!("could not pull {m} from the mirror ({e:#}); trying {image}"),
        }
    }
    docker.pull(image)?;
    Ok(format!("pulled {image}"))
}

/// What step 1 did.
pub struct Prefetched {
    /// Services that cannot build, with the reason.
    pub failed: BTreeMap<String, String>,
    /// The bases pulled, with their IDs (which now count in the digests).
    pub ids: BTreeMap<String, String>,
}

/// Pulls the plan's bases, as the plan says (through the mirror first where it names one); a
/// base that cannot be pulled fails the services the plan names for it.
pub fn run(docker: &Docker, snap: &Snapshot, plan: &Plan, cancel: &AtomicBool) -> Result<Prefetched> {
    let mut failed = BTreeMap::new();
    if plan.bases.is_empty() {
        let needed = plan.work().any(|s| snap.records.get(&s.service).is_some_and(|r| !r.bases.is_empty()));
        println!("{}", if needed { "every base image is present" } else { "no external base images needed" });
        return Ok(Prefetched { failed, ids: BTreeMap::new() });
    }
    let mut pulled = Vec::new();
    for base in &plan.bases {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        match pull_via(docker, base.through.as_deref(), &base.image) {
            Ok(how) => {
                println!("{how}");
                pulled.push(base.image.clone());
            }
            Err(e) => {
                println!("could not pull {}: {e:#}", base.image);
                for s in &base.services {
                    failed.insert(s.clone(), format!("base image {} could not be pulled: {e:#}", base.image));
                }
            }
        }
    }
    let found = if pulled.is_empty() { BTreeMap::new() } else { docker.inspect(&pulled)? };
    let ids = found.into_iter().filter_map(|(name, image)| Some((name, image.id?))).collect();
    Ok(Prefetched { failed, ids })
}
