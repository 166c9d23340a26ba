//! Shared helpers of the end-to-end tests: a host with chosen test components, and running tasks.

use std::sync::Arc;

use serde_json::{Value, json};
use whenever::runtime::{LoadError, LoadedStep, StepManifest};
use whenever::task::{RunOutcomeRecord, RunRecord, Task, TaskStatus};
use whenever::{Host, HostOptions, SetupError};
use whenever_step_artifacts::StepFiles;

/// A host with no steps but those given (test components by path, with their manifests).
pub async fn host_with(steps: &[StepFiles]) -> Host {
    let host = Host::start(&HostOptions {
        no_steps: true,
        ..HostOptions::default()
    })
    .await
    .expect("host starts");
    for step in steps {
        deploy(&host, step).await.expect("test component loads");
    }
    host
}

/// Starts a host without the bundled steps, with a config file holding `config`; the folder
/// holding the file comes back too (the host reads the file at start only).
pub async fn host_with_config(config: &str) -> (tempfile::TempDir, Result<Host, SetupError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("whenever.toml");
    std::fs::write(&path, config).expect("config written");
    let host = Host::start(&HostOptions {
        config: Some(path),
        no_steps: true,
        ..HostOptions::default()
    })
    .await;
    (dir, host)
}

/// Loads one test component into the host's catalog, with its `step.toml`.
pub async fn deploy(host: &Host, step: &StepFiles) -> Result<Arc<LoadedStep>, LoadError> {
    deploy_as(host, step.name, step, manifest_of(step)).await
}

/// Loads a test component as step `name` with the given manifest (another grant, no manifest).
pub async fn deploy_as(
    host: &Host,
    name: &str,
    step: &StepFiles,
    manifest: StepManifest,
) -> Result<Arc<LoadedStep>, LoadError> {
    let loaded = host
        .scheduler
        .runtime()
        .load(name, &component_of(step), manifest)
        .await?;
    host.scheduler.catalog().insert(loaded);
    Ok(host.scheduler.catalog().get(name).expect("just deployed"))
}

/// A test component's bytes.
pub fn component_of(step: &StepFiles) -> Vec<u8> {
    std::fs::read(step.component).expect("component built by whenever-step-artifacts")
}

/// A test component's manifest (`step.toml`).
pub fn manifest_of(step: &StepFiles) -> StepManifest {
    let text = std::fs::read_to_string(step.manifest).expect("manifest");
    StepManifest::from_toml(&text).expect("valid manifest")
}

/// Runs `bad` and a normal task (`write-a` must be deployed) at the same time; checks the
/// normal one is unaffected and returns the other.
pub async fn run_beside_a_normal_task(host: &Host, bad: Value) -> Task {
    let (bad_task, good_task) = tokio::join!(run_task(host, bad), run_task(host, json!({"start": true})));
    assert_normal_task_unaffected(&good_task);
    bad_task
}

/// Deploys `step` (with its `step.toml`) while a normal task runs (`write-a` must be
/// deployed); checks the normal one is unaffected and returns why the deploy was refused.
pub async fn refused_beside_a_normal_task(host: &Host, step: &StepFiles) -> LoadError {
    let (refused, good_task) = tokio::join!(deploy(host, step), run_task(host, json!({"start": true})));
    assert_normal_task_unaffected(&good_task);
    let error = refused.expect_err("the deploy is refused");
    assert!(
        host.scheduler.catalog().get(step.name).is_none(),
        "{} was not deployed",
        step.name
    );
    error
}

fn assert_normal_task_unaffected(task: &Task) {
    assert_status(task, TaskStatus::Waiting);
    assert_eq!(task.data["a"], json!("A"), "the normal task is unaffected");
    assert_eq!(runs_of(task, "write-a").len(), 1);
}

/// Runs a task over `data` until it settles.
pub async fn run_task(host: &Host, data: Value) -> Task {
    let mut task = Task::new(data);
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    task
}

/// The runs of one step in a task's history.
pub fn runs_of<'a>(task: &'a Task, step: &str) -> Vec<&'a RunRecord> {
    task.runs.iter().filter(|r| r.step == step).collect()
}

/// The error message of a step's only (or latest) run; panics when it succeeded.
pub fn error_of(task: &Task, step: &str) -> whenever::runtime::RunError {
    let run = runs_of(task, step)
        .into_iter()
        .next_back()
        .unwrap_or_else(|| panic!("{step} never ran"));
    match &run.outcome {
        Some(RunOutcomeRecord::Error(e)) => e.clone(),
        other => panic!("{step} did not fail: {other:?}"),
    }
}

/// Asserts the status, printing the task when it differs.
pub fn assert_status(task: &Task, status: TaskStatus) {
    assert_eq!(
        task.status,
        status,
        "task ended {} ({:?}); runs: {:#?}",
        task.status,
        task.message,
        task.runs.iter().map(|r| (&r.step, &r.outcome)).collect::<Vec<_>>()
    );
}
