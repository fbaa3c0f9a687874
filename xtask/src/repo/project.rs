//! The project: its root, its services (folders under `services/` with a Dockerfile, plus the
//! entries of `services.toml`), each one's Dockerfile analysed for a tag, and the dependency
//! graph between them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::repo::dockerfile::{self, Analysis};

/// The file that holds the few per-service settings (see its header for the format).
pub const SETTINGS: &str = "services.toml";

/// One image the project builds.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Build context, relative to the root.
    pub context: Utf8PathBuf,
    /// Dockerfile, relative to the root.
    pub dockerfile: Utf8PathBuf,
    pub target: Option<String>,
}

#[derive(Debug)]
pub struct Project {
    pub root: Utf8PathBuf,
    /// Sorted by name.
    pub services: Vec<Service>,
}

/// The project root: `AI_INFRA_ROOT`, else the workspace this xtask belongs to.
pub fn root() -> Result<Utf8PathBuf> {
    if let Some(r) = std::env::var_os("AI_INFRA_ROOT") {
        let r =
            Utf8PathBuf::from_path_buf(r.into()).map_err(|p| anyhow::anyhow!("AI_INFRA_ROOT {p:?} is not UTF-8"))?;
        if !r.join("services").is_dir() {
            bail!(
                "AI_INFRA_ROOT={r} has no services/ folder: point it at a root laid out like the ai-infra repository"
            );
        }
        // One spelling of the root (`.`, a path through a link, the absolute path): the engine
        // `engine up` starts is known by it, and must be found again however it is named.
        return Ok(r.canonicalize_utf8().unwrap_or(r));
    }
    let manifest = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest.parent().unwrap_or(manifest).to_path_buf())
}

impl Project {
    pub fn load(root: &Utf8Path) -> Result<Project> {
        let services_dir = root.join("services");
        let mut found: BTreeMap<String, Service> = BTreeMap::new();
        let entries = std::fs::read_dir(&services_dir).with_context(|| format!("cannot read {services_dir}"))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {services_dir}"))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| anyhow::anyhow!("services/{n:?}: folder name is not UTF-8"))?;
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            check_name(&name).with_context(|| format!("services/{name}"))?;
            let rel = Utf8PathBuf::from("services").join(&name);
            found.insert(
                name.clone(),
                Service { name, context: rel.clone(), dockerfile: rel.join("Dockerfile"), target: None },
            );
        }
        let settings_path = root.join(SETTINGS);
        if settings_path.exists() {
            let text =
                std::fs::read_to_string(&settings_path).with_context(|| format!("cannot read {settings_path}"))?;
            apply_settings(&text, &mut found).with_context(|| SETTINGS.to_string())?;
        }
        for s in found.values() {
            let path = root.join(&s.dockerfile);
            if !path.is_file() && !rendered_by_template(root, &s.dockerfile) {
                let hint = if s.dockerfile == s.context.join("Dockerfile") {
                    "add a Dockerfile, or move the folder out of services/".to_string()
                } else {
                    format!("fix the dockerfile setting of [{}] in {SETTINGS}", s.name)
                };
                bail!("service {}: {} has no Dockerfile at {}: {hint}", s.name, s.context, s.dockerfile);
            }
            if !root.join(&s.context).is_dir() {
                bail!(
                    "service {}: build context {} is not a folder: fix [{}] in {SETTINGS}",
                    s.name,
                    s.context,
                    s.name
                );
            }
        }
        Ok(Project { root: root.to_path_buf(), services: found.into_values().collect() })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Whether `templates/<svc>/<path>.tpl` renders this file (`services/<svc>/<path>`).
fn rendered_by_template(root: &Utf8Path, file: &Utf8Path) -> bool {
    let Ok(rest) = file.strip_prefix("services") else { return false };
    root.join("templates").join(format!("{rest}.tpl")).is_file()
}

fn check_name(name: &str) -> Result<()> {
    if !crate::repo::reference::valid_path_component(&format!("ai-infra-{name}")) {
        bail!("{name:?} is not a valid service name: use lowercase letters, digits, '.', '_' or '-' (it becomes the image name ai-infra-{name})");
    }
    Ok(())
}

/// Reads `services.toml` (TOML, parsed by the `toml` crate): `[name]` tables with `context`,
/// `dockerfile` and `target` string values (paths relative to the root). A table for a name
/// that is not a folder under `services/` declares a further image and must name its dockerfile.
fn apply_settings(text: &str, services: &mut BTreeMap<String, Service>) -> Result<()> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        anyhow::anyhow!("{}{} (it is TOML: [service] tables of key = \"value\")", at.unwrap_or_default(), e.message())
    })?;
    for (name, value) in &table {
        let Some(settings) = value.as_table() else {
            bail!("{name} = ...: settings go in a [{name}] table, e.g. [{name}] then target = \"stage\"");
        };
        check_name(name).with_context(|| format!("[{name}]"))?;
        let entry = services.entry(name.to_string()).or_insert_with(|| Service {
            name: name.to_string(),
            context: Utf8PathBuf::new(),
            dockerfile: Utf8PathBuf::new(),
            target: None,
        });
        for (key, value) in settings {
            let value = value
                .as_str()
                .with_context(|| format!("[{name}] {key}: the value must be a string, e.g. {key} = \"...\""))?;
            let at = || format!("[{name}] {key}");
            match key.as_str() {
                "context" => entry.context = relative(value).with_context(at)?,
                "dockerfile" => entry.dockerfile = relative(value).with_context(at)?,
                "target" => entry.target = Some(value.to_string()),
                other => bail!("[{name}]: unknown setting {other:?} (known: context, dockerfile, target)"),
            }
        }
    }
    for s in services.values_mut() {
        if s.dockerfile.as_str().is_empty() {
            bail!(
                "[{}] is not a folder under services/, so it must set dockerfile (and usually context and target)",
                s.name
            );
        }
        if s.context.as_str().is_empty() {
            s.context = s.dockerfile.parent().unwrap_or(Utf8Path::new(".")).to_path_buf();
        }
    }
    Ok(())
}

fn relative(value: &str) -> Result<Utf8PathBuf> {
    let p = Utf8PathBuf::from(value);
    if p.is_absolute() || p.components().any(|c| c.as_str() == "..") || value.is_empty() {
        bail!("{value:?} must be a path inside the project, relative to its root");
    }
    Ok(p)
}

/// A service with its Dockerfile read and analysed for one tag.
#[derive(Debug)]
pub struct Resolved {
    pub service: Service,
    pub dockerfile: Vec<u8>,
    pub analysis: Analysis,
    /// The build args passed to `docker build`.
    pub build_args: BTreeMap<String, String>,
    /// Its context's `.dockerignore`, parsed once (the walk uses it as it is).
    pub ignore: crate::repo::ignore::Ignore,
}

/// A service whose inputs cannot be read (a Dockerfile that does not parse, a missing target,
/// an undefined FROM argument, a broken parent): status ERROR with this one-line reason.
#[derive(Debug, Clone)]
pub struct Broken {
    pub service: Service,
    pub reason: String,
}

/// Reads and analyses every Dockerfile; `values` supplies build args (see `env::Values`) for the
/// ARGs a Dockerfile declares. IMAGE_TAG is always the tag. A Dockerfile that a template
/// renders is read as `rendered` has it. A service that cannot be analysed, or that builds on
/// one that cannot, is returned as broken; the others as usual, parents first. `external`
/// holds the `ONBUILD` triggers of external bases (from the engine); an internal parent's are
/// read from its Dockerfile, and a service built on a parent that has some is analysed again
/// with them.
pub fn resolve(
    project: &Project,
    tag: &str,
    values: &crate::repo::env::Values,
    rendered: &[crate::repo::render::Output],
    ignore_files: &[&str],
    external: &dockerfile::Triggers,
) -> Result<(Vec<Resolved>, Vec<Broken>)> {
    let names: BTreeSet<&str> = project.names().into_iter().collect();
    let is_service = |n: &str| names.contains(n);
    let internal = dockerfile::Internal { tag, is_service: &is_service, triggers: external };
    let mut out = Vec::new();
    let mut broken = Vec::new();
    for s in &project.services {
        match resolve_one(project, s, tag, values, rendered, &internal, ignore_files) {
            Ok(r) => out.push(r),
            Err(e) => broken.push(Broken { service: s.clone(), reason: format!("{e:#}") }),
        }
    }
    let mut triggers = external.clone();
    for r in out.iter().filter(|r| !r.analysis.onbuild.is_empty()) {
        triggers.insert(dockerfile::Source::Internal(r.service.name.clone()), r.analysis.onbuild.clone());
    }
    if triggers.len() > external.len() {
        let internal = dockerfile::Internal { tag, is_service: &is_service, triggers: &triggers };
        let on_triggers = |r: &Resolved| {
            r.analysis.parents.iter().any(|p| triggers.contains_key(&dockerfile::Source::Internal(p.clone())))
        };
        out = out
            .into_iter()
            .filter_map(|r| {
                if !on_triggers(&r) {
                    return Some(r);
                }
                match resolve_one(project, &r.service, tag, values, rendered, &internal, ignore_files) {
                    Ok(again) => Some(again),
                    Err(e) => {
                        broken.push(Broken { service: r.service, reason: format!("{e:#}") });
                        None
                    }
                }
            })
            .collect();
    }
    // A service built on a broken one cannot be classified either; parents may come later in
    // name order, so repeat until nothing moves.
    loop {
        let bad: BTreeSet<String> = broken.iter().map(|b| b.service.name.clone()).collect();
        let Some(i) = out.iter().position(|r| r.analysis.parents.iter().any(|p| bad.contains(p))) else { break };
        let r = out.remove(i);
        let parent = r.analysis.parents.iter().find(|p| bad.contains(*p)).cloned().unwrap_or_default();
        broken.push(Broken { service: r.service, reason: format!("its parent {parent} is ERROR") });
    }
    let order = topo_order(&out)?;
    let mut by_name: BTreeMap<String, Resolved> = out.into_iter().map(|r| (r.service.name.clone(), r)).collect();
    let ordered = order.into_iter().map(|n| by_name.remove(&n).expect("ordered names come from the map")).collect();
    broken.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    Ok((ordered, broken))
}

fn resolve_one(
    project: &Project,
    s: &Service,
    tag: &str,
    values: &crate::repo::env::Values,
    rendered: &[crate::repo::render::Output],
    internal: &dockerfile::Internal,
    ignore_files: &[&str],
) -> Result<Resolved> {
    let bytes = match rendered.iter().find(|o| o.path == s.dockerfile) {
        Some(o) => o.bytes.clone(),
        None => {
            std::fs::read(project.root.join(&s.dockerfile)).with_context(|| format!("cannot read {}", s.dockerfile))?
        }
    };
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", s.dockerfile))?;
    // The declared ARG names first (from the instructions alone: a FROM that needs a value
    // from .env cannot be analysed without it), then the analysis with their values.
    let mut args = BTreeMap::from([("IMAGE_TAG".to_string(), tag.to_string())]);
    let declared = dockerfile::declared_args(text).with_context(|| format!("{}", s.dockerfile))?;
    for name in declared {
        if let Some(v) = values.get(&name).filter(|_| name != "IMAGE_TAG") {
            args.insert(name, v);
        }
    }
    let mut analysis =
        dockerfile::analyze(text, s.target.as_deref(), &args, internal).with_context(|| format!("{}", s.dockerfile))?;
    // A source that is (or passes through) a symbolic link reads what the link points to,
    // including a file the run writes before it builds.
    let real = (!rendered.is_empty()).then(|| project.root.join(&s.context).canonicalize_utf8().ok()).flatten();
    let generated: Vec<String> = rendered
        .iter()
        .filter_map(|o| crate::repo::context::landed_within(real.as_deref()?, o.lands.as_deref()?))
        .filter(|rel| !rel.is_empty())
        .collect();
    let generated: Vec<&str> = generated.iter().map(String::as_str).collect();
    let followed = crate::repo::context::followed_links(&project.root, &s.context, &analysis.reads, &generated);
    analysis.reads.extend(followed);
    // A .dockerignore the builders would reject makes this service ERROR, not the whole check.
    let ignore = crate::repo::context::read_ignore(&project.root, &s.context, &s.dockerfile, ignore_files)?;
    Ok(Resolved { service: s.clone(), dockerfile: bytes, analysis, build_args: args, ignore })
}

/// Parents before children, ties by name; a cycle is an error that names it.
pub fn topo_order(services: &[Resolved]) -> Result<Vec<String>> {
    let parents: BTreeMap<&str, &BTreeSet<String>> =
        services.iter().map(|r| (r.service.name.as_str(), &r.analysis.parents)).collect();
    let mut order = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the path, 2 = done
    fn visit<'a>(
        n: &'a str,
        parents: &BTreeMap<&'a str, &'a BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(n);
                bail!(
                    "dependency cycle: {} (each builds FROM the next); break it in one of these Dockerfiles",
                    cycle.join(" -> ")
                );
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for p in parents[n].iter() {
            let (key, _) = parents.get_key_value(p.as_str()).expect("parents are services");
            visit(key, parents, state, path, order)?;
        }
        path.pop();
        state.insert(n, 2);
        order.push(n.to_string());
        Ok(())
    }
    let names: Vec<&str> = parents.keys().copied().collect();
    for n in names {
        visit(n, &parents, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// A service and every service it builds on, parents first.
pub fn with_ancestors<'a>(services: &'a [Resolved], name: &str) -> Vec<&'a Resolved> {
    let mut wanted = BTreeSet::from([name.to_string()]);
    // `services` is in topological order, so walking it backwards sees children first.
    for r in services.iter().rev() {
        if wanted.contains(&r.service.name) {
            wanted.extend(r.analysis.parents.iter().cloned());
        }
    }
    services.iter().filter(|r| wanted.contains(&r.service.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_root_is_one_root() {
        let tmp = crate::testutil::TempDir::new("root-spelling");
        std::fs::create_dir_all(tmp.path().join("real/services")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let real = tmp.path().join("real").canonicalize_utf8().unwrap();
        for spelling in [tmp.path().join("link"), tmp.path().join("real/services/.."), tmp.path().join("real")] {
            // SAFETY: this test runs in its own process (nextest) and reads the variable back at once.
            unsafe { std::env::set_var("AI_INFRA_ROOT", &spelling) };
            assert_eq!(root().unwrap(), real, "{spelling}");
        }
    }

    fn svc(name: &str) -> Service {
        Service {
            name: name.into(),
            context: format!("services/{name}").into(),
            dockerfile: format!("services/{name}/Dockerfile").into(),
            target: None,
        }
    }

    #[test]
    fn settings() {
        let mut s: BTreeMap<String, Service> = [("backend".to_string(), svc("backend"))].into();
        let text = "# c\n[backend]\ntarget = \"app\"\n\n[backend-init]\ndockerfile = \"services/backend/Dockerfile\"\ntarget = \"init\"\n";
        apply_settings(text, &mut s).unwrap();
        assert_eq!(s["backend"].target.as_deref(), Some("app"));
        assert_eq!(s["backend-init"].context, "services/backend");
        assert_eq!(s["backend-init"].target.as_deref(), Some("init"));
        let err = |t: &str| format!("{:#}", apply_settings(t, &mut BTreeMap::new()).unwrap_err());
        assert!(err("[x]\ntarget = \"a\"\n").contains("must set dockerfile"));
        assert!(err("[x]\ncolour = \"a\"\n").contains("unknown setting"));
        assert!(err("target = \"a\"\n").contains("in a [target] table"));
        assert!(err("[x]\ndockerfile = \"../up\"\n").contains("inside the project"));
        assert!(err("[x]\ndockerfile = 1\n").contains("must be a string"));
        assert!(err("[X]\n").contains("not a valid service name"));
        assert!(err("[a]\n[a]\n").contains("duplicate"));
        assert!(err("[a]\ntarget = \"x\n").contains("line 2"));
        // Valid TOML that the old subset reader refused: comments after values, literal
        // strings, quoted table names.
        let mut s: BTreeMap<String, Service> = [("backend".to_string(), svc("backend"))].into();
        apply_settings("[\"backend\"] # the API\ntarget = 'app' # note\n", &mut s).unwrap();
        assert_eq!(s["backend"].target.as_deref(), Some("app"));
    }

    fn resolved(name: &str, parents: &[&str]) -> Resolved {
        let text = "FROM scratch\n";
        let internal = dockerfile::Internal { tag: "t", is_service: &|_| true, triggers: &Default::default() };
        let mut analysis = dockerfile::analyze(text, None, &BTreeMap::new(), &internal).unwrap();
        analysis.parents = parents.iter().map(|s| s.to_string()).collect();
        Resolved {
            service: svc(name),
            dockerfile: text.into(),
            analysis,
            build_args: BTreeMap::new(),
            ignore: Default::default(),
        }
    }

    #[test]
    fn order_and_cycles() {
        let rs = vec![resolved("c", &["b"]), resolved("b", &["a"]), resolved("a", &[]), resolved("d", &["a"])];
        assert_eq!(topo_order(&rs).unwrap(), vec!["a", "b", "c", "d"]);
        let ordered: Vec<Resolved> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| {
                rs.iter()
                    .find(|r| r.service.name == *n)
                    .map(|r| resolved(n, &r.analysis.parents.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
                    .unwrap()
            })
            .collect();
        let anc: Vec<_> = with_ancestors(&ordered, "c").iter().map(|r| r.service.name.clone()).collect();
        assert_eq!(anc, vec!["a", "b", "c"]);
        let cyc = vec![resolved("a", &["c"]), resolved("b", &["a"]), resolved("c", &["b"])];
        let err = topo_order(&cyc).unwrap_err().to_string();
        assert!(err.contains("a -> c -> b -> a"), "{err}");
    }
}
