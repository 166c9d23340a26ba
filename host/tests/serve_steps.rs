//! `whenever serve --steps DIR` watches its folder (or one component given alone): a step dropped
//! there, or changed (component or manifest), is deployed live; an invalid one is refused with a
//! logged error while the previous version keeps serving; and `whenever rollback NAME VERSION`
//! makes an earlier version serve. A restart with the steps of the last re-evaluation reads no
//! task again.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{ServeProcess, steps_and_config, whenever_binary};
use whenever_step_artifacts::StepFiles;
use whenever_step_artifacts::testing::{WAIT_FOR_A, WRITE_A, WRITE_B};

/// Writes a file the way an operator's deploy script should: to a temporary name, then renamed.
fn put(dir: &Path, file: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(file)).expect("rename");
}

fn copy_step(dir: &Path, step: &StepFiles) {
    put(
        dir,
        &format!("{}.wasm", step.name),
        &std::fs::read(step.component).expect("component"),
    );
    put(
        dir,
        &format!("{}.toml", step.name),
        &std::fs::read(step.manifest).expect("manifest"),
    );
}

/// The same component with a trailing custom section: another version of it.
fn another_version(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut other = bytes.to_vec();
    other.extend_from_slice(&[0, 5, 4, b'v', b'e', b'r', tag]);
    other
}

async fn step(server: &ServeProcess, name: &str) -> (u16, Value) {
    server.get(&format!("/v1/steps/{name}")).await
}

/// Polls `GET /v1/steps/{name}` until `done` holds (the watcher polls every second).
async fn until_step(server: &ServeProcess, name: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    for _ in 0..300 {
        let (status, step) = step(server, name).await;
        if done(status, &step) {
            return step;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened; server log:\n{}", server.stderr());
}

fn rollback(server: &ServeProcess, name: &str, version: &str) -> std::process::Output {
    whenever(server, &["rollback", name, version])
}

/// The server's log says `write-a.wasm` was refused, and that version `v1` serves meanwhile.
fn assert_refused_while_serving(server: &ServeProcess, v1: &str) {
    let refused = format!("write-a.wasm refused (write-a keeps serving version {v1}): ");
    assert!(server.stderr().contains(&refused), "{}", server.stderr());
}

/// Runs the `whenever` client with `args` against `server` (no token).
fn whenever(server: &ServeProcess, args: &[&str]) -> std::process::Output {
    Command::new(whenever_binary())
        .args(args)
        .args(["--server", &server.base])
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_folder_is_watched_and_rollback_is_one_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = dir.path().join("steps");
    std::fs::create_dir_all(&steps).expect("steps dir");
    copy_step(&steps, &WRITE_A);
    let server = ServeProcess::start(
        &dir.path().join("whenever.db"),
        &["--steps", &steps.display().to_string()],
    );

    let (status, v1) = step(&server, "write-a").await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["deployed_by"], "whenever serve, at start", "{v1}");
    let v1 = v1["version"].as_str().expect("version").to_string();
    let (status, waiting) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201);
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["data"], json!({"start": true, "a": "A"}), "v1 (write-a) ran");
    let waiting_id = waiting["id"].as_str().expect("id").to_string();

    // An invalid component is refused, the error is logged, the old version keeps serving.
    put(&steps, "write-a.wasm", b"\0asm but not a component");
    server
        .until("the refusal to be logged", Duration::from_secs(15), || async {
            server.stderr().contains("write-a.wasm refused")
        })
        .await;
    let (_, still) = step(&server, "write-a").await;
    assert_eq!(still["version"], json!(v1), "{}", server.stderr());
    assert_refused_while_serving(&server, &v1);
    let (_, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(task["runs"][0]["version"], json!(v1));
    assert_eq!(task["data"], json!({"start": true, "a": "A"}), "v1 still ran");

    // A new version dropped in is deployed live; tasks run on it. It is other code (write-b's,
    // which writes `b` where write-a writes `a`), so that what ran shows in the data.
    let component = std::fs::read(WRITE_B.component).expect("component");
    put(&steps, "write-a.wasm", &component);
    let served = until_step(&server, "write-a", "the new version to serve", |_, s| {
        s["version"].as_str().is_some_and(|v| v != v1)
    })
    .await;
    let watched = format!("the watched file {}", steps.join("write-a.wasm").display());
    assert_eq!(served["deployed_by"], json!(watched), "{served}");
    let v2 = served["version"].as_str().expect("version").to_string();
    let v2_component = served["digest"].clone();
    let (_, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(task["runs"][0]["version"], json!(v2));
    assert_eq!(
        task["data"],
        json!({"start": true, "b": "B"}),
        "v2 (write-b's code) ran"
    );

    // A manifest change alone is deployed too, as a version of its own: a change of grants is
    // recorded apart and can be rolled back.
    put(&steps, "write-a.toml", b"connectors = [\"slackCom\"]\n");
    let served = until_step(&server, "write-a", "the new manifest to serve", |_, s| {
        s["connectors"] == json!(["slackCom"])
    })
    .await;
    let v3 = served["version"].as_str().expect("version").to_string();
    assert!(v3 != v2 && v3 != v1, "{served}");
    assert_eq!(served["digest"], v2_component, "the same component");

    // A step dropped into the folder picks up the task that waited for it.
    copy_step(&steps, &WAIT_FOR_A);
    until_step(&server, "wait-for-a", "wait-for-a to be deployed", |status, _| {
        status == 200
    })
    .await;
    server
        .until("the waiting task to resume", Duration::from_secs(20), || async {
            let (_, task) = server.get(&format!("/v1/tasks/{waiting_id}")).await;
            task["data"]["waited"] == json!(true) && task["status"] == "waiting"
        })
        .await;

    // Rollback is one command; the folder's file is not deployed again until it changes.
    let output = rollback(&server, "write-a", &v1);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("write-a now serves version") && printed.contains(&v1),
        "{printed}"
    );
    let (_, rolled) = step(&server, "write-a").await;
    assert_eq!(rolled["version"], json!(v1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, after) = step(&server, "write-a").await;
    assert_eq!(after["version"], json!(v1), "the watcher left the rollback alone");
    let (_, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(task["runs"][0]["version"], json!(v1));
    // (wait-for-a, deployed meanwhile, follows write-a.)
    assert_eq!(
        task["data"],
        json!({"start": true, "a": "A", "waited": true}),
        "v1 ran again"
    );

    let output = rollback(&server, "write-a", "000000000000");
    assert_eq!(output.status.code(), Some(2), "an unknown version is refused");
    let refused = String::from_utf8_lossy(&output.stderr);
    assert!(
        refused.contains("404") && refused.contains(&v1),
        "refused, naming the versions there are: {refused}"
    );

    // `whenever steps NAME` shows every change to what served, and who made it: the start, the
    // watched file (its new component, then its new manifest: each a version), the rollback (a
    // server without tokens: a client without one).
    let output = whenever(&server, &["steps", "write-a", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let recorded: Vec<(&str, &str, &str)> = shown["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let field = |key: &str| c[key].as_str().unwrap_or("-");
            (field("change"), field("version"), field("by"))
        })
        .collect();
    assert_eq!(
        recorded,
        vec![
            ("deployed", v1.as_str(), "whenever serve, at start"),
            ("deployed", v2.as_str(), watched.as_str()),
            ("deployed", v3.as_str(), watched.as_str()),
            ("rolled_back", v1.as_str(), "an API client without a token"),
        ],
        "{shown}"
    );
    assert_eq!(shown["step"]["version"], json!(v1), "{shown}");
    let output = whenever(&server, &["steps", "write-a"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&format!("write-a  serving {v1}")), "{printed}");
    // Its condition as JSON (what `whenever match --condition` reads), and what it reads.
    assert!(
        printed.contains("\ncondition  {\"a\":null,\"start\":true}\n"),
        "{printed}"
    );
    assert!(printed.contains("\nreads      all data\n"), "{printed}");
    // And the limits its runs are held to (a change of them is a version too).
    assert!(
        printed.contains(
            "\nlimits     2000 ms, 64 MiB of memory, 4194304 bytes of output, 1000 connector calls, 1048576 bytes of log\n"
        ),
        "{printed}"
    );
    assert_eq!(shown["step"]["limits"]["timeout_ms"], json!(2000), "{shown}");
    assert!(
        printed.contains("rolled_back") && printed.contains("by an API client without a token"),
        "{printed}"
    );
    assert!(printed.contains(&format!("by {watched}")), "{printed}");
    let output = whenever(&server, &["steps", "never-deployed"]);
    assert_eq!(output.status.code(), Some(2), "a name never deployed is refused");

    // Removed with one command, kept for a rollback, which serves it again.
    let output = whenever(&server, &["remove", "write-a"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("write-a no longer serves; its versions are kept"),
        "{output:?}"
    );
    let (status, answer) = step(&server, "write-a").await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("step write-a is not serving (it was removed); its 3 versions are kept")),
        "{answer}"
    );
    // Its versions are still listed, to pick one to serve again.
    let output = whenever(&server, &["steps", "write-a"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("write-a  not serving\nversions\n"), "{printed}");
    for version in [&v1, &v2, &v3] {
        assert!(printed.contains(&format!("\n  {version}  ")), "{version}: {printed}");
    }
    assert!(!printed.contains("(serving)"), "{printed}");
    let shown: Value =
        serde_json::from_slice(&whenever(&server, &["steps", "write-a", "--json"]).stdout).expect("JSON");
    let listed: Vec<&str> = shown["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(listed, [v1.as_str(), v2.as_str(), v3.as_str()], "{shown}");
    let output = whenever(&server, &["remove", "write-a"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a step not serving is refused: {output:?}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`whenever rollback write-a VERSION` serves one again"),
        "{output:?}"
    );
    // Named by the start of its id, as a timeline may show it cut short.
    assert_eq!(rollback(&server, "write-a", &v2[..7]).status.code(), Some(0));
    assert_eq!(step(&server, "write-a").await.1["version"], json!(v2));
    // The server's log tells each change made through the API, and by whom.
    for line in [
        format!(
            "whenever serve: rolled write-a back to version {v1} through the API, by an API client without a token"
        ),
        "whenever serve: removed write-a through the API (its versions are kept), by an API client without a token"
            .to_string(),
        format!(
            "whenever serve: rolled write-a back to version {v2} through the API, by an API client without a token"
        ),
    ] {
        server.until_logged(&line);
    }
    let (_, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(task["runs"][0]["version"], json!(v2));
    assert_eq!(task["data"], json!({"start": true, "b": "B"}), "v2 ran again");
}

/// A file that is invalid at start is refused as the watcher refuses it, and the service starts:
/// a restart after a crash is not held up by a half-edited manifest, and the version the store
/// serves keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_at_start_is_refused_and_the_service_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = dir.path().join("steps");
    std::fs::create_dir_all(&steps).expect("steps dir");
    copy_step(&steps, &WRITE_A);
    put(&steps, "junk.wasm", b"not a component");
    let db = dir.path().join("whenever.db");
    let folder = ["--steps".to_string(), steps.display().to_string()];

    let server = ServeProcess::start(&db, &folder);
    assert!(
        server
            .stderr()
            .contains("junk.wasm refused (no version of junk serves): "),
        "{}",
        server.stderr()
    );
    let (status, v1) = step(&server, "write-a").await;
    assert_eq!(status, 200, "{v1}");
    let v1 = v1["version"].as_str().expect("version").to_string();
    let (status, _) = step(&server, "junk").await;
    assert_eq!(status, 404);
    server.kill();

    // Started again on the same files: the version the store holds is not deployed again.
    let server = ServeProcess::start(&db, &folder);
    let (status, changes) = server.get("/v1/steps/write-a/changes").await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!(
        changes["changes"].as_array().map(Vec::len),
        Some(1),
        "one deploy, at the first start: {changes}"
    );
    server.kill();

    // Killed; meanwhile write-a's manifest is broken. The restart refuses it, and v1 serves.
    put(&steps, "write-a.toml", b"connectors = [");
    let server = ServeProcess::start(&db, &folder);
    assert_refused_while_serving(&server, &v1);
    let (status, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["runs"][0]["version"], json!(v1), "{task}");
    assert_eq!(task["data"]["a"], json!("A"), "{task}");

    // A manifest granting a connector the host lacks is refused naming the manifest's file, by
    // the watcher and at start alike.
    put(&steps, "write-a.toml", b"connectors = [\"slakCom\"]\n");
    let misspelt = format!(
        "write-a.wasm refused (write-a keeps serving version {v1}): step write-a: {}: invalid step \
         manifest: connectors: `slakCom` is no connector of this host",
        steps.join("write-a.toml").display()
    );
    server.until_logged(&misspelt);
    server.kill();
    let server = ServeProcess::start(&db, &folder);
    assert!(server.stderr().contains(&misspelt), "{}", server.stderr());
}

/// A step author's loop, as README.md gives it: the build's output linked into a watched folder,
/// or one component given alone (`--steps NAME.wasm`, even before its first build), is deployed
/// again at each build, beside the bundled RetailMax steps (`--retailmax`).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_build_output_and_a_single_component_are_watched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let build = dir.path().join("build");
    let steps = dir.path().join("steps");
    let alone = dir.path().join("alone");
    for folder in [&build, &steps, &alone] {
        std::fs::create_dir_all(folder).expect("folder");
    }
    let write_a = std::fs::read(WRITE_A.component).expect("component");
    put(&build, "write-a.wasm", &write_a);
    std::os::unix::fs::symlink(build.join("write-a.wasm"), steps.join("write-a.wasm")).expect("symlink");
    put(
        &steps,
        "write-a.toml",
        &std::fs::read(WRITE_A.manifest).expect("manifest"),
    );
    copy_step(&alone, &WAIT_FOR_A);
    let single = alone.join("wait-for-a.wasm");
    // A component not built yet is refused at start, and deployed once it is there.
    let not_yet = alone.join("write-b.wasm");
    let server = ServeProcess::start(
        &dir.path().join("whenever.db"),
        &[
            "--steps",
            &steps.display().to_string(),
            "--steps",
            &single.display().to_string(),
            "--steps",
            &not_yet.display().to_string(),
            "--retailmax",
        ],
    );
    // With `--retailmax`, the bundled steps serve beside the folders'.
    let (status, bundled) = step(&server, "payment-processing").await;
    assert_eq!(status, 200, "{bundled}");
    assert!(
        server
            .stderr()
            .contains("write-b.wasm refused (no version of write-b serves): "),
        "{}",
        server.stderr()
    );
    copy_step(&alone, &WRITE_B);
    until_step(
        &server,
        "write-b",
        "the component built after the start to serve",
        |status, _| status == 200,
    )
    .await;
    let (_, a1) = step(&server, "write-a").await;
    let a1 = a1["version"].as_str().expect("write-a serves").to_string();
    let (_, w1) = step(&server, "wait-for-a").await;
    assert_eq!(w1["deployed_by"], "whenever serve, at start", "{w1}");
    let w1 = w1["version"].as_str().expect("wait-for-a serves").to_string();

    // A build rewrites the file the link points to.
    put(&build, "write-a.wasm", &another_version(&write_a, b'2'));
    let served = until_step(&server, "write-a", "the rebuilt step to serve", |_, s| {
        s["version"].as_str().is_some_and(|v| v != a1)
    })
    .await;
    let watched = format!("the watched file {}", steps.join("write-a.wasm").display());
    assert_eq!(served["deployed_by"], json!(watched), "{served}");

    // The single component is watched as a folder's are.
    let wait_for_a = std::fs::read(WAIT_FOR_A.component).expect("component");
    put(&alone, "wait-for-a.wasm", &another_version(&wait_for_a, b'2'));
    let served = until_step(&server, "wait-for-a", "the new single component to serve", |_, s| {
        s["version"].as_str().is_some_and(|v| v != w1)
    })
    .await;
    let watched = format!("the watched file {}", single.display());
    assert_eq!(served["deployed_by"], json!(watched), "{served}");
    let (_, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(task["data"]["waited"], json!(true), "{task}");
}

/// A start re-evaluates the waiting and failed tasks when the steps changed since every one was
/// last re-evaluated (the store's mark), and only then: a host restarted with the same steps
/// reads none of them again. Seen through a task put into the store while no host ran, waiting
/// although a step's condition holds on it, which a pass would drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_steps_of_the_last_re_evaluation_reads_no_task_again() {
    use whenever::store::Store as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = steps_and_config(dir.path(), &[WRITE_B], "");
    let mut first = ServeProcess::start(&db, &args);
    first.until_logged("re-evaluated every waiting and failed task against the steps serving (0 read)");
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success(), "{}", first.stderr());

    let store = whenever::store::sqlite::SqliteStore::open(&db, Default::default()).expect("store");
    let mut planted = whenever::task::Task::new(json!({"start": true}));
    planted.status = whenever::task::TaskStatus::Waiting;
    store.create_task(&planted).await.expect("stored");
    drop(store);
    let path = format!("/v1/tasks/{}", planted.id);

    // write-b's condition holds on it: a pass would run write-b. The steps are those of the last
    // pass, so none reads it.
    let mut second = ServeProcess::start(&db, &args);
    second.until_logged("every waiting and failed task was re-evaluated against the steps serving: none is read again");
    let (_, task) = second.get(&path).await;
    assert_eq!(
        (&task["status"], &task["revision"]),
        (&json!("waiting"), &json!(1)),
        "{task}"
    );
    assert_eq!(task["data"], json!({"start": true}), "{task}");
    second.signal("TERM");
    assert!(
        second.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        second.stderr()
    );

    // Steps changed: the next start reads every task, and both steps run on the one put there.
    let args = steps_and_config(dir.path(), &[WRITE_A, WRITE_B], "");
    let third = ServeProcess::start(&db, &args);
    third.until_logged("re-evaluated every waiting and failed task against the steps serving (1 read)");
    third
        .until("the steps to run on the task", Duration::from_secs(20), || async {
            third.get(&path).await.1["data"] == json!({"start": true, "a": "A", "b": "B"})
        })
        .await;
}

/// An operator who lowers `[runtime.max_limits]` below what a deployed version's manifest asks
/// does not lose the step: the stored version serves on, its runs held to the new ceilings, and
/// the step's listing (`withheld.limits`) and the log say what was held back, instead of the
/// limits changing without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_stored_before_the_ceilings_were_lowered_is_held_to_them_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let folder = dir.path().join("steps");
    std::fs::create_dir_all(&folder).expect("steps dir");
    put(
        &folder,
        "write-a.wasm",
        &std::fs::read(WRITE_A.component).expect("component"),
    );
    put(
        &folder,
        "write-a.toml",
        b"connectors = []\n[limits]\ntimeout_ms = 400000\n",
    );
    let raised = dir.path().join("raised.toml");
    std::fs::write(&raised, "[runtime.max_limits]\ntimeout_ms = 600000\n").expect("config");
    let args = [
        "--steps".to_string(),
        folder.display().to_string(),
        "--config".into(),
        raised.display().to_string(),
    ];
    let mut first = ServeProcess::start(&db, &args);
    let (_, deployed) = step(&first, "write-a").await;
    assert_eq!(deployed["limits"]["timeout_ms"], json!(400000), "{deployed}");
    assert!(deployed.get("withheld").is_none(), "{deployed}");
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success(), "{}", first.stderr());

    // The default ceiling, 300000 ms, and no steps folder: the stored version serves.
    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").expect("config");
    let second = ServeProcess::start(&db, &["--config".to_string(), defaults.display().to_string()]);
    let (status, held) = step(&second, "write-a").await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["version"], deployed["version"], "{held}");
    assert_eq!(held["limits"]["timeout_ms"], json!(300000), "{held}");
    assert_eq!(
        held["withheld"],
        json!({"limits": ["timeout_ms = 400000, held to 300000"]}),
        "{held}"
    );
    second.until_logged(&format!(
        "step write-a version {}: the host's config withholds limits.timeout_ms = 400000, held to 300000",
        deployed["version"].as_str().unwrap_or_default()
    ));
    let (status, task) = second.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["data"]["a"], json!("A"), "{task}");
}

/// A serving version that does not load on this host (here its component damaged in the store;
/// in life, a version an older build took that this one refuses) is told at start, and the step
/// is removed with one command, as the log advises, though it never served here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_version_that_does_not_load_is_told_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = dir.path().join("steps");
    std::fs::create_dir_all(&steps).expect("steps dir");
    copy_step(&steps, &WRITE_A);
    let db = dir.path().join("whenever.db");
    let server = ServeProcess::start(&db, &["--steps".to_string(), steps.display().to_string()]);
    let (status, v1) = step(&server, "write-a").await;
    assert_eq!(status, 200, "{v1}");
    let v1 = v1["version"].as_str().expect("version").to_string();
    server.kill();
    let damaged = rusqlite::Connection::open(&db)
        .and_then(|c| c.execute("UPDATE step_versions SET component = x'00' WHERE name = 'write-a'", []))
        .expect("damaged");
    assert_eq!(damaged, 1);

    let server = ServeProcess::start(&db, &[] as &[&str]);
    server.until_logged(&format!(
        "step write-a's serving version {v1} does not load on this host"
    ));
    let (status, answer) = step(&server, "write-a").await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!(
                "step write-a does not serve on this host: its version {v1} is the one to serve"
            ))),
        "{answer}"
    );
    let output = whenever(&server, &["remove", "write-a"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let (status, versions) = server.get("/v1/steps/write-a/versions").await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(versions["versions"][0]["current"], false, "{versions}");
    let (_, answer) = step(&server, "write-a").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("step write-a is not serving (it was removed)")),
        "{answer}"
    );
}
