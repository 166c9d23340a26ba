//! Shared helpers of the end-to-end tests: a host with chosen test components, and running tasks.

use std::sync::Arc;

use serde_json::Value;
use whenever::runtime::{LoadedStep, StepManifest};
use whenever::task::{RunOutcomeRecord, RunRecord, Task, TaskStatus};
use whenever::{Host, HostOptions};
use whenever_step_artifacts::StepFiles;

/// A host with no steps but those given (test components by path, with their manifests).
pub async fn host_with(steps: &[StepFiles]) -> Host {
    let host = Host::start(&HostOptions { no_steps: true, ..HostOptions::default() })
        .await
        .expect("host starts");
    for step in steps {
        deploy(&host, step).await.expect("test component loads");
    }
    host
}

/// Loads one test component into the host's catalog.
pub async fn deploy(host: &Host, step: &StepFiles) -> Result<Arc<LoadedStep>, whenever::runtime::LoadError> {
    let bytes = std::fs::read(step.component).expect("component built by whenever-step-artifacts");
    let manifest_text = std::fs::read_to_string(step.manifest).expect("manifest");
    let manifest = StepManifest::from_toml(&manifest_text).expect("valid manifest");
    let loaded = host.scheduler.runtime().load(step.name, &bytes, manifest).await?;
    host.scheduler.catalog().insert(loaded);
    Ok(host.scheduler.catalog().get(step.name).expect("just deployed"))
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
    let run = runs_of(task, step).into_iter().next_back().unwrap_or_else(|| panic!("{step} never ran"));
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
