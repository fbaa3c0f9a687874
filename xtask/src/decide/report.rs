//! The status report in three formats: for people (counts, then each group with reasons),
//! `plain` (one `service|STATUS|image` line each, for scripts) and `json`.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde_json::{json, Value};

use std::collections::BTreeMap;

use crate::decide::status::{Remote, Snapshot, State};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Human,
    Plain,
    Json,
    /// The service graph (`graph.rs`), for Graphviz.
    Dot,
    /// The service graph as a Mermaid flowchart.
    Mermaid,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "human" => Ok(Format::Human),
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            "dot" => Ok(Format::Dot),
            "mermaid" => Ok(Format::Mermaid),
            _ => Err(format!("unknown format {s:?}: use human, plain, json, dot or mermaid")),
        }
    }
}

/// Colours for a terminal, and never under NO_COLOR.
pub struct Style {
    on: bool,
}

impl Style {
    pub fn stdout() -> Style {
        Style { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    pub fn paint(&self, state: State, text: &str) -> String {
        if !self.on {
            return text.to_string();
        }
        let code = match state {
            State::Ok => "32",
            State::Missing | State::Invalid | State::Error => "31",
            State::Stale => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

pub fn mark(state: State) -> &'static str {
    match state {
        State::Ok => "✓",
        State::Missing | State::Invalid => "✗",
        State::Error => "!",
        State::Stale => "⚠",
    }
}

/// Renders the report; `remote` adds the registry's view of each service.
pub fn render(snap: &Snapshot, remote: Option<&BTreeMap<String, Remote>>, format: Format, style: &Style) -> String {
    let remote_state = |name: &str| remote.and_then(|r| r.get(name));
    match format {
        Format::Dot => crate::decide::graph::dot(&crate::decide::graph::nodes(snap)),
        Format::Mermaid => crate::decide::graph::mermaid(&crate::decide::graph::nodes(snap)),
        Format::Plain => snap
            .statuses
            .iter()
            .map(|s| match remote_state(&s.name) {
                Some(r) => format!("{}|{}|{}|{}\n", s.name, s.state.name(), s.image, r.state),
                None => format!("{}|{}|{}\n", s.name, s.state.name(), s.image),
            })
            .collect(),
        Format::Json => {
            let mut v = to_json(snap);
            if let Some(services) = v["services"].as_array_mut() {
                for s in services {
                    let name = s["name"].as_str().unwrap_or_default().to_string();
                    if let Some(r) = remote_state(&name) {
                        s["remote"] = json!({ "status": r.state, "reason": r.reason });
                    }
                }
            }
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        Format::Human => {
            let mut out = human(snap, style);
            if let Some(remote) = remote {
                let width = snap.statuses.iter().map(|s| s.name.len()).max().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "\nregistry {} (TAG and content tag inputs-<digest>):",
                    snap.registry.as_deref().unwrap_or("")
                );
                for s in &snap.statuses {
                    if let Some(r) = remote.get(&s.name) {
                        let reason = if r.reason.is_empty() { String::new() } else { format!("  {}", r.reason) };
                        let _ = writeln!(
                            out,
                            "  {:<width$}  local {:<8} remote {:<8}{reason}",
                            s.name,
                            s.state.name(),
                            r.state
                        );
                    }
                }
            }
            out
        }
    }
}

/// The command a person runs next after a check of images in these states, if any: `args` are
/// the TAG and REGISTRY as given, so that the build suggested is of the same images;
/// `remote_ok` and `deps_ok` say whether the registry's and the dependency images' parts
/// were all OK.
pub fn next(states: &[State], args: &[&str], remote_ok: bool, deps_ok: bool) -> Option<String> {
    let build = ["cargo xtask build-all"].iter().chain(args).copied().collect::<Vec<_>>().join(" ");
    let count = |st: State| states.iter().filter(|s| **s == st).count();
    let to_build = count(State::Missing) + count(State::Invalid) + count(State::Stale);
    Some(if count(State::Error) > 0 {
        format!("next: fix what each ERROR line names, then `{build}`")
    } else if to_build == 1 {
        format!("next: `{build}` builds the image that is not OK")
    } else if to_build > 1 {
        format!("next: `{build}` builds the {to_build} images that are not OK")
    } else if !remote_ok {
        format!("next: `{build}` pushes what the registry lacks")
    } else if !deps_ok {
        "next: `cargo xtask pull-deps` pulls the missing dependency images (`push-deps REGISTRY` mirrors them)"
            .to_string()
    } else {
        return None;
    })
}

pub fn to_json(snap: &Snapshot) -> Value {
    let services: Vec<Value> = snap
        .statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "status": s.state.name(),
                "image": s.image,
                "reason": s.reason,
                "expected_digest": s.expected,
                "found_digest": s.found,
                "image_id": s.image_id,
                "size": s.size,
                "created": s.created,
            })
        })
        .collect();
    let count = |st: State| snap.statuses.iter().filter(|s| s.state == st).count();
    json!({
        "tag": snap.tag,
        "registry": snap.registry,
        "engine": snap.engine,
        "counts": {
            "OK": count(State::Ok), "MISSING": count(State::Missing),
            "INVALID": count(State::Invalid), "STALE": count(State::Stale), "ERROR": count(State::Error),
            "total": snap.statuses.len(),
        },
        "services": services,
    })
}

fn human(snap: &Snapshot, style: &Style) -> String {
    let mut out = String::new();
    let total = snap.statuses.len();
    let target = snap.registry.as_deref().map_or("local build".to_string(), |r| format!("registry {r}"));
    let _ = writeln!(out, "ai-infra images: tag {}, {target}, engine {}", snap.tag, snap.engine);
    for st in State::ALL {
        let n = snap.statuses.iter().filter(|s| s.state == st).count();
        if st == State::Error && n == 0 {
            continue;
        }
        let _ = writeln!(out, "  {} {:<8} {n:>3}/{total}", style.paint(st, mark(st)), st.name());
    }
    let width = snap.statuses.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let image_width = snap.statuses.iter().map(|s| s.image.len()).max().unwrap_or(0);
    for st in [State::Error, State::Missing, State::Invalid, State::Stale, State::Ok] {
        let group: Vec<_> = snap.statuses.iter().filter(|s| s.state == st).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", style.paint(st, &format!("{} {}", mark(st), st.name())));
        for s in group {
            let line = format!("  {:<width$}  {:<image_width$}  {}", s.name, s.image, s.reason);
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_suggests_the_next_command() {
        assert_eq!(next(&[State::Ok, State::Ok], &[], true, true), None);
        assert_eq!(
            next(&[State::Ok, State::Stale, State::Missing], &["v1"], true, true).as_deref(),
            Some("next: `cargo xtask build-all v1` builds the 2 images that are not OK")
        );
        assert_eq!(
            next(&[State::Invalid], &[], true, true).as_deref(),
            Some("next: `cargo xtask build-all` builds the image that is not OK")
        );
        let error = next(&[State::Error, State::Stale], &[], true, true).unwrap();
        assert!(error.starts_with("next: fix what each ERROR line names"), "{error}");
        assert_eq!(
            next(&[State::Ok], &["v1", "r.io"], false, true).as_deref(),
            Some("next: `cargo xtask build-all v1 r.io` pushes what the registry lacks")
        );
        assert!(next(&[State::Ok], &[], true, false).unwrap().contains("`cargo xtask pull-deps`"));
    }
}
