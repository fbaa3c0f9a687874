//! The Docker engine's HTTP API, spoken directly where the engine is reached through a unix
//! socket or plain `tcp://`: its version and platform, and the images asked for, either in one
//! listing (completed per image ID with what a listing lacks: platform, layers, creation time,
//! remembered, since an image ID is the digest of the very configuration that holds those
//! facts) or by one inspection per name, whichever earlier runs measured cheaper on this
//! engine (see `Costs`). Where only the docker CLI knows how to reach the engine (`ssh://`,
//! contexts, TLS settings, Podman), or with AI_INFRA_ENGINE_CLIENT=cli, the `docker` layer
//! uses the CLI instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{json, Map, Value};

use crate::world::http::{self, Address};

/// How long one API request may take: listing or inspecting images on a busy engine.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// At most this many inspections at once.
const CONCURRENT: usize = 8;

/// How long a measured listing cost is trusted: an engine that dropped images lists faster
/// again, which only a listing shows.
const LISTING_TRUSTED_SECS: u64 = 600;

/// What asking this engine for images costs, in seconds of wall time as earlier runs measured
/// them (kept in `engine-costs.json`). A listing's cost grows with every image the engine
/// holds, named or not: Docker 20.10 reads and checks each image's configuration for every
/// listing (0.2 ms each: 0.1 s at 500 images). An inspection costs about the same whatever
/// the engine holds (1.5 ms). So a project's few names are inspected one by one on an engine
/// full of images, and listed on a small one. Both ways give what `docker image inspect` gives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Costs {
    /// One listing.
    pub listing: Option<f64>,
    /// When that listing ran, in seconds since the epoch.
    pub listed_at: Option<u64>,
    /// One inspection: a batch's time times the inspections that ran at once (at most the
    /// cores: beyond them, the engine queues), divided by the batch's size.
    pub inspection: Option<f64>,
}

impl Costs {
    /// Whether `n` inspections are expected to cost less than one listing, with a margin:
    /// only once a listing was measured, and only while that measure is recent. An inspection
    /// not yet measured is taken to cost `ASSUMED_INSPECTION`.
    pub fn by_name(&self, n: usize, now: u64) -> bool {
        match (self.listing, self.listed_at) {
            // A measure from the future (the clock went back) is not trusted either.
            (Some(listing), Some(at)) if at <= now && now - at < LISTING_TRUSTED_SECS => {
                (n as f64) * self.inspection.unwrap_or(ASSUMED_INSPECTION) < 0.8 * listing
            }
            _ => false,
        }
    }

    fn from_json(v: &Value) -> Costs {
        Costs {
            listing: v.get("listing").and_then(Value::as_f64),
            listed_at: v.get("listed_at").and_then(Value::as_u64),
            inspection: v.get("inspection").and_then(Value::as_f64),
        }
    }
}

/// One inspection's cost before any was measured: Docker 20.10 spends 1.5 ms of CPU on each.
const ASSUMED_INSPECTION: f64 = 0.002;

/// What one of `count` inspections started together at `started` cost (see `Costs`).
fn per_inspection(started: Instant, count: usize) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let at_once = count.min(CONCURRENT).min(cores).max(1);
    started.elapsed().as_secs_f64() * at_once as f64 / count.max(1) as f64
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

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
    /// The file that keeps what asking costs (`Costs`), when there is a state folder.
    costs_file: Option<Utf8PathBuf>,
    costs: Mutex<Option<Costs>>,
}

impl Api {
    pub fn new(address: Address, shown: &str, state: Option<&Utf8Path>) -> Api {
        Api {
            address,
            shown: shown.to_string(),
            cache_file: state.map(|s| s.join("engine-images.json")),
            cache: Mutex::new(None),
            costs_file: state.map(|s| s.join("engine-costs.json")),
            costs: Mutex::new(None),
        }
    }

    /// `GET path`; a JSON answer, or None for an HTTP status in `absent`. Errors say what to do.
    fn get(&self, what: &str, path: &str, absent: &[u16]) -> Result<Option<Value>> {
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
        if absent.contains(&r.status) {
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
        let v = self.get("asking the engine's version", "/version", &[])?.unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok((field("Version"), field("Os"), field("Arch")))
    }

    /// `GET /images/json`, every image or those matching the reference patterns.
    pub fn list(&self, patterns: Option<&[String]>) -> Result<Vec<Value>> {
        let path = match patterns {
            Some(p) => format!("/images/json?filters={}", http::query_escape(&json!({ "reference": p }).to_string())),
            None => "/images/json".to_string(),
        };
        match self.get("listing images", &path, &[])? {
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

    /// The images these names name, each as `docker image inspect` describes it (where
    /// listed, with only the names asked in RepoTags and RepoDigests), asked the way that
    /// costs this engine less (`Costs`).
    pub fn named(&self, names: &[String]) -> Result<Vec<Value>> {
        let literal = literal_patterns(names);
        if literal.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_secs();
        if !self.costs().by_name(literal.len(), now) {
            return self.images(&literal);
        }
        let paths: Vec<String> = literal.iter().map(|n| format!("/images/{}/json", path_escape(n))).collect();
        // 400: a name the engine cannot parse names no image, as `docker image inspect` says.
        let found = self.inspections(&paths, &[400, 404], |i| format!("inspecting image {}", literal[i]))?;
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// The images whose names match any of `patterns` (the engine's reference filter: exact
    /// names, or `*` within one path component), each as `docker image inspect` describes it,
    /// with only the matching names in RepoTags and RepoDigests. One listing; an image not
    /// seen before is inspected by ID, several at once, and remembered.
    pub fn images(&self, patterns: &[String]) -> Result<Vec<Value>> {
        if patterns.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let listed = self.list(Some(patterns))?;
        let listing = started.elapsed().as_secs_f64();
        self.measured(|c| {
            c.listing = Some(listing);
            c.listed_at = Some(now_secs());
        });
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

    /// What asking costs, as last measured on this engine (nothing measured: list).
    fn costs(&self) -> Costs {
        *self.costs.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| self.load_costs())
    }

    fn load_costs(&self) -> Costs {
        let Some(file) = &self.costs_file else { return Costs::default() };
        let v: Value = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        // Another engine at the same path holds other images.
        if v.get("engine").and_then(Value::as_str) != Some(self.shown.as_str()) {
            return Costs::default();
        }
        Costs::from_json(&v)
    }

    /// Keeps a new measure, changed in place under one lock (concurrent inspections lose no
    /// measure); the file is written only where the choice could change (a cost moved by a
    /// quarter, or the listing's measure is half its trust old). A file that cannot be
    /// written costs only time.
    fn measured(&self, update: impl FnOnce(&mut Costs)) {
        let (old, new) = {
            let mut costs = self.costs.lock().unwrap_or_else(|e| e.into_inner());
            let costs = costs.get_or_insert_with(|| self.load_costs());
            let old = *costs;
            update(costs);
            (old, *costs)
        };
        let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 0.25 * a.max(b),
            (a, b) => a.is_none() && b.is_none(),
        };
        let recent = match (old.listed_at, new.listed_at) {
            (Some(a), Some(b)) => b >= a && b - a < LISTING_TRUSTED_SECS / 2,
            (a, b) => a == b,
        };
        if near(old.listing, new.listing) && near(old.inspection, new.inspection) && recent {
            return;
        }
        let Some(file) = &self.costs_file else { return };
        let text = json!({
            "engine": self.shown,
            "listing": new.listing,
            "listed_at": new.listed_at,
            "inspection": new.inspection,
        });
        let _ = crate::base::atomic::write(file, text.to_string().as_bytes());
    }

    /// `each` for image inspections, whose cost it keeps for `Costs`.
    fn inspections(
        &self,
        paths: &[String],
        absent: &[u16],
        what: impl Fn(usize) -> String + Sync,
    ) -> Result<Vec<(usize, Value)>> {
        let started = Instant::now();
        let found = self.each(paths, absent, what)?;
        let each = per_inspection(started, paths.len());
        self.measured(|c| c.inspection = Some(each));
        Ok(found)
    }

    /// `GET` each path, `CONCURRENT` at a time: each answer with its index, in order; a path
    /// answered with a status in `absent` (an image gone or never there) is left out.
    fn each(
        &self,
        paths: &[String],
        absent: &[u16],
        what: impl Fn(usize) -> String + Sync,
    ) -> Result<Vec<(usize, Value)>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { return got };
                got.push(self.get(&what(i), path, absent).map(|v| v.map(|v| (i, v))));
            }
        };
        let mut out = std::thread::scope(|s| {
            let workers: Vec<_> = (0..CONCURRENT.min(paths.len())).map(|_| s.spawn(fetch)).collect();
            let mut out = Vec::new();
            for w in workers {
                for r in w.join().map_err(|_| anyhow::anyhow!("an engine request panicked"))? {
                    out.extend(r?);
                }
            }
            Ok::<_, anyhow::Error>(out)
        })?;
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// `GET /images/{id}/json` for each ID, `CONCURRENT` at a time; an image gone since the
    /// listing is left out. What each inspection cost is kept for `Costs`.
    fn inspect_all(&self, ids: &[&String]) -> Result<Vec<(String, Value)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let paths: Vec<String> = ids.iter().map(|id| format!("/images/{id}/json")).collect();
        let got = self.inspections(&paths, &[404], |i| format!("inspecting image {}", ids[i]))?;
        Ok(got.into_iter().map(|(i, v)| (ids[i].clone(), remembered(&v))).collect())
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
        out.insert("Config".into(), json!({ "Labels": labels, "OnBuild": v.pointer("/Config/OnBuild") }));
    }
    if let Some(layers) = v.pointer("/RootFS/Layers") {
        out.insert("RootFS".into(), json!({ "Layers": layers }));
    }
    Value::Object(out)
}

/// A name as a path segment the engine's router takes whole: reference characters as they are
/// (the docker CLI sends names so), anything else escaped.
fn path_escape(name: &str) -> String {
    http::escape(name, b"-._~:/@")
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
        .map(|n| crate::repo::reference::docker_familiar(n))
        .filter(|n| !n.is_empty() && !n.contains(['*', '?', '[', '\\']))
        .map(|n| (n, ()))
        .collect();
    set.into_keys().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_inspected_one_by_one_only_where_a_listing_was_measured_dearer() {
        let now = 1_000_000;
        let measured = |listing: f64, age: u64, inspection: Option<f64>| Costs {
            listing: Some(listing),
            listed_at: Some(now - age),
            inspection,
        };
        // Nothing measured yet: list.
        assert!(!Costs::default().by_name(20, now));
        // 500 images make a listing cost 0.1 s; 20 inspections at 1.5 ms cost 0.03 s.
        assert!(measured(0.1, 0, Some(0.0015)).by_name(20, now));
        // 40 images: 11 ms; the inspections would cost more.
        assert!(!measured(0.011, 0, Some(0.0015)).by_name(20, now));
        // Within the margin: list (a listing also serves other questions).
        assert!(!measured(0.03, 0, Some(0.0015)).by_name(20, now));
        // No inspection measured yet: 2 ms is assumed.
        assert!(measured(0.1, 0, None).by_name(20, now));
        assert!(!measured(0.1, 0, None).by_name(100, now));
        // A listing measured too long ago may have become cheap: list again, to measure.
        assert!(!measured(0.1, LISTING_TRUSTED_SECS, Some(0.0015)).by_name(20, now));
        assert!(measured(0.1, LISTING_TRUSTED_SECS - 1, Some(0.0015)).by_name(20, now));
        let future = Costs { listing: Some(0.1), listed_at: Some(now + 60), inspection: Some(0.0015) };
        assert!(!future.by_name(20, now), "a measure from the future is measured again");
    }

    #[test]
    fn names_go_into_the_path_as_the_cli_sends_them() {
        assert_eq!(path_escape("127.0.0.1:5000/ai-infra-a:v1"), "127.0.0.1:5000/ai-infra-a:v1");
        assert_eq!(path_escape("alpine@sha256:0123abcd"), "alpine@sha256:0123abcd");
        assert_eq!(path_escape("a b?c#d%"), "a%20b%3Fc%23d%25");
    }

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
