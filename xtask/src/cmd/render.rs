//! `cargo xtask render [--check]`, also step 3 of a build: the templates rendered in memory
//! (`render::outputs`), then only the files that differ written.

use anyhow::Result;
use camino::Utf8Path;

use crate::repo::render::{outputs, Output};

/// `cargo xtask render [--check]`; also step 3 of every build. Writes only files whose content
/// changes. Returns the exit code.
pub fn run(root: &Utf8Path, services: &[&str], check: bool, quiet: bool) -> Result<i32> {
    let outputs = outputs(root, services)?;
    let stale: Vec<&Output> =
        outputs.iter().filter(|o| std::fs::read(root.join(&o.path)).map_or(true, |b| b != o.bytes)).collect();
    if check {
        if stale.is_empty() {
            println!("rendered files are up to date ({} templates)", outputs.len());
            return Ok(0);
        }
        let names: Vec<&str> = stale.iter().map(|o| o.path.as_str()).collect();
        println!("rendered files are out of date: {}; run `cargo xtask render`", names.join(", "));
        return Ok(1);
    }
    for o in &stale {
        crate::base::atomic::write(&root.join(&o.path), &o.bytes)?;
        println!("rendered {} from {}", o.path, o.template);
    }
    if stale.is_empty() && !quiet {
        println!("rendered files are up to date ({} templates)", outputs.len());
    }
    Ok(0)
}
