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

/// Parses env-file text; a malformed line is an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<Entry> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let body = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = body.split_once('=') else {
            bail!("line {line_no}: expected KEY=value, found {:?}", shorten(line));
        };
        let key = key.trim_end();
        if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            bail!("line {line_no}: {key:?} is not a valid name (letters, digits and '_', not starting with a digit)");
        }
        let value = parse_value(rest.trim_start()).map_err(|e| anyhow::anyhow!("line {line_no}: {key}: {e}"))?;
        if let Some(prev) = out.iter().position(|e| e.key == key) {
            out.remove(prev);
        }
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
        anyhow::anyhow!("{path} is not UTF-8 text (invalid byte at offset {}): save it as UTF-8", e.utf8_error().valid_up_to())
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
