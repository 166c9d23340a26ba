//! Deleting tasks with their history from a running `whenever serve`: on request with
//! `whenever delete ID`, and by itself past the `[retention]` limits of its config.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use support::{ServeProcess, steps_and_config, whenever_binary};
use whenever_step_artifacts::testing::{COMPLETES, INFINITE_LOOP, WRITE_A};

fn delete(server: &ServeProcess, id: &str, json: bool) -> Output {
    let mut command = Command::new(whenever_binary());
    command.args(["delete", id, "--server", &server.base]);
    if json {
        command.arg("--json");
    }
    command
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever delete runs")
}

/// Creates a task and waits for it to settle.
async fn settled(server: &ServeProcess, data: Value) -> String {
    let (status, task) = server.post("/v1/tasks?wait=20000", &data).await;
    assert_eq!(status, 201, "{task}");
    assert_ne!(task["status"], "running", "{task}");
    task["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whenever_delete_removes_a_settled_task_and_refuses_a_running_or_unknown_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = steps_and_config(dir.path(), &[COMPLETES, INFINITE_LOOP], "");
    let server = ServeProcess::start(&dir.path().join("whenever.db"), &args);
    let done = settled(&server, json!({"finish": true})).await;

    let deleted = delete(&server, &done, false);
    assert_eq!(deleted.status.code(), Some(0), "{deleted:?}");
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        format!("task {done} deleted with its history")
    );
    let (status, _) = server.get(&format!("/v1/tasks/{done}")).await;
    assert_eq!(status, 404);

    let again = delete(&server, &done, true);
    assert_eq!(again.status.code(), Some(2), "refused by the server: {again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains(&format!("task {done} not found")), "{stderr}");

    let (status, looping) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{looping}");
    let looping = looping["id"].as_str().expect("id");
    let refused = delete(&server, looping, false);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is running"), "{stderr}");

    let other = settled(&server, json!({"finish": true, "n": 2})).await;
    let deleted = delete(&server, &other, true);
    assert_eq!(deleted.status.code(), Some(0), "{deleted:?}");
    let answer: Value = serde_json::from_slice(&deleted.stdout).expect("JSON");
    assert_eq!(answer, json!({"deleted": other}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_settled_tasks_past_their_limit_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Completed tasks kept for about a second; waiting ones (no limit) forever.
    let args = steps_and_config(
        dir.path(),
        &[COMPLETES, WRITE_A],
        "[retention]\ncompleted_days = 0.00001\nsweep_ms = 100\n",
    );
    let server = ServeProcess::start(&dir.path().join("whenever.db"), &args);
    let waiting = settled(&server, json!({"start": true})).await;
    let first = settled(&server, json!({"finish": true, "n": 1})).await;
    // A long poll on a completed task (until it moves past the revision held) is answered 404
    // when the sweep deletes it, not when its wait, a minute, runs out.
    let (status, held) = server.get(&format!("/v1/tasks/{first}")).await;
    assert_eq!(status, 200, "read before its second of retention is up: {held}");
    let poll = server
        .http
        .get(format!("{}/v1/tasks/{first}?wait=60000", server.base))
        .header("if-none-match", format!("\"{}\"", held["revision"]))
        .send();
    let answered = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("answered once swept")
        .expect("sent");
    assert_eq!(answered.status().as_u16(), 404);
    let done: Vec<String> = vec![first, settled(&server, json!({"finish": true, "n": 2})).await];
    for id in &done {
        server
            .until(
                "retention to delete a completed task",
                Duration::from_secs(30),
                || async { server.get(&format!("/v1/tasks/{id}")).await.0 == 404 },
            )
            .await;
    }
    let (status, task) = server.get(&format!("/v1/tasks/{waiting}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "waiting", "a waiting task has no limit: {task}");
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().expect("text");
    assert!(
        text.contains("whenever_tasks_deleted_total{reason=\"retention\"} 2"),
        "{text}"
    );
    assert!(server.stderr().contains("retention: deleted"), "{}", server.stderr());
}
