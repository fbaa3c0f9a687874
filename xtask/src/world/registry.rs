//! The registry as shared truth: does a tag exist, and which manifest does it name? Plain-HTTP
//! registries (loopback, or named in AI_INFRA_INSECURE_REGISTRIES) are asked directly with
//! `HEAD /v2/<name>/manifests/<tag>`; others through `docker manifest inspect`, so that TLS and
//! credentials stay with the docker CLI's own login. Every lookup is bounded in time.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::world::docker::Docker;
use crate::world::http::{self, Response};

/// How long one lookup may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The tag under which an image is also pushed: its input digest, so that any machine can ask
/// "is the build of exactly these inputs there?".
pub fn content_tag(total: &str) -> String {
    format!("inputs-{}", total.trim_start_matches("sha256:"))
}

/// What a registry says of one tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The tag exists; the manifest digest when the registry names it.
    Found(Option<String>),
    Absent,
    /// The registry could not be asked, with what to do.
    Error(String),
}

impl Lookup {
    /// A tag that exists, with its manifest digest only when it is one (`sha256:` and 64 hex
    /// digits): anything else the registry says is no evidence of which build it is.
    pub fn found(digest: Option<String>) -> Lookup {
        Lookup::Found(digest.filter(|d| crate::repo::reference::valid_digest(d)))
    }
}

/// Asks for `REGISTRY/repo:tag`.
pub fn lookup(docker: &Docker, registry: &str, repo: &str, tag: &str) -> Lookup {
    if crate::repo::reference::plain_http(registry) {
        http_lookup(registry, repo, tag)
    } else {
        cli_lookup(docker, &format!("{registry}/{repo}:{tag}"))
    }
}

fn http_lookup(registry: &str, repo: &str, tag: &str) -> Lookup {
    let (host, prefix) = match registry.split_once('/') {
        Some((h, p)) => (h, format!("{p}/")),
        None => (registry, String::new()),
    };
    let path = format!("/v2/{prefix}{repo}/manifests/{tag}");
    match head(host, &path) {
        Err(e) => Lookup::Error(format!("registry {registry} does not answer ({e}); check that it runs and the address is right")),
        Ok(r) if r.header("docker-distribution-api-version").is_none() => Lookup::Error(format!(
            "{registry} answers HTTP {} but is not a Docker registry (no Docker-Distribution-Api-Version header); check the address",
            r.status
        )),
        Ok(r) => match r.status {
            200 => Lookup::found(r.header("docker-content-digest").map(str::to_string)),
            404 => Lookup::Absent,
            401 | 403 => Lookup::Error(format!("{registry} needs a login: run `docker login {registry}`")),
            s => Lookup::Error(format!("{registry} answered HTTP {s} for {repo}:{tag}")),
        },
    }
}

/// One `HEAD` request over HTTP/1.1, bounded by the lookup timeout.
pub fn head(host: &str, path: &str) -> Result<Response, String> {
    let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
    http::head(host, path, &[("Accept", accept)], TIMEOUT)
}

/// `docker manifest inspect -v REF`, ended after the timeout. The CLI's registry client knows
/// TLS and the user's login.
fn cli_lookup(docker: &Docker, reference: &str) -> Lookup {
    let out = match docker.manifest_inspect(reference, TIMEOUT) {
        Ok(Some(out)) => out,
        Ok(None) => return Lookup::Error(format!("no answer for {reference} within {} s", TIMEOUT.as_secs())),
        Err(e) => return Lookup::Error(format!("{e:#}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let digest = v.pointer("/Descriptor/digest").and_then(|d| d.as_str()).map(str::to_string);
        return Lookup::found(digest);
    }
    if stderr.contains("no such manifest") || stderr.contains("not found") {
        Lookup::Absent
    } else if stderr.contains("unauthorized") || stderr.contains("denied") {
        let registry = crate::repo::reference::host(reference);
        Lookup::Error(format!("{registry} needs a login: run `docker login {registry}`"))
    } else {
        Lookup::Error(format!("docker manifest inspect {reference}: {}", stderr.lines().last().unwrap_or("failed")))
    }
}

/// Many lookups at once (at most `LOOKUPS_AT_ONCE`), each bounded by the timeout; results in
/// input order. Once the registry has not answered one, the lookups still waiting get that
/// answer instead of waiting out the timeout each.
pub fn lookup_all(docker: &Docker, registry: &str, refs: &[(String, String)]) -> Vec<Lookup> {
    let silent = std::sync::OnceLock::new();
    crate::repo::context::parallel_at_most(refs.len(), LOOKUPS_AT_ONCE, |i| {
        if let Some(e) = silent.get() {
            return Lookup::Error(format!("not asked, as an earlier lookup got: {e}"));
        }
        let (repo, tag) = &refs[i];
        let found = lookup(docker, registry, repo, tag);
        if let Lookup::Error(e) = &found {
            // Only a registry that is not there or keeps silent; one bad answer is that
            // lookup's own.
            let silent_or_down = ["no answer within", "timed out", "Connection refused", "no answer for"];
            if silent_or_down.iter().any(|s| e.contains(s)) {
                let _ = silent.set(e.clone());
            }
        }
        found
    })
}

/// How many registry lookups run at once: enough to overlap round trips to a distant
/// registry, few enough that a large project neither floods it (registries limit requests
/// per client) nor starts a hundred `docker manifest inspect` processes at once.
pub const LOOKUPS_AT_ONCE: usize = 32;

/// The answers one run has had from its registry, by (repository, tag). The registry changes
/// only through the run's own pushes, which come last: what the plan asked, the push does not
/// ask again. An error is not kept (it is asked again).
#[derive(Default)]
pub struct Answers(std::sync::Mutex<BTreeMap<(String, String), Lookup>>);

impl Answers {
    /// Every ref's answer, in input order: those had before, the others asked at once.
    pub fn lookup_all(&self, docker: &Docker, registry: &str, refs: &[(String, String)]) -> Vec<Lookup> {
        self.lookup_with(refs, |missing| lookup_all(docker, registry, missing))
    }

    fn lookup_with(
        &self,
        refs: &[(String, String)],
        ask: impl FnOnce(&[(String, String)]) -> Vec<Lookup>,
    ) -> Vec<Lookup> {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<(String, String)> = refs.iter().filter(|r| !known.contains_key(*r)).cloned().collect();
        missing.sort();
        missing.dedup();
        let asked: BTreeMap<(String, String), Lookup> = missing.iter().cloned().zip(ask(&missing)).collect();
        let answers =
            refs.iter().map(|r| known.get(r).or_else(|| asked.get(r)).cloned().unwrap_or(Lookup::Absent)).collect();
        known.extend(asked.into_iter().filter(|(_, a)| !matches!(a, Lookup::Error(_))));
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    #[test]
    fn content_tags_follow_the_tag_grammar() {
        let t = content_tag(&format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(t.len(), 71);
        assert!(crate::repo::reference::validate_tag(&t).is_ok());
    }

    /// A server on loopback that answers every request with `answer`, or never answers.
    fn server(answer: Option<&'static str>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().take(4) {
                let Ok(mut s) = s else { continue };
                match answer {
                    Some(a) => {
                        // Read the whole request, as a real server would, then answer and close.
                        let (mut seen, mut buf) = (Vec::new(), [0u8; 1024]);
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = s.write_all(a.as_bytes());
                    }
                    None => held.push(s),
                }
            }
            std::thread::sleep(Duration::from_secs(10));
        });
        addr
    }

    #[test]
    fn an_answer_before_the_request_is_read_still_counts() {
        for _ in 0..200 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n");
            });
            let Lookup::Error(e) = http_lookup(&addr, "ai-infra-x", "v1") else { panic!() };
            assert!(e.contains("is not a Docker registry"), "{e}");
        }
    }

    #[test]
    fn a_digest_that_is_not_one_is_unknown() {
        let bad = server(Some("HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\nDocker-Content-Digest: sha256:../x\r\n\r\n"));
        assert_eq!(http_lookup(&bad, "ai-infra-x", "v1"), Lookup::Found(None));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Lookup::found(Some(digest.clone())), Lookup::Found(Some(digest)));
    }

    #[test]
    fn a_silent_registry_costs_one_timeout_however_many_lookups() {
        // 40 lookups, 32 at a time: without the shared answer they would wait two rounds.
        let silent = server(None);
        let docker = Docker::with_host(Some("unix:///nonexistent"));
        let refs: Vec<(String, String)> = (0..40).map(|i| (format!("ai-infra-s{i}"), "v1".to_string())).collect();
        let t = Instant::now();
        let found = lookup_all(&docker, &silent, &refs);
        assert!(t.elapsed() < 2 * TIMEOUT, "one timeout, not three: {:?}", t.elapsed());
        assert_eq!(found.len(), 40);
        assert!(found.iter().all(|l| matches!(l, Lookup::Error(e) if e.contains("does not answer"))), "{found:?}");
        let copied = found.iter().filter(|l| matches!(l, Lookup::Error(e) if e.starts_with("not asked"))).count();
        assert!(copied >= 40 - LOOKUPS_AT_ONCE, "{found:?}");
    }

    #[test]
    fn at_most_so_many_at_once() {
        let (now, most) = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0));
        let out = crate::repo::context::parallel_at_most(64, LOOKUPS_AT_ONCE, |i| {
            let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            most.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            i
        });
        assert_eq!(out, (0..64).collect::<Vec<_>>());
        let most = most.into_inner();
        assert!(most <= LOOKUPS_AT_ONCE && most > 1, "{most}");
    }

    #[test]
    fn servers_that_are_not_registries() {
        let html = server(Some("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html></html>"));
        let Lookup::Error(e) = http_lookup(&html, "ai-infra-x", "v1") else { panic!() };
        assert!(e.contains("is not a Docker registry"), "{e}");
        let auth = server(Some("HTTP/1.1 401 Unauthorized\r\nDocker-Distribution-Api-Version: registry/2.0\r\nWWW-Authenticate: Bearer realm=\"x\"\r\n\r\n"));
        let Lookup::Error(e) = http_lookup(&auth, "ai-infra-x", "v1") else { panic!() };
        assert!(e.contains(&format!("run `docker login {auth}`")), "{e}");
        let silent = server(None);
        let t = Instant::now();
        let Lookup::Error(e) = http_lookup(&silent, "ai-infra-x", "v1") else { panic!() };
        assert!(t.elapsed() < TIMEOUT + Duration::from_secs(1), "bounded in time");
        assert!(e.contains("does not answer"), "{e}");
    }

    #[test]
    fn a_run_asks_the_registry_once_per_tag() {
        let answers = Answers::default();
        let r = |repo: &str, tag: &str| (repo.to_string(), tag.to_string());
        let asked = std::cell::RefCell::new(Vec::new());
        let ask = |refs: &[(String, String)]| {
            asked.borrow_mut().extend(refs.iter().cloned());
            refs.iter()
                .map(|(repo, _)| if repo == "down" { Lookup::Error("no".into()) } else { Lookup::Absent })
                .collect()
        };
        let first = answers.lookup_with(&[r("a", "v1"), r("down", "v1"), r("a", "v1")], ask);
        assert_eq!(first, [Lookup::Absent, Lookup::Error("no".into()), Lookup::Absent]);
        assert_eq!(*asked.borrow(), [r("a", "v1"), r("down", "v1")], "each ref asked once");
        asked.borrow_mut().clear();
        let again = answers.lookup_with(&[r("down", "v1"), r("a", "v1"), r("a", "v2")], ask);
        assert_eq!(again, [Lookup::Error("no".into()), Lookup::Absent, Lookup::Absent]);
        assert_eq!(*asked.borrow(), [r("a", "v2"), r("down", "v1")], "an error is asked again, an answer never");
    }
}
