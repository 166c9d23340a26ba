//! The scheduling rules, as pure functions over a task and the deployed steps.
//!
//! A step starts when its condition matches and the projection of the data onto the paths its
//! condition names differs from the one at its last start (or it never ran), or when its last run
//! asked for a redo. A step never runs twice at once on the same task.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use whenever_condition::Condition;

use crate::runtime::LoadedStep;
use crate::task::{StepProgress, Task, TaskStatus};

/// A step that should start now, with the projection it starts on.
#[derive(Debug, Clone)]
pub struct Eligible {
    /// The step.
    pub step: Arc<LoadedStep>,
    /// The digest of the projection of the data onto the step's condition paths, to remember
    /// at start.
    pub projection: String,
}

/// The steps that should start on `task` now, given those already in flight.
pub fn eligible(task: &Task, steps: &[Arc<LoadedStep>], in_flight: &HashSet<String>) -> Vec<Eligible> {
    steps
        .iter()
        .filter(|step| !in_flight.contains(&step.name))
        .filter(|step| step.condition.matches(&task.data))
        .filter_map(|step| {
            let projection = step.condition.projection_digest(&task.data);
            starts(task.progress.get(&step.name), &projection).then(|| Eligible {
                step: step.clone(),
                projection,
            })
        })
        .collect()
}

/// Whether a step whose condition holds starts, given its progress on the task and the digest of
/// the data's projection now: it never started, started on other values, or asked for a redo.
fn starts(progress: Option<&StepProgress>, projection: &str) -> bool {
    progress.is_none_or(|p| p.redo || p.last_projection.as_deref() != Some(projection))
}

/// Where one step stands on a task, by the rules above: why it does not run, or that it would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Its condition does not hold: the first failing path and why (`order.fraudApproved:
    /// missing`).
    Fails {
        /// What fails, as [`whenever_condition::Mismatch`] says it.
        reason: String,
        /// How many of its runs started on this task (absent for none).
        #[serde(default, skip_serializing_if = "is_zero")]
        runs: u32,
    },
    /// Its condition does not hold on a path its latest run wrote (a guard such as
    /// `tierAnalyzed: null` that its own run set): it ran, and is done unless that data changes.
    Done {
        /// What fails, as [`whenever_condition::Mismatch`] says it.
        reason: String,
        /// How many of its runs started on this task.
        runs: u32,
    },
    /// Its condition holds and it started on these values already: it runs again when they
    /// change (or when it is retried).
    Ran {
        /// How many of its runs started on this task.
        runs: u32,
        /// Whether its latest finished run failed.
        last_failed: bool,
    },
    /// Its condition holds on values it has not started on (or its last run asked for a redo):
    /// it starts now, or is under way.
    Eligible,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One step's standing on a task, with the step's name and version (what `GET
/// /v1/tasks/{id}/conditions` lists, and `whenever run` prints for a task left waiting).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStanding {
    /// The step's name.
    pub step: String,
    /// Its version.
    pub version: String,
    /// Where it stands: `state` (`fails`, `ran`, `eligible`) with its details.
    #[serde(flatten)]
    pub standing: Standing,
}

/// Where each of `steps` stands on `task`, in their order.
pub fn standings(task: &Task, steps: &[Arc<LoadedStep>]) -> Vec<StepStanding> {
    steps
        .iter()
        .map(|step| StepStanding {
            step: step.name.clone(),
            version: step.version.clone(),
            standing: standing(task, &step.name, &step.condition),
        })
        .collect()
}

/// Where the step `name` with `condition` stands on `task`: the rule of [`eligible`], told.
pub fn standing(task: &Task, name: &str, condition: &Condition) -> Standing {
    let progress = task.progress.get(name);
    if let Err(mismatch) = condition.explain(&task.data) {
        let (reason, runs) = (mismatch.to_string(), progress.map_or(0, |p| p.runs));
        if runs > 0 && latest_run_wrote(task, name, &mismatch.path) {
            return Standing::Done { reason, runs };
        }
        return Standing::Fails { reason, runs };
    }
    match progress {
        Some(p) if !starts(progress, &condition.projection_digest(&task.data)) => Standing::Ran {
            runs: p.runs,
            last_failed: p.last_failed,
        },
        _ => Standing::Eligible,
    }
}

/// Whether the latest run of step `name` on `task` changed the data at `path` (keys joined by
/// `.`, as a [`whenever_condition::Mismatch`] names it), or above or below it.
fn latest_run_wrote(task: &Task, name: &str, path: &str) -> bool {
    let Some(run) = task.runs.iter().rev().find(|run| run.step == name) else {
        return false;
    };
    run.changes.iter().any(|change| {
        let written = super::output_diff::dotted(change.path());
        written == path || path.starts_with(&format!("{written}.")) || written.starts_with(&format!("{path}."))
    })
}

/// The version of what [`reevaluate`] decides: a host whose rules differ from those the tasks
/// were last re-evaluated under makes a start's pass again (part of the store's mark). Raise it
/// whenever `reevaluate` or eligibility changes.
pub const REEVALUATION_RULES: u32 = 1;

/// Readies a settled `task` to be driven again after the serving steps changed (a deploy, a
/// rollback, a version loaded as a host starts), and answers whether it should be. A failed
/// step among `changed` (`None`: all of `steps`) whose latest run on the task was of another
/// version than the one serving, and whose condition holds, is asked to run again: a fixed step
/// picks up the tasks it failed. Otherwise the task is driven when a step is eligible on it.
/// Asked again with the same steps it asks for nothing more, so every host of a cluster may
/// ask, at any time: a re-evaluation cut short by a crash is done again at the next start.
pub fn reevaluate(task: &mut Task, steps: &[Arc<LoadedStep>], changed: Option<&str>) -> bool {
    if matches!(task.status, TaskStatus::Running | TaskStatus::Completed) {
        return false;
    }
    let mut redo = false;
    for step in steps.iter().filter(|s| changed.is_none_or(|name| s.name == name)) {
        if !task.progress.get(&step.name).is_some_and(|p| p.last_failed) {
            continue;
        }
        let latest = task.runs.iter().rev().find(|run| run.step == step.name);
        if latest.is_some_and(|run| run.version == step.version) || !step.condition.matches(&task.data) {
            continue;
        }
        if let Some(progress) = task.progress.get_mut(&step.name) {
            progress.redo = true;
            redo = true;
        }
    }
    redo || !eligible(task, steps, &HashSet::new()).is_empty()
}

/// The status of a task on which nothing is in flight and nothing is eligible.
pub fn settled_status(task: &Task, completed: bool, cap_hit: bool) -> TaskStatus {
    if completed {
        TaskStatus::Completed
    } else if cap_hit || task.progress.values().any(|p| p.last_failed) {
        TaskStatus::Failed
    } else {
        TaskStatus::Waiting
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_step_stands_failing_ran_or_eligible_as_the_rules_decide() {
        let condition =
            Condition::parse(&json!({"order": {"total": "$number", "fraudApproved": true}})).expect("condition");
        let mut task = Task::new(json!({"order": {"total": 900}}));
        assert_eq!(
            standing(&task, "payment", &condition),
            Standing::Fails {
                reason: "order.fraudApproved: missing".into(),
                runs: 0
            }
        );
        task.data["order"]["fraudApproved"] = json!(true);
        assert_eq!(standing(&task, "payment", &condition), Standing::Eligible, "never ran");
        let started_on = condition.projection_digest(&task.data);
        task.progress.insert(
            "payment".into(),
            StepProgress {
                last_projection: Some(started_on),
                runs: 1,
                ..StepProgress::default()
            },
        );
        assert_eq!(
            standing(&task, "payment", &condition),
            Standing::Ran {
                runs: 1,
                last_failed: false
            }
        );
        // Another value it tests: it runs again. A value it does not test changes nothing.
        task.data["order"]["note"] = json!("gift");
        assert!(matches!(standing(&task, "payment", &condition), Standing::Ran { .. }));
        task.data["order"]["total"] = json!(950);
        assert_eq!(standing(&task, "payment", &condition), Standing::Eligible);
        // A redo asked for: eligible on the same values.
        task.data["order"]["total"] = json!(900);
        assert!(matches!(standing(&task, "payment", &condition), Standing::Ran { .. }));
        if let Some(progress) = task.progress.get_mut("payment") {
            progress.redo = true;
        }
        assert_eq!(standing(&task, "payment", &condition), Standing::Eligible);
        // Once it ran, a condition that fails says how often it ran (on what it wrote, most
        // often: it is done).
        task.data["order"]["fraudApproved"] = json!(false);
        assert_eq!(
            standing(&task, "payment", &condition),
            Standing::Fails {
                reason: "order.fraudApproved: expected true, found false".into(),
                runs: 1
            }
        );
        // On a path its latest run wrote: done.
        let mut run = crate::task::RunRecord::starting(0, "payment", "v1", 1);
        run.changes = vec![crate::scheduler::merge::Change::Set {
            path: "/order/fraudApproved".into(),
            value: json!(false),
        }];
        task.runs.push(run);
        assert_eq!(
            standing(&task, "payment", &condition),
            Standing::Done {
                reason: "order.fraudApproved: expected true, found false".into(),
                runs: 1
            }
        );
        assert_eq!(
            serde_json::to_value(standing(&task, "payment", &condition)).ok(),
            Some(json!({"state": "done", "reason": "order.fraudApproved: expected true, found false", "runs": 1}))
        );
    }
}
