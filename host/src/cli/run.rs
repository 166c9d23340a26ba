//! `whenever run [TASK.json] [--steps DIR]... [--retailmax] [--config FILE]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::client::waiting_on;
use super::input::read_json;
use super::printable::printable;
use super::timeline::Timeline;
use super::{EXIT_BAD_INPUT, EXIT_INTERNAL, exit_for};
use crate::catalog;
use crate::host::{Host, HostOptions};
use crate::runtime::LoadedStep;
use crate::scheduler::rules::{self, Standing};
use crate::task::{Task, TaskStatus};

/// Runs one task to settlement; stdout gets the final task as JSON, stderr the timeline.
pub(crate) async fn run(
    task_path: Option<&Path>,
    steps: &[PathBuf],
    retailmax: bool,
    config: Option<&Path>,
    quiet: bool,
) -> u8 {
    let data = match read_task(task_path) {
        Ok(data) => data,
        Err(message) => {
            eprintln!("whenever run: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    for warning in catalog::stray_manifest_warnings(steps) {
        eprintln!("whenever run: warning: {warning}");
    }
    let options = HostOptions {
        steps: steps.to_vec(),
        with_bundled: retailmax,
        config: config.map(Path::to_path_buf),
        no_steps: false,
    };
    let host = match Host::start(&options).await {
        Ok(host) => host,
        Err(e) => {
            eprintln!("whenever run: {e}");
            return if e.is_bad_input() {
                EXIT_BAD_INPUT
            } else {
                EXIT_INTERNAL
            };
        }
    };
    let mut task = Task::new(data);
    let mut timeline = Timeline::new(!quiet);
    let status = host
        .scheduler
        .drive(&mut task, &mut |event| timeline.event(&event))
        .await;
    if status == TaskStatus::Waiting && !quiet {
        // What it waits on, as `whenever task` shows it: a step whose condition never held
        // would otherwise leave no trace.
        let standings = rules::standings(&task, &host.scheduler.catalog().snapshot());
        eprint!("{}", waiting_on(&json!({ "steps": standings })));
    } else if !quiet {
        // A step of one's own that never ran on a task that completed or failed (its condition
        // mistyped, or the flow completing before it) would otherwise leave no trace.
        eprint!("{}", never_ran(&task, status, &your_steps(steps, &host)));
    }
    match serde_json::to_string_pretty(&task.summary_json()) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("whenever run: cannot print the task: {e}");
            return EXIT_INTERNAL;
        }
    }
    exit_for(status)
}

/// The steps loaded from the `--steps` paths (not the bundled ones), as the catalog serves them.
fn your_steps(paths: &[PathBuf], host: &Host) -> Vec<Arc<LoadedStep>> {
    let names: Vec<String> = paths
        .iter()
        .flat_map(|path| catalog::step_files(path).unwrap_or_default())
        .map(|file| catalog::step_name(&file))
        .collect();
    let served = host.scheduler.catalog().snapshot();
    served
        .iter()
        .filter(|step| names.contains(&step.name))
        .cloned()
        .collect()
}

/// Which of `yours` never ran on `task`, settled as `status`, and why: each condition against
/// the final data (empty when all of them ran).
fn never_ran(task: &Task, status: TaskStatus, yours: &[Arc<LoadedStep>]) -> String {
    let idle: Vec<Arc<LoadedStep>> = yours
        .iter()
        .filter(|step| !task.runs.iter().any(|run| run.step == step.name))
        .cloned()
        .collect();
    let width = idle.iter().map(|step| step.name.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for standing in rules::standings(task, &idle) {
        if out.is_empty() {
            out.push_str("did not run (each step's condition against the final data)\n");
        }
        let why = match standing.standing {
            Standing::Fails { reason, .. } | Standing::Done { reason, .. } => reason,
            _ if status == TaskStatus::Completed => "its condition holds, but the task completed first \
                (after a step's task::complete no run starts)"
                .to_string(),
            _ => format!("its condition holds, but the task {status} first"),
        };
        out.push_str(&format!("  {:<width$}  {}\n", standing.step, printable(&why)));
    }
    out
}

/// Reads the task data (a file, or stdin: see [`read_json`]): a JSON object.
fn read_task(path: Option<&Path>) -> Result<Value, String> {
    let (data, input) = read_json(path, "the task data")?;
    if !data.is_object() {
        return Err(format!("{} must be a JSON object", input.source));
    }
    // As the server refuses it.
    if let Some(why) = crate::task::too_deep(&input.source, crate::task::nesting(&data)) {
        return Err(why);
    }
    Ok(data)
}
