//! Misbehaving steps: each is stopped with an error naming what happened, changes nothing, and
//! the host and other tasks go on. The attacks of an untrusted step (loops, bombs, floods, WASI
//! access, bad components and conditions) are in `security.rs`. Also the sandbox's own bound: more
//! concurrent runs than the instance pool holds wait for a slot rather than fail.

use serde_json::{Value, json};
use whenever::runtime::RunErrorKind;
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::*;
use whenever_tests::{assert_status, error_of, host_with, run_beside_a_normal_task, run_task, runs_of};

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
async fn a_step_that_exits_the_process_is_told_to_return_instead() {
    let host = host_with(&[PANICS, WRITE_A]).await;
    // WASI tells the host only whether the exit was a success.
    for (code, said) in [(0, "success"), (3, "failure")] {
        let task = run_beside_a_normal_task(&host, json!({"panic": true, "exitCode": code})).await;
        assert_status(&task, TaskStatus::Failed);
        let error = error_of(&task, "panics");
        assert_eq!(error.kind, RunErrorKind::Trap);
        assert_eq!(
            error.message,
            format!(
                "the step exited the process (std::process::exit, as a {said}) instead of returning \
                 from its content; a step that fails returns an error"
            )
        );
    }
}

#[tokio::test]
async fn a_panic_in_a_step_without_std_is_reported_with_its_message() {
    // The SDK's panic handler (`no_std_support!`) logs what `std`'s hook would print to stderr.
    let host = host_with(&[PANICS_WITHOUT_STD, WRITE_A]).await;
    let data = json!({"panicWithoutStd": true, "reason": "out of stock"});
    let task = run_beside_a_normal_task(&host, data.clone()).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "panics-without-std");
    assert_eq!(error.kind, RunErrorKind::Panic);
    assert!(
        error
            .message
            .starts_with("the step panicked: this step panics without std: out of stock (at ")
            && error.message.contains("src/lib.rs:"),
        "{}",
        error.message
    );
    assert_eq!(task.data, data, "nothing applied");
}

#[tokio::test]
async fn data_nested_as_deep_as_json_is_read_fits_a_steps_stack() {
    // The SDK reads and writes the data recursively, on the step's stack in its linear memory
    // (1 MiB, as rustc links it; this data needs 16 to 32 KiB of it), and serde_json, in the step
    // as in the host, reads no deeper than 128 levels: here the step is given 126 (data a task
    // kept from before the host held it to 120) and writes them back one level deeper. A stack
    // too small fails this run with an out-of-bounds trap; the host refuses what it wrote, whole
    // as it is, only because it would nest the data past 120.
    let host = host_with(&[SHOWS_ITS_INPUT]).await;
    let task = run_task(
        &host,
        json!({"order": {"id": "deep", "lines": alternately_nested(124)}}),
    )
    .await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "shows-its-input");
    assert_eq!(error.kind, RunErrorKind::InvalidOutput);
    assert!(
        error.message.starts_with(
            "the task's data, with what the step wrote at /seen, nests arrays and objects 127 levels deep"
        ),
        "{}",
        error.message
    );

    // Given 119 levels, it writes 120, which the data may hold.
    let deep = alternately_nested(117);
    let task = run_task(&host, json!({"order": {"id": "deep", "lines": deep}})).await;
    // Waiting: the step ran once, and nothing completes the task.
    assert_status(&task, TaskStatus::Waiting);
    let runs = runs_of(&task, "shows-its-input");
    assert!(
        matches!(runs[..], [run] if run.outcome == Some(whenever::task::RunOutcomeRecord::Ok)),
        "{:?}",
        task.runs
    );
    assert_eq!(task.data["seen"]["order"]["lines"], deep, "the step saw it whole");
    assert!(task.data["order"].get("lines").is_none(), "and removed it");
}

/// A string under `levels` objects and arrays, one inside the other.
fn alternately_nested(levels: usize) -> Value {
    (0..levels).fold(json!("the bottom"), |deep, level| {
        if level % 2 == 0 {
            json!({"down": deep})
        } else {
            json!([deep])
        }
    })
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

/// A connector this host does not have is `unknown` to the step, naming the step's grants (not
/// the host's every connector), not "not granted": adding it to the manifest would only have the
/// deploy refused.
#[tokio::test]
async fn a_connector_the_host_lacks_is_unknown_to_the_step() {
    let host = host_with(&[UNGRANTED_CONNECTOR, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"tryStripe": true, "connector": "nosuch"})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["stripeResult"]["error"], json!("unknown"), "{}", task.data);
    let message = task.data["stripeResult"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("unknown connector `nosuch`") && message.ends_with("(the step's grants: slackCom)"),
        "{message}"
    );
}

/// A connector name longer than any connector's is refused before anything else is asked, and
/// the run's record keeps it cut short: a step calling with names of megabytes a thousand times
/// would otherwise fill the host's memory with its record.
#[tokio::test]
async fn a_connector_name_too_long_for_any_connector_is_refused_and_kept_cut_short() {
    let host = host_with(&[UNGRANTED_CONNECTOR, WRITE_A]).await;
    let long = "é".repeat(100);
    let task = run_beside_a_normal_task(&host, json!({"tryStripe": true, "connector": long})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["stripeResult"]["error"], json!("unknown"), "{}", task.data);
    let message = task.data["stripeResult"]["message"].as_str().unwrap_or("");
    assert_eq!(
        message,
        "a connector call named a connector of 200 bytes and a method of 6 bytes: no connector has a \
         name longer than 128 bytes, nor a method"
    );
    let call = &runs_of(&task, "ungranted-connector")[0].connector_calls[0];
    assert_eq!(call.connector, format!("{}…", "é".repeat(64)));
    assert_eq!(call.method, "charge");
}

#[tokio::test]
async fn connector_arguments_are_kept_as_the_step_wrote_them_and_bad_ones_are_refused() {
    let host = host_with(&[CONNECTOR_ARGS_AS_TEXT, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"passArgs": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    let run = runs_of(&task, "connector-args-as-text")[0];
    assert_eq!(run.connector_calls.len(), 3);
    let (not_json, charged, too_deep) = (
        &run.connector_calls[0],
        &run.connector_calls[1],
        &run.connector_calls[2],
    );
    // The record holds the step's own text (its spacing inside), without the whitespace around.
    assert_eq!(
        charged.args.get(),
        r#"{"amount": 100,  "currency": "usd", "source": "tok_visa"}"#
    );
    // The step was given the very text the record holds.
    let result = charged.result.as_ref().expect("charged");
    assert_eq!(task.data["passed"]["charged"]["text"], json!(result.get()));
    assert_eq!(result.value()["success"], json!(true), "{}", result.get());
    // Arguments that are not JSON reach no connector: the step gets invalid-args, the record
    // keeps them as a string.
    assert_eq!(not_json.args.value(), json!("{not json"));
    let error = not_json.result.as_ref().expect_err("refused");
    assert_eq!(error.kind, whenever_connectors::ErrorKind::InvalidArgs);
    assert!(error.message.contains("not JSON"), "{}", error.message);
    let told = task.data["passed"]["notJson"]["error"].as_str().unwrap_or("");
    assert!(told.contains("stripe.charge") && told.contains("not JSON"), "{told}");
    // Arguments nested past the 120 levels a task's data may are refused too, and kept as a
    // string, which every reader of the run's record can read.
    let deep = too_deep.args.value();
    assert!(deep.as_str().is_some_and(|text| text.starts_with("[[[")), "{deep}");
    let error = too_deep.result.as_ref().expect_err("refused");
    assert_eq!(error.kind, whenever_connectors::ErrorKind::InvalidArgs);
    let told = task.data["passed"]["tooDeep"]["error"].as_str().unwrap_or("");
    assert!(
        told.starts_with("the arguments to stripe.charge nest arrays and objects 121 levels deep, past the 120"),
        "{told}"
    );
    assert_eq!(
        host.scheduler.connectors().effects().count("stripe", "charge"),
        1,
        "one charge, for the first call"
    );
}

/// A journal that keeps what it is given, as a store does.
#[derive(Default)]
struct KeptJournal(std::sync::Mutex<std::collections::BTreeMap<usize, whenever::runtime::ConnectorCallRecord>>);

#[async_trait::async_trait]
impl whenever::runtime::CallJournal for KeptJournal {
    async fn record(&self, index: usize, call: &whenever::runtime::ConnectorCallRecord) -> Result<(), String> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(index, call.clone());
        Ok(())
    }
}

/// A run re-run after a crash is given its journal back by call number: a call refused before a
/// charge (not journaled: nothing was sent) keeps its place, so the charge is answered from the
/// journal rather than made again (read back in call order without the gap, the re-run's first
/// call took the charge's result and its second charged a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_replays_each_journaled_call_as_itself_after_a_refused_one() {
    use std::sync::Arc;
    use whenever::runtime::{RunInput, Runtime, RuntimeConfig, StepManifest};

    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let manifest = StepManifest {
        connectors: vec!["stripe".into()],
        ..StepManifest::default()
    };
    let step = runtime
        .load(
            "passer",
            &whenever_tests::component_of(&CONNECTOR_ARGS_AS_TEXT),
            manifest,
        )
        .await
        .expect("loads");
    let registry = whenever::connectors::Registry::simulators();
    let journal = Arc::new(KeptJournal::default());
    let input = |replay| RunInput {
        task_id: "t_replayed".into(),
        data: json!({"passArgs": true}).to_string(),
        run_number: 1,
        connectors: registry.clone(),
        replay,
        journal: Some(journal.clone() as Arc<dyn whenever::runtime::CallJournal>),
    };
    let first = runtime.run(&step, input(Vec::new())).await;
    assert!(first.outcome.is_ok(), "{:?}", first.outcome);
    assert_eq!(registry.effects().count("stripe", "charge"), 1);
    // What the store reads back for the re-run: the journal by call number, the refused
    // call's place (not journaled: nothing was sent) kept empty.
    let kept: Vec<Option<_>> = {
        let journaled = journal.0.lock().expect("journal");
        assert_eq!(journaled.keys().copied().collect::<Vec<_>>(), [1], "the charge alone");
        (0..=1).map(|index| journaled.get(&index).cloned()).collect()
    };

    let again = runtime.run(&step, input(kept)).await;
    assert!(again.outcome.is_ok(), "{:?}", again.outcome);
    assert_eq!(registry.effects().count("stripe", "charge"), 1, "not charged again");
    let replayed: Vec<bool> = again.calls.iter().map(|c| c.replayed).collect();
    assert_eq!(replayed, [false, true, false], "the charge answered from the journal");
    assert_eq!(again.calls[1].result, first.calls[1].result);
}

/// A journal that holds every connector result for a while, so that the runs calling connectors
/// stay suspended (holding their instances) at the same time.
struct SlowJournal;

#[async_trait::async_trait]
impl whenever::runtime::CallJournal for SlowJournal {
    async fn record(&self, _index: usize, _call: &whenever::runtime::ConnectorCallRecord) -> Result<(), String> {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_instance_pool_wait_for_a_slot_instead_of_failing() {
    use std::sync::Arc;
    use whenever::runtime::{RunInput, Runtime, RuntimeConfig, StepManifest};

    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            max_instances: 2,
            ..RuntimeConfig::default()
        })
        .expect("runtime"),
    );
    let manifest = StepManifest {
        connectors: vec!["stripe".into()],
        ..StepManifest::default()
    };
    let step = Arc::new(
        runtime
            .load("charger", &whenever_tests::component_of(&UNGRANTED_CONNECTOR), manifest)
            .await
            .expect("loads"),
    );
    let registry = whenever::connectors::Registry::simulators();
    let mut runs = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (runtime, step, registry) = (runtime.clone(), step.clone(), registry.clone());
        runs.spawn(async move {
            let input = RunInput {
                task_id: format!("pool-{n}"),
                data: json!({"tryStripe": true}).to_string(),
                run_number: 1,
                connectors: registry,
                replay: Vec::new(),
                journal: Some(Arc::new(SlowJournal)),
            };
            runtime.run(&step, input).await
        });
    }
    let mut charged = 0;
    while let Some(report) = runs.join_next().await {
        let report = report.expect("run task");
        let output = report.outcome.expect("every run gets an instance, later if need be");
        assert!(output.text.contains("\"ok\""), "{}", output.text);
        charged += 1;
    }
    assert_eq!(charged, 8);
}

#[tokio::test]
async fn a_memory_limit_below_what_the_component_starts_with_is_refused_naming_the_setting() {
    use whenever::runtime::{LoadError, StepLimits};
    let host = host_with(&[]).await;
    for memory_mib in [0, 1] {
        let manifest = whenever::runtime::StepManifest {
            limits: StepLimits {
                memory_mib,
                ..StepLimits::default()
            },
            ..whenever_tests::manifest_of(&WRITE_A)
        };
        let refused = whenever_tests::deploy_as(&host, "write-a", &WRITE_A, manifest)
            .await
            .expect_err("refused");
        let LoadError::Manifest { message, .. } = &refused else {
            panic!("{refused}");
        };
        assert!(
            message.starts_with(&format!(
                "limits.memory_mib = {memory_mib} is less than the component's memory takes when it starts ("
            )) && message.contains("MiB, rounded up): no run could start"),
            "{message}"
        );
    }
}
