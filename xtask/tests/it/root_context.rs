//! Services built from one shared root context (context = "." with the Dockerfile under
//! src/<svc>/), as the ai-infra repository builds them: each image's inputs are the files its
//! build reads, the context is hashed once, and the tool's own files never make an image stale.

use crate::common;

use common::Workspace;

fn root_stack(name: &str) -> Workspace {
    let ws = Workspace::new(name);
    ws.write(".env.example", "LOG_LEVEL=info\n");
    ws.write(
        "services.toml",
        "[backend]\ncontext = \".\"\ndockerfile = \"src/backend/Dockerfile\"\n\n\
         [worker]\ncontext = \".\"\ndockerfile = \"src/worker/Dockerfile\"\n\n\
         [frontend]\ncontext = \".\"\ndockerfile = \"src/frontend/Dockerfile\"\ntarget = \"site\"\n\n\
         [bundle]\ncontext = \".\"\ndockerfile = \"src/bundle/Dockerfile\"\n",
    );
    ws.write(
        "src/backend/Dockerfile",
        "FROM scratch\nCOPY src/backend/app/ /app/\nCOPY third_party/*.txt /licenses/\n",
    );
    ws.write("src/backend/app/main.py", &format!("print('backend {}')\n", ws.tag));
    ws.write("src/backend/app/util.py", "X = 1\n");
    ws.write("third_party/a.txt", "license a\n");
    ws.write("third_party/notes.md", "not copied\n");
    ws.write(
        "src/worker/Dockerfile",
        "ARG IMAGE_TAG=latest\nFROM ai-infra-backend:${IMAGE_TAG}\nCOPY [\"src/worker/run.py\", \"/app/\"]\n",
    );
    ws.write("src/worker/run.py", "print('worker')\n");
    // The target skips the docs stage: docs/ is no input of frontend.
    ws.write(
        "src/frontend/Dockerfile",
        "FROM scratch AS docs\nCOPY docs/ /docs/\nFROM scratch AS assets\nCOPY src/frontend/ /assets/\n\
         FROM scratch AS site\nCOPY --from=assets /assets/ /srv/\n",
    );
    ws.write("src/frontend/index.html", &format!("<h1>{}</h1>\n", ws.tag));
    ws.write("docs/guide.md", "guide\n");
    // Reads the whole context (and so the .env that step 2 writes).
    ws.write("src/bundle/Dockerfile", "FROM scratch\nCOPY . /bundle/\n");
    ws
}

#[test]
fn a_shared_root_context_is_as_precise_as_the_build() {
    let ws = root_stack("rootctx");
    let o = ws.run(&["build-all", &ws.tag]);
    assert_eq!(o.code, 0, "{o:?}");
    // The tool's own target/ is in the context: said once, with the line that fixes it.
    assert_eq!(o.stderr.matches("add the line `/target` to .dockerignore").count(), 1, "{o:?}");
    let all = [("backend", "OK"), ("worker", "OK"), ("frontend", "OK"), ("bundle", "OK")];
    // A file hashed within 2 s of its last change is not cached; a fast build (BuildKit) can
    // end inside that window, so the check below waits it out.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    ws.expect(&all);
    // The hash cache of "." is saved: the check after the build read no file again.
    assert!(ws.path("target/xtask/hash-cache/%2E").is_file());

    // Files no build reads, the tool's own state and docs/ (a stage frontend skips).
    ws.write("README.md", "a new file\n");
    ws.write("third_party/notes.md", "changed\n");
    ws.write("docs/guide.md", "guide v2\n");
    ws.write("target/xtask/extra.log", "the tool's own state\n");
    ws.expect(&[("backend", "OK"), ("worker", "OK"), ("frontend", "OK"), ("bundle", "STALE")]);
    ws.ok(&["build", "bundle", &ws.tag]);
    ws.expect(&all);

    // A change under src/backend/: exactly backend and its descendants, naming file and instruction.
    ws.write("src/backend/app/util.py", "X = 2\n");
    ws.expect(&[("backend", "STALE"), ("worker", "STALE"), ("frontend", "OK"), ("bundle", "STALE")]);
    let reason = ws.reason("backend");
    assert!(reason.contains("files changed: src/backend/app/util.py (modified, read by COPY at line 2)"), "{reason}");
    ws.write("third_party/b.txt", "license b\n");
    assert!(ws.reason("backend").contains("third_party/b.txt (added, read by COPY at line 3)"));
    let o = ws.ok(&["build-all", &ws.tag]);
    let mut built = Workspace::built(&o.stdout);
    built.sort();
    assert_eq!(built, vec!["backend", "bundle", "worker"], "{o:?}");
    ws.expect(&all);
    // A .dockerignore line that keeps target/ out: no note any more.
    ws.write(".dockerignore", "/target\n");
    let o = ws.run(&["check-status", &ws.tag]);
    assert!(!o.stderr.contains("add the line"), "{o:?}");
}
