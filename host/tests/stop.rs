//! `whenever serve` stops gracefully on SIGTERM (what supervisors send) and Ctrl-C (SIGINT): the
//! drives under way finish within `[server] shutdown_grace_ms`, the process exits 0, and a second
//! signal stops it at once, leaving its tasks to resume at the next start. With
//! `[server] drain_ms` it first serves on that long while `/readyz` answers 503.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ServeProcess, steps_and_config};
use whenever_step_artifacts::testing::INFINITE_LOOP;

/// The `serve` arguments for a steps folder with the looping test step, whose runs loop until
/// their deadline of `timeout_ms` and then fail, and a config with the given grace.
fn setup(dir: &Path, timeout_ms: u64, grace_ms: u64) -> Vec<String> {
    setup_with(dir, timeout_ms, &format!("[server]\nshutdown_grace_ms = {grace_ms}\n"))
}

/// Like [`setup`], with this config file.
fn setup_with(dir: &Path, timeout_ms: u64, config: &str) -> Vec<String> {
    let args = steps_and_config(dir, &[INFINITE_LOOP], config);
    std::fs::write(
        dir.join("steps").join("infinite-loop.toml"),
        format!("connectors = []\n[limits]\ntimeout_ms = {timeout_ms}\n"),
    )
    .expect("manifest");
    args
}

/// Creates a looping task and waits until the server drives it.
async fn looping_task(server: &ServeProcess) -> String {
    let (status, task) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{task}");
    server
        .until("the drive to start", Duration::from_secs(20), || async {
            server.drives_under_way().await == 1
        })
        .await;
    task["id"].as_str().expect("id").to_string()
}

/// A task queued for a worker when the stop began (more tasks than `max_concurrent_tasks`) is
/// counted among those left running, as it is: it resumes at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_queued_for_a_worker_are_counted_as_left_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let config = "[server]\nshutdown_grace_ms = 60000\nmax_concurrent_tasks = 1\n";
    let args = setup_with(dir.path(), 1_500, config);
    let mut server = ServeProcess::start(&db, &args);
    looping_task(&server).await;
    let (status, queued) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{queued}");

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}; log:\n{}", server.stderr());
    server.until_logged(
        "stopped (drives under way: 1, finished: 1; tasks left running: 1; they resume at the next start)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_run_under_way_finish_and_the_server_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = setup(dir.path(), 1_500, 60_000);
    let mut server = ServeProcess::start(&db, &args);
    let id = looping_task(&server).await;

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}; log:\n{}", server.stderr());
    server.until_logged("SIGTERM: stopping (drives under way: 1; they get up to 60000 ms to finish");
    server.until_logged(
        "stopped (drives under way: 1, finished: 1; tasks left running: 0; they resume at the next start)",
    );

    // The run finished before the exit (at its deadline): the next start has nothing to resume.
    let server = ServeProcess::start(&db, &args);
    let (status, task) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "failed", "{task}");
    let runs = task["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{task}");
    assert_eq!(runs[0]["outcome"]["error"]["kind"], "deadline", "{task}");
    assert_eq!(server.drives_under_way().await, 0, "nothing resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_and_the_task_resumes_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = setup(dir.path(), 10_000, 60_000);
    let mut server = ServeProcess::start(&db, &args);
    let id = looping_task(&server).await;
    server.until_logged("listening on");
    // The start-up line says the database is new (a mistyped path would make one), and the log
    // which connectors are simulators (no [connectors] in this config: all of them).
    let started = server.stderr();
    assert!(started.contains("(new database "), "{started}");
    assert!(
        started.contains("whenever serve: simulated connectors (nothing they are asked reaches a real service")
            && started.contains("stripe"),
        "{started}"
    );

    server.signal("INT");
    server.until_logged("SIGINT: stopping");
    // Stopping, the server soon takes no new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = reqwest::Client::new()
            .get(format!("{}/healthz", server.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if answer.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "a stopping server still answers: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}; log:\n{}", server.stderr());
    server.until_logged("SIGTERM: stopped at once (tasks left running: 1; they resume at the next start)");

    let server = ServeProcess::start(&db, &args);
    server.until_logged("listening on");
    let restarted = server.stderr();
    assert!(
        restarted.contains("(database ") && !restarted.contains("new database"),
        "{restarted}"
    );
    let (status, task) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "running", "{task}");
    server
        .until("the task's drive to resume", Duration::from_secs(20), || async {
            server.drives_under_way().await == 1
        })
        .await;
    let runs: Vec<Value> = task["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{task}");
    assert!(runs[0]["outcome"].is_null(), "the interrupted run re-runs: {task}");

    // The re-run meets its deadline. Its record says when it was run again, and its duration is
    // that attempt's, not the time since the first began (the stop and restart included).
    let (status, settled) = server.get(&format!("/v1/tasks/{id}?wait=30000")).await;
    assert_eq!((status, settled["status"].as_str()), (200, Some("failed")), "{settled}");
    let run = &settled["runs"][0];
    assert_eq!(run["outcome"]["error"]["kind"], "deadline", "{run}");
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{field} ({e}): {run}"))
    };
    let (started, restarted, ended) = (at("started_at"), at("restarted_at"), at("ended_at"));
    assert!(started < restarted && restarted < ended, "{run}");
    let attempt_ms = (ended - restarted).num_milliseconds() as f64;
    let duration_ms = run["duration_ms"].as_f64().unwrap_or_default();
    assert!(duration_ms >= 10_000.0 && duration_ms <= attempt_ms + 1.0, "{run}");
    // `whenever task` says so.
    let shown = std::process::Command::new(support::whenever_binary())
        .args(["task", &id, "--server", &server.base])
        .output()
        .expect("whenever task runs");
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        stdout.contains("re-run from its start at ") && stdout.contains("the host stopped under it"),
        "{stdout}"
    );
}

/// With `[server] drain_ms`, a SIGTERM first takes the host out of its balancers' rotation: for
/// the drain `/readyz` answers 503 (`serving: draining`) while requests are still taken and
/// tasks still driven; then the host stops as without it, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_serves_on_while_readiness_refuses_then_the_server_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = setup_with(
        dir.path(),
        300,
        "[server]\ndrain_ms = 3000\nshutdown_grace_ms = 60000\n",
    );
    let mut server = ServeProcess::start(&db, &args);
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");

    let signalled = Instant::now();
    server.signal("TERM");
    server.until_logged("SIGTERM: draining for 3000 ms");
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        (&ready["status"], &ready["serving"], &ready["store"]),
        (&json!("not_ready"), &json!("draining"), &json!("ok"))
    );
    // Still taking work, and driving it: the looping run reaches its deadline and fails.
    let (status, task) = server.post("/v1/tasks?wait=10000", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["status"], "failed", "driven during the drain: {task}");
    assert!(!server.stderr().contains("SIGTERM: stopping"), "{}", server.stderr());

    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}; log:\n{}", server.stderr());
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "the drain lasted its 3 s"
    );
    server.until_logged("not ready: draining ahead of a stop");
    server.until_logged("SIGTERM: stopping");
    let log = server.stderr();
    let draining = log.find("draining for 3000 ms").expect("logged");
    let stopping = log.find("SIGTERM: stopping").expect("then stopped");
    assert!(draining < stopping, "{log}");
}

/// A second signal during a drain ends it: the server stops at once as it would have after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = setup_with(dir.path(), 300, "[server]\ndrain_ms = 600000\n");
    let mut server = ServeProcess::start(&db, &args);
    server.signal("TERM");
    server.until_logged("SIGTERM: draining for 600000 ms");
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}; log:\n{}", server.stderr());
    server.until_logged("SIGINT: draining stopped");
    server.until_logged("SIGTERM: stopping");
}
