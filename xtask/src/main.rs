//! ai-infra's build tool (`cargo xtask`): knows for every service image whether it is OK,
//! MISSING, INVALID or STALE by the content of its inputs, builds only what needs it, and says
//! why. See ARCHITECTURE.md for the map of the modules.

mod api;
mod atomic;
mod base;
mod bench;
mod build;
mod check;
mod clean;
mod context;
mod deps;
mod digest;
mod docker;
mod dockerfile;
mod engine;
mod env;
mod export;
mod flags;
mod gather;
mod harness;
mod hashcache;
mod history;
mod http;
mod ignore;
mod import;
mod pipeline;
mod plan;
mod prefetch;
mod project;
mod push;
mod reads;
mod record;
mod reference;
mod registry;
mod render;
mod report;
mod schedule;
mod status;
#[cfg(test)]
mod testutil;

use std::process::ExitCode;

use anyhow::Result;

use base::UsageError;
use flags::Command;

fn main() -> ExitCode {
    // A closed stdout (`cargo xtask build-all --verbose | head -1`) ends the command quietly,
    // as it does other command-line tools, instead of panicking in whichever thread prints.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run() -> Result<i32> {
    let command = match flags::parse(std::env::args_os().skip(1).collect())? {
        Some(c) => c,
        None => return Ok(0),
    };
    let root = project::root()?;
    match command {
        Command::CheckStatus(f) => check::run(&root, f),
        Command::Build(f) => pipeline::run(&root, f),
        Command::CleanAll { tag, force } => clean::run(&root, tag.as_deref(), force),
        Command::History(service) => history::run(&root, service.as_deref()),
        Command::SyncEnv { check } => env::sync(&root, check, false),
        Command::Render { check } => render::run(&root, &project::Project::load(&root)?.names(), check, false),
        Command::PullDeps => deps::pull(&root),
        Command::PushDeps(registry) => deps::push(&root, &registry),
        Command::Export(f) => export::run(&root, f),
        Command::Import(dir) => import::run(&root, &dir),
        Command::Engine(action) => engine::run(&root, &action),
        Command::Test(args) => harness::run(&root, &args),
        Command::Bench(f) => bench::run(&root, f),
    }
}
