//! A connector result the host cannot journal (its store stopped taking writes) stops the
//! drive where it is, as a failed commit does, instead of failing the step: the order's runs
//! stay unfinished, none recorded as failed, and driven again with what was journaled replayed
//! the order completes, charged once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use whenever::runtime::{CallJournal, ConnectorCallRecord};
use whenever::scheduler::{Checkpoint, CheckpointError, Commit, Resumed};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

/// What the store kept, in memory: each starting run's input and every journaled result.
#[derive(Default)]
struct Kept {
    inputs: BTreeMap<u64, Arc<Value>>,
    journal: BTreeMap<u64, Vec<ConnectorCallRecord>>,
}

/// A checkpoint whose journal, while `full` is set, refuses every run's results after its first,
/// as a disk that fills up in the middle of a run would.
struct FillingUp {
    kept: Arc<Mutex<Kept>>,
    full: Arc<AtomicBool>,
}

struct Journal {
    run_id: u64,
    kept: Arc<Mutex<Kept>>,
    full: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl CallJournal for Journal {
    async fn record(&self, index: usize, call: &ConnectorCallRecord) -> Result<(), String> {
        if index >= 1 && self.full.load(Ordering::SeqCst) {
            return Err("No space left on device".into());
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let calls = kept.journal.entry(self.run_id).or_default();
        assert_eq!(calls.len(), index, "results are journaled in call order");
        calls.push(call.clone());
        Ok(())
    }
}

#[async_trait::async_trait]
impl Checkpoint for FillingUp {
    async fn commit(&mut self, task: &Task, commit: Commit<'_>) -> Result<(), CheckpointError> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let input = Arc::new(commit.input.cloned().unwrap_or_else(|| task.data.clone()));
        for id in commit.starting {
            kept.inputs.insert(*id, input.clone());
        }
        Ok(())
    }

    fn journal(&self, _: &Task, run_id: u64) -> Option<Arc<dyn CallJournal>> {
        Some(Arc::new(Journal {
            run_id,
            kept: self.kept.clone(),
            full: self.full.clone(),
        }))
    }
}

#[tokio::test]
async fn a_result_that_cannot_be_journaled_stops_the_drive_and_fails_no_step() {
    let host = Host::start(&HostOptions::default()).await.expect("host");
    let mut task = Task::new(whenever::demo::seed_order());
    let first = host.scheduler.first_wave(&mut task);
    let mut checkpoint = FillingUp {
        kept: Arc::default(),
        full: Arc::new(AtomicBool::new(true)),
    };
    {
        let mut kept = checkpoint.kept.lock().unwrap_or_else(|p| p.into_inner());
        let data = Arc::new(task.data.clone());
        kept.inputs.extend(first.iter().map(|run| (run.run_id, data.clone())));
    }
    let stopped = host
        .scheduler
        .drive_durable(&mut task, first, &mut checkpoint, &mut |_| {})
        .await;
    let error = stopped.expect_err("the drive stops at the result it cannot journal");
    assert!(
        error.0.contains("cannot journal") && error.0.contains("No space left on device"),
        "{}",
        error.0
    );
    assert!(
        task.runs.iter().all(|run| run
            .outcome
            .as_ref()
            .is_none_or(|o| o == &whenever::task::RunOutcomeRecord::Ok)),
        "no run is recorded as failed: {:?}",
        task.runs.iter().map(|r| (&r.step, &r.outcome)).collect::<Vec<_>>()
    );
    let unfinished: Vec<u64> = task.runs.iter().filter(|r| r.outcome.is_none()).map(|r| r.id).collect();
    assert!(
        !unfinished.is_empty(),
        "the run that could not journal is left to re-run"
    );

    // Room again: the unfinished runs re-run on the data they started from, with what was
    // journaled replayed, and the order completes.
    checkpoint.full.store(false, Ordering::SeqCst);
    let resumed: Vec<Resumed> = {
        let kept = checkpoint.kept.lock().unwrap_or_else(|p| p.into_inner());
        unfinished
            .iter()
            .map(|id| {
                let record = &task.runs[*id as usize];
                Resumed {
                    run_id: *id,
                    step: host.scheduler.catalog().get(&record.step).expect("deployed"),
                    input: kept.inputs.get(id).cloned(),
                    replay: kept
                        .journal
                        .get(id)
                        .map(|calls| calls.iter().cloned().map(Some).collect())
                        .unwrap_or_default(),
                }
            })
            .collect()
    };
    let replayed: usize = resumed.iter().map(|r| r.replay.len()).sum();
    assert!(replayed > 0, "results journaled before the disk filled are replayed");
    let status = host
        .scheduler
        .drive_durable(&mut task, resumed, &mut checkpoint, &mut |_| {})
        .await
        .expect("driven to the end");
    assert_eq!(status, TaskStatus::Completed, "{:?}", task.message);
    assert_eq!(task.data["order"]["status"], "processing_complete");
    let charge_keys: std::collections::BTreeSet<&str> = task
        .runs
        .iter()
        .flat_map(|run| &run.connector_calls)
        .filter(|call| call.connector == "stripe" && call.method == "charge")
        .map(|call| call.idempotency_key.as_str())
        .collect();
    assert_eq!(charge_keys.len(), 1, "one charge: {charge_keys:?}");
    let replayed_calls = task
        .runs
        .iter()
        .flat_map(|run| &run.connector_calls)
        .filter(|c| c.replayed)
        .count();
    assert_eq!(
        replayed_calls, replayed,
        "every journaled result was replayed, not called again"
    );
}
