//! ai-infra's build tool (`cargo xtask`): knows for every service image whether it is OK,
//! MISSING, INVALID or STALE by the content of its inputs, builds only what needs it, and says
//! why. See ARCHITECTURE.md for the map of the modules.

mod base;
mod cmd;
mod decide;
mod dev;
mod repo;
#[cfg(test)]
mod testutil;
mod world;

use std::process::ExitCode;

use anyhow::Result;

use base::UsageError;
use cmd::flags::Command;

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
            eprintln!("error: {}", base::one_line(&format!("{e:#}")));
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run() -> Result<i32> {
    let command = match cmd::flags::parse(std::env::args_os().skip(1).collect())? {
        Some(c) => c,
        None => return Ok(0),
    };
    let root = repo::project::root()?;
    cmd::flags::check_environment()?;
    match command {
        Command::CheckStatus(f) => cmd::check::run(&root, f),
        Command::Build(f) => cmd::pipeline::run(&root, f),
        Command::CleanAll { tag, force, include_unlabelled } => {
            cmd::clean::run(&root, tag.as_deref(), force, include_unlabelled)
        }
        Command::History(service) => cmd::history::run(&root, service.as_deref()),
        Command::SyncEnv { check } => cmd::sync_env::run(&root, check, false),
        Command::Render { check } => {
            cmd::render::run(&root, &repo::project::Project::load(&root)?.names(), check, false)
        }
        Command::PullDeps => cmd::deps::pull(&root),
        Command::PushDeps(registry) => cmd::deps::push(&root, &registry),
        Command::Export(f) => cmd::export::run(&root, f),
        Command::Import { dir, allowed_signers } => cmd::import::run(&root, &dir, allowed_signers.as_deref()),
        Command::Engine(action) => world::engine::run(&root, &action),
        Command::Test(args) => dev::harness::run(&root, &args),
        Command::Bench(f) => dev::bench::run(&root, f),
    }
}
