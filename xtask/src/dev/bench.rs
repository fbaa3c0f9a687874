//! `cargo xtask bench`: performance figures on generated workspaces, printed with their ratios.
//! Every comparison is measured in the same run, so the ratios hold on a noisy machine.

use std::time::Instant;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

use crate::cmd::flags::Bench;
use crate::cmd::gather;
use crate::repo::project;
use crate::world::docker::{Docker, Engine};

/// This xtask, run on a generated workspace.
struct Xtask<'a> {
    sh: Shell,
    exe: std::path::PathBuf,
    root: &'a Utf8Path,
}

impl<'a> Xtask<'a> {
    /// The xtask on `root`, run under `docker`'s engine.
    fn on(docker: &Docker, root: &'a Utf8Path) -> Result<Xtask<'a>> {
        let sh = docker.sh()?;
        sh.set_var("AI_INFRA_ENGINE", docker.program());
        Ok(Xtask { sh, exe: std::env::current_exe()?, root })
    }

    /// Runs it; its output is not wanted.
    fn run(&self, args: &[&str]) -> Result<()> {
        let (sh, exe) = (&self.sh, &self.exe);
        cmd!(sh, "{exe} {args...}").env("AI_INFRA_ROOT", self.root).quiet().ignore_stdout().run()?;
        Ok(())
    }

    /// Runs it with further environment variables and returns what it printed.
    fn read_vars(&self, args: &[&str], vars: &[(&str, &str)]) -> Result<String> {
        let (sh, exe) = (&self.sh, &self.exe);
        let mut run = cmd!(sh, "{exe} {args...}").env("AI_INFRA_ROOT", self.root);
        for (k, v) in vars {
            run = run.env(k, v);
        }
        Ok(run.quiet().read()?)
    }

    /// Runs it and returns what it printed.
    fn read(&self, args: &[&str]) -> Result<String> {
        let (sh, exe) = (&self.sh, &self.exe);
        Ok(cmd!(sh, "{exe} {args...}").env("AI_INFRA_ROOT", self.root).quiet().read()?)
    }
}

/// The median of `runs` timings of `f`, in seconds.
fn median(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(middle(times))
}

/// A workspace of `n` services: one base, the rest built on it, each with `files` files of
/// varied content, from half of `size` to one and a half times it (average `size`).
pub fn generate(dir: &Utf8Path, n: usize, files: usize, size: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let mut key = 0;
    let mut bytes = |len: usize| -> Vec<u8> {
        key += 1;
        noise(key, len)
    };
    for i in 0..n {
        let name = if i == 0 { "base".to_string() } else { format!("svc{i:02}") };
        let svc = dir.join("services").join(&name);
        std::fs::create_dir_all(svc.join("files"))?;
        let dockerfile = if i == 0 {
            "ARG IMAGE_TAG=latest\nFROM scratch\nCOPY files/ /files/\n".to_string()
        } else {
            format!("ARG IMAGE_TAG=latest\nFROM ai-infra-base:${{IMAGE_TAG}}\nCOPY files/ /srv/{name}/\n")
        };
        std::fs::write(svc.join("Dockerfile"), dockerfile)?;
        for f in 0..files {
            let sub = svc.join("files").join(format!("d{}", f % 10));
            if f < 10 {
                std::fs::create_dir_all(&sub)?;
            }
            std::fs::write(sub.join(format!("f{f:04}.dat")), bytes(size / 2 + (f * 7919) % size.max(1)))?;
        }
    }
    Ok(())
}

/// The engines the status and no-op figures compare: the chosen one, and Podman beside
/// Docker when it is installed and answers.
fn engines(docker: Docker) -> Vec<Docker> {
    let podman = (docker.engine == Engine::Docker && crate::world::docker::on_path("podman"))
        .then(Docker::podman)
        .filter(|p| p.platform().is_ok());
    std::iter::once(docker).chain(podman).collect()
}

/// One row of figures, a column per engine.
fn row(label: &str, figures: &[String]) -> String {
    let cells: String = figures.iter().map(|f| format!("{f:>14}")).collect();
    format!("  {label:<30}{cells}")
}

pub fn run(root: &Utf8Path, f: Bench) -> Result<i32> {
    let base = crate::base::state_dir(root).join("bench");
    // Podman's figures are taken on a storage of the bench's own, as the suite's are (its
    // images, and the intermediate ones Buildah keeps, go with it when this returns): the
    // machine's shared storage, full of other runs' images, would measure those instead.
    let _podman_storage = crate::world::docker::on_path("podman")
        .then(|| crate::dev::podstore::PodStore::open(&base.join("podman-storage")))
        .transpose()?;
    let docker = crate::world::engine::connect(root)?;
    let want = |name: &str| f.only.as_deref().is_none_or(|o| o.split(',').any(|p| p == name));
    let (services, files) = (f.services.unwrap_or(20), f.files.unwrap_or(1000));
    if want("status") {
        let check = check_status_figures(&docker, &base.join("status"), services, files)?;
        if docker.engine == Engine::Docker {
            podman_status_figures(&base.join("status-podman"), services, files, check)?;
        }
    }
    if want("scale") {
        scale_figures(&docker, &base.join("scale"))?;
    }
    if want("digest") {
        // The warm check costs one stat per file; the cold one, reading every byte: their
        // ratio grows with the average file size, which --file-kib sets.
        digest_figures(&docker, &base.join("digest"), services, files, f.file_kib * 1024)?;
    }
    if want("noop") {
        noop_figures(&engines(crate::world::engine::docker(root)?), root, &base.join("noop"))?;
    }
    if want("remote") {
        remote_figures(&docker, root, &base.join("remote"), services)?;
    }
    if want("export") {
        export_figures(&docker, root, &base.join("export"))?;
    }
    if want("parallel") {
        parallel_figures(&docker, &base.join("parallel"), services)?;
    }
    if want("root") {
        root_figures(&docker, &base.join("root"), f.services.unwrap_or(15), f.files.unwrap_or(2000))?;
    }
    if want("builders") {
        builders_figures(&docker, root, &base.join("builders"), f.rounds)?;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(0)
}

fn copy_tree(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in from.read_dir_utf8()? {
            let e = e?;
            copy_tree(e.path(), &to.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).with_context(|| format!("cannot copy {from}"))?;
    }
    Ok(())
}

/// check-status --remote against asking the registry for the services one after the other.
///
/// Long because it sets up one registry with its images and times both approaches against it: the
/// figures it prints must share that one setup.
fn remote_figures(docker: &Docker, root: &Utf8Path, dir: &Utf8PathBuf, n: usize) -> Result<()> {
    let registry = crate::world::engine::Registry::start(root)?;
    let result = (|| -> Result<()> {
        let reg = registry.addr.clone();
        generate(dir, n, 2, 64)?;
        let tag = format!("bench-remote-{}", std::process::id());
        let xtask = Xtask::on(docker, dir)?;
        let sh = &xtask.sh;
        eprintln!("building and pushing {n} services to {reg}");
        xtask.run(&["build-all", &tag, &reg])?;
        let ours = median(5, || {
            let out = xtask.read(&["check-status", &tag, &reg, "--remote", "--format", "plain"])?;
            if out.lines().any(|l| !l.ends_with("|OK")) {
                bail!("bench images are not all in the registry:\n{out}");
            }
            Ok(())
        })?;
        let snap = gather::snapshot(docker, dir, &tag, Some(&reg))?;
        let refs: Vec<(String, String)> = snap
            .statuses
            .iter()
            .flat_map(|s| {
                let content =
                    crate::world::registry::content_tag(snap.digests[&s.name].total.as_deref().unwrap_or_default());
                let repo = crate::repo::reference::repository(&s.name, None);
                [(repo.clone(), tag.clone()), (repo, content)]
            })
            .collect();
        // The lookups at once and one after another, against a registry address.
        let timings = |registry: &str| -> Result<(f64, f64)> {
            let at_once = median(5, || {
                crate::world::registry::lookup_all(docker, registry, &refs);
                Ok(())
            })?;
            let one_by_one = median(3, || {
                for (repo, t) in &refs {
                    crate::world::registry::lookup(docker, registry, repo, t);
                }
                Ok(())
            })?;
            Ok((at_once, one_by_one))
        };
        let (concurrent, one_by_one) = timings(&reg)?;
        // A registry across a network: the same registry behind a loopback proxy that holds each
        // connection 20 ms before passing it on.
        let (far_concurrent, far_one_by_one) = timings(&delayed_proxy(&reg, std::time::Duration::from_millis(20))?)?;
        let names: Vec<String> =
            snap.statuses.iter().map(|s| crate::repo::reference::image_name(&s.name, &tag, Some(&reg))).collect();
        let cli = median(3, || {
            for name in &names {
                cmd!(sh, "docker manifest inspect --insecure {name}").quiet().ignore_stdout().run()?;
            }
            Ok(())
        })?;
        // Exactly the names this part made: each service's TAG, here and in the registry, and
        // the content tag the push added. Never `clean-all`, which would take every tag.
        let mut made = own_images(dir, &tag)?;
        made.extend(names.iter().cloned());
        made.extend(snap.statuses.iter().map(|s| {
            let content =
                crate::world::registry::content_tag(snap.digests[&s.name].total.as_deref().unwrap_or_default());
            crate::repo::reference::image_name(&s.name, &content, Some(&reg))
        }));
        remove_own(docker, &made);
        println!("\ncheck-status --remote, {n} services on a loopback registry (median of runs):");
        println!(
            "  cargo xtask check-status --remote  {ours:>8.3} s   (whole command: local status and {} lookups)",
            refs.len()
        );
        println!("  the {} lookups, concurrently       {concurrent:>8.4} s", refs.len());
        println!(
            "  the {} lookups, one after another  {one_by_one:>8.4} s   ({:.1}x, target: at least 5x)",
            refs.len(),
            one_by_one / concurrent
        );
        println!(
            "  docker manifest inspect, one by one {cli:>7.3} s   ({n} calls, TAG only; {:.1}x the whole command)",
            cli / ours
        );
        println!("  with 20 ms per connection: at once {far_concurrent:>7.4} s, one after another {far_one_by_one:.4} s ({:.1}x)", far_one_by_one / far_concurrent);
        Ok(())
    })();
    registry.stop()?;
    result
}

/// A TCP proxy on a free loopback port that waits `delay` on each new connection, then
/// passes bytes both ways to `target`. Lives until the bench process ends.
fn delayed_proxy(target: &str, delay: std::time::Duration) -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let target = target.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let target = target.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = std::net::TcpStream::connect(&target) else { return };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { return };
                let (mut client, mut server) = (client, server);
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = up.join();
            });
        }
    });
    Ok(addr)
}

/// The project's stack (not its dependency images, which would need pulling) in `dir`.
fn copy_stack(root: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    // The services built from the repository root read src/, third_party/ and docs/.
    for item in
        ["services", "templates", "services.toml", ".env.example", ".dockerignore", "src", "third_party", "docs"]
    {
        if root.join(item).exists() {
            copy_tree(&root.join(item), &dir.join(item))?;
        }
    }
    Ok(())
}

/// `export` of the project's stack against one `docker save` of the same images, and a
/// second (incremental) export against the first.
fn export_figures(docker: &Docker, root: &Utf8Path, dir: &Utf8PathBuf) -> Result<()> {
    copy_stack(root, dir)?;
    let tag = format!("bench-export-{}", std::process::id());
    let xtask = Xtask::on(docker, dir)?;
    eprintln!("building the project's stack for the export figures");
    xtask.run(&["build-all", &tag])?;
    let names: Vec<String> = crate::repo::project::Project::load(dir)?
        .names()
        .iter()
        .map(|s| crate::repo::reference::image_name(s, &tag, None))
        .collect();
    let bundle = dir.join("bundle");
    let save = dir.join("all.tar");
    let sh = &xtask.sh;
    let (mut first, mut second, mut saved) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&bundle);
        let t = Instant::now();
        xtask.run(&["export", bundle.as_str(), &tag])?;
        first.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = xtask.read(&["export", bundle.as_str(), &tag])?;
        second.push(t.elapsed().as_secs_f64());
        if !out.contains("wrote 0 files") {
            bail!("the second export wrote something:\n{out}");
        }
        let _ = std::fs::remove_file(&save);
        let t = Instant::now();
        let images = &names;
        cmd!(sh, "docker save -o {save} {images...}").quiet().run()?;
        saved.push(t.elapsed().as_secs_f64());
    }
    let bundle_bytes = stat_all(&bundle)?;
    let save_bytes = std::fs::metadata(&save)?.len();
    // Exactly the names this part made (never `clean-all`, which takes every name of a tag).
    remove_own(docker, &names);
    let (first, second, saved) = (middle(first), middle(second), middle(saved));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "
export of the project's {} images (median of 3 runs):",
        names.len()
    );
    println!(
        "  cargo xtask export, first       {first:>8.3} s   {:>7.1} MiB in {} tars with sha256, manifest, import.sh",
        mib(bundle_bytes),
        names.len()
    );
    println!("  docker save, one tar of all     {saved:>8.3} s   {:>7.1} MiB (shared layers once)", mib(save_bytes));
    println!("  export / docker save            {:>8.2}", first / saved);
    println!("  second export (incremental)     {second:>8.3} s   (wrote 0 bytes; reads and hashes every tar)");
    println!("  first / second                  {:>8.1}x", first / second);
    Ok(())
}

/// A no-op build-all on the project's own stack against building it all without cache.
/// A no-op build-all of the project's stack against build-all --force, under each engine
/// (Docker, and Podman beside it where it answers), in one run.
fn noop_figures(engines: &[Docker], root: &Utf8Path, dir: &Utf8PathBuf) -> Result<()> {
    copy_stack(root, dir)?;
    let tag = format!("bench-noop-{}", std::process::id());
    let mut figures = Vec::new();
    for docker in engines {
        let xtask = Xtask::on(docker, dir)?;
        eprintln!("building the project's stack for the no-op figures ({})", docker.program());
        let measured = (|| -> Result<(f64, f64)> {
            xtask.run(&["build-all", &tag])?;
            let noop = median(3, || {
                let out = xtask.read(&["build-all", &tag])?;
                if !out.contains("nothing to build") {
                    bail!("the no-op run built something:\n{out}");
                }
                Ok(())
            })?;
            let t = Instant::now();
            xtask.run(&["build-all", &tag, "--force"])?;
            Ok((noop, t.elapsed().as_secs_f64()))
        })();
        remove_own(docker, &own_images(dir, &tag)?);
        figures.push(measured?);
    }
    let services = crate::repo::project::Project::load(dir)?.services.len();
    let col = |f: &dyn Fn(&(f64, f64)) -> String| figures.iter().map(f).collect::<Vec<_>>();
    println!("\nbuild-all on the project's {services} services:");
    println!("{}", row("", &engines.iter().map(|d| d.program().to_string()).collect::<Vec<_>>()));
    println!("{}", row("no-op build-all (all OK)", &col(&|(n, _)| format!("{n:.3} s"))));
    println!("{}", row("build-all --force (no cache)", &col(&|(_, f)| format!("{f:.3} s"))));
    println!("{}   (target: at least 50x)", row("speed-up", &col(&|(n, f)| format!("{:.1}x", f / n))));
    if let [(noop_d, forced_d), (noop_p, forced_p)] = figures[..] {
        println!("  Podman against Docker: build-all --force {:.2}, no-op {:.2}", forced_p / forced_d, noop_p / noop_d);
    }
    Ok(())
}

/// `--jobs 4` on services whose builds take known times, against the ideal: the longer of the
/// critical path and the total work over 4. Work and path are measured by a sequential run.
fn parallel_figures(docker: &Docker, dir: &Utf8PathBuf, n: usize) -> Result<()> {
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Utf8Path::new(p).exists()) else {
        println!("\nparallel build: skipped, busybox is not installed (apt-get install busybox-static)");
        return Ok(());
    };
    let _ = std::fs::remove_dir_all(dir);
    // base, then a chain svc01 -> svc02 -> svc03, the rest straight on base.
    // Sleeps long enough to dominate the fixed cost of a build (container start, layer
    // commit: about 0.4 s, which on 2 cores runs only 2 at a time).
    let sleeps = [1.0, 2.0, 3.0, 4.0];
    let mut parent_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for i in 0..n {
        let name = if i == 0 { "base".to_string() } else { format!("svc{i:02}") };
        let svc = dir.join("services").join(&name);
        std::fs::create_dir_all(&svc)?;
        let parent = match i {
            0 => None,
            2 | 3 => Some(format!("svc{:02}", i - 1)),
            _ => Some("base".to_string()),
        };
        let sleep = if i == 0 { 1.0 } else { sleeps[i % sleeps.len()] };
        let dockerfile = match &parent {
            None => {
                std::fs::copy(busybox, svc.join("busybox"))?;
                format!("FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"{sleep}\"]\n")
            }
            Some(p) => format!(
                "ARG IMAGE_TAG\nFROM ai-infra-{p}:${{IMAGE_TAG}}\nRUN [\"/bin/busybox\", \"sleep\", \"{sleep}\"]\n"
            ),
        };
        std::fs::write(svc.join("Dockerfile"), dockerfile)?;
        parent_of.insert(name, parent);
    }
    let tag = format!("bench-par-{}", std::process::id());
    let xtask = Xtask::on(docker, dir)?;
    eprintln!("building {n} sleeping services once with --jobs 1, once with --jobs 4");
    let t = Instant::now();
    xtask.run(&["build-all", &tag, "--force", "--jobs", "1"])?;
    let sequential = t.elapsed().as_secs_f64();
    let history = std::fs::read_to_string(crate::base::state_dir(dir).join("history.jsonl"))?;
    let mut own: BTreeMap<String, f64> = BTreeMap::new();
    for line in history.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let (Some(s), Some(secs)) = (v["service"].as_str(), v["seconds"].as_f64()) {
            own.insert(s.to_string(), secs);
        }
    }
    let work: f64 = own.values().sum();
    let mut path: BTreeMap<String, f64> = BTreeMap::new();
    for (name, parent) in &parent_of {
        let mut total = own.get(name).copied().unwrap_or(0.0);
        let mut p = parent.clone();
        while let Some(q) = p {
            total += own.get(&q).copied().unwrap_or(0.0);
            p = parent_of.get(&q).cloned().flatten();
        }
        path.insert(name.clone(), total);
    }
    let critical = path.values().cloned().fold(0.0, f64::max);
    let t = Instant::now();
    xtask.run(&["build-all", &tag, "--force", "--jobs", "4"])?;
    let parallel = t.elapsed().as_secs_f64();
    remove_own(docker, &own_images(dir, &tag)?);
    let ideal = critical.max(work / 4.0);
    let slept: f64 = (0..n).map(|i| if i == 0 { 1.0 } else { sleeps[i % sleeps.len()] }).sum();
    println!("\nparallel build, {n} services with RUN sleep of 1 to 4 s (base, a chain of 3, the rest on base):");
    println!("  --jobs 1 (whole run)           {sequential:>8.2} s   (the builds alone: {work:.2} s of work)");
    println!("  critical path                  {critical:>8.2} s");
    println!("  ideal for 4 jobs               {ideal:>8.2} s   (max of critical path and work / 4)");
    println!("  --jobs 4 (whole run)           {parallel:>8.2} s");
    println!("  --jobs 4 / ideal               {:>8.2}   (target: at most 1.3)", parallel / ideal);
    println!(
        "  fixed cost per build           {:>8.2} s   (work minus sleeps, over {n} builds)",
        (work - slept) / n as f64
    );
    Ok(())
}

/// check-status against the old script's approach: four engine calls per service, and against
/// a bare stat walk, taking turns.
fn check_status_figures(docker: &Docker, dir: &Utf8PathBuf, n: usize, files: usize) -> Result<f64> {
    let tag = format!("bench-{}", std::process::id());
    generate(dir, n, files, 256)?;
    let snap = gather::snapshot(docker, dir, &tag, None)?;
    eprintln!("building {n} services of {files} files for the status figures");
    let xtask = Xtask::on(docker, dir)?;
    xtask.run(&["build-all", &tag])?;
    let names: Vec<String> =
        snap.services.iter().map(|r| crate::repo::reference::image_name(&r.service.name, &tag, None)).collect();
    let sh = &xtask.sh;
    // Let the files age past the hash cache's racy window, then fill the cache.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let check = || -> Result<()> {
        let out = xtask.read(&["check-status", &tag, "--format", "plain"])?;
        if out.lines().any(|l| !l.contains("|OK|")) {
            bail!("bench images are not all OK:\n{out}");
        }
        Ok(())
    };
    check()?;
    // The floor of a check that trusts no timestamp: every file stat'ed, on every core.
    let contexts: Vec<Utf8PathBuf> =
        project::Project::load(dir)?.services.iter().map(|s| dir.join(&s.context)).collect();
    let walk = || -> Result<()> {
        let counts = crate::repo::context::parallel(contexts.len(), |i| stat_all(&contexts[i]));
        counts.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(())
    };
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let mut ours_cpu = 0.0;
    for _ in 0..7 {
        let c = children_cpu();
        ours.push(median(1, check)?);
        ours_cpu += (children_cpu() - c) / 7.0;
        floor.push(median(1, &walk)?);
    }
    let (ours, floor) = (middle(ours), middle(floor));
    let c = children_cpu();
    let old = old_approach(sh, docker.program(), &names)?;
    let old_cpu = (children_cpu() - c) / 3.0;
    remove_own(docker, &names);
    println!(
        "check-status, {n} services x {files} files, all images present and unchanged, hash cache warm (medians):"
    );
    println!("  check-status                   {ours:>8.3} s   (one process, 1 docker image inspect)");
    println!("  old per-service approach       {old:>8.3} s   ({} docker calls)", 4 * n);
    println!("  check-status / old             {:>8.3}   (target: at most 0.05; {:.0}x)", ours / old, old / ours);
    println!(
        "  bare stat walk of the files    {floor:>8.3} s   (in this process, on every core): alone {:.3} of old",
        floor / old
    );
    println!(
        "  CPU per run (processes run; the engine's own not counted): check-status {ours_cpu:.3} s, old {old_cpu:.3} s: check-status / old {:.3}",
        ours_cpu / old_cpu
    );
    Ok(ours)
}

/// The old script's check: four engine calls per image, one image after another.
fn old_approach(sh: &Shell, program: &str, names: &[String]) -> Result<f64> {
    let (size, tags, created) = ("{{.Size}}", "{{.RepoTags}}", "{{.Created}}");
    median(3, || {
        for name in names {
            cmd!(sh, "{program} image inspect {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "{program} image inspect --format {size} {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "{program} image inspect --format {tags} {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "{program} image inspect --format {created} {name}").quiet().ignore_stdout().run()?;
        }
        Ok(())
    })
}

/// The same status figures under Podman, beside Docker's (`docker`: its check-status,
/// measured in the same run): the same workspace, check-status and the old approach,
/// where Podman answers, on the bench's own Podman storage. Its images carry a tag of this run
/// and are removed by name.
fn podman_status_figures(dir: &Utf8PathBuf, n: usize, files: usize, docker: f64) -> Result<()> {
    let podman = Docker::podman();
    if !crate::world::docker::on_path("podman") || podman.platform().is_err() {
        println!("  under Podman: not measured (podman is not installed or does not answer)");
        return Ok(());
    }
    let tag = format!("bench-podman-{}", std::process::id());
    generate(dir, n, files, 256)?;
    let names = own_images(dir, &tag)?;
    eprintln!("building {n} services of {files} files for the status figures under Podman");
    let xtask = Xtask::on(&podman, dir)?;
    let measured = (|| -> Result<(f64, f64)> {
        xtask.run(&["build-all", &tag])?;
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let check = || -> Result<()> {
            let out = xtask.read(&["check-status", &tag, "--format", "plain"])?;
            if out.lines().any(|l| !l.contains("|OK|")) {
                bail!("bench images are not all OK under Podman:\n{out}");
            }
            Ok(())
        };
        check()?;
        Ok((median(7, check)?, old_approach(&xtask.sh, "podman", &names)?))
    })();
    remove_own(&podman, &names);
    let (ours, old) = measured?;
    println!("the same under Podman (no daemon):");
    println!("{}", row("", &["docker".into(), "podman".into()]));
    let secs = |v: f64| format!("{v:.3} s");
    println!("{}", row("check-status", &[secs(docker), secs(ours)]));
    println!(
        "  old per-service approach, Podman {old:>8.3} s   ({} podman calls); Podman / old {:.3}",
        4 * n,
        ours / old
    );
    println!("  Podman against Docker, check-status: {:.1}x", ours / docker);
    Ok(())
}

/// CPU time (user and system) of this process's children that have ended, in seconds: what
/// they cost the machine, however busy it was meanwhile (from /proc/self/stat, 100 ticks a s).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // cutime and cstime are the 16th and 17th fields; the list starts at the 3rd.
    (ticks(13) + ticks(14)) / 100.0
}

/// At scale, check-status against its floor (a bare walk that stats every file, plus the one
/// engine call it makes), and a no-op build-all against check-status. All take turns, so that load on the machine falls on each alike.
fn scale_figures(docker: &Docker, dir: &Utf8PathBuf) -> Result<()> {
    let (n, files) = (100, 200);
    let tag = format!("bench-scale-{}", std::process::id());
    generate(dir, n, files, 256)?;
    eprintln!("building {n} services of {files} files for the scale figures");
    let xtask = Xtask::on(docker, dir)?;
    xtask.run(&["build-all", &tag])?;
    let project = project::Project::load(dir)?;
    let names: Vec<String> =
        project.services.iter().map(|s| crate::repo::reference::image_name(&s.name, &tag, None)).collect();
    let contexts: Vec<Utf8PathBuf> = project.services.iter().map(|s| dir.join(&s.context)).collect();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let check = || -> Result<()> {
        let out = xtask.read(&["check-status", &tag, "--format", "plain"])?;
        if out.lines().count() != n || out.lines().any(|l| !l.contains("|OK|")) {
            bail!("bench images are not all OK:\n{out}");
        }
        Ok(())
    };
    let noop = || -> Result<()> {
        let out = xtask.read(&["build-all", &tag])?;
        if !out.contains("nothing to build") {
            bail!("the no-op run built something:\n{out}");
        }
        Ok(())
    };
    check()?;
    let walk = || -> Result<()> {
        let counts = crate::repo::context::parallel(contexts.len(), |i| stat_all(&contexts[i]));
        counts.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(())
    };
    let request = || -> Result<()> {
        let found = docker.inspect(&names)?.len();
        if found != n {
            bail!("the engine inspects {found} of the {n} images");
        }
        Ok(())
    };
    let mut t: [Vec<f64>; 4] = Default::default();
    for _ in 0..7 {
        t[0].push(median(1, check)?);
        t[1].push(median(1, &walk)?);
        t[2].push(median(1, &request)?);
        t[3].push(median(1, noop)?);
    }
    let [ours, walk, request, noop] = t.map(middle);
    remove_own(docker, &own_images(dir, &tag)?);
    let floor = walk + request;
    println!("\nat scale, {n} services x {files} files, all OK, hash cache warm (medians of interleaved runs):");
    println!("  check-status                   {ours:>8.3} s");
    println!("  bare walk, one stat per file   {walk:>8.3} s");
    println!("  one docker image inspect       {request:>8.3} s   (the engine call check-status makes)");
    println!("  check-status / (walk + request){:>8.2}   (target: at most 1.5)", ours / floor);
    println!("  no-op build-all                {noop:>8.3} s");
    println!("  no-op build-all / check-status {:>8.2}   (target: at most 2)", noop / ours);
    Ok(())
}

/// Cold and warm digests of large contexts, a bare walk that stats every file (what any check
/// that trusts no timestamp must at least do), and sha256sum over the same files. Cold, warm
/// and bare runs take turns, so that a burst of load on the machine hits all three alike.
fn digest_figures(docker: &Docker, dir: &Utf8PathBuf, n: usize, files: usize, size: usize) -> Result<()> {
    generate(dir, n, files, size)?;
    let bytes: u64 = stat_all(&dir.join("services"))?;
    // The hash cache never trusts a file changed within the last 2 s; let the new files age.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let sh = Shell::new()?;
    let services = dir.join("services");
    // Warm the page cache so that both sides read from memory.
    let each = "{}";
    cmd!(sh, "find {services} -type f -exec cat {each} +").quiet().ignore_stdout().run()?;
    let sha256sum = median(3, || {
        cmd!(sh, "find {services} -type f -exec sha256sum {each} +").quiet().ignore_stdout().run()?;
        Ok(())
    })?;
    let project = project::Project::load(dir)?;
    let cache = crate::base::state_dir(dir).join("hash-cache");
    let digest_all = || -> Result<()> {
        let ignore_files = crate::world::docker::Engine::current().ignore_files();
        let (resolved, _) =
            project::resolve(&project, "bench", &Default::default(), &[], ignore_files, &Default::default())?;
        gather::inputs(dir, resolved, &Default::default())?;
        Ok(())
    };
    let contexts: Vec<Utf8PathBuf> = project.services.iter().map(|s| dir.join(&s.context)).collect();
    let bare_walk = || -> Result<()> {
        let counts = crate::repo::context::parallel(contexts.len(), |i| stat_all(&contexts[i]));
        counts.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(())
    };
    // The same as whole `check-status` commands: process start, project, engine call (the
    // images do not exist; that costs the engine no less).
    let xtask = Xtask::on(docker, dir)?;
    let command = || xtask.run(&["check-status", "--format", "plain"]);
    let (mut cold, mut warm, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_command, mut warm_command) = (Vec::new(), Vec::new());
    let timed = |f: &dyn Fn() -> Result<()>, into: &mut Vec<f64>| -> Result<()> {
        let t = Instant::now();
        f()?;
        into.push(t.elapsed().as_secs_f64());
        Ok(())
    };
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&cache);
        timed(&digest_all, &mut cold)?;
        for _ in 0..4 {
            timed(&digest_all, &mut warm).context("warm digest")?;
            timed(&bare_walk, &mut bare)?;
        }
        let _ = std::fs::remove_dir_all(&cache);
        timed(&command, &mut cold_command).context("check-status")?;
        for _ in 0..4 {
            timed(&command, &mut warm_command)?;
        }
    }
    let (cold_command, warm_command) = (middle(cold_command), middle(warm_command));
    let (cold, warm, bare) = (middle(cold), middle(warm), middle(bare));
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!("\ninput digests, {n} services x {files} files of {} KiB on average ({mib:.1} MiB, page cache warm, medians of interleaved runs):", size / 1024);
    println!("  cold (no hash cache)           {cold:>8.3} s   {:>7.1} MiB/s", mib / cold);
    println!("  warm (hash cache filled)       {warm:>8.3} s");
    println!("  bare walk, one stat per file   {bare:>8.3} s   (the floor for a check that reads no file)");
    println!("  sha256sum, same files          {sha256sum:>8.3} s   {:>7.1} MiB/s", mib / sha256sum);
    println!("  warm vs cold                   {:>8.1}x  (target: at least 10x)", cold / warm);
    println!("  warm vs bare walk              {:>8.2}   (1.0 would be no cost beyond the stats)", warm / bare);
    println!("  cold throughput / sha256sum    {:>8.2}   (target: at least 0.5)", sha256sum / cold);
    println!(
        "  the same as whole commands: check-status cold {cold_command:.3} s, warm {warm_command:.3} s: {:.1}x",
        cold_command / warm_command
    );
    Ok(())
}

/// The parent of generated service `i` in the root-layout workspaces: svc00 and svc01 start
/// from scratch, each later one from another's image (svc02 and svc03 on svc00, svc04 and
/// svc05 on svc01, svc06 and svc07 on svc02, ...), a tree four levels deep at 15 services.
fn parent_of(i: usize) -> Option<usize> {
    (i >= 2).then(|| (i - 2) / 2)
}

/// `len` bytes of varied content, the same for the same `key`.
fn noise(key: u64, len: usize) -> Vec<u8> {
    let mut seed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed & 0xff) as u8
        })
        .collect()
}

/// Writes `count` files of about 256 bytes under `dir`, in ten folders; `key` makes them
/// differ from other folders' files.
fn write_files(dir: &Utf8Path, count: usize, key: u64) -> Result<()> {
    for f in 0..count {
        let sub = dir.join(format!("d{}", f % 10));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("f{f:04}.dat")), noise(key * 100_003 + f as u64, 128 + (f * 7919) % 256))?;
    }
    Ok(())
}

/// The same files in two layouts: `root`, as the ai-infra repository lays them out at its
/// newest (every service built from the repository root, context ".", its Dockerfile and
/// sources under src/<svc>/, the shared third_party/ and libs/ beside them: `files` files in
/// all), and `flat`, each service its own context under services/<svc>/ holding its sources
/// and a copy of the shared folder it reads. The services of `parent_of` build on their
/// parent's image; those without one read third_party/, the others libs/. `run_id` is
/// written into every service, so that no image of another run has the same inputs.
fn generate_layouts(root: &Utf8Path, flat: &Utf8Path, n: usize, files: usize, run_id: &str) -> Result<()> {
    for dir in [root, flat] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("services"))?;
    }
    // A quarter of the files is shared, half in each shared folder; the rest is split
    // evenly among the services.
    let shared = (files / 8).max(1);
    let own = (files.saturating_sub(2 * shared) / n).max(1);
    write_files(&root.join("third_party"), shared, 1)?;
    write_files(&root.join("libs"), shared, 2)?;
    let mut table = String::new();
    for i in 0..n {
        let svc = format!("svc{i:02}");
        let (shared_dir, from) = match parent_of(i) {
            None => ("third_party", "FROM scratch".to_string()),
            Some(p) => ("libs", format!("ARG IMAGE_TAG=latest\nFROM ai-infra-svc{p:02}:${{IMAGE_TAG}}")),
        };
        let dockerfile = |prefix: &str| {
            format!(
                "{from}\nCOPY {prefix}app/ /srv/{svc}/app/\nCOPY {prefix}run-id /srv/{svc}/\nCOPY {shared_dir}/ /{shared_dir}/\n"
            )
        };
        let src = root.join("src").join(&svc);
        write_files(&src.join("app"), own, 10 + i as u64)?;
        std::fs::write(src.join("run-id"), run_id)?;
        std::fs::write(src.join("Dockerfile"), dockerfile(&format!("src/{svc}/")))?;
        table.push_str(&format!("[{svc}]\ncontext = \".\"\ndockerfile = \"src/{svc}/Dockerfile\"\n\n"));
        let ctx = flat.join("services").join(&svc);
        copy_tree(&src.join("app"), &ctx.join("app"))?;
        copy_tree(&root.join(shared_dir), &ctx.join(shared_dir))?;
        std::fs::write(ctx.join("run-id"), run_id)?;
        std::fs::write(ctx.join("Dockerfile"), dockerfile(""))?;
    }
    std::fs::write(root.join("services.toml"), table)?;
    // The tool's own state is no input of any build.
    std::fs::write(root.join(".dockerignore"), "/target\n")?;
    Ok(())
}

/// The services a build-all's output says it built or reused, sorted.
fn acted_on(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once("] built ").or_else(|| l.split_once("] reused ")))
        .map(|(_, rest)| rest.split(' ').next().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The newest ai-infra layout: after a one-file change under one service's folder, build-all
/// rebuilds exactly that service and its descendants; a warm check-status on it against the
/// per-service layout of the same files, taking turns.
fn root_figures(docker: &Docker, dir: &Utf8Path, n: usize, files: usize) -> Result<()> {
    let (root, flat) = (dir.join("root"), dir.join("flat"));
    let (root_tag, flat_tag) =
        (format!("bench-root-{}", std::process::id()), format!("bench-flat-{}", std::process::id()));
    generate_layouts(&root, &flat, n, files, &root_tag)?;
    let result = root_measure(docker, (&root, &root_tag), (&flat, &flat_tag), n, files);
    let mut made = own_images(&root, &root_tag)?;
    made.extend(own_images(&flat, &flat_tag)?);
    remove_own(docker, &made);
    result
}

fn root_measure(
    docker: &Docker,
    (root, root_tag): (&Utf8Path, &str),
    (flat, flat_tag): (&Utf8Path, &str),
    n: usize,
    files: usize,
) -> Result<()> {
    let (on_root, on_flat) = (Xtask::on(docker, root)?, Xtask::on(docker, flat)?);
    eprintln!("building {n} services of one root context of {files} files, and of the per-service layout");
    let t = Instant::now();
    let out = on_root.read(&["build-all", root_tag])?;
    let first_root = t.elapsed().as_secs_f64();
    let builder = out.lines().find(|l| l.starts_with("builder: ")).unwrap_or("builder: not said").to_string();
    let t = Instant::now();
    on_flat.run(&["build-all", flat_tag])?;
    let first_flat = t.elapsed().as_secs_f64();
    // Let the files age past the hash cache's racy window, then fill the caches.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let check = |xtask: &Xtask, tag: &str| -> Result<()> {
        let out = xtask.read(&["check-status", tag, "--format", "plain"])?;
        if out.lines().count() != n || out.lines().any(|l| !l.contains("|OK|")) {
            bail!("bench images are not all OK:\n{out}");
        }
        Ok(())
    };
    check(&on_root, root_tag)?;
    check(&on_flat, flat_tag)?;
    let (mut warm_root, mut warm_flat) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        warm_root.push(median(1, || check(&on_root, root_tag))?);
        warm_flat.push(median(1, || check(&on_flat, flat_tag))?);
    }
    let (warm_root, warm_flat) = (middle(warm_root), middle(warm_flat));

    // One file under one service's folder: that service and its descendants, nothing else.
    let changed = 2.min(n - 1);
    let mut expected = vec![changed];
    let mut k = 0;
    while k < expected.len() {
        let p = expected[k];
        expected.extend((0..n).filter(|&i| parent_of(i) == Some(p)));
        k += 1;
    }
    let mut expected: Vec<String> = expected.iter().map(|i| format!("svc{i:02}")).collect();
    expected.sort();
    let file = root.join(format!("src/svc{changed:02}/app/d0/f0000.dat"));
    std::fs::write(&file, format!("changed in run {root_tag}\n"))?;
    let t = Instant::now();
    let out = on_root.read(&["build-all", root_tag])?;
    let rebuild = t.elapsed().as_secs_f64();
    let rebuilt = acted_on(&out);
    if rebuilt != expected {
        bail!("after a change to {file}, build-all rebuilt {rebuilt:?}, not {expected:?}:\n{out}");
    }
    let flat_files = stat_count(&flat.join("services"))?;
    println!("\nthe newest ai-infra layout, {n} services built from one root context of {files} files ({builder}):");
    println!("  first build-all, root context  {first_root:>8.2} s   (per-service layout: {first_flat:.2} s)");
    println!(
        "  one file changed under src/svc{changed:02}/: build-all rebuilt {} in {rebuild:.2} s (expected: that service and its descendants, {}): as expected",
        rebuilt.join(", "),
        expected.join(", ")
    );
    println!("  warm check-status, root context {warm_root:>7.3} s   (median of 7, taking turns)");
    println!("  warm check-status, per service {warm_flat:>8.3} s   (the same files, each service its own context: {flat_files} files)");
    println!("  root / per-service             {:>8.2}   (target: at most 1.5)", warm_root / warm_flat);
    Ok(())
}

/// The files below `dir`.
fn stat_count(dir: &Utf8Path) -> Result<usize> {
    let mut count = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        count += if e.file_type()?.is_dir() {
            stat_count(Utf8Path::from_path(&e.path()).context("UTF-8 path")?)?
        } else {
            1
        };
    }
    Ok(count)
}

/// `build-all --force` of the project's stack with BuildKit (Debian's docker 20.10 CLI with
/// the engine's BuildKit) and with the legacy builder (the machine's docker CLI), taking
/// turns `rounds` times; every image is checked OK after each run.
fn builders_figures(docker: &Docker, root: &Utf8Path, dir: &Utf8Path, rounds: usize) -> Result<()> {
    let buildkit_cli = Utf8Path::new("/usr/bin/docker");
    if !buildkit_cli.exists() {
        bail!("Debian's docker CLI (/usr/bin/docker, package docker.io) is missing: the BuildKit figures need it (apt-get install docker.io)");
    }
    // The machine's docker 28 CLI builds with the legacy builder (it has no buildx); where it
    // is not there, the 20.10 CLI does with DOCKER_BUILDKIT=0 (AI_INFRA_BUILDER=legacy).
    let legacy_cli = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .map(Utf8Path::new)
        .find(|p| p.exists())
        .unwrap_or(buildkit_cli);
    copy_stack(root, dir)?;
    let tag = format!("bench-builders-{}", std::process::id());
    let result = builders_measure(docker, dir, &tag, rounds, [("legacy", legacy_cli), ("buildkit", buildkit_cli)]);
    remove_own(docker, &own_images(dir, &tag)?);
    result
}

fn builders_measure(
    docker: &Docker,
    dir: &Utf8Path,
    tag: &str,
    rounds: usize,
    builders: [(&str, &Utf8Path); 2],
) -> Result<()> {
    let xtask = Xtask::on(docker, dir)?;
    let services = project::Project::load(dir)?.services.len();
    // A folder per builder whose `docker` is that builder's CLI, first on PATH.
    let mut paths = Vec::new();
    for (name, cli) in builders {
        let bin = dir.join("bin").join(name);
        std::fs::create_dir_all(&bin)?;
        let _ = std::fs::remove_file(bin.join("docker"));
        std::os::unix::fs::symlink(cli, bin.join("docker"))?;
        paths.push(format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()));
    }
    let mut times: [Vec<f64>; 2] = Default::default();
    let mut said: [String; 2] = Default::default();
    eprintln!(
        "building the project's {services} services with --force, {rounds} times with each builder, taking turns"
    );
    for _ in 0..rounds {
        for (b, (name, _)) in builders.iter().enumerate() {
            let vars = [("PATH", paths[b].as_str()), ("AI_INFRA_BUILDER", name)];
            let t = Instant::now();
            let out = xtask.read_vars(&["build-all", tag, "--force"], &vars)?;
            times[b].push(t.elapsed().as_secs_f64());
            said[b] = out.lines().find(|l| l.starts_with("builder: ")).unwrap_or("builder: not said").to_string();
            let status = xtask.read_vars(&["check-status", tag, "--format", "plain"], &vars)?;
            if status.lines().count() != services || status.lines().any(|l| !l.contains("|OK|")) {
                bail!("after build-all --force with {name}, not every image is OK:\n{status}");
            }
        }
    }
    let [legacy, buildkit] = times.map(middle);
    println!("\nbuild-all --force of the project's {services} services, each builder in turn (median of {rounds}):");
    println!("  legacy builder                 {legacy:>8.2} s   ({}, {})", builders[0].1, said[0]);
    println!("  BuildKit                       {buildkit:>8.2} s   ({}, {})", builders[1].1, said[1]);
    println!("  legacy / BuildKit              {:>8.2}   (every image OK after each run)", legacy / buildkit);
    Ok(())
}

/// The local names a bench part made on a generated workspace: each service's image under
/// the part's own tag (unique to this run).
fn own_images(dir: &Utf8Path, tag: &str) -> Result<Vec<String>> {
    Ok(project::Project::load(dir)?.names().iter().map(|s| crate::repo::reference::image_name(s, tag, None)).collect())
}

/// Removes the images a bench part made, by exact name; a failure is reported, not fatal.
fn remove_own(docker: &Docker, names: &[String]) {
    match docker.remove(names) {
        Ok(left) => {
            for (name, why) in left {
                eprintln!("warning: could not remove {name}: {why}");
            }
        }
        Err(e) => eprintln!("warning: could not remove the bench's images: {e:#}"),
    }
}

/// The median of timings.
fn middle(mut times: Vec<f64>) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Stats every file below `dir`, as a walk must that trusts no timestamp; returns their bytes.
fn stat_all(dir: &Utf8Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            total += stat_all(Utf8Path::from_path(&e.path()).context("UTF-8 path")?)?;
        } else {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}
