//! Dockerfile analysis: the instruction stream (directives, escape character, continuations,
//! comments, heredoc bodies), global ARG expansion, stages, and the classification of every
//! image a build reads as a stage, an internal service, an external base or `scratch`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

/// One instruction with its continuation lines joined; `line` is where it starts (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub args: String,
}

/// The instruction stream of a Dockerfile and the escape character it uses.
#[derive(Debug)]
pub struct Parsed {
    pub escape: char,
    /// The `# syntax=` frontend image, if any (BuildKit fetches it).
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// Splits a Dockerfile into instructions, the way Docker's parser does.
///
/// Long because it is one state machine over the lines (directives, escape, continuations,
/// heredocs), as Docker's own parser is.
pub fn parse(text: &str) -> Result<Parsed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    let mut seen = BTreeSet::new();
    // Parser directives: only at the very top, each at most once.
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else { break };
        if !seen.insert(key.clone()) {
            bail!("line {}: parser directive '{key}' is given twice", i + 1);
        }
        if key == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => bail!("line {}: invalid escape character {value:?}: use \\ or `", i + 1),
            };
        }
        if key == "syntax" && !value.is_empty() {
            syntax = Some(value);
        }
        i += 1;
    }

    let mut instructions = Vec::new();
    while i < lines.len() {
        let first = lines[i];
        i += 1;
        let trimmed = first.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let line = i;
        let mut joined = String::new();
        let mut current = first;
        loop {
            let (content, continues) = strip_continuation(current, escape);
            joined.push_str(content);
            if !continues {
                break;
            }
            // Comment and empty lines inside a continuation are dropped.
            let mut next = None;
            while i < lines.len() {
                let l = lines[i];
                i += 1;
                let t = l.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                next = Some(l);
                break;
            }
            match next {
                Some(l) => current = l,
                None => break,
            }
        }
        let joined = joined.trim();
        let (keyword, args) = match joined.find(char::is_whitespace) {
            Some(p) => (&joined[..p], joined[p..].trim()),
            None => (joined, ""),
        };
        if !keyword.bytes().all(|b| b.is_ascii_alphabetic()) {
            bail!("line {line}: {keyword:?} is not a Dockerfile instruction");
        }
        let keyword = keyword.to_ascii_uppercase();
        // Heredoc bodies follow the instruction and are not instructions themselves; ONBUILD
        // wraps an instruction that may have some.
        let (inner, inner_args) = match keyword.as_str() {
            "ONBUILD" => args.split_once(char::is_whitespace).unwrap_or((args, "")),
            _ => (keyword.as_str(), args),
        };
        if ["RUN", "COPY", "ADD"].iter().any(|k| inner.eq_ignore_ascii_case(k)) {
            for (word, strip_tabs) in heredoc_markers(inner_args) {
                loop {
                    if i >= lines.len() {
                        bail!("line {line}: heredoc <<{word} is never closed");
                    }
                    let l = lines[i];
                    i += 1;
                    let l = if strip_tabs { l.trim_start_matches('\t') } else { l };
                    if l == word {
                        break;
                    }
                }
            }
        }
        instructions.push(Instruction { line, keyword, args: args.to_string() });
    }
    Ok(Parsed { escape, syntax, instructions })
}

/// `# key=value` at the top of the file, for the directives Docker knows.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim().to_ascii_lowercase();
    if !matches!(key.as_str(), "syntax" | "escape" | "check") {
        return None;
    }
    Some((key, value.trim().to_string()))
}

fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end();
    match t.strip_suffix(escape) {
        Some(content) => (content, true),
        None => (line, false),
    }
}

/// The heredocs of an instruction's arguments, as BuildKit finds them: the arguments (not in
/// JSON form) are split into words, quotes and escapes kept, white space after `<<` kept in
/// the word; a word that is optional digits, `<<`, an optional `-`, optional white space and
/// one shell word with no `<` opens a heredoc named by that word, unquoted. So
/// `RUN echo $((1<<3))` and `cat<<EOF` open none, `RUN 3<<EOF`, `<<-"END"` and `<<'a b'` do.
fn heredoc_markers(args: &str) -> Vec<(String, bool)> {
    let mut rest = args.trim_start();
    // Flags (`--mount=...`) come before the command; after them, JSON form has no heredocs.
    while rest.starts_with("--") {
        rest = rest.find(char::is_whitespace).map_or("", |p| rest[p..].trim_start());
    }
    if rest.starts_with('[') && serde_json::from_str::<Vec<String>>(rest.trim_end()).is_ok() {
        return Vec::new();
    }
    raw_words(rest).iter().filter_map(|w| heredoc(w)).collect()
}

/// One raw word as a heredoc opener: (name, strip leading tabs).
fn heredoc(word: &str) -> Option<(String, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut names = words(rest, '\\').ok()?;
    (names.len() == 1).then(|| (names.remove(0), chomp))
}

/// Words split on white space outside quotes, with quotes and `\\` escapes kept as written;
/// the white space after an unquoted `<<` stays in its word (`<< EOF` is one word).
fn raw_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            '\\' => {
                cur.push(c);
                cur.extend(chars.next());
            }
            '\'' | '"' => {
                cur.push(c);
                while let Some(n) = chars.next() {
                    cur.push(n);
                    if n == c {
                        break;
                    }
                    if n == '\\' && c == '"' {
                        cur.extend(chars.next());
                    }
                }
            }
            '<' if chars.peek() == Some(&'<') => {
                cur.push_str("<<");
                chars.next();
                while let Some(w) = chars.next_if(|w| *w == ' ' || *w == '\t') {
                    cur.push(w);
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits arguments into words the way the shell-like lexer does for ARG and flags: white space
/// separates, quotes group and are removed, the escape character protects the next character.
pub fn words(s: &str, escape: char) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => bail!("unterminated quote in {s:?}"),
                        Some(q) if q == c => break,
                        Some(e) if e == escape && c == '"' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        Some(o) => cur.push(o),
                    }
                }
            }
            c if c == escape => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Expands `$v`, `${v}`, `${v:-word}` and `${v:+word}`; unset names expand to nothing.
pub fn expand(s: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && i + 1 < chars.len() && chars[i + 1] == '$' {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if i + 1 < chars.len() && chars[i + 1] == '{' {
            let Some(j) = closing_brace(&chars, i + 2, escape) else {
                bail!("unclosed ${{ in {s:?}");
            };
            let close = j - (i + 2);
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let (name, modifier) = match inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                Some(p) => (&inner[..p], Some(&inner[p..])),
                None => (inner.as_str(), None),
            };
            if name.is_empty() {
                bail!("invalid variable ${{{inner}}} in {s:?}");
            }
            // The modifiers both builders accept (a probe of each): an empty value counts as
            // unset; `${v-w}` and `${v+w}` they refuse ("missing ':' in substitution").
            let value = lookup(name).filter(|v| !v.is_empty());
            // Both builders expand the word whether it is used or not (a probe of each:
            // `${A:-${E:?x}}` stops the build with A set and E not).
            let word = match modifier {
                Some(m) if [":-", ":+", ":?"].iter().any(|k| m.starts_with(k)) => expand(&m[2..], escape, lookup)?,
                _ => String::new(),
            };
            match modifier {
                None => out.push_str(value.as_deref().unwrap_or("")),
                Some(m) if m.starts_with(":-") => out.push_str(value.as_deref().unwrap_or(&word)),
                Some(m) if m.starts_with(":+") => {
                    if value.is_some() {
                        out.push_str(&word);
                    }
                }
                Some(m) if m.starts_with(":?") => match value {
                    Some(v) => out.push_str(&v),
                    None => {
                        let message = word;
                        bail!(
                            "{name}: {} (the builders stop there)",
                            if message.is_empty() { "is not set" } else { &message }
                        )
                    }
                },
                Some(m) => {
                    bail!("unsupported variable modifier {m:?} in {s:?}: use ${{v}}, ${{v:-w}}, ${{v:+w}} or ${{v:?w}}")
                }
            }
            i += 2 + close + 1;
        } else {
            let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
            if len == 0 {
                out.push('$');
                i += 1;
                continue;
            }
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(&lookup(&name).unwrap_or_default());
            i += 1 + len;
        }
    }
    Ok(out)
}

/// The index of the brace that closes a `${` whose name starts at `start`: a default may hold
/// variables of its own (`${A:-${B}}`).
fn closing_brace(chars: &[char], start: usize, escape: char) -> Option<usize> {
    let mut depth = 1;
    let mut j = start;
    while j < chars.len() {
        if chars[j] == escape && j + 1 < chars.len() {
            j += 2;
            continue;
        }
        if chars[j] == '$' && chars.get(j + 1) == Some(&'{') {
            depth += 1;
            j += 1;
        } else if chars[j] == '}' {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
        j += 1;
    }
    None
}

/// Whether an instruction's text mentions a variable by name (`$NAME` or `${NAME...}`).
fn mentions(args: &str, name: &str) -> bool {
    let mut rest = args;
    while let Some(p) = rest.find('$') {
        let after = &rest[p + 1..];
        let after = after.strip_prefix('{').unwrap_or(after);
        if let Some(tail) = after.strip_prefix(name) {
            if !tail.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return true;
            }
        }
        rest = &rest[p + 1..];
    }
    false
}

/// What an image reference in a build names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Scratch,
    Stage(usize),
    Internal(String),
    External(String),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: Option<String>,
    pub from: Source,
    /// Sources named by `COPY --from` and `RUN --mount=...,from=`.
    pub copies_from: Vec<Source>,
    /// What its instructions read from the build context.
    pub reads: Vec<Read>,
    /// What its `ADD <url>` instructions fetch.
    pub remote: Vec<Remote>,
    /// Its `ONBUILD` triggers, as written after the keyword: run by a build FROM its image.
    pub onbuild: Vec<String>,
}

/// A path (or wildcard pattern) of the build context that an instruction reads: a COPY or ADD
/// source, or a `RUN --mount=type=bind` source. `source` is clean and relative; `.` is the
/// whole context.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub line: usize,
    pub instruction: String,
    pub source: String,
}

/// An `ADD <url>`: remote content, pinned only by `--checksum`.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub line: usize,
    pub url: String,
    pub checksum: Option<String>,
}

/// Everything the tool needs to know about one Dockerfile built for one target.
#[derive(Debug)]
pub struct Analysis {
    /// The stages, for diagnostics and tests; the sets below are what the tool acts on.
    #[allow(dead_code)]
    pub stages: Vec<Stage>,
    /// The stage the build produces: the target, else the last.
    #[allow(dead_code)]
    pub target_index: usize,
    /// Internal services read by the stages up to the target: the legacy builder builds every
    /// stage before the target, so they are built first.
    pub parents: BTreeSet<String>,
    /// External images read by those stages (and a `# syntax=` frontend), normalized with a
    /// tag: pulled before the build.
    pub bases: BTreeSet<String>,
    /// The parents and bases of the stages the target needs: what the image's content depends
    /// on, and so what its input digest counts.
    pub needed_parents: BTreeSet<String>,
    pub needed_bases: BTreeSet<String>,
    /// Whether IMAGE_TAG is read anywhere but in FROM lines naming internal parents.
    pub image_tag_beyond_parents: bool,
    /// What the stages the target needs read from the context, in file order.
    pub reads: Vec<Read>,
    /// The `ADD <url>` of those stages.
    pub remote: Vec<Remote>,
    /// The target stage's `ONBUILD` triggers: what a build FROM this image runs first.
    pub onbuild: Vec<String>,
}

/// Resolves `ai-infra-<service>:<tag>` to a service name.
pub struct Internal<'a> {
    pub tag: &'a str,
    pub is_service: &'a dyn Fn(&str) -> bool,
    /// The `ONBUILD` triggers of the images a stage may build on (an internal parent's from
    /// its Dockerfile, an external base's from the engine), run as that stage's first
    /// instructions.
    pub triggers: &'a Triggers,
}

/// `ONBUILD` triggers by the image that carries them.
pub type Triggers = BTreeMap<Source, Vec<String>>;

impl Internal<'_> {
    fn resolve(&self, image: &str) -> Option<String> {
        let r = crate::repo::reference::Reference::parse(image);
        let svc = r.repository.strip_prefix(crate::repo::reference::PREFIX)?;
        (r.digest.is_none() && r.tag == Some(self.tag) && (self.is_service)(svc)).then(|| svc.to_string())
    }
}

/// The names every ARG instruction declares, in any stage.
pub fn declared_args(text: &str) -> Result<BTreeSet<String>> {
    let parsed = parse(text)?;
    let mut names = BTreeSet::new();
    for ins in parsed.instructions.iter().filter(|i| i.keyword == "ARG") {
        for w in words(&ins.args, parsed.escape)? {
            names.insert(w.split_once('=').map_or(w.as_str(), |(n, _)| n).to_string());
        }
    }
    Ok(names)
}

/// Analyses a Dockerfile: its stages, parents and bases, and the sources each stage reads.
pub fn analyze(
    text: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
    internal: &Internal,
) -> Result<Analysis> {
    let parsed = parse(text)?;
    let esc = parsed.escape;
    let mut scan = Scan::default();
    for ins in &parsed.instructions {
        match ins.keyword.as_str() {
            "ARG" => scan.arg(ins, esc, build_args)?,
            "FROM" => {
                scan.from(ins, esc, &parsed.instructions, internal)?;
                scan.triggers(ins, internal)?;
            }
            keyword => scan.other(ins, keyword, esc, internal)?,
        }
    }
    let Scan { stages, image_tag_beyond_parents, .. } = scan;
    if stages.is_empty() {
        bail!("no FROM instruction");
    }
    let target_index = match target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages.iter().position(|s| s.name.as_deref() == Some(t.as_str())).ok_or_else(|| {
                let names: Vec<_> = stages.iter().filter_map(|s| s.name.clone()).collect();
                anyhow::anyhow!("target stage '{t}' is not defined (stages: {})", names.join(", "))
            })?
        }
    };
    let needed = needed_stages(&stages, target_index);
    let onbuild = stages[target_index].onbuild.clone();
    let syntax: BTreeSet<String> =
        parsed.syntax.iter().map(|s| crate::repo::reference::normalize_external(s)).collect();
    let (mut parents, mut bases) = (BTreeSet::new(), syntax.clone());
    let (mut needed_parents, mut needed_bases) = (BTreeSet::new(), syntax);
    let mut reads = Vec::new();
    let mut remote = Vec::new();
    for (i, stage) in stages[..=target_index].iter().enumerate() {
        if needed[i] {
            reads.extend(stage.reads.iter().cloned());
            remote.extend(stage.remote.iter().cloned());
        }
        for source in std::iter::once(&stage.from).chain(&stage.copies_from) {
            let (all, of_needed, name) = match source {
                Source::Internal(s) => (&mut parents, &mut needed_parents, s),
                Source::External(b) => (&mut bases, &mut needed_bases, b),
                Source::Scratch | Source::Stage(_) => continue,
            };
            all.insert(name.clone());
            if needed[i] {
                of_needed.insert(name.clone());
            }
        }
    }
    reads.sort_by_key(|r| r.line);
    remote.sort_by_key(|r| r.line);
    Ok(Analysis {
        stages,
        target_index,
        parents,
        bases,
        needed_parents,
        needed_bases,
        image_tag_beyond_parents,
        reads,
        remote,
        onbuild,
    })
}

/// The stages the target needs: itself and what it reads, through FROM, `COPY --from` and
/// `--mount from=`. The others contribute nothing to the image.
fn needed_stages(stages: &[Stage], target_index: usize) -> Vec<bool> {
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![target_index];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        for source in std::iter::once(&stages[i].from).chain(&stages[i].copies_from) {
            if let Source::Stage(j) = source {
                todo.push(*j);
            }
        }
    }
    needed
}

/// What `analyze` gathers, instruction by instruction.
#[derive(Default)]
struct Scan {
    /// ARG values before the first FROM.
    globals: BTreeMap<String, String>,
    stages: Vec<Stage>,
    image_tag_beyond_parents: bool,
    /// ARG values in the current stage, for the paths COPY and ADD name.
    stage_args: BTreeMap<String, String>,
    /// ENV values of each stage (a stage built FROM another starts with that one's), which
    /// override ARGs of the same name; and whether a stage's image may set variables of its own
    /// (any FROM but scratch), so that a name found nowhere here may still have a value.
    stage_env: Vec<BTreeMap<String, String>>,
    image_env: Vec<bool>,
}

impl Scan {
    fn arg(&mut self, ins: &Instruction, esc: char, build_args: &BTreeMap<String, String>) -> Result<()> {
        for w in words(&ins.args, esc)? {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (w.clone(), None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("line {}: invalid ARG name {name:?}", ins.line);
            }
            if self.stages.is_empty() {
                let value = match (build_args.get(&name), default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(d)) => expand(&d, esc, &|n| self.globals.get(n).cloned())?,
                    (None, None) => String::new(),
                };
                self.globals.insert(name, value);
            } else {
                if name == "IMAGE_TAG" {
                    self.image_tag_beyond_parents = true;
                }
                let value = match (build_args.get(&name), default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(d)) => expand(&d, esc, &|n| self.stage_args.get(n).cloned())?,
                    (None, None) => self.globals.get(&name).cloned().unwrap_or_default(),
                };
                self.stage_args.insert(name, value);
            }
        }
        Ok(())
    }

    fn from(&mut self, ins: &Instruction, esc: char, instructions: &[Instruction], internal: &Internal) -> Result<()> {
        let ws = words(&ins.args, esc)?;
        let positional: Vec<&String> = ws.iter().filter(|w| !w.starts_with("--")).collect();
        let (image_raw, name) = match positional.as_slice() {
            [image] => (image.as_str(), None),
            [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                (image.as_str(), Some(name.to_ascii_lowercase()))
            }
            _ => bail!("line {}: FROM takes an image and an optional 'AS name', got {:?}", ins.line, ins.args),
        };
        let image = expand(image_raw, esc, &|n| self.globals.get(n).cloned())?;
        if image.is_empty() {
            bail!(
                "line {}: FROM {image_raw} expands to nothing: give the ARG a default or pass it as a build arg",
                ins.line
            );
        }
        let from = classify(&image, &self.stages, internal, ins.line, "FROM")?;
        if let Source::Stage(_) = from {
        } else if let Some(later) = later_stage_name(instructions, ins.line, &image, esc) {
            bail!("line {}: FROM {image} names stage '{later}', which is defined later", ins.line);
        }
        if let Some(n) = &name {
            if self.stages.iter().any(|s| s.name.as_deref() == Some(n.as_str())) {
                bail!("line {}: stage name '{n}' is used twice", ins.line);
            }
        }
        if mentions(image_raw, "IMAGE_TAG") && !matches!(from, Source::Internal(_)) {
            self.image_tag_beyond_parents = true;
        }
        let (env, from_image) = match &from {
            Source::Stage(j) => (self.stage_env[*j].clone(), self.image_env[*j]),
            Source::Scratch => (BTreeMap::new(), false),
            Source::Internal(_) | Source::External(_) => (BTreeMap::new(), true),
        };
        self.stage_env.push(env);
        self.image_env.push(from_image);
        self.stages.push(Stage {
            name,
            from,
            copies_from: Vec::new(),
            reads: Vec::new(),
            remote: Vec::new(),
            onbuild: Vec::new(),
        });
        self.stage_args.clear();
        Ok(())
    }

    /// The triggers of the image the stage just begun builds on, as its first instructions
    /// (at its FROM line, read with Docker's default escape): what they read of this build's
    /// context is named `ONBUILD <instruction> of <image>`.
    fn triggers(&mut self, from: &Instruction, internal: &Internal) -> Result<()> {
        let stage = self.stages.len() - 1;
        let source = &self.stages[stage].from;
        let Some(triggers) = internal.triggers.get(source) else { return Ok(()) };
        let of = match source {
            Source::Internal(s) => format!("{}{s}", crate::repo::reference::PREFIX),
            Source::External(b) => b.clone(),
            Source::Scratch | Source::Stage(_) => return Ok(()),
        };
        for text in triggers.clone() {
            let text = text.trim();
            let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            let ins =
                Instruction { line: from.line, keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() };
            let before = self.stages[stage].reads.len();
            match ins.keyword.as_str() {
                "ARG" => self.arg(&ins, '\\', &BTreeMap::new())?,
                keyword => self.other(&ins, keyword, '\\', internal).with_context(|| format!("ONBUILD of {of}"))?,
            }
            for r in &mut self.stages[stage].reads[before..] {
                r.instruction = format!("ONBUILD {} of {of}", r.instruction);
            }
        }
        Ok(())
    }

    /// Any other instruction: what it copies from other stages and reads from the context.
    fn other(&mut self, ins: &Instruction, keyword: &str, esc: char, internal: &Internal) -> Result<()> {
        let Some(stage_index) = self.stages.len().checked_sub(1) else {
            bail!("line {}: {keyword} before the first FROM (only ARG may come first)", ins.line);
        };
        if mentions(&ins.args, "IMAGE_TAG") {
            self.image_tag_beyond_parents = true;
        }
        for source in copy_sources(keyword, &ins.args) {
            let found = classify_from_flag(&source, &self.stages[..stage_index], internal, ins.line, keyword)?;
            self.stages[stage_index].copies_from.push(found);
        }
        let env = &self.stage_env[stage_index];
        let lookup = |n: &str| env.get(n).or_else(|| self.stage_args.get(n)).cloned();
        if keyword == "ONBUILD" {
            // Run by the builds on this stage's image, not by this one.
            self.stages[stage_index].onbuild.push(ins.args.clone());
            return Ok(());
        }
        if keyword == "ENV" {
            let set = env_values(ins, esc, &lookup)?;
            self.stage_env[stage_index].extend(set);
            return Ok(());
        }
        let unknown = std::cell::Cell::new(false);
        let from_image = self.image_env[stage_index];
        let lookup = |n: &str| {
            let v = lookup(n);
            if v.is_none() && from_image {
                unknown.set(true);
            }
            v
        };
        let (reads, remote) = context_reads(ins, esc, &lookup, &unknown)?;
        self.stages[stage_index].reads.extend(reads);
        self.stages[stage_index].remote.extend(remote);
        Ok(())
    }
}

fn later_stage_name(instructions: &[Instruction], after: usize, image: &str, esc: char) -> Option<String> {
    let lower = image.to_ascii_lowercase();
    instructions.iter().filter(|i| i.keyword == "FROM" && i.line > after).find_map(|i| {
        let ws = words(&i.args, esc).ok()?;
        let positional: Vec<&String> = ws.iter().filter(|w| !w.starts_with("--")).collect();
        match positional.as_slice() {
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") && name.to_ascii_lowercase() == lower => {
                Some(lower.clone())
            }
            _ => None,
        }
    })
}

/// The `--from=` of COPY/ADD and the `from=` of each RUN `--mount`.
fn copy_sources(keyword: &str, args: &str) -> Vec<String> {
    let flags = args.split_whitespace().take_while(|w| w.starts_with("--"));
    match keyword {
        "COPY" | "ADD" => flags.filter_map(|f| f.strip_prefix("--from=")).map(str::to_string).collect(),
        "RUN" => flags
            .filter_map(|f| f.strip_prefix("--mount="))
            .flat_map(|m| {
                m.split(',').filter_map(|kv| kv.strip_prefix("from=")).map(str::to_string).collect::<Vec<_>>()
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What one instruction reads from the build context: the sources of a COPY or ADD without
/// `--from` (an ADD of a URL reads the network instead), and the source of every RUN bind
/// mount without `from=` (the whole context when it names none). Variables are expanded with
/// the stage's ARG values.
///
/// A variable the stage does not define may be set by its image (`ENV` of a base or parent):
/// `unknown` is then set while the source is expanded, and the read counts the whole context
/// rather than guess. A source is cleaned as the builders clean it, inside the context: `../x`
/// reads `x`.
fn context_reads(
    ins: &Instruction,
    esc: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    unknown: &std::cell::Cell<bool>,
) -> Result<(Vec<Read>, Vec<Remote>)> {
    let mut reads = Vec::new();
    let mut remote = Vec::new();
    let read = |source: &str| -> Result<Read> {
        unknown.set(false);
        let expanded = expand(source, esc, lookup)?;
        let cleaned = crate::repo::ignore::clean(&format!("/{expanded}"));
        let cleaned = if unknown.get() { String::new() } else { cleaned };
        let source = cleaned.trim_start_matches('/');
        Ok(Read {
            line: ins.line,
            instruction: ins.keyword.clone(),
            source: if source.is_empty() { ".".to_string() } else { source.to_string() },
        })
    };
    let rest = ins.args.trim_start();
    let flag_words: Vec<&str> = rest.split_whitespace().take_while(|w| w.starts_with("--")).collect();
    match ins.keyword.as_str() {
        "COPY" | "ADD" => {
            if flag_words.iter().any(|f| f.starts_with("--from=")) {
                return Ok((reads, remote));
            }
            let mut body = rest;
            for f in &flag_words {
                body = body.trim_start().strip_prefix(f).unwrap_or(body);
            }
            let body = body.trim();
            let positional: Vec<String> = match body.starts_with('[') {
                true => serde_json::from_str(body).or_else(|_| words(body, esc))?,
                false => words(body, esc)?,
            };
            if positional.len() < 2 {
                bail!("line {}: {} needs a source and a destination", ins.line, ins.keyword);
            }
            let checksum = flag_words.iter().find_map(|f| f.strip_prefix("--checksum=")).map(str::to_string);
            for source in &positional[..positional.len() - 1] {
                if source.starts_with("<<") {
                    continue;
                }
                if ins.keyword == "ADD" && (source.contains("://") || source.starts_with("git@")) {
                    remote.push(Remote { line: ins.line, url: source.clone(), checksum: checksum.clone() });
                } else {
                    reads.push(read(source)?);
                }
            }
        }
        "RUN" => {
            for mount in flag_words.iter().filter_map(|f| f.strip_prefix("--mount=")) {
                let kv: BTreeMap<&str, &str> =
                    mount.split(',').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
                let bind = kv.get("type").is_none_or(|t| *t == "bind");
                if bind && !kv.contains_key("from") {
                    let source = kv.get("source").or(kv.get("src")).copied().unwrap_or(".");
                    let mut r = read(source)?;
                    r.instruction = "RUN --mount".to_string();
                    reads.push(r);
                }
            }
        }
        _ => {}
    }
    Ok((reads, remote))
}

/// The variables an `ENV` instruction sets: `ENV a=1 b="x y"`, or the older `ENV a the rest`;
/// values are expanded with what the stage knows so far.
fn env_values(ins: &Instruction, esc: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>> {
    let args = ins.args.trim();
    let first = args.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let value = args[first.len()..].trim();
        return Ok(vec![(first.to_string(), expand(value, esc, lookup)?)]);
    }
    let mut set: Vec<(String, String)> = Vec::new();
    for w in words(args, esc)? {
        let Some((k, v)) = w.split_once('=') else {
            bail!("line {}: ENV {w:?} has no '=': write ENV NAME=VALUE", ins.line);
        };
        let value =
            expand(v, esc, &|n| set.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone()).or_else(|| lookup(n)))?;
        set.push((k.to_string(), value));
    }
    Ok(set)
}

fn classify(image: &str, stages: &[Stage], internal: &Internal, line: usize, what: &str) -> Result<Source> {
    if image == "scratch" {
        return Ok(Source::Scratch);
    }
    let lower = image.to_ascii_lowercase();
    if let Some(i) = stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Ok(Source::Stage(i));
    }
    if let Some(svc) = internal.resolve(image) {
        return Ok(Source::Internal(svc));
    }
    if !crate::repo::reference::is_valid_reference(image) {
        bail!("line {line}: {what} names {image:?}, which is not a valid image reference");
    }
    Ok(Source::External(crate::repo::reference::normalize_external(image)))
}

fn classify_from_flag(
    source: &str,
    earlier: &[Stage],
    internal: &Internal,
    line: usize,
    keyword: &str,
) -> Result<Source> {
    if let Ok(index) = source.parse::<usize>() {
        if index >= earlier.len() {
            bail!(
                "line {line}: {keyword} --from={index} names no earlier stage (there are {} before it)",
                earlier.len()
            );
        }
        return Ok(Source::Stage(index));
    }
    let looks_like_image = source.contains(['/', ':', '@', '.']);
    let lower = source.to_ascii_lowercase();
    if !looks_like_image && !earlier.iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
        let names: Vec<_> = earlier.iter().filter_map(|s| s.name.clone()).collect();
        bail!(
            "line {line}: {keyword} --from={source} names no stage defined before it (stages: {}); to read an image, write it with a tag, e.g. {source}:latest",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    }
    classify(source, earlier, internal, line, keyword)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(name: &str) -> bool {
        ["base", "jupyterhub", "backend"].contains(&name)
    }

    fn run(text: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<Analysis> {
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        analyze(text, target, &args, &Internal { tag: "v1", is_service: &services, triggers: &Triggers::new() })
    }

    #[test]
    fn env_values_parent_folders_and_variables_an_image_may_set() {
        let text = "FROM scratch AS build\nARG D=nope\nENV D=src E=\"${D}/lib\"\nENV OLD spaced value\n\
            COPY ${D}/app.py ${E}/x.py /\nCOPY ../up/../x /x\nRUN --mount=source=${D}/tools,target=/t true\n\
            FROM build\nCOPY ${E} /e\nFROM python:3.11\nCOPY ${APP_DIR}/x /x\nCOPY fixed /f\n";
        let a = run(text, None, &[]).unwrap();
        let reads: Vec<(usize, &str)> = a.reads.iter().map(|r| (r.line, r.source.as_str())).collect();
        // The final stage (python) does not need the others: only its own reads, and a name
        // that image may set counts the whole context.
        assert_eq!(reads, vec![(11, "."), (12, "fixed")]);
        let b = run(text, Some("build"), &[]).unwrap();
        let reads: Vec<(usize, &str)> = b.reads.iter().map(|r| (r.line, r.source.as_str())).collect();
        assert_eq!(reads, vec![(5, "src/app.py"), (5, "src/lib/x.py"), (6, "x"), (7, "src/tools")]);
        // A stage FROM another keeps its ENV.
        let c = run(&text.replace("FROM python:3.11\nCOPY ${APP_DIR}/x /x\nCOPY fixed /f\n", ""), None, &[]).unwrap();
        assert_eq!(c.reads.last().map(|r| r.source.as_str()), Some("src/lib"));
        // In a scratch stage an unset name is empty, as Docker expands it.
        let d = run("FROM scratch\nCOPY ${NOPE}x /x\n", None, &[]).unwrap();
        assert_eq!(d.reads[0].source, "x");
        assert!(run("FROM scratch\nENV a=1 b\n", None, &[]).unwrap_err().to_string().contains("has no '='"));
    }

    #[test]
    fn reads_of_the_needed_stages_only() {
        let text = "# syntax=docker/dockerfile:1.4\nARG SRC=src/app\nFROM scratch AS unused\nCOPY docs/ /docs\n\
            FROM ai-infra-base:v1 AS unusedparent\nFROM scratch AS build\nARG SRC\nARG DIR=${SRC}\nCOPY ${DIR} /app\n\
            COPY [\"third party/a.txt\", \"b*.txt\", \"/x/\"]\nRUN --mount=type=cache,target=/c --mount=type=bind,source=tools,target=/t true\n\
            RUN --mount=type=bind,from=unused,target=/u --mount=target=/ctx true\n\
            FROM scratch\nCOPY --from=build /app /app\nADD --checksum=sha256:ab https://example.org/a.tgz /\nADD https://example.org/b /\n\
            COPY --chmod=755 ./bin/ /usr/bin/\nCOPY <<EOF /note\nhi\nEOF\n";
        let a = run(text, None, &[]).unwrap();
        let reads: Vec<(usize, &str, &str)> =
            a.reads.iter().map(|r| (r.line, r.instruction.as_str(), r.source.as_str())).collect();
        assert_eq!(
            reads,
            vec![
                (4, "COPY", "docs"),
                (9, "COPY", "src/app"),
                (10, "COPY", "third party/a.txt"),
                (10, "COPY", "b*.txt"),
                (11, "RUN --mount", "tools"),
                (12, "RUN --mount", "."),
                (17, "COPY", "bin"),
            ]
        );
        // `unused` is needed through the mount from it; `unusedparent` by nothing: no parent.
        assert!(a.needed_parents.is_empty() && a.parents.contains("base"), "{:?}", a.parents);
        assert!(a.needed_bases.contains("docker/dockerfile:1.4"), "{:?}", a.bases);
        assert_eq!(a.remote.len(), 2);
        assert_eq!(a.remote[0].checksum.as_deref(), Some("sha256:ab"));
        assert_eq!(a.remote[1].url, "https://example.org/b");
        // The target's own stages only: `build` reads nothing of the final stage.
        let b = run(text, Some("build"), &[("SRC", "src/other")]).unwrap();
        assert_eq!(b.reads[1].source, "src/other");
        assert!(b.remote.is_empty());
        let c = run(
            "FROM scratch AS a\nCOPY a /\nFROM scratch AS b\nCOPY b /\nFROM scratch\nCOPY --from=b / /\n",
            None,
            &[],
        )
        .unwrap();
        assert_eq!(c.reads.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(), vec!["b"]);
        assert!(run("FROM scratch\nCOPY onlyone\n", None, &[]).unwrap_err().to_string().contains("needs a source"));
    }

    #[test]
    fn onbuild_triggers_read_the_context_of_the_build_on_them() {
        // A service's own ONBUILD is not run in its build: no read, but the image carries it.
        let parent = run("FROM scratch\nONBUILD COPY ob.txt /ob.txt\nCOPY own /own\n", None, &[]).unwrap();
        assert_eq!(parent.reads.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(), ["own"]);
        assert_eq!(parent.onbuild, ["COPY ob.txt /ob.txt"]);
        let triggers: Triggers = [
            (Source::Internal("base".into()), parent.onbuild.clone()),
            (Source::External("python:3".into()), vec!["ENV D=src".into(), "ADD ${D}/a /a".into(), "RUN true".into()]),
        ]
        .into();
        let child = |text: &str, target: Option<&str>| {
            let internal = Internal { tag: "v1", is_service: &services, triggers: &triggers };
            let args = BTreeMap::from([("IMAGE_TAG".to_string(), "v1".to_string())]);
            let a = analyze(text, target, &args, &internal).unwrap();
            a.reads.iter().map(|r| (r.line, r.instruction.clone(), r.source.clone())).collect::<Vec<_>>()
        };
        let read = |line, ins: &str, source: &str| (line, ins.to_string(), source.to_string());
        assert_eq!(
            child("ARG IMAGE_TAG\nFROM ai-infra-base:${IMAGE_TAG}\nCOPY b /b\n", None),
            [read(2, "ONBUILD COPY of ai-infra-base", "ob.txt"), read(3, "COPY", "b")]
        );
        // An external base's triggers, with the ENV they set; a stage the target does not need
        // runs none; the child's own image carries no trigger of its parent.
        assert_eq!(
            child("FROM ai-infra-base:v1 AS unused\nFROM python:3 AS app\n", Some("app")),
            [read(2, "ONBUILD ADD of python:3", "src/a")]
        );
        let internal = Internal { tag: "v1", is_service: &services, triggers: &triggers };
        assert!(analyze("FROM ai-infra-base:v1\n", None, &BTreeMap::new(), &internal).unwrap().onbuild.is_empty());
    }

    #[test]
    fn instructions_continuations_comments() {
        let p = parse("FROM scratch\n\n# c\nCOPY a \\\n  # inside\n\n  b /x\nlabel k=v\r\n").unwrap();
        let kws: Vec<_> = p.instructions.iter().map(|i| (i.line, i.keyword.as_str(), i.args.as_str())).collect();
        assert_eq!(kws, vec![(1, "FROM", "scratch"), (4, "COPY", "a   b /x"), (8, "LABEL", "k=v")]);
    }

    #[test]
    fn directives_and_escape() {
        let p = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nCOPY a `\n b /\nCOPY c\\ /d\n").unwrap();
        assert_eq!(p.escape, '`');
        assert_eq!(p.instructions[1].args, "a  b /");
        assert_eq!(p.instructions[2].args, "c\\ /d");
        // A directive after an instruction or comment is just a comment.
        let p = parse("# hello\n# escape=`\nFROM scratch\nCOPY a \\\n b /\n").unwrap();
        assert_eq!(p.escape, '\\');
        assert_eq!(p.instructions[1].args, "a  b /");
        assert!(parse("# escape=x\nFROM scratch").unwrap_err().to_string().contains("escape"));
        assert!(parse("# escape=`\n# escape=\\\nFROM scratch").is_err());
    }

    #[test]
    fn heredoc_bodies_are_skipped() {
        let text = "FROM scratch\nRUN <<EOF\nFROM evil\nEOF\nCOPY <<-\"END\" /x\n\tARG nope\n\tEND\nLABEL a=b\n";
        let p = parse(text).unwrap();
        let kws: Vec<_> = p.instructions.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(kws, vec!["FROM", "RUN", "COPY", "LABEL"]);
        assert!(parse("FROM scratch\nRUN <<EOF\nx\n").unwrap_err().to_string().contains("never closed"));
    }

    #[test]
    fn heredocs_are_found_as_buildkit_finds_them() {
        let found = |args: &str| heredoc_markers(args);
        let one = |name: &str, chomp: bool| vec![(name.to_string(), chomp)];
        // Shifts and here-strings are not heredocs.
        for none in [
            "echo $((1<<3))",
            "cat<<EOF",
            "echo \"<<EOF\"",
            "echo '<<EOF'",
            "cat <<<word",
            "echo \\<<EOF",
            "<<",
            "[\"sh\", \"-c\", \"cat <<EOF\"]",
        ] {
            assert_eq!(found(none), vec![], "{none}");
        }
        assert_eq!(found("<<EOF"), one("EOF", false));
        assert_eq!(found("cat <<-EOF > /x"), one("EOF", true));
        assert_eq!(found("3<<EOF cat"), one("EOF", false));
        assert_eq!(found("<<  \"END\""), one("END", false));
        assert_eq!(found("<<'a b' cat"), one("a b", false));
        assert_eq!(found("--mount=type=cache,target=/c <<EOF"), one("EOF", false));
        assert_eq!(found("<<X <<Y /dest"), vec![("X".to_string(), false), ("Y".to_string(), false)]);
        // As Dockerfiles: the shift is a RUN of its own; ONBUILD wraps one with a heredoc.
        let p = parse("FROM scratch\nRUN echo $((1<<3))\nLABEL a=b\n").unwrap();
        assert_eq!(p.instructions.len(), 3);
        let p = parse("FROM scratch\nONBUILD RUN <<EOF\nFROM evil\nEOF\nLABEL a=b\n").unwrap();
        let kws: Vec<_> = p.instructions.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(kws, ["FROM", "ONBUILD", "LABEL"]);
    }

    #[test]
    fn bad_instruction() {
        assert!(parse("FROM scratch\n=oops\n").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn expansion() {
        let vars = |n: &str| match n {
            "A" => Some("a".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        let e = |s: &str| expand(s, '\\', &vars).unwrap();
        assert_eq!(e("x-${A}-$A-${B}"), "x-a-a-");
        assert_eq!(e("${B:-d}|${A:-d}|${E:-d}"), "d|a|d");
        assert_eq!(e("${A:+p}|${B:+p}"), "p|");
        assert_eq!(e("\\$A $ $1"), "$A $ ");
        assert!(expand("${A", '\\', &vars).is_err());
        assert!(expand("${A%x}", '\\', &vars).is_err());
        // As a probe build under each builder expanded them: defaults that hold variables,
        // `:?` that stops the build, and no `-`/`+` without the colon.
        assert_eq!(e("${U:-${A}}|${U:-x${A:+y}z}|${U:-${U:-${A}}}"), "a|xyz|a");
        assert_eq!(e("${A:?need a}"), "a");
        let stop = expand("${E:?need e}", '\\', &vars).unwrap_err().to_string();
        assert!(stop.contains("E: need e"), "{stop}");
        assert!(expand("${U:-${A}", '\\', &vars).is_err());
        assert!(expand("${A-d}", '\\', &vars).is_err() && expand("${A+d}", '\\', &vars).is_err());
        // A word is expanded even where it is not used, and its `:?` stops the build all the
        // same (probed: "failed to process \"${A:-${E:?boom}}\": E: boom" under both).
        for unused in ["${A:-${E:?boom}}", "${U:+${E:?boom}}", "${A:?${E:?boom}}"] {
            let stop = expand(unused, '\\', &vars).unwrap_err().to_string();
            assert!(stop.contains("E: boom"), "{unused}: {stop}");
        }
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(words("a=1 b=\"x y\" 'c d'", '\\').unwrap(), vec!["a=1", "b=x y", "c d"]);
        assert_eq!(words("a\\ b", '\\').unwrap(), vec!["a b"]);
        assert!(words("a=\"x", '\\').is_err());
    }

    #[test]
    fn global_args_and_classification() {
        let df = "ARG IMAGE_TAG=latest\nARG PY=3.11\nARG REG\nFROM ai-infra-base:${IMAGE_TAG} AS base\nFROM ${REG:+$REG/}python:${PY}-slim AS py\nCOPY --from=base /a /a\nCOPY --from=0 /b /b\nRUN --mount=type=bind,from=ai-infra-jupyterhub:v1,target=/j true\nFROM scratch AS final\nCOPY --from=py / /\n";
        let a = run(df, None, &[("IMAGE_TAG", "v1")]).unwrap();
        assert_eq!(a.stages.len(), 3);
        assert_eq!(a.stages[0].from, Source::Internal("base".into()));
        assert_eq!(a.stages[1].from, Source::External("python:3.11-slim".into()));
        assert_eq!(
            a.stages[1].copies_from,
            vec![Source::Stage(0), Source::Stage(0), Source::Internal("jupyterhub".into())]
        );
        assert_eq!(a.stages[2].from, Source::Scratch);
        assert_eq!(a.parents, ["base", "jupyterhub"].iter().map(|s| s.to_string()).collect());
        assert_eq!(a.bases, ["python:3.11-slim".to_string()].into_iter().collect());
        assert!(!a.image_tag_beyond_parents);
        assert_eq!(declared_args(df).unwrap().len(), 3);
        // Declared names come from the instructions alone: a FROM that needs a value passes.
        assert_eq!(declared_args("ARG BASE\nFROM ${BASE}\nARG X=1 Y\n").unwrap().len(), 3);
        // Build args override defaults; ${v:+w} expands.
        let a = run(df, None, &[("IMAGE_TAG", "v1"), ("REG", "mirror.io"), ("PY", "3.12")]).unwrap();
        assert_eq!(a.stages[1].from, Source::External("mirror.io/python:3.12-slim".into()));
        // Another tag makes the base image an external, pinned one.
        let a = run(df, None, &[("IMAGE_TAG", "v0")]).unwrap();
        assert_eq!(a.stages[0].from, Source::External("ai-infra-base:v0".into()));
        assert!(a.image_tag_beyond_parents);
    }

    #[test]
    fn targets_limit_what_is_read() {
        let df = "ARG IMAGE_TAG\nFROM ai-infra-base:${IMAGE_TAG} AS build\nFROM scratch AS init\nCOPY a /a\nFROM build AS app\nLABEL v=${IMAGE_TAG}\n";
        let init = run(df, Some("init"), &[("IMAGE_TAG", "v1")]).unwrap();
        assert_eq!(init.target_index, 1);
        // A stage the target does not need contributes nothing to the image, though the legacy
        // builder builds it: base is built first, but is no input of init.
        assert!(init.parents.contains("base") && init.needed_parents.is_empty());
        let app = run(df, Some("APP"), &[("IMAGE_TAG", "v1")]).unwrap();
        assert_eq!(app.target_index, 2);
        assert_eq!(app.stages[2].from, Source::Stage(0));
        assert!(app.image_tag_beyond_parents, "LABEL reads IMAGE_TAG");
        let err = run(df, Some("nope"), &[("IMAGE_TAG", "v1")]).unwrap_err().to_string();
        assert!(err.contains("'nope' is not defined") && err.contains("build, init, app"), "{err}");
    }

    #[test]
    fn bad_dockerfiles() {
        let err = |df: &str| run(df, None, &[]).unwrap_err().to_string();
        assert!(err("ARG B\nFROM ${B}\n").contains("expands to nothing"));
        assert!(err("FROM scratch\nCOPY --from=builder /a /a\n").contains("names no stage"));
        assert!(err("FROM scratch\nCOPY --from=1 /a /a\n").contains("--from=1"));
        assert!(err("FROM builder\nFROM scratch AS builder\n").contains("defined later"));
        assert!(err("LABEL a=b\nFROM scratch\n").contains("before the first FROM"));
        assert!(err("ARG X=1\n").contains("no FROM"));
        assert!(err("FROM Bad:Name\n").contains("not a valid image reference"));
        assert!(err("FROM scratch AS a\nFROM scratch AS a\n").contains("used twice"));
        assert!(err("FROM scratch AS a b\n").contains("FROM takes"));
    }

    #[test]
    fn mentions_names_exactly() {
        assert!(mentions("a=${IMAGE_TAG}", "IMAGE_TAG"));
        assert!(mentions("a=$IMAGE_TAG", "IMAGE_TAG"));
        assert!(!mentions("a=$IMAGE_TAGS", "IMAGE_TAG"));
        assert!(!mentions("IMAGE_TAG", "IMAGE_TAG"));
    }
}
