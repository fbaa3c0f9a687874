//! `.env` and `.env.example`: the parser (KEY=value, `export`, quotes, escapes, comments, CRLF)
//! and the values that builds and templates read.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

/// One `KEY=value` line of an env file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
    /// The line as written, without its line end.
    pub raw: String,
}

/// The lines of env-file text: LF, CRLF and a bare CR (old Mac files) each end a line, so
/// that no value swallows the next key.
fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\n', '\r']) {
        out.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    out.push(rest);
    out
}

/// The line end a file uses, for the lines appended to it.
fn line_end(text: &str) -> &'static str {
    if text.contains("\r\n") {
        "\r\n"
    } else if text.contains('\r') && !text.contains('\n') {
        "\r"
    } else {
        "\n"
    }
}

/// Keys defined more than once, each as "KEY on lines A and B" (the last one counts).
pub fn duplicates(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for e in parse_all(text).unwrap_or_default() {
        if let Some(first) = seen.insert(e.key.clone(), e.line) {
            out.push(format!("{} on lines {first} and {} (the value of line {} counts)", e.key, e.line, e.line));
        }
    }
    out
}

/// Parses env-file text; a malformed line is an error naming its line number. A key defined
/// twice keeps its last value.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    for e in parse_all(text)? {
        if let Some(prev) = out.iter().position(|x| x.key == e.key) {
            out.remove(prev);
        }
        out.push(e);
    }
    Ok(out)
}

/// Every `KEY=value` line, duplicates included.
fn parse_all(text: &str) -> Result<Vec<Entry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<Entry> = Vec::new();
    for (n, raw) in lines(text).into_iter().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let body = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = body.split_once('=') else {
            bail!("line {line_no}: expected KEY=value, found {:?}", shorten(line));
        };
        let key = key.trim_end();
        if key.is_empty()
            || !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            bail!("line {line_no}: {key:?} is not a valid name (letters, digits and '_', not starting with a digit)");
        }
        let value = parse_value(rest.trim_start()).map_err(|e| anyhow::anyhow!("line {line_no}: {key}: {e}"))?;
        out.push(Entry { line: line_no, key: key.to_string(), value, raw: raw.to_string() });
    }
    Ok(out)
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_value(v: &str) -> Result<String, String> {
    let after_quote = |rest: &str| -> Result<(), String> {
        let rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            Ok(())
        } else {
            Err(format!("unexpected {:?} after the closing quote", shorten(rest)))
        }
    };
    if let Some(inner) = v.strip_prefix('\'') {
        let end = inner.find('\'').ok_or("unterminated single quote")?;
        after_quote(&inner[end + 1..])?;
        return Ok(inner[..end].to_string());
    }
    if let Some(inner) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    after_quote(&inner[i + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, c @ ('"' | '\\' | '$' | '\''))) => out.push(c),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote".into());
    }
    // Unquoted: a '#' after white space starts a comment.
    let mut end = v.len();
    let bytes = v.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && bytes[i - 1].is_ascii_whitespace() {
            end = i;
            break;
        }
    }
    Ok(v[..end].trim_end().to_string())
}

/// Reads an env file; a missing one is None.
pub fn read(path: &Utf8Path) -> Result<Option<(String, Vec<Entry>)>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    if meta.is_dir() {
        bail!("{path} is a folder, not a file: move it out of the way");
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}: check its permissions"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{path} is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })?;
    let entries = parse(&text).with_context(|| format!("{path}"))?;
    Ok(Some((text, entries)))
}

/// The values a build sees: `.env.example`'s defaults overlaid by `.env` (what `sync-env` would
/// leave in `.env`).
pub fn values(root: &Utf8Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for file in [".env.example", ".env"] {
        if let Some((_, entries)) = read(&root.join(file))? {
            out.extend(entries.into_iter().map(|e| (e.key, e.value)));
        }
    }
    Ok(out)
}

/// The one lookup of the values that build args and templates name: the process environment,
/// then `.env`, then `.env.example` (as compose reads them).
#[derive(Debug, Clone, Default)]
pub struct Values {
    files: BTreeMap<String, String>,
    /// Whether the process environment comes first: always, but for `Values::default()` (no
    /// values at all, for the bench's generated workspaces).
    environment: bool,
}

impl Values {
    pub fn load(root: &Utf8Path) -> Result<Values> {
        Ok(Values { files: values(root)?, environment: true })
    }

    pub fn get(&self, name: &str) -> Option<String> {
        let from_env = if self.environment { std::env::var(name).ok() } else { None };
        from_env.or_else(|| self.files.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap().into_iter().map(|e| (e.key, e.value)).collect()
    }

    #[test]
    fn conventions() {
        let text = "# c\nA=1\nexport B = two words \nC='single $x # no'\nD=\"dq \\\"x\\\" \\n \\$y\" # comment\nE=\nF=a=b=c\nG=x#y\nH=x #y\r\nI=\"\"\n";
        assert_eq!(
            kv(text),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "single $x # no".into()),
                ("D".into(), "dq \"x\" \n $y".into()),
                ("E".into(), "".into()),
                ("F".into(), "a=b=c".into()),
                ("G".into(), "x#y".into()),
                ("H".into(), "x".into()),
                ("I".into(), "".into()),
            ]
        );
        assert_eq!(parse("A=1\r\n").unwrap()[0].raw, "A=1");
        assert_eq!(kv("A=1\nA=2\n"), vec![("A".into(), "2".into())]);
    }

    #[test]
    fn a_bare_cr_ends_a_line_and_duplicates_are_named() {
        assert_eq!(kv("A=cr\rB=x\r"), vec![("A".into(), "cr".into()), ("B".into(), "x".into())]);
        assert_eq!(
            kv("A=1\r\n\r\nB=2\rC=3\n"),
            vec![("A".into(), "1".into()), ("B".into(), "2".into()), ("C".into(), "3".into())]
        );
        assert_eq!(parse("A=1\rB=x").unwrap()[1].line, 2);
        assert_eq!(duplicates("A=1\nB=2\n# c\nA=3\n"), vec!["A on lines 1 and 4 (the value of line 4 counts)"]);
        assert!(duplicates("A=1\nB=2\n").is_empty());
    }

    #[test]
    fn values_come_from_the_environment_then_env_then_the_example() {
        let dir = crate::testutil::TempDir::new("values");
        let root = dir.path();
        std::fs::write(root.join(".env.example"), "XTASK_UNIT_A=example\nXTASK_UNIT_B=example\nXTASK_UNIT_C=example\n")
            .unwrap();
        std::fs::write(root.join(".env"), "XTASK_UNIT_A=env\nXTASK_UNIT_B=env\n").unwrap();
        // A name no other test sets: the process environment is shared by the test threads.
        std::env::set_var("XTASK_UNIT_A", "environment");
        let values = Values::load(root).unwrap();
        assert_eq!(values.get("XTASK_UNIT_A").as_deref(), Some("environment"));
        assert_eq!(values.get("XTASK_UNIT_B").as_deref(), Some("env"));
        assert_eq!(values.get("XTASK_UNIT_C").as_deref(), Some("example"));
        assert_eq!(values.get("XTASK_UNIT_D"), None);
        assert_eq!(Values::default().get("XTASK_UNIT_A"), None);
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err("A=1\nnonsense\n").starts_with("line 2: expected KEY=value"));
        assert!(err("1A=x").contains("not a valid name"));
        assert!(err("A-B=x").contains("not a valid name"));
        assert!(err("A='x").contains("unterminated single quote"));
        assert!(err("A=\"x").contains("unterminated double quote"));
        assert!(err("A=\"x\" y").contains("after the closing quote"));
    }
}

/// Whether a build arg's value must never be shown.
pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// What `sync-env` would do to `.env`.
#[derive(Debug, Default, PartialEq)]
pub struct Sync {
    /// The new text of `.env`, when it changes.
    pub text: Option<String>,
    pub created: bool,
    /// Keys copied from `.env.example`.
    pub added: Vec<String>,
    /// Keys whose default changed in `.env.example` since the last sync, while `.env` keeps
    /// another value: (key, old default, new default).
    pub defaults_moved: Vec<(String, String, String)>,
    /// Keys only `.env` has.
    pub drift: Vec<String>,
}

/// Plans the sync of `.env` from `.env.example`, keeping every byte the user wrote: new keys
/// are appended with the example's line, under a comment; nothing is overwritten. `last` is
/// `.env.example` as it was at the previous sync, to tell a moved default from a user's value.
pub fn plan_sync(example: &[Entry], env: Option<&str>, last: Option<&[Entry]>, example_text: &str) -> Result<Sync> {
    let Some(env_text) = env else {
        return Ok(Sync {
            text: Some(example_text.to_string()),
            created: true,
            added: example.iter().map(|e| e.key.clone()).collect(),
            ..Sync::default()
        });
    };
    let current = parse(env_text).context(".env")?;
    let has = |k: &str| current.iter().any(|e| e.key == k);
    let missing: Vec<&Entry> = example.iter().filter(|e| !has(&e.key)).collect();
    let mut sync = Sync {
        added: missing.iter().map(|e| e.key.clone()).collect(),
        drift: current.iter().filter(|e| !example.iter().any(|x| x.key == e.key)).map(|e| e.key.clone()).collect(),
        ..Sync::default()
    };
    if let Some(last) = last {
        for e in example {
            let old = last.iter().find(|l| l.key == e.key);
            let mine = current.iter().find(|c| c.key == e.key);
            if let (Some(old), Some(mine)) = (old, mine) {
                if old.value != e.value && mine.value != e.value {
                    sync.defaults_moved.push((e.key.clone(), old.value.clone(), e.value.clone()));
                }
            }
        }
    }
    if !missing.is_empty() {
        let eol = line_end(env_text);
        let mut text = env_text.to_string();
        if !text.is_empty() && !text.ends_with(['\n', '\r']) {
            text.push_str(eol);
        }
        text.push_str(&format!("{eol}# Added by `cargo xtask sync-env` from .env.example{eol}"));
        for e in &missing {
            text.push_str(&e.raw);
            text.push_str(eol);
        }
        sync.text = Some(text);
    }
    Ok(sync)
}

/// What `sync-env` would find and do now: `.env.example` (None when there is none), `.env` as
/// it is, and the plan. Reads the files; writes nothing.
pub struct Pending {
    pub example_text: String,
    pub current: Option<(String, Vec<Entry>)>,
    pub plan: Sync,
}

/// Reads `.env.example`, `.env` and the example as it was at the last sync (kept under the
/// tool's state folder), and plans the sync; None when there is no `.env.example`.
pub fn pending(root: &Utf8Path) -> Result<Option<Pending>> {
    let Some((example_text, example)) = read(&root.join(".env.example"))? else { return Ok(None) };
    let env_path = root.join(".env");
    let current = read(&env_path)?;
    let last = std::fs::read_to_string(last_example(root)).ok().and_then(|t| parse(&t).ok());
    let plan = plan_sync(&example, current.as_ref().map(|(t, _)| t.as_str()), last.as_deref(), &example_text)
        .with_context(|| format!("{env_path}"))?;
    Ok(Some(Pending { example_text, current, plan }))
}

/// Where `.env.example` is kept as it was at the last sync.
pub fn last_example(root: &Utf8Path) -> camino::Utf8PathBuf {
    crate::base::state_dir(root).join("env.example.last")
}

/// The files step 2 would write, as render outputs (each with where its write lands through
/// links, as `base::atomic::write` follows them), so that a check counts them as the builds
/// will read them: `.env`, and `.env.bak` (what `.env` held, with `.env`'s mode).
pub fn synced_files(root: &Utf8Path, pending: &Pending) -> Vec<crate::repo::render::Output> {
    use std::os::unix::fs::PermissionsExt;
    let Some(text) = &pending.plan.text else { return Vec::new() };
    let file = |name: &str, bytes: &str, mode: Option<u32>| {
        let bytes = bytes.as_bytes().to_vec();
        let lands = crate::repo::render::lands(root, Utf8Path::new(name));
        crate::repo::render::Output { template: ".env.example".into(), path: name.into(), bytes, mode, lands }
    };
    let mut out = vec![file(".env", text, None)];
    if let Some((old, _)) = &pending.current {
        let mode = std::fs::metadata(root.join(".env")).ok().map(|m| m.permissions().mode() & 0o7777);
        out.push(file(".env.bak", old, mode));
    }
    out
}

/// Shows a value unless its key looks secret.
pub fn shown(key: &str, value: &str) -> String {
    if is_secret(key) {
        "(hidden)".to_string()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod sync_tests {
    use super::*;

    fn entries(t: &str) -> Vec<Entry> {
        parse(t).unwrap()
    }

    #[test]
    fn creates_then_appends_and_keeps_the_users_bytes() {
        let example = "# defaults\nA=1\nB=\"two\"\n";
        let s = plan_sync(&entries(example), None, None, example).unwrap();
        assert!(s.created);
        assert_eq!(s.text.as_deref(), Some(example));

        let mine = "# my notes\nA=custom # mine\n\nX=only-here";
        let example2 = "A=1\nB=\"two\"\nexport C='3'\n";
        let s = plan_sync(&entries(example2), Some(mine), None, example2).unwrap();
        assert_eq!(s.added, vec!["B", "C"]);
        assert_eq!(s.drift, vec!["X"]);
        let text = s.text.unwrap();
        assert!(text.starts_with(mine), "the user's bytes come first, unchanged: {text:?}");
        assert!(
            text.ends_with("\n# Added by `cargo xtask sync-env` from .env.example\nB=\"two\"\nexport C='3'\n"),
            "{text:?}"
        );
        assert_eq!(kv(&text), vec![("A", "custom"), ("X", "only-here"), ("B", "two"), ("C", "3")]);
        // In sync: nothing to write.
        let s = plan_sync(&entries(example2), Some(&text), None, example2).unwrap();
        assert_eq!(s.text, None);
    }

    fn kv(t: &str) -> Vec<(&'static str, &'static str)> {
        parse(t).unwrap().into_iter().map(|e| (&*e.key.leak(), &*e.value.leak())).collect()
    }

    #[test]
    fn crlf_files_stay_crlf_and_moved_defaults_are_reported() {
        let mine = "A=1\r\n";
        let example = "A=2\nB=3\n";
        let last = entries("A=1\n");
        let s = plan_sync(&entries(example), Some(mine), Some(&last), example).unwrap();
        assert_eq!(
            s.text.as_deref(),
            Some("A=1\r\n\r\n# Added by `cargo xtask sync-env` from .env.example\r\nB=3\r\n")
        );
        assert_eq!(s.defaults_moved, vec![("A".to_string(), "1".to_string(), "2".to_string())]);
        assert_eq!(shown("DB_PASSWORD", "x"), "(hidden)");
        assert_eq!(shown("PORT", "80"), "\"80\"");
    }

    #[test]
    fn a_bare_cr_file_keeps_its_values_and_line_ends() {
        let mine = "A=cr\rB=x\r";
        let s = plan_sync(&entries("A=1\nB=2\nC=3\n"), Some(mine), None, "A=1\nB=2\nC=3\n").unwrap();
        assert_eq!(s.added, vec!["C"]);
        let text = s.text.unwrap();
        assert_eq!(text, "A=cr\rB=x\r\r# Added by `cargo xtask sync-env` from .env.example\rC=3\r");
        assert_eq!(kv(&text), vec![("A", "cr"), ("B", "x"), ("C", "3")]);
    }

    #[test]
    fn a_malformed_env_writes_nothing() {
        let err = plan_sync(&entries("A=1\n"), Some("A=1\noops\n"), None, "A=1\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
