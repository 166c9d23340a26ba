//! Data views: a step whose manifest lists what it `reads` is given only those paths (and its
//! condition's), the operator's config can narrow that further (condition paths included), its
//! writes and removals land in the whole data, and the steps listing shows what each step is given.

use serde_json::json;
use whenever::Host;
use whenever::runtime::{LoadError, StepManifest};
use whenever::service::ServiceOptions;
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::WRITE_A;
use whenever_step_artifacts::testing::{MARKS_AN_ITEM, SHOWS_ITS_INPUT};
use whenever_tests::{assert_status, component_of, deploy_as, host_with, host_with_config, manifest_of, run_task};

use crate::service::{db_in, encode, error_message, options, start_with};

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
    let host = host_given(&SHOWS_ITS_INPUT, None).await;
    let task = run_task(&host, order()).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["seen"], order());
    assert_eq!(task.data["order"]["secret"], json!("s3cret"));
    assert!(task.data["order"].get("lines").is_none(), "removed");
}

#[tokio::test]
async fn a_write_into_an_array_the_step_was_not_given_is_refused_rather_than_replace_it() {
    let order = json!({"order": {"id": "O-3", "items": [{"sku": "A", "quantity": 2}, {"sku": "B"}]}});
    // Given the items (its manifest), the write lands in the first item; the array stays.
    let host = host_with(&[MARKS_AN_ITEM]).await;
    let task = run_task(&host, order.clone()).await;
    assert_eq!(
        task.data["order"]["items"],
        json!([{"sku": "A", "quantity": 2, "reserved": true}, {"sku": "B"}])
    );
    assert_eq!(task.data["marked"], json!(true));

    // Not given them, its `set` builds `{"0": {"reserved": true}}` where the task holds the
    // array: merged it cannot be, and replacing it would lose the items. The run fails, naming
    // the path and the fix, and the data is untouched.
    let host = host_given(&MARKS_AN_ITEM, Some(&[])).await;
    let task = run_task(&host, order.clone()).await;
    assert_status(&task, TaskStatus::Failed);
    let error = whenever_tests::error_of(&task, "marks-an-item");
    assert_eq!(error.kind, whenever::runtime::RunErrorKind::InvalidOutput);
    assert!(
        error.message.starts_with(
            "the step wrote an object at /order/items, where the task holds an array that the step was not given"
        ) && error.message.contains("list `order.items` in the manifest's `reads`"),
        "{}",
        error.message
    );
    assert_eq!(task.data, order, "nothing applied");
}

/// A host serving `step` with its manifest's `reads` replaced by `reads` (`None`: the whole
/// data).
async fn host_given(step: &whenever_step_artifacts::StepFiles, reads: Option<&[&str]>) -> Host {
    let host = host_with(&[]).await;
    let manifest = StepManifest {
        reads: reads.map(|paths| paths.iter().map(|p| p.to_string()).collect()),
        ..manifest_of(step)
    };
    deploy_as(&host, step.name, step, manifest).await.expect("loads");
    host
}

/// The warnings a run logged, each as its text.
fn warnings(task: &whenever::task::Task) -> Vec<String> {
    task.runs
        .iter()
        .flat_map(|run| &run.logs)
        .filter(|line| line.level == whenever::runtime::LogLevel::Warn)
        .map(|line| line.message.clone())
        .collect()
}

#[tokio::test]
async fn a_read_the_manifest_does_not_list_is_logged_as_a_warning_naming_it() {
    // The step reads `customer.email`; a manifest that lists only `order.total` leaves it
    // absent, although the task holds it: the step's SDK warns, once, naming the path.
    let host = host_given(&SHOWS_ITS_INPUT, Some(&["order.total"])).await;
    let task = run_task(&host, order()).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["order"]["customerSeen"], json!(""), "read as absent");
    let warned = warnings(&task);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with("read `customer.email`, which this step is not given: it reads as absent"),
        "{}",
        warned[0]
    );

    // Listed, or given whole (no `reads`): no warning, also where the task holds nothing there.
    let host = host_with(&[SHOWS_ITS_INPUT]).await;
    let without_email = json!({"order": {"id": "O-2", "total": 1}});
    for data in [order(), without_email.clone()] {
        let task = run_task(&host, data).await;
        assert_eq!(warnings(&task), Vec::<String>::new());
    }
    let host = host_given(&SHOWS_ITS_INPUT, None).await;
    let task = run_task(&host, without_email).await;
    assert_eq!(warnings(&task), Vec::<String>::new());
}

#[tokio::test]
async fn a_read_the_operator_withholds_is_logged_as_a_warning_too() {
    let (_dir, host) = host_narrowing_reads(r#"["order"]"#).await;
    deploy_as(
        &host,
        SHOWS_ITS_INPUT.name,
        &SHOWS_ITS_INPUT,
        manifest_of(&SHOWS_ITS_INPUT),
    )
    .await
    .expect("loads");
    let task = run_task(&host, order()).await;
    let warned = warnings(&task);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].starts_with("read `customer.email`"), "{}", warned[0]);
}

/// A host whose config narrows `shows-its-input` to `reads`.
async fn host_narrowing_reads(reads: &str) -> (tempfile::TempDir, Host) {
    let (dir, host) = host_with_config(&format!("[steps.shows-its-input]\nreads = {reads}\n")).await;
    (dir, host.expect("host starts"))
}

#[tokio::test]
async fn the_operator_config_narrows_what_a_step_is_given_condition_paths_included() {
    // The manifest asks for the whole data; the operator gives the order's total and the
    // customer's e-mail. `order.id`, which the condition tests, is not given.
    let (_dir, host) = host_narrowing_reads(r#"["order.total", "customer.email"]"#).await;
    let manifest = StepManifest {
        reads: None,
        ..manifest_of(&SHOWS_ITS_INPUT)
    };
    let step = deploy_as(&host, SHOWS_ITS_INPUT.name, &SHOWS_ITS_INPUT, manifest)
        .await
        .expect("loads");
    assert_eq!(
        step.manifest.reads.as_deref(),
        Some(&["order.total".to_string(), "customer.email".to_string()][..])
    );
    let given = json!({"order": {"total": 12.5}, "customer": {"email": "a@b.test"}});
    let task = run_task(&host, order()).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["seen"], given);
    // It was not given `order.lines`, so its removal of them changes nothing; its writes land.
    assert_eq!(task.data["order"]["lines"], json!([1, 2]));
    assert_eq!(task.data["order"]["customerSeen"], json!("a@b.test"));

    // Its own `reads` are narrowed to what both give; what the config does not cover is withheld.
    let step = deploy_as(
        &host,
        SHOWS_ITS_INPUT.name,
        &SHOWS_ITS_INPUT,
        manifest_of(&SHOWS_ITS_INPUT),
    )
    .await
    .expect("loads");
    assert_eq!(
        step.manifest.reads.as_deref(),
        Some(&["customer.email".to_string(), "order.total".to_string()][..])
    );
    assert_eq!(step.withheld.reads, vec!["order.lines".to_string()]);
    let task = run_task(&host, order()).await;
    assert_eq!(task.data["seen"], given);
}

#[tokio::test]
async fn a_config_whose_reads_are_not_paths_is_refused() {
    let (_dir, host) = host_with_config("[steps.shows-its-input]\nreads = [\"order..id\"]\n").await;
    let error = host.expect_err("refused");
    assert!(error.is_bad_input());
    let message = error.to_string();
    assert!(
        message.contains("[steps.shows-its-input] reads") && message.contains("\"order..id\""),
        "{message}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_listing_shows_what_each_step_is_given_and_bad_reads_are_refused_at_deploy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service_options = ServiceOptions {
        db: db_in(&dir),
        no_steps: true,
        ..ServiceOptions::default()
    };
    let server = start_with(&service_options, &[WRITE_A], options()).await;
    let manifest = std::fs::read_to_string(SHOWS_ITS_INPUT.manifest).expect("manifest");
    let path = format!("/v1/steps/shows-its-input?manifest={}", encode(&manifest));
    let (status, deployed) = server
        .call(reqwest::Method::PUT, &path, Some(component_of(&SHOWS_ITS_INPUT)))
        .await;
    assert_eq!(status, 201, "{deployed}");
    // The manifest's paths and the condition's (`order.id`, `seen`), sorted.
    let expected = json!(["customer.email", "order.id", "order.lines", "order.total", "seen"]);
    assert_eq!(deployed["reads"], expected, "{deployed}");
    let (_, listing) = server.get("/v1/steps").await;
    let steps = listing["steps"].as_array().expect("steps");
    let find = |name: &str| steps.iter().find(|s| s["name"] == name).cloned().unwrap_or_default();
    assert_eq!(find("shows-its-input")["reads"], expected);
    assert!(find("write-a").get("reads").is_none(), "given the whole data");

    let bad = "reads = [\"order..total\"]\n";
    let path = format!("/v1/steps/shows-its-input?manifest={}", encode(bad));
    let (status, error) = server
        .call(reqwest::Method::PUT, &path, Some(component_of(&SHOWS_ITS_INPUT)))
        .await;
    assert_eq!(status, 422, "{error}");
    let message = error_message(&error);
    assert!(
        message.contains("reads") && message.contains("order..total"),
        "{message}"
    );
    let (_, kept) = server.get("/v1/steps/shows-its-input").await;
    assert_eq!(kept["reads"], expected, "the deployed version keeps serving");
    server.stop().await;
}
