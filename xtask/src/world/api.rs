//! The Docker engine's HTTP API, spoken directly where the engine is reached through a unix
//! socket or plain `tcp://`: its version and platform, the images asked for in one listing,
//! and what the listing lacks (platform, layers, creation time) per image ID, remembered,
//! since an image ID is the digest of the very configuration that holds those facts. Where
//! only the docker CLI knows how to reach the engine (`ssh://`, contexts, TLS settings,
//! Podman), or with AI_INFRA_ENGINE_CLIENT=cli, the `docker` layer uses the CLI instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{json, Map, Value};

use crate::world::http::{self, Address};

/// How long one API request may take: listing or inspecting images on a busy engine.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// At most this many inspections at once.
const CONCURRENT: usize = 8;

/// The default engine address of the docker CLI.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where to speak the API for the engine at `host` (None: the CLI's default), or None where
/// the CLI must be used. `var` reads an environment variable; `context` is the docker CLI's
/// current context from its config file, if any.
pub fn endpoint(host: Option<&str>, var: &dyn Fn(&str) -> Option<String>, context: Option<&str>) -> Option<Address> {
    let set = |k: &str| var(k).is_some_and(|v| !v.is_empty());
    if var("AI_INFRA_ENGINE_CLIENT").as_deref() == Some("cli") || var("AI_INFRA_ENGINE").as_deref() == Some("podman") {
        return None;
    }
    // TLS is the CLI's: certificates, verification, its defaults.
    if set("DOCKER_TLS_VERIFY") || set("DOCKER_CERT_PATH") || set("DOCKER_TLS") {
        return None;
    }
    let Some(host) = host else {
        // DOCKER_HOST overrides any context; without it, a context other than the default
        // may point anywhere, in ways only the CLI knows.
        let named = var("DOCKER_CONTEXT").filter(|c| !c.is_empty()).or(context.map(str::to_string));
        return named.is_none_or(|c| c == "default").then(|| Address::Unix(DEFAULT_SOCKET.into()));
    };
    if let Some(path) = host.strip_prefix("unix://") {
        return (!path.is_empty()).then(|| Address::Unix(path.into()));
    }
    let rest = host.strip_prefix("tcp://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return None;
    }
    // As the CLI does: a plain-TCP host without a port is on 2375.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !p.is_empty() && !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')));
    Some(Address::Tcp(if has_port { authority.to_string() } else { format!("{authority}:2375") }))
}

/// The docker CLI's current context, from `$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`.
pub fn current_context() -> Option<String> {
    let dir = std::env::var("DOCKER_CONFIG")
        .ok()
        .filter(|d| !d.is_empty())
        .map(Utf8PathBuf::from)
        .or_else(|| std::env::var("HOME").ok().map(|h| Utf8PathBuf::from(h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("currentContext")?.as_str().filter(|c| !c.is_empty()).map(str::to_string)
}

/// The engine's API at one address.
pub struct Api {
    address: Address,
    /// Where the engine is, for messages (as DOCKER_HOST would say it).
    shown: String,
    /// The file that remembers inspections by image ID, when there is a state folder.
    cache_file: Option<Utf8PathBuf>,
    cache: Mutex<Option<Map<String, Value>>>,
}

impl Api {
    pub fn new(address: Address, shown: &str, state: Option<&Utf8Path>) -> Api {
        Api {
            address,
            shown: shown.to_string(),
            cache_file: state.map(|s| s.join("engine-images.json")),
            cache: Mutex::new(None),
        }
    }

    /// `GET path`; a JSON answer, or None for 404 when `absent_ok`. Errors say what to do.
    fn get(&self, what: &str, path: &str, absent_ok: bool) -> Result<Option<Value>> {
        let host = &self.shown;
        let r = match http::request(&self.address, "GET", "docker", path, &[], TIMEOUT) {
            Ok(r) => r,
            Err(e) if e.starts_with("not an HTTP answer") => {
                bail!("{host} answers, but not as a Docker engine ({e}): point DOCKER_HOST at an engine, or run `cargo xtask engine up`")
            }
            Err(e) => bail!("no Docker engine answers at {host}: start one with `cargo xtask engine up`, or set DOCKER_HOST to a running engine ({e})"),
        };
        let body = String::from_utf8_lossy(&r.body);
        if r.header("api-version").is_none() {
            let line = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no API version in the answer");
            bail!("{host} answers, but not as a Docker engine (HTTP {}: {line}): point DOCKER_HOST at an engine, or run `cargo xtask engine up`", r.status);
        }
        if r.status == 404 && absent_ok {
            return Ok(None);
        }
        let v: Option<Value> = serde_json::from_str(&body).ok();
        if r.status != 200 {
            let message = v.as_ref().and_then(|v| v.get("message")?.as_str().map(str::to_string));
            bail!("{what} failed: {}", message.unwrap_or_else(|| format!("HTTP {}", r.status)));
        }
        match v {
            Some(v) => Ok(Some(v)),
            None => bail!("{what}: the engine at {host} answered something that is not JSON"),
        }
    }

    /// `GET /version`: the engine's version, OS and architecture.
    pub fn version(&self) -> Result<(String, String, String)> {
        let v = self.get("asking the engine's version", "/version", false)?.unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok((field("Version"), field("Os"), field("Arch")))
    }

    /// `GET /images/json`, every image or those matching the reference patterns.
    pub fn list(&self, patterns: Option<&[String]>) -> Result<Vec<Value>> {
        let path = match patterns {
            Some(p) => format!("/images/json?filters={}", http::query_escape(&json!({ "reference": p }).to_string())),
            None => "/images/json".to_string(),
        };
        match self.get("listing images", &path, false)? {
            Some(Value::Array(a)) => Ok(a),
            _ => bail!("listing images: the engine at {} answered something that is not a list", self.shown),
        }
    }

    /// Every tagged image: (repository:tag, short ID), as `docker image ls` shows them.
    pub fn tagged(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for s in self.list(None)? {
            let id = s.get("Id").and_then(Value::as_str).unwrap_or_default();
            let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
            for t in strings(&s, "RepoTags").into_iter().filter(|t| t != "<none>:<none>") {
                out.push((t, short.clone()));
            }
        }
        Ok(out)
    }

    /// The images whose names match any of `patterns` (the engine's reference filter: exact
    /// names, or `*` within one path component), each as `docker image inspect` describes it,
    /// with only the matching names in RepoTags and RepoDigests. One listing; an image not
    /// seen before is inspected by ID, several at once, and remembered.
    pub fn images(&self, patterns: &[String]) -> Result<Vec<Value>> {
        if patterns.is_empty() {
            return Ok(Vec::new());
        }
        let listed = self.list(Some(patterns))?;
        let ids: BTreeSet<String> =
            listed.iter().filter_map(|s| s.get("Id").and_then(Value::as_str).map(str::to_string)).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let known = cache.get_or_insert_with(|| self.load());
        let unknown: Vec<&String> = ids.iter().filter(|id| !known.contains_key(*id)).collect();
        let fetched = self.inspect_all(&unknown)?;
        let added = !fetched.is_empty();
        for (id, v) in fetched {
            known.insert(id, v);
        }
        if added {
            self.save(known, &ids);
        }
        let mut out = Vec::new();
        for s in &listed {
            let Some(mut v) = s.get("Id").and_then(Value::as_str).and_then(|id| known.get(id)).cloned() else {
                // Removed between the listing and its inspection: as good as missing.
                continue;
            };
            v["RepoTags"] =
                json!(strings(s, "RepoTags").into_iter().filter(|t| t != "<none>:<none>").collect::<Vec<_>>());
            v["RepoDigests"] =
                json!(strings(s, "RepoDigests").into_iter().filter(|t| t != "<none>@<none>").collect::<Vec<_>>());
            out.push(v);
        }
        Ok(out)
    }

    /// `GET /images/{id}/json` for each ID, `CONCURRENT` at a time; an image gone since the
    /// listing is left out.
    fn inspect_all(&self, ids: &[&String]) -> Result<Vec<(String, Value)>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let inspect = || {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return got };
                got.push(
                    self.get(&format!("inspecting image {id}"), &format!("/images/{id}/json"), true)
                        .map(|v| v.map(|v| ((*id).clone(), remembered(&v)))),
                );
            }
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..CONCURRENT.min(ids.len())).map(|_| s.spawn(inspect)).collect();
            let mut out = Vec::new();
            for w in workers {
                for r in w.join().map_err(|_| anyhow::anyhow!("an engine request panicked"))? {
                    out.extend(r?);
                }
            }
            Ok(out)
        })
    }

    fn load(&self) -> Map<String, Value> {
        let Some(file) = &self.cache_file else { return Map::new() };
        let v: Value = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        // Another engine at another address has other images.
        if v.get("engine").and_then(Value::as_str) != Some(self.shown.as_str()) {
            return Map::new();
        }
        v.get("images").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// Saves what is known, keeping it bounded: past a few thousand images, only those seen now.
    fn save(&self, known: &Map<String, Value>, seen: &BTreeSet<String>) {
        let Some(file) = &self.cache_file else { return };
        let images: Map<String, Value> = if known.len() > 4000 {
            known.iter().filter(|(id, _)| seen.contains(*id)).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            known.clone()
        };
        let text = json!({ "engine": self.shown, "images": images }).to_string();
        // A cache that cannot be written costs only time.
        if let Some(parent) = file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = crate::base::atomic::write(file, text.as_bytes());
    }
}

/// The facts of an inspection that an image ID fixes (they are in the configuration whose
/// digest the ID is), as the same JSON shape.
fn remembered(v: &Value) -> Value {
    let mut out = Map::new();
    for k in ["Id", "Created", "Size", "Os", "Architecture", "Variant"] {
        if let Some(x) = v.get(k) {
            out.insert(k.to_string(), x.clone());
        }
    }
    if let Some(labels) = v.pointer("/Config/Labels") {
        out.insert("Config".into(), json!({ "Labels": labels }));
    }
    if let Some(layers) = v.pointer("/RootFS/Layers") {
        out.insert("RootFS".into(), json!({ "Layers": layers }));
    }
    Value::Object(out)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
}

/// Reference patterns for the engine's filter that select exactly these names (a pattern is
/// matched against an image's familiar names). Names the filter cannot take literally are
/// left out: no image is found under them, as the CLI finds none under an invalid name.
pub fn literal_patterns(names: &[String]) -> Vec<String> {
    let set: BTreeMap<&str, ()> = names
        .iter()
        .map(|n| crate::repo::reference::familiar(n))
        .filter(|n| !n.is_empty() && !n.contains(['*', '?', '[', '\\']))
        .map(|n| (n, ()))
        .collect();
    set.into_keys().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn where_the_api_is_spoken() {
        let none = env(&[]);
        assert_eq!(endpoint(Some("unix:///tmp/d.sock"), &none, None), Some(Address::Unix("/tmp/d.sock".into())));
        assert_eq!(endpoint(None, &none, None), Some(Address::Unix(DEFAULT_SOCKET.into())));
        assert_eq!(endpoint(None, &none, Some("default")), Some(Address::Unix(DEFAULT_SOCKET.into())));
        assert_eq!(endpoint(Some("tcp://127.0.0.1:2375"), &none, None), Some(Address::Tcp("127.0.0.1:2375".into())));
        assert_eq!(endpoint(Some("tcp://localhost"), &none, None), Some(Address::Tcp("localhost:2375".into())));
        assert_eq!(endpoint(Some("tcp://[::1]:2376/"), &none, None), Some(Address::Tcp("[::1]:2376".into())));
        assert_eq!(endpoint(Some("tcp://[::1]"), &none, None), Some(Address::Tcp("[::1]:2375".into())));
        // The CLI's own ways.
        assert_eq!(endpoint(Some("ssh://me@host"), &none, None), None);
        assert_eq!(endpoint(Some("unix://"), &none, None), None);
        assert_eq!(endpoint(Some("tcp://h:1/path"), &none, None), None);
        assert_eq!(endpoint(None, &none, Some("remote")), None);
        assert_eq!(endpoint(None, &env(&[("DOCKER_CONTEXT", "remote")]), None), None);
        // DOCKER_HOST wins over a context, as in the CLI.
        assert!(endpoint(Some("unix:///s"), &env(&[("DOCKER_CONTEXT", "remote")]), Some("remote")).is_some());
        for tls in ["DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS"] {
            assert_eq!(endpoint(Some("tcp://h:2376"), &env(&[(tls, "1")]), None), None, "{tls}");
        }
        assert!(endpoint(Some("tcp://h:2375"), &env(&[("DOCKER_TLS_VERIFY", "")]), None).is_some());
        assert_eq!(endpoint(Some("unix:///s"), &env(&[("AI_INFRA_ENGINE_CLIENT", "cli")]), None), None);
        assert_eq!(endpoint(Some("unix:///s"), &env(&[("AI_INFRA_ENGINE", "podman")]), None), None);
    }

    #[test]
    fn patterns_are_familiar_literal_names() {
        let names: Vec<String> =
            ["docker.io/library/python:3.11", "ai-infra-a:t", "ai-infra-a:t", "bad[", "127.0.0.1:5000/ai-infra-a:t"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(literal_patterns(&names), vec!["127.0.0.1:5000/ai-infra-a:t", "ai-infra-a:t", "python:3.11"]);
    }

    #[test]
    fn only_what_an_id_fixes_is_remembered() {
        let v: Value = serde_json::from_str(
            r#"{"Id":"sha256:1","RepoTags":["a:b"],"Created":"c","Size":5,"Os":"linux","Architecture":"amd64","Config":{"Labels":{"k":"v"},"Env":["X=1"]},"RootFS":{"Type":"layers","Layers":["l"]}}"#,
        )
        .unwrap();
        let r = remembered(&v);
        assert_eq!(r.get("RepoTags"), None);
        assert_eq!(r.pointer("/Config/Labels/k"), Some(&json!("v")));
        assert_eq!(r.pointer("/Config/Env"), None);
        let (a, b) = (crate::world::docker::Image::from_json(&v), crate::world::docker::Image::from_json(&r));
        assert_eq!(
            (a.id, a.created, a.size, a.os, a.arch, a.labels, a.layers),
            (b.id, b.created, b.size, b.os, b.arch, b.labels, b.layers)
        );
    }
}
