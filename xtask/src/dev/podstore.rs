//! The Podman storage of the test suite and the benchmark: a graph root, run root and libpod
//! state of their own under `target/`, reached only through the environment a user's Podman
//! reads (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF), and removed whole at the end.
//!
//! Rootful Podman's default storage (/var/lib/containers) is the machine's, shared with other
//! engineers: a day of runs left a thousand nameless images there (Buildah keeps the
//! intermediate images of `--layers` builds, and a tag that moves leaves its old image
//! nameless), which made every listing, and so the Podman tests, several times slower. A
//! storage of the run's own starts empty and goes with everything in it, without removing
//! anything of anyone else's.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

/// The variables that point Podman (and Buildah) at a storage.
const VARS: [&str; 2] = ["CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF"];

/// A private Podman storage, in use by this process and every process it starts from
/// `open` until `remove`.
pub struct PodStore {
    dir: Utf8PathBuf,
    removed: bool,
}

/// storage.conf: overlay (native on the file systems this suite runs on; `driver` reports
/// what Podman chose), with the graph root and run root inside `dir`.
fn storage_conf(dir: &Utf8Path) -> String {
    format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{dir}/graph\"\nrunroot = \"{dir}/run\"\n")
}

/// containers.conf: libpod's temporary state and its network configurations inside `dir` too.
/// Left at their defaults they are the machine's (/run/libpod, /etc/cni/net.d), and
/// `podman system reset` removes the first and every network but the default in the second.
/// (The machine's containers.conf sets nothing the builds need: default capabilities and a
/// ping sysctl for containers.)
fn containers_conf(dir: &Utf8Path) -> String {
    format!("[engine]\ntmp_dir = \"{dir}/tmp\"\n\n[network]\nnetwork_config_dir = \"{dir}/networks\"\n")
}

impl PodStore {
    /// Makes the storage under `dir` (after removing what an interrupted run left there) and
    /// points this process's environment at it, so every podman started from here on, the
    /// tool's and the tests', uses it as a user's configured Podman would. Call it before
    /// starting threads that read the environment.
    pub fn open(dir: &Utf8Path) -> Result<PodStore> {
        if dir.exists() {
            remove(dir).context("removing an earlier run's Podman storage")?;
        }
        std::fs::create_dir_all(dir.join("networks")).with_context(|| format!("creating {dir}"))?;
        let dir = dir.canonicalize_utf8()?;
        std::fs::write(dir.join("storage.conf"), storage_conf(&dir))?;
        std::fs::write(dir.join("containers.conf"), containers_conf(&dir))?;
        for (var, file) in VARS.iter().zip(["storage.conf", "containers.conf"]) {
            std::env::set_var(var, dir.join(file));
        }
        Ok(PodStore { dir, removed: false })
    }

    /// The graph root, where the images are.
    pub fn graph_root(&self) -> Utf8PathBuf {
        self.dir.join("graph")
    }

    /// The storage driver Podman uses there, and whether it is overlay on the kernel (fast)
    /// rather than fuse-overlayfs or vfs (a copy of every layer).
    pub fn driver(&self) -> Result<String> {
        let sh = Shell::new()?;
        let format = "{{.Store.GraphDriverName}} at {{.Store.GraphRoot}} {{json .Store.GraphStatus}}";
        Ok(cmd!(sh, "podman info --format {format}").quiet().read()?)
    }

    /// The image names (`localhost/NAME:TAG`) in this storage.
    pub fn names(&self) -> Result<Vec<String>> {
        names(&[])
    }

    /// Removes the storage: Podman removes its containers (unmounting them and freeing their
    /// locks), whatever is still mounted under the folder (a build's container after Ctrl-C)
    /// is unmounted, then the folder goes. Podman is asked only after it confirmed the graph
    /// root is this one. This is `podman system reset` without what that does beyond the
    /// storage: it also removes every network but the default one and, in Podman 5, the
    /// machine-wide blob-info cache under /var/lib/containers/cache.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove(&self.dir)
    }
}

impl Drop for PodStore {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = remove(&self.dir) {
                eprintln!("warning: could not remove the test Podman storage {}: {e:#}", self.dir);
            }
        }
    }
}

fn remove(dir: &Utf8Path) -> Result<()> {
    let sh = Shell::new()?;
    for (var, file) in VARS.iter().zip(["storage.conf", "containers.conf"]) {
        sh.set_var(var, dir.join(file));
    }
    let confs = dir.join("storage.conf").exists() && dir.join("containers.conf").exists();
    if confs && crate::world::docker::on_path("podman") {
        let format = "{{.Store.GraphRoot}}";
        let root = cmd!(sh, "podman info --format {format}").quiet().ignore_stderr().read().unwrap_or_default();
        if Utf8Path::new(root.trim()) == dir.join("graph") {
            if let Err(e) = cmd!(sh, "podman rm --all --force").quiet().ignore_stdout().run() {
                eprintln!("warning: podman could not remove the containers of {dir} ({e}); unmounting them by hand");
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts_under(&mountinfo, dir) {
        let _ = cmd!(sh, "umount {point}").quiet().ignore_stderr().run();
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => bail!("cannot remove {dir}: {e}"),
        _ => Ok(()),
    }
}

/// The image names in the storage the environment names, but for the variables `unset` (the
/// machine's own storage with both).
fn names(unset: &[&str]) -> Result<Vec<String>> {
    let mut command = std::process::Command::new("podman");
    command.args(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for var in unset {
        command.env_remove(var);
    }
    let out = command.output().context("cannot run podman images")?;
    if !out.status.success() {
        bail!("podman images failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// The image names in the machine's own Podman storage (its configuration without this run's).
pub fn machine_names() -> Result<Vec<String>> {
    names(&VARS)
}

/// The mount points at or under `dir` in a mountinfo table, deepest first (the order they
/// unmount in). Mountinfo escapes a space in a path as `\040`.
fn mounts_under(mountinfo: &str, dir: &Utf8Path) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\"))
        .filter(|p| Utf8Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// The names of `names` with one of `tags`.
pub fn tagged<'a>(names: &'a [String], tags: &std::collections::BTreeSet<String>) -> Vec<&'a str> {
    names.iter().filter(|n| n.rsplit_once(':').is_some_and(|(_, t)| tags.contains(t))).map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_puts_every_root_inside_the_folder() {
        let dir = Utf8Path::new("/w/target/xtask/podman");
        let storage = storage_conf(dir);
        assert!(storage.contains("graphroot = \"/w/target/xtask/podman/graph\"\n"), "{storage}");
        assert!(storage.contains("runroot = \"/w/target/xtask/podman/run\"\n"), "{storage}");
        assert!(storage.contains("driver = \"overlay\""), "{storage}");
        let containers = containers_conf(dir);
        assert!(containers.contains("tmp_dir = \"/w/target/xtask/podman/tmp\""), "{containers}");
        assert!(containers.contains("network_config_dir = \"/w/target/xtask/podman/networks\""), "{containers}");
    }

    #[test]
    fn only_the_mounts_under_the_folder_unmount_deepest_first() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
90 22 0:50 / /w/t/podman/graph/overlay rw - tmpfs tmpfs rw
91 90 0:51 / /w/t/podman/graph/overlay/abc/merged rw - overlay overlay rw
92 22 0:52 / /w/t/podman-other rw - tmpfs tmpfs rw
93 22 0:53 / /var/lib/containers/storage/overlay rw - tmpfs tmpfs rw
94 22 0:54 / /w/t/podman/a\\040b rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_under(info, Utf8Path::new("/w/t/podman")),
            ["/w/t/podman/graph/overlay/abc/merged", "/w/t/podman/graph/overlay", "/w/t/podman/a b"]
        );
    }

    #[test]
    fn tagged_matches_the_tag_after_the_last_colon() {
        let names = vec!["localhost/ai-infra-a:t1".to_string(), "localhost:5000/ai-infra-b:t2".into(), "x:t3".into()];
        let tags = ["t1".to_string(), "t2".to_string()].into_iter().collect();
        assert_eq!(tagged(&names, &tags), ["localhost/ai-infra-a:t1", "localhost:5000/ai-infra-b:t2"]);
    }
}
