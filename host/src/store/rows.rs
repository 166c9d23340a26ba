//! How tasks and runs are encoded into table rows: JSON as text, times as RFC 3339 text. Both
//! backends store the task row this way; the run rows are PostgreSQL's (SQLite keeps runs in its
//! task log, [`super::task_log`]).
//!
//! A starting run's input is, in the common case, exactly the data the same save writes into the
//! task row; such a run row stores no copy but the flag `input_from_task`. Before a later save
//! changes the task's data, the backend copies the data into the flagged runs that are still
//! unfinished, so an interrupted run always finds the data it started from. That keeps the
//! snapshot out of the common write path (a 3 KB order once per save instead of once more per
//! starting run).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{StepChangeKind, StoreError, TaskSave};
use crate::request_key::RequestKey;
use crate::task::{Task, TaskStatus};

/// A stored value could not be decoded (or encoded).
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A value as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("cannot encode", e))
}

/// A time as stored: RFC 3339 with nanoseconds, UTC.
pub(crate) fn time_text(t: &DateTime<Utc>) -> String {
    crate::rfc3339::text(t, chrono::SecondsFormat::Nanos)
}

/// A stored time.
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("time", e))
}

/// A stored status.
pub(crate) fn parse_status(text: &str) -> Result<TaskStatus, StoreError> {
    serde_json::from_value(Value::String(text.to_string())).map_err(|e| corrupt("status", e))
}

/// A stored kind of step change.
pub(crate) fn step_change_kind(text: &str) -> Result<StepChangeKind, StoreError> {
    StepChangeKind::parse(text).ok_or_else(|| corrupt("step change", format!("unknown kind {text:?}")))
}

/// A stored idempotency key ([`RequestKey`] as JSON text), if the task has one.
pub(crate) fn parse_request_key(text: Option<&str>) -> Result<Option<RequestKey>, StoreError> {
    text.map(|text| serde_json::from_str(text).map_err(|e| corrupt("idempotency key", e)))
        .transpose()
}

/// A running task refused a delete (a drive may still write it).
pub(crate) fn still_running(id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "task {id} is running; delete it once it is waiting, failed or completed"
    ))
}

/// A non-negative number as the databases' signed 64-bit integer.
pub(crate) fn signed(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|e| corrupt(what, e))
}

/// The columns of a task row, encoded. `D` is how the data is held: `String` for a row written
/// whole, `Option<String>` where a save may leave the data out (the SQLite task log).
pub(crate) struct TaskRow<D = String> {
    pub id: String,
    pub status: &'static str,
    pub name: Option<String>,
    pub tags: String,
    pub message: Option<String>,
    pub data: D,
    pub progress: String,
    pub created_at: String,
    pub updated_at: String,
}

impl TaskRow {
    /// The row of `task`, written `at`; `data_text` is `task.data` already encoded, if the caller
    /// has it.
    pub fn of(task: &Task, data_text: Option<&str>, at: &DateTime<Utc>) -> Result<TaskRow, StoreError> {
        let data = match data_text {
            Some(text) => text.to_owned(),
            None => to_json(&task.data)?,
        };
        TaskRow::with(task, data, at)
    }
}

impl<D> TaskRow<D> {
    /// The row of `task`, written `at`, holding `data` as its data.
    pub fn with(task: &Task, data: D, at: &DateTime<Utc>) -> Result<TaskRow<D>, StoreError> {
        TaskRow::with_progress(task, data, to_json(&task.progress)?, at)
    }

    /// [`TaskRow::with`] holding `progress` (encoded) rather than all of the task's.
    pub fn with_progress(task: &Task, data: D, progress: String, at: &DateTime<Utc>) -> Result<TaskRow<D>, StoreError> {
        Ok(TaskRow {
            id: task.id.clone(),
            status: task.status.as_str(),
            name: task.name.clone(),
            tags: to_json(&task.tags)?,
            message: task.message.clone(),
            data,
            progress,
            created_at: time_text(&task.created_at),
            updated_at: time_text(at),
        })
    }
}

/// A run record, encoded, with how to find its input when it is starting.
pub(crate) struct RunRow {
    pub run_id: i64,
    pub step: String,
    pub version: String,
    pub finished: bool,
    pub record: String,
    /// The input, when it differs from the data saved with it.
    pub input: Option<String>,
    /// The input is the task's data as this save writes it.
    pub input_from_task: bool,
}

/// The rows of the runs a save names; starting runs point at the saved data when it is their
/// input, and carry their input otherwise.
pub(crate) fn run_rows(save: &TaskSave<'_>) -> Result<Vec<RunRow>, StoreError> {
    let from_task = save.starts_on_saved_data();
    let input_text = match save.input {
        Some(input) if !from_task => Some(to_json(input)?),
        _ => None,
    };
    save.runs
        .iter()
        .filter_map(|id| save.task.runs.get(*id as usize).map(|r| (*id, r)))
        .map(|(id, run)| {
            let starting = save.input.is_some() && save.starting.contains(&id);
            Ok(RunRow {
                run_id: signed(id, "run id")?,
                step: run.step.clone(),
                version: run.version.clone(),
                finished: run.outcome.is_some(),
                record: to_json(run)?,
                input: if starting { input_text.clone() } else { None },
                input_from_task: starting && from_task,
            })
        })
        .collect()
}

/// The unfinished runs of a task with their inputs (one parameter: the task id): a run flagged
/// `input_from_task` takes the task's current data (no save changed it since the run started).
pub(crate) const UNFINISHED_RUN_INPUTS: &str =
    "SELECT r.run_id, CASE WHEN r.input_from_task THEN t.data ELSE r.input END
     FROM runs r JOIN tasks t ON t.id = r.task_id
     WHERE r.task_id = $1 AND NOT r.finished ORDER BY r.run_id";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::task::RunRecord;

    fn starting_run(id: u64) -> RunRecord {
        RunRecord::starting(id, "s", "v", 1)
    }

    #[test]
    fn a_starting_run_on_the_saved_data_stores_no_copy() {
        let mut task = Task::new(json!({"a": 1}));
        task.runs.push(starting_run(0));
        let input = task.data.clone();
        let save = TaskSave {
            task: &task,
            expected_revision: 1,
            runs: &[0],
            starting: &[0],
            input: Some(&input),
            data_text: None,
            applied: None,
        };
        let rows = run_rows(&save).expect("encoded");
        assert!(rows[0].input_from_task);
        assert_eq!(rows[0].input, None);
    }

    #[test]
    fn a_starting_run_on_other_data_carries_it() {
        let mut task = Task::new(json!({"a": 1}));
        task.runs.push(starting_run(0));
        task.runs.push(starting_run(1));
        let input = json!({"a": 0});
        let save = TaskSave {
            task: &task,
            expected_revision: 1,
            runs: &[0, 1],
            starting: &[1],
            input: Some(&input),
            data_text: None,
            applied: None,
        };
        let rows = run_rows(&save).expect("encoded");
        assert!(!rows[0].input_from_task && rows[0].input.is_none());
        assert!(!rows[1].input_from_task);
        assert_eq!(rows[1].input.as_deref(), Some(r#"{"a":0}"#));
    }
}
