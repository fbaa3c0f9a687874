//! The record of a build's inputs: everything one build reads, in the canonical form the input
//! digest hashes (`decide::digest`), and where records are kept (`target/xtask/inputs/`) so
//! that a later check can name the files and args that changed. Secret values are kept as
//! keyed hashes with this root's own key.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::base::Sha;
use crate::repo::context::{FileRecord, What};

/// Names the format of the description; a change of format changes every digest, and an image
/// labelled in another format is STALE ("another format"), never an error.
/// v2: every field length-prefixed; permission bits of files and folders.
pub const VERSION: &str = "ai-infra-inputs/v2";
/// Everything one build reads, in canonical form; kept on disk as JSON (`to_json`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// sha256 of the Dockerfile's bytes.
    pub dockerfile: String,
    pub target: Option<String>,
    /// Build args by name; values of secret-looking names are replaced by their hash.
    pub args: BTreeMap<String, String>,
    /// Shared with the context listing it came from (services can share a context).
    pub files: std::sync::Arc<Vec<FileRecord>>,
    /// Internal parent service -> its total input digest (None: not known).
    pub parents: BTreeMap<String, Option<String>>,
    /// External base image -> the ID of the local image it resolves to (None: not present).
    pub bases: BTreeMap<String, Option<String>>,
}

impl Record {
    /// The record with its format version, as kept on disk; its files as rows, modes in octal:
    /// `[path, "dir", mode]`, `[path, "file", sha256, mode]`, `[path, "link", target]`,
    /// `[path, kind]`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .files
            .iter()
            .map(|f| match &f.what {
                What::Dir { mode } => json!([f.path, "dir", format!("{mode:o}")]),
                What::File { mode, sha256 } => json!([f.path, "file", sha256.as_str(), format!("{mode:o}")]),
                What::Symlink(t) => json!([f.path, "link", t]),
                What::Special(k) => json!([f.path, k]),
            })
            .collect();
        json!({
            "version": VERSION,
            "dockerfile": self.dockerfile,
            "target": self.target,
            "args": self.args,
            "files": rows,
            "parents": self.parents,
            "bases": self.bases,
        })
    }

    /// A record kept on disk; None when it is in another format or damaged.
    pub fn from_json(v: &Value) -> Option<Record> {
        if v.get("version")?.as_str()? != VERSION {
            return None;
        }
        let text = |v: &Value| v.as_str().map(str::to_string);
        let optional = |v: &Value| if v.is_null() { Some(None) } else { text(v).map(Some) };
        fn map<T>(v: &Value, k: &str, f: impl Fn(&Value) -> Option<T>) -> Option<BTreeMap<String, T>> {
            v.get(k)?.as_object()?.iter().map(|(k, v)| Some((k.clone(), f(v)?))).collect()
        }
        let files = v
            .get("files")?
            .as_array()?
            .iter()
            .map(|r| file(&r.as_array()?.iter().map(text).collect::<Option<Vec<_>>>()?));
        Some(Record {
            dockerfile: text(v.get("dockerfile")?)?,
            target: v.get("target").map_or(Some(None), optional)?,
            args: map(v, "args", text)?,
            files: files.collect::<Option<Vec<_>>>()?.into(),
            parents: map(v, "parents", optional)?,
            bases: map(v, "bases", optional)?,
        })
    }
}

/// A file row as `to_json` writes it.
fn file(a: &[String]) -> Option<FileRecord> {
    let third = a.get(2).map(String::as_str);
    let mode = |i: usize| u32::from_str_radix(a.get(i)?, 8).ok();
    let what = match a.get(1)?.as_str() {
        "dir" => What::Dir { mode: mode(2)? },
        "file" => What::File { mode: mode(3)?, sha256: Sha::parse(third?)? },
        "link" => What::Symlink(third?.to_string()),
        other => What::Special(other.to_string()),
    };
    Some(FileRecord { path: a.first()?.clone(), what })
}

/// The arg values as recorded: secret values replaced by their hash.
pub fn recorded_args(args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    args.iter()
        .map(|(k, v)| {
            let v = if crate::repo::env::is_secret(k) {
                format!("hidden:sha256:{}", Sha::of(&Sha256::digest(v.as_bytes())))
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Where the record of a build is kept; only for a valid digest (see `load`).
fn stored_at(root: &Utf8Path, total: &str) -> Utf8PathBuf {
    crate::base::state_dir(root).join("inputs").join(format!("{}.json", total.trim_start_matches("sha256:")))
}

/// Keeps the record of a build's inputs so that later checks can say what changed. Secret
/// values are kept as keyed hashes (`as_recorded`).
pub fn save(root: &Utf8Path, total: &str, record: &Record) -> Result<()> {
    anyhow::ensure!(crate::repo::reference::valid_digest(total), "not an input digest: {total:?}");
    let text = serde_json::to_string(&as_recorded(root, record)?.to_json())?;
    crate::base::atomic::write(&stored_at(root, total), text.as_bytes())
}

/// The record as kept on disk: each secret-looking arg's value (already a sha256, which a
/// guess can be checked against) hashed again with this root's own random key, so that the
/// records still show whether a secret changed, and nothing more.
pub fn as_recorded(root: &Utf8Path, record: &Record) -> Result<Record> {
    if !record.args.keys().any(|k| crate::repo::env::is_secret(k)) {
        return Ok(record.clone());
    }
    let key = own_key(root)?;
    let mut out = record.clone();
    for (_, v) in out.args.iter_mut().filter(|(k, _)| crate::repo::env::is_secret(k)) {
        *v = format!("hidden:hmac-sha256:{}", hmac(&key, v.as_bytes()));
    }
    Ok(out)
}

/// HMAC-SHA256 (RFC 2104) with a key of at most 64 bytes.
fn hmac(key: &[u8], message: &[u8]) -> Sha {
    let (mut inner_pad, mut outer_pad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().take(64).enumerate() {
        inner_pad[i] ^= k;
        outer_pad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha::of(&Sha256::new().chain_update(outer_pad).chain_update(inner).finalize())
}

/// This root's key for secret values in the records: 32 random bytes in
/// `target/xtask/record-key`, mode 0600, made on first use. Made under a temporary name and
/// linked into place, so that builds running at once all end up with the same key.
fn own_key(root: &Utf8Path) -> Result<[u8; 32]> {
    use std::io::{Read, Write};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = crate::base::state_dir(root);
    let path = dir.join("record-key");
    let read = || -> Result<Option<[u8; 32]>> {
        match std::fs::read(&path) {
            Ok(bytes) => {
                // Only this user may read it, whatever made it otherwise.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {path} private"))?;
                Ok(bytes.try_into().ok())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {path}")),
        }
    };
    if let Some(key) = read()? {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("cannot read /dev/urandom for the record key")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    let tmp = dir.join(format!(".record-key.{}.{:?}", std::process::id(), std::thread::current().id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&tmp);
    linked.with_context(|| format!("cannot write {path}"))?;
    // A key of the wrong size (damaged) is replaced: old records then read as "changed".
    match read()? {
        Some(key) => Ok(key),
        None => {
            std::fs::remove_file(&path).with_context(|| format!("cannot replace {path}"))?;
            own_key(root)
        }
    }
}

/// The record kept for an input digest; None when there is none, or it is in another format
/// or damaged.
pub fn load(root: &Utf8Path, total: &str) -> Option<Record> {
    if !crate::repo::reference::valid_digest(total) {
        return None;
    }
    let text = std::fs::read_to_string(stored_at(root, total)).ok()?;
    Record::from_json(&serde_json::from_str(&text).ok()?)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn sample() -> Record {
        Record {
            dockerfile: "d".repeat(64),
            target: Some("app".into()),
            args: recorded_args(
                &[("PY".to_string(), "3.11".to_string()), ("DB_PASSWORD".to_string(), "hunter2".to_string())].into(),
            ),
            files: vec![
                FileRecord {
                    path: "a".into(),
                    what: What::File { mode: 0o644, sha256: Sha::parse(&"1".repeat(64)).unwrap() },
                },
                FileRecord { path: "b".into(), what: What::Symlink("a".into()) },
                FileRecord { path: "d".into(), what: What::Dir { mode: 0o755 } },
            ]
            .into(),
            parents: [("base".to_string(), Some("sha256:p".to_string()))].into(),
            bases: [("python:3.11".to_string(), Some("sha256:b".to_string()))].into(),
        }
    }

    #[test]
    fn records_round_trip_without_secrets() {
        assert_eq!(Record::from_json(&sample().to_json()), Some(sample()));
        assert!(!sample().to_json().to_string().contains("hunter2"));
        // The format on disk, as records written by earlier versions of this tool have it.
        let mut r = sample();
        r.target = None;
        let text = r#"{"args":{"DB_PASSWORD":"hidden:sha256:f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7","PY":"3.11"},"bases":{"python:3.11":"sha256:b"},"dockerfile":"DF","files":[["a","file","1111111111111111111111111111111111111111111111111111111111111111","644"],["b","link","a"],["d","dir","755"]],"parents":{"base":"sha256:p"},"target":null,"version":"ai-infra-inputs/v2"}"#;
        let text = text.replace("DF", &"d".repeat(64));
        assert_eq!(r.to_json().to_string(), text);
        let mut v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(Record::from_json(&v).as_ref(), Some(&r));
        v.as_object_mut().unwrap().remove("target");
        assert_eq!(Record::from_json(&v).as_ref(), Some(&r), "target may be absent");
        for (k, bad) in [("files", json!([["a", "file", "x", "644"]])), ("args", json!({"A": 1})), ("bases", json!([]))]
        {
            let mut v = v.clone();
            v[k] = bad;
            assert_eq!(Record::from_json(&v), None, "{k}");
        }
        assert_eq!(load("/nonexistent".into(), "sha256:../../x"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(mac.as_str(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn records_keep_a_keyed_hash_of_secrets() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testutil::TempDir::new("record-key");
        let root = dir.path();
        let r = sample();
        let total = r.digest().total.unwrap();
        save(root, &total, &r).unwrap();
        let text = std::fs::read_to_string(stored_at(root, &total)).unwrap();
        let plain = &r.args["DB_PASSWORD"];
        assert!(plain.starts_with("hidden:sha256:"), "{plain}");
        assert!(!text.contains(plain.trim_start_matches("hidden:sha256:")), "no plain hash: {text}");
        assert!(text.contains("hidden:hmac-sha256:") && !text.contains("hunter2"), "{text}");
        let key = crate::base::state_dir(root).join("record-key");
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (32, 0o600));
        // The same key next time: an unchanged secret reads as unchanged, a changed one changed.
        let old = load(root, &total).unwrap();
        assert!(crate::decide::digest::explain(
            &old,
            &as_recorded(root, &r).unwrap(),
            &crate::decide::digest::Category::ALL,
            &|_| { None }
        )
        .is_empty());
        let mut new = sample();
        new.args = recorded_args(
            &[("PY".to_string(), "3.11".to_string()), ("DB_PASSWORD".to_string(), "x".to_string())].into(),
        );
        let text = crate::decide::digest::explain(
            &old,
            &as_recorded(root, &new).unwrap(),
            &crate::decide::digest::Category::ALL,
            &|_| None,
        )
        .join("; ");
        assert_eq!(text, "build arg DB_PASSWORD changed: (hidden) -> (hidden)");
        // Another root, another key: the same secret hashes differently.
        let other = crate::testutil::TempDir::new("record-key-2");
        assert_ne!(as_recorded(other.path(), &r).unwrap().args, as_recorded(root, &r).unwrap().args);
        // Builds saving at once agree on one key.
        let fresh = crate::testutil::TempDir::new("record-key-3");
        let keys = crate::repo::context::parallel(8, |_| own_key(fresh.path()).unwrap());
        assert!(keys.iter().all(|k| *k == keys[0]));
    }
}
