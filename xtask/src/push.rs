//! Pushing to the registry, and the registry's view of every service: each built image goes
//! up as `REGISTRY/ai-infra-<svc>:TAG` and under its content tag; what the registry already
//! holds unchanged is not pushed again.

use std::collections::BTreeMap;

use crate::docker::Docker;
use crate::reference;
use crate::registry::{self, Lookup};
use crate::status::{Remote, Snapshot};

/// Asks the registry, concurrently and bounded in time, for every service's TAG and content tag.
pub fn remote(docker: &Docker, snap: &Snapshot, registry: &str, services: &[String]) -> BTreeMap<String, Remote> {
    let content_tags: Vec<String> = services
        .iter()
        .map(|s| {
            snap.digests
                .get(s)
                .and_then(|d| d.total.as_deref())
                .map_or_else(|| "inputs-unknown".into(), registry::content_tag)
        })
        .collect();
    let mut refs = Vec::new();
    for (s, content) in services.iter().zip(&content_tags) {
        let repo = reference::repository(s, None);
        refs.push((repo.clone(), snap.tag.clone()));
        refs.push((repo, content.clone()));
    }
    let found = registry::lookup_all(docker, registry, &refs);
    services
        .iter()
        .zip(&content_tags)
        .zip(found.chunks(2))
        .map(|((s, content_name), pair)| {
            let (tag, content) = (pair[0].clone(), pair[1].clone());
            let (state, reason) = state(&tag, &content, &snap.tag, content_name);
            (s.clone(), Remote { state, reason, tag, content })
        })
        .collect()
}

/// Whether TAG and the content tag name one manifest, by digests the registry named: an
/// unknown digest is no evidence.
fn same_manifest(tag: &Lookup, content: &Lookup) -> bool {
    matches!((tag, content), (Lookup::Found(Some(a)), Lookup::Found(Some(b))) if a == b && crate::reference::valid_digest(a))
}

/// The registry's view of one service from its two lookups: OK only with evidence that TAG
/// is the build of these inputs.
fn state(tag: &Lookup, content: &Lookup, tag_name: &str, content_name: &str) -> (&'static str, String) {
    match (tag, content) {
        (Lookup::Error(e), _) | (_, Lookup::Error(e)) => ("ERROR", e.clone()),
        _ if same_manifest(tag, content) => ("OK", String::new()),
        (Lookup::Found(Some(_)), Lookup::Found(Some(_))) => {
            ("STALE", format!("{tag_name} is another build than {content_name}"))
        }
        (Lookup::Found(_), Lookup::Found(_)) => (
            "STALE",
            format!("the registry did not name the manifests of {tag_name} and {content_name}: nothing shows they are one build"),
        ),
        (Lookup::Found(_), Lookup::Absent) => ("STALE", format!("{tag_name} was built from other inputs (no {content_name})")),
        (Lookup::Absent, Lookup::Found(_)) => {
            ("MISSING", format!("no {tag_name}, but {content_name} is there: build-all tags it"))
        }
        (Lookup::Absent, Lookup::Absent) => ("MISSING", format!("no {tag_name}")),
    }
}

/// The result of pushing one service.
pub struct Pushed {
    pub service: String,
    pub ok: bool,
    pub what: String,
}

/// Pushes the services whose local image is OK: both names when the content tag is absent,
/// only TAG when the content tag is there but TAG is not it, nothing when both are right.
pub fn push(docker: &Docker, snap: &Snapshot, registry: &str, services: &[String]) -> Vec<Pushed> {
    let remote = remote(docker, snap, registry, services);
    crate::context::parallel(services.len(), |i| {
        let s = &services[i];
        let r = &remote[s];
        let tag_name = reference::image_name(s, &snap.tag, Some(registry));
        let total = snap.digests.get(s).and_then(|d| d.total.clone()).unwrap_or_default();
        let content_name = reference::image_name(s, &registry::content_tag(&total), Some(registry));
        let result = match (&r.tag, &r.content) {
            (_, Lookup::Error(e)) | (Lookup::Error(e), _) => Err(e.clone()),
            (tag, content) if same_manifest(tag, content) => Ok("already in registry".to_string()),
            (_, Lookup::Found(_)) => docker
                .push(&tag_name)
                .map(|()| format!("already in registry; {} now points at it", snap.tag))
                .map_err(|e| format!("{e:#}")),
            (_, Lookup::Absent) => docker
                .tag(&tag_name, &content_name)
                .and_then(|()| docker.push(&content_name))
                .and_then(|()| docker.push(&tag_name))
                .map(|()| format!("pushed {tag_name} and {}", registry::content_tag(&total)))
                .map_err(|e| format!("{e:#}")),
        };
        match result {
            Ok(what) => Pushed { service: s.clone(), ok: true, what },
            Err(what) => Pushed { service: s.clone(), ok: false, what },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ok_only_with_evidence() {
        let d = |c: char| Lookup::Found(Some(format!("sha256:{}", c.to_string().repeat(64))));
        let st = |t: &Lookup, c: &Lookup| state(t, c, "v1", "inputs-x").0;
        assert_eq!(st(&d('a'), &d('a')), "OK");
        assert_eq!(st(&d('a'), &d('b')), "STALE");
        // The registry did not say which manifest, or said something that is not a digest.
        let unknown = Lookup::Found(None);
        let garbage = Lookup::Found(Some("garbage".into()));
        for (t, c) in [(&unknown, &unknown), (&unknown, &d('a')), (&d('a'), &unknown), (&garbage, &garbage)] {
            assert_eq!(st(t, c), "STALE", "{t:?} {c:?}");
            assert!(!same_manifest(t, c), "a push would skip on no evidence");
        }
        assert!(state(&unknown, &unknown, "v1", "inputs-x").1.contains("did not name the manifests"));
        assert_eq!(st(&Lookup::Absent, &d('a')), "MISSING");
        assert_eq!(st(&Lookup::Error("x".into()), &d('a')), "ERROR");
    }
}
