//! The scheduler, a pure function: given the steps not yet started and what finished (and
//! whether it succeeded), which steps may start now and which never will because a parent
//! did not succeed. The executor (`build::execute`) only asks it and runs what it says.

use std::collections::BTreeMap;

use crate::decide::plan::Step;

/// What the executor does with a pending step now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every parent succeeded: start it.
    Start(String),
    /// A parent finished without success: it never starts.
    Skip { service: String, parent: String },
}

/// The decisions for now, in plan order: at most `free` starts (the jobs not running), and
/// every step whose parent did not succeed, up to where the starts run out. A step whose
/// parents are still running or pending waits. `finished` maps each finished service to
/// whether it succeeded (built, reused or pulled); a skipped step counts as not succeeded, so
/// its own children are skipped in the same call.
pub fn next(pending: &[&Step], finished: &BTreeMap<String, bool>, free: usize) -> Vec<Decision> {
    let mut skipped: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    let mut starts = 0;
    for step in pending {
        if starts >= free {
            break;
        }
        let failed = |p: &&String| finished.get(*p) == Some(&false) || skipped.contains(&p.as_str());
        if let Some(parent) = step.after.iter().find(failed) {
            skipped.push(&step.service);
            out.push(Decision::Skip { service: step.service.clone(), parent: parent.clone() });
            continue;
        }
        if step.after.iter().all(|p| finished.contains_key(p)) {
            starts += 1;
            out.push(Decision::Start(step.service.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::plan::Action;

    fn step(name: &str, after: &[&str]) -> Step {
        Step {
            service: name.into(),
            action: Action::Build { no_cache: false },
            reason: String::new(),
            after: after.iter().map(|a| a.to_string()).collect(),
            otherwise: None,
            waits: Vec::new(),
        }
    }

    fn done(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(n, ok)| (n.to_string(), *ok)).collect()
    }

    fn start(n: &str) -> Decision {
        Decision::Start(n.into())
    }

    fn skip(n: &str, p: &str) -> Decision {
        Decision::Skip { service: n.into(), parent: p.into() }
    }

    #[test]
    fn independent_steps_start_up_to_the_free_jobs() {
        let (a, b, c) = (step("a", &[]), step("b", &[]), step("c", &[]));
        let pending = [&a, &b, &c];
        assert_eq!(next(&pending, &done(&[]), 2), vec![start("a"), start("b")]);
        assert_eq!(next(&pending, &done(&[]), 5), vec![start("a"), start("b"), start("c")]);
        assert_eq!(next(&pending, &done(&[]), 0), vec![]);
    }

    #[test]
    fn children_wait_for_their_parents_and_others_go_past_them() {
        let (base, app, tool) = (step("base", &[]), step("app", &["base"]), step("tool", &[]));
        assert_eq!(next(&[&app, &tool], &done(&[]), 2), vec![start("tool")], "base is still running");
        assert_eq!(next(&[&app], &done(&[("base", true)]), 1), vec![start("app")]);
        assert_eq!(next(&[&base, &app], &done(&[]), 4), vec![start("base")]);
    }

    #[test]
    fn a_failed_parent_skips_its_descendants_at_once() {
        let (mid, leaf, other) = (step("mid", &["base"]), step("leaf", &["mid"]), step("other", &[]));
        assert_eq!(
            next(&[&mid, &leaf, &other], &done(&[("base", false)]), 1),
            vec![skip("mid", "base"), skip("leaf", "mid"), start("other")]
        );
        let two = step("two", &["base", "ok"]);
        assert_eq!(next(&[&two], &done(&[("ok", true), ("base", false)]), 1), vec![skip("two", "base")]);
    }

    #[test]
    fn no_free_job_means_no_decision_yet() {
        let (mid, other) = (step("mid", &["base"]), step("other", &[]));
        assert_eq!(next(&[&other, &mid], &done(&[("base", false)]), 1), vec![start("other")]);
        assert_eq!(next(&[&mid], &done(&[("base", false)]), 0), vec![]);
    }
}
