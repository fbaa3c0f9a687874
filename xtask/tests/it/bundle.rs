//! Intranet delivery on real engines: dependency images mirrored into the loopback registry and
//! pulled back through BASE_IMAGE_MIRROR; an offline bundle exported from the test engine and
//! imported into a second engine that `engine up` starts for another root.

use crate::common;

use std::process::Command;

use common::Workspace;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

/// Two dependency images built here FROM scratch under third-party-looking names (nothing is
/// pulled from the internet), declared in the workspace's dependency-images.txt with their tag
/// from `.env.example`. Returns their names.
fn with_deps(ws: &mut Workspace) -> Vec<String> {
    let version = format!("7-{}", ws.tag);
    ws.also_tag(&version);
    let mut names = Vec::new();
    for dep in ["redis", "postgres"] {
        ws.write(&format!("deps/{dep}/Dockerfile"), "FROM scratch\nCOPY f /f\n");
        ws.write(&format!("deps/{dep}/f"), &format!("{dep} {}\n", ws.tag));
        let name = format!("ai-infra-test-dep/{dep}:{version}");
        let o = docker(&["build", "-q", "-t", &name, ws.path(&format!("deps/{dep}")).to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        names.push(name);
    }
    ws.write(
        "dependency-images.txt",
        "# third-party images, as the tests make them\nai-infra-test-dep/redis:${TEST_DEP_VERSION}\nai-infra-test-dep/postgres:${TEST_DEP_VERSION}\n",
    );
    ws.write(".env.example", &format!("TEST_DEP_VERSION={version}\n"));
    names
}

fn manifest(ws: &Workspace, dir: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&ws.read(&format!("{dir}/manifest.json"))).unwrap();
    v["images"].as_array().unwrap().clone()
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Stops the second engine however the test ends.
struct Down<'a>(&'a Workspace);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run_own_engine(&["engine", "down"]);
    }
}

#[test]
fn a_bundle_moves_the_stack_to_a_second_engine_and_refuses_a_damaged_tar() {
    let mut ws = Workspace::stack("bundle");
    let deps = with_deps(&mut ws);
    ws.ok(&["build-all", &ws.tag]);
    let dir = ws.path("out");
    let d = dir.to_str().unwrap();
    let o = ws.ok(&["export", d, &ws.tag]);
    assert!(o.stdout.contains("export: 7 images") && o.stdout.contains("wrote 7 files"), "{o:?}");
    let images = manifest(&ws, "out");
    assert_eq!(images.len(), 7, "{images:?}");
    for e in &images {
        let file = dir.join(e["file"].as_str().unwrap());
        assert_eq!(sha256(&file), e["sha256"].as_str().unwrap(), "{e}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), e["size"].as_u64().unwrap());
        assert!(e["id"].as_str().unwrap().len() >= 64, "{e}");
        match e["kind"].as_str().unwrap() {
            "service" => assert!(e["input_digest"].as_str().unwrap().starts_with("sha256:"), "{e}"),
            "dependency" => assert!(deps.contains(&e["name"].as_str().unwrap().to_string()), "{e}"),
            k => panic!("kind {k}"),
        }
    }
    let script = ws.read("out/import.sh");
    assert!(script.starts_with("#!/bin/sh") && script.contains("sha256sum"), "{script}");

    // A second export writes nothing; a leftover of an interrupted one is removed.
    ws.write("out/.ai-infra-leaf_x.tar.partial-1", "half a tar");
    let o = ws.ok(&["export", d, &ws.tag]);
    assert!(o.stdout.contains("wrote 0 files, 0 bytes") && o.stdout.contains("skipped 7 files"), "{o:?}");
    assert!(!ws.path("out/.ai-infra-leaf_x.tar.partial-1").exists());

    // A second engine, for another root (this workspace's own `engine up`).
    let up = ws.run_own_engine(&["engine", "up"]);
    let _down = Down(&ws);
    assert_eq!(up.code, 0, "{up:?}");
    assert!(up.stdout.contains("started Docker engine"), "{up:?}");
    let state: serde_json::Value = serde_json::from_str(&ws.read("target/engine/state.json")).unwrap();
    let second = state["host"].as_str().unwrap().to_string();
    assert_ne!(Some(second.clone()), std::env::var("DOCKER_HOST").ok());

    // One byte changed in solo's tar: refused by name, nothing of it loaded; the rest loads.
    let solo = images.iter().find(|e| e["service"] == "solo").unwrap();
    let solo_file = solo["file"].as_str().unwrap().to_string();
    let path = dir.join(&solo_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let o = ws.run_own_engine(&["import", d]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(&format!("refused {solo_file} (ai-infra-solo:{})", ws.tag))
            && o.stdout.contains("damaged or altered"),
        "{o:?}"
    );
    let plain = ws.run_own_engine(&["check-status", &ws.tag, "--format", "plain"]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(plain.stdout.contains("solo|MISSING|"), "nothing of the damaged tar is loaded: {plain:?}");
    assert_eq!(plain.stdout.matches("|OK|").count(), 4, "{plain:?}");
    // The bundle's own script, with only sh, sha256sum and docker, refuses it too.
    let o = Command::new("sh").arg(dir.join("import.sh")).env("DOCKER_HOST", &second).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("refused {solo_file}")), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("6 images loaded, 1 refused"), "{o:?}");

    // The next export writes exactly the damaged tar again; then every image is OK there.
    let o = ws.ok(&["export", d, &ws.tag]);
    assert!(o.stdout.contains("wrote 1 files") && o.stdout.contains("skipped 6 files"), "{o:?}");
    assert!(o.stdout.contains(&format!("wrote ai-infra-solo:{}", ws.tag)), "{o:?}");
    let o = ws.run_own_engine(&["import", d]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("7 loaded, 0 refused; 7/7 OK"), "{o:?}");
    let plain = ws.run_own_engine(&["check-status", &ws.tag, "--format", "plain", "--deps"]);
    assert_eq!(plain.stdout.matches("|OK|").count(), 5, "every image OK on the second engine: {plain:?}");
    assert_eq!(plain.stdout.matches("dependency|PRESENT|").count(), 2, "{plain:?}");

    // Images that are not OK are named, and exported only when asked.
    ws.write("services/mid/mid.txt", "changed after the export\n");
    let o = ws.run(&["export", d, &ws.tag]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("mid (STALE") && o.stderr.contains("leaf (STALE") && o.stderr.contains("--allow-stale"),
        "{o:?}"
    );
    let o = ws.ok(&["export", d, &ws.tag, "--allow-stale"]);
    assert!(o.stdout.contains("skipped 7 files"), "nothing was rebuilt, so nothing changed: {o:?}");

    let down = ws.run_own_engine(&["engine", "down"]);
    assert!(down.stdout.contains("stopped the Docker engine"), "{down:?}");
}

#[test]
fn dependency_images_go_to_the_registry_once_and_come_back_through_the_mirror() {
    let reg = common::registry().expect("AI_INFRA_TEST_REGISTRY is not set: run the suite with `cargo xtask test`");
    let mut ws = Workspace::stack("deps");
    let deps = with_deps(&mut ws);
    let plain = |ws: &Workspace, args: &[&str]| -> Vec<String> {
        let o = ws.ok(args);
        o.stdout.lines().filter(|l| l.starts_with("dependency|")).map(str::to_string).collect()
    };
    let local = plain(&ws, &["check-status", &ws.tag, "--deps", "--format", "plain"]);
    assert_eq!(local, deps.iter().map(|d| format!("dependency|PRESENT|{d}")).collect::<Vec<_>>());

    // The registry holds another image under redis's name, and nothing for postgres.
    let impostor = format!("{reg}/{}", deps[0]);
    assert!(docker(&["tag", &deps[1], &impostor]).status.success());
    assert!(docker(&["push", &impostor]).status.success());
    docker(&["image", "rm", &impostor]);
    let remote = &["check-status", &ws.tag, &reg, "--remote", "--deps", "--format", "plain"];
    let lines = plain(&ws, remote);
    assert_eq!(
        lines,
        vec![format!("dependency|PRESENT|{}|DIFFERENT", deps[0]), format!("dependency|PRESENT|{}|MISSING", deps[1])]
    );

    let o = ws.ok(&["push-deps", &reg]);
    assert_eq!(o.stdout.matches(": pushed ").count(), 2, "{o:?}");
    assert!(o.stdout.contains(&format!("push-deps {}: pushed {reg}/{}", deps[1], deps[1])), "{o:?}");
    let o = ws.ok(&["push-deps", &reg]);
    assert_eq!(o.stdout.matches("already in registry").count(), 2, "pushed once, then skipped: {o:?}");
    assert!(o.stdout.contains("0 pushed, 2 already there, 0 failed"), "{o:?}");
    let lines = plain(&ws, remote);
    assert!(lines.iter().all(|l| l.ends_with("|OK")), "{lines:?}");

    // A machine without them: they come back through the mirror, never from the internet.
    for d in &deps {
        docker(&["image", "rm", d, &format!("{reg}/{d}")]);
    }
    let missing = plain(&ws, &["check-status", &ws.tag, "--deps", "--format", "plain"]);
    assert!(missing.iter().all(|l| l.starts_with("dependency|MISSING|")), "{missing:?}");
    ws.write(".env", &format!("BASE_IMAGE_MIRROR={reg}\n"));
    let o = ws.ok(&["pull-deps"]);
    for d in &deps {
        assert!(o.stdout.contains(&format!("pulled {d} through the mirror as {reg}/{d}")), "{o:?}");
    }
    let o = ws.ok(&["pull-deps"]);
    assert!(o.stdout.contains("2 already present, 0 pulled, 0 failed"), "{o:?}");
    let back = plain(&ws, &["check-status", &ws.tag, "--deps", "--format", "plain"]);
    assert!(back.iter().all(|l| l.starts_with("dependency|PRESENT|")), "{back:?}");
}

#[test]
fn a_folder_that_is_not_a_bundle_is_refused_clearly() {
    let ws = Workspace::new("notbundle");
    let o = ws.run(&["import", ws.path("nothing").to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("has no manifest.json"), "{o:?}");
    ws.write(
        "evil/manifest.json",
        r#"{"format": 1, "tag": "v1", "images": [{"name": "x:1", "kind": "service", "id": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "file": "../../etc/passwd.tar", "sha256": "0000000000000000000000000000000000000000000000000000000000000000", "size": 1}]}"#,
    );
    let o = ws.run(&["import", ws.path("evil").to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no plain .tar file name"), "{o:?}");
    ws.write("services/a/Dockerfile", "FROM scratch\nCOPY a /a\n");
    ws.write("dependency-images.txt", "redis:${NOT_SET_ANYWHERE}\n");
    let o = ws.run(&["pull-deps"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("dependency-images.txt line 1: NOT_SET_ANYWHERE is not set"), "{o:?}");
}

/// Removes a workspace's images from one engine however the test ends (the harness removes
/// only the suite engine's after the run).
struct RemoveUnder<'a>(&'a Workspace, &'static str);

impl Drop for RemoveUnder<'_> {
    fn drop(&mut self) {
        self.0.remove_own_images_under(self.1);
    }
}

/// The `kind|STATE` of each line, sorted, of `check-status --deps --format plain` under one engine.
fn states_under(ws: &Workspace, engine: &str) -> Vec<String> {
    let o = ws.run_env(&["check-status", &ws.tag, "--deps", "--format", "plain"], &[("AI_INFRA_ENGINE", engine)]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut lines: Vec<String> = o.stdout.lines().map(|l| l.split('|').take(2).collect::<Vec<_>>().join("|")).collect();
    lines.sort();
    lines
}

/// A bundle made with one engine imports into the other: exported from the suite's Docker
/// engine and imported under Podman, every image OK there (Podman keeps them as `localhost/`
/// names); then exported under Podman and imported back into Docker, where this test's images
/// were removed first: every image OK again.
#[test]
fn a_bundle_from_docker_imports_under_podman_and_back() {
    let mut ws = Workspace::stack_under("docker", "xengine");
    let deps = with_deps(&mut ws);
    let _podman = RemoveUnder(&ws, "podman");
    ws.ok(&["build-all", &ws.tag]);
    let all_ok =
        vec!["base|OK", "dependency|PRESENT", "dependency|PRESENT", "leaf|OK", "mid|OK", "other|OK", "solo|OK"];
    assert_eq!(states_under(&ws, "docker"), all_ok);
    let from_docker = ws.path("from-docker");
    let o = ws.ok(&["export", from_docker.to_str().unwrap(), &ws.tag]);
    assert!(o.stdout.contains("wrote 7 files"), "{o:?}");

    let podman = [("AI_INFRA_ENGINE", "podman")];
    let o = ws.run_env(&["import", from_docker.to_str().unwrap()], &podman);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("7 loaded, 0 refused; 7/7 OK") && o.stdout.contains("podman"), "{o:?}");
    assert_eq!(states_under(&ws, "podman"), all_ok, "every image OK under Podman");
    let names = ws.cli_under("podman", &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(names.contains(&format!("localhost/ai-infra-leaf:{}\n", ws.tag)), "{names}");

    // Podman's export of the same images, into Docker, which no longer has them.
    let from_podman = ws.path("from-podman");
    let o = ws.run_env(&["export", from_podman.to_str().unwrap(), &ws.tag], &podman);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("wrote 7 files"), "{o:?}");
    ws.remove_own_images_under("docker");
    for d in &deps {
        docker(&["image", "rm", d]);
    }
    let missing = states_under(&ws, "docker");
    assert!(missing.iter().all(|l| l.ends_with("|MISSING")), "{missing:?}");
    let o = ws.run_env(&["import", from_podman.to_str().unwrap()], &[("AI_INFRA_ENGINE", "docker")]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("7 loaded, 0 refused; 7/7 OK"), "{o:?}");
    assert_eq!(states_under(&ws, "docker"), all_ok, "every image OK under Docker again");
}

/// A copy of the bundle in `from` as `to`, with `edit` applied to its manifest's images, and
/// each tar named in `tars` replaced (with its sha256 and size in the manifest updated, as an
/// attacker would) by `docker save` of those names. Returns the copy's path.
fn forged(
    ws: &Workspace,
    from: &str,
    to: &str,
    file: &str,
    save: &[&str],
    edit: &dyn Fn(&mut serde_json::Value),
) -> String {
    let dir = ws.path(to);
    let o = Command::new("cp").args(["-r", ws.path(from).to_str().unwrap(), dir.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success());
    let _ = std::fs::remove_file(dir.join("manifest.json.sig"));
    let mut m: serde_json::Value = serde_json::from_str(&ws.read(&format!("{to}/manifest.json"))).unwrap();
    let before = m.clone();
    if !save.is_empty() {
        let tar = dir.join(file);
        let mut args = vec!["save", "-o", tar.to_str().unwrap()];
        args.extend_from_slice(save);
        assert!(docker(&args).status.success());
        for e in m["images"].as_array_mut().unwrap().iter_mut().filter(|e| e["file"] == file) {
            e["sha256"] = serde_json::json!(sha256(&tar));
            e["size"] = serde_json::json!(std::fs::metadata(&tar).unwrap().len());
        }
    }
    edit(&mut m);
    // Rewritten only when changed: the untouched bytes are what import.sh was written with.
    if m != before {
        ws.write(&format!("{to}/manifest.json"), &serde_json::to_string_pretty(&m).unwrap());
    }
    dir.to_str().unwrap().to_string()
}

/// The attacks of issue 22 on a bundle, each refused with nothing of it loaded, and a signed
/// bundle accepted only with the signer's key.
#[test]
fn a_bundle_trusts_nothing_its_tars_say_and_checks_its_signature() {
    let ws = Workspace::new("forged");
    for s in ["fa", "fb"] {
        ws.write(&format!("services/{s}/Dockerfile"), &format!("FROM scratch\nCOPY {s} /{s}\n"));
        ws.write(&format!("services/{s}/{s}"), &format!("{s} {}\n", ws.tag));
    }
    ws.ok(&["build-all", &ws.tag]);
    let (fa, fb) = (format!("ai-infra-fa:{}", ws.tag), format!("ai-infra-fb:{}", ws.tag));
    let id = |name: &str| {
        String::from_utf8_lossy(&docker(&["image", "inspect", "-f", "{{.Id}}", name]).stdout).trim().to_string()
    };
    let victim = format!("barvictim-{}:keep", ws.tag);
    let other = format!("other-{}:x", ws.tag);
    let _cleanup = RmNames(vec![victim.clone(), other.clone()]);
    for (key, who) in [("key", "ci@example.com"), ("wrong", "mallory@example.com")] {
        let k = ws.path(key);
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
            .arg(&k)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let public = ws.read(&format!("{key}.pub"));
        ws.write(
            &format!("{key}.allowed"),
            &format!("{who} {}", public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")),
        );
    }
    let out = ws.path("out");
    let o = ws.ok(&["export", out.to_str().unwrap(), &ws.tag, "--sign", ws.path("key").to_str().unwrap()]);
    assert!(o.stdout.contains("signed manifest.json"), "{o:?}");
    let allowed = ws.path("key.allowed");
    let allowed = allowed.to_str().unwrap();
    let wrong = ws.path("wrong.allowed");

    // The signed bundle: accepted with the signer's key, by import and by import.sh.
    let o = ws.ok(&["import", out.to_str().unwrap(), "--allowed-signers", allowed]);
    assert!(o.stdout.contains("signed by ci@example.com, verified") && o.stdout.contains("2/2 OK"), "{o:?}");
    let o = ws.ok(&["import", out.to_str().unwrap()]);
    assert!(o.stdout.contains("signed, but not verified"), "{o:?}");
    let sh = |dir: &str, env: &[(&str, &str)]| {
        let mut c = Command::new("sh");
        c.arg(format!("{dir}/import.sh")).envs(env.iter().copied());
        c.output().unwrap()
    };
    let o = sh(out.to_str().unwrap(), &[("ALLOWED_SIGNERS", allowed)]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("signed by ci@example.com"), "{o:?}");
    // Another key, or no signature: refused, nothing loaded.
    let o = ws.run(&["import", out.to_str().unwrap(), "--allowed-signers", wrong.to_str().unwrap()]);
    assert!(o.code == 1 && o.stderr.contains("is not signed by any key in"), "{o:?}");
    let o = sh(out.to_str().unwrap(), &[("ALLOWED_SIGNERS", wrong.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let unsigned = forged(&ws, "out", "unsigned", "", &[], &|_| {});
    let o = ws.run(&["import", &unsigned, "--allowed-signers", allowed]);
    assert!(o.code == 1 && o.stderr.contains("is not signed (no manifest.json.sig)"), "{o:?}");
    let o = sh(&unsigned, &[("ALLOWED_SIGNERS", allowed)]);
    assert!(o.status.code() == Some(1) && String::from_utf8_lossy(&o.stderr).contains("not signed"), "{o:?}");
    let o = ws.ok(&["import", &unsigned]);
    assert!(o.stdout.contains("the bundle is unsigned"), "{o:?}");

    let images = manifest(&ws, "out");
    let file_of = |name: &str| images.iter().find(|e| e["name"] == name).unwrap()["file"].as_str().unwrap().to_string();
    let (fa_file, fb_file) = (file_of(&fa), file_of(&fb));

    // A foreign tar (fb's image, under the victim's name) with the right sha256 in manifest.json:
    // refused, and the user's victim name stays where it was.
    assert!(docker(&["tag", &fb, &victim]).status.success());
    let foreign = forged(&ws, "out", "foreign", &fa_file, &[&victim], &|_| {});
    assert!(docker(&["tag", &fa, &victim]).status.success());
    let o = ws.run(&["import", &foreign]);
    assert!(
        o.code == 1 && o.stdout.contains(&format!("refused {fa_file}")) && o.stdout.contains("is not the manifest's"),
        "{o:?}"
    );
    assert_eq!(id(&victim), id(&fa), "the victim's name did not move");
    // The manifest's own image, but under other names too: refused.
    assert!(docker(&["tag", &fa, &other]).status.success());
    let renamed = forged(&ws, "out", "renamed", &fa_file, &[&fa, &other], &|_| {});
    let o = ws.run(&["import", &renamed]);
    assert!(
        o.code == 1 && o.stdout.contains(&format!("it names \"{other}\"")) && o.stdout.contains("1 loaded, 1 refused"),
        "{o:?}"
    );
    // import.sh refuses it too, even when its own lines are made to match the forged tar.
    let script = ws
        .read("renamed/import.sh")
        .replace(
            images.iter().find(|e| e["name"] == fa).unwrap()["sha256"].as_str().unwrap(),
            &sha256(&ws.path(&format!("renamed/{fa_file}"))),
        )
        .replace(&sha256(&ws.path("out/manifest.json")), &sha256(&ws.path("renamed/manifest.json")));
    ws.write("renamed/import.sh", &script);
    let o = sh(&renamed, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1)
            && stderr.contains(&format!("refused {fa_file}"))
            && stderr.contains(&format!("it names {other}")),
        "{o:?}"
    );
    // A service entry named like someone else's image: refused, never tagged.
    let named = forged(&ws, "out", "named", "", &[], &|m| {
        let e = m["images"].as_array_mut().unwrap().iter_mut().find(|e| e["file"] == fb_file.as_str()).unwrap();
        e["name"] = serde_json::json!(format!("victim-repo-{}:latest", ws.tag));
    });
    let o = ws.run(&["import", &named]);
    assert!(o.code == 1 && o.stdout.contains("must be named ai-infra-<service>:<tag>"), "{o:?}");
    assert!(!docker(&["image", "inspect", &format!("victim-repo-{}:latest", ws.tag)]).status.success());
}

/// Removes image names however the test ends.
struct RmNames(Vec<String>);

impl Drop for RmNames {
    fn drop(&mut self) {
        for n in &self.0 {
            docker(&["image", "rm", n]);
        }
    }
}
