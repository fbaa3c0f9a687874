//! The build plan, made as data before anything runs: the external base images step 1 pulls
//! (and what fails when one cannot be pulled), and for every service whether to build it,
//! reuse an image with the same input digest, pull the registry's build of it, or skip it, why,
//! after which parents, and what it does once step 1 has brought the bases its inputs need.

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
    /// External bases that are not here yet and whose IDs are inputs of this service (its own,
    /// or its parents'): its input digest is known once step 1 has pulled them, and then an
    /// image or a registry build of the same inputs is taken instead of building (`settle`).
    pub waits: Vec<String>,
}

/// An external base image that step 1 pulls before any build: a planned build needs it and
/// the engine does not hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct BasePull {
    pub image: String,
    /// The mirror's name for it (BASE_IMAGE_MIRROR), tried first; then the image as written.
    pub through: Option<String>,
    /// The services that cannot build without it: when it cannot be pulled they fail, and
    /// their children do not start.
    pub services: Vec<String>,
    /// Only the legacy builder needs it: the base of a stage before the target that the
    /// target does not need, which that builder builds anyway.
    pub unneeded_stage: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Step 1's pulls, in name order.
    pub bases: Vec<BasePull>,
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

/// How the reason of a step that waits for bases goes on.
const WAITING: &str = "; its inputs are known once";

/// Plans a build. `wanted` limits it to some services (with their parents); `force` rebuilds
/// those without cache (all of them for build-all); `reusable` maps a service to an image that
/// already carries its expected input digest; `pullable` to the registry's content tag of it;
/// `legacy` says the builder builds the stages a target does not need (their bases are pulled).
pub fn make(
    snap: &Snapshot,
    wanted: Option<&BTreeSet<String>>,
    force: &BTreeSet<String>,
    reusable: &BTreeMap<String, String>,
    pullable: &BTreeMap<String, String>,
    legacy: bool,
) -> Plan {
    let mut steps: Vec<Step> = Vec::new();
    let mut acting: BTreeSet<String> = BTreeSet::new();
    let mut waiting: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
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
        // The bases not here whose IDs this service's digest needs: its own, and its parents'.
        let mut waits: BTreeSet<String> = snap
            .records
            .get(name)
            .map(|rec| rec.bases.iter().filter(|(_, id)| id.is_none()).map(|(b, _)| b.clone()).collect())
            .unwrap_or_default();
        for p in &r.analysis.needed_parents {
            waits.extend(waiting.get(p.as_str()).into_iter().flatten().cloned());
        }
        // Passed down whatever the parent does: a child of an up-to-date parent whose base is
        // missing cannot know its own digest either.
        waiting.insert(name.as_str(), waits.clone());
        let waits: Vec<String> =
            if matches!(action, Action::Build { .. }) { waits.into_iter().collect() } else { Vec::new() };
        let mut reason = reason;
        if action == (Action::Build { no_cache: false }) && !waits.is_empty() {
            reason.push_str(&format!(
                "{WAITING} {} {} pulled, and then an image or registry build of them is taken if one exists",
                waits.join(", "),
                if waits.len() == 1 { "is" } else { "are" }
            ));
        }
        steps.push(Step { service: name.clone(), action, reason, after, otherwise, waits });
    }
    let bases = bases(snap, &steps, legacy);
    Plan { bases, steps }
}

/// Step 1's pulls: the bases the planned builds need and the engine lacks (their own, and
/// their parents'), and under the legacy builder the missing bases of the stages before a
/// target that it does not need.
fn bases(snap: &Snapshot, steps: &[Step], legacy: bool) -> Vec<BasePull> {
    let mut out: BTreeMap<String, BasePull> = BTreeMap::new();
    for step in steps.iter().filter(|s| matches!(s.action, Action::Build { .. })) {
        let Some(r) = snap.services.iter().find(|r| r.service.name == step.service) else { continue };
        let unneeded = r
            .analysis
            .bases
            .difference(&r.analysis.needed_bases)
            .filter(|b| legacy && !snap.base_ids.contains_key(*b))
            .map(|b| (b, true));
        // A base a parent in the plan also waits for is not this step's to fail for: when it
        // cannot be pulled, the parent fails and this step does not start.
        let parent_waits =
            |b: &String| step.after.iter().any(|p| steps.iter().any(|s| s.service == *p && s.waits.contains(b)));
        let own = step.waits.iter().filter(|b| !parent_waits(b)).map(|b| (b, false));
        for (base, unneeded_stage) in own.chain(unneeded) {
            let pull = out.entry(base.clone()).or_insert_with(|| BasePull {
                image: base.clone(),
                through: snap.mirror.as_deref().and_then(|m| crate::repo::reference::mirrored(m, base)),
                services: Vec::new(),
                unneeded_stage: true,
            });
            if !pull.services.contains(&step.service) {
                pull.services.push(step.service.clone());
            }
            pull.unneeded_stage &= unneeded_stage;
        }
    }
    out.into_values().collect()
}

/// The plan once step 1 has pulled bases: each step that waited for them and now has an
/// image (`reusable`) or a registry build (`pullable`) of its inputs takes it instead of
/// building. Nothing else changes. Returns the plan and a line for each step that changed.
pub fn settle(
    mut plan: Plan,
    reusable: &BTreeMap<String, String>,
    pullable: &BTreeMap<String, String>,
) -> (Plan, Vec<String>) {
    let mut said = Vec::new();
    for step in plan.steps.iter_mut().filter(|s| !s.waits.is_empty() && s.action == Action::Build { no_cache: false }) {
        // The bases are here now: the reason says what the step does, not what it waited for.
        step.reason = step.reason.split(WAITING).next().unwrap_or_default().to_string();
        let (action, why) = match (reusable.get(&step.service), pullable.get(&step.service)) {
            (Some(image), _) => (Action::Reuse { image: image.clone() }, format!("{image} has the same inputs")),
            (None, Some(image)) => {
                (Action::Pull { image: image.clone() }, format!("the registry has this build as {image}"))
            }
            (None, None) => continue,
        };
        said.push(format!("{}: {} instead of building: {why}", step.service, action.name()));
        step.otherwise = matches!(action, Action::Pull { .. }).then_some(Action::Build { no_cache: false });
        step.reason = format!("{}; {why}", step.reason);
        step.action = action;
    }
    (plan, said)
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
            if let (Some(o), false) = (v.as_object_mut(), s.waits.is_empty()) {
                o.insert("waits_for_bases".into(), json!(s.waits));
            }
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        })
        .collect();
    let bases: Vec<Value> = plan
        .bases
        .iter()
        .map(|b| {
            json!({ "image": b.image, "through": b.through, "services": b.services, "unneeded_stage": b.unneeded_stage })
        })
        .collect();
    json!({ "tag": snap.tag, "registry": snap.registry, "bases": bases, "steps": steps })
}

/// The plan for people; the up-to-date services are counted in its first line and listed,
/// one `skip` line each, only when `verbose`.
pub fn human(plan: &Plan, verbose: bool) -> String {
    let mut out = String::new();
    let work: Vec<&Step> = plan.work().collect();
    out.push_str(&format!(
        "plan: {} to build, reuse or pull, {} up to date",
        work.len(),
        plan.steps.len() - work.len()
    ));
    match plan.bases.len() {
        0 => out.push('\n'),
        1 => out.push_str("; 1 base image to pull first\n"),
        n => out.push_str(&format!("; {n} base images to pull first\n")),
    }
    for b in &plan.bases {
        let through = b.through.as_deref().map_or(String::new(), |m| format!(" (through {m} first)"));
        let stage = if b.unneeded_stage {
            ", a stage the legacy builder builds though the target does not need it"
        } else {
            ""
        };
        let they = if b.services.len() == 1 { "it fails and its" } else { "they fail and their" };
        out.push_str(&format!(
            "  {:<16} {}{through}: for {}{stage}; if it cannot be pulled, {they} children do not start\n",
            "pull base",
            b.image,
            b.services.join(", ")
        ));
    }
    for s in plan.steps.iter().filter(|s| verbose || s.action != Action::Skip) {
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
        let internal =
            crate::repo::dockerfile::Internal { tag: "t", is_service: &|_| true, triggers: &Default::default() };
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
                    ignore: Default::default(),
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
            base_ids: BTreeMap::new(),
            mirror: None,
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
        let p = make(&snap, None, &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new(), false);
        let build = Action::Build { no_cache: false };
        assert_eq!(actions(&p), vec![("base", &build), ("mid", &build), ("solo", &Action::Skip), ("x", &build)]);
        assert_eq!(p.steps[1].after, vec!["base"]);
        assert!(p.steps[1].reason.contains("base will be rebuilt first"), "{}", p.steps[1].reason);
        assert_eq!(p.steps[3].reason, "MISSING: why");
        let quiet = human(&p, false);
        assert!(quiet.contains("plan: 3 to build, reuse or pull, 1 up to date"), "{quiet}");
        assert!(!quiet.contains("solo"), "an up-to-date service is only counted: {quiet}");
        assert!(human(&p, true).contains("  skip             solo: OK\n"), "--verbose lists it");
        let v = to_json(&p, &snap);
        assert_eq!(v["steps"][0]["action"], "build");
        assert_eq!(v["steps"][2]["action"], "skip");
    }

    #[test]
    fn nothing_to_do_force_wanted_and_reuse() {
        let snap = snapshot(&[("base", &[], State::Ok), ("mid", &["base"], State::Missing)]);
        let ok = snapshot(&[("base", &[], State::Ok)]);
        assert!(make(&ok, None, &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new(), false).is_empty());
        let all: BTreeSet<String> = ["base".into(), "mid".into()].into();
        let p = make(&snap, None, &all, &BTreeMap::new(), &BTreeMap::new(), false);
        assert!(p.steps.iter().all(|s| s.action == Action::Build { no_cache: true }));
        assert_eq!(p.steps[1].after, vec!["base"]);
        let wanted: BTreeSet<String> = ["base".into()].into();
        assert_eq!(
            make(&snap, Some(&wanted), &BTreeSet::new(), &BTreeMap::new(), &BTreeMap::new(), false).steps.len(),
            1
        );
        let reuse: BTreeMap<String, String> = [("mid".to_string(), "ai-infra-mid:v0".to_string())].into();
        let pull: BTreeMap<String, String> = [("mid".to_string(), "r.io/ai-infra-mid:inputs-1".to_string())].into();
        let p = make(&snap, None, &BTreeSet::new(), &reuse, &pull, false);
        assert_eq!(p.steps[1].action, Action::Reuse { image: "ai-infra-mid:v0".into() }, "a local image beats a pull");
        assert!(p.steps[1].reason.contains("ai-infra-mid:v0 has the same inputs"));
        let p = make(&snap, None, &BTreeSet::new(), &BTreeMap::new(), &pull, false);
        assert_eq!(p.steps[1].action, Action::Pull { image: "r.io/ai-infra-mid:inputs-1".into() });
        assert_eq!(p.steps[1].otherwise, Some(Action::Build { no_cache: false }), "a failed pull builds");
        assert!(human(&p, false).contains("pull, else build mid"), "{}", human(&p, false));
        assert_eq!(to_json(&p, &snap)["steps"][1]["otherwise"], "build");
        assert!(p.steps[1].reason.contains("the registry has this build as r.io/ai-infra-mid:inputs-1"));
    }

    /// `api` builds FROM python:3 (absent) with a stage `old` FROM old:1 (absent) its target
    /// does not need; `web` builds FROM api; `solo` FROM scratch.
    fn waiting() -> Snapshot {
        let mut snap =
            snapshot(&[("api", &[], State::Missing), ("web", &["api"], State::Missing), ("solo", &[], State::Stale)]);
        let internal =
            crate::repo::dockerfile::Internal { tag: "t", is_service: &|n| n == "api", triggers: &Default::default() };
        let analyze =
            |text: &str, target| crate::repo::dockerfile::analyze(text, target, &BTreeMap::new(), &internal).unwrap();
        snap.services[0].analysis = analyze("FROM old:1 AS old\nFROM python:3 AS app\n", Some("app"));
        snap.services[1].analysis = analyze("FROM ai-infra-api:t\n", None);
        for (name, bases) in [("api", vec!["python:3"]), ("web", vec![]), ("solo", vec![])] {
            let bases = bases.into_iter().map(|b: &str| (b.to_string(), None)).collect();
            snap.records.insert(name.into(), crate::repo::record::Record { bases, ..Default::default() });
        }
        snap.mirror = Some("m.io/hub".into());
        snap
    }

    #[test]
    fn missing_bases_are_pulled_first_and_their_builds_wait_for_them() {
        let snap = waiting();
        let none = BTreeMap::new();
        let p = make(&snap, None, &BTreeSet::new(), &none, &none, false);
        let python = BasePull {
            image: "python:3".into(),
            through: Some("m.io/hub/python:3".into()),
            services: vec!["api".into()],
            unneeded_stage: false,
        };
        assert_eq!(p.bases, vec![python.clone()], "the legacy builder's unneeded stage is not pulled for BuildKit");
        let waits: Vec<(&str, &[String])> = p.steps.iter().map(|s| (s.service.as_str(), s.waits.as_slice())).collect();
        let py = ["python:3".to_string()];
        assert_eq!(waits, vec![("api", &py[..]), ("web", &py[..]), ("solo", &[][..])], "a child waits with its parent");
        assert!(p.steps[1].reason.contains("its inputs are known once python:3 is pulled"), "{}", p.steps[1].reason);
        let h = human(&p, false);
        assert!(h.contains("; 1 base image to pull first"), "{h}");
        assert!(
            h.contains("python:3 (through m.io/hub/python:3 first): for api; if it cannot be pulled, it fails and its children"),
            "{h}"
        );
        let j = to_json(&p, &snap);
        assert_eq!(j["bases"][0]["services"][0], "api");
        assert_eq!(j["steps"][1]["waits_for_bases"][0], "python:3");
        // The legacy builder builds `old` too: its base is pulled, for api alone.
        let p = make(&snap, None, &BTreeSet::new(), &none, &none, true);
        assert_eq!(p.bases.len(), 2);
        assert_eq!((p.bases[0].image.as_str(), p.bases[0].unneeded_stage), ("old:1", true));
        assert!(human(&p, false).contains("a stage the legacy builder builds though the target does not need it"));
        // Nothing to build, nothing to pull.
        let wanted: BTreeSet<String> = ["solo".into()].into();
        assert!(make(&snap, Some(&wanted), &BTreeSet::new(), &none, &none, true).bases.is_empty());
    }

    #[test]
    fn settling_changes_only_the_steps_that_waited() {
        let snap = waiting();
        let none = BTreeMap::new();
        let p = make(&snap, None, &BTreeSet::new(), &none, &none, false);
        let reuse: BTreeMap<String, String> =
            [("api".to_string(), "ai-infra-api:old".to_string()), ("solo".to_string(), "ai-infra-solo:x".to_string())]
                .into();
        let pull: BTreeMap<String, String> = [("web".to_string(), "r.io/ai-infra-web:inputs-1".to_string())].into();
        let (settled, said) = settle(p.clone(), &reuse, &pull);
        assert_eq!(settled.steps[0].action, Action::Reuse { image: "ai-infra-api:old".into() });
        assert_eq!(settled.steps[1].action, Action::Pull { image: "r.io/ai-infra-web:inputs-1".into() });
        assert_eq!(settled.steps[1].otherwise, Some(Action::Build { no_cache: false }));
        assert_eq!(settled.steps[2], p.steps[2], "solo did not wait: the plan made before step 1 stands");
        assert_eq!(
            said,
            [
                "api: reuse instead of building: ai-infra-api:old has the same inputs",
                "web: pull instead of building: the registry has this build as r.io/ai-infra-web:inputs-1"
            ]
        );
        assert!(!settled.steps[0].reason.contains("its inputs are known once"), "{}", settled.steps[0].reason);
        let (same, said) = settle(p.clone(), &none, &none);
        assert!(said.is_empty());
        assert_eq!(
            same.steps.iter().map(|s| &s.action).collect::<Vec<_>>(),
            p.steps.iter().map(|s| &s.action).collect::<Vec<_>>()
        );
        assert_eq!(same.steps[0].reason, "MISSING: why", "once the base is here, the reason no longer says it waits");
    }

    #[test]
    fn a_child_of_an_up_to_date_parent_whose_base_is_missing_waits_for_that_base() {
        let mut snap = waiting();
        snap.statuses[0].state = State::Ok;
        let none = BTreeMap::new();
        let p = make(&snap, None, &BTreeSet::new(), &none, &none, false);
        assert_eq!(p.steps[0].action, Action::Skip);
        assert_eq!(p.steps[1].waits, ["python:3"], "web's digest includes api's, which includes python:3's ID");
        assert_eq!(p.bases.len(), 1);
        assert_eq!(p.bases[0].services, ["web"], "pulled for the child that builds");
    }
}
