//! Config templates: `templates/<service>/**/<name>.tpl` rendered to
//! `services/<service>/**/<name>` (a `Dockerfile.tpl` renders the service's Dockerfile).
//! `{{NAME}}` takes the process environment, then `.env` (over `.env.example`); `${...}` and
//! `$name` are left exactly as written, for Docker, compose and the shell; `{{"{{"}}` writes a
//! literal `{{`.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// A template error, with where it is.
#[derive(Debug, PartialEq)]
pub struct Error {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Renders template text; `lookup` gives a variable's value.
pub fn render(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let (mut line, mut col) = (1, 1);
    let advance = |s: &str, line: &mut usize, col: &mut usize| {
        for c in s.chars() {
            if c == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
        }
    };
    while let Some(p) = rest.find("{{") {
        out.push_str(&rest[..p]);
        advance(&rest[..p], &mut line, &mut col);
        let after = &rest[p..];
        let err = |message: String| Error { line, column: col, message };
        let eol = after.find('\n').unwrap_or(after.len());
        let body_end = after[..eol].find("}}").ok_or_else(|| {
            err("unclosed {{: add the closing }} on the same line (write {{\"{{\"}} for a literal {{)".into())
        })?;
        let body = after[2..body_end].trim();
        // A quoted string is written as it is: the escape for a literal `{{`.
        let value = if let Some(literal) = body.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
            literal.to_string()
        } else {
            let valid = body.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(err(format!(
                    "{body:?} is not a variable name (letters, digits and '_'); write {{{{\"{{{{\"}}}} for a literal {{{{"
                )));
            }
            lookup(body).ok_or_else(|| err(format!("{body} is not defined: set it in .env.example (and .env)")))?
        };
        out.push_str(&value);
        advance(&after[..body_end + 2], &mut line, &mut col);
        rest = &after[body_end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One rendered file.
#[derive(Debug, Clone)]
pub struct Output {
    pub template: Utf8PathBuf,
    /// Relative to the root: `services/<service>/<path>`.
    pub path: Utf8PathBuf,
    pub bytes: Vec<u8>,
    /// The mode the writer gives the file when it is new (None: the tool's default; a file
    /// written over keeps its own).
    pub mode: Option<u32>,
    /// Where the write lands, as an absolute path with every link resolved (see `lands`).
    pub lands: Option<Utf8PathBuf>,
}

/// Where a write to `path` (relative to the root) really lands, as an absolute path with every
/// link resolved: every link on the way followed, as the write follows them (a dangling one at
/// the end included), so that `services/a/conf/app.conf` with `conf -> etc` lands at
/// `<root>/services/a/etc/app.conf`, where the context walk finds it (`context::landed_within`
/// compares it with a context's own resolved path). None where a `..` follows a folder the
/// write would create.
pub fn lands(root: &Utf8Path, path: &Utf8Path) -> Option<Utf8PathBuf> {
    landing(crate::base::atomic::resolve(&root.join(path)).ok()?)
}

/// `target` (a final link already followed) with every link of its deepest existing part
/// resolved and the folders a write would create appended; None where one of those is `..`.
fn landing(target: Utf8PathBuf) -> Option<Utf8PathBuf> {
    let mut existing = target;
    let mut created = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        created.push(existing.file_name()?.to_string());
        existing = existing.parent()?.to_path_buf();
    }
    let mut real = existing.canonicalize_utf8().ok()?;
    for part in created.iter().rev() {
        real.push(part);
    }
    Some(real)
}

/// Renders every template in memory. All errors are collected; any error means no output.
pub fn outputs(root: &Utf8Path, services: &[&str]) -> Result<Vec<Output>> {
    let dir = root.join("templates");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let values = crate::repo::env::Values::load(root)?;
    let lookup = |name: &str| values.get(name);
    let mut templates = Vec::new();
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|n| anyhow::anyhow!("templates/{n:?}: name is not UTF-8"))?;
        if name.starts_with('.') || !e.file_type()?.is_dir() {
            continue;
        }
        if !services.contains(&name.as_str()) || !root.join("services").join(&name).is_dir() {
            bail!("templates/{name} is for a service that does not exist (no services/{name}): rename or remove it");
        }
        collect(&dir.join(&name), &Utf8PathBuf::new(), &name, &mut templates)?;
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (service, rel) in templates {
        let template = Utf8PathBuf::from("templates").join(&service).join(&rel);
        let text = std::fs::read_to_string(root.join(&template))
            .with_context(|| format!("cannot read {template} (templates are UTF-8 text)"))?;
        let target_rel = Utf8PathBuf::from(rel.as_str().strip_suffix(".tpl").unwrap_or(rel.as_str()));
        let path = Utf8PathBuf::from("services").join(&service).join(&target_rel);
        check_inside(root, &service, &path)?;
        match render(&text, &lookup) {
            Ok(r) => out.push(Output { template, lands: lands(root, &path), path, bytes: r.into_bytes(), mode: None }),
            Err(e) => errors.push(format!("{template}:{}:{}: {}", e.line, e.column, e.message)),
        }
    }
    if !errors.is_empty() {
        bail!("{}; nothing was rendered", errors.join("; "));
    }
    Ok(out)
}

fn collect(dir: &Utf8Path, rel: &Utf8Path, service: &str, out: &mut Vec<(String, Utf8PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {dir}"))?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|n| anyhow::anyhow!("{dir}/{n:?}: name is not UTF-8"))?;
        let ft = e.file_type()?;
        let r = rel.join(&name);
        if ft.is_symlink() {
            bail!(
                "templates/{service}/{r} is a symbolic link: templates must be plain files inside templates/{service}"
            );
        } else if ft.is_dir() {
            collect(&dir.join(&name), &r, service, out)?;
        } else if name.ends_with(".tpl") && name.len() > 4 {
            out.push((service.to_string(), r));
        }
    }
    Ok(())
}

/// A rendered file must land inside its service folder, also through symbolic links.
fn check_inside(root: &Utf8Path, service: &str, path: &Utf8Path) -> Result<()> {
    let folder = root.join("services").join(service);
    let folder = folder.canonicalize_utf8().with_context(|| format!("cannot resolve {folder}"))?;
    // Where the write really goes: a link at the output path, dangling or not, is followed as
    // the write follows it; the deepest part of that path that exists (a dangling link counts)
    // decides, and below it the folders the write creates must not climb back out with `..`
    // (such a path does not land anywhere `landing` can tell: refused).
    let target = crate::base::atomic::resolve(&root.join(path))?;
    let real = landing(target.clone());
    // The message names where the write would land, links resolved, where that can be told.
    let to = real.as_ref().unwrap_or(&target);
    if !real.as_ref().is_some_and(|r| r.starts_with(&folder)) || path.components().any(|c| c.as_str() == "..") {
        anyhow::bail!(
            "{path} would be written outside services/{service} (to {to}): remove the link or rename the template"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_lands_where_the_links_on_its_way_lead() {
        let t = crate::testutil::TempDir::new("lands");
        let root = t.path();
        std::fs::create_dir_all(root.join("services/a/etc")).unwrap();
        std::os::unix::fs::symlink("etc", root.join("services/a/conf")).unwrap();
        std::os::unix::fs::symlink("../../envs/dev.env", root.join("services/a/env")).unwrap();
        std::os::unix::fs::symlink("/nowhere/x", root.join("services/a/out")).unwrap();
        let top = root.canonicalize_utf8().unwrap();
        let lands = |p: &str| {
            lands(root, Utf8Path::new(p)).map(|p| p.strip_prefix(&top).map_or(p.to_string(), |r| r.to_string()))
        };
        assert_eq!(lands("services/a/plain.conf").as_deref(), Some("services/a/plain.conf"));
        // A linked folder on the way, and folders the write creates below it.
        assert_eq!(lands("services/a/conf/app.conf").as_deref(), Some("services/a/etc/app.conf"));
        assert_eq!(lands("services/a/conf/new/x.conf").as_deref(), Some("services/a/etc/new/x.conf"));
        // A dangling link is written through: the file it names, folders and all.
        assert_eq!(lands("services/a/env").as_deref(), Some("envs/dev.env"));
        // Outside the root it lands outside; climbing out of a folder not there yet, nowhere.
        assert_eq!(lands("services/a/out").as_deref(), Some("/nowhere/x"));
        assert_eq!(lands("services/a/new/../../x"), None);
    }

    fn vars(n: &str) -> Option<String> {
        match n {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(t: &str) -> String {
        render(t, &vars).unwrap()
    }

    fn err(t: &str) -> Error {
        render(t, &vars).unwrap_err()
    }

    #[test]
    fn substitution_rules() {
        assert_eq!(ok("server_name {{HOST}};"), "server_name example.org;");
        assert_eq!(ok("{{ HOST }}|{{EMPTY}}|"), "example.org||");
        // Everything of the shell, compose and Docker stays as written.
        let runtime = "proxy_set_header Host $host; ${REDIS_PASSWORD} ${ARCH:-amd64} $$ $ }} {";
        assert_eq!(ok(runtime), runtime);
        assert_eq!(ok("literal {{\"{{\"}}HOST}} and }}"), "literal {{HOST}} and }}");
        assert_eq!(ok("no variables\n"), "no variables\n");
        assert_eq!(ok("ünïcode {{HOST}}"), "ünïcode example.org");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err("a\nb {{NOPE}} c");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("NOPE is not defined"), "{}", e.message);
        let e = err("x {{HOST");
        assert_eq!((e.line, e.column), (1, 3));
        assert!(e.message.contains("unclosed"));
        let e = err("{{HOST\n}}");
        assert!(e.message.contains("unclosed"));
        let e = err("ok\n  {{BAD-NAME}}");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("not a variable name"));
        assert!(err("{{1X}}").message.contains("not a variable name"));
        assert!(err("{{}}").message.contains("not a variable name"));
        assert!(err("ü {{HOST:-x}}").message.contains("not a variable name"));
        assert_eq!(err("ü {{HOST:-x}}").column, 3);
    }

    #[test]
    fn outputs_and_their_errors() {
        let dir = crate::testutil::TempDir::new("render");
        let root = dir.path();
        std::fs::create_dir_all(root.join("services/web/conf")).unwrap();
        std::fs::create_dir_all(root.join("templates/web/conf")).unwrap();
        std::fs::write(root.join(".env.example"), "HOST=a.example\n").unwrap();
        std::fs::write(root.join("templates/web/conf/site.conf.tpl"), "server {{HOST}};\n").unwrap();
        std::fs::write(root.join("templates/web/README"), "not a template").unwrap();
        let out = outputs(root, &["web"]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].path, "services/web/conf/site.conf");
        assert_eq!(out[0].bytes, b"server a.example;\n");
        // Twice: identical bytes.
        assert_eq!(outputs(root, &["web"]).unwrap()[0].bytes, out[0].bytes);

        std::fs::write(root.join("templates/web/bad.tpl"), "x\n{{UNSET}}\n").unwrap();
        let e = outputs(root, &["web"]).unwrap_err().to_string();
        assert!(
            e.contains("templates/web/bad.tpl:2:1: UNSET is not defined") && e.contains("nothing was rendered"),
            "{e}"
        );
        std::fs::remove_file(root.join("templates/web/bad.tpl")).unwrap();

        std::fs::create_dir_all(root.join("templates/ghost")).unwrap();
        let e = outputs(root, &["web"]).unwrap_err().to_string();
        assert!(e.contains("templates/ghost is for a service that does not exist"), "{e}");
        std::fs::remove_dir(root.join("templates/ghost")).unwrap();

        // A link in the service folder that leads outside it.
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::fs::remove_dir_all(root.join("services/web/conf")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("services/web/conf")).unwrap();
        let e = outputs(root, &["web"]).unwrap_err().to_string();
        assert!(e.contains("outside services/web"), "{e}");
        let landing = root.canonicalize_utf8().unwrap().join("elsewhere/site.conf");
        assert!(e.contains(&format!("(to {landing})")), "where the write lands, links resolved: {e}");
        // A dangling link at the output path itself: the write would create its target.
        std::fs::remove_file(root.join("services/web/conf")).unwrap();
        std::fs::create_dir_all(root.join("services/web/conf")).unwrap();
        let out = outputs(root, &["web"]).unwrap();
        let file = root.join(&out[0].path);
        let _ = std::fs::remove_file(&file);
        std::os::unix::fs::symlink(root.join("elsewhere/made.conf"), &file).unwrap();
        let e = outputs(root, &["web"]).unwrap_err().to_string();
        assert!(e.contains("outside services/web"), "{e}");
        assert!(crate::cmd::render::run(root, &["web"], false, true).is_err());
        assert!(!root.join("elsewhere/made.conf").exists(), "nothing is written outside");
        // The same through a folder that does not exist yet and `..` parts.
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("sub/../../../../elsewhere/made.conf", &file).unwrap();
        let e = outputs(root, &["web"]).unwrap_err().to_string();
        assert!(e.contains("outside services/web"), "{e}");
        assert!(crate::cmd::render::run(root, &["web"], false, true).is_err());
        assert!(!root.join("elsewhere/made.conf").exists(), "nothing is written outside");
        // A link that stays inside still renders.
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("real.conf", &file).unwrap();
        crate::cmd::render::run(root, &["web"], false, true).unwrap();
        assert!(file.parent().unwrap().join("real.conf").exists());
    }
}
