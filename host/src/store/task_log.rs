//! The SQLite store's task log: what one save appends, and how a task's state, runs and
//! interrupted runs are read back from the appended records.
//!
//! Every save appends one record keyed by (task sequence number, revision): the task's state as
//! saved (status, name, tags, message, progress), its data or how the data came to be, and the
//! run records the save names. The task row is rewritten only when what listings show changes
//! (status, name, tags, message), so a running task's saves touch no page written before: under
//! load the records of many tasks fill the same few pages of one group commit. Rewriting the row
//! (and the run and journal rows keyed by the random task id) at every save made each save dirty
//! pages of its own; the `store_layout` bench measures the difference.
//!
//! - **The data.** A record holds the whole data, or (a save that says only runs changed it,
//!   [`TaskSave::applied`]) the list of runs whose changes were merged since the previous record,
//!   in merge order: the data is then the previous record's with those runs' `changes` applied
//!   again ([`crate::scheduler::merge::apply`] is deterministic, so replaying gives the same data,
//!   skipped changes included). Without this, every save of a running order wrote its whole data
//!   (0.9 to 3.2 KB for the seed's order) again, though a wave of runs changes a few fields.
//! - **The progress** goes the same way: a record listing its runs holds only the progress of
//!   those runs' steps (a step's progress changes only when one of its runs starts or finishes,
//!   and entries are never removed), laid over the previous record's when read.
//! - The task row keeps the data it was created with (revision 1) and what listings show;
//!   schema-3 stores also rewrote it whole when the task settled, at that revision.
//! - The latest state is the record with the highest revision (or the row, when no record is
//!   newer); the revision is that record's. Its data: the newest whole data among the records
//!   newer than the row's revision (or the row's), with the later records' runs replayed.
//! - A task's runs are the run records of all its records, a later record's copy of a run
//!   replacing an earlier one.
//! - A starting run's input is, in the common case, the data at the record it starts in (its id is
//!   listed in the record's `starting`); a run starting on other data has it in `run_inputs`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::rows::{TaskRow, corrupt, signed, to_json};
use super::{StoreError, TaskSave};
use crate::scheduler::merge;
use crate::task::{RunRecord, StepProgress};

/// One save, encoded: the record to append and the inputs that are not the saved data.
pub(crate) struct SaveRecord {
    /// The task's state as saved (what listings show of it is also written to the row). Its
    /// data is there when the record holds it whole.
    pub row: TaskRow<Option<String>>,
    /// The runs whose changes were merged since the previous record, as a JSON array, when the
    /// record holds no data.
    pub applied: Option<String>,
    /// The run records the save names, as a JSON array.
    pub runs: String,
    /// The ids of the runs starting on the saved data, as a JSON array (`None`: none).
    pub starting: Option<String>,
    /// Starting runs whose input is other data, with that data as JSON text.
    pub other_inputs: Vec<(i64, String)>,
}

impl SaveRecord {
    /// Encodes `save`, made `at`.
    pub fn of(save: &TaskSave<'_>, at: &DateTime<Utc>) -> Result<SaveRecord, StoreError> {
        // The data is encoded only when the save does not say how it came to be.
        let applied = match save.applied {
            Some(ids) => Some(to_json(&ids)?),
            None => None,
        };
        let data = match (&applied, save.data_text) {
            (Some(_), _) => None,
            (None, Some(text)) => Some(text.to_owned()),
            (None, None) => Some(to_json(&save.task.data)?),
        };
        let progress = if applied.is_some() {
            // Only the steps of the runs a save names change their progress (a run starts or
            // finishes): the record holds theirs, over the previous record's.
            let named: BTreeMap<&str, &StepProgress> = save
                .runs
                .iter()
                .filter_map(|id| save.task.runs.get(*id as usize))
                .filter_map(|run| Some((run.step.as_str(), save.task.progress.get(&run.step)?)))
                .collect();
            to_json(&named)?
        } else {
            to_json(&save.task.progress)?
        };
        let row = TaskRow::with_progress(save.task, data, progress, at)?;
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
            applied,
            runs,
            starting,
            other_inputs,
        })
    }

    /// The data the record holds, if it holds it whole (a record listing applied runs does not).
    pub fn logged_data(&self) -> Option<&str> {
        self.row.data.as_deref().filter(|_| self.applied.is_none())
    }

    /// The record of a task's creation, whose row holds the data: the record holds none, and
    /// lists no runs applied (the data at its revision is the row's).
    pub fn leaving_data_to_row(self) -> SaveRecord {
        SaveRecord {
            applied: Some("[]".to_owned()),
            ..self
        }
    }
}

/// The run records `ids` of `task` as one JSON array.
pub(crate) fn runs_text(task: &crate::task::Task, ids: &[u64]) -> Result<String, StoreError> {
    let runs: Vec<&RunRecord> = ids.iter().filter_map(|id| task.runs.get(*id as usize)).collect();
    // Written into one buffer of about a kilobyte per record (a finished RetailMax run's is 0.7
    // to 2.5 KB): most saves allocate once, and no record is copied from a text of its own.
    let mut text = Vec::with_capacity(runs.len() * 1024 + 2);
    serde_json::to_writer(&mut text, &runs).map_err(|e| corrupt("cannot encode", e))?;
    String::from_utf8(text).map_err(|e| corrupt("cannot encode", e))
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

/// One record as the readers read it back.
pub(crate) struct LoggedRecord {
    /// Its revision.
    pub revision: i64,
    /// The run records it names (a JSON array).
    pub runs: String,
    /// The data it holds whole (JSON text), if it does (and the reader asked for it).
    pub data: Option<String>,
    /// The runs whose changes were merged since the previous record (a JSON array), when it
    /// holds no data.
    pub applied: Option<String>,
    /// The ids of the runs starting on its data (a JSON array), if any.
    pub starting: Option<String>,
    /// The steps' progress it holds (and the reader asked for): all of it with whole data, else
    /// that of the steps whose runs it names.
    pub progress: Option<String>,
}

/// A task's progress: each step's runs, redo and failure flags.
pub(crate) type Progress = BTreeMap<String, StepProgress>;

/// Applies again, to `data`, the changes of the runs listed in `applied` (a JSON array of run
/// ids), in that order.
fn replay(data: &mut Value, applied: &str, runs: &[RunRecord]) -> Result<(), StoreError> {
    let ids: Vec<u64> = serde_json::from_str(applied).map_err(|e| corrupt("applied runs", e))?;
    for id in ids {
        let run = runs
            .get(id as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("applied runs: run {id} has no record")))?;
        merge::apply(data, &run.changes);
    }
    Ok(())
}

/// The data and progress after the last of `records` (oldest first, all newer than the task
/// row's revision, whose data and progress are `base`): the newest whole data among them (or the
/// row's) with the later records' runs replayed, and the progress there with the later records'
/// entries laid over it.
pub(crate) fn latest_state(
    base: (&str, &str),
    records: &[LoggedRecord],
    runs: &[RunRecord],
) -> Result<(Value, Progress), StoreError> {
    let whole = records.iter().rposition(|r| r.data.is_some());
    let (data, progress) = match whole {
        Some(at) => (
            records[at].data.as_deref().unwrap_or(base.0),
            records[at].progress.as_deref(),
        ),
        None => (base.0, Some(base.1)),
    };
    let mut data: Value = serde_json::from_str(data).map_err(|e| corrupt("data", e))?;
    let mut progress: Progress = match progress {
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt("progress", e))?,
        None => Progress::new(),
    };
    for record in &records[whole.map_or(0, |at| at + 1)..] {
        let Some(applied) = &record.applied else {
            return Err(StoreError::Corrupt(format!(
                "task log: record {} holds neither data nor the runs that changed it",
                record.revision
            )));
        };
        replay(&mut data, applied, runs)?;
        if let Some(text) = &record.progress {
            let named: Progress = serde_json::from_str(text).map_err(|e| corrupt("progress", e))?;
            progress.extend(named);
        }
    }
    Ok((data, progress))
}

/// The runs that started and never finished, oldest first, with the data each started from:
/// from `other_inputs` when listed there, else the data at the record it started in (rebuilt by
/// replaying from the newest whole data before it, or from `base`, the data the task row holds).
/// A run whose input cannot be found is left out (it cannot be re-run). `runs` are the task's
/// runs ([`merge_runs`] of the same records).
pub(crate) fn interrupted(
    base: &str,
    records: &[LoggedRecord],
    runs: &[RunRecord],
    other_inputs: &BTreeMap<u64, String>,
) -> Result<Vec<(u64, Value)>, StoreError> {
    let open: Vec<u64> = runs.iter().filter(|r| r.outcome.is_none()).map(|r| r.id).collect();
    let mut inputs: BTreeMap<u64, Value> = BTreeMap::new();
    // The data at each record, walking forward from the row's: whole where a record holds it,
    // replayed where it lists its runs. (Every record holds one or the other; the first to list
    // its runs follows the row, which keeps the data the task was created with.)
    let mut data: Option<Value> = Some(serde_json::from_str(base).map_err(|e| corrupt("data", e))?);
    for record in records {
        data = match (&record.data, &record.applied, data) {
            (Some(text), _, _) => Some(serde_json::from_str(text).map_err(|e| corrupt("data", e))?),
            (None, Some(applied), Some(mut data)) => {
                replay(&mut data, applied, runs)?;
                Some(data)
            }
            _ => None,
        };
        let (Some(starting), Some(here)) = (&record.starting, &data) else {
            continue;
        };
        let ids: Vec<u64> = serde_json::from_str(starting).map_err(|e| corrupt("starting runs", e))?;
        for id in ids
            .into_iter()
            .filter(|id| open.contains(id) && !other_inputs.contains_key(id))
        {
            inputs.insert(id, here.clone());
        }
    }
    for id in &open {
        if let Some(text) = other_inputs.get(id) {
            inputs.insert(*id, serde_json::from_str(text).map_err(|e| corrupt("run input", e))?);
        }
    }
    Ok(inputs.into_iter().collect())
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
            applied: None,
        };
        let record = SaveRecord::of(&save, &Utc::now()).expect("encoded");
        assert_eq!(record.logged_data(), Some(r#"{"a":1}"#));
        assert_eq!(record.starting.as_deref(), Some("[1]"));
        assert!(record.other_inputs.is_empty());
        assert_eq!(merge_runs([record.runs.as_str()]).expect("decoded"), task.runs);
    }

    #[test]
    fn a_save_naming_its_applied_runs_logs_them_and_their_steps_progress_instead_of_the_data() {
        let mut task = task_with_runs(2);
        task.progress.insert(
            "s".into(),
            StepProgress {
                runs: 2,
                ..Default::default()
            },
        );
        task.progress.insert(
            "other".into(),
            StepProgress {
                runs: 1,
                ..Default::default()
            },
        );
        let save = TaskSave {
            task: &task,
            expected_revision: 2,
            runs: &[1],
            starting: &[],
            input: None,
            data_text: None,
            applied: Some(&[1, 0]),
        };
        let record = SaveRecord::of(&save, &Utc::now()).expect("encoded");
        assert_eq!(record.logged_data(), None);
        assert_eq!(record.applied.as_deref(), Some("[1,0]"));
        assert_eq!(record.row.progress, r#"{"s":{"last_projection":null,"runs":2}}"#);
        let whole = SaveRecord::of(&TaskSave { applied: None, ..save }, &Utc::now()).expect("encoded");
        assert_eq!(whole.logged_data(), Some(r#"{"a":1}"#));
        assert_eq!(whole.applied, None);
        let all: Progress = serde_json::from_str(&whole.row.progress).expect("progress");
        assert_eq!(all, task.progress);
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
            applied: None,
        };
        let record = SaveRecord::of(&save, &Utc::now()).expect("encoded");
        assert_eq!(record.starting, None);
        assert_eq!(record.other_inputs, vec![(0, r#"{"a":0}"#.to_string())]);
    }

    fn logged(
        revision: i64,
        data: Option<&str>,
        applied: Option<&str>,
        runs: String,
        starting: Option<&str>,
    ) -> LoggedRecord {
        LoggedRecord {
            revision,
            runs,
            data: data.map(str::to_owned),
            applied: applied.map(str::to_owned),
            starting: starting.map(str::to_owned),
            progress: None,
        }
    }

    #[test]
    fn later_copies_of_a_run_replace_earlier_ones_and_finished_runs_are_not_interrupted() {
        let mut task = task_with_runs(2);
        let first = logged(
            2,
            Some(r#"{"a":1}"#),
            None,
            runs_text(&task, &[0, 1]).expect("encoded"),
            Some("[0,1]"),
        );
        task.runs[0].outcome = Some(RunOutcomeRecord::Ok);
        let second = logged(
            3,
            Some(r#"{"a":2}"#),
            None,
            runs_text(&task, &[0]).expect("encoded"),
            None,
        );
        let runs = merge_runs([first.runs.as_str(), second.runs.as_str()]).expect("decoded");
        assert_eq!(runs, task.runs);
        let records = [first, second];
        let open = interrupted("{}", &records, &runs, &BTreeMap::new()).expect("read");
        assert_eq!(open, vec![(1, json!({"a": 1}))]);
        let elsewhere = BTreeMap::from([(1, r#"{"b":0}"#.to_string())]);
        let open = interrupted("{}", &records, &runs, &elsewhere).expect("read");
        assert_eq!(open, vec![(1, json!({"b": 0}))]);
    }

    /// Run `id` of `task`, finished with `changes`.
    fn finish(task: &mut Task, id: usize, changes: Vec<merge::Change>) {
        task.runs[id].outcome = Some(RunOutcomeRecord::Ok);
        task.runs[id].changes = changes;
    }

    fn set(path: &str, value: Value) -> merge::Change {
        merge::Change::Set {
            path: path.into(),
            value,
        }
    }

    #[test]
    fn records_listing_their_runs_rebuild_the_data_by_replaying_in_the_listed_order() {
        let mut task = task_with_runs(4);
        let start = logged(
            2,
            Some(r#"{"a":1}"#),
            None,
            runs_text(&task, &[0, 1, 2, 3]).expect("encoded"),
            Some("[0,1]"),
        );
        // Runs 1 and 0 write the same key; 1 merged first, so 0 wins.
        finish(&mut task, 0, vec![set("/a", json!(10)), set("/b", json!({"c": 1}))]);
        finish(&mut task, 1, vec![set("/a", json!(20))]);
        let wave = logged(
            3,
            None,
            Some("[1,0]"),
            runs_text(&task, &[0, 1]).expect("encoded"),
            Some("[2,3]"),
        );
        // Run 2 removes what run 0 wrote; run 3 (still running) changed nothing yet.
        finish(
            &mut task,
            2,
            vec![merge::Change::Remove { path: "/b/c".into() }, set("/b/d", json!(true))],
        );
        let last = logged(4, None, Some("[2]"), runs_text(&task, &[2]).expect("encoded"), None);
        let records = [start, wave, last];
        let runs = merge_runs(records.iter().map(|r| r.runs.as_str())).expect("decoded");
        let (data, _) = latest_state((r#"{"row":true}"#, "{}"), &records, &runs).expect("rebuilt");
        assert_eq!(data, json!({"a": 10, "b": {"d": true}}));
        // Run 3 started at the wave: its input is the data rebuilt there.
        let open = interrupted("{}", &records, &runs, &BTreeMap::new()).expect("read");
        assert_eq!(open, vec![(3, json!({"a": 10, "b": {"c": 1}}))]);
        // With no whole data among the records, the row's is the base.
        let (data, _) = latest_state((r#"{"a":1}"#, "{}"), &records[1..], &runs).expect("rebuilt");
        assert_eq!(data, json!({"a": 10, "b": {"d": true}}));
        let open = interrupted(r#"{"a":1}"#, &records[1..], &runs, &BTreeMap::new()).expect("read");
        assert_eq!(open, vec![(3, json!({"a": 10, "b": {"c": 1}}))]);
    }

    #[test]
    fn the_progress_of_later_records_is_laid_over_the_newest_whole_one() {
        let task = task_with_runs(1);
        let runs = merge_runs([runs_text(&task, &[0]).expect("encoded").as_str()]).expect("decoded");
        let mut whole = logged(2, Some("{}"), None, "[]".into(), None);
        whole.progress = Some(r#"{"a":{"runs":1},"b":{"runs":1}}"#.into());
        let mut later = logged(3, None, Some("[]"), "[]".into(), None);
        later.progress = Some(r#"{"b":{"runs":2,"redo":true}}"#.into());
        let (_, progress) = latest_state(("{}", "{}"), &[whole, later], &runs).expect("rebuilt");
        assert_eq!(progress["a"].runs, 1);
        assert_eq!((progress["b"].runs, progress["b"].redo), (2, true));
        // With no whole record, over the row's.
        let mut later = logged(3, None, Some("[]"), "[]".into(), None);
        later.progress = Some(r#"{"b":{"runs":3}}"#.into());
        let (_, progress) = latest_state(("{}", r#"{"a":{"runs":4}}"#), &[later], &runs).expect("rebuilt");
        assert_eq!((progress["a"].runs, progress["b"].runs), (4, 3));
    }

    #[test]
    fn a_record_with_neither_data_nor_runs_cannot_be_the_base_of_a_rebuild() {
        let task = task_with_runs(1);
        let records = [logged(2, None, None, runs_text(&task, &[0]).expect("encoded"), None)];
        let runs = merge_runs([records[0].runs.as_str()]).expect("decoded");
        assert!(matches!(
            latest_state(("{}", "{}"), &records, &runs),
            Err(StoreError::Corrupt(_))
        ));
        let unknown = [logged(2, None, Some("[7]"), "[]".into(), None)];
        assert!(matches!(
            latest_state(("{}", "{}"), &unknown, &runs),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_gap_in_the_run_ids_is_reported_as_corrupt() {
        let task = task_with_runs(2);
        let text = runs_text(&task, &[1]).expect("encoded");
        assert!(matches!(merge_runs([text.as_str()]), Err(StoreError::Corrupt(_))));
    }
}
