//! Image status, decided from gathered facts (`gather`): the input digest of every service
//! computed from its files, and every image classified OK, MISSING, INVALID or STALE, with a
//! reason, from the engine's answer; a service whose inputs cannot be read is ERROR, and the
//! others are classified as usual.

use std::collections::BTreeMap;
use std::sync::Arc;

use camino::Utf8PathBuf;

use crate::decide::digest::{self, Category, Digest};
use crate::repo::context::{self, FileRecord};
use crate::repo::project::{self, Resolved};
use crate::repo::reads::{Reads, Want};
use crate::repo::record::{self, Record};
use crate::world::docker::Image;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    Missing,
    Invalid,
    Stale,
    Error,
}

impl State {
    pub const ALL: [State; 5] = [State::Ok, State::Missing, State::Invalid, State::Stale, State::Error];

    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Missing => "MISSING",
            State::Invalid => "INVALID",
            State::Stale => "STALE",
            State::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub name: String,
    pub image: String,
    pub state: State,
    /// Why it is not OK; for OK, what could not be checked (or empty).
    pub reason: String,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub image_id: Option<String>,
    pub size: Option<u64>,
    pub created: Option<String>,
}

/// Everything known about the project for one tag: resolved services (parents first), their
/// input records and digests, and their status.
pub struct Snapshot {
    pub root: Utf8PathBuf,
    pub tag: String,
    pub registry: Option<String>,
    pub services: Vec<Resolved>,
    pub records: BTreeMap<String, Record>,
    pub digests: BTreeMap<String, Digest>,
    /// Every service, the ERROR ones (not in `services`) last.
    pub statuses: Vec<ServiceStatus>,
    /// The engine's OS and architecture, as the check used them.
    pub platform: (String, String),
    /// The engine asked, as reports name it (`docker at ADDRESS`, `podman (no daemon)`).
    pub engine: String,
    /// The external bases of every stage (needed or not) that the engine holds, with their IDs.
    pub base_ids: BTreeMap<String, String>,
    /// The mirror that Docker Hub bases are pulled through first (BASE_IMAGE_MIRROR).
    pub mirror: Option<String>,
}

impl Snapshot {
    pub fn status(&self, name: &str) -> &ServiceStatus {
        self.statuses.iter().find(|s| s.name == name).expect("every service has a status")
    }
}

/// The project's digests alone: no engine involved except for the IDs of external bases.
pub struct Inputs {
    pub services: Vec<Resolved>,
    pub records: BTreeMap<String, Record>,
    pub digests: BTreeMap<String, Digest>,
}

/// The files one build reads from its context's listing: all of it for `COPY . dst`.
fn read_files(all: &Arc<Vec<FileRecord>>, reads: &Reads) -> Arc<Vec<FileRecord>> {
    if reads.whole() {
        return all.clone();
    }
    let read: Vec<usize> = (0..all.len()).filter(|&i| reads.reader(&all[i].path).is_some()).collect();
    // A context walked for this service alone holds only what it reads: shared, not copied.
    if read.len() == all.len() {
        return all.clone();
    }
    Arc::new(read.into_iter().map(|i| all[i].clone()).collect())
}

/// The services whose inputs the walk shows cannot be read, moved to `broken` (ERROR, with
/// why): one that reads a path the walk could not read, or names a source that is not in its
/// context (after `.dockerignore`) for a COPY or ADD, which every builder refuses; and those
/// built on them. A wildcard that matches nothing is no error (BuildKit copies nothing for it;
/// the legacy builder and Podman too, unless it is the instruction's only source), nor is a
/// bind mount's missing source (Podman mounts nothing there, with a warning). The others are
/// returned as they were, parents first.
pub fn readable(
    services: Vec<Resolved>,
    broken: &mut Vec<project::Broken>,
    files: &BTreeMap<Utf8PathBuf, Arc<Vec<FileRecord>>>,
    unreadable: &BTreeMap<Utf8PathBuf, Vec<context::Unreadable>>,
) -> Vec<Resolved> {
    let mut out = Vec::new();
    for r in services {
        let context = &r.service.context;
        let reads = Reads::new(&r.analysis.reads);
        let bad = unreadable.get(context).into_iter().flatten().find(|u| reads.want(&u.path, u.dir) != Want::No);
        let state = context::own_state(context);
        let listed = files.get(context).map_or(&[][..], |f| f.as_slice());
        let missing = r.analysis.reads.iter().find(|read| {
            let s = read.source.as_str();
            let own = state.as_deref().is_some_and(|t| s == t || s.starts_with(&format!("{t}/")));
            let bind = read.instruction.contains("RUN --mount");
            // A source through a link is read where the link points: the walk adds a read of
            // the target for the same line (`context::followed_links`).
            let followed = || {
                r.analysis
                    .reads
                    .iter()
                    .any(|o| o.line == read.line && o.source != read.source && in_listing(listed, &o.source))
            };
            s != "."
                && !s.contains(crate::repo::reads::WILDCARDS)
                && !own
                && !bind
                && !in_listing(listed, s)
                && !followed()
        });
        let parent = r.analysis.parents.iter().find(|p| broken.iter().any(|b| b.service.name == **p));
        let reason = match (bad, missing, parent) {
            (Some(u), _, _) => u.why.clone(),
            (_, Some(m), _) => format!(
                "{} at line {} reads {}, which is not in the context {context}: add it there, or correct the line (or the .dockerignore that excludes it)",
                m.instruction, m.line, m.source
            ),
            (_, _, Some(p)) => format!("its parent {p} is ERROR"),
            _ => {
                out.push(r);
                continue;
            }
        };
        broken.push(project::Broken { service: r.service, reason });
    }
    broken.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    out
}

/// Whether a listing (sorted by path) holds `path` or anything below it.
fn in_listing(files: &[FileRecord], path: &str) -> bool {
    let start = files.partition_point(|f| f.path.as_str() < path);
    files[start..]
        .iter()
        .take_while(|f| f.path.starts_with(path))
        .any(|f| f.path.len() == path.len() || f.path.as_bytes()[path.len()] == b'/')
}

/// Computes every service's input record and digest, parents first. `base_ids` gives the local
/// ID of each external base image that is present.
pub fn digests(
    services: Vec<Resolved>,
    files: &BTreeMap<Utf8PathBuf, Arc<Vec<FileRecord>>>,
    base_ids: &BTreeMap<String, String>,
) -> Inputs {
    let mut records = BTreeMap::new();
    let mut digests: BTreeMap<String, Digest> = BTreeMap::new();
    let read: Vec<Arc<Vec<FileRecord>>> = context::parallel(services.len(), |i| {
        let r = &services[i];
        files
            .get(&r.service.context)
            .map_or_else(Default::default, |all| read_files(all, &Reads::new(&r.analysis.reads)))
    });
    let files_digests: Vec<String> = context::parallel(read.len(), |i| digest::files_digest(&read[i]));
    for ((r, files), files_digest) in services.iter().zip(read).zip(files_digests) {
        let s = &r.service;
        let mut args = r.build_args.clone();
        if !r.analysis.image_tag_beyond_parents {
            args.remove("IMAGE_TAG");
        }
        use sha2::Digest as _;
        let record = Record {
            dockerfile: crate::base::Sha::of(&sha2::Sha256::digest(&r.dockerfile)).to_string(),
            target: s.target.clone(),
            args: record::recorded_args(&args),
            files,
            parents: r
                .analysis
                .needed_parents
                .iter()
                .map(|p| (p.clone(), digests.get(p).and_then(|d| d.total.clone())))
                .collect(),
            bases: r.analysis.needed_bases.iter().map(|b| (b.clone(), base_ids.get(b).cloned())).collect(),
        };
        let digest = record.digest_with(files_digest);
        digests.insert(s.name.clone(), digest);
        records.insert(s.name.clone(), record);
    }
    Inputs { services, records, digests }
}

/// The digests once step 1 has pulled bases: their IDs go into the records of the builds that
/// need them, and every digest that changes with them is computed again (parents first, as the
/// services are ordered). Statuses are left as they were: the verify step classifies anew.
/// Returns the services whose digest changed.
pub fn with_bases(snap: &mut Snapshot, ids: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    snap.base_ids.extend(ids.iter().map(|(b, id)| (b.clone(), id.clone())));
    for r in &snap.services {
        let name = &r.service.name;
        let Some(record) = snap.records.get_mut(name) else { continue };
        let mut changed = false;
        for (base, id) in record.bases.iter_mut() {
            if let (None, Some(new)) = (&id, ids.get(base)) {
                *id = Some(new.clone());
                changed = true;
            }
        }
        for (parent, total) in record.parents.iter_mut() {
            let now = snap.digests.get(parent).and_then(|d| d.total.clone());
            if *total != now {
                *total = now;
                changed = true;
            }
        }
        if changed {
            let files = snap.digests.get(name).and_then(|d| d.part(Category::Files)).unwrap_or_default().to_string();
            snap.digests.insert(name.clone(), record.digest_with(files));
            out.push(name.clone());
        }
    }
    out
}

/// What the registry holds for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// OK (TAG is the build of the current inputs), STALE (TAG is another build), MISSING
    /// (no TAG), ERROR (the registry could not be asked).
    pub state: &'static str,
    pub reason: String,
    pub tag: crate::world::registry::Lookup,
    pub content: crate::world::registry::Lookup,
}

/// What the engine and the records say about the images, as gathered for their statuses.
pub struct Found<'a> {
    /// The image name of every service, ERROR ones included.
    pub image_names: &'a BTreeMap<String, String>,
    /// The engine's answer for each image name it holds.
    pub images: &'a BTreeMap<String, Image>,
    /// The engine's OS and architecture.
    pub platform: (&'a str, &'a str),
    /// For an image built from other inputs (see `built_from_other_inputs`): the record of that
    /// build and the record of the inputs now, both as kept; absent when none is kept.
    pub records: &'a BTreeMap<String, (Record, Record)>,
}

/// The recorded total of an image that `classify` will call STALE for changed inputs: the
/// one whose record, if kept, explains what changed.
pub fn built_from_other_inputs(expected: &Digest, image: Option<&Image>, (os, arch): (&str, &str)) -> Option<String> {
    let image = image?;
    if !invalid(image, os, arch).is_empty() {
        return None;
    }
    let found = digest::from_labels(&image.labels)?;
    (!digest::compare(expected, &found).changed.is_empty()).then_some(found.total).flatten()
}

/// Every service's status, from its digest and what was found: the services that resolved
/// (parents first), then the broken ones as ERROR.
pub fn statuses(
    services: &[Resolved],
    digests: &BTreeMap<String, Digest>,
    found: &Found,
    broken: Vec<project::Broken>,
) -> Vec<ServiceStatus> {
    let mut statuses = Vec::new();
    for r in services {
        let name = &r.service.name;
        let image_name = &found.image_names[name];
        let image = found.images.get(image_name);
        let expected = &digests[name];
        let (state, reason) = classify(expected, image, found.platform, &|_, changed| {
            let (old, new) = found.records.get(name)?;
            let reads = Reads::new(&r.analysis.reads);
            let reader = |path: &str| reads.reader(path).map(|r| format!("{} at line {}", r.instruction, r.line));
            let lines = digest::explain(old, new, changed, &reader);
            (!lines.is_empty()).then(|| lines.join("; "))
        });
        // A parent whose digest cannot be known (its base is not here) leaves the child's
        // parents unchecked: then the child is OK only while that parent is.
        let (state, reason) = match r.analysis.needed_parents.iter().find_map(|p| {
            let parent = statuses.iter().find(|s: &&ServiceStatus| s.name == *p && s.state != State::Ok)?;
            (expected.part(Category::Parents).is_none()).then_some(parent)
        }) {
            Some(parent) if state == State::Ok => (
                State::Stale,
                format!(
                    "its parent {} is {} ({}), and its inputs are part of this image's",
                    parent.name,
                    parent.state.name(),
                    parent.reason
                ),
            ),
            _ => (state, reason),
        };
        // Remote content is counted by its URL; only a checksum pins what it holds.
        let unpinned: Vec<String> = r
            .analysis
            .remote
            .iter()
            .filter(|u| u.checksum.is_none())
            .map(|u| format!("ADD {} at line {}", u.url, u.line))
            .collect();
        let reason = if state == State::Ok && !unpinned.is_empty() {
            let note = format!("remote content not checked: {} (pin it with --checksum)", unpinned.join(", "));
            if reason.is_empty() {
                note
            } else {
                format!("{reason}; {note}")
            }
        } else {
            reason
        };
        statuses.push(ServiceStatus {
            name: name.clone(),
            image: image_name.clone(),
            state,
            reason,
            expected: expected.total.clone(),
            found: image.and_then(|i| digest::from_labels(&i.labels)).and_then(|d| d.total),
            image_id: image.and_then(|i| i.id.clone()),
            size: image.and_then(|i| i.size),
            created: image.and_then(|i| i.created.clone()),
        });
    }
    statuses.extend(broken.into_iter().map(|b| ServiceStatus {
        image: found.image_names[&b.service.name].clone(),
        name: b.service.name,
        state: State::Error,
        reason: b.reason,
        expected: None,
        found: None,
        image_id: None,
        size: None,
        created: None,
    }));
    statuses
}

/// Whether an image has no content: no layers, or size 0.
fn empty(image: &Image) -> bool {
    image.size.unwrap_or(0) == 0 || image.layers.unwrap_or(0) == 0
}

/// What is wrong with an image that exists, if anything: the INVALID checks. An empty image
/// (size 0, no layers) is broken only when it lacks this tool's input record: one built
/// from only LABELs or empty files is what its inputs make.
pub fn invalid(image: &Image, os: &str, arch: &str) -> Vec<String> {
    let recorded = image.labels.contains_key(digest::LABEL);
    let mut problems = Vec::new();
    let missing: Vec<&str> = [
        ("Id", image.id.is_none()),
        ("Created", image.created.is_none()),
        ("Architecture", image.arch.is_none()),
        ("Os", image.os.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(f, _)| *f)
    .collect();
    if !missing.is_empty() {
        problems.push(format!("metadata incomplete (no {})", missing.join(", ")));
    }
    if !recorded && (image.size == Some(0) || image.size.is_none()) {
        problems.push("size 0".to_string());
    }
    if !recorded && image.layers.unwrap_or(0) == 0 {
        problems.push("no layers".to_string());
    }
    if image.repo_tags.is_empty() {
        problems.push("no tags".to_string());
    }
    if let (Some(o), Some(a)) = (&image.os, &image.arch) {
        if (!os.is_empty() && o != os) || (!arch.is_empty() && a != arch) {
            problems.push(format!("built for {o}/{a}, the engine runs {os}/{arch}"));
        }
    }
    problems
}

/// Classifies one image against the digest of the inputs now. `explain` names what changed
/// when a record of the image's inputs is at hand.
pub fn classify(
    expected: &Digest,
    image: Option<&Image>,
    (os, arch): (&str, &str),
    explain: &dyn Fn(&str, &[Category]) -> Option<String>,
) -> (State, String) {
    let Some(image) = image else {
        return (State::Missing, "not built yet".to_string());
    };
    let problems = invalid(image, os, arch);
    if !problems.is_empty() {
        return (State::Invalid, format!("{}: rebuild it", problems.join(", ")));
    }
    let (state, reason) = stale_or_ok(expected, &image.labels, explain);
    if state == State::Ok && empty(image) {
        let note = if reason.is_empty() { String::new() } else { format!("; {reason}") };
        return (state, format!("empty image (no layers, size 0), as its inputs make it{note}"));
    }
    (state, reason)
}

/// The content comparison: the digest recorded in the labels against the one expected.
pub fn stale_or_ok(
    expected: &Digest,
    labels: &serde_json::Map<String, serde_json::Value>,
    explain: &dyn Fn(&str, &[Category]) -> Option<String>,
) -> (State, String) {
    let Some(found) = digest::from_labels(labels) else {
        let why = if labels.contains_key(digest::LABEL) {
            "its input digest is in another format (built by another version of this tool) or damaged: rebuild it"
        } else {
            "carries no input digest (not built by this tool): rebuild it to know what it contains"
        };
        return (State::Stale, why.to_string());
    };
    let cmp = digest::compare(expected, &found);
    if cmp.changed.is_empty() {
        let note = if cmp.unchecked.is_empty() {
            String::new()
        } else {
            let what: Vec<&str> = cmp.unchecked.iter().map(|c| c.name()).collect();
            format!(
                "{} not checked: a base image is not present locally (it is pulled before a build)",
                what.join(", ")
            )
        };
        return (State::Ok, note);
    }
    let found_total = found.total.as_deref().unwrap_or_default();
    let reason = explain(found_total, &cmp.changed).unwrap_or_else(|| {
        let what: Vec<&str> = cmp.changed.iter().map(|c| c.name()).collect();
        format!("{} changed since it was built (no local record of that build names the details)", what.join(", "))
    });
    (State::Stale, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn image() -> Image {
        Image::from_json(&json!({
            "Id": "sha256:1", "RepoTags": ["ai-infra-x:t"], "Created": "2026-01-01T00:00:00Z", "Size": 10,
            "Architecture": "amd64", "Os": "linux", "RootFS": {"Type": "layers", "Layers": ["sha256:a"]}, "Config": {"Labels": {}}
        }))
    }

    #[test]
    fn invalid_images() {
        assert!(invalid(&image(), "linux", "amd64").is_empty());
        let mut i = image();
        i.size = Some(0);
        i.layers = None;
        assert_eq!(invalid(&i, "linux", "amd64"), vec!["size 0", "no layers"]);
        // Empty by design: this tool's input record says what it was built from.
        let d = Record { dockerfile: "a".repeat(64), ..Default::default() }.digest();
        i.labels = labels(&d);
        assert!(invalid(&i, "linux", "amd64").is_empty());
        let none = |_: &str, _: &[Category]| None;
        let (state, why) = classify(&d, Some(&i), ("linux", "amd64"), &none);
        assert_eq!(state, State::Ok);
        assert!(why.starts_with("empty image"), "{why}");
        let other = Record { dockerfile: "b".repeat(64), ..Default::default() }.digest();
        assert_eq!(classify(&other, Some(&i), ("linux", "amd64"), &none).0, State::Stale);
        // The report names the image already: the reason says only what to know.
        assert_eq!(classify(&d, None, ("linux", "amd64"), &none), (State::Missing, "not built yet".to_string()));
        let mut i = image();
        i.arch = Some("arm64".into());
        assert!(invalid(&i, "linux", "amd64")[0].contains("built for linux/arm64"));
        let mut i = image();
        i.created = None;
        i.repo_tags.clear();
        let p = invalid(&i, "linux", "amd64");
        assert!(p[0].contains("no Created") && p[1] == "no tags", "{p:?}");
    }

    fn labels(d: &Digest) -> Map<String, Value> {
        digest::labels("x", d).into_iter().map(|(k, v)| (k, Value::String(v))).collect()
    }

    #[test]
    fn content_decides() {
        let rec = Record { dockerfile: "a".repeat(64), ..Default::default() };
        let d = rec.digest();
        let none = |_: &str, _: &[Category]| None;
        assert_eq!(stale_or_ok(&d, &labels(&d), &none), (State::Ok, String::new()));
        let (s, why) = stale_or_ok(&d, &Map::new(), &none);
        assert_eq!(s, State::Stale);
        assert!(why.contains("no input digest"));
        let old: Map<String, Value> =
            [(digest::LABEL.to_string(), Value::String("sha256:1234".into()))].into_iter().collect();
        let (s, why) = stale_or_ok(&d, &old, &none);
        assert_eq!(s, State::Stale);
        assert!(why.contains("another format"), "{why}");
        // A label of the previous format (v1: fields not length-prefixed) is another format.
        let v1 = json!({"version": "ai-infra-inputs/v1", "service": "x", "total": d.total, "files": d.part(Category::Files)});
        let v1: Map<String, Value> = [(digest::LABEL.to_string(), Value::String(v1.to_string()))].into_iter().collect();
        let (s, why) = stale_or_ok(&d, &v1, &none);
        assert_eq!(s, State::Stale);
        assert!(why.contains("another format"), "{why}");
        // A label with a field that is not a digest is neither trusted nor an error.
        let mut bad: Value = serde_json::from_str(labels(&d)[digest::LABEL].as_str().unwrap()).unwrap();
        bad["total"] = json!("sha256:../../../../etc/passwd");
        let bad: Map<String, Value> =
            [(digest::LABEL.to_string(), Value::String(bad.to_string()))].into_iter().collect();
        let (s, why) = stale_or_ok(&d, &bad, &|_, _| panic!("a bad label names no record"));
        assert_eq!(s, State::Stale);
        assert!(why.contains("another format"), "{why}");
        let other = Record { dockerfile: "b".repeat(64), ..Default::default() }.digest();
        let (s, why) = stale_or_ok(&d, &labels(&other), &none);
        assert_eq!(s, State::Stale);
        assert!(why.starts_with("dockerfile changed"), "{why}");
        let (_, why) = stale_or_ok(&d, &labels(&other), &|_, _| Some("Dockerfile changed".into()));
        assert_eq!(why, "Dockerfile changed");
    }

    #[test]
    fn a_source_not_in_the_context_or_unreadable_is_error_for_its_readers_only() {
        let internal =
            crate::repo::dockerfile::Internal { tag: "t", is_service: &|n| n == "app", triggers: &Default::default() };
        let service = |name: &str, context: &str, text: &str| Resolved {
            service: project::Service {
                name: name.into(),
                context: context.into(),
                dockerfile: "d".into(),
                target: None,
            },
            dockerfile: text.as_bytes().to_vec(),
            analysis: crate::repo::dockerfile::analyze(text, None, &BTreeMap::new(), &internal).unwrap(),
            build_args: BTreeMap::new(),
            ignore: Default::default(),
        };
        let file = |path: &str| FileRecord {
            path: path.into(),
            what: context::What::File { mode: 0o644, sha256: crate::base::Sha::ZERO },
        };
        let dir = |path: &str| FileRecord { path: path.into(), what: context::What::Dir { mode: 0o755 } };
        let files: BTreeMap<Utf8PathBuf, Arc<Vec<FileRecord>>> = [
            ("a".into(), Arc::new(vec![file("here.txt"), dir("lib"), file("lib.txt"), file("lib/x")])),
            (".".into(), Arc::new(vec![file("src/a/x"), file("src/bx")])),
        ]
        .into();
        let unreadable: BTreeMap<Utf8PathBuf, Vec<context::Unreadable>> = [(
            ".".into(),
            vec![context::Unreadable {
                path: "src/b/n\\xff".into(),
                dir: false,
                why: "src/b/n\\xff: not UTF-8".into(),
            }],
        )]
        .into();
        let services = vec![
            service(
                "app",
                "a",
                "FROM scratch\nCOPY here.txt lib/ /\nCOPY nomatch* /x/\nCOPY --from=busybox:1 /bin /bin\n",
            ),
            service("gone", "a", "FROM scratch\nCOPY nothere.txt /\n"),
            service("lib", "a", "FROM scratch\nCOPY li /\n"),
            service("child", "x", "FROM ai-infra-app:t\n"),
            service(
                "rooted",
                ".",
                "FROM scratch\nCOPY src/a target/release/app /\nRUN --mount=source=no,target=/n true\n",
            ),
            service("reader", ".", "FROM scratch\nCOPY src /\n"),
        ];
        let mut broken = Vec::new();
        let ok = readable(services, &mut broken, &files, &unreadable);
        let names: Vec<&str> = ok.iter().map(|r| r.service.name.as_str()).collect();
        assert_eq!(names, ["app", "child", "rooted"]);
        let why: BTreeMap<&str, &str> = broken.iter().map(|b| (b.service.name.as_str(), b.reason.as_str())).collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(
            why["gone"].starts_with("COPY at line 2 reads nothere.txt, which is not in the context a: add it"),
            "{why:?}"
        );
        assert!(why["lib"].contains("reads li,"), "a prefix of a name is not the name: {why:?}");
        // A source through a link: the walk reads its target on the same line.
        let mut linked = service("linked", "a", "FROM scratch\nCOPY conf/x /\n");
        let target = crate::repo::dockerfile::Read { source: "lib/x".into(), ..linked.analysis.reads[0].clone() };
        let unlinked = service("unlinked", "a", "FROM scratch\nCOPY conf/x /\n");
        linked.analysis.reads.push(target);
        let mut broken = Vec::new();
        assert_eq!(readable(vec![linked, unlinked], &mut broken, &files, &unreadable).len(), 1);
        assert!(broken[0].reason.contains("reads conf/x,"), "{broken:?}");
        assert_eq!(why["reader"], "src/b/n\\xff: not UTF-8");
        // The children of an ERROR service are ERROR too.
        let mut broken = Vec::new();
        let gone = service("app", "a", "FROM scratch\nCOPY nothere.txt /\n");
        assert!(readable(vec![gone, service("child", "x", "FROM ai-infra-app:t\n")], &mut broken, &files, &unreadable)
            .is_empty());
        assert_eq!(broken[1].reason, "its parent app is ERROR");
    }

    #[test]
    fn pulled_bases_complete_the_digests_as_a_gather_after_the_pull_would() {
        let internal =
            crate::repo::dockerfile::Internal { tag: "t", is_service: &|n| n == "api", triggers: &Default::default() };
        let services = || {
            [("api", "FROM python:3\n"), ("web", "FROM ai-infra-api:t\n"), ("solo", "FROM scratch\n")]
                .into_iter()
                .map(|(name, text)| Resolved {
                    service: project::Service {
                        name: name.into(),
                        context: "c".into(),
                        dockerfile: "d".into(),
                        target: None,
                    },
                    dockerfile: text.as_bytes().to_vec(),
                    analysis: crate::repo::dockerfile::analyze(text, None, &BTreeMap::new(), &internal).unwrap(),
                    build_args: BTreeMap::new(),
                    ignore: Default::default(),
                })
                .collect::<Vec<_>>()
        };
        let files = BTreeMap::new();
        let ids: BTreeMap<String, String> = [("python:3".to_string(), "sha256:py".to_string())].into();
        let before = digests(services(), &files, &BTreeMap::new());
        let after = digests(services(), &files, &ids);
        assert!(before.digests["api"].total.is_none() && before.digests["web"].total.is_none());
        let mut snap = Snapshot {
            root: "/r".into(),
            tag: "t".into(),
            registry: None,
            services: before.services,
            records: before.records,
            digests: before.digests.clone(),
            statuses: Vec::new(),
            platform: ("linux".into(), "amd64".into()),
            engine: String::new(),
            base_ids: BTreeMap::new(),
            mirror: None,
        };
        assert_eq!(with_bases(&mut snap, &ids), ["api", "web"]);
        assert_eq!(snap.digests, after.digests, "the base's ID, and the parent's digest through it");
        assert!(snap.digests["web"].total.is_some());
        assert_eq!(snap.digests["solo"], before.digests["solo"]);
        assert_eq!(snap.records["web"], after.records["web"]);
        assert_eq!(snap.base_ids, ids);
    }
}
