//! `cargo xtask sync-env [--check]`, also step 2 of a build: `.env` created from `.env.example`
//! or given the keys it lacks (`env::plan_sync` decides), never a value the user set.

use anyhow::Result;
use camino::Utf8Path;

use crate::repo::env::{duplicates, last_example, pending, shown, Pending};

/// `cargo xtask sync-env [--check]`; also step 2 of every build. Returns the exit code.
pub fn run(root: &Utf8Path, check: bool, quiet: bool) -> Result<i32> {
    let Some(pending) = pending(root)? else {
        if !quiet {
            println!("no .env.example in {root}: nothing to sync");
        }
        return Ok(0);
    };
    let env_path = root.join(".env");
    if let Some((text, _)) = &pending.current {
        for d in duplicates(text) {
            eprintln!("warning: {env_path}: {d}; remove one of them");
        }
    }
    let Pending { example_text, current, plan } = pending;
    for (key, old, new) in &plan.defaults_moved {
        println!(
            ".env: the default of {key} moved in .env.example ({} -> {}); your value is kept",
            shown(key, old),
            shown(key, new)
        );
    }
    for key in &plan.drift {
        if !quiet {
            println!(".env: {key} is not in .env.example (kept; add it there if templates or builds need it)");
        }
    }
    if check {
        if plan.created {
            println!(".env is missing: run `cargo xtask sync-env` to create it from .env.example");
            return Ok(1);
        }
        if !plan.added.is_empty() {
            println!(".env lacks {} from .env.example: run `cargo xtask sync-env`", plan.added.join(", "));
            return Ok(1);
        }
        println!(".env is in sync with .env.example");
        return Ok(0);
    }
    if let Some(text) = &plan.text {
        if let Some((old, _)) = &current {
            crate::base::atomic::write_like(&root.join(".env.bak"), old.as_bytes(), &env_path)?;
        }
        crate::base::atomic::write(&env_path, text.as_bytes())?;
        if plan.created {
            println!("created .env from .env.example ({} keys)", plan.added.len());
        } else {
            println!("added to .env from .env.example: {} (previous .env kept as .env.bak)", plan.added.join(", "));
        }
    } else if !quiet {
        println!(".env is in sync with .env.example");
    }
    let _ = crate::base::atomic::write(&last_example(root), example_text.as_bytes());
    Ok(0)
}
