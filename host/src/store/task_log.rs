//! The SQLite store's task log: what one save appends, and how a task's state, runs and
//! interrupted runs are read back from the appended records.
//!
//! Every save appends one record keyed by (task sequence number, revision): the task's state as
//! saved (status, name, tags, message, data, progress) and the run records the save names. The
//! task row is rewritten only when what listings show changes (status, name, tags, message), so a
//! running task's saves touch no page written before: under load the records of many tasks fill
//! the same few pages of one group commit. Rewriting the row (and the run and journal rows keyed
//! by the random task id) at every save made each save dirty pages of its own; the
//! `store_layout` bench measures the difference.
//!
//! - The latest state is the record with the highest revision (or the row, when no record is
//!   newer); the revision is that record's.
//! - A task's runs are the run records of all its records, a later record's copy of a run
//!   replacing an earlier one.
//! - A starting run's input is, in the common case, the data of the record it starts in (its id is
//!   listed in the record's `starting`); a run starting on other data has it in `run_inputs`.

use std::collections::BTreeMap;

use super::rows::{TaskRow, corrupt, signed, to_json};
use super::{StoreError, TaskSave};
use crate::task::RunRecord;

/// One save, encoded: the record to append and the inputs that are not the saved data.
pub(crate) struct SaveRecord {
    /// The task's state as saved (also the row, when the row is rewritten).
    pub row: TaskRow,
    /// The run records the save names, as a JSON array.
    pub runs: String,
    /// The ids of the runs starting on `row.data`, as a JSON array (`None`: none).
    pub starting: Option<String>,
    /// Starting runs whose input is other data, with that data as JSON text.
    pub other_inputs: Vec<(i64, String)>,
}

impl SaveRecord {
    /// Encodes `save`.
    pub fn of(save: &TaskSave<'_>) -> Result<SaveRecord, StoreError> {
        let row = TaskRow::of(save.task, save.data_text)?;
        let runs = runs_text(save.task, save.runs)?;
        let on_data = save.starts_on_saved_data();
        let starting_ids: Vec<u64> = match save.input {
            Some(_) => save
                .starting
                .iter()
                .copied()
                .filter(|id| (*id as usize) < save.task.runs.len())
                .collect(),
            None => Vec::new(),
        };
        let mut starting = None;
        let mut other_inputs = Vec::new();
        if let Some(input) = save.input.filter(|_| !starting_ids.is_empty()) {
            if on_data {
                starting = Some(to_json(&starting_ids)?);
            } else {
                let text = to_json(input)?;
                for id in &starting_ids {
                    other_inputs.push((signed(*id, "run id")?, text.clone()));
                }
            }
        }
        Ok(SaveRecord {
            row,
            runs,
            starting,
            other_inputs,
        })
    }
}

/// The run records `ids` of `task` as one JSON array.
pub(crate) fn runs_text(task: &crate::task::Task, ids: &[u64]) -> Result<String, StoreError> {
    let mut text = String::from("[");
    for run in ids.iter().filter_map(|id| task.runs.get(*id as usize)) {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&to_json(run)?);
    }
    text.push(']');
    Ok(text)
}

/// A task's runs from the `runs` arrays of its records, oldest record first: a later copy of a
/// run replaces an earlier one.
pub(crate) fn merge_runs<'a>(records: impl IntoIterator<Item = &'a str>) -> Result<Vec<RunRecord>, StoreError> {
    let mut runs: BTreeMap<u64, RunRecord> = BTreeMap::new();
    for text in records {
        let named: Vec<RunRecord> = serde_json::from_str(text).map_err(|e| corrupt("run records", e))?;
        for run in named {
            runs.insert(run.id, run);
        }
    }
    let runs: Vec<RunRecord> = runs.into_values().collect();
    if runs.iter().enumerate().any(|(i, run)| run.id != i as u64) {
        return Err(StoreError::Corrupt(
            "run records: the run ids are not 0, 1, 2, ...".into(),
        ));
    }
    Ok(runs)
}

/// One record as [`interrupted`] reads it: its data, its run records and its starting runs.
pub(crate) struct RunsRecord {
    /// The data saved (JSON text).
    pub data: String,
    /// The run records it names (a JSON array).
    pub runs: String,
    /// The ids of the runs starting on `data` (a JSON array), if any.
    pub starting: Option<String>,
}

/// The runs that started and never finished, oldest first, with the data each started from
/// (JSON text): from `other_inputs` when listed there, else the data of the record it started
/// in. A run whose input is nowhere is left out (it cannot be re-run).
pub(crate) fn interrupted(
    records: &[RunsRecord],
    other_inputs: &BTreeMap<u64, String>,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut finished: BTreeMap<u64, bool> = BTreeMap::new();
    let mut started_on: BTreeMap<u64, usize> = BTreeMap::new();
    for (at, record) in records.iter().enumerate() {
        let named: Vec<RunRecord> = serde_json::from_str(&record.runs).map_err(|e| corrupt("run records", e))?;
        for run in named {
            finished.insert(run.id, run.outcome.is_some());
        }
        if let Some(starting) = &record.starting {
            let ids: Vec<u64> = serde_json::from_str(starting).map_err(|e| corrupt("starting runs", e))?;
            for id in ids {
                started_on.insert(id, at);
            }
        }
    }
    Ok(finished
        .into_iter()
        .filter(|(_, done)| !done)
        .filter_map(|(id, _)| {
            let input = other_inputs
                .get(&id)
                .cloned()
                .or_else(|| started_on.get(&id).map(|at| records[*at].data.clone()))?;
            Some((id, input))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::task::{RunOutcomeRecord, Task};

    fn task_with_runs(n: u64) -> Task {
        let mut task = Task::new(json!({"a": 1}));
        for id in 0..n {
            task.runs.push(RunRecord::starting(id, "s", "v", 1));
        }
        task
    }

    #[test]
    fn runs_starting_on_the_saved_data_are_listed_not_copied() {
        let task = task_with_runs(2);
        let save = TaskSave {
            task: &task,
            expected_revision: 1,
            runs: &[0, 1],
            starting: &[1],
            input: Some(&task.data),
            data_text: None,
        };
        let record = SaveRecord::of(&save).expect("encoded");
        assert_eq!(record.starting.as_deref(), Some("[1]"));
        assert!(record.other_inputs.is_empty());
        assert_eq!(merge_runs([record.runs.as_str()]).expect("decoded"), task.runs);
    }

    #[test]
    fn a_run_starting_on_other_data_carries_it() {
        let task = task_with_runs(1);
        let other = json!({"a": 0});
        let save = TaskSave {
            task: &task,
            expected_revision: 1,
            runs: &[0],
            starting: &[0],
            input: Some(&other),
            data_text: None,
        };
        let record = SaveRecord::of(&save).expect("encoded");
        assert_eq!(record.starting, None);
        assert_eq!(record.other_inputs, vec![(0, r#"{"a":0}"#.to_string())]);
    }

    #[test]
    fn later_copies_of_a_run_replace_earlier_ones_and_finished_runs_are_not_interrupted() {
        let mut task = task_with_runs(2);
        let first = RunsRecord {
            data: r#"{"a":1}"#.into(),
            runs: runs_text(&task, &[0, 1]).expect("encoded"),
            starting: Some("[0,1]".into()),
        };
        task.runs[0].outcome = Some(RunOutcomeRecord::Ok);
        let second = RunsRecord {
            data: r#"{"a":2}"#.into(),
            runs: runs_text(&task, &[0]).expect("encoded"),
            starting: None,
        };
        let runs = merge_runs([first.runs.as_str(), second.runs.as_str()]).expect("decoded");
        assert_eq!(runs, task.runs);
        let records = [first, second];
        let open = interrupted(&records, &BTreeMap::new()).expect("read");
        assert_eq!(open, vec![(1, r#"{"a":1}"#.to_string())]);
        let elsewhere = BTreeMap::from([(1, r#"{"b":0}"#.to_string())]);
        let open = interrupted(&records, &elsewhere).expect("read");
        assert_eq!(open, vec![(1, r#"{"b":0}"#.to_string())]);
    }

    #[test]
    fn a_gap_in_the_run_ids_is_reported_as_corrupt() {
        let task = task_with_runs(2);
        let text = runs_text(&task, &[1]).expect("encoded");
        assert!(matches!(merge_runs([text.as_str()]), Err(StoreError::Corrupt(_))));
    }
}
