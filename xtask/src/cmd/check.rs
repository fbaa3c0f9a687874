//! `cargo xtask check-status`: the status of every service image, locally and, with
//! `--remote`, in the registry, as a report in the chosen format; `--deps` adds the
//! dependency images.

use anyhow::Result;
use camino::Utf8Path;

use crate::cmd::deps;
use crate::cmd::flags;
use crate::cmd::gather;
use crate::cmd::push;
use crate::decide::report;
use crate::decide::status;

pub fn run(root: &Utf8Path, f: flags::CheckStatus) -> Result<i32> {
    let docker = crate::world::engine::docker(root)?;
    let tag = flags::tag(root, f.tag.as_deref())?;
    let snap = gather::snapshot(&docker, root, &tag, f.registry.as_deref())?;
    let remote = match f.registry.as_deref().filter(|_| f.remote) {
        Some(r) => {
            let names: Vec<String> = snap.statuses.iter().map(|s| s.name.clone()).collect();
            Some(push::remote(&docker, &snap, r, &names, &Default::default()))
        }
        None => None,
    };
    let mut out = report::render(&snap, remote.as_ref(), f.format, &report::Style::stdout());
    let mut deps_ok = true;
    if f.deps {
        let deps = deps::states(&docker, &deps::load(root)?, f.registry.as_deref().filter(|_| f.remote))?;
        deps_ok = deps::all_ok(&deps);
        out = deps::add_to_report(out, &deps, f.format);
    }
    let remote_ok = remote.as_ref().is_none_or(|r| r.values().all(|x| x.state == "OK"));
    if f.format == report::Format::Human {
        let args: Vec<&str> = f.tag.iter().chain(&f.registry).map(String::as_str).collect();
        if let Some(next) =
            report::next(&snap.statuses.iter().map(|s| s.state).collect::<Vec<_>>(), &args, remote_ok, deps_ok)
        {
            out.push_str(&format!("\n{next}\n"));
        }
    }
    print!("{out}");
    let all_ok = snap.statuses.iter().all(|s| s.state == status::State::Ok) && remote_ok && deps_ok;
    // Freeing a snapshot of tens of thousands of file records, one allocation at a time, costs
    // a warm check 1 to 2 ms; the process ends here and its memory goes back whole.
    std::mem::forget(snap);
    Ok(if f.exit_code && !all_ok { 1 } else { 0 })
}
