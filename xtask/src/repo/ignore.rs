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

/// A COPY or ADD source with wildcards, matched as Go's `filepath.Match` does.
#[derive(Debug, Clone)]
pub struct Pattern {
    tokens: Vec<Token>,
}

/// Which `.dockerignore` matcher the CLI that sends the build context uses. Both turn a pattern
/// into a Go regular expression, and they agree on every pattern made of `filepath.Match`
/// syntax alone; they differ on the characters a regular expression gives a meaning to. Seen
/// on this machine with probe builds (`COPY . /ctx/`):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// The docker CLI 23 and later (moby/patternmatcher): a pattern with no `*`, `?`, `[` or
    /// `\` is a literal path (`a+b` excludes the file `a+b`), `X**` a literal prefix and `**X`
    /// a literal suffix; any other pattern is a regular expression in which `.`, `$`, `+`, `(`
    /// and `)` are literal and `|`, `^`, `{n}` keep their meaning.
    #[default]
    Current,
    /// The docker CLI 20.10 and Podman 4: every pattern is a regular expression in which only
    /// `.` and `$` are literal (`a+b` excludes `ab` and `aab`, not `a+b`).
    Older,
}

impl Dialect {
    /// The dialect of a CLI from its `--version` line (`Docker version 28.2.2, build ...`,
    /// `podman version 4.3.1`).
    pub fn of_cli(version: &str) -> Dialect {
        let v = version.trim();
        if v.to_ascii_lowercase().starts_with("podman") {
            return Dialect::Older;
        }
        let number = v.strip_prefix("Docker version ").unwrap_or(v);
        match number.split('.').next().and_then(|m| m.trim().parse::<u32>().ok()) {
            Some(major) if major < 23 => Dialect::Older,
            _ => Dialect::Current,
        }
    }
}

/// One `.dockerignore` line, ready to match in either dialect.
#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    text: String,
    exception: bool,
    current: Result<Matcher, String>,
    older: Result<Matcher, String>,
    /// Whether the dialects may disagree on some path.
    differs: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    /// The pattern after its leading `**`: a path ending so matches, and `/x` also matches `x`.
    Suffix(String),
    Regex(regex_lite::Regex),
}

impl Matcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => path.ends_with(s.as_str()) || s.strip_prefix('/') == Some(path),
            Matcher::Regex(r) => r.is_match(path),
        }
    }

    /// Whether it matches `path` or one of its parent folders.
    fn matches_or_parent(&self, path: &str) -> bool {
        self.matches(path) || path.match_indices('/').any(|(i, _)| self.matches(&path[..i]))
    }
}

impl Rule {
    fn new(line: usize, text: String, exception: bool) -> Rule {
        let (current, current_go) = moby_matcher(&text, Dialect::Current);
        let (older, older_go) = moby_matcher(&text, Dialect::Older);
        let differs = match &current {
            Ok(Matcher::Regex(_)) => current_go != older_go,
            Ok(Matcher::Exact(p)) | Ok(Matcher::Prefix(p)) => p.contains(REGEX_ONLY),
            Ok(Matcher::Suffix(s)) => !s.is_empty() && (!s.starts_with('/') || s.contains(REGEX_ONLY)),
            Err(_) => older.is_ok(),
        };
        Rule { line, text, exception, current, older, differs }
    }

    fn matcher(&self, dialect: Dialect) -> Result<&Matcher, &String> {
        match dialect {
            Dialect::Current => self.current.as_ref(),
            Dialect::Older => self.older.as_ref(),
        }
    }
}

/// Characters with a meaning in a Go regular expression that the current dialect's literal
/// matches (exact, prefix, suffix) take as themselves.
const REGEX_ONLY: [char; 7] = ['+', '(', ')', '|', '{', '}', '^'];

/// The patterns of one `.dockerignore`, in file order, and the dialect they are matched in.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
    dialect: Dialect,
}

impl Ignore {
    /// Parses `.dockerignore` text. `#` in column 1 makes a comment; lines are trimmed; a
    /// leading `!` is an exception; patterns are path-cleaned and lose one leading `/`. Every
    /// pattern must be valid for Go's `filepath.Match` (Docker checks that first) and, in the
    /// current dialect, a valid regular expression.
    pub fn parse(text: &str) -> Result<Ignore> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
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
            compile(&cleaned).map_err(|e| {
                anyhow::anyhow!(
                    "line {}: {cleaned:?} is not a valid pattern ({e}); Docker fails the build on it",
                    n + 1
                )
            })?;
            let rule = Rule::new(n + 1, cleaned, exception);
            if let Err(e) = &rule.current {
                if !rule.differs {
                    bail!("line {}: {:?} is not a valid pattern ({e}); Docker fails the build on it", n + 1, rule.text);
                }
            }
            rules.push(rule);
        }
        let ignore = Ignore { rules, dialect: Dialect::Current };
        Ok(ignore)
    }

    /// Whether some pattern means different things to the two dialects, so that which CLI
    /// sends the context must be known.
    pub fn dialect_matters(&self) -> bool {
        self.rules.iter().any(|r| r.differs)
    }

    /// Matches in `dialect` from now on; a pattern that is no valid regular expression there
    /// is an error naming its line, as the build would fail on it.
    pub fn with_dialect(mut self, dialect: Dialect) -> Result<Ignore> {
        for r in &self.rules {
            if let Err(e) = r.matcher(dialect) {
                let cli = match dialect {
                    Dialect::Current => "the docker CLI 23 and later",
                    Dialect::Older => "the docker CLI 20.10 and Podman",
                };
                bail!(
                    "line {}: {:?} is not a valid pattern for {cli} ({e}); the build fails on it: escape the character with '\\'",
                    r.line,
                    r.text
                );
            }
        }
        self.dialect = dialect;
        Ok(self)
    }

    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (relative, `/`-separated, clean) is left out of the build context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for r in &self.rules {
            // `with_dialect` refused a rule that has no matcher in this dialect.
            if r.matcher(self.dialect).is_ok_and(|m| m.matches_or_parent(path)) {
                excluded = !r.exception;
            }
        }
        excluded
    }
}

impl Pattern {
    /// A COPY or ADD source pattern.
    pub fn new(text: &str) -> Result<Pattern> {
        Ok(Pattern { tokens: compile(text).map_err(|e| anyhow::anyhow!("pattern {text:?}: {e}"))? })
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

/// How moby turns a cleaned pattern into a matcher, in one dialect: the kind of match, and
/// the Go regular expression it builds (empty for the literal kinds).
///
/// Long because it follows moby's own function step by step, so that the two can be compared.
fn moby_matcher(pattern: &str, dialect: Dialect) -> (Result<Matcher, String>, String) {
    let literal: &[char] = match dialect {
        Dialect::Current => &['.', '+', '(', ')', '$'],
        Dialect::Older => &['.', '$'],
    };
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut kind = Kind::Exact;
    let mut go = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' && chars.get(i) == Some(&'*') {
            i += 1;
            if chars.get(i) == Some(&'/') {
                i += 1;
            }
            if i >= chars.len() {
                if kind == Kind::Exact {
                    kind = Kind::Prefix;
                } else {
                    go.push_str(".*");
                    kind = Kind::Regex;
                }
            } else {
                go.push_str("(.*/)?");
                kind = Kind::Regex;
            }
            if first {
                kind = Kind::Suffix;
            }
        } else if ch == '*' {
            go.push_str("[^/]*");
            kind = Kind::Regex;
        } else if ch == '?' {
            go.push_str("[^/]");
            kind = Kind::Regex;
        } else if literal.contains(&ch) {
            go.push('\\');
            go.push(ch);
        } else if ch == '\\' {
            match chars.get(i) {
                Some(&next) => {
                    go.push('\\');
                    go.push(next);
                    i += 1;
                    kind = Kind::Regex;
                }
                None => go.push('\\'),
            }
        } else if ch == '[' || ch == ']' {
            go.push(ch);
            kind = Kind::Regex;
        } else {
            go.push(ch);
        }
        first = false;
    }
    if dialect == Dialect::Older {
        kind = Kind::Regex;
    }
    let matcher = match kind {
        Kind::Exact => Ok(Matcher::Exact(pattern.to_string())),
        Kind::Prefix => Ok(Matcher::Prefix(pattern[..pattern.len() - 2].to_string())),
        Kind::Suffix => Ok(Matcher::Suffix(pattern[2..].to_string())),
        Kind::Regex => {
            go.push('$');
            go_regex(&go)
                .and_then(|r| regex_lite::Regex::new(&r).map_err(|e| first_line(&e.to_string())))
                .map(Matcher::Regex)
        }
    };
    let go = if matches!(matcher, Ok(Matcher::Regex(_))) || matcher.is_err() { go } else { String::new() };
    (matcher, go)
}

fn first_line(s: &str) -> String {
    s.lines().rev().find(|l| l.starts_with("error:")).unwrap_or(s.lines().next().unwrap_or("")).to_string()
}

/// Go's regular expression syntax (RE2, as Docker compiles the pattern) in regex-lite's: the
/// two differ in `[` inside a class (a character in Go, a nested class here), `&&`/`~~`
/// inside a class, `{` that is no repetition (a character in Go, an error here), and `\d`,
/// `\w`, `\s` (ASCII in Go). Go's Unicode classes (`\p{L}`) regex-lite does not have: such a
/// pattern is an error that says so.
///
/// Long because it is one scanner over the pattern's characters, whose state (inside a class
/// or not) every case reads.
fn go_regex(go: &str) -> Result<String, String> {
    let c: Vec<char> = go.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut class = false;
    let mut class_start = 0;
    while i < c.len() {
        let ch = c[i];
        i += 1;
        if ch == '\\' {
            let Some(&e) = c.get(i) else { return Err("a trailing '\\'".into()) };
            i += 1;
            match e {
                'd' | 'w' | 's' => {
                    let set = perl_class(e);
                    if class {
                        out.push_str(set);
                    } else {
                        out.push_str(&format!("[{set}]"));
                    }
                }
                'D' | 'W' | 'S' => out.push_str(&format!("[^{}]", perl_class(e.to_ascii_lowercase()))),
                'x' => {
                    out.push_str("\\x");
                    if c.get(i) == Some(&'{') {
                        while let Some(&n) = c.get(i) {
                            out.push(n);
                            i += 1;
                            if n == '}' {
                                break;
                            }
                        }
                    } else {
                        for _ in 0..2 {
                            if let Some(&n) = c.get(i) {
                                out.push(n);
                                i += 1;
                            }
                        }
                    }
                }
                'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
                    out.push('\\');
                    out.push(e);
                }
                'A' | 'z' | 'b' | 'B' if !class => {
                    out.push('\\');
                    out.push(e);
                }
                e if e.is_ascii_alphanumeric() => {
                    return Err(format!("'\\{e}' is an escape this tool cannot match as Docker does"))
                }
                e => out.push_str(&regex_lite::escape(&e.to_string())),
            }
            continue;
        }
        if class {
            match ch {
                '[' if c.get(i) == Some(&':') => {
                    // A POSIX class `[:alpha:]` (or `[:^alpha:]`), the same in both syntaxes.
                    let rest: String = c[i..].iter().collect();
                    match rest[1..].find(":]").map(|e| e + 1) {
                        Some(end) if rest[1..end].trim_start_matches('^').chars().all(|x| x.is_ascii_lowercase()) => {
                            out.push('[');
                            out.push_str(&rest[..end + 2]);
                            i += rest[..end + 2].chars().count();
                        }
                        _ => out.push_str("\\["),
                    }
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(ch);
                }
                '-' if out.ends_with('-') => out.push_str("\\-"),
                ']' if i - 1 > class_start => {
                    out.push(']');
                    class = false;
                }
                ']' => out.push_str("\\]"),
                _ => out.push(ch),
            }
            continue;
        }
        match ch {
            '[' => {
                out.push('[');
                if c.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class = true;
                // A `]` right after the opening is a character of the class.
                class_start = i;
            }
            '{' => {
                let rest: String = c[i..].iter().collect();
                let end = rest.find('}');
                let counted = end.is_some_and(|e| {
                    let body = &rest[..e];
                    let mut parts = body.splitn(2, ',');
                    let lo = parts.next().unwrap_or("");
                    let hi = parts.next();
                    !lo.is_empty()
                        && lo.chars().all(|x| x.is_ascii_digit())
                        && hi.is_none_or(|h| h.chars().all(|x| x.is_ascii_digit()))
                });
                if counted {
                    let e = end.unwrap_or(0);
                    out.push('{');
                    out.push_str(&rest[..=e]);
                    i += rest[..=e].chars().count();
                } else {
                    out.push_str("\\{");
                }
            }
            '}' | ']' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    if class {
        return Err("missing closing ]".into());
    }
    Ok(out)
}

/// The ASCII sets of Go's `\d`, `\w` and `\s`, for inside a class.
fn perl_class(e: char) -> &'static str {
    match e {
        'd' => "0-9",
        'w' => "0-9A-Za-z_",
        _ => "\\t\\n\\x0C\\r ",
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
        for d in [Dialect::Current, Dialect::Older] {
            let ignore = Ignore::parse(&patterns.join("\n")).unwrap().with_dialect(d).unwrap();
            assert!(!ignore.dialect_matters(), "{patterns:?}");
        }
        Ignore::parse(&patterns.join("\n")).unwrap().excludes(path)
    }

    #[test]
    fn the_two_dialects_as_docker_28_docker_20_10_and_podman_4_send_contexts() {
        // (pattern, path, excluded by the docker 28 CLI, by the docker 20.10 CLI and Podman 4),
        // each seen in a probe build with `COPY . /ctx/`.
        let cases: &[(&str, &str, bool, bool)] = &[
            ("\\d", "5", true, true),
            ("\\d", "d", false, false),
            ("[[:alpha:]]", "x", true, true),
            ("[[:alpha:]]", "5", false, false),
            ("[[:alpha:]]", "\u{e9}", false, false),
            ("\\w", "_", true, true),
            ("\\w", ":", false, false),
            ("a+b", "a+b", true, false),
            ("a+b", "ab", false, true),
            ("a+b", "aab", false, true),
            ("(x)", "(x)", true, false),
            ("(x)", "x", false, true),
            ("^a", "^a", true, false),
            ("a|b", "a|b", true, true),
            ("a|b", "x|b", false, true),
            ("a|b", "a$", false, true),
            ("{a}", "{a}", true, true),
            ("a{2}", "a{2}", true, false),
            ("a{2}", "aa", false, true),
            ("a}b", "a}b", true, true),
            ("\\x61a", "aa", true, true),
            ("a\\{2\\}", "a{2}", true, true),
            ("a+b*", "a+b", true, false),
            ("a+b*", "aab", false, true),
            ("(x)*", "(x)", true, false),
            ("(x)*", "x1", false, true),
            ("**b", "a+b", true, false),
            ("**b", "ab", true, false),
            ("[a]{2}", "aa", true, true),
            ("a|b*", "aa", true, true),
            ("a|b*", "d", false, false),
            ("^a*", "aa", true, true),
            ("^a*", "^a", false, false),
            ("a{2}*", "aab", true, true),
            ("a.*", "a.b", true, true),
            ("a.*", "aab", false, false),
            // Go reads `[` inside a class as a character: `[*]` is `[[^/]*]`.
            ("[*]x", "]x", true, true),
            ("[*]x", "^^]x", true, true),
        ];
        for (pattern, path, current, older) in cases {
            let ignore = Ignore::parse(pattern).unwrap();
            for (d, want) in [(Dialect::Current, current), (Dialect::Older, older)] {
                let got = ignore.clone().with_dialect(d).unwrap().excludes(path);
                assert_eq!(got, *want, "{pattern:?} {path:?} {d:?}");
            }
        }
        for (pattern, matters) in
            [("a+b", true), ("**b", true), ("**/b", false), ("*.go", false), ("\\d", false), ("a|b*", false)]
        {
            assert_eq!(Ignore::parse(pattern).unwrap().dialect_matters(), matters, "{pattern}");
        }
        // A regular expression only the older dialect cannot compile: the build fails there.
        let ignore = Ignore::parse("ok\n*(x\n").unwrap();
        assert!(ignore.clone().with_dialect(Dialect::Current).is_ok());
        let err = ignore.with_dialect(Dialect::Older).unwrap_err().to_string();
        assert!(err.starts_with("line 2: ") && err.contains("docker CLI 20.10"), "{err}");
        assert!(Ignore::parse("\\Qa\\E").unwrap_err().to_string().contains("cannot match"));
    }

    #[test]
    fn the_dialect_of_a_cli() {
        assert_eq!(Dialect::of_cli("Docker version 28.2.2, build e6534b4"), Dialect::Current);
        assert_eq!(Dialect::of_cli("Docker version 23.0.0, build x"), Dialect::Current);
        assert_eq!(Dialect::of_cli("Docker version 20.10.24+dfsg1, build 297e128"), Dialect::Older);
        assert_eq!(Dialect::of_cli("podman version 4.3.1"), Dialect::Older);
        assert_eq!(Dialect::of_cli("something else"), Dialect::Current);
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
        // Go's Unicode classes: regex-lite has none, so the pattern is refused, never misread.
        let err = Ignore::parse("\\pL*.txt").unwrap_err().to_string();
        assert!(err.contains("'\\p' is an escape this tool cannot match as Docker does"), "{err}");
        assert!(excluded(&["\\x41*"], "Abc") && excluded(&["\\x{42}?"], "Bc"));
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
