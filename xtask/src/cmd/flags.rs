//! The command line: one plain struct per command, its usage text, and the checks that turn a
//! mistaken call into a one-line usage error (exit code 2).

use std::ffi::OsString;

use anyhow::Result;
use camino::Utf8Path;

use crate::base::UsageError;
use crate::decide::report::Format;
use crate::repo::reference;

pub const USAGE: &str = "\
cargo xtask: build ai-infra's Docker images, only those whose inputs changed

Usage: cargo xtask <command> [args]

Commands:
  check-status [TAG] [REGISTRY]     status of every service image (OK, MISSING, INVALID, STALE) and why
  build-all [TAG] [REGISTRY]        build every image that is not OK, parents first, in parallel
  build SERVICE [TAG] [REGISTRY]    build one service and any parent that is not OK
  clean-all [TAG]                   list the project's images; --force removes them
  history [SERVICE]                 recent builds and typical build times
  sync-env [--check]                create .env from .env.example, or add the keys it lacks
  render [--check]                  render templates/<service>/**/*.tpl into services/<service>/
  pull-deps                         pull the dependency images (dependency-images.txt) that are missing
  push-deps REGISTRY                mirror the dependency images into REGISTRY, skipping what it holds
  export DIR [TAG]                  write an offline bundle: a tar per image, manifest.json, import.sh
  import DIR                        check and load a bundle, then report every image
  engine up|status|down             a Docker engine for machines that have none
  test [-- NEXTEST-ARGS]            the whole test suite on a real engine and registry (installs them as root)
  bench                             the performance figures, printed
  help                              this text

`cargo xtask <command> --help` shows a command's flags. TAG defaults to IMAGE_TAG from .env, else v0.3.6-dev.
Exit codes: 0 success, 1 a check or build failed, 2 a usage error.
";

const CHECK_STATUS: &str = "\
Usage: cargo xtask check-status [TAG] [REGISTRY] [--format human|plain|json|dot|mermaid] [--exit-code]

Classifies every service image as OK, MISSING, INVALID or STALE by the digest of its inputs,
with one engine call, and says why each is not OK; a service whose Dockerfile cannot be analysed
is ERROR with its reason, and the others are classified as usual.

  --format F     human (default), plain (`service|STATUS|image` lines), json, or the service
                 graph coloured by status: dot (Graphviz: `| dot -Tsvg > graph.svg`) or mermaid
  --exit-code    exit 1 when any service is not OK (ERROR included)
  --remote       also ask REGISTRY whether TAG is there and is the build of the current
                 inputs (plain gets a fourth column, json a \"remote\" object)
  --deps         also show the dependency images (dependency-images.txt): PRESENT or MISSING,
                 and with --remote whether REGISTRY holds the same image (OK, DIFFERENT, MISSING)
";

const PULL_DEPS: &str = "\
Usage: cargo xtask pull-deps

Pulls the dependency images listed in dependency-images.txt (third-party images the stack runs,
their tags from .env) that are not present, through BASE_IMAGE_MIRROR first when it is set.
";

const PUSH_DEPS: &str = "\
Usage: cargo xtask push-deps REGISTRY

Pushes every dependency image (dependency-images.txt) to REGISTRY as REGISTRY/<image>, skipping
those the registry already holds with the same digest (all looked up at once, each within 3 s).
";

const EXPORT: &str = "\
Usage: cargo xtask export DIR [TAG] [--allow-stale] [--with-bases] [--sign KEY]

Writes an offline bundle into DIR: one tar per image (the project's images for TAG, the
dependency images), manifest.json (name, image ID, input digest, each tar's sha256 and size)
and import.sh (needs only sh, sha256sum and docker or podman). An image whose ID the bundle
already holds is not written again. Stops when an image is not OK, naming it.

  --allow-stale  export the project's images as they are, even when not OK
  --with-bases   also export the external base images the services build on
  --sign KEY     sign manifest.json with the OpenSSH private KEY (ssh-keygen -Y sign, namespace
                 ai-infra-bundle) into manifest.json.sig
";

const IMPORT: &str = "\
Usage: cargo xtask import DIR [--allowed-signers FILE]

Checks each tar of the bundle in DIR against its sha256 in manifest.json and its own
manifest.json (its image must be the manifest's ID, and it may name nothing else), loads and
tags those that pass (a refused one is named and nothing of it is loaded), then reports every
image: a project image is OK when its label carries the manifest's input digest. Exit 1 when a
tar was refused or an image is not OK.

  --allowed-signers FILE  refuse the bundle unless manifest.json.sig verifies with a key of
                          FILE (OpenSSH's allowed-signers format); without it the report says
                          whether the bundle is unsigned or signed but not verified
";

const BUILD_ALL: &str = "\
Usage: cargo xtask build-all [TAG] [REGISTRY] [--force] [--jobs N] [--dry-run] [--format human|json] [--verbose]

Builds exactly the images that are not OK, parents before children, independent services at
the same time, and says why for each. Steps: 0 status, 1 prefetch base images, 2 sync .env,
3 render templates, 4 build, 5 verify. An image with identical inputs under another tag is
tagged instead of built. One run per root at a time; Ctrl-C stops cleanly.

  --force        rebuild every service without the layer cache (FORCE_REBUILD=true does the same)
  --jobs N       services built at once (default: the number of CPUs)
  --dry-run      print the plan and change nothing
  --format F     the plan of --dry-run as human (default) or json
  --verbose      show the engine's build output live
  --no-push      with REGISTRY: build and tag, but push nothing

With REGISTRY, each image is also pushed as REGISTRY/ai-infra-<svc>:TAG and under its content
tag inputs-<input digest>; what the registry already holds is not pushed again, and a service
whose content tag is in the registry is pulled instead of built.
";

const BUILD: &str = "\
Usage: cargo xtask build SERVICE [TAG] [REGISTRY] [--force] [--jobs N] [--dry-run] [--verbose]

Builds SERVICE, and first any internal parent image that is not OK, the way build-all does. A
service that is OK is not rebuilt.

  --force        rebuild SERVICE without the layer cache (FORCE_REBUILD=true does the same)
  --jobs N       services built at once (default: the number of CPUs)
  --dry-run      print the plan and change nothing
  --verbose      show the engine's build output live
  --no-push      with REGISTRY: build and tag, but push nothing
";

const CLEAN_ALL: &str = "\
Usage: cargo xtask clean-all [TAG] [--force] [--include-unlabelled]

Lists the images of this project (ai-infra-<service>, and REGISTRY/ai-infra-<service> for the
registries this root has built for; all tags or TAG's) and, only with --force, removes those
names. Never touches any other image. An image under such a name without this tool's input
label (ai-infra.inputs) was not built by it: it is listed as kept, and stays.

  --force               remove the images listed
  --include-unlabelled  with --force, also remove the images this tool did not build
";

const HISTORY: &str = "\
Usage: cargo xtask history [SERVICE]

Shows the recent builds recorded in target/xtask/history.jsonl (all services, or SERVICE's) and
each service's typical build time.
";

const SYNC_ENV: &str = "\
Usage: cargo xtask sync-env [--check]

Creates .env from .env.example when it is missing, and appends the keys .env.example has and
.env lacks. Never changes a value or line you wrote; the previous .env is kept as .env.bak.
Reports keys only .env has, and defaults that moved while you keep another value.

  --check        change nothing; exit 1 when .env is missing or behind
";

const RENDER: &str = "\
Usage: cargo xtask render [--check]

Renders templates/<service>/**/<name>.tpl to services/<service>/**/<name> (a Dockerfile.tpl
renders the service's Dockerfile): {{NAME}} from the environment, then .env, then
.env.example; ${...} and $name are left as written, for Docker, compose and the shell;
{{\"{{\"}} writes a literal {{. An undefined {{NAME}} is an error naming file, line and column.
Writes only files whose content changes; any error writes nothing.

  --check        change nothing; exit 1 and name the outputs that are out of date
";

const ENGINE: &str = "\
Usage: cargo xtask engine up|status|down

  up       start a Docker engine when none answers (installs Debian's docker.io as root);
           no bridge, no iptables, state under target/engine
  status   which engine answers, and how it was started
  down     stop the engine that `up` started (and no other)
";

const TEST: &str = "\
Usage: cargo xtask test [-- ARGS]

Runs the whole test suite: installs the Docker engine, the registry and busybox when missing
(as root), starts an engine (unless one answers) and a registry on 127.0.0.1, runs
`cargo nextest run` (ARGS are passed on), and stops what it started.
";

const BENCH: &str = "\
Usage: cargo xtask bench [--only PART] [--services N] [--files N] [--file-kib N] [--rounds N]

Measures, on generated workspaces, and prints the figures and ratios:
  status     check-status against the old per-service approach (four engine calls per service),
             through the engine's API and through the docker CLI
  scale      at 100 services x 200 files: check-status against a bare stat walk plus one engine
             API request, and a no-op build-all against check-status (API and CLI paths)
  digest     a warm re-check (hash cache filled) against a cold one and against a bare walk
             that stats every file, the cold digest throughput against sha256sum over the
             same files, and warm against cold as whole check-status commands
  noop       a no-op build-all of the project's stack against build-all --force
  remote     check-status --remote against asking the registry one service after another
             (starts a registry on loopback; installs docker-registry as root when missing)
  parallel   --jobs 4 on sleeping builds against the ideal schedule (needs busybox)
  export     export of the project's stack against one `docker save` of the same images,
             and a second (incremental) export against the first
  root       the newest ai-infra layout (every service built from the repository root, its
             Dockerfile under src/<svc>/): after a one-file change under one service's folder,
             build-all rebuilds exactly it and its descendants; warm check-status against the
             per-service layout of the same files (15 services, 2,000 files by default)
  builders   build-all --force of the project's stack with BuildKit (Debian's docker 20.10 CLI
             at /usr/bin/docker) against the legacy builder (the docker CLI at
             /usr/local/bin/docker), side by side

  --only PART    run one part, or several: --only status,scale (default: all)

  --services N   services in the generated workspace (default 20; 15 for root)
  --files N      files per service for the status and digest figures (default 1000); for
                 root, the files of the whole root context (default 2000)
  --file-kib N   their average size in KiB (default 16); the warm/cold ratio grows with it
  --rounds N     forced builds of the stack per builder, taking turns (default 3)
";

pub struct CheckStatus {
    pub remote: bool,
    pub deps: bool,
    pub tag: Option<String>,
    pub registry: Option<String>,
    pub format: Format,
    pub exit_code: bool,
}

/// build-all, and build SERVICE.
pub struct Build {
    /// None for build-all.
    pub service: Option<String>,
    pub tag: Option<String>,
    pub registry: Option<String>,
    pub force: bool,
    pub jobs: usize,
    pub dry_run: bool,
    pub format: Format,
    pub verbose: bool,
    pub no_push: bool,
}

pub struct Bench {
    pub only: Option<String>,
    /// None: each part's own default.
    pub services: Option<usize>,
    pub files: Option<usize>,
    pub file_kib: usize,
    pub rounds: usize,
}

pub struct Export {
    pub dir: camino::Utf8PathBuf,
    pub tag: Option<String>,
    pub allow_stale: bool,
    pub with_bases: bool,
    pub sign: Option<camino::Utf8PathBuf>,
}

pub enum Command {
    CheckStatus(CheckStatus),
    PullDeps,
    PushDeps(String),
    Export(Export),
    Import { dir: camino::Utf8PathBuf, allowed_signers: Option<camino::Utf8PathBuf> },
    Build(Build),
    CleanAll { tag: Option<String>, force: bool, include_unlabelled: bool },
    History(Option<String>),
    SyncEnv { check: bool },
    Render { check: bool },
    Engine(String),
    Test(Vec<String>),
    Bench(Bench),
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// Takes a flag that may be given once.
fn once(args: &mut pico_args::Arguments, flag: &'static str) -> Result<bool> {
    let there = args.contains(flag);
    if there && args.contains(flag) {
        return Err(usage(format!("{flag} is given twice")));
    }
    Ok(there)
}

/// The positional arguments left after the flags; any leftover flag is an error.
fn positionals(args: pico_args::Arguments, command: &str, max: usize, names: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in args.finish() {
        let a = a.into_string().map_err(|a| usage(format!("argument {a:?} is not UTF-8")))?;
        if a.starts_with('-') && a.len() > 1 {
            return Err(usage(format!("unknown flag {a} for {command}; see `cargo xtask {command} --help`")));
        }
        out.push(a);
    }
    if out.len() > max {
        return Err(usage(format!(
            "unexpected argument {:?}: {command} takes {names}; see `cargo xtask {command} --help`",
            out[max]
        )));
    }
    Ok(out)
}

fn tag_and_registry(mut pos: Vec<String>) -> Result<(Option<String>, Option<String>)> {
    let registry = if pos.len() > 1 { pos.pop() } else { None };
    let tag = pos.pop();
    if let Some(t) = &tag {
        reference::validate_tag(t)?;
    }
    if let Some(r) = &registry {
        reference::validate_registry(r)?;
    }
    Ok((tag, registry))
}

/// A flag's text as given.
struct Text(String);

impl std::str::FromStr for Text {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Text, String> {
        Ok(Text(s.to_string()))
    }
}

/// A flag's file path; an empty one is a usage error.
fn path_value(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<camino::Utf8PathBuf>> {
    match value::<Text>(args, flag)?.map(|t| t.0) {
        Some(p) if p.is_empty() => Err(usage(format!("{flag} needs a file"))),
        p => Ok(p.map(Into::into)),
    }
}

fn value<T: std::str::FromStr<Err = String>>(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<T>> {
    args.opt_value_from_fn(flag, |s| s.parse::<T>()).map_err(|e| match e {
        pico_args::Error::Utf8ArgumentParsingFailed { cause, .. }
        | pico_args::Error::ArgumentParsingFailed { cause } => usage(format!("{flag}: {cause}")),
        pico_args::Error::OptionWithoutAValue(_) => usage(format!("{flag} needs a value")),
        other => usage(format!("{flag}: {other}")),
    })
}

fn number(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// Parses the command line; None means help was printed.
pub fn parse(raw: Vec<OsString>) -> Result<Option<Command>> {
    let mut args = pico_args::Arguments::from_vec(raw);
    let sub = args.subcommand().map_err(|e| usage(format!("{e}")))?;
    let help = args.contains(["-h", "--help"]);
    let Some(sub) = sub else {
        // A flag before the command (`xtask --verbose build-all`) would otherwise print the
        // usage and exit 0, and a CI job would pass without building anything.
        if let Some(first) = args.finish().first().filter(|_| !help) {
            return Err(usage(format!(
                "{} before the command: flags go after it, e.g. `cargo xtask build-all --verbose`; `cargo xtask --help` lists the commands",
                first.to_string_lossy()
            )));
        }
        print!("{USAGE}");
        return Ok(None);
    };
    // `help CMD` is `CMD --help`.
    let (sub, help) = match sub.as_str() {
        "help" | "--help" | "-h" => match args.subcommand().map_err(|e| usage(format!("{e}")))? {
            Some(cmd) => (cmd, true),
            None => (sub, help),
        },
        _ => (sub, help),
    };
    let text = match sub.as_str() {
        "help" | "--help" | "-h" => USAGE,
        "check-status" => CHECK_STATUS,
        "build-all" => BUILD_ALL,
        "build" => BUILD,
        "clean-all" => CLEAN_ALL,
        "history" => HISTORY,
        "sync-env" => SYNC_ENV,
        "render" => RENDER,
        "engine" => ENGINE,
        "pull-deps" => PULL_DEPS,
        "push-deps" => PUSH_DEPS,
        "export" => EXPORT,
        "import" => IMPORT,
        "test" => TEST,
        "bench" => BENCH,
        other => {
            let hint = nearest(other).map_or(String::new(), |c| format!("did you mean `{c}`? "));
            return Err(usage(format!("unknown command {other:?}; {hint}`cargo xtask --help` lists the commands")));
        }
    };
    if help || text == USAGE {
        if let Some(extra) = args.finish().first() {
            return Err(usage(format!("unexpected argument {:?} after help", extra.to_string_lossy())));
        }
        print!("{text}");
        return Ok(None);
    }
    command(&sub, args).map(Some)
}

/// The commands, as `--help` lists them.
const COMMANDS: [&str; 14] = [
    "check-status",
    "build-all",
    "build",
    "clean-all",
    "history",
    "sync-env",
    "render",
    "engine",
    "pull-deps",
    "push-deps",
    "export",
    "import",
    "test",
    "bench",
];

/// The command a mistyped one most likely meant: within two edits of it.
fn nearest(typed: &str) -> Option<&'static str> {
    let distance = |a: &str, b: &str| {
        // Levenshtein distance, one row at a time.
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    };
    COMMANDS.iter().map(|c| (distance(typed, c), *c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

/// The command `sub` with its arguments, checked.
fn command(sub: &str, mut args: pico_args::Arguments) -> Result<Command> {
    Ok(match sub {
        "check-status" => check_status(args)?,
        "build" | "build-all" => build(sub, args)?,
        "clean-all" => {
            let force = once(&mut args, "--force")?;
            let include_unlabelled = once(&mut args, "--include-unlabelled")?;
            let (tag, _) = tag_and_registry(positionals(args, "clean-all", 1, "[TAG]")?)?;
            Command::CleanAll { tag, force, include_unlabelled }
        }
        "history" => {
            let pos = positionals(args, "history", 1, "[SERVICE]")?;
            Command::History(pos.into_iter().next())
        }
        "sync-env" | "render" => {
            let check = once(&mut args, "--check")?;
            positionals(args, sub, 0, "no arguments")?;
            if sub == "render" {
                Command::Render { check }
            } else {
                Command::SyncEnv { check }
            }
        }
        "pull-deps" => {
            positionals(args, "pull-deps", 0, "no arguments")?;
            Command::PullDeps
        }
        "push-deps" => {
            let pos = positionals(args, "push-deps", 1, "REGISTRY")?;
            let Some(registry) = pos.into_iter().next() else {
                return Err(usage(
                    "push-deps needs a REGISTRY, e.g. cargo xtask push-deps registry.example.com/mirror".into(),
                ));
            };
            reference::validate_registry(&registry)?;
            Command::PushDeps(registry)
        }
        "export" => export(args)?,
        "import" => {
            let allowed_signers = path_value(&mut args, "--allowed-signers")?;
            let pos = positionals(args, "import", 1, "DIR")?;
            match pos.into_iter().next().filter(|d| !d.is_empty()) {
                Some(d) => Command::Import { dir: d.into(), allowed_signers },
                None => return Err(usage("import needs the DIR that `cargo xtask export` wrote".into())),
            }
        }
        "engine" => {
            let pos = positionals(args, "engine", 1, "up, status or down")?;
            match pos.first().map(String::as_str) {
                Some(a @ ("up" | "status" | "down")) => Command::Engine(a.to_string()),
                Some(other) => return Err(usage(format!("unknown engine action {other:?}: use up, status or down"))),
                None => return Err(usage("engine needs an action: up, status or down".into())),
            }
        }
        "test" => test(args)?,
        "bench" => {
            let services = value::<Count>(&mut args, "--services")?.map(|c| c.0);
            let files = value::<Count>(&mut args, "--files")?.map(|c| c.0);
            let file_kib = value::<Count>(&mut args, "--file-kib")?.map_or(16, |c| c.0);
            let rounds = value::<Count>(&mut args, "--rounds")?.map_or(3, |c| c.0);
            let only = value::<BenchPart>(&mut args, "--only")?.map(|p| p.0);
            positionals(args, "bench", 0, "no arguments")?;
            Command::Bench(Bench { only, services, files, file_kib, rounds })
        }
        _ => unreachable!("commands are matched in parse"),
    })
}

fn check_status(mut args: pico_args::Arguments) -> Result<Command> {
    let format = value::<Format>(&mut args, "--format")?.unwrap_or(Format::Human);
    let exit_code = once(&mut args, "--exit-code")?;
    let remote = once(&mut args, "--remote")?;
    let deps = once(&mut args, "--deps")?;
    let (tag, registry) = tag_and_registry(positionals(args, "check-status", 2, "[TAG] [REGISTRY]")?)?;
    if remote && registry.is_none() {
        return Err(usage("--remote needs a REGISTRY: cargo xtask check-status TAG REGISTRY --remote".into()));
    }
    if matches!(format, Format::Dot | Format::Mermaid) && (remote || deps) {
        return Err(usage("the graph formats (dot, mermaid) draw the local statuses: drop --remote and --deps".into()));
    }
    Ok(Command::CheckStatus(CheckStatus { remote, deps, tag, registry, format, exit_code }))
}

/// `build SERVICE` and `build-all`.
fn build(sub: &str, mut args: pico_args::Arguments) -> Result<Command> {
    let force = once(&mut args, "--force")? || force_from_env()?;
    let dry_run = once(&mut args, "--dry-run")?;
    let verbose = once(&mut args, "--verbose")?;
    let no_push = once(&mut args, "--no-push")?;
    let jobs = value::<Count>(&mut args, "--jobs")?.map_or_else(default_jobs, |c| c.0);
    let format = value::<Format>(&mut args, "--format")?.unwrap_or(Format::Human);
    if matches!(format, Format::Plain | Format::Dot | Format::Mermaid) {
        return Err(usage(format!("{sub} --format takes human or json (the others are for check-status)")));
    }
    if format == Format::Json && !dry_run {
        return Err(usage(format!(
            "{sub} --format json is the plan of --dry-run: add --dry-run, or drop --format (a run prints text)"
        )));
    }
    let mut pos = if sub == "build" {
        let pos = positionals(args, "build", 3, "SERVICE [TAG] [REGISTRY]")?;
        if pos.is_empty() {
            return Err(usage("build needs a SERVICE; `cargo xtask check-status` lists them".into()));
        }
        pos
    } else {
        let mut pos = positionals(args, "build-all", 2, "[TAG] [REGISTRY]")?;
        pos.insert(0, String::new());
        pos
    };
    let service = Some(pos.remove(0)).filter(|s| !s.is_empty());
    let (tag, registry) = tag_and_registry(pos)?;
    Ok(Command::Build(Build { service, tag, registry, force, jobs, dry_run, format, verbose, no_push }))
}

fn export(mut args: pico_args::Arguments) -> Result<Command> {
    let allow_stale = once(&mut args, "--allow-stale")?;
    let with_bases = once(&mut args, "--with-bases")?;
    let sign = path_value(&mut args, "--sign")?;
    let mut pos = positionals(args, "export", 2, "DIR [TAG]")?;
    if pos.is_empty() || pos[0].is_empty() {
        return Err(usage("export needs a DIR to write the bundle into: cargo xtask export DIR [TAG]".into()));
    }
    let dir = camino::Utf8PathBuf::from(pos.remove(0));
    let (tag, _) = tag_and_registry(pos)?;
    Ok(Command::Export(Export { dir, tag, allow_stale, with_bases, sign }))
}

/// `test [-- NEXTEST-ARGS]`: what follows `--` goes to the test runner.
fn test(args: pico_args::Arguments) -> Result<Command> {
    let rest: Vec<String> = args.finish().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let rest = match rest.first().map(String::as_str) {
        Some("--") => rest[1..].to_vec(),
        Some(a) => return Err(usage(format!("unexpected argument {a:?}: pass test-runner arguments after --"))),
        None => rest,
    };
    Ok(Command::Test(rest))
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// One part of the benchmark.
pub struct BenchPart(pub String);

impl std::str::FromStr for BenchPart {
    type Err = String;
    fn from_str(s: &str) -> Result<BenchPart, String> {
        // Several parts, comma-separated, run in one go: their figures come from one run.
        for part in s.split(',') {
            if !["status", "scale", "digest", "noop", "remote", "parallel", "export", "root", "builders"]
                .contains(&part)
            {
                return Err(format!(
                    "unknown part {part:?}: use status, scale, digest, noop, remote, parallel, export, root or builders"
                ));
            }
        }
        Ok(BenchPart(s.to_string()))
    }
}

/// A count of at least 1.
pub struct Count(pub usize);

impl std::str::FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        number(s).map(Count)
    }
}

/// `FORCE_REBUILD=true` in the environment means `--force`; true, false, 1 and 0 (any case)
/// are its values, and empty is false.
fn force_from_env() -> Result<bool> {
    force_value(&std::env::var("FORCE_REBUILD").unwrap_or_default())
}

fn force_value(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(UsageError(format!(
            "FORCE_REBUILD={v:?} is neither true nor false: set it to true, false, 1 or 0, or unset it"
        ))
        .into()),
    }
}

/// Every environment value the tool reads, checked before anything runs, whichever command
/// reads it: a bad one is a usage error that names the variable and its values, and nothing is
/// written.
pub fn check_environment() -> Result<()> {
    force_from_env()?;
    let engine = crate::world::docker::Engine::chosen()?;
    let builder = std::env::var("AI_INFRA_BUILDER").unwrap_or_default();
    match builder.trim().to_ascii_lowercase().as_str() {
        "" => {}
        _ if engine == crate::world::docker::Engine::Podman => {
            return Err(UsageError(format!("AI_INFRA_BUILDER={builder:?} is not a builder under Podman, which builds with Buildah only: unset AI_INFRA_BUILDER, or set AI_INFRA_ENGINE=docker for buildkit or legacy")).into())
        }
        "buildkit" | "legacy" => {}
        _ => {
            return Err(
                UsageError(format!("AI_INFRA_BUILDER={builder:?} is not a builder: use buildkit or legacy, or unset it")).into()
            )
        }
    }
    crate::world::docker::pull_timeout().and(crate::world::docker::push_timeout()).map(drop)
}

/// The tag to use: the one given, else IMAGE_TAG from `.env`, else the default.
pub fn tag(root: &Utf8Path, given: Option<&str>) -> Result<String> {
    if let Some(t) = given {
        return Ok(t.to_string());
    }
    let values = crate::repo::env::values(root)?;
    match values.get("IMAGE_TAG").filter(|t| !t.is_empty()) {
        Some(t) => {
            reference::validate_tag(t).map_err(|e| anyhow::anyhow!("IMAGE_TAG in .env: {e}"))?;
            Ok(t.clone())
        }
        None => Ok(reference::DEFAULT_TAG.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<Command>> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn usage_error(args: &[&str]) -> String {
        let e = p(args).err().expect("an error");
        assert!(e.is::<UsageError>(), "{e}");
        e.to_string()
    }

    #[test]
    fn commands_and_flags() {
        let Some(Command::CheckStatus(c)) =
            p(&["check-status", "v1", "127.0.0.1:5000", "--format", "json", "--exit-code"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (c.tag.as_deref(), c.registry.as_deref(), c.format, c.exit_code),
            (Some("v1"), Some("127.0.0.1:5000"), Format::Json, true)
        );
        let Some(Command::Build(b)) = p(&["build", "base", "--force"]).unwrap() else { panic!() };
        assert!(b.force && b.service.as_deref() == Some("base") && b.tag.is_none());
        let Some(Command::Build(b)) = p(&["build-all", "v1", "--jobs", "3", "--dry-run", "--format", "json"]).unwrap()
        else {
            panic!()
        };
        assert!(
            b.service.is_none()
                && b.tag.as_deref() == Some("v1")
                && b.jobs == 3
                && b.dry_run
                && b.format == Format::Json
        );
        assert!(p(&["check-status", "--help"]).unwrap().is_none());
        assert!(p(&[]).unwrap().is_none());
        let Some(Command::Test(t)) = p(&["test", "--", "-E", "test(x)"]).unwrap() else { panic!() };
        assert_eq!(t, vec!["-E", "test(x)"]);
        let Some(Command::Export(e)) = p(&["export", "out", "v1", "--with-bases"]).unwrap() else { panic!() };
        assert!(e.dir == "out" && e.tag.as_deref() == Some("v1") && e.with_bases && !e.allow_stale && e.sign.is_none());
        let Some(Command::CheckStatus(c)) = p(&["check-status", "--deps"]).unwrap() else { panic!() };
        assert!(c.deps && !c.remote);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(usage_error(&["frobnicate"]).contains("unknown command"));
        assert!(!usage_error(&["frobnicate"]).contains("did you mean"));
        assert!(usage_error(&["buld-all"]).contains("did you mean `build-all`?"), "{}", usage_error(&["buld-all"]));
        assert!(usage_error(&["check-stauts"]).contains("did you mean `check-status`?"));
        assert!(usage_error(&["help", "extra"]).contains("unknown command \"extra\""));
        assert!(usage_error(&["help", "build-all", "x"]).contains("unexpected argument \"x\""));
        assert!(p(&["help", "build-all"]).unwrap().is_none());
        assert!(p(&["help"]).unwrap().is_none());
        assert!(usage_error(&["check-status", "--colour"]).contains("unknown flag --colour"));
        assert!(usage_error(&["check-status", "a", "b.io", "c"]).contains("unexpected argument \"c\""));
        assert!(usage_error(&["check-status", "v1 2"]).contains("invalid tag"));
        assert!(usage_error(&["check-status", "-x"]).contains("unknown flag -x"));
        assert!(usage_error(&["check-status", "v1", "http://x.io"]).contains("scheme"));
        assert!(usage_error(&["check-status", "--format", "xml"]).contains("unknown format"));
        assert!(usage_error(&["build-all", "--dry-run", "--format", "plain"]).contains("human or json"));
        assert!(usage_error(&["build-all", "--format", "json"]).contains("add --dry-run"));
        assert!(usage_error(&["build", "x", "--format", "json"]).contains("add --dry-run"));
        // The usage texts say what the commands do today.
        assert!(super::RENDER.contains("{{NAME}}") && !super::RENDER.contains("${NAME:-default}"));
        assert!(super::CHECK_STATUS.contains("ERROR"));
        assert!(usage_error(&["check-status", "--exit-code", "--exit-code"]).contains("twice"));
        assert!(usage_error(&["build"]).contains("needs a SERVICE"));
        assert!(usage_error(&["build", "a", "--force", "--force"]).contains("twice"));
        assert!(usage_error(&["engine", "sideways"]).contains("unknown engine action"));
        assert!(usage_error(&["bench", "--services", "0"]).contains("at least 1"));
        assert!(usage_error(&["build-all", "--jobs", "0"]).contains("--jobs: must be at least 1"));
        assert!(usage_error(&["build-all", "--jobs", "two"]).contains("not a whole number"));
        assert!(usage_error(&["build-all", "--force", "--force"]).contains("--force is given twice"));
        for (v, forced) in [("true", true), ("TRUE", true), ("1", true), ("false", false), ("0", false), ("", false)] {
            assert_eq!(force_value(v).unwrap(), forced, "FORCE_REBUILD={v}");
        }
        for v in ["yes", "maybe", "2", "on"] {
            let e = force_value(v).unwrap_err();
            assert!(e.is::<UsageError>() && e.to_string().contains("neither true nor false"), "{v}: {e}");
        }
        assert!(usage_error(&["build-all", "--tag"]).contains("unknown flag --tag"));
        assert!(usage_error(&["build-all", "v1", ":5000"]).contains("no host"));
        assert!(usage_error(&["build-all", "v1", "/team"]).contains("no host"));
        assert!(usage_error(&["bench", "--files", "many"]).contains("not a whole number"));
        assert!(usage_error(&["check-status", ""]).contains("empty"));
        assert!(usage_error(&["export"]).contains("needs a DIR"));
        assert!(usage_error(&["export", "out", "bad tag"]).contains("invalid tag"));
        assert!(usage_error(&["export", "out", "v1", "x"]).contains("unexpected argument"));
        assert!(usage_error(&["import"]).contains("needs the DIR"));
        assert!(usage_error(&["push-deps"]).contains("needs a REGISTRY"));
        assert!(usage_error(&["push-deps", "http://r.io"]).contains("scheme"));
        assert!(usage_error(&["pull-deps", "x"]).contains("unexpected argument"));
        assert!(usage_error(&["--verbose", "build-all"]).contains("--verbose before the command"));
        assert!(usage_error(&["--exit-code", "check-status"]).contains("flags go after it"));
        assert!(usage_error(&["build-all", "v1", "127.0.0.1:0"]).contains("port \"0\""));
        assert!(p(&["--help"]).unwrap().is_none());
    }
}
