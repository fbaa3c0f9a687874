//! The repository's own services: the whole stack builds, a no-op run builds nothing, and a
//! changed .env value rebuilds exactly the services that copy the rendered file.

use crate::common;

#[test]
fn the_project_stack_builds_and_rebuilds_precisely() {
    let ws = common::project_stack("project");
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    let built = common::Workspace::built(&o.stdout);
    assert!(built.len() >= 16, "{o:?}");
    let statuses = ws.statuses();
    assert!(statuses.values().all(|s| s == "OK"), "{statuses:?}");
    for needed in [
        "base",
        "backend",
        "backend-init",
        "frontend",
        "nginx",
        "jupyterhub",
        "singleuser",
        "apphub",
        "gitea",
        "saltstack",
        "slurm-master",
        "postgres-init",
    ] {
        assert!(statuses.contains_key(needed), "{needed} in {statuses:?}");
    }
    // The two targets of backend's Dockerfile are different images.
    let ids = |svc: &str| {
        let o = ws.cli(&["image", "inspect", "--format", "{{.Id}}", &format!("ai-infra-{svc}:{}", ws.tag)]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_ne!(ids("backend"), ids("backend-init"));

    let o = ws.ok(&["build-all", &ws.tag]);
    assert!(o.stdout.contains("images are up to date: nothing to build"), "{o:?}");

    // A value that only nginx's rendered config reads: nginx and docs (built on nginx).
    let env = ws.read(".env").replace("NGINX_MAX_BODY_SIZE=512m", "NGINX_MAX_BODY_SIZE=1g");
    ws.write(".env", &env);
    let o = ws.ok(&["build-all", &ws.tag]);
    let mut built = common::Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, vec!["docs", "nginx"], "{o:?}");
    assert!(ws.read("services/nginx/conf/nginx.conf").contains("client_max_body_size 1g;"));
    // One that jupyterhub's config reads: jupyterhub and singleuser.
    let env = ws.read(".env").replace("JUPYTERHUB_ADMIN_USER=admin", "JUPYTERHUB_ADMIN_USER=root");
    ws.write(".env", &env);
    let o = ws.ok(&["build-all", &ws.tag]);
    let mut built = common::Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, vec!["jupyterhub", "singleuser"], "{o:?}");
    // A build arg from .env reaches the services that declare it.
    let env = ws.read(".env").replace("SLURM_VERSION=23.11", "SLURM_VERSION=24.05");
    ws.write(".env", &env);
    let dry = ws.ok(&["build-all", &ws.tag, "--dry-run"]);
    assert!(
        dry.stdout
            .contains("build            slurm-master: STALE: build arg SLURM_VERSION changed: \"23.11\" -> \"24.05\""),
        "{dry:?}"
    );
    assert!(dry.stdout.contains("build            slurm-node [after slurm-master]"), "{dry:?}");
}
