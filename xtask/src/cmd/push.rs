//! Pushing to the registry, and the registry's view of every service: each built image goes
//! up as `REGISTRY/ai-infra-<svc>:TAG` and under its content tag; what the registry already
//! holds unchanged is not pushed again.

use std::collections::BTreeMap;

use crate::decide::status::{Remote, Snapshot};
use crate::repo::reference;
use crate::world::docker::Docker;
use crate::world::registry::{self, Lookup};

/// Asks the registry, concurrently and bounded in time, for every service's TAG and content tag
/// that `answers` does not hold yet.
pub fn remote(
    docker: &Docker,
    snap: &Snapshot,
    registry: &str,
    services: &[String],
    answers: &registry::Answers,
) -> BTreeMap<String, Remote> {
    // A service whose inputs are not fully known here (a base image is not present) has no
    // content tag: nothing in the registry can be shown to be its build.
    let content_tags: Vec<Option<String>> = services.iter().map(|s| content_tag(snap, s)).collect();
    let mut refs = Vec::new();
    for (s, content) in services.iter().zip(&content_tags) {
        let repo = reference::repository(s, None);
        refs.push((repo.clone(), snap.tag.clone()));
        if let Some(content) = content {
            refs.push((repo, content.clone()));
        }
    }
    let mut found = answers.lookup_all(docker, registry, &refs).into_iter();
    let mut out = BTreeMap::new();
    for (s, content_name) in services.iter().zip(&content_tags) {
        let tag = found.next().unwrap_or(Lookup::Absent);
        let (content, (state, reason)) = match content_name {
            Some(name) => {
                let content = found.next().unwrap_or(Lookup::Absent);
                let verdict = state(&tag, &content, &snap.tag, name);
                (content, verdict)
            }
            None => (Lookup::Absent, unknown_inputs(&tag, &snap.tag)),
        };
        out.insert(s.clone(), Remote { state, reason, tag, content });
    }
    out
}

/// A service's content tag, when its input digest is known.
fn content_tag(snap: &Snapshot, service: &str) -> Option<String> {
    snap.digests.get(service).and_then(|d| d.total.as_deref()).map(registry::content_tag)
}

/// The registry's view of a service whose inputs are not known here.
fn unknown_inputs(tag: &Lookup, tag_name: &str) -> (&'static str, String) {
    match tag {
        Lookup::Error(e) => ("ERROR", e.clone()),
        Lookup::Absent => ("MISSING", format!("no {tag_name}")),
        Lookup::Found(_) => (
            "STALE",
            format!("its inputs are not known here (a base image is not present locally): nothing shows {tag_name} is this build"),
        ),
    }
}

/// Whether TAG and the content tag name one manifest, by digests the registry named: an
/// unknown digest is no evidence.
fn same_manifest(tag: &Lookup, content: &Lookup) -> bool {
    matches!((tag, content), (Lookup::Found(Some(a)), Lookup::Found(Some(b))) if a == b && crate::repo::reference::valid_digest(a))
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
/// only TAG when the content tag is there but TAG is not it, nothing when both are right. What
/// the registry holds is what `answers` knows (what the plan asked), else asked now.
pub fn push(
    docker: &Docker,
    snap: &Snapshot,
    registry: &str,
    services: &[String],
    answers: &registry::Answers,
) -> Vec<Pushed> {
    let remote = remote(docker, snap, registry, services, answers);
    crate::repo::context::parallel(services.len(), |i| {
        let s = &services[i];
        let r = &remote[s];
        let tag_name = reference::image_name(s, &snap.tag, Some(registry));
        let result = match content_tag(snap, s) {
            // No content tag for inputs not known here: TAG alone goes up, and says so.
            None => match &r.tag {
                Lookup::Error(e) => Err(e.clone()),
                _ => docker.push(&tag_name).map_err(|e| format!("{e:#}")).map(|()| {
                    format!("pushed {tag_name} only: its inputs are not known here (a base image is not present locally), so it gets no content tag")
                }),
            },
            Some(content) => match (&r.tag, &r.content) {
                (_, Lookup::Error(e)) | (Lookup::Error(e), _) => Err(e.clone()),
                (tag, found) if same_manifest(tag, found) => Ok("already in registry".to_string()),
                (_, Lookup::Found(_)) => docker
                    .push(&tag_name)
                    .map(|()| format!("pushed {tag_name}; the registry already held a build of these inputs as {content}"))
                    .map_err(|e| format!("{e:#}")),
                (_, Lookup::Absent) => {
                    let content_name = reference::image_name(s, &content, Some(registry));
                    docker
                        .tag(&tag_name, &content_name)
                        .and_then(|()| docker.push(&content_name))
                        .and_then(|()| docker.push(&tag_name))
                        .map(|()| format!("pushed {tag_name} and {content}"))
                        .map_err(|e| format!("{e:#}"))
                }
            },
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
