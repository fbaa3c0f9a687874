//! `.dockerignore` as Docker implements it (moby/patternmatcher): line cleaning, `!` exceptions,
//! `*`, `?`, `[...]`, `\` escapes and `**`, "matches the path or one of its parents", and the
//! last matching pattern wins.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Any,
    /// `[...]`: a class; `negated` for `[^...]` (only `^`: `[!a]` is a class of `!` and `a`).
    /// Docker matches it as a regular expression class, so a negated class matches `/` too.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: any number of whole directories, including none.
    Dirs,
    /// `**` at the end: anything at all.
    All,
}

#[derive(Debug, Clone)]
pub struct Pattern {
    pub exception: bool,
    tokens: Vec<Token>,
}

/// The patterns of one `.dockerignore`, in file order.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses `.dockerignore` text. `#` in column 1 makes a comment; lines are trimmed; a
    /// leading `!` is an exception; patterns are path-cleaned and lose one leading `/`.
    pub fn parse(text: &str) -> Result<Ignore> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
                if p.is_empty() {
                    bail!("line {}: a lone '!' excludes nothing; write !PATH to re-include PATH", n + 1);
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if cleaned == "." {
                continue;
            }
            let tokens = compile(&cleaned).map_err(|e| {
                anyhow::anyhow!(
                    "line {}: {cleaned:?} is not a valid pattern ({e}); Docker fails the build on it",
                    n + 1
                )
            })?;
            patterns.push(Pattern { exception, tokens });
        }
        Ok(Ignore { patterns })
    }

    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative, `/`-separated, clean) is left out of the build context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if p.matches_or_parent(path) {
                excluded = !p.exception;
            }
        }
        excluded
    }
}

impl Pattern {
    /// A pattern that is not an exception, as COPY sources and `.dockerignore` lines are written.
    pub fn new(text: &str) -> Result<Pattern> {
        Ok(Pattern { exception: false, tokens: compile(text).map_err(|e| anyhow::anyhow!("pattern {text:?}: {e}"))? })
    }

    /// Whether the pattern matches `path` or one of its parent folders.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if matches(&self.tokens, path) {
            return true;
        }
        // Each parent directory, shortest first: "a", "a/b", ... excluding the path itself.
        path.match_indices('/').any(|(i, _)| matches(&self.tokens, &path[..i]))
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is the same as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() { Token::All } else { Token::Dirs });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(&c) => tokens.push(Token::Char(c)),
                    None => return Err("ends with a lone '\\'".into()),
                }
            }
            '[' => {
                // Go's filepath.Match syntax, which Docker checks every pattern against: only
                // `^` negates (`[!a]` is a class of `!` and `a`); an item may not start with
                // `-` or `]` (escape them); the class must close.
                let mut j = i + 1;
                let negated = chars.get(j) == Some(&'^');
                if negated {
                    j += 1;
                }
                let mut items = Vec::new();
                while chars.get(j) != Some(&']') || items.is_empty() {
                    let lo = class_char(&chars, &mut j)?;
                    let hi = if chars.get(j) == Some(&'-') {
                        j += 1;
                        class_char(&chars, &mut j)?
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err(format!("range {lo}-{hi} is backwards"));
                    }
                    items.push((lo, hi));
                }
                tokens.push(Token::Class { negated, items });
                i = j;
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

/// One character of a class (`\\` escapes the next), as Go's `getEsc` reads it.
fn class_char(chars: &[char], j: &mut usize) -> Result<char, String> {
    let c = match chars.get(*j) {
        None => return Err("unclosed '['".into()),
        Some(c @ ('-' | ']')) => {
            return Err(format!("'{c}' cannot start an item of a [...] class; escape it as '\\{c}'"))
        }
        Some('\\') => {
            *j += 1;
            *chars.get(*j).ok_or("unclosed '['")?
        }
        Some(c) => *c,
    };
    *j += 1;
    if *j >= chars.len() {
        return Err("unclosed '['".into());
    }
    Ok(c)
}

/// Matches a whole path against tokens; a table of (token, position) pairs keeps it linear in
/// the product of their lengths.
fn matches(tokens: &[Token], path: &str) -> bool {
    let s: Vec<char> = path.chars().collect();
    let (n, m) = (tokens.len(), s.len());
    // ok[t][i]: tokens[t..] match s[i..].
    let mut ok = vec![vec![false; m + 1]; n + 1];
    ok[n][m] = true;
    for t in (0..n).rev() {
        for i in (0..=m).rev() {
            ok[t][i] = match &tokens[t] {
                Token::Char(c) => i < m && s[i] == *c && ok[t + 1][i + 1],
                Token::Any => i < m && s[i] != '/' && ok[t + 1][i + 1],
                Token::Class { negated, items } => {
                    i < m && items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[i])) != *negated && ok[t + 1][i + 1]
                }
                Token::Star => ok[t + 1][i] || (i < m && s[i] != '/' && ok[t][i + 1]),
                // `(.*/)?`: nothing, or any run that ends with a '/'.
                Token::Dirs => ok[t + 1][i] || (i..m).any(|j| s[j] == '/' && ok[t + 1][j + 1]),
                Token::All => true,
            };
        }
    }
    ok[0][0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        Ignore::parse(&patterns.join("\n")).unwrap().excludes(path)
    }

    #[test]
    fn vectors_from_docker() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**/dir"], "dir/file", true),
            (&["abc/**"], "abc", false),
            (&["abc/**"], "abc/def", true),
            (&["a/*.txt"], "a/dir/file.txt", false),
            (&["**/*.txt"], "file.txt", true),
            (&[".*"], ".foo", true),
            (&[".*"], "foo", false),
            (&["abc?def"], "abcdef", false),
            (&["a[b-d]e"], "ace", true),
            (&["**/foo/bar"], "foo/bar", true),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(excluded(patterns, path), *want, "{patterns:?} {path}");
        }
    }

    #[test]
    fn more_cases() {
        let cases: &[(&[&str], &str, bool)] = &[
            // Parents: excluding a directory excludes everything below it.
            (&["build"], "build/x/y.o", true),
            (&["build/"], "build/x", true),
            (&["/build"], "build/x", true),
            (&["./build//x/../"], "build/y", true),
            (&["*"], "a/b", true),
            (&["*/b"], "a/b", true),
            (&["*/b"], "a/c/b", false),
            // Exceptions inside excluded folders.
            (&["logs", "!logs/keep.log"], "logs/keep.log", false),
            (&["logs", "!logs/keep.log"], "logs/other.log", true),
            (&["logs/**", "!logs/**/*.keep"], "logs/a/b/x.keep", false),
            (&["**/*.tmp", "!**/important.tmp"], "deep/er/important.tmp", false),
            // `**` in the middle matches zero or more directories.
            (&["a/**/z"], "a/z", true),
            (&["a/**/z"], "a/b/c/z", true),
            (&["a/**/z"], "ab/z", false),
            (&["**"], "anything/at/all", true),
            // Escapes and classes.
            (&["\\*.txt"], "*.txt", true),
            (&["\\*.txt"], "a.txt", false),
            // `!` in a class is a character (Go's filepath.Match); only `^` negates, and a
            // negated class matches `/` as Docker's regular expression does.
            (&["[!a]bc"], "abc", true),
            (&["[!a]bc"], "!bc", true),
            (&["[!a]bc"], "xbc", false),
            (&["[^a]bc"], "abc", false),
            (&["[^a]bc"], "xbc", true),
            (&["a[^x]b"], "a/b", true),
            (&["a[^x]b"], "axb", false),
            (&["[!]"], "!", true),
            (&["[\\]]x"], "]x", true),
            (&["[\\-]x"], "-x", true),
            (&["a]"], "a]", true),
            (&["file[0-9].txt"], "file7.txt", true),
            (&["file?.txt"], "file/.txt", false),
            (&["# comment", "  spaced.txt  "], "spaced.txt", true),
            (&[" # not a comment"], "# not a comment", true),
            (&["."], "anything", false),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(excluded(patterns, path), *want, "{patterns:?} {path}");
        }
    }

    #[test]
    fn bad_patterns() {
        let err = Ignore::parse("a\n  !  \n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("lone '!'"), "{err}");
        assert!(Ignore::parse("[abc").unwrap_err().to_string().contains("unclosed"));
        assert!(Ignore::parse("x\\").unwrap_err().to_string().contains("lone"));
        assert!(Ignore::parse("[z-a]").is_err());
        // What Go's filepath.Match rejects, and so the build does, under both builders.
        for bad in ["[]]x", "[x-]bc", "[-a]", "[^]", "[]", "[^-a]", "[a-c-e]", "[a", "\\"] {
            let err = Ignore::parse(&format!("ok\n{bad}\n")).unwrap_err().to_string();
            assert!(err.starts_with("line 2: ") && err.contains("not a valid pattern"), "{bad}: {err}");
        }
        let err = Ignore::parse("[]]x").unwrap_err().to_string();
        assert!(err.contains("escape it as '\\]'"), "{err}");
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/a/../.."), "/");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("./"), ".");
        assert!(Ignore::parse("!x").unwrap().has_exceptions());
    }
}
