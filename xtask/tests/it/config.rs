//! sync-env and render on generated workspaces, and their effect on status and builds.

use crate::common;

use common::Workspace;

/// A stack whose web service COPYs a rendered config; api does not.
fn configured(name: &str) -> Workspace {
    with_config(Workspace::new(name))
}

/// The same, for sync-env and render, which need no engine (see `Workspace::offline`).
fn configured_offline(name: &str) -> Workspace {
    with_config(Workspace::offline(name))
}

fn with_config(ws: Workspace) -> Workspace {
    ws.write(".env.example", "# ports\nWEB_PORT=80\nAPI_PORT=8000\n");
    ws.write("services/web/Dockerfile", "FROM scratch\nCOPY conf/site.conf /etc/site.conf\n");
    ws.write(
        "templates/web/conf/site.conf.tpl",
        "listen {{WEB_PORT}};\nproxy_pass http://api:{{API_PORT}};\nheader $host;\nauth ${REDIS_PASSWORD};\n",
    );
    ws.write("services/api/Dockerfile", "FROM scratch\nCOPY api.txt /\n");
    ws.write("services/api/api.txt", "api\n");
    ws
}

#[test]
fn sync_creates_then_appends_and_keeps_hand_edits() {
    let ws = configured_offline("sync");
    let o = ws.ok(&["sync-env"]);
    assert!(o.stdout.contains("created .env from .env.example (2 keys)"), "{o:?}");
    assert_eq!(ws.read(".env"), ws.read(".env.example"));
    // The user edits a value and adds a comment and a key of their own.
    ws.write(".env", "# ports\nWEB_PORT=8080 # mine\nAPI_PORT=8000\nLOCAL_ONLY=1\n");
    ws.write(".env.example", "# ports\nWEB_PORT=80\nAPI_PORT=8000\nDB_PASSWORD=hunter2\n");
    assert_eq!(ws.run(&["sync-env", "--check"]).code, 1);
    let o = ws.ok(&["sync-env"]);
    assert!(o.stdout.contains("added to .env from .env.example: DB_PASSWORD"), "{o:?}");
    assert!(o.stdout.contains("LOCAL_ONLY is not in .env.example"), "{o:?}");
    assert!(!o.stdout.contains("hunter2"), "secrets are never printed: {o:?}");
    let env = ws.read(".env");
    assert!(env.starts_with("# ports\nWEB_PORT=8080 # mine\nAPI_PORT=8000\nLOCAL_ONLY=1\n"), "{env}");
    assert!(env.ends_with("DB_PASSWORD=hunter2\n"), "{env}");
    assert_eq!(ws.read(".env.bak"), "# ports\nWEB_PORT=8080 # mine\nAPI_PORT=8000\nLOCAL_ONLY=1\n");
    assert_eq!(ws.ok(&["sync-env", "--check"]).code, 0);
    // A moved default is reported, the user's value kept.
    ws.write(".env.example", "# ports\nWEB_PORT=81\nAPI_PORT=8000\nDB_PASSWORD=hunter2\n");
    let o = ws.ok(&["sync-env"]);
    assert!(
        o.stdout.contains("the default of WEB_PORT moved in .env.example (\"80\" -> \"81\"); your value is kept"),
        "{o:?}"
    );
    assert!(ws.read(".env").contains("WEB_PORT=8080 # mine"));
}

#[test]
fn bad_env_files_write_nothing() {
    let ws = configured_offline("badenv");
    ws.write(".env", "WEB_PORT=1\nthis is not a pair\n");
    let o = ws.run(&["sync-env"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains(".env") && o.stderr.contains("line 2: expected KEY=value"), "{o:?}");
    assert_eq!(ws.read(".env"), "WEB_PORT=1\nthis is not a pair\n", "nothing written");
    assert!(!ws.path(".env.bak").exists());
    std::fs::write(ws.path(".env"), b"WEB_PORT=\xff\n").unwrap();
    let o = ws.run(&["sync-env"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not UTF-8"), "{o:?}");
    std::fs::remove_file(ws.path(".env")).unwrap();
    std::fs::create_dir(ws.path(".env")).unwrap();
    let o = ws.run(&["sync-env"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is a folder"), "{o:?}");
}

#[test]
fn render_writes_only_changes_and_keeps_nginx_variables() {
    let ws = configured_offline("render");
    assert_eq!(ws.run(&["render", "--check"]).code, 1);
    ws.ok(&["render"]);
    let conf = ws.read("services/web/conf/site.conf");
    assert_eq!(conf, "listen 80;\nproxy_pass http://api:8000;\nheader $host;\nauth ${REDIS_PASSWORD};\n");
    let before = std::fs::metadata(ws.path("services/web/conf/site.conf")).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = ws.ok(&["render"]);
    assert!(o.stdout.contains("up to date"), "{o:?}");
    let after = std::fs::metadata(ws.path("services/web/conf/site.conf")).unwrap().modified().unwrap();
    assert_eq!(before, after, "an unchanged render touches nothing");
    assert_eq!(ws.ok(&["render", "--check"]).code, 0);
    // The process environment comes first.
    let o = ws.run_env(&["render"], &[("WEB_PORT", "9090")]);
    assert_eq!(o.code, 0);
    assert!(ws.read("services/web/conf/site.conf").starts_with("listen 9090;"));
}

#[test]
fn a_failing_template_leaves_the_previous_output() {
    let ws = configured_offline("failtpl");
    ws.ok(&["render"]);
    let good = ws.read("services/web/conf/site.conf");
    ws.write("templates/web/conf/site.conf.tpl", "listen {{WEB_PORT}};\nroot {{UNDEFINED_ROOT}};\n");
    let o = ws.run(&["render"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("templates/web/conf/site.conf.tpl:2:6: UNDEFINED_ROOT is not defined"), "{o:?}");
    assert_eq!(ws.read("services/web/conf/site.conf"), good);
    ws.write("templates/web/conf/site.conf.tpl", "listen {{WEB PORT}};\n");
    let o = ws.run(&["render"]);
    assert!(o.code == 1 && o.stderr.contains(":1:8: \"WEB PORT\" is not a variable name"), "{o:?}");
    ws.write("templates/web/conf/site.conf.tpl", "listen {{WEB_PORT;\n");
    let o = ws.run(&["render"]);
    assert!(o.code == 1 && o.stderr.contains("unclosed"), "{o:?}");
    assert_eq!(ws.read("services/web/conf/site.conf"), good);
    // A template folder for no service.
    ws.write("templates/web/conf/site.conf.tpl", "listen 1;\n");
    ws.write("templates/nosuch/x.tpl", "x\n");
    let o = ws.run(&["render"]);
    assert!(o.code == 1 && o.stderr.contains("templates/nosuch is for a service that does not exist"), "{o:?}");
}

#[test]
fn a_changed_env_value_makes_exactly_the_copying_service_stale() {
    let ws = configured("envstale");
    ws.ok(&["build", "web", &ws.tag]);
    ws.ok(&["build", "api", &ws.tag]);
    assert!(ws.path(".env").exists(), "build syncs .env first");
    ws.expect(&[("web", "OK"), ("api", "OK")]);
    // Before anything is rendered again, status already sees the new value.
    let env = ws.read(".env").replace("API_PORT=8000", "API_PORT=9000");
    ws.write(".env", &env);
    ws.expect(&[("web", "STALE"), ("api", "OK")]);
    assert!(ws.reason("web").contains("conf/site.conf (modified, read by COPY at line 2)"), "{}", ws.reason("web"));
    let o = ws.ok(&["build", "web", &ws.tag]);
    assert!(o.stdout.contains("built web"), "{o:?}");
    assert!(ws.read("services/web/conf/site.conf").contains("api:9000"));
    ws.expect(&[("web", "OK"), ("api", "OK")]);
}

/// Generated files reached through symbolic links count where their writes land: a template
/// whose output folder is a link, and a `.env` that is a dangling link (sync-env creates the
/// file it points to). The first build is OK, and one value change costs exactly one build.
#[test]
fn generated_files_through_links_count_where_they_land() {
    let ws = Workspace::new("genlinks");
    ws.write("services/conf/Dockerfile", "FROM scratch\nCOPY . /\n");
    ws.write("services/conf/etc/keep", "kept\n");
    std::os::unix::fs::symlink("etc", ws.path("services/conf/live")).unwrap();
    ws.write("templates/conf/live/app.conf.tpl", "port={{GL_PORT}}\n");
    ws.write("services.toml", "[envcopy]\ncontext = \".\"\n");
    ws.write(".dockerignore", "*\n!.env\n!envs\n");
    ws.write("services/envcopy/Dockerfile", "FROM scratch\nCOPY .env /\n");
    std::fs::create_dir_all(ws.path("envs")).unwrap();
    std::os::unix::fs::symlink("envs/dev.env", ws.path(".env")).unwrap();
    ws.write(".env.example", "GL_PORT=80\n");
    ws.expect(&[("conf", "MISSING"), ("envcopy", "MISSING")]);
    let o = ws.ok(&["build-all", &ws.tag]);
    assert!(!o.stdout.contains("not OK after the build"), "{o:?}");
    assert_eq!(ws.read("services/conf/etc/app.conf"), "port=80\n");
    assert!(ws.read("envs/dev.env").contains("GL_PORT=80"), "sync-env wrote through the link");
    ws.expect(&[("conf", "OK"), ("envcopy", "OK")]);
    // A new value: both STALE before anything is written, both OK after one build each.
    ws.write("envs/dev.env", "GL_PORT=81\n");
    ws.expect(&[("conf", "STALE"), ("envcopy", "STALE")]);
    let o = ws.ok(&["build-all", &ws.tag]);
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, ["conf", "envcopy"], "{o:?}");
    assert!(!o.stdout.contains("not OK after the build"), "{o:?}");
    assert_eq!(ws.read("services/conf/etc/app.conf"), "port=81\n");
    ws.expect(&[("conf", "OK"), ("envcopy", "OK")]);
}

/// A services folder reached through a link (`services -> src/services`): a generated file is
/// still counted in its service's context, whose path resolves through the same link.
#[test]
fn a_linked_services_folder_counts_its_generated_files() {
    let ws = Workspace::new("linkedsvc");
    std::fs::create_dir_all(ws.path("src/services")).unwrap();
    std::fs::remove_dir_all(ws.path("services")).ok();
    std::os::unix::fs::symlink("src/services", ws.path("services")).unwrap();
    ws.write("services/a/Dockerfile", "FROM scratch\nCOPY app.conf /\n");
    ws.write("templates/a/app.conf.tpl", "port={{LS_PORT}}\n");
    ws.write(".env.example", "LS_PORT=80\n");
    let o = ws.ok(&["build-all", &ws.tag]);
    assert!(!o.stdout.contains("not OK after the build"), "{o:?}");
    ws.expect(&[("a", "OK")]);
    ws.write(".env", &ws.read(".env").replace("LS_PORT=80", "LS_PORT=82"));
    ws.expect(&[("a", "STALE")]);
    let o = ws.ok(&["build-all", &ws.tag]);
    assert_eq!(Workspace::built(&o.stdout), ["a"], "{o:?}");
    ws.expect(&[("a", "OK")]);
}

#[test]
fn build_args_come_from_env() {
    let ws = Workspace::new("buildargs");
    ws.write(".env.example", "APP_VERSION=1.0\n");
    ws.write(
        "services/app/Dockerfile",
        "ARG APP_VERSION=0\nFROM scratch\nARG APP_VERSION\nCOPY app.txt /\nLABEL version=${APP_VERSION}\n",
    );
    ws.write("services/app/app.txt", "app for the build-args test\n");
    ws.ok(&["build", "app", &ws.tag]);
    let out = ws.cli(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"version\"}}",
        &format!("ai-infra-app:{}", ws.tag),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.0");
    ws.write(".env", "APP_VERSION=2.0\n");
    ws.expect(&[("app", "STALE")]);
    assert!(ws.reason("app").contains("build arg APP_VERSION changed: \"1.0\" -> \"2.0\""), "{}", ws.reason("app"));
}

#[test]
fn secret_build_args_are_warned_about_once_and_recorded_keyed() {
    let ws = Workspace::new("secret-args");
    ws.write(".env.example", "DB_PASSWORD=changeme\nAPI_TOKEN=changeme\n");
    ws.write(".env", "DB_PASSWORD=hunter2-secret\nAPI_TOKEN=tok-secret\n");
    for svc in ["api", "worker"] {
        ws.write(&format!("services/{svc}/Dockerfile"), "FROM scratch\nARG DB_PASSWORD\nARG API_TOKEN\nCOPY f /\n");
        ws.write(&format!("services/{svc}/f"), svc);
    }
    let o = ws.ok(&["build-all", &ws.tag]);
    assert_eq!(Workspace::built(&o.stdout).len(), 2, "{o:?}");
    let warnings: Vec<&str> = o.stderr.lines().filter(|l| l.starts_with("warning: build arg")).collect();
    assert_eq!(warnings.len(), 1, "once per run: {o:?}");
    assert!(
        warnings[0].contains("API_TOKEN (api, worker), DB_PASSWORD (api, worker)")
            && warnings[0].contains("RUN --mount=type=secret"),
        "{}",
        warnings[0]
    );
    for value in ["hunter2", "tok-secret"] {
        assert!(!o.stdout.contains(value) && !o.stderr.contains(value), "{o:?}");
    }
    // The records keep a keyed hash, with the key private to this root.
    use sha2::Digest;
    let plain: String = sha2::Sha256::digest("hunter2-secret").iter().map(|b| format!("{b:02x}")).collect();
    for e in std::fs::read_dir(ws.path("target/xtask/inputs")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(text.contains("hidden:hmac-sha256:") && !text.contains(&plain) && !text.contains("hunter2"), "{text}");
    }
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(ws.path("target/xtask/record-key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    // A changed secret is named, hidden, from the keyed records.
    ws.write(".env", "DB_PASSWORD=other\nAPI_TOKEN=tok-secret\n");
    assert!(ws.reason("api").contains("build arg DB_PASSWORD changed: (hidden) -> (hidden)"), "{}", ws.reason("api"));
    // Nothing to build: no warning.
    ws.write(".env", "DB_PASSWORD=hunter2-secret\nAPI_TOKEN=tok-secret\n");
    let again = ws.ok(&["build-all", &ws.tag]);
    assert!(!again.stderr.contains("warning: build arg"), "{again:?}");
}

#[test]
fn a_dockerfile_template_renders_and_counts_as_rendered() {
    let ws = Workspace::new("dftpl");
    ws.write(".env.example", "APP_DIR=/srv/app\n");
    // No Dockerfile on disk: the template renders it; `${...}` stays for Docker.
    ws.write(
        "templates/app/Dockerfile.tpl",
        "FROM scratch\nARG FLAVOUR=plain\nCOPY app.txt {{APP_DIR}}/app.txt\nLABEL flavour=${FLAVOUR}\n",
    );
    ws.write("services/app/app.txt", &format!("app {}\n", ws.tag));
    ws.expect(&[("app", "MISSING")]);
    ws.ok(&["build", "app", &ws.tag]);
    assert_eq!(
        ws.read("services/app/Dockerfile"),
        "FROM scratch\nARG FLAVOUR=plain\nCOPY app.txt /srv/app/app.txt\nLABEL flavour=${FLAVOUR}\n"
    );
    ws.expect(&[("app", "OK")]);
    // A new value shows before anything is rendered again, as a changed Dockerfile.
    ws.write(".env", "APP_DIR=/opt/app\n");
    ws.expect(&[("app", "STALE")]);
    assert!(ws.reason("app").contains("Dockerfile changed"), "{}", ws.reason("app"));
    ws.ok(&["build", "app", &ws.tag]);
    ws.expect(&[("app", "OK")]);
}

/// Step 2 appends a key to `.env`, which one service copies: the check before the run already
/// reads `.env` as step 2 will write it, so that service is STALE at once, in the plan made
/// before anything runs, and the run ends all OK.
#[test]
fn a_service_whose_input_step_2_changes_is_in_the_first_plan() {
    let ws = Workspace::new("envplan");
    ws.write(".env.example", "A=1\n");
    ws.write(
        "services.toml",
        "[reader]\ncontext = \".\"\ndockerfile = \"src/reader/Dockerfile\"\n\n\
         [other]\ncontext = \".\"\ndockerfile = \"src/other/Dockerfile\"\n",
    );
    ws.write(".dockerignore", "/target\n");
    ws.write("src/reader/Dockerfile", &format!("FROM scratch\nCOPY .env /\nLABEL t={}\n", ws.tag));
    ws.write("src/other/Dockerfile", &format!("FROM scratch\nCOPY src/other/o.txt /\nLABEL t={}\n", ws.tag));
    ws.write("src/other/o.txt", "1\n");
    ws.ok(&["build-all", &ws.tag]);
    ws.expect(&[("reader", "OK"), ("other", "OK")]);
    // A new default, and a change that makes `other` need a build.
    ws.write(".env.example", "A=1\nB=2\n");
    ws.write("src/other/o.txt", "2\n");
    assert_eq!(ws.statuses()["reader"], "STALE");
    let why = ws.reason("reader");
    assert!(why.contains("files changed: .env (modified, read by COPY"), "{why}");
    assert!(!ws.read(".env").contains("B=2"), "a check writes nothing");
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    let first_plan = o.stdout.split("[step 1/5]").next().unwrap_or_default();
    assert!(first_plan.contains("plan: 2 to build"), "{o:?}");
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, ["other", "reader"], "{o:?}");
    assert!(ws.read(".env").contains("B=2"));
    ws.expect(&[("reader", "OK"), ("other", "OK")]);
}

/// A FROM whose image comes from a `.env` value (no default in the Dockerfile) is analysed
/// with that value: the service is built, not ERROR.
#[test]
fn a_from_argument_valued_in_env_is_not_an_error() {
    let ws = Workspace::new("fromenv");
    ws.write(".env.example", "BASE=scratch\n");
    ws.write(".env", "BASE=scratch\n");
    ws.write("services/app/Dockerfile", &format!("ARG BASE\nFROM ${{BASE}}\nCOPY a.txt /\nLABEL t={}\n", ws.tag));
    ws.write("services/app/a.txt", "a\n");
    ws.expect(&[("app", "MISSING")]);
    ws.ok(&["build-all", &ws.tag]);
    ws.expect(&[("app", "OK")]);
}
