//! The scheduling rules with real components: parallel runs, conflicts, waiting, re-runs, redo,
//! completion.

use serde_json::json;
use whenever::task::{RunOutcomeRecord, RunRecord, TaskStatus};
use whenever_step_artifacts::testing::*;
use whenever_tests::{assert_status, deploy_as, host_with, manifest_of, run_task, runs_of};

#[tokio::test]
async fn two_steps_run_in_parallel_and_both_changes_land() {
    let host = host_with(&[WRITE_A, WRITE_B]).await;
    let task = run_task(&host, json!({"start": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data, json!({"start": true, "a": "A", "b": "B"}));
    let a = runs_of(&task, "write-a")[0];
    let b = runs_of(&task, "write-b")[0];
    assert_eq!(a.logs[0].message, "writing a");
    assert!(a.conflicts.is_empty() && b.conflicts.is_empty());

    // They run at once, not one after the other: the sleeping step deployed under two names,
    // each run sleeping `SLEEP_MS`, takes all in little more than one sleep, not two.
    const SLEEP_MS: u64 = 800;
    let mut manifest = manifest_of(&SLEEPS);
    manifest.limits.timeout_ms = 10 * SLEEP_MS;
    for name in ["sleeps-1", "sleeps-2"] {
        deploy_as(&host, name, &SLEEPS, manifest.clone())
            .await
            .expect("the sleeping step deploys");
    }
    let task = run_task(&host, json!({"sleepMs": SLEEP_MS})).await;
    assert_eq!(task.data["slept"], json!(true), "{:?}", task.message);
    let sleeps: Vec<_> = ["sleeps-1", "sleeps-2"]
        .into_iter()
        .map(|name| {
            let runs = runs_of(&task, name);
            assert_eq!(runs.len(), 1, "{name} ran once: {:?}", task.runs);
            assert_eq!(runs[0].outcome, Some(RunOutcomeRecord::Ok), "{name}");
            runs[0]
        })
        .collect();
    for run in &sleeps {
        assert!(
            run.duration_ms >= SLEEP_MS as f64,
            "{} slept {SLEEP_MS} ms: {} ms",
            run.step,
            run.duration_ms
        );
    }
    // Each run's own span, from its end back by its duration (`started_at` is the record's, made
    // before launch): one after the other, the two would not overlap at all; at once, they
    // share most of a sleep.
    let span = |run: &&RunRecord| {
        let ended = run.ended_at.expect("ended");
        let began = ended - chrono::Duration::microseconds((run.duration_ms * 1000.0) as i64);
        (began, ended)
    };
    let (a, b) = (span(&sleeps[0]), span(&sleeps[1]));
    let shared_ms = (a.1.min(b.1) - a.0.max(b.0)).num_milliseconds();
    assert!(
        shared_ms >= (SLEEP_MS / 2) as i64,
        "the two sleeps of {SLEEP_MS} ms overlapped by {shared_ms} ms: {a:?}, {b:?}"
    );
}

#[tokio::test]
async fn two_steps_writing_the_same_field_record_a_conflict() {
    let host = host_with(&[CONFLICT_X, CONFLICT_Y]).await;
    let task = run_task(&host, json!({"conflictTest": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.runs.len(), 2, "each ran once: {:?}", task.runs);
    // The later finisher wins, and both runs record the conflict.
    let later = task.runs.iter().max_by_key(|r| r.ended_at).expect("runs");
    let winner = later.step.trim_start_matches("conflict-");
    assert_eq!(task.data["winner"], json!(winner));
    assert_eq!(task.data["byx"], json!(true));
    assert_eq!(task.data["byy"], json!(true));
    for run in &task.runs {
        assert_eq!(run.conflicts.len(), 1, "{} records the conflict", run.step);
        assert_eq!(run.conflicts[0].path, "/winner");
        assert_eq!(run.conflicts[0].winner, later.step);
        assert_eq!(run.conflicts[0].steps.len(), 2);
    }
}

#[tokio::test]
async fn a_step_waits_for_a_field_another_step_writes() {
    let host = host_with(&[WRITE_A, WAIT_FOR_A]).await;
    let task = run_task(&host, json!({"start": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["waited"], json!(true));
    let writer = runs_of(&task, "write-a")[0];
    let waiter = runs_of(&task, "wait-for-a")[0];
    assert!(
        waiter.started_at >= writer.ended_at.expect("ended"),
        "the waiter starts after the write"
    );

    // Without the writer, the waiter waits.
    let host = host_with(&[WAIT_FOR_A]).await;
    let task = run_task(&host, json!({"start": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert!(task.runs.is_empty());
}

#[tokio::test]
async fn a_step_reruns_only_when_its_matched_data_changes() {
    let host = host_with(&[COUNT_RUNS]).await;
    let mut task = whenever::task::Task::new(json!({"counter": 1}));
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    // It wrote `runs`, which its condition does not name: no loop.
    assert_eq!(task.data["runs"], json!(1.0));
    assert_eq!(runs_of(&task, "count-runs").len(), 1);

    // Driving again with unchanged data starts nothing.
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    assert_eq!(runs_of(&task, "count-runs").len(), 1);

    // A change elsewhere does not re-run it; a change of `counter` does.
    task.data["other"] = json!("x");
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    assert_eq!(runs_of(&task, "count-runs").len(), 1);
    task.data["counter"] = json!(2);
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    assert_eq!(runs_of(&task, "count-runs").len(), 2);
    assert_eq!(task.data["runs"], json!(2.0));
    // 2 and 2.0 are the same number: no re-run.
    task.data["counter"] = json!(2.0);
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    assert_eq!(runs_of(&task, "count-runs").len(), 2);
}

#[tokio::test]
async fn redo_runs_the_step_again_on_unchanged_data() {
    let host = host_with(&[REDO_THREE_TIMES]).await;
    let task = run_task(&host, json!({"redoTest": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["attempts"], json!(3.0));
    let numbers: Vec<u32> = runs_of(&task, "redo-three-times").iter().map(|r| r.number).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
}

#[tokio::test]
async fn complete_names_tags_and_ends_the_task() {
    let host = host_with(&[COMPLETES, COUNT_RUNS]).await;
    let task = run_task(&host, json!({"finish": true})).await;
    assert_status(&task, TaskStatus::Completed);
    assert_eq!(task.name.as_deref(), Some(format!("Finished {}", task.id).as_str()));
    assert_eq!(task.tags, vec!["finished", "test"]);
    assert_eq!(task.data["done"], json!(true));
    assert!(task.data["doneAt"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn a_runaway_step_is_stopped_by_the_cap() {
    let host = host_with(&[REDO_THREE_TIMES]).await;
    // Each run asks for a redo while attempts < 3; start it at -1000 so it would loop ~1000 times.
    let task = run_task(&host, json!({"redoTest": true, "attempts": -1000})).await;
    assert_status(&task, TaskStatus::Failed);
    assert_eq!(runs_of(&task, "redo-three-times").len(), 100);
    let message = task.message.clone().unwrap_or_default();
    assert!(
        message.contains("redo-three-times") && message.contains("100"),
        "{message}"
    );
}

#[tokio::test]
async fn history_records_version_times_logs_and_changes() {
    let host = host_with(&[WRITE_A]).await;
    let task = run_task(&host, json!({"start": true})).await;
    let run = &task.runs[0];
    let deployed = host.scheduler.catalog().get("write-a").expect("deployed");
    assert_eq!(run.version, deployed.version);
    assert_eq!(run.outcome, Some(RunOutcomeRecord::Ok));
    assert!(run.ended_at.expect("ended") >= run.started_at);
    assert_eq!(
        serde_json::to_value(&run.changes).expect("json"),
        json!([{"op": "set", "path": "/a", "value": "A"}])
    );
}

/// A step hands back unchanged what it did not change, numbers to the last bit: a price such as
/// 1.08 × 1.19 = 1.2852000000000001 is read and written back by the step SDK as that number, not
/// as 1.2852 (a change the history would blame on the step, and that would run again the steps
/// whose conditions read it).
#[tokio::test]
async fn numbers_a_step_does_not_touch_are_kept_to_the_last_bit() {
    let host = host_with(&[WRITE_A]).await;
    let data = json!({
        "start": true,
        "gross": 1.2852000000000001,
        "tax": 0.20520000000000005,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "third": 0.1 + 0.2,
    });
    let task = run_task(&host, data.clone()).await;
    assert_status(&task, TaskStatus::Waiting);
    let paths: Vec<&str> = runs_of(&task, "write-a")[0].changes.iter().map(|c| c.path()).collect();
    assert_eq!(paths, vec!["/a"], "{:?}", runs_of(&task, "write-a")[0].changes);
    for key in ["gross", "tax", "tiny", "huge", "third"] {
        assert_eq!(task.data[key], data[key], "{key}");
    }
}
