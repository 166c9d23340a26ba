//! Misbehaving steps: each is stopped with an error naming what happened, changes nothing, and
//! the host and other tasks go on.

use serde_json::{Value, json};
use whenever::Host;
use whenever::runtime::{LoadError, RunErrorKind};
use whenever::task::{Task, TaskStatus};
use whenever_step_artifacts::testing::*;
use whenever_tests::{assert_status, deploy, error_of, host_with, run_task, runs_of};

/// Runs `bad` and a normal task at the same time; checks the normal one is unaffected.
async fn run_beside_a_normal_task(host: &Host, bad: Value) -> Task {
    let (bad_task, good_task) = tokio::join!(run_task(host, bad), run_task(host, json!({"start": true})));
    assert_status(&good_task, TaskStatus::Waiting);
    assert_eq!(good_task.data["a"], json!("A"), "the normal task is unaffected");
    bad_task
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    let host = host_with(&[INFINITE_LOOP, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"loopForever": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "infinite-loop");
    assert_eq!(error.kind, RunErrorKind::Deadline);
    assert!(error.message.contains("2000 ms"), "{}", error.message);
    assert!(task.message.as_deref().unwrap_or("").contains("infinite-loop"));
    assert_eq!(task.data, json!({"loopForever": true}), "nothing applied");
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let host = host_with(&[MEMORY_BOMB, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"eatMemory": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "memory-bomb");
    assert_eq!(error.kind, RunErrorKind::Memory);
    assert!(error.message.contains("64 MiB"), "{}", error.message);
    // A fresh instance of the same step works afterwards: the host is fine.
    let again = run_task(&host, json!({"start": true})).await;
    assert_eq!(again.data["a"], json!("A"));
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let host = host_with(&[PANICS, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"panic": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "panics");
    assert_eq!(error.kind, RunErrorKind::Panic);
    assert!(error.message.contains("this step always panics"), "{}", error.message);
}

#[tokio::test]
async fn invalid_json_output_is_refused() {
    let host = host_with(&[INVALID_JSON, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"invalidJson": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "invalid-json");
    assert_eq!(error.kind, RunErrorKind::InvalidOutput);
    assert!(error.message.contains("invalid JSON"), "{}", error.message);
    assert_eq!(task.data, json!({"invalidJson": true}));
}

#[tokio::test]
async fn a_step_error_changes_nothing() {
    let host = host_with(&[RETURNS_ERROR, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"failPlease": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "returns-error");
    assert_eq!(error.kind, RunErrorKind::StepError);
    assert_eq!(error.message, "the order cannot be processed: no reason at all");
    assert!(task.data.get("neverApplied").is_none());
}

#[tokio::test]
async fn an_ungranted_connector_returns_not_granted_to_the_step() {
    let host = host_with(&[UNGRANTED_CONNECTOR, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"tryStripe": true})).await;
    // The step handled the error like any connector error and went on.
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["stripeResult"]["error"], json!("not-granted"));
    let message = task.data["stripeResult"]["message"].as_str().unwrap_or("");
    assert!(message.contains("stripe") && message.contains("ungranted-connector"), "{message}");
    let run = runs_of(&task, "ungranted-connector")[0];
    assert_eq!(run.connector_calls.len(), 1);
    assert!(run.connector_calls[0].result.is_err());
    assert!(host.scheduler.connectors().effects().is_empty(), "no charge happened");
}

#[tokio::test]
async fn a_component_importing_the_filesystem_is_refused_at_load() {
    let host = host_with(&[WRITE_A]).await;
    let error = deploy(&host, &READS_FILE).await.expect_err("refused");
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("reads-file") && message.contains("wasi:filesystem"), "{message}");
    assert!(host.scheduler.catalog().get("reads-file").is_none());
    // The host goes on.
    let task = run_task(&host, json!({"start": true})).await;
    assert_eq!(task.data["a"], json!("A"));
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_at_load() {
    let host = host_with(&[]).await;
    let runtime = host.scheduler.runtime();
    let error = runtime
        .load("garbage", b"definitely not wasm", Default::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    assert!(error.to_string().contains("garbage"));
}
