//! Image reference grammar (distribution/reference): validation of TAG and REGISTRY arguments
//! and the names the tool gives its images.

use crate::base::UsageError;

/// Whether a digest as recorded is `sha256:` and 64 lowercase hex digits: a label comes from
/// an image (maybe pulled) and names a file, so nothing else is used.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").and_then(crate::base::Sha::parse).is_some()
}

/// The tag used when neither the command line nor `.env` names one.
pub const DEFAULT_TAG: &str = "v0.3.6-dev";

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "invalid tag {tag:?}: {why}; a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    };
    if tag.is_empty() {
        return Err(bad("it is empty"));
    }
    if tag.len() > 128 {
        return Err(bad(&format!("it has {} characters", tag.len())));
    }
    let first = tag.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(bad(&format!("it starts with {:?}", first as char)));
    }
    if let Some(c) = tag.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
        return Err(bad(&format!("it contains {c:?}")));
    }
    Ok(())
}

/// Checks a registry prefix: `host[:port][/path]`, where the host must look like one (it
/// contains a dot or a port, or is `localhost`) so that it is never read as a Docker Hub user.
pub fn validate_registry(registry: &str) -> Result<(), UsageError> {
    let bad = |why: String| {
        UsageError(format!(
            "invalid registry {registry:?}: {why}; write host[:port][/path], e.g. registry.example.com/team or 127.0.0.1:5000"
        ))
    };
    if registry.contains("://") {
        return Err(bad("it has a scheme; give the host without http:// or https://".into()));
    }
    let (host, path) = match registry.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    if host.is_empty() {
        return Err(bad("it has no host".into()));
    }
    let (name, port) = split_port(host).map_err(&bad)?;
    if name.is_empty() {
        return Err(bad("it has no host".into()));
    }
    if !(name.contains('.') || port.is_some() || name == "localhost" || name.starts_with('[')) {
        return Err(bad(format!("{host:?} is not a host name (no '.', no port, not localhost)")));
    }
    let ipv6 = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
    if !ipv6 && !name.split('.').all(valid_domain_label) {
        return Err(bad(format!("{name:?} is not a valid host name")));
    }
    if let Some(path) = path {
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(bad(format!(
                    "path component {component:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
                )));
            }
        }
    }
    Ok(())
}

fn split_port(host: &str) -> Result<(&str, Option<&str>), String> {
    let colon = if host.starts_with('[') {
        host.find(']').and_then(|i| host[i..].find(':').map(|j| i + j))
    } else {
        host.rfind(':')
    };
    match colon {
        None => Ok((host, None)),
        Some(i) => {
            let port = &host[i + 1..];
            // Port 0 names no port anyone can listen on.
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..)) {
                return Err(format!("port {port:?} is not a number from 1 to 65535"));
            }
            Ok((&host[..i], Some(port)))
        }
    }
}

fn valid_domain_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn valid_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The start of every image name this tool gives a service: `ai-infra-<service>`.
pub const PREFIX: &str = "ai-infra-";

/// An image reference taken apart: `[domain/]path[:tag][@digest]`. The one place where a
/// reference is split; whether its parts are well formed is `is_valid_reference`'s question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The registry host (with its port), when the first component names one: it holds a `.`
    /// or a `:`, or is `localhost`, as Docker decides.
    pub domain: Option<&'a str>,
    /// The repository as written, domain included, without tag or digest.
    pub repository: &'a str,
    /// The repository without its domain.
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> Reference<'a> {
    pub fn parse(image: &'a str) -> Reference<'a> {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let (domain, path) = match repository.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (Some(first), path)
            }
            _ => (None, repository),
        };
        Reference { domain, repository, path, tag, digest }
    }

    /// The last component of the path: `ai-infra-base` in `r.io/team/ai-infra-base:v1`.
    pub fn name(&self) -> &'a str {
        self.path.rsplit('/').next().unwrap_or(self.path)
    }

    /// The service an image name of this tool names (`[REGISTRY/]ai-infra-<service>`).
    pub fn service(&self) -> Option<&'a str> {
        self.name().strip_prefix(PREFIX)
    }
}

/// The host (with its port) of a REGISTRY argument, or of a reference that starts with one: its
/// first component.
pub fn host(registry: &str) -> &str {
    registry.split('/').next().unwrap_or(registry)
}

/// The familiar form of a reference, as RepoTags shows it: no `docker.io/library/`.
pub fn familiar(name: &str) -> &str {
    docker_familiar(name.strip_prefix("localhost/").unwrap_or(name))
}

/// A name as Docker shortens it: Docker Hub's prefixes dropped, `localhost/` kept (for Docker it
/// names another repository; Podman names its own builds so, see `familiar`).
pub fn docker_familiar(name: &str) -> &str {
    for prefix in ["docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest;
        }
    }
    name
}

/// The repository name of a service's image, without tag: `[REGISTRY/]ai-infra-<service>`.
pub fn repository(service: &str, registry: Option<&str>) -> String {
    match registry {
        Some(r) => format!("{}/{PREFIX}{service}", r.trim_end_matches('/')),
        None => format!("{PREFIX}{service}"),
    }
}

/// The full image name of a service: `[REGISTRY/]ai-infra-<service>:<tag>`.
pub fn image_name(service: &str, tag: &str, registry: Option<&str>) -> String {
    format!("{}:{tag}", repository(service, registry))
}

/// Checks that a composed image name stays within the grammar's 255-character limit.
pub fn validate_image_name(name: &str) -> Result<(), UsageError> {
    let repo_len = name.rsplit_once(':').map_or(name.len(), |(r, _)| r.len());
    if repo_len > 255 {
        return Err(UsageError(format!(
            "image name {name:?} is longer than 255 characters; use a shorter registry path"
        )));
    }
    Ok(())
}

/// Splits an image reference into its repository and tag (or digest); the tag is `latest` when
/// none is written, as Docker assumes.
pub fn normalize_external(image: &str) -> String {
    let r = Reference::parse(image);
    if r.digest.is_some() || r.tag.is_some() {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Whether a string is a plausible image reference: lowercase path components, an optional
/// domain, tag and digest. Used to reject FROM lines that expand to garbage.
pub fn is_valid_reference(image: &str) -> bool {
    let r = Reference::parse(image);
    if let Some(d) = r.digest {
        // The digests Docker takes: a registered algorithm and its exact length in lowercase hex.
        let Some((algo, hex)) = d.split_once(':') else { return false };
        let length = match algo {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return false,
        };
        if hex.len() != length || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return false;
        }
    }
    // A repository of 64 hex digits would pass for an image ID: Docker refuses it.
    let last = r.repository.rsplit('/').next().unwrap_or_default();
    if last.len() == 64
        && last.bytes().all(|b| b.is_ascii_hexdigit())
        && r.domain.is_none()
        && !r.repository.contains('/')
    {
        return false;
    }
    if r.tag.is_some_and(|tag| validate_tag(tag).is_err()) {
        return false;
    }
    if r.repository.is_empty() || r.repository.len() > 255 {
        return false;
    }
    if r.domain.is_some_and(|d| validate_registry(d).is_err()) {
        return false;
    }
    r.path.split('/').all(valid_path_component)
}

/// Whether the registry is spoken to over plain HTTP: loopback addresses always (as the engine
/// does), others only when named in AI_INFRA_INSECURE_REGISTRIES (comma-separated host:port).
pub fn plain_http(registry: &str) -> bool {
    let host = host(registry);
    let opted_in =
        std::env::var("AI_INFRA_INSECURE_REGISTRIES").map(|v| v.split(',').any(|r| r.trim() == host)).unwrap_or(false);
    loopback(host) || opted_in
}

/// Whether `host[:port]` names this machine by itself: an IP literal in 127.0.0.0/8,
/// `localhost` or `[::1]`. A name such as `127.example.com` is resolved by DNS and can be
/// anywhere: it is not loopback.
pub fn loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            let addr = v6.split_once(']').and_then(|(a, _)| a.parse::<core::net::Ipv6Addr>().ok());
            return addr.is_some_and(|a| a.is_loopback());
        }
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<core::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The mirror's name for a base image, when the image is a Docker Hub one (no registry host).
pub fn mirrored(mirror: &str, image: &str) -> Option<String> {
    let familiar = familiar(image);
    let has_host = Reference::parse(familiar).domain.is_some();
    (!has_host).then(|| format!("{mirror}/{familiar}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hub_images_go_through_the_mirror() {
        assert_eq!(mirrored("m.io/hub", "python:3.11").as_deref(), Some("m.io/hub/python:3.11"));
        assert_eq!(mirrored("m.io/hub", "docker.io/library/python:3.11").as_deref(), Some("m.io/hub/python:3.11"));
        assert_eq!(mirrored("m.io/hub", "me/tool:1").as_deref(), Some("m.io/hub/me/tool:1"));
        assert_eq!(mirrored("m.io/hub", "quay.io/x/y:1"), None);
        assert_eq!(mirrored("m.io/hub", "127.0.0.1:5000/x:1"), None);
    }

    #[test]
    fn plain_http_only_for_loopback_or_opt_in() {
        assert!(plain_http("127.0.0.1:5000"));
        assert!(plain_http("localhost:5000/team"));
        assert!(!plain_http("registry.example.com"));
        assert!(!plain_http("10.0.0.5:5000"));
        // Only IP literals in 127.0.0.0/8, localhost and [::1]: names are resolved by DNS.
        for yes in ["127.0.0.1", "127.255.3.4:443/x", "localhost", "[::1]:5000", "[::1]"] {
            assert!(plain_http(yes), "{yes}");
        }
        for no in
            ["127.example.com:5000", "127.0.0.1.nip.io", "127.0.0.256:5000", "localhost.evil.com", "[::2]:5000", "[::1"]
        {
            assert!(!plain_http(no), "{no}");
        }
    }

    #[test]
    fn tags() {
        for ok in ["v0.3.6", "latest", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", "v1 2", "-x", ".x", &"a".repeat(129), "a/b", "a:b", "ü"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        let msg = validate_tag("v1 2").unwrap_err().0;
        assert!(msg.contains("' '"), "{msg}");
    }

    #[test]
    fn registries() {
        for ok in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000/team",
            "registry.example.com",
            "Registry.Example.com/team/sub",
            "[::1]:5000",
            "reg.io/a__b/c-d/e.f",
        ] {
            assert!(validate_registry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://reg.io",
            "https://reg.io",
            "reg.io/Team",
            "reg.io:port",
            "reg.io:99999",
            "myuser",
            "/team",
            ":5000",
            "",
            "reg.io/",
            "reg.io//x",
            "-reg.io",
        ] {
            assert!(validate_registry(bad).is_err(), "{bad}");
        }
        assert!(validate_registry("http://x.io").unwrap_err().0.contains("scheme"));
        assert!(validate_registry("x.io/Up").unwrap_err().0.contains("lowercase"));
        assert!(validate_registry("x.io:p").unwrap_err().0.contains("port"));
    }

    #[test]
    fn names() {
        assert_eq!(image_name("base", "v1", None), "ai-infra-base:v1");
        assert_eq!(image_name("base", "v1", Some("127.0.0.1:5000/")), "127.0.0.1:5000/ai-infra-base:v1");
        assert!(validate_image_name(&format!("{}/ai-infra-x:v", "a".repeat(250))).is_err());
        assert_eq!(normalize_external("python"), "python:latest");
        assert_eq!(normalize_external("localhost:5000/python"), "localhost:5000/python:latest");
        assert_eq!(normalize_external("python:3.11"), "python:3.11");
    }

    #[test]
    fn references_come_apart_in_one_place() {
        let r = Reference::parse("localhost:5000/team/ai-infra-base:v1");
        assert_eq!(
            (r.domain, r.path, r.tag, r.digest),
            (Some("localhost:5000"), "team/ai-infra-base", Some("v1"), None)
        );
        assert_eq!(
            (r.repository, r.name(), r.service()),
            ("localhost:5000/team/ai-infra-base", "ai-infra-base", Some("base"))
        );
        let r = Reference::parse("python@sha256:abc");
        assert_eq!((r.domain, r.path, r.tag, r.digest), (None, "python", None, Some("sha256:abc")));
        let r = Reference::parse("me/x");
        assert_eq!((r.domain, r.path, r.tag), (None, "me/x", None));
        assert_eq!(host("127.0.0.1:5000/team"), "127.0.0.1:5000");
        assert_eq!(familiar("localhost/ai-infra-base:v1"), "ai-infra-base:v1");
        assert_eq!(familiar("localhost:5000/ai-infra-base:v1"), "localhost:5000/ai-infra-base:v1");
        assert_eq!(familiar("docker.io/library/python:3.11"), "python:3.11");
        assert_eq!(familiar("docker.io/me/x:1"), "me/x:1");
        assert_eq!(familiar("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
    }

    #[test]
    fn references() {
        for ok in ["python", "python:3.11-slim", "localhost:5000/a/b:c", "docker.io/library/x"] {
            assert!(is_valid_reference(ok), "{ok}");
        }
        let digest = format!("python@sha256:{}", "a".repeat(64));
        assert!(is_valid_reference(&digest));
        for bad in ["", "Python", "a b", "x:", ":x", "x@sha256:12"] {
            assert!(!is_valid_reference(bad), "{bad}");
        }
        // Digests as Docker takes them, and no repository that passes for an image ID (each
        // of these makes the engine answer 400, "invalid reference format" or the like).
        assert!(is_valid_reference(&format!("python@sha512:{}", "0".repeat(128))));
        for bad in [
            format!("alpine@sha256:{}", "0".repeat(40)),
            format!("alpine@sha256:{}", "A".repeat(64)),
            format!("alpine@md5:{}", "0".repeat(32)),
            format!("alpine@sha384:{}", "0".repeat(64)),
            "ab".repeat(32),
        ] {
            assert!(!is_valid_reference(&bad), "{bad}");
        }
        assert_eq!(docker_familiar("localhost/ai-infra-b:t"), "localhost/ai-infra-b:t");
        assert_eq!(docker_familiar("docker.io/library/python:3"), "python:3");
    }
}
