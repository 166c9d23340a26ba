//! Driving one stored task: the checkpoint that commits through the store, the journal of
//! connector results, and re-running runs a crash interrupted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::stopping::Phase;
use super::{Metrics, Service, ServiceError};
use crate::runtime::{CallJournal, ConnectorCallRecord, LoadedStep, RunError, RunErrorKind};
use crate::scheduler::{Checkpoint, CheckpointError, Commit, Event, Resumed};
use crate::store::background::in_background;
use crate::store::writes_coming::{Working, WritesComing};
use crate::store::{InterruptedRun, Store, StoredTask, TaskSave};
use crate::task::{RunOutcomeRecord, Task, TaskStatus};

/// Commits a task's progress through the store, with compare-and-swap on its revision.
struct StoreCheckpoint {
    store: Arc<dyn Store>,
    revision: u64,
    /// When its last save was written, if it saved.
    saved_at: Option<DateTime<Utc>>,
    /// Counted as a writer at work between commits, for a store that holds a commit while
    /// writes are on their way ([`Store::writes_coming`]).
    coming: Option<Arc<WritesComing>>,
    working: Option<Working>,
    /// Where each save's time to commit is counted.
    metrics: Metrics,
}

impl StoreCheckpoint {
    fn new(store: Arc<dyn Store>, revision: u64, metrics: Metrics) -> Self {
        let coming = store.writes_coming();
        let working = coming.as_ref().map(|c| c.begin());
        StoreCheckpoint {
            store,
            revision,
            saved_at: None,
            coming,
            working,
            metrics,
        }
    }
}

#[async_trait::async_trait]
impl Checkpoint for StoreCheckpoint {
    async fn commit(&mut self, task: &Task, commit: Commit<'_>) -> Result<(), CheckpointError> {
        // Waiting for this commit, the drive writes nothing more until it is done.
        self.working = None;
        let settled = commit.settled;
        let at = Utc::now();
        let saving = std::time::Instant::now();
        self.revision = self
            .store
            .save_task_at(TaskSave::of_commit(task, self.revision, commit), at)
            .await
            .map_err(|e| CheckpointError(e.to_string()))?;
        self.metrics.save_committed(saving.elapsed());
        self.saved_at = Some(at);
        if !settled {
            self.working = self.coming.as_ref().map(|c| c.begin());
        }
        Ok(())
    }

    fn journal(&self, task: &Task, run_id: u64) -> Option<Arc<dyn CallJournal>> {
        Some(Arc::new(StoreJournal {
            store: self.store.clone(),
            task_id: task.id.clone(),
            run_id,
        }))
    }
}

/// Journals one run's connector results in the store.
struct StoreJournal {
    store: Arc<dyn Store>,
    task_id: String,
    run_id: u64,
}

#[async_trait::async_trait]
impl CallJournal for StoreJournal {
    async fn record(&self, index: usize, call: &ConnectorCallRecord) -> Result<(), String> {
        self.store
            .journal_call(&self.task_id, self.run_id, index, call)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Service {
    /// Drives the task on a worker (bounded by the configured concurrency).
    pub(crate) fn spawn_drive(&self, id: String) {
        self.spawn_drive_from(id, None, 0);
    }

    /// Drives `task`, just saved at `revision` (created, patched, retried), on a worker without
    /// reading it back from the store; `starting` are the runs saved as starting with it (a new
    /// task's first wave), run first. Hosts sharing a store drive only what they claim: there it
    /// is [`Service::spawn_drive`].
    pub(crate) fn spawn_drive_saved(&self, task: Task, revision: u64, starting: Vec<Resumed>) {
        if self.inner.cluster.is_some() {
            return self.spawn_drive(task.id);
        }
        self.spawn_drive_from(task.id.clone(), Some((task, revision, starting)), 0);
    }

    /// Drives task `id` (from `saved`, or as stored) on a worker; `failures` is how many drives
    /// of it in a row ended on a storage failure, each driven again later ([`redrive_delay`]).
    fn spawn_drive_from(&self, id: String, saved: Option<(Task, u64, Vec<Resumed>)>, failures: u32) {
        if let Some(cluster) = self.cluster() {
            // Hosts sharing the store drive only what they claim: the claim loop takes it from
            // here (driving it directly would race the host that claims it).
            cluster.wake();
            return;
        }
        let service = self.clone();
        // Registered before the drive is spawned, so that whoever waits for the task from now on
        // is answered by it.
        let end = self.inner.settling.begin(&id);
        let placed = id.clone();
        let work = async move {
            let Ok(_permit) = service.inner.workers.clone().acquire_owned().await else {
                return;
            };
            if service.is_stopping() {
                // The task stays running in the store: the next start drives it. Its waiters
                // (their channels closed as `end` drops) are answered from the store.
                return;
            }
            // A drive from the store (a restart's backlog, a redrive) is boxed on its own: its
            // future is 7 KB, and inline it made every drive's 15 KB instead of 4.7 KB, all of it
            // allocated and moved into its box for each order (0.3% of the instructions per
            // order now that `spawn_driving` boxes every drive; 2.6% before, when tokio copied it).
            let driving = async {
                match saved {
                    Some((task, revision, starting)) => service.drive_task(task, revision, starting).await,
                    None => Box::pin(service.drive_stored(&id)).await,
                }
            };
            let Some(result) = service.unless_stopped(driving).await else {
                return;
            };
            match result {
                Ok(settled) => end.ended(settled),
                Err(e) => {
                    end.ended(None);
                    // The store failed (a full disk, an I/O error): what it committed last is
                    // whole, so the task is driven again from there, as after a crash, once the
                    // store may have recovered; until then it stays running.
                    let delay = redrive_delay(failures);
                    eprintln!(
                        "whenever serve: task {id}: {e}; driving it again from its last commit in {} s",
                        delay.as_secs_f64()
                    );
                    service.inner.metrics.drive_failed();
                    service.redrive_later(id.clone(), delay, failures + 1);
                }
            }
            service.announce_settled(id);
        };
        self.spawn_driving(&placed, work);
    }

    /// Drives task `id` again from the store after `delay`, unless the service stops first (the
    /// next start drives it then).
    fn redrive_later(&self, id: String, delay: Duration, failures: u32) {
        let service = Arc::downgrade(&self.inner);
        let mut phase = self.inner.phase.subscribe();
        self.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = phase.wait_for(|p| *p != Phase::Serving) => return,
            }
            if let Some(inner) = service.upgrade() {
                Service { inner }.spawn_drive_from(id, None, failures);
            }
        });
    }

    /// Loads a running task and drives it to settlement, re-running interrupted runs first (a
    /// run whose step is gone fails, saved before the drive); returns the task as it saved it
    /// last, if it left it settled.
    pub(crate) async fn drive_stored(&self, id: &str) -> Result<Option<StoredTask>, ServiceError> {
        // Loading tasks is bulk work (a restart's backlog, a cluster's claims): its reads leave a
        // reader free for the API's (`store::background`).
        let Some((mut task, mut revision, resumed, lost)) = in_background(self.load_stored(id)).await? else {
            return Ok(None);
        };
        let store = self.inner.store.clone();
        if !lost.is_empty() {
            for run_id in &lost {
                fail_lost_run(&mut task, *run_id);
            }
            let save = TaskSave {
                task: &task,
                expected_revision: revision,
                runs: &lost,
                starting: &[],
                input: None,
                data_text: None,
                applied: None,
            };
            revision = store.save_task(save).await?;
        }
        self.drive_task(task, revision, resumed).await
    }

    /// A running task as stored, with its revision, the interrupted runs to re-run and those whose
    /// step is gone; `None` when it is missing or no longer running.
    async fn load_stored(&self, id: &str) -> Result<Option<(Task, u64, Vec<Resumed>, Vec<u64>)>, ServiceError> {
        let store = &self.inner.store;
        let Some(stored) = store.get_task(id).await? else {
            return Ok(None);
        };
        if stored.task.status != TaskStatus::Running {
            return Ok(None);
        }
        let mut resumed = Vec::new();
        let mut lost = Vec::new();
        for run in store.interrupted_runs(id).await? {
            match self.step_for(&stored.task, &run).await {
                Some(step) => resumed.push(Resumed {
                    run_id: run.run_id,
                    step,
                    input: Some(Arc::new(run.input)),
                    replay: run.journal,
                }),
                None => lost.push(run.run_id),
            }
        }
        Ok(Some((stored.task, stored.revision, resumed, lost)))
    }

    /// Drives `task`, stored at `revision`, to settlement, running `resumed` first; returns the
    /// task as it saved it last, if it left it settled.
    async fn drive_task(
        &self,
        mut task: Task,
        revision: u64,
        resumed: Vec<Resumed>,
    ) -> Result<Option<StoredTask>, ServiceError> {
        let store = self.inner.store.clone();
        let metrics = self.inner.metrics.clone();
        let mut checkpoint = StoreCheckpoint::new(store, revision, metrics.clone());
        let mut on_event = |event: Event<'_>| {
            if let Event::RunFinished { run, .. } = event {
                metrics.run_finished(run);
            }
        };
        self.inner
            .scheduler
            .drive_durable(&mut task, resumed, &mut checkpoint, &mut on_event)
            .await
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Backend(e.to_string())))?;
        Ok(match checkpoint.saved_at {
            Some(updated_at) if task.status != TaskStatus::Running => Some(StoredTask {
                task,
                revision: checkpoint.revision,
                updated_at,
            }),
            _ => None,
        })
    }

    /// The step version an interrupted run ran: the serving one when it is the same version,
    /// else the stored version, else (that version is gone) the serving one.
    async fn step_for(&self, task: &Task, run: &InterruptedRun) -> Option<Arc<LoadedStep>> {
        let record = task.runs.get(run.run_id as usize)?;
        let current = self.inner.scheduler.catalog().get(&record.step);
        if let Some(step) = current.as_ref().filter(|s| s.version == record.version) {
            return Some(step.clone());
        }
        if let Ok(Some(version)) = self.inner.store.step_version(&record.step, &record.version).await {
            let runtime = self.inner.scheduler.runtime();
            if let Ok(step) = runtime
                .load_stored(&version.name, &version.component, version.manifest, &version.version)
                .await
            {
                return Some(Arc::new(step));
            }
        }
        current
    }
}

/// How long a task waits to be driven again after `failures` drives in a row ended on a storage
/// failure: 1 s, doubling to at most 30 s, so that a store that is down for a while is not
/// hammered by every task it failed, and one that is back soon loses little time.
pub(crate) fn redrive_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

/// Records that an interrupted run cannot be re-run (its step is gone).
fn fail_lost_run(task: &mut Task, run_id: u64) {
    let Some(record) = task.runs.get_mut(run_id as usize) else {
        return;
    };
    let step = record.step.clone();
    record.ended_at = Some(Utc::now());
    record.outcome = Some(RunOutcomeRecord::Error(RunError {
        kind: RunErrorKind::Instantiate,
        message: format!("the run was interrupted and step {step} is no longer deployed"),
    }));
    let progress = task.progress.entry(step).or_default();
    progress.last_failed = true;
    progress.redo = false;
}

#[cfg(test)]
mod tests {
    use super::redrive_delay;

    #[test]
    fn a_task_whose_drive_failed_is_driven_again_after_a_delay_doubling_to_30_s() {
        let delays: Vec<u64> = (0..8).map(|failures| redrive_delay(failures).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(redrive_delay(u32::MAX).as_secs(), 30);
    }
}
