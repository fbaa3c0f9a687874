//! `cargo xtask import DIR`: loads a bundle that `export` wrote. With `--allowed-signers` the
//! manifest's signature is verified first. Each tar's size and sha256 are checked against the
//! manifest before it is loaded, and so is the tar's own manifest.json (its config must be the
//! image ID and it may name nothing but the bundle's names for it, since a load applies them);
//! a refused tar is named and nothing of it is loaded. Then every image is tagged and checked:
//! a project image is OK when its label carries the manifest's input digest, another when it
//! has its ID.

use std::io::{Read, Seek, SeekFrom};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::cmd::export::{bare_id, mib, Entry, Manifest, MANIFEST};

/// Why a tar must not be loaded, if it must not.
fn damaged(dir: &Utf8Path, e: &Entry) -> Option<String> {
    let path = dir.join(&e.file);
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(_) => return Some("the file is missing".to_string()),
    };
    if size != e.size {
        return Some(format!("it has {size} bytes, the manifest says {}", e.size));
    }
    match crate::repo::context::hash_file(&path) {
        Err(err) => Some(format!("cannot read it ({err})")),
        Ok(h) if h.as_str() != e.sha256 => {
            Some("its sha256 is not the manifest's: the file is damaged or altered".to_string())
        }
        Ok(_) => None,
    }
}

/// The contents of every member of a tar whose name, as a loader extracts it, is `want`
/// (`./manifest.json` too). Reads the headers (GNU long names and pax paths included) and skips
/// the other members' contents.
fn members(path: &Utf8Path, want: &str) -> Result<Vec<Vec<u8>>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?;
    let (mut found, mut long_name) = (Vec::new(), None::<String>);
    let mut header = [0u8; 512];
    loop {
        if f.read_exact(&mut header).is_err() || header.iter().all(|&b| b == 0) {
            return Ok(found);
        }
        let field = |at: usize, len: usize| {
            let raw = &header[at..at + len];
            String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(len)]).into_owned()
        };
        let size = if header[124] & 0x80 != 0 {
            header[125..136].iter().fold(0u64, |n, &b| n.saturating_mul(256).saturating_add(b.into()))
        } else {
            u64::from_str_radix(field(124, 12).trim_matches(|c: char| c == ' ' || c == '\0'), 8)
                .with_context(|| format!("{path} is not a tar: a header has no size"))?
        };
        let mut name = field(0, 100);
        if header[257..262] == *b"ustar" && header[345] != 0 {
            name = format!("{}/{name}", field(345, 155));
        }
        let padded = size.div_ceil(512) * 512;
        let kind = header[156];
        let keep = matches!(kind, b'L' | b'x') || clean(long_name.as_deref().unwrap_or(&name)) == want;
        if !keep || size > 64 << 20 {
            f.seek(SeekFrom::Current(padded as i64)).with_context(|| format!("cannot read {path}"))?;
            long_name = None;
            continue;
        }
        let mut data = vec![0u8; padded as usize];
        f.read_exact(&mut data).with_context(|| format!("{path} ends inside a member"))?;
        data.truncate(size as usize);
        match kind {
            b'L' => long_name = Some(String::from_utf8_lossy(&data).trim_end_matches('\0').to_string()),
            b'x' => {
                let text = String::from_utf8_lossy(&data);
                long_name = text.lines().find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_string())).or(long_name);
            }
            _ => {
                if clean(long_name.as_deref().unwrap_or(&name)) == want {
                    found.push(data);
                }
                long_name = None;
            }
        }
    }
}

/// A member's name as it lands when extracted: no `./` or `/` at the start, no `.` components.
fn clean(name: &str) -> String {
    name.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
}

/// Why a tar's own manifest.json must not be loaded, if it must not: a load applies its
/// `RepoTags`, so they may be only `names` (the bundle's names for this tar), and its config must
/// be the image `id` (checked by hashing the config itself, not by its file name).
fn foreign(path: &Utf8Path, id: &str, names: &[&str]) -> Result<Option<String>> {
    let manifests = members(path, "manifest.json")?;
    let [text] = manifests.as_slice() else {
        return Ok(Some(format!("it holds {} manifest.json files, not one", manifests.len())));
    };
    let Ok(serde_json::Value::Array(images)) = serde_json::from_slice::<serde_json::Value>(text) else {
        return Ok(Some("its manifest.json is not a list of images".to_string()));
    };
    let [image] = images.as_slice() else {
        return Ok(Some(format!("it holds {} images, not one", images.len())));
    };
    let config = image.get("Config").and_then(serde_json::Value::as_str).unwrap_or_default();
    let hex = config.strip_prefix("blobs/sha256/").or_else(|| config.strip_suffix(".json")).unwrap_or_default();
    let hashed = members(path, &clean(config))?;
    let sha = |b: &Vec<u8>| crate::base::Sha::of(&<sha2::Sha256 as sha2::Digest>::digest(b)).to_string();
    if hex != bare_id(id) || hashed.len() != 1 || sha(&hashed[0]) != hex {
        return Ok(Some(format!("its image is not the manifest's {id} (its config is {config:?})")));
    }
    let tags = match image.get("RepoTags") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(a)) => a.iter().map(|t| t.as_str().unwrap_or("?")).collect(),
        Some(_) => return Ok(Some("its manifest.json has RepoTags that are not a list".to_string())),
    };
    let familiar = crate::repo::reference::familiar;
    Ok(tags.into_iter().find(|t| !names.iter().any(|n| familiar(n) == familiar(t))).map(|t| {
        format!("it names {t:?}, which the bundle's manifest does not name for it; a load would move that name")
    }))
}

/// Why an entry's name must not be applied: a project image is `ai-infra-<service>:<tag>`, of a
/// service of this project when the repository is at hand.
fn misnamed(e: &Entry, services: Option<&[&str]>) -> Option<String> {
    if e.kind != "service" {
        return None;
    }
    let r = crate::repo::reference::Reference::parse(&e.name);
    let svc = e.service.as_deref().filter(|s| {
        r.tag.is_some() && r.digest.is_none() && r.repository == crate::repo::reference::repository(s, None)
    });
    match svc {
        Some(s) => services
            .filter(|all| !all.contains(&s))
            .map(|_| format!("{s} is not a service of this project; a project image must be ai-infra-<service>:<tag>")),
        None => Some(format!(
            "a project image must be named ai-infra-<service>:<tag> after its service {:?}",
            e.service.as_deref().unwrap_or("")
        )),
    }
}

/// Verifies `manifest.json.sig` over `text` (the manifest's bytes as read, the same that are then
/// parsed) with the keys of `allowed` (an OpenSSH allowed-signers file): the signer is found
/// among them, then the signature checked for that identity and the bundle's namespace.
fn verify(dir: &Utf8Path, text: &[u8], allowed: &Utf8Path) -> Result<String> {
    let sig = dir.join(crate::cmd::export::SIGNATURE);
    if !sig.is_file() {
        bail!("{dir} is not signed (no {}): refused; export it again with --sign KEY", crate::cmd::export::SIGNATURE);
    }
    let keygen = |args: &[&str], input: &[u8]| -> Result<std::process::Output> {
        let mut child = std::process::Command::new("ssh-keygen")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run ssh-keygen: install OpenSSH's client (Debian: openssh-client)")?;
        let _ = std::io::Write::write_all(&mut child.stdin.take().context("ssh-keygen has no input")?, input);
        Ok(child.wait_with_output()?)
    };
    let found = keygen(&["-Y", "find-principals", "-s", sig.as_str(), "-f", allowed.as_str()], b"")?;
    let principals = String::from_utf8_lossy(&found.stdout).into_owned();
    let Some(identity) = principals.lines().map(str::trim).find(|l| !l.is_empty()).filter(|_| found.status.success())
    else {
        bail!("{sig} is not signed by any key in {allowed}: refused; nothing was loaded");
    };
    let args = [
        "-Y",
        "verify",
        "-f",
        allowed.as_str(),
        "-I",
        identity,
        "-n",
        crate::cmd::export::NAMESPACE,
        "-s",
        sig.as_str(),
    ];
    if !keygen(&args, text)?.status.success() {
        bail!(
            "{sig} does not verify {MANIFEST} as signed by {identity} (namespace {}): refused; nothing was loaded",
            crate::cmd::export::NAMESPACE
        );
    }
    Ok(identity.to_string())
}

/// The state of one imported image on this engine, with the reason when not OK.
fn check(e: &Entry, image: Option<&crate::world::docker::Image>, platform: (&str, &str)) -> (&'static str, String) {
    let Some(image) = image else { return ("MISSING", format!("no image named {}", e.name)) };
    if e.kind != "service" {
        return match image.id.as_deref().map(bare_id) {
            Some(id) if id == bare_id(&e.id) => ("OK", String::new()),
            _ => ("DIFFERENT", format!("{} is another image than the bundle's", e.name)),
        };
    }
    let problems = crate::decide::status::invalid(image, platform.0, platform.1);
    if !problems.is_empty() {
        return ("INVALID", problems.join(", "));
    }
    let carried = crate::decide::digest::from_labels(&image.labels).and_then(|d| d.total);
    match (&carried, &e.input_digest) {
        (Some(c), Some(m)) if c == m => match e.status.as_deref() {
            Some(s) if s != "OK" => ("OK", format!("as exported; it was {s} where it was exported")),
            _ => ("OK", String::new()),
        },
        (None, _) => ("STALE", "carries no input digest".to_string()),
        _ => ("STALE", "its label carries another input digest than the bundle's manifest".to_string()),
    }
}

/// `cargo xtask import DIR [--allowed-signers FILE]`. Long because each tar's checks (sha256,
/// its own manifest, the name) and its load are one sequence, read top to bottom.
pub fn run(root: &Utf8Path, dir: &Utf8Path, allowed: Option<&Utf8Path>) -> Result<i32> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{dir} has no {MANIFEST}: give the folder that `cargo xtask export` wrote")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    let signature = match allowed {
        Some(allowed) => format!("signed by {}, verified with {allowed}", verify(dir, &text, allowed)?),
        None if dir.join(crate::cmd::export::SIGNATURE).is_file() => {
            "signed, but not verified: pass --allowed-signers FILE to verify it".to_string()
        }
        None => "unsigned: anyone who could write to it could have changed it".to_string(),
    };
    let manifest = Manifest::parse(&String::from_utf8_lossy(&text), &path)?;
    let project = crate::repo::project::Project::load(root).ok();
    let services = project.as_ref().map(|p| p.names());
    let docker = crate::world::engine::connect(root)?;
    let (mut loaded, mut refused) = (Vec::<&Entry>::new(), Vec::<&Entry>::new());
    for e in &manifest.entries {
        if let Some(why) = misnamed(e, services.as_deref()) {
            println!("refused {} ({}): {why}", e.file, e.name);
            refused.push(e);
            continue;
        }
        // Several names may share one tar: it is checked and loaded once.
        if let Some(done) = loaded.iter().chain(&refused).find(|d| d.file == e.file).copied() {
            if loaded.iter().any(|l| l.file == done.file) && docker.tag(bare_id(&e.id), &e.name).is_ok() {
                loaded.push(e);
            } else {
                refused.push(e);
            }
            continue;
        }
        let names: Vec<&str> = manifest.entries.iter().filter(|o| o.file == e.file).map(|o| o.name.as_str()).collect();
        let why = damaged(dir, e).map(Ok).or_else(|| foreign(&dir.join(&e.file), &e.id, &names).transpose());
        if let Some(why) = why {
            let why = why.unwrap_or_else(|err| format!("{err:#}"));
            println!("refused {} ({}): {why}; nothing of it was loaded: export it again", e.file, e.name);
            refused.push(e);
            continue;
        }
        match docker.load(&dir.join(&e.file)).and_then(|()| docker.tag(bare_id(&e.id), &e.name)) {
            Ok(()) => {
                println!("loaded {} ({})", e.name, mib(e.size));
                loaded.push(e);
            }
            Err(err) => {
                println!("failed {} ({}): {err:#}", e.file, e.name);
                refused.push(e);
            }
        }
    }
    let names: Vec<String> = manifest.entries.iter().map(|e| e.name.clone()).collect();
    let found = docker.inspect(&names)?;
    let (os, arch) = docker.platform()?;
    let states: Vec<(&Entry, (&str, String))> =
        manifest.entries.iter().map(|e| (e, check(e, found.get(&e.name), (&os, &arch)))).collect();
    let ok = states.iter().filter(|(_, (s, _))| *s == "OK").count();
    println!("\nthe bundle is {signature}");
    println!(
        "imported into {}: {} loaded, {} refused; {ok}/{} OK",
        docker.host,
        loaded.len(),
        refused.len(),
        states.len()
    );
    let width = states.iter().map(|(e, _)| e.name.len()).max().unwrap_or(0);
    for (e, (state, why)) in &states {
        let why = if why.is_empty() { String::new() } else { format!("  {why}") };
        println!("  {state:<9} {:<width$}  {}{why}", e.name, e.kind);
    }
    Ok(if refused.is_empty() && ok == states.len() { 0 } else { 1 })
}
