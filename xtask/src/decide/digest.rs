//! The input digest: a sha256 over a canonical, versioned description of everything a build
//! reads, kept per category (Dockerfile, args, files, parents, bases) so that a mismatch names
//! its category. The description itself (the record) and where it is kept are `record`'s.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::base::Sha;
use crate::repo::context::{field, FileRecord, What};
use crate::repo::record::Record;
use crate::repo::record::VERSION;

/// The label that records the digest: a JSON object with the format version, the service, the
/// total and each category. One label, because the legacy builder runs an intermediate
/// container for every label it adds.
pub const LABEL: &str = "ai-infra.inputs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Dockerfile,
    Args,
    Files,
    Parents,
    Bases,
}

impl Category {
    pub const ALL: [Category; 5] =
        [Category::Dockerfile, Category::Args, Category::Files, Category::Parents, Category::Bases];

    pub fn name(self) -> &'static str {
        match self {
            Category::Dockerfile => "dockerfile",
            Category::Args => "args",
            Category::Files => "files",
            Category::Parents => "parents",
            Category::Bases => "bases",
        }
    }
}

/// A total digest and one per category; a category is None when it cannot be known now (a
/// base image not present locally), and then so is the total.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Digest {
    pub total: Option<String>,
    pub parts: [Option<String>; 5],
}

impl Digest {
    pub fn part(&self, c: Category) -> Option<&str> {
        self.parts[c as usize].as_deref()
    }
}

fn sha(category: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{VERSION} {category}\n"));
    h.update(body.as_bytes());
    format!("sha256:{}", Sha::of(&h.finalize()))
}

/// The files category of a context: the largest part of a digest, and the same for every
/// service built from that context, so callers may compute it once per context, in parallel.
pub fn files_digest(files: &[FileRecord]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{VERSION} files\n"));
    // Lines are hashed some kilobytes at a time: a call per line of ~100 bytes cost more than
    // the hashing.
    let mut lines = String::with_capacity(1 << 15);
    for f in files {
        f.write_line(&mut lines);
        if lines.len() >= 1 << 14 {
            h.update(lines.as_bytes());
            lines.clear();
        }
    }
    h.update(lines.as_bytes());
    format!("sha256:{}", Sha::of(&h.finalize()))
}

impl Record {
    #[cfg(test)]
    pub fn digest(&self) -> Digest {
        self.digest_with(files_digest(&self.files))
    }

    /// The digest, given the files category as `files_digest` computes it for `self.files`.
    pub fn digest_with(&self, files: String) -> Digest {
        // Every name and value is a length-prefixed field: no value can pass for another.
        let mut body = String::new();
        match &self.target {
            Some(t) => {
                body.push_str("target ");
                field(&mut body, t);
            }
            None => body.push_str("no-target"),
        }
        body.push_str("\nsha256 ");
        field(&mut body, &self.dockerfile);
        let dockerfile = sha("dockerfile", &body);
        let pairs = |m: &mut dyn Iterator<Item = (&String, Option<&str>)>| -> Option<String> {
            let mut body = String::new();
            for (k, v) in m {
                field(&mut body, k);
                field(&mut body, v?);
                body.push('\n');
            }
            Some(body)
        };
        let args = sha("args", &pairs(&mut self.args.iter().map(|(k, v)| (k, Some(v.as_str())))).unwrap_or_default());
        let known = |m: &BTreeMap<String, Option<String>>, name: &str| -> Option<String> {
            Some(sha(name, &pairs(&mut m.iter().map(|(k, v)| (k, v.as_deref())))?))
        };
        let parents = known(&self.parents, "parents");
        let bases = known(&self.bases, "bases");
        let parts = [Some(dockerfile), Some(args), Some(files), parents, bases];
        let total = parts.iter().all(Option::is_some).then(|| {
            let mut body = String::new();
            for c in Category::ALL {
                field(&mut body, c.name());
                field(&mut body, parts[c as usize].as_deref().unwrap_or_default());
                body.push('\n');
            }
            sha("total", &body)
        });
        Digest { total, parts }
    }
}

/// The labels a build records: one, holding the total and each category.
pub fn labels(service: &str, d: &Digest) -> Vec<(String, String)> {
    let mut v = json!({ "version": VERSION, "service": service, "total": d.total });
    for c in Category::ALL {
        v[c.name()] = json!(d.part(c));
    }
    vec![(LABEL.to_string(), v.to_string())]
}

/// The digest an image records in its labels, if it records one in this format with every
/// field well formed.
pub fn from_labels(labels: &Map<String, Value>) -> Option<Digest> {
    let v: Value = serde_json::from_str(labels.get(LABEL)?.as_str()?).ok()?;
    if v.get("version")?.as_str()? != VERSION {
        return None;
    }
    let checked = |key: &str| -> Option<Option<String>> {
        match v.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(d)) if crate::repo::reference::valid_digest(d) => Some(Some(d.clone())),
            Some(_) => None,
        }
    };
    let total = checked("total")??;
    let mut parts: [Option<String>; 5] = Default::default();
    for c in Category::ALL {
        parts[c as usize] = checked(c.name())?;
    }
    Some(Digest { total: Some(total), parts })
}

/// Categories that differ between the inputs now and those an image was built from, and those
/// that cannot be compared now.
#[derive(Debug, Default, PartialEq)]
pub struct Comparison {
    pub changed: Vec<Category>,
    pub unchecked: Vec<Category>,
}

pub fn compare(expected: &Digest, found: &Digest) -> Comparison {
    let mut cmp = Comparison::default();
    if expected.total.is_some() && expected.total == found.total {
        return cmp;
    }
    for c in Category::ALL {
        match (expected.part(c), found.part(c)) {
            (None, _) => cmp.unchecked.push(c),
            (Some(e), Some(f)) if e == f => {}
            _ => cmp.changed.push(c),
        }
    }
    // Equal parts but different totals: the image was labelled by another version of the format.
    if cmp.changed.is_empty() && cmp.unchecked.is_empty() {
        cmp.changed.extend(Category::ALL);
    }
    cmp
}

/// What changed between two records, in words a person can act on. `reader` names the
/// instruction that reads a file (", read by COPY at line 3").
pub fn explain(
    old: &Record,
    new: &Record,
    changed: &[Category],
    reader: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if changed.contains(&Category::Dockerfile) {
        if old.target != new.target {
            let stage = |t: &Option<String>| t.as_ref().map_or("(the last stage)".to_string(), |t| format!("{t:?}"));
            out.push(format!("target changed: {} -> {}", stage(&old.target), stage(&new.target)));
        }
        if old.dockerfile != new.dockerfile {
            out.push("Dockerfile changed".to_string());
        }
    }
    if changed.contains(&Category::Args) {
        for name in old.args.keys().chain(new.args.keys()).collect::<std::collections::BTreeSet<_>>() {
            let show = |v: &str| crate::repo::env::shown(name, v);
            match (old.args.get(name), new.args.get(name)) {
                (Some(a), Some(b)) if a != b => {
                    out.push(format!("build arg {name} changed: {} -> {}", show(a), show(b)))
                }
                (None, Some(b)) => out.push(format!("build arg {name} added: {}", show(b))),
                (Some(_), None) => out.push(format!("build arg {name} removed")),
                _ => {}
            }
        }
    }
    if changed.contains(&Category::Files) {
        let before: BTreeMap<&str, &What> = old.files.iter().map(|f| (f.path.as_str(), &f.what)).collect();
        let after: BTreeMap<&str, &What> = new.files.iter().map(|f| (f.path.as_str(), &f.what)).collect();
        let mut changes = Vec::new();
        let by = |path: &str| reader(path).map_or(String::new(), |r| format!(", read by {r}"));
        for (path, what) in &after {
            match before.get(path) {
                None => changes.push(format!("{path} (added{})", by(path))),
                Some(old) if old != what => changes.push(format!("{path} ({}{})", file_change(old, what), by(path))),
                _ => {}
            }
        }
        changes.extend(before.keys().filter(|p| !after.contains_key(*p)).map(|p| format!("{p} (removed{})", by(p))));
        if !changes.is_empty() {
            let shown = changes.len().min(5);
            let more =
                if changes.len() > shown { format!(" and {} more", changes.len() - shown) } else { String::new() };
            out.push(format!("files changed: {}{more}", changes[..shown].join(", ")));
        }
    }
    if changed.contains(&Category::Parents) {
        for name in old.parents.keys().chain(new.parents.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (old.parents.get(name), new.parents.get(name)) {
                (Some(a), Some(b)) if a != b => out.push(format!("parent {name} changed")),
                (None, Some(_)) => out.push(format!("parent {name} added")),
                (Some(_), None) => out.push(format!("parent {name} removed")),
                _ => {}
            }
        }
    }
    if changed.contains(&Category::Bases) {
        for name in old.bases.keys().chain(new.bases.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (old.bases.get(name), new.bases.get(name)) {
                (Some(Some(a)), Some(Some(b))) if a != b => {
                    out.push(format!("base image {name} moved: {} -> {}", short(a), short(b)))
                }
                (None, Some(_)) => out.push(format!("base image {name} added")),
                (Some(_), None) => out.push(format!("base image {name} removed")),
                _ => {}
            }
        }
    }
    out
}

fn file_change(old: &What, new: &What) -> String {
    let mode = |a: u32, b: u32| format!("mode {a:o} -> {b:o}");
    match (old, new) {
        (What::File { mode: a, sha256: x }, What::File { mode: b, sha256: y }) => match (x == y, a == b) {
            (true, false) => mode(*a, *b),
            (false, false) => format!("modified, {}", mode(*a, *b)),
            _ => "modified".to_string(),
        },
        (What::Dir { mode: a }, What::Dir { mode: b }) => mode(*a, *b),
        (What::Symlink(_), What::Symlink(_)) => "link target changed".to_string(),
        _ => "type changed".to_string(),
    }
}

/// The first 12 characters of an ID, for messages; whatever the text (a label may hold any).
pub fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.char_indices().nth(12).map_or(hex, |(i, _)| &hex[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::context::What;
    use crate::repo::record::recorded_args;
    use crate::repo::record::tests::sample as record;

    #[test]
    fn digest_is_stable_and_sensitive() {
        let r = record();
        let d = r.digest();
        assert_eq!(d, record().digest());
        assert!(d.total.as_ref().unwrap().starts_with("sha256:"));
        let changed = |f: &dyn Fn(&mut Record)| {
            let mut m = record();
            f(&mut m);
            let e = m.digest();
            assert_ne!(e.total, d.total);
            compare(&e, &d).changed
        };
        assert_eq!(changed(&|r| r.dockerfile = "e".repeat(64)), vec![Category::Dockerfile]);
        assert_eq!(changed(&|r| r.target = None), vec![Category::Dockerfile]);
        assert_eq!(
            changed(&|r| {
                r.args.insert("PY".into(), "3.12".into());
            }),
            vec![Category::Args]
        );
        assert_eq!(
            changed(&|r| std::sync::Arc::make_mut(&mut r.files)[0].what =
                What::File { mode: 0o600, sha256: Sha::parse(&"1".repeat(64)).unwrap() }),
            vec![Category::Files]
        );
        assert_eq!(
            changed(&|r| std::sync::Arc::make_mut(&mut r.files)[1].what = What::Symlink("c".into())),
            vec![Category::Files]
        );
        assert_eq!(
            changed(&|r| std::sync::Arc::make_mut(&mut r.files)
                .push(FileRecord { path: "e".into(), what: What::Dir { mode: 0o755 } })),
            vec![Category::Files]
        );
        assert_eq!(
            changed(&|r| {
                r.parents.insert("base".into(), Some("sha256:q".into()));
            }),
            vec![Category::Parents]
        );
        assert_eq!(
            changed(&|r| {
                r.bases.insert("python:3.11".into(), Some("sha256:c".into()));
            }),
            vec![Category::Bases]
        );
        assert_eq!(compare(&d, &d), Comparison::default());
    }

    #[test]
    fn every_field_is_encoded_unambiguously() {
        let with = |f: &dyn Fn(&mut Record)| {
            let mut r = record();
            f(&mut r);
            r.digest()
        };
        let args = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        // Values that held the separators of the old layout.
        assert_ne!(
            with(&|r| r.args = args(&[("A", "1\"\nB=\"2")])).part(Category::Args),
            with(&|r| r.args = args(&[("A", "1"), ("B", "2")])).part(Category::Args)
        );
        assert_ne!(
            with(&|r| r.parents = [("a b".to_string(), Some("c".to_string()))].into()).part(Category::Parents),
            with(&|r| r.parents = [("a".to_string(), Some("b c".to_string()))].into()).part(Category::Parents)
        );
        assert_ne!(with(&|r| r.target = Some("-".into())), with(&|r| r.target = None));
        assert_eq!(VERSION, "ai-infra-inputs/v2");
    }

    #[test]
    fn unknown_bases_are_unchecked_not_stale() {
        let d = record().digest();
        let mut m = record();
        m.bases.insert("python:3.11".into(), None);
        let e = m.digest();
        assert_eq!(e.total, None);
        let cmp = compare(&e, &d);
        assert!(cmp.changed.is_empty());
        assert_eq!(cmp.unchecked, vec![Category::Bases]);
    }

    #[test]
    fn labels_round_trip_and_record_json() {
        let d = record().digest();
        let labels: Map<String, Value> = labels("svc", &d).into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        assert_eq!(labels.len(), 1, "one label: one builder step");
        assert_eq!(from_labels(&labels), Some(d));
        let mut other = labels.clone();
        other.insert(LABEL.into(), Value::String(r#"{"version":"ai-infra-inputs/v0","total":"x"}"#.into()));
        assert_eq!(from_labels(&other), None, "another format version is not trusted");
        // Every field is checked before use: a total naming a file, a short one, text.
        let mut v: Value = serde_json::from_str(labels[LABEL].as_str().unwrap()).unwrap();
        for bad in [
            json!("sha256:../../../etc/passwd"),
            json!("sha256:abc"),
            json!(12),
            json!(format!("sha256:{}", "é".repeat(32))),
        ] {
            for key in ["total", "files"] {
                let mut w = v.clone();
                w[key] = bad.clone();
                let l: Map<String, Value> = [(LABEL.to_string(), Value::String(w.to_string()))].into_iter().collect();
                assert_eq!(from_labels(&l), None, "{key}: {bad}");
            }
        }
        v["bases"] = Value::Null;
        let l: Map<String, Value> = [(LABEL.to_string(), Value::String(v.to_string()))].into_iter().collect();
        assert_eq!(from_labels(&l).unwrap().part(Category::Bases), None);
        assert_eq!((short("sha256:éééééééééééééé"), short("sha256:ab")), ("éééééééééééé", "ab"));
    }

    #[test]
    fn explanations_name_what_changed() {
        let old = record();
        let mut new = record();
        new.args = recorded_args(
            &[("PY".to_string(), "3.12".to_string()), ("DB_PASSWORD".to_string(), "x".to_string())].into(),
        );
        let files = std::sync::Arc::make_mut(&mut new.files);
        files[0].what = What::File { mode: 0o600, sha256: Sha::parse(&"1".repeat(64)).unwrap() };
        files[2].what = What::Dir { mode: 0o700 };
        files.remove(1);
        files.push(FileRecord { path: "z".into(), what: What::Dir { mode: 0o755 } });
        new.parents.insert("base".into(), Some("sha256:q".into()));
        let text = explain(&old, &new, &Category::ALL, &|p| (p == "a").then(|| "COPY at line 2".into())).join("; ");
        assert!(text.contains("build arg PY changed: \"3.11\" -> \"3.12\""), "{text}");
        assert!(text.contains("build arg DB_PASSWORD changed: (hidden) -> (hidden)"), "{text}");
        assert!(
            text.contains("a (mode 644 -> 600, read by COPY at line 2)") && text.contains("d (mode 755 -> 700)"),
            "{text}"
        );
        assert!(text.contains("z (added)") && text.contains("b (removed)"), "{text}");
        assert!(text.contains("parent base changed"), "{text}");
        assert!(!text.contains("hunter2"));
        // Plain values, as the Dockerfile names the stages.
        let mut targeted = record();
        targeted.target = Some("two".into());
        let mut one = record();
        one.target = Some("one".into());
        let text = explain(&one, &targeted, &[Category::Dockerfile], &|_| None).join("; ");
        assert!(text.contains("target changed: \"one\" -> \"two\"") && !text.contains("Some"), "{text}");
        one.target = None;
        let text = explain(&one, &targeted, &[Category::Dockerfile], &|_| None).join("; ");
        assert!(text.contains("target changed: (the last stage) -> \"two\""), "{text}");
    }
}
