//! `cargo xtask export DIR [TAG]`: an offline bundle for sites with no registry: one tar per
//! image (the project's images, which must be OK; their external bases with `--with-bases`;
//! the dependency images), `manifest.json` (each image's name, ID, input digest, and its tar's
//! sha256 and size), with `--sign KEY` its signature, and an `import.sh` that needs only sh,
//! tar, sha256sum and docker or podman.
//! Incremental by image ID; a tar is written under a temporary name and renamed only once it
//! is complete and its sha256 is known, so an interrupted export leaves nothing an import trusts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{json, Value};

use crate::decide::status::State;
use crate::world::docker::Docker;

pub const MANIFEST: &str = "manifest.json";
pub const SCRIPT: &str = "import.sh";
/// The signature `--sign` writes beside the manifest, and the namespace it signs in.
pub const SIGNATURE: &str = "manifest.json.sig";
pub const NAMESPACE: &str = "ai-infra-bundle";
const FORMAT: u64 = 1;

/// One image of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    /// "service", "base" or "dependency".
    pub kind: String,
    pub service: Option<String>,
    pub id: String,
    /// The digest the image's label carries (project images).
    pub input_digest: Option<String>,
    /// The image's status when it was exported (project images).
    pub status: Option<String>,
    pub file: String,
    /// Hex, as sha256sum prints it.
    pub sha256: String,
    pub size: u64,
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub tag: String,
    pub entries: Vec<Entry>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A tar's name in the bundle: a plain file name, never a path.
fn safe_file(s: &str) -> bool {
    s.ends_with(".tar") && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// An image ID without its `sha256:` (Docker writes it, Podman does not).
pub fn bare_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

impl Manifest {
    pub fn to_json(&self) -> Value {
        let images: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name, "kind": e.kind, "service": e.service, "id": e.id,
                    "input_digest": e.input_digest, "status": e.status,
                    "file": e.file, "sha256": e.sha256, "size": e.size,
                })
            })
            .collect();
        json!({ "format": FORMAT, "tag": self.tag, "images": images })
    }

    /// Reads a manifest, checking every field before anything uses it: a file name that is
    /// not a plain `.tar` name, an ID or sha256 that is not 64 hex digits, is refused.
    pub fn from_json(v: &Value) -> Result<Manifest> {
        if v.get("format").and_then(Value::as_u64) != Some(FORMAT) {
            bail!("it is not format {FORMAT} (written by another version of this tool): export it again");
        }
        let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        let mut entries = Vec::new();
        for (i, e) in v.get("images").and_then(Value::as_array).context("it has no \"images\" list")?.iter().enumerate()
        {
            let bad = |what: &str| anyhow::anyhow!("image {} has {what}", i + 1);
            let name = s(e, "name")
                .filter(|n| crate::repo::reference::is_valid_reference(n))
                .ok_or_else(|| bad("no valid name"))?;
            let id = s(e, "id").filter(|x| is_hex64(bare_id(x))).ok_or_else(|| bad("no valid id"))?;
            let file = s(e, "file").filter(|f| safe_file(f)).ok_or_else(|| bad("no plain .tar file name"))?;
            let sha256 = s(e, "sha256").filter(|x| is_hex64(x)).ok_or_else(|| bad("no valid sha256"))?;
            let size = e.get("size").and_then(Value::as_u64).ok_or_else(|| bad("no size"))?;
            let kind = s(e, "kind").filter(|k| ["service", "base", "dependency"].contains(&k.as_str()));
            let input_digest = s(e, "input_digest");
            if input_digest.as_deref().is_some_and(|d| !d.strip_prefix("sha256:").is_some_and(is_hex64)) {
                return Err(bad("an input digest that is not sha256:<64 hex digits>"));
            }
            entries.push(Entry {
                name,
                kind: kind.ok_or_else(|| bad("no kind (service, base or dependency)"))?,
                service: s(e, "service"),
                id,
                input_digest,
                status: s(e, "status"),
                file,
                sha256,
                size,
            });
        }
        Ok(Manifest { tag: s(v, "tag").unwrap_or_default(), entries })
    }

    /// The bundle's manifest; None when DIR has none.
    pub fn read(dir: &Utf8Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        match std::fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {path}")),
        }
    }

    /// A manifest from its text, as read from `path`.
    pub fn parse(text: &str, path: &Utf8Path) -> Result<Manifest> {
        let v: Value = serde_json::from_str(text).with_context(|| format!("{path} is not JSON"))?;
        Manifest::from_json(&v).with_context(|| format!("{path}"))
    }

    /// The manifest's text, as written.
    fn text(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_default() + "\n"
    }

    fn write(&self, dir: &Utf8Path) -> Result<()> {
        crate::base::atomic::write(&dir.join(MANIFEST), self.text().as_bytes())
    }
}

/// Quotes a word for sh; the names in a manifest are checked, this is a second fence.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The bundle's own loader, for machines with no Rust toolchain: checks manifest.json against the
/// sha256 it was written with (and its signature with ALLOWED_SIGNERS), each tar's sha256 and the
/// tar's own manifest.json before loading it, loads, tags. Needs only sh, tar, sha256sum and
/// docker or podman (and ssh-keygen to verify).
pub fn import_script(m: &Manifest) -> String {
    let manifest_sha = crate::base::Sha::of(&<sha2::Sha256 as sha2::Digest>::digest(m.text().as_bytes())).to_string();
    let mut s = String::from(
        r#"#!/bin/sh
# Loads this bundle's images (written by `cargo xtask export`) into docker or podman.
# Each tar's sha256 and its own manifest.json are checked first (its image must be the
# manifest's, and it may name nothing else); a refused tar is named and not loaded.
# Needs only sh, tar, sha256sum and docker or podman; ENGINE=podman ./import.sh picks podman.
# ALLOWED_SIGNERS=FILE ./import.sh refuses the bundle unless manifest.json.sig verifies with a
# key of FILE (OpenSSH's allowed-signers format; needs ssh-keygen).
# With the ai-infra repository at hand, `cargo xtask import DIR` does the same and then
# checks every image's input digest.
set -u
cd "$(dirname "$0")" || exit 1
ENGINE=${ENGINE:-}
ALLOWED_SIGNERS=${ALLOWED_SIGNERS:-}
if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null 2>&1; then ENGINE=podman
  else echo "import.sh: neither docker nor podman is installed" >&2; exit 1
  fi
fi
sum=$(sha256sum < manifest.json) || exit 1
if [ "${sum%% *}" != "@MANIFEST_SHA@" ]; then
  echo "import.sh: manifest.json is not the one this script was written with; nothing was loaded" >&2; exit 1
fi
if [ -n "$ALLOWED_SIGNERS" ]; then
  if [ ! -f manifest.json.sig ]; then
    echo "import.sh: the bundle is not signed (no manifest.json.sig); nothing was loaded" >&2; exit 1
  fi
  id=$(ssh-keygen -Y find-principals -s manifest.json.sig -f "$ALLOWED_SIGNERS" | head -n 1)
  if [ -z "$id" ] || ! ssh-keygen -Y verify -f "$ALLOWED_SIGNERS" -I "$id" -n ai-infra-bundle -s manifest.json.sig < manifest.json >/dev/null; then
    echo "import.sh: manifest.json.sig does not verify with a key of $ALLOWED_SIGNERS; nothing was loaded" >&2; exit 1
  fi
  echo "the bundle is signed by $id, verified with $ALLOWED_SIGNERS"
elif [ -f manifest.json.sig ]; then
  echo "the bundle is signed, but not verified: ALLOWED_SIGNERS=FILE ./import.sh verifies it"
else
  echo "the bundle is unsigned: anyone who could write to it could have changed it"
fi
loaded=0
refused=0
# foreign FILE ID NAMES: why the tar's own manifest.json must not be loaded (a load applies its
# RepoTags), if it must not; silent when it may. Anything it cannot read is refused.
foreign() {
  [ "$(tar -tf "$1" | grep -c 'manifest\.json$')" = 1 ] && tar -tf "$1" | grep -qx 'manifest\.json' \
    || { echo "it holds no manifest.json, or more than one"; return; }
  m=$(tar -xOf "$1" manifest.json | tr -d ' \t\r\n')
  case $m in
    *'"Config"'*'"Config"'*|*'"RepoTags"'*'"RepoTags"'*|*'},{'*) echo "it holds more than one image"; return ;;
    '[{'*'"RepoTags":'*'}]') ;;
    *) echo "its manifest.json is not one image with its RepoTags"; return ;;
  esac
  config=${m#*\"Config\":\"}; config=${config%%\"*}
  case $config in "$2.json"|"blobs/sha256/$2") ;; *) echo "its image is not the manifest's"; return ;; esac
  csum=$(tar -xOf "$1" "$config" | sha256sum); [ "${csum%% *}" = "$2" ] || { echo "its image is not the manifest's"; return; }
  tags=${m#*\"RepoTags\":}
  case $tags in null*) tags= ;; '['*) tags=${tags#\[}; tags=${tags%%\]*} ;; *) echo "its RepoTags are not a list"; return ;; esac
  IFS=,
  for t in $tags; do
    t=${t#\"}; t=${t%\"}; t=${t#localhost/}; t=${t#docker.io/library/}
    case " $3 " in *" $t "*) ;; *) unset IFS; echo "it names $t, which the bundle's manifest does not name for it"; return ;; esac
  done
  unset IFS
}
# load FILE SHA256 ID NAME NAMES: checks, loads and tags one image (NAMES: all of its tar's names).
load() {
  if [ ! -f "$1" ]; then
    echo "refused $1 ($4): the file is missing" >&2; refused=$((refused + 1)); return
  fi
  sum=$(sha256sum < "$1") || { echo "refused $1 ($4): cannot read it" >&2; refused=$((refused + 1)); return; }
  sum=${sum%% *}
  if [ "$sum" != "$2" ]; then
    echo "refused $1 ($4): its sha256 is not the manifest's: the file is damaged or altered; nothing of it was loaded" >&2
    refused=$((refused + 1)); return
  fi
  why=$(foreign "$1" "$3" "$5")
  if [ -n "$why" ]; then
    echo "refused $1 ($4): $why; nothing of it was loaded" >&2; refused=$((refused + 1)); return
  fi
  if "$ENGINE" load -i "$1" >/dev/null && "$ENGINE" tag "$3" "$4"; then
    echo "loaded $4"; loaded=$((loaded + 1))
  else
    echo "failed $1 ($4): $ENGINE could not load it" >&2; refused=$((refused + 1))
  fi
}
"#,
    )
    .replace("@MANIFEST_SHA@", &manifest_sha);
    for e in &m.entries {
        let names: Vec<&str> = m.entries.iter().filter(|o| o.file == e.file).map(|o| o.name.as_str()).collect();
        s.push_str(&format!(
            "load {} {} {} {} {}\n",
            sh_quote(&e.file),
            sh_quote(&e.sha256),
            sh_quote(bare_id(&e.id)),
            sh_quote(&e.name),
            sh_quote(&names.join(" "))
        ));
    }
    s.push_str(
        r#"echo "$loaded images loaded, $refused refused"
[ "$refused" -eq 0 ]
"#,
    );
    s
}

/// Signs the manifest as written: `ssh-keygen -Y sign` of its bytes into `manifest.json.sig`.
fn sign(dir: &Utf8Path, text: &str, key: &Utf8Path) -> Result<()> {
    let mut child = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-f", key.as_str(), "-n", NAMESPACE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run ssh-keygen: install OpenSSH's client (Debian: openssh-client)")?;
    let _ = child.stdin.take().context("ssh-keygen has no input")?.write_all(text.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
        bail!("ssh-keygen -Y sign -f {key} failed: {line}: give an OpenSSH private key");
    }
    crate::base::atomic::write(&dir.join(SIGNATURE), &out.stdout)
}

/// One image to put in the bundle.
struct Wanted {
    name: String,
    kind: &'static str,
    service: Option<String>,
    id: String,
    input_digest: Option<String>,
    status: Option<String>,
}

/// The file name an image's tar gets: its name with every character outside `[A-Za-z0-9_.-]`
/// made `_`, unique within the bundle.
fn file_name(name: &str, id: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let stem: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect();
    let plain = format!("{stem}.tar");
    if !taken(&plain) {
        return plain;
    }
    format!("{stem}-{}.tar", &bare_id(id)[..12.min(bare_id(id).len())])
}

/// Bytes for people: MiB with one decimal, exact bytes beside it.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A progress line on a terminal (stderr), redrawn at most every 200 ms.
struct Progress {
    on: bool,
    last: std::time::Instant,
}

impl Progress {
    fn show(&mut self, text: &str, force: bool) {
        if self.on && (force || self.last.elapsed() >= std::time::Duration::from_millis(200)) {
            eprint!("\r\x1b[K{text}");
            let _ = std::io::stderr().flush();
            self.last = std::time::Instant::now();
        }
    }

    fn clear(&mut self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

/// A temporary file removed unless it was renamed into place.
struct Partial(Utf8PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `docker save IMAGE` streamed into DIR/FILE: hashed as it is written, synced, then renamed.
fn write_tar(
    docker: &Docker,
    image: &str,
    dir: &Utf8Path,
    file: &str,
    progress: &mut Progress,
    label: &str,
) -> Result<(String, u64)> {
    use sha2::Digest;
    let partial = Partial(dir.join(format!(".{file}.partial-{}", std::process::id())));
    let mut out = std::fs::File::create(&partial.0).with_context(|| format!("cannot create {}", partial.0))?;
    let mut child = docker.save(image)?;
    let mut stdout = child.stdout.take().context("docker save has no output")?;
    let mut stderr = child.stderr.take();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let copied = (|| -> Result<()> {
        loop {
            let n = stdout.read(&mut buf).context("reading docker save")?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).with_context(|| format!("cannot write {}", partial.0))?;
            size += n as u64;
            progress.show(&format!("{label}  {}", mib(size)), false);
        }
    })();
    if copied.is_err() {
        let _ = child.kill();
    }
    let mut err = String::new();
    if let Some(e) = stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait()?;
    copied?;
    if !status.success() {
        let line = err.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
        bail!("docker save {image} failed: {line}");
    }
    out.sync_all().with_context(|| format!("cannot write {}", partial.0))?;
    drop(out);
    let target = dir.join(file);
    std::fs::rename(&partial.0, &target).with_context(|| format!("cannot replace {target}"))?;
    std::mem::forget(partial);
    Ok((crate::base::Sha::of(&hasher.finalize()).to_string(), size))
}

/// Whether a tar of an earlier export is still what its manifest says: size and sha256.
fn intact(dir: &Utf8Path, e: &Entry) -> bool {
    let path = dir.join(&e.file);
    std::fs::metadata(&path).is_ok_and(|m| m.len() == e.size)
        && crate::repo::context::hash_file(&path).is_ok_and(|h| h.as_str() == e.sha256)
}

/// The images to export, or the reason there are none to export as asked.
fn wanted(
    docker: &Docker,
    root: &Utf8Path,
    tag: &str,
    o: &crate::cmd::flags::Export,
) -> Result<(Vec<Wanted>, Vec<String>)> {
    let snap = crate::cmd::gather::snapshot(docker, root, tag, None)?;
    let mut notes = Vec::new();
    let not_ok: Vec<String> = snap
        .statuses
        .iter()
        .filter(|s| s.state != State::Ok)
        .map(|s| format!("{} ({}: {})", s.name, s.state.name(), s.reason))
        .collect();
    if !not_ok.is_empty() && !o.allow_stale {
        bail!(
            "not every image of tag {tag} is OK: {}; build them first (`cargo xtask build-all {tag}`), or pass --allow-stale to export them as they are",
            not_ok.join("; ")
        );
    }
    let mut out = Vec::new();
    for s in &snap.statuses {
        match &s.image_id {
            Some(id) => out.push(Wanted {
                name: s.image.clone(),
                kind: "service",
                service: Some(s.name.clone()),
                id: id.clone(),
                input_digest: s.found.clone(),
                status: Some(s.state.name().to_string()),
            }),
            None => notes.push(format!("left out {} ({}): no such image", s.image, s.state.name())),
        }
    }
    let mut others: Vec<(String, &'static str)> = Vec::new();
    if o.with_bases {
        for record in snap.records.values() {
            for base in record.bases.keys() {
                if !others.iter().any(|(b, _)| b == base) {
                    others.push((base.clone(), "base"));
                }
            }
        }
    }
    for d in crate::cmd::deps::load(root)? {
        if !others.iter().any(|(b, _)| *b == d) {
            others.push((d, "dependency"));
        }
    }
    let names: Vec<String> = others.iter().map(|(n, _)| n.clone()).collect();
    let found = docker.inspect(&names)?;
    let mut absent = Vec::new();
    for (name, kind) in others {
        match found.get(&name).and_then(|i| i.id.clone()) {
            Some(id) => out.push(Wanted { name, kind, service: None, id, input_digest: None, status: None }),
            None => absent.push(format!("{name} ({kind})")),
        }
    }
    if !absent.is_empty() {
        let hint = "run `cargo xtask pull-deps` (dependencies) or `cargo xtask build-all` (bases)";
        if !o.allow_stale {
            bail!("not present locally: {}: {hint}, or pass --allow-stale to leave them out", absent.join(", "));
        }
        notes.push(format!("left out, not present locally: {}", absent.join(", ")));
    }
    Ok((out, notes))
}

/// `cargo xtask export DIR [TAG]`. Long because the bundle's steps (check, choose, save, hash,
/// rename, manifest) are one sequence over the same images and manifest, read top to bottom.
pub fn run(root: &Utf8Path, o: crate::cmd::flags::Export) -> Result<i32> {
    let docker = crate::world::engine::connect(root)?;
    let tag = crate::cmd::flags::tag(root, o.tag.as_deref())?;
    let (wanted, notes) = wanted(&docker, root, &tag, &o)?;
    for n in &notes {
        println!("{n}");
    }
    let dir = o.dir.as_path();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    // Left by an interrupted export of ours: never named by a manifest, so never trusted.
    for e in dir.read_dir_utf8().with_context(|| format!("cannot read {dir}"))?.flatten() {
        if e.file_name().starts_with('.') && e.file_name().contains(".tar.partial-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // A signature is only ever of a finished export's manifest.
    match std::fs::remove_file(dir.join(SIGNATURE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove the old {}", dir.join(SIGNATURE)))
        }
        _ => {}
    }
    let old = match Manifest::read(dir) {
        Ok(m) => m.map(|m| m.entries).unwrap_or_default(),
        Err(e) => {
            println!("note: the bundle's manifest cannot be read ({e:#}); writing every image again");
            Vec::new()
        }
    };
    let mut progress = Progress { on: std::io::stderr().is_terminal(), last: std::time::Instant::now() };
    let mut entries: Vec<Entry> = Vec::new();
    // Tars of this run, by image ID (checked intact once).
    let mut reusable: BTreeMap<String, Option<Entry>> = BTreeMap::new();
    let (mut written, mut skipped, mut n_written, mut n_skipped) = (0u64, 0u64, 0, 0);
    for (i, w) in wanted.iter().enumerate() {
        let label = format!("export [{}/{}] {}", i + 1, wanted.len(), w.name);
        let id = bare_id(&w.id).to_string();
        let earlier = reusable
            .entry(id.clone())
            .or_insert_with(|| {
                entries
                    .iter()
                    .chain(&old)
                    .find(|e| bare_id(&e.id) == id && (entries.contains(e) || intact(dir, e)))
                    .cloned()
            })
            .clone();
        let (file, sha256, size) = match earlier {
            Some(e) => {
                println!("unchanged {} ({}, same image ID)", w.name, mib(e.size));
                skipped += e.size;
                n_skipped += 1;
                (e.file, e.sha256, e.size)
            }
            None => {
                let taken = |f: &str| entries.iter().any(|e| e.file == f);
                let file = file_name(&w.name, &w.id, &taken);
                progress.show(&label, true);
                let (sha, size) = write_tar(&docker, &w.name, dir, &file, &mut progress, &label)
                    .with_context(|| format!("exporting {}", w.name))?;
                progress.clear();
                println!("wrote {} ({}) to {file}", w.name, mib(size));
                written += size;
                n_written += 1;
                (file, sha, size)
            }
        };
        let entry = Entry {
            name: w.name.clone(),
            kind: w.kind.to_string(),
            service: w.service.clone(),
            id: w.id.clone(),
            input_digest: w.input_digest.clone(),
            status: w.status.clone(),
            file,
            sha256,
            size,
        };
        reusable.insert(id, Some(entry.clone()));
        entries.push(entry);
        // After every image, so that an interrupted export keeps what it finished; earlier
        // entries stay listed while their files are untouched.
        let mut so_far = entries.clone();
        so_far.extend(old.iter().filter(|o| !entries.iter().any(|e| e.file == o.file || e.name == o.name)).cloned());
        Manifest { tag: tag.clone(), entries: so_far }.write(dir)?;
    }
    let manifest = Manifest { tag: tag.clone(), entries };
    manifest.write(dir)?;
    let script = dir.join(SCRIPT);
    crate::base::atomic::write(&script, import_script(&manifest).as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {script} executable"))?;
    if let Some(key) = &o.sign {
        sign(dir, &manifest.text(), key)?;
        println!("signed {MANIFEST} with {key} into {SIGNATURE}");
    }
    // Tars that an earlier export of this bundle wrote and that no image names now.
    let mut removed = 0;
    for o in &old {
        if !manifest.entries.iter().any(|e| e.file == o.file) && std::fs::remove_file(dir.join(&o.file)).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        println!("removed {removed} tars of images no longer in the bundle");
    }
    println!(
        "export: {} images in {dir}: wrote {n_written} files, {written} bytes ({}); skipped {n_skipped} files, {skipped} bytes ({}) already there with the same image ID",
        manifest.entries.len(),
        mib(written),
        mib(skipped)
    );
    println!("on the other side: `cargo xtask import {dir}`, or `sh {dir}/{SCRIPT}` where there is no Rust toolchain");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, file: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: "service".into(),
            service: Some("base".into()),
            id: format!("sha256:{}", "a".repeat(64)),
            input_digest: Some(format!("sha256:{}", "b".repeat(64))),
            status: Some("OK".into()),
            file: file.into(),
            sha256: "c".repeat(64),
            size: 10,
        }
    }

    #[test]
    fn the_manifest_reads_back_and_refuses_what_is_unsafe() {
        let m = Manifest { tag: "v1".into(), entries: vec![entry("ai-infra-base:v1", "ai-infra-base_v1.tar")] };
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut v = m.to_json();
        v["images"][0]["file"] = json!("../../etc/passwd.tar");
        assert!(Manifest::from_json(&v).unwrap_err().to_string().contains("no plain .tar file name"));
        let mut v = m.to_json();
        v["images"][0]["sha256"] = json!("abc");
        assert!(Manifest::from_json(&v).unwrap_err().to_string().contains("sha256"));
        let mut v = m.to_json();
        v["images"][0]["name"] = json!("Bad Name");
        assert!(Manifest::from_json(&v).is_err());
        let mut v = m.to_json();
        v["format"] = json!(99);
        assert!(Manifest::from_json(&v).unwrap_err().to_string().contains("another version"));
        assert!(Manifest::from_json(&json!("x")).is_err());
    }

    #[test]
    fn file_names_are_plain_and_unique() {
        let none = |_: &str| false;
        assert_eq!(
            file_name("r.io:5000/ai-infra-base:v1", "sha256:0123456789abcdef", &none),
            "r.io_5000_ai-infra-base_v1.tar"
        );
        let all = |_: &str| true;
        assert_eq!(file_name("a/b:c", "sha256:0123456789abcdef", &all), "a_b_c-0123456789ab.tar");
        assert!(safe_file("a_b_c-0123456789ab.tar") && !safe_file(".x.tar") && !safe_file("a/b.tar"));
    }

    #[test]
    fn the_script_checks_before_it_loads() {
        let m = Manifest { tag: "v1".into(), entries: vec![entry("ai-infra-base:v1", "ai-infra-base_v1.tar")] };
        let s = import_script(&m);
        let check = s.find("sha256sum").unwrap();
        let load = s.find("load -i").unwrap();
        assert!(check < load);
        assert!(
            s.contains(&format!(
                "load 'ai-infra-base_v1.tar' '{}' '{}' 'ai-infra-base:v1' 'ai-infra-base:v1'",
                "c".repeat(64),
                "a".repeat(64)
            )),
            "{s}"
        );
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
