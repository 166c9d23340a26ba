//! Misbehaving steps: each is stopped with an error naming what happened, changes nothing, and
//! the host and other tasks go on. The attacks of an untrusted step (loops, bombs, floods, WASI
//! access, bad components and conditions) are in `security.rs`.

use serde_json::json;
use whenever::runtime::RunErrorKind;
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::*;
use whenever_tests::{assert_status, error_of, host_with, run_beside_a_normal_task, runs_of};

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
    assert!(
        message.contains("stripe") && message.contains("ungranted-connector"),
        "{message}"
    );
    let run = runs_of(&task, "ungranted-connector")[0];
    assert_eq!(run.connector_calls.len(), 1);
    assert!(run.connector_calls[0].result.is_err());
    assert!(host.scheduler.connectors().effects().is_empty(), "no charge happened");
}
