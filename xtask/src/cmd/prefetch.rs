//! Step 1, prefetch: pull the external base images that the services to build need and that
//! are not present locally. A pull that fails fails only the services that need that image.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::decide::plan::Plan;
use crate::decide::status::Snapshot;
use crate::world::docker::Docker;

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

/// The bases of stages that the planned builds' targets do not need but the legacy builder
/// builds (they come before the target), each with the services whose builds read it.
fn unneeded_bases(snap: &Snapshot, plan: &Plan) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for step in plan.work().filter(|s| matches!(s.action, crate::decide::plan::Action::Build { .. })) {
        let Some(r) = snap.services.iter().find(|r| r.service.name == step.service) else { continue };
        for base in r.analysis.bases.difference(&r.analysis.needed_bases) {
            out.entry(base.clone()).or_default().push(step.service.clone());
        }
    }
    out
}

/// The mirror or private-registry prefix that Docker Hub base images are pulled through:
/// BASE_IMAGE_MIRROR from the environment or `.env`.
pub fn mirror(root: &camino::Utf8Path) -> Result<Option<String>> {
    let value = crate::repo::env::Values::load(root)?.get("BASE_IMAGE_MIRROR");
    Ok(value.map(|v| v.trim_end_matches('/').to_string()).filter(|v| !v.is_empty()))
}

/// The mirror's name for a base image, when the image is a Docker Hub one (no registry host).
pub fn mirrored(mirror: &str, image: &str) -> Option<String> {
    let familiar = crate::repo::reference::familiar(image);
    let has_host = crate::repo::reference::Reference::parse(familiar).domain.is_some();
    (!has_host).then(|| format!("{mirror}/{familiar}"))
}

/// Pulls `image` through the mirror first (a Docker Hub image, when a mirror is set), tagging
/// it with the name as written, then as written; says how it came.
pub fn pull_through(docker: &Docker, mirror: Option<&str>, image: &str) -> Result<String> {
    if let Some(m) = mirror.and_then(|m| mirrored(m, image)) {
        match docker.pull(&m).and_then(|()| docker.tag(&m, image)) {
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
    /// Whether any base image was pulled (its ID now counts in the digests).
    pub pulled: bool,
}

/// Pulls what is missing, through the mirror first when one is set.
pub fn run(docker: &Docker, snap: &Snapshot, plan: &Plan, cancel: &AtomicBool) -> Result<Prefetched> {
    let mirror = mirror(&snap.root)?;
    let mut missing = missing(snap, plan);
    // The legacy builder builds every stage before the target, also those the target does not
    // need: their bases must be here too, or the engine would pull them itself, past the mirror.
    let unneeded = unneeded_bases(snap, plan);
    if !unneeded.is_empty() && docker.prepare_builds()?.builder == crate::world::docker::Builder::Legacy {
        let present = docker.inspect(&unneeded.keys().cloned().collect::<Vec<_>>())?;
        for (base, services) in unneeded.into_iter().filter(|(b, _)| !present.contains_key(b)) {
            missing.entry(base).or_default().extend(services);
        }
    }
    let needed: usize = plan.work().map(|s| snap.records.get(&s.service).map_or(0, |r| r.bases.len())).sum();
    if missing.is_empty() {
        println!(
            "{}",
            if needed == 0 {
                "no external base images needed".to_string()
            } else {
                "every base image is present".to_string()
            }
        );
        return Ok(Prefetched { failed: BTreeMap::new(), pulled: false });
    }
    let mut failed = BTreeMap::new();
    let mut pulled = false;
    for (base, services) in missing {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        match pull_through(docker, mirror.as_deref(), &base) {
            Ok(how) => {
                println!("{how}");
                pulled = true;
            }
            Err(e) => {
                println!("could not pull {base}: {e:#}");
                for s in services {
                    failed.insert(s, format!("base image {base} could not be pulled: {e:#}"));
                }
            }
        }
    }
    Ok(Prefetched { failed, pulled })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_hub_images_go_through_the_mirror() {
        assert_eq!(super::mirrored("m.io/hub", "python:3.11").as_deref(), Some("m.io/hub/python:3.11"));
        assert_eq!(
            super::mirrored("m.io/hub", "docker.io/library/python:3.11").as_deref(),
            Some("m.io/hub/python:3.11")
        );
        assert_eq!(super::mirrored("m.io/hub", "me/tool:1").as_deref(), Some("m.io/hub/me/tool:1"));
        assert_eq!(super::mirrored("m.io/hub", "quay.io/x/y:1"), None);
        assert_eq!(super::mirrored("m.io/hub", "127.0.0.1:5000/x:1"), None);
    }
}
