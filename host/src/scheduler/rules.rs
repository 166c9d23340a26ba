//! The scheduling rules of design.md, as pure functions over a task and the deployed steps.
//!
//! A step starts when its condition matches and the projection of the data onto the paths its
//! condition names differs from the one at its last start (or it never ran), or when its last run
//! asked for a redo. A step never runs twice at once on the same task.

use std::collections::HashSet;
use std::sync::Arc;

use crate::runtime::LoadedStep;
use crate::task::{Task, TaskStatus};

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
            let progress = task.progress.get(&step.name);
            let changed = progress.is_none_or(|p| p.last_projection.as_ref() != Some(&projection));
            let redo = progress.is_some_and(|p| p.redo);
            (changed || redo).then(|| Eligible {
                step: step.clone(),
                projection,
            })
        })
        .collect()
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
