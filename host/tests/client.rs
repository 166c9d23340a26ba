//! The client commands against a running `whenever serve` that requires a token: `deploy`,
//! `steps`, `tasks`, `task` (also `--follow`), `patch`, `retry` and `create` (`delete` and
//! `rollback` have tests of their own), with output for people and `--json`, the token taken from
//! `WHENEVER_TOKEN`, a change made only at the revision read (`--if-revision`), and the exit
//! codes: 2 when the server refuses the request or the input is bad, 1 when it cannot be reached.

mod support;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::{ServeProcess, refused, steps_and_config, whenever_binary};
use whenever_step_artifacts::testing::{COMPLETES, RETURNS_ERROR, WAIT_FOR_A};

const TOKEN: &str = "client-test-token";

/// Runs `whenever ARGS --server BASE` with `token` in `WHENEVER_TOKEN` (or none), `stdin` piped in.
fn whenever(server: &ServeProcess, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(whenever_binary());
    command
        .args(args)
        .args(["--server", &server.base])
        .env_remove("WHENEVER_TOKEN")
        .env_remove("WHENEVER_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("WHENEVER_TOKEN", token);
    }
    let mut child = command.spawn().expect("whenever runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(text.as_bytes())
            .expect("stdin written");
    }
    child.wait_with_output().expect("whenever ends")
}

fn ok(output: &Output) -> String {
    exited(output, 0)
}

/// The stdout of a command that exited with `code` (after a `--wait`, how the task stands: 0
/// completed, 3 waiting, 4 failed).
fn exited(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_deploy_list_show_patch_retry_and_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = steps_and_config(dir.path(), &[COMPLETES, RETURNS_ERROR], "");
    let server = ServeProcess::start_with_token(&dir.path().join("whenever.db"), &args, Some(TOKEN));
    let token = Some(TOKEN);

    // The token comes from the environment; without it (or with another) the server refuses.
    // The refusal says where the client's token comes from.
    let missing = whenever(&server, None, &["steps"], None);
    refused(&missing, 2, "401");
    refused(&missing, 2, "set WHENEVER_TOKEN");
    let wrong = whenever(&server, Some("wrong"), &["steps"], None);
    refused(&wrong, 2, "not valid");
    refused(&wrong, 2, "came from WHENEVER_TOKEN");
    let listed = ok(&whenever(&server, token, &["steps"], None));
    assert!(listed.lines().any(|l| l.starts_with("completes ")), "{listed}");

    // deploy: a component and its manifest; a file that is not a component is refused.
    let deploy = [
        "deploy",
        WAIT_FOR_A.component,
        "--name",
        "wait-for-a",
        "--manifest",
        WAIT_FOR_A.manifest,
    ];
    let deployed = ok(&whenever(&server, token, &deploy, None));
    let version = deployed
        .trim()
        .strip_prefix("deployed wait-for-a version ")
        .unwrap_or_else(|| panic!("{deployed}"))
        .to_string();
    server.until_logged(&format!(
        "whenever serve: deployed wait-for-a version {version} through the API, by WHENEVER_TOKEN"
    ));
    // The same component and manifest again: the server answers 200, and the command says that
    // nothing changed rather than that it deployed.
    let again = ok(&whenever(&server, token, &deploy, None));
    assert_eq!(
        again.trim(),
        format!("wait-for-a version {version} serves already; nothing changed")
    );
    let steps = json_of(&whenever(&server, token, &["steps", "--json"], None));
    let step = steps["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "wait-for-a")
        .unwrap_or_else(|| panic!("{steps}"));
    assert_eq!(step["version"], json!(version));
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("junk");
    refused(
        &whenever(&server, token, &["deploy", &junk.display().to_string()], None),
        2,
        "not WebAssembly",
    );
    refused(
        &whenever(&server, token, &["deploy", "/no/such/file.wasm"], None),
        2,
        "cannot read /no/such/file.wasm",
    );
    // A name that could be no step's (and no URL segment) is refused by name, not as a route.
    refused(
        &whenever(&server, token, &["deploy", WAIT_FOR_A.component, "--name", "a/b"], None),
        2,
        "invalid step name \"a/b\": use letters, digits, '-' and '_'",
    );

    // tasks and task: a task waiting for `a`.
    let (status, waiting) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{waiting}");
    let id = waiting["id"].as_str().expect("id").to_string();
    let listed = ok(&whenever(&server, token, &["tasks", "--status", "waiting"], None));
    assert!(
        listed.lines().any(|l| l.starts_with(&id) && l.contains("waiting")),
        "{listed}"
    );
    let page = json_of(&whenever(
        &server,
        token,
        &["tasks", "--status", "completed", "--json"],
        None,
    ));
    assert_eq!(page["tasks"], json!([]), "{page}");
    let shown = ok(&whenever(&server, token, &["task", &id], None));
    assert!(shown.starts_with(&format!("{id}  waiting")), "{shown}");
    assert!(shown.contains("runs     0"), "{shown}");
    // While it waits, what it waits on: wait-for-a's condition against its data.
    assert!(
        shown.contains("waiting on (each step's condition against the data)")
            && shown
                .lines()
                .any(|l| l.trim_start().starts_with("wait-for-a") && l.ends_with("a: missing")),
        "{shown}"
    );
    let revision = waiting["revision"].as_u64().expect("revision");
    assert!(shown.contains(&format!("\nrevision {revision}\n")), "{shown}");
    refused(&whenever(&server, token, &["task", "t_nope"], None), 2, "not found");

    // patch from stdin, naming the revision read: wait-for-a runs once `a` is there. Naming an
    // older revision, the patch is refused and changes nothing. Without a file argument a piped
    // stdin is read, as with `-`.
    let older = (revision - 1).to_string();
    refused(
        &whenever(
            &server,
            token,
            &["patch", &id, "-", "--if-revision", &older],
            Some(r#"{"a": "A"}"#),
        ),
        2,
        "412 Precondition Failed",
    );
    // Waited for, the exit code says how the task stands: waiting (3).
    let patched = exited(
        &whenever(
            &server,
            token,
            &["patch", &id, "--wait", "20000", "--if-revision", &revision.to_string()],
            Some(r#"{"a": "A", "start": null}"#),
        ),
        3,
    );
    assert!(patched.contains("runs     2"), "{patched}");
    // The patch is in the history, with what it changed and whose token made it.
    assert!(
        patched.lines().any(|l| l.contains("#0   $patch")
            && l.contains("data patched through the API (2 changes), by the token WHENEVER_TOKEN")),
        "{patched}"
    );
    assert!(
        patched
            .lines()
            .any(|l| l.contains("wait-for-a") && l.contains(&version) && l.trim_end().ends_with("ok")),
        "{patched}"
    );
    let task = json_of(&whenever(&server, token, &["task", &id, "--json"], None));
    assert_eq!(task["data"], json!({"a": "A", "waited": true}));
    refused(
        &whenever(&server, token, &["patch", &id, "-"], Some("{not json")),
        2,
        "the merge patch on stdin is not valid JSON",
    );
    // An integer beyond 64 bits is refused, as the server refuses it, not sent on rounded.
    refused(
        &whenever(
            &server,
            token,
            &["patch", &id, "-"],
            Some(r#"{"big": 18446744073709551616}"#),
        ),
        2,
        "the merge patch on stdin: the integer 18446744073709551616 at line 1 column 9 is beyond 64 bits",
    );
    let task = json_of(&whenever(&server, token, &["task", &id, "--json"], None));
    assert_eq!(task["data"], json!({"a": "A", "waited": true}), "unchanged");

    // retry: a failed step runs again (and fails again).
    let (status, failed) = server.post("/v1/tasks?wait=20000", &json!({"failPlease": true})).await;
    assert_eq!(status, 201, "{failed}");
    assert_eq!(failed["status"], "failed", "{failed}");
    let failed_id = failed["id"].as_str().expect("id").to_string();
    let retried = exited(
        &whenever(
            &server,
            token,
            &["retry", &failed_id, "--wait", "20000", "--json"],
            None,
        ),
        4,
    );
    let retried: Value = serde_json::from_str(&retried).expect("JSON");
    assert_eq!(retried["status"], "failed", "{retried}");
    let runs = retried["runs"].as_array().cloned().unwrap_or_default();
    let steps: Vec<&str> = runs.iter().filter_map(|r| r["step"].as_str()).collect();
    assert_eq!(steps, ["returns-error", "$retry", "returns-error"], "{retried}");
    assert_eq!(
        runs[1]["logs"][0]["message"], "retry of returns-error asked for through the API, by the token WHENEVER_TOKEN",
        "{retried}"
    );
    refused(
        &whenever(&server, token, &["retry", &id, "--step", "completes"], None),
        2,
        "never ran",
    );

    // create: from a file, with a key; run again, it shows the first task instead of making one.
    let order = dir.path().join("order.json");
    std::fs::write(&order, r#"{"finish": true}"#).expect("task file");
    let order = order.display().to_string();
    let created = ok(&whenever(
        &server,
        token,
        &["create", &order, "--key", "order-7", "--wait", "20000"],
        None,
    ));
    let created_id = created.split_whitespace().next().unwrap_or_default().to_string();
    assert!(created.starts_with(&format!("{created_id}  completed")), "{created}");
    let again = ok(&whenever(&server, token, &["create", &order, "--key", "order-7"], None));
    assert!(
        again.starts_with("an earlier request with this key created the task"),
        "{again}"
    );
    assert!(again.contains(&format!("{created_id}  completed")), "{again}");
    // From stdin (piped, no file argument), without a key: a task of its own; as JSON.
    let other = json_of(&whenever(
        &server,
        token,
        &["create", "--json"],
        Some(r#"{"finish": true}"#),
    ));
    assert_ne!(other["id"], json!(created_id), "{other}");
    assert_eq!(other["status"], "running", "{other}");
    refused(
        &whenever(&server, token, &["create"], Some(" \n")),
        2,
        "the task data is empty (stdin held nothing)",
    );
    refused(
        &whenever(&server, token, &["create", "-"], Some("[1, 2")),
        2,
        "the task data on stdin is not valid JSON",
    );
    let wide = dir.path().join("wide.json");
    std::fs::write(&wide, "{\n  \"n\": 123456789012345678901234\n}").expect("task file");
    refused(
        &whenever(&server, token, &["create", &wide.display().to_string()], None),
        2,
        "wide.json: the integer 123456789012345678901234 at line 2 column 8 is beyond 64 bits",
    );
    refused(
        &whenever(&server, token, &["create", "-"], Some("[1, 2]")),
        2,
        "must be a JSON object",
    );
}

/// A body over the server's limit is answered 413, and the server closes the connection while
/// the client still sends: the command says so (exit 2) every time. It used to die of SIGPIPE
/// at the closed socket, silently, about every other time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_servers_limit_is_reported_every_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = steps_and_config(dir.path(), &[COMPLETES], "[server]\nmax_body_bytes = 65536\n");
    let server = ServeProcess::start_with_token(&dir.path().join("whenever.db"), &args, Some(TOKEN));
    let big = dir.path().join("big.json");
    let blob = "x".repeat(8 << 20);
    std::fs::write(&big, json!({"blob": blob}).to_string()).expect("written");
    let big = big.display().to_string();
    for _ in 0..5 {
        let output = whenever(&server, Some(TOKEN), &["create", &big], None);
        refused(&output, 2, "413");
    }
}

/// `--follow` goes on through a restart of the server (a rolling upgrade): it asks again until
/// the server answers, and prints the task as it settles after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_follow_asks_again_while_the_server_restarts() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = steps_and_config(dir.path(), &[COMPLETES, WAIT_FOR_A], "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = ServeProcess::start_listening(&listen, &db, &args, Some(TOKEN), &[]);
    let (status, waiting) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{waiting}");
    let id = waiting["id"].as_str().expect("id").to_string();
    let mut follower = tokio::process::Command::new(whenever_binary())
        .args(["task", &id, "--follow", "--json", "--server", &server.base])
        .env("WHENEVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whenever task --follow runs");
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().expect("stdout piped")).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("a line within 30 s")
            .expect("stdout read")
            .expect("a line before the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    assert_eq!(next().await["status"], "waiting");

    server.signal("TERM");
    assert!(server.wait_exit(std::time::Duration::from_secs(20)).success());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let server = ServeProcess::start_listening(&listen, &db, &args, Some(TOKEN), &[]);
    let path = format!("/v1/tasks/{id}");
    let (status, _) = server
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"a": "A", "finish": true}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(next().await["status"], "completed");
    let exited = tokio::time::timeout(std::time::Duration::from_secs(20), follower.wait())
        .await
        .expect("it stops once the task completed")
        .expect("exit status");
    assert_eq!(exited.code(), Some(0));
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut follower.stderr.take().expect("stderr"), &mut stderr)
        .await
        .expect("stderr read");
    assert!(stderr.contains("asking again every second for up to 30 s"), "{stderr}");
}

#[test]
fn a_server_that_cannot_be_reached_exits_1() {
    let output = Command::new(whenever_binary())
        .args(["steps", "--server", "http://127.0.0.1:9"])
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the server at http://127.0.0.1:9"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_follow_prints_the_task_at_each_settled_revision_until_it_completes() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let args = steps_and_config(dir.path(), &[COMPLETES, WAIT_FOR_A], "");
    let server = ServeProcess::start_with_token(&dir.path().join("whenever.db"), &args, Some(TOKEN));
    let (status, waiting) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{waiting}");
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let id = waiting["id"].as_str().expect("id").to_string();

    let mut follower = tokio::process::Command::new(whenever_binary())
        .args(["task", &id, "--follow", "--json", "--server", &server.base])
        .env("WHENEVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whenever task --follow runs");
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().expect("stdout piped")).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("a line within 20 s")
            .expect("stdout read")
            .expect("a line before the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };

    // The task as it is, then as each patch left it once it settled again.
    let first = next().await;
    assert_eq!(first["revision"], waiting["revision"], "{first}");
    let path = format!("/v1/tasks/{id}");
    let patch = |body: Value| server.call(reqwest::Method::PATCH, &path, Some(body.to_string().into_bytes()));
    let (status, _) = patch(json!({"a": "A"})).await;
    assert_eq!(status, 200);
    let second = next().await;
    assert_eq!(second["status"], "waiting", "{second}");
    assert_eq!(second["data"]["waited"], true, "{second}");
    assert!(second["revision"].as_u64() > first["revision"].as_u64(), "{second}");
    let (status, _) = patch(json!({"finish": true})).await;
    assert_eq!(status, 200);
    let last = next().await;
    assert_eq!(last["status"], "completed", "{last}");
    assert!(last["revision"].as_u64() > second["revision"].as_u64(), "{last}");

    // Completed: it stops, exit code 0, nothing more printed.
    let exited = tokio::time::timeout(std::time::Duration::from_secs(20), follower.wait())
        .await
        .expect("it stops once the task completed")
        .expect("exit status");
    assert_eq!(exited.code(), Some(0));
    assert_eq!(lines.next_line().await.expect("read"), None);
}

/// A stand-in for a server whose store is full: it answers `POST /v1/tasks` with 503 and
/// `Retry-After: retry_after` the first `refusals` times, then 201; returns its base URL and the
/// requests it got (idempotency key, body).
async fn refusing_server(
    refusals: usize,
    retry_after: u64,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse as _;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/tasks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let count = {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push((key, body));
                    log.len()
                };
                if count <= refusals {
                    let error = json!({"error": {"code": "unavailable", "message": "storage unavailable: database or disk is full"}});
                    let retry = [("retry-after", retry_after.to_string())];
                    return (StatusCode::SERVICE_UNAVAILABLE, retry, axum::Json(error)).into_response();
                }
                let task = json!({"id": "t_accepted", "status": "running", "data": {}, "runs": []});
                (StatusCode::CREATED, axum::Json(task)).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// A 503 (the server's store cannot take writes, and nothing was done) is sent again after its
/// `Retry-After`, the same request with the same idempotency key; one whose `Retry-After` would
/// outlast the client's patience (30 s) ends the command at once, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sends_a_request_refused_with_503_again_after_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order.json");
    std::fs::write(&file, json!({"order": {"id": "A-1"}}).to_string()).expect("write");
    let file = file.display().to_string();

    let (base, seen) = refusing_server(2, 1).await;
    let output = tokio::process::Command::new(whenever_binary())
        .args(["create", &file, "--key", "order-A-1", "--json", "--server", &base])
        .env_remove("WHENEVER_TOKEN")
        .output()
        .await
        .expect("whenever create runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("trying again in 1 s").count(), 2, "{stderr}");
    assert!(stderr.contains("database or disk is full"), "{stderr}");
    let created: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(created["id"], "t_accepted");
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 3, "two refusals, then the request went through");
    assert!(
        seen.iter().all(|request| request == &seen[0]),
        "the same request each time: {seen:?}"
    );
    assert_eq!(seen[0].0, "order-A-1");

    let (base, seen) = refusing_server(usize::MAX, 60).await;
    let output = tokio::process::Command::new(whenever_binary())
        .args(["create", &file, "--server", &base])
        .env_remove("WHENEVER_TOKEN")
        .output()
        .await
        .expect("whenever create runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("503 Service Unavailable") && stderr.contains("disk is full"),
        "{stderr}"
    );
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        1,
        "not sent again"
    );
}

/// `create` and `patch` without a file read a piped stdin, but on a terminal they would sit
/// waiting for input nobody meant to type: they say what is missing and exit 2 at once.
#[cfg(target_os = "linux")]
#[test]
fn without_a_file_on_a_terminal_create_and_patch_say_what_is_missing() {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    use std::time::{Duration, Instant};

    for (args, missing) in [
        (
            &["create"][..],
            "give the task data: a file, or `-` (or a pipe) for stdin",
        ),
        (
            &["patch", "t_1"][..],
            "give the merge patch: a file, or `-` (or a pipe) for stdin",
        ),
    ] {
        let (mut leader, mut follower) = (-1, -1);
        // SAFETY: openpty writes the two descriptors it opens into the two integers given; the
        // name, terminal settings and window size may be null.
        let opened = unsafe {
            libc::openpty(
                &mut leader,
                &mut follower,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
        let (_leader, follower) = unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
        let mut child = Command::new(whenever_binary())
            .args(args)
            .args(["--server", "http://127.0.0.1:9"])
            .stdin(Stdio::from(follower))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("whenever runs");
        // Reading the terminal would wait for ever: give it 30 s, then fail rather than hang.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("status").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("whenever {args:?} waited on the terminal");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("whenever ends");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(missing), "{stderr}");
    }
}
