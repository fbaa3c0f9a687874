//! The build plan, made as data before anything runs: for every service whether to build it,
//! reuse an image with the same input digest, or skip it, why, and after which parents.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::decide::status::{Snapshot, State};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `docker build`, without cache when forced.
    Build { no_cache: bool },
    /// Tag an existing image built from identical inputs.
    Reuse { image: String },
    /// Pull the registry's build of identical inputs (its content tag) and tag it.
    Pull { image: String },
    /// Already OK.
    Skip,
}

impl Action {
    /// Its name in the JSON plan and the history.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Build { .. } => "build",
            Action::Reuse { .. } => "reuse",
            Action::Pull { .. } => "pull",
            Action::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub service: String,
    pub action: Action,
    pub reason: String,
    /// Internal parents that this plan builds or reuses: wait for them.
    pub after: Vec<String>,
    /// What runs instead when the action fails: a pull that fails (or brings an image that
    /// does not carry the expected input digest) is a build.
    pub otherwise: Option<Action>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Parents before children.
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn work(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.action != Action::Skip)
    }

    pub fn is_empty(&self) -> bool {
        self.work().next().is_none()
    }
}

/// Plans a build. `wanted` limits it to some services (with their parents); `force` rebuilds
/// those without cache (all of them for build-all); `reusable` maps a service to an image that
/// already carries its expected input digest; `pullable` to the registry's content tag of it.
pub fn make(
    snap: &Snapshot,
    wanted: Option<&BTreeSet<String>>,
    force: &BTreeSet<String>,
    reusable: &BTreeMap<String, String>,
    pullable: &BTreeMap<String, String>,
) -> Plan {
    let mut steps: Vec<Step> = Vec::new();
    let mut acting: BTreeSet<String> = BTreeSet::new();
    for r in &snap.services {
        let name = &r.service.name;
        if wanted.is_some_and(|w| !w.contains(name)) {
            continue;
        }
        let st = snap.status(name);
        let rebuilt_parents: Vec<&String> = r.analysis.parents.iter().filter(|p| acting.contains(*p)).collect();
        let (action, reason) = if force.contains(name) {
            (Action::Build { no_cache: true }, "forced: rebuilt without cache".to_string())
        } else if st.state == State::Ok {
            (Action::Skip, "OK".to_string())
        } else {
            let mut reason = format!("{}: {}", st.state.name(), st.reason);
            if st.state == State::Stale && !rebuilt_parents.is_empty() {
                let names: Vec<&str> = rebuilt_parents.iter().map(|s| s.as_str()).collect();
                reason.push_str(&format!(" ({} will be rebuilt first)", names.join(", ")));
            }
            match (reusable.get(name), pullable.get(name)) {
                (Some(image), _) => {
                    (Action::Reuse { image: image.clone() }, format!("{reason}; {image} has the same inputs"))
                }
                (None, Some(image)) => {
                    (Action::Pull { image: image.clone() }, format!("{reason}; the registry has this build as {image}"))
                }
                (None, None) => (Action::Build { no_cache: false }, reason),
            }
        };
        if action != Action::Skip {
            acting.insert(name.clone());
        }
        let after = r.analysis.parents.iter().filter(|p| acting.contains(*p) && *p != name).cloned().collect();
        let otherwise = matches!(action, Action::Pull { .. }).then_some(Action::Build { no_cache: false });
        steps.push(Step { service: name.clone(), action, reason, after, otherwise });
    }
    Plan { steps }
}

pub fn to_json(plan: &Plan, snap: &Snapshot) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let extra = match &s.action {
                Action::Build { no_cache } => json!({ "no_cache": no_cache }),
                Action::Reuse { image } | Action::Pull { image } => json!({ "image": image }),
                Action::Skip => json!({}),
            };
            let mut v =
                json!({ "service": s.service, "action": s.action.name(), "reason": s.reason, "after": s.after });
            if let (Some(o), Some(otherwise)) = (v.as_object_mut(), &s.otherwise) {
                o.insert("otherwise".into(), json!(otherwise.name()));
            }
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        })
        .collect();
    json!({ "tag": snap.tag, "registry": snap.registry, "steps": steps })
}

pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    let work: Vec<&Step> = plan.work().collect();
    out.push_str(&format!(
        "plan: {} to build, reuse or pull, {} up to date\n",
        work.len(),
        plan.steps.len() - work.len()
    ));
    for s in &plan.steps {
        let verb = match &s.action {
            Action::Build { no_cache: true } => "build (no cache)",
            Action::Build { .. } => "build",
            Action::Reuse { .. } => "reuse",
            Action::Pull { .. } if s.otherwise.is_some() => "pull, else build",
            Action::Pull { .. } => "pull",
            Action::Skip => "skip",
        };
        let after = if s.after.is_empty() { String::new() } else { format!(" [after {}]", s.after.join(", ")) };
        out.push_str(&format!("  {verb:<16} {}{after}: {}\n", s.service, s.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::status::ServiceStatus;
    use crate::repo::project::{Resolved, Service};

    fn snapshot(states: &[(&str, &[&str], State)]) -> Snapshot {
        let internal = crate::repo::dockerfile::Internal { tag: "t", is_service: &|_| true };
        let services = states
            .iter()
            .map(|(name, parents, _)| {
                let mut analysis =
                    crate::repo::dockerfile::analyze("FROM scratch\n", None, &BTreeMap::new(), &internal).unwrap();
                analysis.parents = parents.iter().map(|p| p.to_string()).collect();
                Resolved {
                    service: Service {
                        name: name.to_string(),
                        context: "c".into(),
                        dockerfile: "d".into(),
                        target: None,
                    },
                    dockerfile: Vec::new(),
                    analysis,
                    build_args: BTreeMap::new(),
                }
            })
            .collect();
        let statuses = states
            .iter()
            .map(|(name, _, state)| ServiceStatus {
                name: name.to_string(),
                image: format!("ai-infra-{name}:t"),
                state: *state,
                reason: if *state == State::Ok { String::new() } else { "why".into() },
                expected: None,
                found: None,
                image_id: None,
                size: None,
                created: None,
            })
            .collect();
        Snapshot {
            root: "/r".into(),
            tag: "t".into(),
            registry: None,
            services,
            records: BTreeMap::new(),
            digests: BTreeMap::new(),
            statuses,
            platform: ("linux".into(), "amd64".into()),
            engine: "docker at unix:///s".into(),
        }
    }

    fn actions(p: &Plan) -> Vec<(&str, &Action)> {
        p.steps.iter().map(|s| (s.service.as_str(), &s.action)).collect()
    }

    #[test]
    fn builds_what_is_not_ok_parents_first() {
        let snap = snapshot(&[
            ("base", &[], State::Stale),
            ("mid", &["base"], State::Stale),
            ("solo", &[], State::Ok),
            ("x", &["base"], State::Missing),
        ]);
        let p = make(&snap, None, &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new());
        let build = Action::Build { no_cache: false };
        assert_eq!(actions(&p), vec![("base", &build), ("mid", &build), ("solo", &Action::Skip), ("x", &build)]);
        assert_eq!(p.steps[1].after, vec!["base"]);
        assert!(p.steps[1].reason.contains("base will be rebuilt first"), "{}", p.steps[1].reason);
        assert_eq!(p.steps[3].reason, "MISSING: why");
        assert!(human(&p).contains("plan: 3 to build, reuse or pull, 1 up to date"));
        let v = to_json(&p, &snap);
        assert_eq!(v["steps"][0]["action"], "build");
        assert_eq!(v["steps"][2]["action"], "skip");
    }

    #[test]
    fn nothing_to_do_force_wanted_and_reuse() {
        let snap = snapshot(&[("base", &[], State::Ok), ("mid", &["base"], State::Missing)]);
        let ok = snapshot(&[("base", &[], State::Ok)]);
        assert!(make(&ok, None, &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new()).is_empty());
        let all: BTreeSet<String> = ["base".into(), "mid".into()].into();
        let p = make(&snap, None, &all, &BTreeMap::new(), &BTreeMap::new());
        assert!(p.steps.iter().all(|s| s.action == Action::Build { no_cache: true }));
        assert_eq!(p.steps[1].after, vec!["base"]);
        let wanted: BTreeSet<String> = ["base".into()].into();
        assert_eq!(make(&snap, Some(&wanted), &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new()).steps.len(), 1);
        let reuse: BTreeMap<String, String> = [("mid".to_string(), "ai-infra-mid:v0".to_string())].into();
        let pull: BTreeMap<String, String> = [("mid".to_string(), "r.io/ai-infra-mid:inputs-1".to_string())].into();
        let p = make(&snap, None, &BTreeSet::new(), &reuse, &pull);
        assert_eq!(p.steps[1].action, Action::Reuse { image: "ai-infra-mid:v0".into() }, "a local image beats a pull");
        assert!(p.steps[1].reason.contains("ai-infra-mid:v0 has the same inputs"));
        let p = make(&snap, None, &BTreeSet::new(), &BTreeMap::new(), &pull);
        assert_eq!(p.steps[1].action, Action::Pull { image: "r.io/ai-infra-mid:inputs-1".into() });
        assert_eq!(p.steps[1].otherwise, Some(Action::Build { no_cache: false }), "a failed pull builds");
        assert!(human(&p).contains("pull, else build mid"), "{}", human(&p));
        assert_eq!(to_json(&p, &snap)["steps"][1]["otherwise"], "build");
        assert!(p.steps[1].reason.contains("the registry has this build as r.io/ai-infra-mid:inputs-1"));
    }
}
