//! The security suite: what an untrusted third-party step can try, each case with a real
//! component. Every attempt ends with a clear error in the run or at deploy, the host stays up,
//! a normal task run at the same time completes, and nothing stored is lost. (A call to an
//! ungranted connector is in `sandbox.rs`; grants and their narrowing in `capabilities.rs`.)

use serde_json::{Value, json};
use whenever::runtime::{LoadError, RunErrorKind, StepManifest, TRUNCATED_MARKER};
use whenever::task::TaskStatus;
use whenever_step_artifacts::StepFiles;
use whenever_step_artifacts::testing::*;
use whenever_tests::{
    assert_status, component_of, deploy, deploy_as, error_of, host_with, host_with_config, manifest_of,
    refused_beside_a_normal_task, run_beside_a_normal_task, run_task, runs_of,
};

use crate::service::{component, db_in, error_message, options, runs, start};

/// The smallest core WebAssembly module: the magic and version 1, no sections.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// The smallest component: the magic, the component encoding's version and layer, no sections.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

// ---- runs: stopped by a limit, nothing applied ----

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    let host = host_with(&[INFINITE_LOOP, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"loopForever": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "infinite-loop");
    assert_eq!(error.kind, RunErrorKind::Deadline);
    assert!(error.message.contains("deadline of 2000 ms"), "{}", error.message);
    assert!(task.message.as_deref().unwrap_or("").contains("infinite-loop"));
    assert_eq!(task.data, json!({"loopForever": true}), "nothing applied");
}

/// Time a run spends waiting in the host (a WASI sleep here; a poll or a slow connector alike)
/// counts against its deadline too: the epoch ticks only see wasm that computes.
#[tokio::test]
async fn a_step_that_waits_in_the_host_is_stopped_by_the_deadline() {
    let host = host_with(&[SLEEPS, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"sleepMs": 600_000})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "sleeps");
    assert_eq!(error.kind, RunErrorKind::Deadline);
    assert!(error.message.contains("deadline of 1000 ms"), "{}", error.message);
    assert_eq!(task.data, json!({"sleepMs": 600_000}), "nothing applied");
    // A sleep within the deadline is no failure.
    let task = run_task(&host, json!({"sleepMs": 10})).await;
    assert_eq!(task.data["slept"], json!(true), "{:?}", task.message);
}

/// A host's runs share its threads: a run that computes yields its thread at every epoch tick and
/// waits its turn, so many at once each take many times their own time. The deadline counts the
/// run's own: runs that each compute well within their 1 s all complete, although, taking turns
/// on this test's one thread, every one of them ends past it.
#[tokio::test]
async fn runs_that_share_a_thread_are_held_to_their_own_time() {
    let host = host_with(&[COMPUTES]).await;
    // The iterations a run computes in about 150 ms on this machine, measured on one alone.
    let probe: u64 = 50_000_000;
    let alone = run_task(&host, json!({"computeIterations": probe})).await;
    assert_status(&alone, TaskStatus::Waiting);
    let took_ms = runs_of(&alone, "computes")[0].duration_ms.max(1.0);
    let iterations = (probe as f64 * 150.0 / took_ms) as u64;
    // 24 such runs take about 3.6 s of the thread: each ends well over 1 s after it began.
    let tasks = (0..24).map(|_| run_task(&host, json!({"computeIterations": iterations})));
    let tasks = futures_util::future::join_all(tasks).await;
    let shortest = tasks
        .iter()
        .flat_map(|t| runs_of(t, "computes"))
        .map(|r| r.ended_at.unwrap_or(r.started_at) - r.started_at)
        .min()
        .unwrap_or_default();
    for task in &tasks {
        assert_status(task, TaskStatus::Waiting);
        assert!(task.data["computed"].is_u64(), "{:?}", task.message);
    }
    assert!(
        shortest > chrono::TimeDelta::milliseconds(1000),
        "every run took turns past its deadline in wall-clock time: the shortest took {shortest}"
    );
}

/// And the other way: runs that share a thread and would each compute for ever are each stopped
/// once its own time reaches its deadline (the time it waited its turn is not its own, not
/// taken off again), and the error says how much of the wall-clock time was not counted.
#[tokio::test]
async fn runs_that_share_a_thread_are_stopped_at_their_own_deadline() {
    let host = host_with(&[]).await;
    let mut manifest = manifest_of(&INFINITE_LOOP);
    manifest.limits.timeout_ms = 200;
    deploy_as(&host, "infinite-loop", &INFINITE_LOOP, manifest)
        .await
        .expect("loads");
    let tasks = all_stopped((0..8).map(|_| run_task(&host, json!({"loopForever": true})))).await;
    for task in &tasks {
        assert_status(task, TaskStatus::Failed);
        let error = error_of(task, "infinite-loop");
        assert_eq!(error.kind, RunErrorKind::Deadline);
        assert!(
            error.message.contains("deadline of 200 ms")
                && error
                    .message
                    .contains(" ms ready to go on while its thread ran other work"),
            "{}",
            error.message
        );
    }
}

/// A step that naps a nanosecond at a time yields to the host and is woken again at every nap,
/// over and over: the time it is woken and waits for its thread is not its own, but the naps
/// and what it computes between them are, so its deadline stops it, alone or beside runs that
/// compute on the same thread.
#[tokio::test]
async fn a_step_that_naps_in_a_loop_is_stopped_by_the_deadline() {
    let host = host_with(&[NAPS_FOREVER]).await;
    let mut looping = manifest_of(&INFINITE_LOOP);
    looping.limits.timeout_ms = 300;
    deploy_as(&host, "infinite-loop", &INFINITE_LOOP, looping)
        .await
        .expect("loads");
    let alone = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run_task(&host, json!({"napForever": true})),
    )
    .await
    .expect("stopped");
    assert_eq!(error_of(&alone, "naps-forever").kind, RunErrorKind::Deadline);
    let beside = (0..3)
        .map(|_| run_task(&host, json!({"napForever": true})))
        .chain((0..3).map(|_| run_task(&host, json!({"loopForever": true}))));
    let tasks = all_stopped(beside).await;
    for task in &tasks {
        assert_status(task, TaskStatus::Failed);
        let step = if task.data["napForever"] == json!(true) {
            "naps-forever"
        } else {
            "infinite-loop"
        };
        let error = error_of(task, step);
        assert_eq!(error.kind, RunErrorKind::Deadline, "{}", error.message);
    }
}

/// Drives `tasks` at once on the test's one thread; each must end within two minutes.
async fn all_stopped<F: std::future::Future<Output = whenever::task::Task>>(
    tasks: impl Iterator<Item = F>,
) -> Vec<whenever::task::Task> {
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures_util::future::join_all(tasks),
    )
    .await
    .expect("every run stopped")
}

/// A step given a view returns only what it writes, so its runs add up in the task's data, each
/// within the output limit: the scheduler's `max_task_bytes` fails the run that would pass it and
/// keeps nothing that run wrote, and the data stays as the runs before left it.
#[tokio::test]
async fn a_run_that_would_take_the_task_past_its_size_fails_and_keeps_nothing() {
    let (_dir, host) = host_with_config("[scheduler]\nmax_task_bytes = 300000\n").await;
    let host = host.expect("host starts");
    for step in [&GROWS, &WRITE_A] {
        deploy(&host, step).await.expect("deployed");
    }
    let task = run_beside_a_normal_task(&host, json!({"growBytes": 100_000})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "grows");
    assert_eq!(error.kind, RunErrorKind::InvalidOutput);
    assert!(
        error
            .message
            .contains("over the limit of 300000 ([scheduler] max_task_bytes)"),
        "{}",
        error.message
    );
    // Two chunks of 100,000 bytes fit; the third would have passed 300,000.
    assert_eq!(runs_of(&task, "grows").len(), 3);
    assert_eq!(task.data["grown"], json!(2));
    assert!(task.data.get("chunk2").is_some() && task.data.get("chunk3").is_none());
    assert!(task.data.to_string().len() <= 300_000);
}

/// A step's output may nest 127 levels (as JSON parsers read), but a task's data may nest only
/// 120, so that every answer and history entry holding it reads back: the run that would take
/// the data past that fails, naming where it wrote, and keeps nothing; one within it is taken.
#[tokio::test]
async fn a_run_that_would_nest_the_data_past_its_limit_fails_and_keeps_nothing() {
    let host = host_with(&[NESTS, WRITE_A]).await;
    // At /nested: one level of the task's object, then the arrays.
    let task = run_beside_a_normal_task(&host, json!({"nestLevels": 120})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "nests");
    assert_eq!(error.kind, RunErrorKind::InvalidOutput);
    assert!(
        error.message.starts_with(
            "the task's data, with what the step wrote at /nested, nests arrays and objects 121 levels \
             deep, past the 120 a task's data may"
        ),
        "{}",
        error.message
    );
    assert_eq!(task.data, json!({"nestLevels": 120}));

    let task = run_task(&host, json!({"nestLevels": 119})).await;
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(whenever::task::nesting(&task.data), 120);
}

/// A limit so small no order would fit is a mistake in the config, refused as the host starts.
#[tokio::test]
async fn a_task_size_limit_below_its_floor_is_refused_at_start() {
    let (_dir, host) = host_with_config("[scheduler]\nmax_task_bytes = 10\n").await;
    let error = host.expect_err("refused");
    assert!(error.is_bad_input());
    assert!(
        error
            .to_string()
            .contains("max_task_bytes must be at least 1024; found 10"),
        "{error}"
    );
}

/// A manifest sets its own limits, so the host bounds them: one asking more is refused at
/// deploy naming the setting and the ceiling, which the operator's config moves.
#[tokio::test]
async fn a_manifest_asking_limits_beyond_the_hosts_ceilings_is_refused() {
    let host = host_with(&[]).await;
    let greedy = StepManifest::from_toml("[limits]\ntimeout_ms = 18446744073709551615\n").expect("valid TOML");
    let refused = deploy_as(&host, "infinite-loop", &INFINITE_LOOP, greedy.clone())
        .await
        .expect_err("beyond the ceiling");
    assert!(
        refused.to_string().contains(
            "limits.timeout_ms = 18446744073709551615 is above the host's maximum of 300000 (an \
             operator may change it: [runtime.max_limits] timeout_ms"
        ),
        "{refused}"
    );
    let calls = StepManifest::from_toml("[limits]\nmax_connector_calls = 10001\n").expect("valid TOML");
    let refused = deploy_as(&host, "infinite-loop", &INFINITE_LOOP, calls)
        .await
        .expect_err("beyond the ceiling");
    assert!(
        refused.to_string().contains("limits.max_connector_calls = 10001"),
        "{refused}"
    );

    // The operator raises a ceiling; below the defaults is refused.
    let (_dir, raised) = host_with_config("[runtime.max_limits]\ntimeout_ms = 600000\n").await;
    let raised = raised.expect("host starts");
    let longer = StepManifest::from_toml("[limits]\ntimeout_ms = 400000\n").expect("valid TOML");
    deploy_as(&raised, "infinite-loop", &INFINITE_LOOP, longer)
        .await
        .expect("within the raised ceiling");
    // A ceiling as high as the type holds lets a run start and finish (its deadline a year away).
    let (_dir, boundless) = host_with_config("[runtime.max_limits]\ntimeout_ms = 18446744073709551615\n").await;
    let boundless = boundless.expect("host starts");
    deploy_as(&boundless, "write-a", &WRITE_A, greedy)
        .await
        .expect("within the ceiling");
    let task = run_task(&boundless, json!({"start": true})).await;
    assert_eq!(task.data["a"], json!("A"), "{:?}", task.message);
    let (_dir, low) = host_with_config("[runtime.max_limits]\ntimeout_ms = 100\n").await;
    let refused = low.expect_err("below the default deadline");
    assert!(
        refused
            .to_string()
            .contains("[runtime.max_limits] timeout_ms = 100 is below the default limit of 2000"),
        "{refused}"
    );
}

/// The arguments a run sends to connectors are bounded all together by its output limit: past
/// it a call is refused (`invalid-args`) and its arguments are neither sent nor kept.
#[tokio::test]
async fn connector_arguments_past_the_runs_allowance_are_refused_and_not_kept() {
    let host = host_with(&[WRITE_A]).await;
    let manifest =
        StepManifest::from_toml("connectors = [\"slackCom\"]\n[limits]\nmax_output_bytes = 1024\ntimeout_ms = 20000\n")
            .expect("valid manifest");
    deploy_as(&host, "connector-flood", &CONNECTOR_FLOOD, manifest)
        .await
        .expect("loads");
    let task = run_beside_a_normal_task(&host, json!({"floodConnectors": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "connector-flood");
    assert_eq!(error.kind, RunErrorKind::StepError, "{}", error.message);
    assert!(
        error
            .message
            .contains("over its limit of 1 KiB (limits.max_output_bytes): not sent"),
        "{}",
        error.message
    );
    let run = runs_of(&task, "connector-flood")[0];
    let (last, sent) = run.connector_calls.split_last().expect("calls");
    assert!(sent.iter().all(|c| c.result.is_ok()) && !sent.is_empty());
    assert_eq!(
        last.result.as_ref().map_err(|e| e.kind).err(),
        Some(whenever_connectors::ErrorKind::InvalidArgs)
    );
    assert!(last.args.get().ends_with(" bytes not kept)\""), "{}", last.args.get());
    let effects = host.scheduler.connectors().effects();
    assert_eq!(effects.count_for_task(&task.id, "slackCom", "send"), sent.len());
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let host = host_with(&[MEMORY_BOMB, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"eatMemory": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "memory-bomb");
    assert_eq!(error.kind, RunErrorKind::Memory);
    assert!(
        error.message.contains("memory limit of 64 MiB (limits.memory_mib)"),
        "{}",
        error.message
    );
    assert_eq!(task.data, json!({"eatMemory": true}), "nothing applied");
    // A fresh instance of the same step works afterwards: the host is fine.
    let again = run_task(&host, json!({"start": true})).await;
    assert_eq!(again.data["a"], json!("A"));
}

#[tokio::test]
async fn deep_recursion_is_stopped_by_the_stack_limit() {
    let host = host_with(&[DEEP_RECURSION, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"recurseDeeply": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "deep-recursion");
    assert_eq!(error.kind, RunErrorKind::StackOverflow, "{}", error.message);
    assert!(error.message.contains("overflowed its stack"), "{}", error.message);
    assert_eq!(task.data, json!({"recurseDeeply": true}), "nothing applied");
    // The host thread survived the guest's overflow.
    let again = run_task(&host, json!({"start": true})).await;
    assert_eq!(again.data["a"], json!("A"));
}

#[tokio::test]
async fn an_output_of_100_mib_is_stopped_by_the_output_limit() {
    // huge-output's manifest gives it 512 MiB of memory, so the output limit is what stops it.
    let host = host_with(&[HUGE_OUTPUT, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"hugeOutput": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "huge-output");
    assert_eq!(error.kind, RunErrorKind::OutputTooLarge, "{}", error.message);
    assert!(error.message.contains("output is 100.0 MiB"), "{}", error.message);
    assert!(
        error
            .message
            .contains("output limit of 4 MiB (limits.max_output_bytes)"),
        "{}",
        error.message
    );
    assert_eq!(task.data, json!({"hugeOutput": true}), "nothing applied");
}

#[tokio::test]
async fn an_output_of_100_mib_with_the_default_memory_is_stopped_by_the_memory_limit() {
    let host = host_with(&[WRITE_A]).await;
    deploy_as(&host, "huge-output", &HUGE_OUTPUT, StepManifest::default())
        .await
        .expect("loads");
    let task = run_beside_a_normal_task(&host, json!({"hugeOutput": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "huge-output");
    assert_eq!(error.kind, RunErrorKind::Memory, "{}", error.message);
    assert!(error.message.contains("memory limit of 64 MiB"), "{}", error.message);
    assert_eq!(task.data, json!({"hugeOutput": true}));
}

#[tokio::test]
async fn logs_of_100_mib_are_cut_at_1_mib_with_a_marker() {
    let host = host_with(&[HUGE_LOGS, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"hugeLogs": true})).await;
    // The run itself is fine: its log is cut, not the run.
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(task.data["logged"], json!(100 << 20), "it did log 100 MiB");
    let run = runs_of(&task, "huge-logs")[0];
    assert!(run.logs_truncated);
    let (marker, kept) = run.logs.split_last().expect("log lines");
    assert_eq!(marker.message, TRUNCATED_MARKER);
    let kept_bytes: usize = kept.iter().map(|l| l.message.len()).sum();
    assert_eq!(kept_bytes, 1 << 20, "exactly the 1 MiB cap is kept");
    let stored = serde_json::to_vec(&task).expect("serializes");
    assert!(
        stored.len() < (1 << 20) + (64 << 10),
        "the stored task is {} bytes",
        stored.len()
    );
}

#[tokio::test]
async fn a_flood_of_100_000_connector_calls_is_stopped_at_1000() {
    let host = host_with(&[CONNECTOR_FLOOD, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"floodConnectors": true})).await;
    assert_status(&task, TaskStatus::Failed);
    let error = error_of(&task, "connector-flood");
    assert_eq!(error.kind, RunErrorKind::TooManyConnectorCalls, "{}", error.message);
    assert!(
        error
            .message
            .contains("more than 1000 connector calls (limits.max_connector_calls)")
            && error.message.contains("stopped at call 1001"),
        "{}",
        error.message
    );
    let run = runs_of(&task, "connector-flood")[0];
    assert_eq!(run.connector_calls.len(), 1000);
    assert!(
        run.connector_calls.iter().all(|c| c.result.is_ok()),
        "the first 1000 went through"
    );
    let effects = host.scheduler.connectors().effects();
    assert_eq!(
        effects.count_for_task(&task.id, "slackCom", "send"),
        1000,
        "no side effect past the cap"
    );
    assert_eq!(effects.len(), 1000, "and none elsewhere");
    assert!(task.data.get("flooded").is_none(), "nothing applied");
}

// ---- WASI: no files, no sockets, no environment ----

#[tokio::test]
async fn a_component_opening_files_is_refused_at_deploy() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &READS_FILE).await;
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("reads-file") && message.contains("imports wasi:filesystem/"),
        "{message}"
    );
    assert!(message.contains("no filesystem"), "{message}");
}

#[tokio::test]
async fn a_component_opening_sockets_is_refused_at_deploy() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &OPENS_SOCKET).await;
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("opens-socket") && message.contains("wasi:sockets/tcp"),
        "{message}"
    );
    assert!(message.contains("no sockets"), "{message}");
}

#[tokio::test]
async fn a_step_sees_no_environment_and_no_arguments() {
    assert!(
        std::env::vars().next().is_some(),
        "the host itself has an environment to leak"
    );
    let host = host_with(&[READS_ENVIRONMENT, WRITE_A]).await;
    let task = run_beside_a_normal_task(&host, json!({"readEnvironment": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    let seen = &task.data["environment"];
    assert_eq!(seen["vars"], json!({}), "{seen}");
    assert_eq!(seen["args"], json!([]), "{seen}");
    assert_eq!(seen["home"], Value::Null, "{seen}");
    assert!(
        seen["cwd"].get("error").is_some() || seen["cwd"]["ok"] == json!("/"),
        "no host directory: {seen}"
    );
}

// ---- components that are not steps ----

#[tokio::test]
async fn a_command_component_built_for_another_world_is_refused() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &OTHER_WORLD).await;
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("does not export the step world's `condition` and `content` functions"),
        "{message}"
    );
    assert!(message.contains("wasi:cli/run"), "names what it does export: {message}");
}

#[tokio::test]
async fn an_empty_component_is_refused_as_one() {
    let host = host_with(&[]).await;
    let error = host
        .scheduler
        .runtime()
        .load("empty", EMPTY_COMPONENT, StepManifest::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("(it exports nothing): it is an empty component"),
        "{error}"
    );
}

/// A step built with a later SDK, importing a host function this host lacks, is refused at
/// deploy naming the function and the likely cause, not only wasmtime's "implementation is
/// missing".
#[tokio::test]
async fn a_component_importing_a_function_the_host_lacks_is_refused_naming_it() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &FROM_THE_FUTURE).await;
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("it imports what this host does not provide")
            && message.contains("whenever:step/task@0.1.0")
            && message.contains("from-the-future")
            && message.contains("newer whenever-step-sdk"),
        "{message}"
    );
}

#[tokio::test]
async fn a_component_exporting_other_signatures_is_refused() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &WRONG_SIGNATURE).await;
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("wrong-signature") && message.contains("do not have the step world's types"),
        "{message}"
    );
}

#[tokio::test]
async fn a_core_module_or_other_bytes_are_refused_as_not_a_component() {
    let host = host_with(&[WRITE_A]).await;
    let runtime = host.scheduler.runtime();
    let (refused, good) = tokio::join!(
        runtime.load("core-module", CORE_MODULE, StepManifest::default()),
        run_task(&host, json!({"start": true}))
    );
    assert_eq!(good.data["a"], json!("A"));
    let error = refused.expect_err("refused");
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("core-module: not a valid WebAssembly component: the file is a core WebAssembly module"),
        "{error}"
    );

    let error = runtime
        .load("garbage", b"definitely not wasm", StepManifest::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    assert!(
        error.to_string().contains("garbage") && error.to_string().contains("not WebAssembly"),
        "{error}"
    );
    let error = runtime
        .load("tiny", b"\0as", StepManifest::default())
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("too short"), "{error}");
}

// ---- conditions ----

#[tokio::test]
async fn a_condition_that_is_not_json_is_refused_at_deploy() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &CONDITION_NOT_JSON).await;
    assert!(matches!(error, LoadError::InvalidCondition { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("condition() did not return JSON"), "{message}");
    assert!(message.contains("$number"), "quotes what it returned: {message}");
}

#[tokio::test]
async fn a_condition_that_is_not_a_valid_pattern_is_refused_at_deploy() {
    let host = host_with(&[WRITE_A]).await;
    let error = refused_beside_a_normal_task(&host, &CONDITION_BAD_PATTERN).await;
    assert!(matches!(error, LoadError::InvalidCondition { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("at order.id: unknown type name \"$strnig\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_condition_that_loops_is_stopped_at_deploy() {
    let host = host_with(&[WRITE_A]).await;
    let started = std::time::Instant::now();
    let error = refused_beside_a_normal_task(&host, &CONDITION_LOOPS).await;
    assert!(matches!(error, LoadError::InvalidCondition { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("condition() did not return within the deadline of 2000 ms"),
        "{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "stopped, not waited out"
    );
}

// ---- through the service: the store keeps everything ----

/// Every deploy-time refusal over the API leaves the serving version as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deploys_keep_the_previous_version_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    let (status, v1) = server
        .call(reqwest::Method::PUT, "/v1/steps/probe", Some(component(&WRITE_A).0))
        .await;
    assert_eq!(status, 201, "{v1}");

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (CORE_MODULE.to_vec(), "core WebAssembly module"),
        (component_of(&OTHER_WORLD), "does not export the step world's"),
        (component_of(&WRONG_SIGNATURE), "types"),
        (component_of(&READS_FILE), "wasi:filesystem"),
        (component_of(&OPENS_SOCKET), "wasi:sockets"),
        (component_of(&CONDITION_NOT_JSON), "did not return JSON"),
        (component_of(&CONDITION_BAD_PATTERN), "$strnig"),
        (component_of(&CONDITION_LOOPS), "did not return within the deadline"),
    ];
    for (bytes, cause) in bad {
        let (status, error) = server.call(reqwest::Method::PUT, "/v1/steps/probe", Some(bytes)).await;
        assert_eq!(status, 422, "{error}");
        let message = error_message(&error);
        assert!(
            message.contains("probe") && message.contains(cause),
            "{cause}: {message}"
        );
    }
    let (_, after) = server.get("/v1/steps/probe").await;
    assert_eq!(after["version"], v1["version"]);
    assert_eq!(
        after["versions"].as_array().map(Vec::len),
        Some(1),
        "nothing refused was stored"
    );
    let task = server.run(json!({"start": true})).await;
    assert_eq!(task["data"]["a"], "A");
    assert_eq!(runs(&task)[0]["version"], v1["version"]);
    server.stop().await;
}

/// Misbehaving runs over the service, side by side with normal tasks: each fails with its error
/// in the stored history, and every task (earlier ones too) is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_runs_lose_nothing_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let steps: [StepFiles; 7] = [
        WRITE_A,
        COMPLETES,
        INFINITE_LOOP,
        MEMORY_BOMB,
        DEEP_RECURSION,
        CONNECTOR_FLOOD,
        HUGE_LOGS,
    ];
    let server = start(&db, &steps, options()).await;
    let earlier = server.run(json!({"finish": true})).await;
    assert_eq!(earlier["status"], "completed");

    let attacks = [
        (json!({"loopForever": true}), "infinite-loop", "deadline"),
        (json!({"eatMemory": true}), "memory-bomb", "memory"),
        (json!({"recurseDeeply": true}), "deep-recursion", "stack-overflow"),
        (
            json!({"floodConnectors": true}),
            "connector-flood",
            "too-many-connector-calls",
        ),
    ];
    let (bad, normal, logs) = tokio::join!(
        futures_all(&server, attacks.iter().map(|(data, _, _)| data.clone()).collect()),
        server.run(json!({"start": true})),
        server.run(json!({"hugeLogs": true})),
    );
    assert_eq!(normal["status"], "waiting", "{normal}");
    assert_eq!(normal["data"]["a"], "A");
    assert_eq!(logs["status"], "waiting");
    assert!(
        logs.to_string().len() < (1 << 20) + (64 << 10),
        "the stored log is bounded"
    );
    for (task, (data, step, kind)) in bad.iter().zip(&attacks) {
        assert_eq!(task["status"], "failed", "{step}: {}", task["message"]);
        assert_eq!(&task["data"], data, "{step}: nothing applied");
        let run = &runs(task)[0];
        assert_eq!(run["step"], *step);
        assert_eq!(run["outcome"]["error"]["kind"], *kind, "{step}: {run}");
    }

    // A restart on the same database: every task is there as it was.
    server.stop().await;
    let server = start(&db, &[], options()).await;
    for before in bad.iter().chain([&earlier, &normal, &logs]) {
        let id = before["id"].as_str().expect("id");
        let (status, after) = server.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(after["status"], before["status"]);
        assert_eq!(after["data"], before["data"]);
        assert_eq!(after["runs"], before["runs"]);
    }
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// Runs every task at once over the API, each to its settled state.
async fn futures_all(server: &crate::service::Server, tasks: Vec<Value>) -> Vec<Value> {
    let mut ids = Vec::new();
    for data in tasks {
        let (status, created) = server.post("/v1/tasks", &data).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let mut settled = Vec::new();
    for id in ids {
        settled.push(server.until(&id, |t| t["status"] != "running").await);
    }
    settled
}
