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
/// The mirror or private-registry prefix that Docker Hub base images are pulled through:
/// BASE_IMAGE_MIRROR from the environment or `.env`.
pub fn mirror(root: &camino::Utf8Path) -> Result<Option<String>> {
    let from_env = std::env::var("BASE_IMAGE_MIRROR").ok();
    let value = match from_env {
        Some(v) => Some(v),
        None => crate::env::values(root)?.get("BASE_IMAGE_MIRROR").cloned(),
    };
    Ok(value.map(|v| v.trim_end_matches('/').to_string()).filter(|v| !v.is_empty()))
}

/// The mirror's name for a base image, when the image is a Docker Hub one (no registry host).
pub fn mirrored(mirror: &str, image: &str) -> Option<String> {
    let familiar = crate::docker::familiar(image);
    let first = familiar.split('/').next().unwrap_or(familiar);
    let has_host = familiar.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    (!has_host).then(|| format!("{mirror}/{familiar}"))
}

pub fn run(docker: &Docker, snap: &Snapshot, plan: &Plan, cancel: &AtomicBool) -> Result<BTreeMap<String, String>> {
    let mirror = mirror(&snap.root)?;
    let missing = missing(snap, plan);
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
        return Ok(BTreeMap::new());
    }
    let mut failed = BTreeMap::new();
    for (base, services) in missing {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        // Through the mirror first, then the name as written.
        if let Some(m) = mirror.as_deref().and_then(|m| mirrored(m, &base)) {
            match docker.pull(&m).and_then(|()| docker.tag(&m, &base)) {
                Ok(()) => {
                    println!("pulled {base} through the mirror as {m}");
                    continue;
                }
                Err(e) => println!("could not pull {m} from the mirror ({e:#}); trying {base}"),
            }
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
