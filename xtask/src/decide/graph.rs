//! The service graph as a picture (`check-status --format dot|mermaid`): each service coloured
//! by its status, with its reason as a tooltip, an arrow from each internal parent to its
//! children, and the external base images in another shape.

use crate::decide::status::{Snapshot, State};

/// One service of the picture.
pub struct Node<'a> {
    pub name: &'a str,
    pub state: State,
    pub reason: &'a str,
    pub parents: Vec<&'a str>,
    pub bases: Vec<&'a str>,
}

/// The services of a snapshot, as the picture shows them (a service that cannot be analysed
/// has neither parents nor bases).
pub fn nodes(snap: &Snapshot) -> Vec<Node<'_>> {
    fn of(set: Option<&std::collections::BTreeSet<String>>) -> Vec<&str> {
        set.map_or_else(Vec::new, |set| set.iter().map(String::as_str).collect())
    }
    snap.statuses
        .iter()
        .map(|s| {
            let r = snap.services.iter().find(|r| r.service.name == s.name);
            Node {
                name: &s.name,
                state: s.state,
                reason: &s.reason,
                parents: of(r.map(|r| &r.analysis.parents)),
                bases: of(r.map(|r| &r.analysis.bases)),
            }
        })
        .collect()
}

/// The fill colour of a status: green, grey, red, orange, purple.
fn colour(state: State) -> &'static str {
    match state {
        State::Ok => "#b7e1a1",
        State::Missing => "#d9d9d9",
        State::Invalid => "#f4a6a6",
        State::Stale => "#ffd59a",
        State::Error => "#d7b4f3",
    }
}

/// The external bases of the picture, each once, in order.
fn bases<'a>(nodes: &[Node<'a>]) -> Vec<&'a str> {
    let set: std::collections::BTreeSet<&str> = nodes.iter().flat_map(|n| n.bases.iter().copied()).collect();
    set.into_iter().collect()
}

/// A Graphviz digraph (`dot -Tsvg`).
pub fn dot(nodes: &[Node]) -> String {
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    let mut out = String::from("digraph services {\n  rankdir=LR;\n  node [style=filled, fontname=\"sans-serif\"];\n");
    for b in bases(nodes) {
        out.push_str(&format!(
            "  {} [shape=cylinder, fillcolor=\"#ffffff\", tooltip=\"external base image\"];\n",
            quoted(b)
        ));
    }
    for n in nodes {
        let label = format!("{}\n{}", n.name, n.state.name());
        let tip = if n.reason.is_empty() { n.state.name() } else { n.reason };
        out.push_str(&format!(
            "  {} [shape=box, label={}, fillcolor=\"{}\", tooltip={}];\n",
            quoted(n.name),
            quoted(&label),
            colour(n.state),
            quoted(tip)
        ));
    }
    for n in nodes {
        for from in n.parents.iter().chain(&n.bases) {
            out.push_str(&format!("  {} -> {};\n", quoted(from), quoted(n.name)));
        }
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart (GitHub and GitLab draw it in Markdown).
pub fn mermaid(nodes: &[Node]) -> String {
    // Mermaid's ids take no dots or slashes: services are s0, s1, ...; bases b0, b1, ...
    let bases = bases(nodes);
    let id = |name: &str| match nodes.iter().position(|n| n.name == name) {
        Some(i) => format!("s{i}"),
        None => format!("b{}", bases.iter().position(|b| *b == name).unwrap_or(0)),
    };
    let text = |s: &str| s.replace('"', "#quot;").replace('\n', " ");
    let mut out = String::from("flowchart LR\n");
    for (i, b) in bases.iter().enumerate() {
        out.push_str(&format!("  b{i}[(\"{}\")]:::base\n", text(b)));
    }
    for (i, n) in nodes.iter().enumerate() {
        out.push_str(&format!(
            "  s{i}[\"{}: {}\"]:::{}\n",
            text(n.name),
            n.state.name(),
            n.state.name().to_lowercase()
        ));
    }
    for n in nodes {
        for from in n.parents.iter().chain(&n.bases) {
            out.push_str(&format!("  {} --> {}\n", id(from), id(n.name)));
        }
    }
    for state in [State::Ok, State::Missing, State::Invalid, State::Stale, State::Error] {
        out.push_str(&format!("  classDef {} fill:{},stroke:#555\n", state.name().to_lowercase(), colour(state)));
    }
    out.push_str("  classDef base fill:#ffffff,stroke:#555\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Vec<Node<'static>> {
        let node = |name, state, reason, parents: &[&'static str], bases: &[&'static str]| Node {
            name,
            state,
            reason,
            parents: parents.to_vec(),
            bases: bases.to_vec(),
        };
        vec![
            node("base", State::Ok, "", &[], &["debian:12"]),
            node("mid.api", State::Stale, "mid.txt (modified, read by \"COPY\" at line 3)", &["base"], &[]),
            node("leaf", State::Missing, "not built yet", &["mid.api"], &["debian:12"]),
            node("broken", State::Error, "Dockerfile: FROM expands to nothing", &[], &[]),
        ]
    }

    #[test]
    fn dot_names_every_service_and_edge_with_its_colour_and_reason() {
        let out = dot(&stack());
        assert!(out.starts_with("digraph services {\n") && out.ends_with("}\n"), "{out}");
        assert!(out.contains("\"debian:12\" [shape=cylinder"), "{out}");
        assert!(
            out.contains("\"base\" [shape=box, label=\"base\\nOK\", fillcolor=\"#b7e1a1\", tooltip=\"OK\"]"),
            "{out}"
        );
        assert!(out.contains("tooltip=\"mid.txt (modified, read by \\\"COPY\\\" at line 3)\""), "{out}");
        for edge in [
            "\"base\" -> \"mid.api\";",
            "\"mid.api\" -> \"leaf\";",
            "\"debian:12\" -> \"leaf\";",
            "\"debian:12\" -> \"base\";",
        ] {
            assert!(out.contains(edge), "{edge}: {out}");
        }
        assert_eq!(out.matches(" -> ").count(), 4, "{out}");
        assert_eq!(out.matches("shape=cylinder").count(), 1, "each base once: {out}");
    }

    #[test]
    fn mermaid_ids_are_plain_and_each_status_has_its_class() {
        let out = mermaid(&stack());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "flowchart LR");
        assert!(lines.contains(&"  b0[(\"debian:12\")]:::base"), "{out}");
        assert!(lines.contains(&"  s1[\"mid.api: STALE\"]:::stale"), "{out}");
        assert!(lines.contains(&"  s3[\"broken: ERROR\"]:::error"), "{out}");
        for edge in ["  s0 --> s1", "  s1 --> s2", "  b0 --> s2", "  b0 --> s0"] {
            assert!(lines.contains(&edge), "{edge}: {out}");
        }
        for class in ["ok", "missing", "invalid", "stale", "error", "base"] {
            assert!(out.contains(&format!("classDef {class} fill:")), "{class}: {out}");
        }
        // Every id used in an edge is defined, and no label breaks its quotes.
        for l in lines.iter().filter(|l| l.contains("-->")) {
            for id in l.split("-->").map(str::trim) {
                assert!(lines.iter().any(|d| d.trim_start().starts_with(&format!("{id}["))), "{id}: {out}");
            }
        }
        assert!(lines.iter().filter(|l| l.contains('[')).all(|l| l.matches('"').count() == 2), "{out}");
    }
}
