//! `cargo xtask bench`: performance figures on generated workspaces, printed with their ratios.
//! Every comparison is measured in the same run, so the ratios hold on a noisy machine.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

use crate::docker::Docker;
use crate::flags::Bench;
use crate::{project, status};

/// The median of `runs` timings of `f`, in seconds.
fn median(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// A workspace of `n` services: one base, the rest built on it, each with `files` files of
/// varied content, from half of `size` to one and a half times it (average `size`).
pub fn generate(dir: &Utf8Path, n: usize, files: usize, size: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed & 0xff) as u8
            })
            .collect()
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

pub fn run(root: &Utf8Path, f: Bench) -> Result<i32> {
    let base = crate::state_dir(root).join("bench");
    let docker = Docker::connect(root)?;
    check_status_figures(&docker, &base.join("status"), f.services)?;
    // The warm check costs one stat per file; the cold one, reading every byte: their ratio
    // grows with the average file size, which --file-kib sets.
    digest_figures(&base.join("digest"), f.services, f.files, f.file_kib * 1024)?;
    let _ = std::fs::remove_dir_all(&base);
    Ok(0)
}

/// check-status against the old script's approach: four engine calls per service.
fn check_status_figures(docker: &Docker, dir: &Utf8PathBuf, n: usize) -> Result<()> {
    let tag = format!("bench-{}", std::process::id());
    generate(dir, n, 3, 64)?;
    let snap = status::snapshot(docker, dir, &tag, None)?;
    eprintln!("building {n} services for the status figures");
    let exe = std::env::current_exe()?;
    let sh = &docker.sh()?;
    cmd!(sh, "{exe} build-all {tag}").env("AI_INFRA_ROOT", dir).quiet().ignore_stdout().run()?;
    let names: Vec<String> = snap.services.iter().map(|r| crate::reference::image_name(&r.service.name, &tag, None)).collect();
    let ours = median(5, || {
        let out = cmd!(sh, "{exe} check-status {tag} --format plain").env("AI_INFRA_ROOT", dir).quiet().read()?;
        if out.lines().any(|l| !l.contains("|OK|")) {
            bail!("bench images are not all OK:\n{out}");
        }
        Ok(())
    })?;
    let (size, tags, created) = ("{{.Size}}", "{{.RepoTags}}", "{{.Created}}");
    let old = median(3, || {
        for name in &names {
            cmd!(sh, "docker image inspect {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "docker image inspect --format {size} {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "docker image inspect --format {tags} {name}").quiet().ignore_stdout().run()?;
            cmd!(sh, "docker image inspect --format {created} {name}").quiet().ignore_stdout().run()?;
        }
        Ok(())
    })?;
    let _ = docker.remove(&names);
    println!("check-status, {n} services, all images present and unchanged (median of runs):");
    println!("  cargo xtask check-status       {ours:>8.3} s   (one process, 2 engine calls)");
    println!("  old per-service approach       {old:>8.3} s   ({} engine calls)", 4 * n);
    println!("  speed-up                       {:>8.1}x  (target: at least 20x)", old / ours);
    Ok(())
}

/// Cold and warm digests of large contexts, and sha256sum over the same files.
fn digest_figures(dir: &Utf8PathBuf, n: usize, files: usize, size: usize) -> Result<()> {
    generate(dir, n, files, size)?;
    let bytes: u64 = walk_sizes(&dir.join("services"))?;
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
    let cache = crate::state_dir(dir).join("hash-cache");
    let digest_all = || -> Result<()> {
        let resolved = project::resolve(&project, "bench", &Default::default())?;
        status::inputs(dir, resolved, &Default::default())?;
        Ok(())
    };
    let cold = median(3, || {
        let _ = std::fs::remove_dir_all(&cache);
        digest_all()
    })?;
    digest_all()?;
    let warm = median(5, digest_all).context("warm digest")?;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!("\ninput digests, {n} services x {files} files of {} KiB on average ({mib:.1} MiB, page cache warm, median of runs):", size / 1024);
    println!("  cold (no hash cache)           {cold:>8.3} s   {:>7.1} MiB/s", mib / cold);
    println!("  warm (hash cache filled)       {warm:>8.3} s");
    println!("  sha256sum, same files          {sha256sum:>8.3} s   {:>7.1} MiB/s", mib / sha256sum);
    println!("  warm vs cold                   {:>8.1}x  (target: at least 10x)", cold / warm);
    println!("  cold throughput / sha256sum    {:>8.2}   (target: at least 0.5)", sha256sum / cold);
    Ok(())
}

fn walk_sizes(dir: &Utf8Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            total += walk_sizes(Utf8Path::from_path(&e.path()).context("UTF-8 path")?)?;
        } else {
            total += m.len();
        }
    }
    Ok(total)
}
