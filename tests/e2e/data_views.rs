//! Data views: a step whose manifest lists what it `reads` is given only those paths (and its
//! condition's), and its writes and removals land in the whole data.

use serde_json::json;
use whenever::runtime::{LoadError, StepManifest};
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::SHOWS_ITS_INPUT;
use whenever_tests::{assert_status, deploy_as, host_with, manifest_of, run_task};

fn order() -> serde_json::Value {
    json!({
        "order": {"id": "O-1", "total": 12.5, "lines": [1, 2], "secret": "s3cret"},
        "customer": {"email": "a@b.test", "card": "4242"},
        "other": 1
    })
}

#[tokio::test]
async fn a_step_that_lists_what_it_reads_is_given_only_that_and_its_changes_land_in_the_whole_data() {
    let manifest = manifest_of(&SHOWS_ITS_INPUT);
    assert_eq!(
        manifest.reads.as_deref(),
        Some(
            &[
                "order.total".to_string(),
                "customer.email".to_string(),
                "order.lines".to_string()
            ][..]
        )
    );
    let host = host_with(&[SHOWS_ITS_INPUT]).await;
    let task = run_task(&host, order()).await;
    assert_status(&task, TaskStatus::Waiting);
    // Given: the listed paths and the condition's (`order.id`; `seen` is absent).
    assert_eq!(
        task.data["seen"],
        json!({"order": {"id": "O-1", "total": 12.5, "lines": [1, 2]}, "customer": {"email": "a@b.test"}})
    );
    // Its removal and its writes land; what it was not given is untouched.
    assert_eq!(
        task.data,
        json!({
            "order": {"id": "O-1", "total": 12.5, "secret": "s3cret", "customerSeen": "a@b.test"},
            "customer": {"email": "a@b.test", "card": "4242"},
            "other": 1,
            "seen": task.data["seen"].clone()
        })
    );
    let mut changed: Vec<String> = task.runs[0].changes.iter().map(|c| c.path().to_string()).collect();
    changed.sort();
    assert_eq!(changed, vec!["/order/customerSeen", "/order/lines", "/seen"]);
}

#[tokio::test]
async fn a_step_without_reads_is_given_the_whole_data() {
    let host = host_with(&[]).await;
    let manifest = StepManifest {
        reads: None,
        ..manifest_of(&SHOWS_ITS_INPUT)
    };
    deploy_as(&host, SHOWS_ITS_INPUT.name, &SHOWS_ITS_INPUT, manifest)
        .await
        .expect("loads");
    let task = run_task(&host, order()).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["seen"], order());
    assert_eq!(task.data["order"]["secret"], json!("s3cret"));
    assert!(task.data["order"].get("lines").is_none(), "removed");
}

#[tokio::test]
async fn a_manifest_whose_reads_are_not_paths_is_refused() {
    let host = host_with(&[]).await;
    let manifest = StepManifest {
        reads: Some(vec!["order.total".into(), "order..id".into()]),
        ..StepManifest::default()
    };
    let error = deploy_as(&host, "bad-reads", &SHOWS_ITS_INPUT, manifest)
        .await
        .expect_err("refused");
    assert!(matches!(error, LoadError::Manifest { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("bad-reads") && message.contains("\"order..id\""),
        "{message}"
    );
    assert!(host.scheduler.catalog().get("bad-reads").is_none());
}
