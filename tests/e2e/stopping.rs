//! Stopping the service gracefully (`Service::stop`, what `whenever serve` does on SIGTERM):
//! the drives under way finish within the grace, nothing new starts, waiting clients are
//! answered, and what was left running resumes at the next start.

use std::time::Duration;

use serde_json::{Value, json};
use whenever::service::{Service, Stopped};
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::*;

use crate::service::{Server, component, db_in, options, runs, start};

/// Deploys the looping test step with a deadline of `timeout_ms`: each of its runs is under way
/// that long, then fails.
pub(crate) async fn deploy_loop(service: &Service, timeout_ms: u64) {
    let (bytes, mut manifest) = component(&INFINITE_LOOP);
    manifest.limits.timeout_ms = timeout_ms;
    service
        .deploy_step("infinite-loop", bytes, manifest, None)
        .await
        .expect("the looping step deploys");
}

/// Creates a task whose run loops until its deadline, and waits until its drive is under way.
async fn looping_task(server: &Server) -> String {
    let before = server.service.drives_under_way();
    let (status, task) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{task}");
    for _ in 0..400 {
        if server.service.drives_under_way() > before {
            return task["id"].as_str().expect("id").to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the looping task's drive never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_the_drives_under_way_finish_and_starts_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let server = start(&db, &[], options()).await;
    deploy_loop(&server.service, 400).await;
    let first = looping_task(&server).await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");

    let service = server.service.clone();
    let stopping = tokio::spawn(async move { service.stop(Duration::from_secs(30)).await });
    while !server.service.is_stopping() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A balancer asking now is told to send no more work, though the store is fine.
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        (&ready["status"], &ready["serving"], &ready["store"]),
        (&json!("not_ready"), &json!("stopping"), &json!("ok"))
    );
    // A task that arrives while the service stops is stored, and its waiting client is
    // answered at once with it as stored: nothing will drive it before the next start.
    let (status, second) = tokio::time::timeout(
        Duration::from_secs(20),
        server.post("/v1/tasks?wait=60000", &json!({"loopForever": true})),
    )
    .await
    .expect("a waiting client is answered while the service stops");
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "running", "{second}");
    let second = second["id"].as_str().expect("id").to_string();

    let stopped = stopping.await.expect("the stop ends");
    assert_eq!(
        stopped,
        Stopped {
            under_way: 1,
            interrupted: 0
        }
    );
    assert_eq!(server.service.drives_under_way(), 0);
    let first_now = server.service.task(&first).await.expect("stored");
    assert_eq!(
        first_now.task.status,
        TaskStatus::Failed,
        "the run under way finished within the grace (at its deadline)"
    );
    let second_now = server.service.task(&second).await.expect("stored");
    assert_eq!(second_now.task.status, TaskStatus::Running, "never driven");
    assert_eq!(second_now.task.runs.len(), 1);
    assert!(second_now.task.runs[0].outcome.is_none(), "its first run was never run");
    assert_eq!(
        server.service.stop(Duration::from_secs(30)).await,
        Stopped {
            under_way: 0,
            interrupted: 0
        },
        "a second stop finds nothing under way"
    );
    server.stop().await;

    // The next start drives what was left running; the finished task stays as it was.
    let server = start(&db, &[], options()).await;
    let resumed = server.until(&second, |t| t["status"] != "running").await;
    assert_eq!(resumed["status"], "failed", "{resumed}");
    assert_eq!(runs(&resumed).len(), 1, "the recorded run ran, no other");
    let (_, first_after) = server.get(&format!("/v1/tasks/{first}")).await;
    assert_eq!(first_after["status"], "failed");
    assert_eq!(runs(&first_after).len(), 1, "not run again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drive_still_under_way_when_the_grace_runs_out_is_abandoned_and_resumes_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let server = start(&db, &[], options()).await;
    deploy_loop(&server.service, 1_500).await;
    let id = looping_task(&server).await;
    let waiting = {
        let service = server.service.clone();
        let id = id.clone();
        tokio::spawn(async move { service.wait_settled(&id, Duration::from_secs(60)).await })
    };

    let stopped = server.service.stop(Duration::from_millis(100)).await;
    assert_eq!(
        stopped,
        Stopped {
            under_way: 1,
            interrupted: 1
        }
    );
    assert_eq!(server.service.drives_under_way(), 0, "the abandoned drive is over");
    let answered = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiter is answered once the drive is abandoned")
        .expect("joined")
        .expect("the task");
    assert_eq!(answered.task.status, TaskStatus::Running);
    let stored = server.service.task(&id).await.expect("stored");
    assert_eq!(
        stored.task.status,
        TaskStatus::Running,
        "left running, as after a crash"
    );
    assert!(stored.task.runs[0].outcome.is_none(), "its run did not finish");
    let revision = stored.revision;
    // Nothing of the stopped service touches the task any more (its run's deadline passes).
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        server.service.task(&id).await.expect("stored").revision,
        revision,
        "the abandoned drive saved nothing"
    );
    server.stop().await;

    let server = start(&db, &[], options()).await;
    let resumed = server.until(&id, |t| t["status"] != "running").await;
    assert_eq!(resumed["status"], "failed", "{resumed}");
    let runs = runs(&resumed);
    assert_eq!(runs.len(), 1, "the interrupted run was re-run in place");
    assert_eq!(runs[0]["outcome"]["error"]["kind"], "deadline", "{resumed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_drives_under_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    deploy_loop(&server.service, 1_000).await;
    let gauge = |metrics: &Value| {
        metrics
            .as_str()
            .and_then(|text| text.lines().find_map(|l| l.strip_prefix("whenever_drives_under_way ")))
            .map(str::to_string)
    };
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(gauge(&metrics).as_deref(), Some("0"), "{metrics}");
    looping_task(&server).await;
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(gauge(&metrics).as_deref(), Some("1"), "{metrics}");
    server.service.stop(Duration::from_millis(10)).await;
    server.stop().await;
}
