//! Which files of its build context a build reads: the sources of the COPY, ADD and RUN bind
//! mounts of the stages its target needs (from the Dockerfile analysis), matched as Docker
//! matches them: a path, everything below it, or a wildcard pattern; `.` is the whole context.

use crate::repo::dockerfile::Read;
use crate::repo::ignore::Pattern;

/// The characters that make a COPY or ADD source a wildcard pattern.
pub const WILDCARDS: [char; 4] = ['*', '?', '[', '\\'];

/// The reads of one build, ready to match context paths against.
pub struct Reads {
    sources: Vec<(Matcher, Read)>,
}

enum Matcher {
    Whole,
    /// A plain path: itself and everything below it.
    Path(String),
    /// A wildcard pattern; `prefix` is its part before the first wildcard, whole folders only.
    Glob {
        pattern: Pattern,
        prefix: String,
    },
}

/// What a walk does with a context path, given what the builds read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Not read, nor anything below it.
    No,
    /// Not read itself, but something below it may be: walk into it.
    Below,
    /// Read.
    Yes,
}

impl Reads {
    pub fn new(reads: &[Read]) -> Reads {
        let sources = reads
            .iter()
            .map(|r| {
                let m = if r.source == "." {
                    Matcher::Whole
                } else if r.source.contains(WILDCARDS) {
                    let upto = r.source.find(WILDCARDS).unwrap_or(0);
                    let prefix = r.source[..upto].rfind('/').map_or("", |p| &r.source[..p]).to_string();
                    // A pattern Docker could not match reads nothing here; the build says why.
                    match Pattern::new(&r.source) {
                        Ok(pattern) => Matcher::Glob { pattern, prefix },
                        Err(_) => Matcher::Path(r.source.clone()),
                    }
                } else {
                    Matcher::Path(r.source.clone())
                };
                (m, r.clone())
            })
            .collect();
        Reads { sources }
    }

    /// Whether the build reads the whole context.
    pub fn whole(&self) -> bool {
        self.sources.iter().any(|(m, _)| matches!(m, Matcher::Whole))
    }

    /// The first instruction that reads `path` (a context path: relative, clean).
    pub fn reader(&self, path: &str) -> Option<&Read> {
        self.sources.iter().find(|(m, _)| covers(m, path)).map(|(_, r)| r)
    }

    /// What a walk does with `path`; `dir` tells whether it is a folder.
    pub fn want(&self, path: &str, dir: bool) -> Want {
        let mut want = Want::No;
        for (m, _) in &self.sources {
            if covers(m, path) {
                return Want::Yes;
            }
            if dir {
                let prefix = match m {
                    Matcher::Path(p) => p.as_str(),
                    Matcher::Glob { prefix, .. } => prefix.as_str(),
                    Matcher::Whole => "",
                };
                if prefix.is_empty() || is_below(prefix, path) || is_below(path, prefix) {
                    want = Want::Below;
                }
            }
        }
        want
    }
}

fn covers(m: &Matcher, path: &str) -> bool {
    match m {
        Matcher::Whole => true,
        Matcher::Path(p) => is_below(path, p),
        Matcher::Glob { pattern, .. } => pattern.matches_or_parent(path),
    }
}

/// Whether `path` is `folder` or below it.
fn is_below(path: &str, folder: &str) -> bool {
    path == folder || (path.starts_with(folder) && path.as_bytes().get(folder.len()) == Some(&b'/'))
}

/// Combines what several builds from one context read: the walk takes a path that any wants.
pub fn want_any(all: &[Reads], path: &str, dir: bool) -> Want {
    let mut want = Want::No;
    for r in all {
        match r.want(path, dir) {
            Want::Yes => return Want::Yes,
            Want::Below => want = Want::Below,
            Want::No => {}
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(sources: &[&str]) -> Reads {
        Reads::new(
            &sources
                .iter()
                .enumerate()
                .map(|(i, s)| Read { line: i + 2, instruction: "COPY".into(), source: s.to_string() })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn paths_folders_and_patterns() {
        let r = reads(&["src/backend", "third_party/*.txt", "setup.py"]);
        assert_eq!(r.want("src/backend/app/main.py", false), Want::Yes);
        assert_eq!(r.want("src/backend", true), Want::Yes);
        assert_eq!(r.want("src", true), Want::Below);
        assert_eq!(r.want("src/frontend", true), Want::No);
        assert_eq!(r.want("src/backendx", true), Want::No);
        assert_eq!(r.want("third_party", true), Want::Below);
        assert_eq!(r.want("third_party/a.txt", false), Want::Yes);
        assert_eq!(r.want("third_party/a.md", false), Want::No);
        assert_eq!(r.want("setup.py", false), Want::Yes);
        assert_eq!(r.want("target", true), Want::No);
        assert_eq!(r.reader("third_party/x.txt").unwrap().line, 3);
        assert!(r.reader("README.md").is_none());
        assert!(!r.whole());
        let all = reads(&["."]);
        assert!(all.whole());
        assert_eq!(all.want("anything/at/all", false), Want::Yes);
        // A pattern at the top may match anywhere at the top: walk everything.
        assert_eq!(reads(&["*.py"]).want("src", true), Want::Below);
        assert_eq!(reads(&["*.py"]).want("src/a.py", false), Want::No);
        assert_eq!(reads(&["*.py"]).want("a.py", false), Want::Yes);
        assert_eq!(want_any(&[reads(&["a"]), reads(&["b"])], "b/x", false), Want::Yes);
        assert_eq!(want_any(&[reads(&["a/x"]), reads(&["b"])], "a", true), Want::Below);
    }
}
