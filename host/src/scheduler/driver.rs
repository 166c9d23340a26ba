//! The scheduler loop: start every eligible step on a snapshot, wait for runs to finish, merge
//! their changes (recording conflicts), and repeat until the task settles.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use whenever_connectors::Registry;

use super::data_size::{DEFAULT_MAX_TASK_BYTES, DataSize};
use super::merge::{self, Change};
use super::output_diff::{diff_output, diff_output_in_view};
use super::rules;
use crate::catalog::Catalog;
use crate::runtime::{
    CallJournal, ConnectorCallRecord, LoadedStep, RunError, RunErrorKind, RunInput, RunReport, Runtime,
};
use crate::task::{Conflict, RunOutcomeRecord, RunRecord, Task, TaskStatus};

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Runs of one step on one task before the task is stopped as runaway.
    pub run_cap: u32,
    /// The most a task's data may take as JSON text: a run whose output would pass it fails.
    pub max_task_bytes: usize,
    /// The host named in each run record: a cluster host's `host_id`, so that an operator sees
    /// which host ran what; `None` on a host of its own.
    pub host: Option<String>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            run_cap: 100,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            host: None,
        }
    }
}

/// What happens while a task is driven, for timelines and metrics.
#[derive(Debug)]
pub enum Event<'a> {
    /// A run started.
    RunStarted {
        /// The task.
        task: &'a Task,
        /// The run's record (outcome still empty).
        run: &'a RunRecord,
    },
    /// A run finished and its changes (if any) were applied.
    RunFinished {
        /// The task, after the merge.
        task: &'a Task,
        /// The finished run.
        run: &'a RunRecord,
    },
    /// Nothing is in flight or eligible any more.
    Settled {
        /// The task in its final state.
        task: &'a Task,
    },
}

/// What the driver hands its [`Checkpoint`] to make durable.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Runs whose records were added or finished since the last commit (ids = positions in
    /// `task.runs`).
    pub runs: &'a [u64],
    /// Runs about to start (their records are in `runs` too), all on `input`.
    pub starting: &'a [u64],
    /// The data the starting runs start from (their snapshot), to re-run them after a crash.
    pub input: Option<&'a Value>,
    /// The task's data as JSON text, when the driver has just encoded it for the steps (the
    /// store need not encode it again).
    pub data_text: Option<&'a str>,
    /// The runs whose changes were merged into the data since the previous commit of this drive
    /// (since the drive began, for its first), in merge order: the data committed is the data the
    /// previous commit saved (or the drive began with) with those runs' changes applied again
    /// (see [`crate::store::TaskSave::applied`]).
    pub applied: &'a [u64],
    /// The task settled: this is the last commit of the drive.
    pub settled: bool,
}

/// A commit failed: the drive stops, the task stays as it was last committed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot commit the task: {0}")]
pub struct CheckpointError(pub String);

/// Where [`Scheduler::drive_durable`] makes a task's progress durable (the service's store).
#[async_trait::async_trait]
pub trait Checkpoint: Send {
    /// Makes the task as it is now durable, with the run records named in `commit`; called
    /// before runs start and once when the task settles. Returns only once it is durable.
    async fn commit(&mut self, task: &Task, commit: Commit<'_>) -> Result<(), CheckpointError>;

    /// The journal that run `run_id`'s connector results go to before the step sees them.
    fn journal(&self, task: &Task, run_id: u64) -> Option<Arc<dyn CallJournal>>;
}

/// A run already on record as started, to run first when a task's drive begins: one a crash
/// interrupted, or one of a new task's first wave ([`Scheduler::first_wave`]).
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The run's id (its position in `task.runs`; the record is there, outcome empty).
    pub run_id: u64,
    /// The step version to re-run (the one recorded, when it is still available).
    pub step: Arc<LoadedStep>,
    /// The data the run started from (shared by the runs of one wave); `None` for a new task's
    /// first wave, which starts on the data as the drive begins (the data it was created with).
    pub input: Option<Arc<Value>>,
    /// Its journaled connector results by call number, replayed ([`crate::runtime::RunInput::replay`]).
    pub replay: Vec<Option<ConnectorCallRecord>>,
}

/// Runs steps on tasks: the runtime, the deployed steps and the connectors together.
#[derive(Debug, Clone)]
pub struct Scheduler {
    runtime: Arc<Runtime>,
    catalog: Catalog,
    connectors: Registry,
    settings: SchedulerSettings,
}

struct InFlight {
    step: Arc<LoadedStep>,
    /// The data the run started from (it was given that or its step's view of it); `None` when
    /// it runs alone, so that nothing else changes the task's data until it finishes: the data
    /// itself is its snapshot (no copy made).
    snapshot: Option<Arc<Value>>,
    start_seq: u64,
}

/// A change merged while other runs were in flight, for the conflicts of those runs: change
/// `index` of run `run_id`'s record (the record holds its path and value).
struct Applied {
    seq: u64,
    run_id: u64,
    index: usize,
}

/// The drive's finished runs in merge order, and the changes merged while other runs were in
/// flight: a run that finishes later is checked against those merged since it started.
#[derive(Default)]
struct MergeOrder {
    /// How many runs have finished (the last one's number in merge order).
    seq: u64,
    applied: Vec<Applied>,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(runtime: Arc<Runtime>, catalog: Catalog, connectors: Registry, settings: SchedulerSettings) -> Self {
        Scheduler {
            runtime,
            catalog,
            connectors,
            settings,
        }
    }

    /// Names `host` in the record of every run this scheduler starts from now on (a cluster
    /// host's `host_id`).
    pub fn name_runs_after(&mut self, host: &str) {
        self.settings.host = Some(host.to_string());
    }

    /// Its settings.
    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    /// The deployed steps.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The connectors.
    pub fn connectors(&self) -> &Registry {
        &self.connectors
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Drives `task` until it settles (completed, waiting or failed) and returns that status.
    /// `on_event` sees every start and finish as it happens. Nothing is made durable: this is
    /// `whenever run` and the in-memory tests; the service uses [`Scheduler::drive_durable`].
    pub async fn drive(&self, task: &mut Task, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> TaskStatus {
        match self.drive_inner(task, Vec::new(), None, on_event).await {
            Ok(status) => status,
            // Without a checkpoint nothing can fail to commit.
            Err(_) => task.status,
        }
    }

    /// Drives `task` like [`Scheduler::drive`], making its progress durable through
    /// `checkpoint`: the task (with the changes merged so far and the records of the runs about to
    /// start) is committed before those runs start, each run's connector results go to the
    /// checkpoint's journal before the step sees them, and the settled task is committed last.
    /// `resumed` are runs interrupted by a crash: they are re-run first, on their recorded input,
    /// with their journaled connector results replayed. A failed commit stops the drive (runs in
    /// flight are abandoned; the task stays as last committed) and is returned.
    pub async fn drive_durable(
        &self,
        task: &mut Task,
        resumed: Vec<Resumed>,
        checkpoint: &mut dyn Checkpoint,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<TaskStatus, CheckpointError> {
        self.drive_inner(task, resumed, Some(checkpoint), on_event).await
    }

    async fn drive_inner(
        &self,
        task: &mut Task,
        resumed: Vec<Resumed>,
        mut checkpoint: Option<&mut dyn Checkpoint>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<TaskStatus, CheckpointError> {
        // The task's runs progress concurrently inside this driver (interleaving at connector calls
        // and deadline ticks); other tasks' drivers use the other cores. Polling them here rather
        // than spawning saves a cross-thread hand-off per run.
        let mut runs: FuturesUnordered<BoxFuture<'static, (u64, Result<RunReport, String>)>> = FuturesUnordered::new();
        let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
        let mut order = MergeOrder::default();
        let mut completed = task.status == TaskStatus::Completed;
        let mut cap_hit = false;
        let mut size = DataSize::new(self.settings.max_task_bytes);
        // Run records changed since the last commit.
        let mut dirty: BTreeSet<u64> = BTreeSet::new();
        // Runs whose changes were merged since the last commit (or the drive began), in merge
        // order.
        let mut merged: Vec<u64> = Vec::new();
        if task.status != TaskStatus::Completed {
            task.status = TaskStatus::Running;
            task.message = None;
        }
        // A first wave's snapshot of the data, copied here rather than where the task was
        // created: the copy is then made, and freed when the wave is done, by the drive's
        // threads (memory one thread frees for another costs that other thread a walk over it).
        let mut created_data: Option<Arc<Value>> = None;
        for resume in resumed {
            let Some(record) = task.runs.get_mut(resume.run_id as usize) else {
                continue;
            };
            // A run with its input on record was interrupted (a first wave's is not yet taken).
            if resume.input.is_some() {
                record.restarted_at = Some(Utc::now());
            }
            // It runs here, whichever host recorded it (a first wave is recorded by the host
            // that created the task, and another may claim it).
            record.host.clone_from(&self.settings.host);
            let run_number = record.number;
            let snapshot = match resume.input {
                Some(input) => input,
                None => created_data.get_or_insert_with(|| Arc::new(task.data.clone())).clone(),
            };
            // The run is given what it was given the first time: its view of that data, or all
            // of it.
            let given = match &resume.step.view {
                Some(view) => view.text(&snapshot),
                None => snapshot.to_string(),
            };
            let input = RunInput {
                task_id: task.id.clone(),
                data: given,
                run_number,
                connectors: self.connectors.clone(),
                replay: resume.replay,
                journal: checkpoint.as_ref().and_then(|c| c.journal(task, resume.run_id)),
            };
            let runtime = self.runtime.clone();
            let step = resume.step.clone();
            let run_id = resume.run_id;
            runs.push(launch(runtime, step, input, run_id));
            in_flight.insert(
                run_id,
                InFlight {
                    step: resume.step,
                    snapshot: Some(snapshot),
                    start_seq: order.seq,
                },
            );
        }

        loop {
            let mut starting: Vec<(u64, Arc<LoadedStep>, u32)> = Vec::new();
            if !completed && !cap_hit {
                let busy: HashSet<String> = in_flight.values().map(|f| f.step.name.clone()).collect();
                starting = self.start_eligible(task, &busy, &mut cap_hit);
                dirty.extend(starting.iter().map(|(run_id, _, _)| *run_id));
            }

            // The data as JSON text, encoded once for the runs given all of it (and then handed
            // to the store too).
            let whole = starting.iter().any(|(_, step, _)| step.view.is_none());
            let text = if whole { task.data.to_string() } else { String::new() };
            if whole {
                size.known(text.len());
            }
            if !starting.is_empty() {
                // Every change merged so far, and the records of the runs about to start, are
                // durable before those runs start.
                if let Some(checkpoint) = checkpoint.as_deref_mut() {
                    let ids: Vec<u64> = starting.iter().map(|(id, _, _)| *id).collect();
                    let runs_changed: Vec<u64> = dirty.iter().copied().collect();
                    let commit = Commit {
                        runs: &runs_changed,
                        starting: &ids,
                        input: Some(&task.data),
                        data_text: whole.then_some(text.as_str()),
                        applied: &merged,
                        settled: false,
                    };
                    checkpoint.commit(task, commit).await?;
                    dirty.clear();
                    merged.clear();
                }
                // Runs that overlap others diff against a copy of the data they started from;
                // a run alone diffs against the data itself.
                let snapshot = (starting.len() > 1 || !in_flight.is_empty()).then(|| Arc::new(task.data.clone()));
                for (run_id, step, number) in starting {
                    if let Some(run) = task.runs.get(run_id as usize) {
                        on_event(Event::RunStarted { task, run });
                    }
                    let given = match &step.view {
                        Some(view) => view.text(&task.data),
                        None => text.clone(),
                    };
                    let input = RunInput {
                        task_id: task.id.clone(),
                        data: given,
                        run_number: number,
                        connectors: self.connectors.clone(),
                        replay: Vec::new(),
                        journal: checkpoint.as_ref().and_then(|c| c.journal(task, run_id)),
                    };
                    let runtime = self.runtime.clone();
                    let running = step.clone();
                    runs.push(launch(runtime, running, input, run_id));
                    in_flight.insert(
                        run_id,
                        InFlight {
                            step,
                            snapshot: snapshot.clone(),
                            start_seq: order.seq,
                        },
                    );
                }
            }

            let Some((run_id, joined)) = runs.next().await else {
                break;
            };
            let report = match joined {
                Ok(report) => report,
                Err(message) => {
                    if let Some(flight) = in_flight.remove(&run_id) {
                        self.finish_failed(task, run_id, &flight, format!("internal error: {message}"), &mut size);
                        dirty.insert(run_id);
                    }
                    continue;
                }
            };
            // The host could not make a connector result durable: the drive stops as at a
            // failed commit, the run left unfinished, to be re-run with its journal.
            if checkpoint.is_some()
                && let Err(error) = &report.outcome
                && error.kind == RunErrorKind::Journal
            {
                let step = in_flight.get(&run_id).map(|f| f.step.name.as_str()).unwrap_or("?");
                return Err(CheckpointError(format!("step {step}: {}", error.message)));
            }
            let Some(flight) = in_flight.remove(&run_id) else {
                continue;
            };
            order.seq += 1;
            // Only runs in flight now can conflict with this one's changes later.
            let others = !in_flight.is_empty();
            let finished = self.finish(task, run_id, &flight, report, &mut order, others, &mut size);
            dirty.insert(run_id);
            if task.runs.get(run_id as usize).is_some_and(|r| !r.changes.is_empty()) {
                merged.push(run_id);
            }
            completed |= finished;
            if let Some(run) = task.runs.get(run_id as usize) {
                on_event(Event::RunFinished { task, run });
            }
            let oldest = in_flight.values().map(|f| f.start_seq).min().unwrap_or(order.seq);
            order.applied.retain(|a| a.seq > oldest);
        }

        task.status = rules::settled_status(task, completed, cap_hit);
        if task.status == TaskStatus::Failed && task.message.is_none() {
            task.message = failure_message(task);
        }
        if let Some(checkpoint) = checkpoint {
            let runs_changed: Vec<u64> = dirty.iter().copied().collect();
            checkpoint
                .commit(
                    task,
                    Commit {
                        runs: &runs_changed,
                        starting: &[],
                        input: None,
                        data_text: None,
                        applied: &merged,
                        settled: true,
                    },
                )
                .await?;
        }
        on_event(Event::Settled { task });
        Ok(task.status)
    }

    /// Starts the runs of every step eligible on `task` now (none of `busy`): records each run,
    /// starting, and the step's progress, and returns them (run id, step, run number). A step at
    /// its run cap stops the task instead: `cap_hit` is set and the task's message says why.
    fn start_eligible(
        &self,
        task: &mut Task,
        busy: &HashSet<String>,
        cap_hit: &mut bool,
    ) -> Vec<(u64, Arc<LoadedStep>, u32)> {
        let steps = self.catalog.snapshot();
        let mut starting = Vec::new();
        for start in rules::eligible(task, &steps, busy) {
            let progress = task.progress.entry(start.step.name.clone()).or_default();
            if progress.runs >= self.settings.run_cap {
                *cap_hit = true;
                task.message = Some(format!(
                    "step {} reached the cap of {} runs on this task ([scheduler] run_cap); the task was stopped",
                    start.step.name, self.settings.run_cap
                ));
                break;
            }
            progress.runs += 1;
            progress.redo = false;
            progress.last_projection = Some(start.projection);
            let number = progress.runs;
            let run_id = task.runs.len() as u64;
            task.runs.push(RunRecord {
                host: self.settings.host.clone(),
                ..RunRecord::starting(run_id, &start.step.name, &start.step.version, number)
            });
            starting.push((run_id, start.step, number));
        }
        starting
    }

    /// Records, on a new task that no run touched yet, the runs its data makes eligible, as
    /// [`Scheduler::drive_durable`] would start them first, and returns them to be driven as
    /// [`Resumed`] runs: whoever creates the task can make these records durable in the same
    /// write as the task itself, sparing the drive its first commit. A task with runs already
    /// gets none.
    pub fn first_wave(&self, task: &mut Task) -> Vec<Resumed> {
        if !task.runs.is_empty() || task.status != TaskStatus::Running {
            return Vec::new();
        }
        let mut cap_hit = false;
        let starting = self.start_eligible(task, &HashSet::new(), &mut cap_hit);
        // Their snapshot of the data is taken as the drive begins (see `Resumed::input`).
        starting
            .into_iter()
            .map(|(run_id, step, _)| Resumed {
                run_id,
                step,
                input: None,
                replay: Vec::new(),
            })
            .collect()
    }

    /// Records a finished run and merges its output (unless it would take the data past `size`'s
    /// limit); returns whether it completed the task.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        task: &mut Task,
        run_id: u64,
        flight: &InFlight,
        report: RunReport,
        order: &mut MergeOrder,
        others_in_flight: bool,
        size: &mut DataSize,
    ) -> bool {
        let step = flight.step.name.clone();
        let mut completes = false;
        let mut changes: Vec<Change> = Vec::new();
        let mut conflicts: Vec<(u64, Conflict)> = Vec::new();
        // The output is diffed against what the run started from: its snapshot, or, when nothing
        // else ran meanwhile, the data itself. Applying the diff (rather than taking the output
        // whole) keeps the data's own key order, as for overlapping runs.
        let diffed = report.outcome.and_then(|output| {
            let started_from = flight.snapshot.as_deref().unwrap_or(&task.data);
            let diffed = match &flight.step.view {
                Some(view) => diff_output_in_view(started_from, &output.text, view),
                None => diff_output(started_from, &output.text),
            };
            diffed.map_err(|e| RunError {
                kind: RunErrorKind::InvalidOutput,
                message: e.to_string(),
            })
        });
        let applied = diffed.and_then(|diff| match size.apply(&mut task.data, &diff) {
            Ok(skipped) => Ok((diff, skipped)),
            Err(bytes) => Err(RunError {
                kind: RunErrorKind::InvalidOutput,
                message: size.refusal(bytes),
            }),
        });
        let outcome = match applied {
            Ok((diff, skipped)) => {
                changes = diff;
                for change in &changes {
                    for earlier in order
                        .applied
                        .iter()
                        .filter(|a| a.seq > flight.start_seq && a.run_id != run_id)
                    {
                        let Some(record) = task.runs.get(earlier.run_id as usize) else {
                            continue;
                        };
                        let Some(theirs) = record.changes.get(earlier.index) else {
                            continue;
                        };
                        if merge::overlaps(theirs.path(), change.path())
                            && (theirs.path() != change.path() || theirs.value() != change.value())
                        {
                            conflicts.push((
                                earlier.run_id,
                                Conflict {
                                    path: change.path().to_string(),
                                    steps: vec![record.step.clone(), step.clone()],
                                    winner: step.clone(),
                                },
                            ));
                        }
                    }
                }
                for path in skipped {
                    conflicts.push((
                        run_id,
                        Conflict {
                            path,
                            steps: vec![step.clone()],
                            winner: "(not applied: the data changed shape)".into(),
                        },
                    ));
                }
                if others_in_flight {
                    let seq = order.seq;
                    order
                        .applied
                        .extend((0..changes.len()).map(|index| Applied { seq, run_id, index }));
                }
                if let Some(name) = report.requests.name.clone() {
                    task.name = Some(name);
                }
                for tag in &report.requests.tags {
                    if !task.tags.contains(tag) && task.tags.len() < crate::task::MAX_TAGS {
                        task.tags.push(tag.clone());
                    }
                }
                let progress = task.progress.entry(step.clone()).or_default();
                progress.last_failed = false;
                progress.redo = report.requests.redo;
                completes = report.requests.complete;
                RunOutcomeRecord::Ok
            }
            Err(error) => {
                let progress = task.progress.entry(step.clone()).or_default();
                progress.last_failed = true;
                progress.redo = false;
                RunOutcomeRecord::Error(error)
            }
        };
        for (other, conflict) in conflicts {
            if other != run_id
                && let Some(record) = task.runs.get_mut(other as usize)
            {
                record.conflicts.push(conflict.clone());
            }
            if let Some(record) = task.runs.get_mut(run_id as usize) {
                record.conflicts.push(conflict);
            }
        }
        if let Some(record) = task.runs.get_mut(run_id as usize) {
            let ended = Utc::now();
            record.ended_at = Some(ended);
            record.duration_ms = crate::task::millis(report.duration);
            record.outcome = Some(outcome);
            record.logs = report.logs;
            record.logs_truncated = report.logs_truncated;
            record.changes = changes;
            record.connector_calls = report.calls;
        }
        completes
    }

    fn finish_failed(&self, task: &mut Task, run_id: u64, flight: &InFlight, message: String, size: &mut DataSize) {
        let report = RunReport {
            outcome: Err(RunError {
                kind: RunErrorKind::Trap,
                message,
            }),
            logs: Vec::new(),
            logs_truncated: false,
            calls: Vec::new(),
            requests: Default::default(),
            duration: Default::default(),
        };
        self.finish(task, run_id, flight, report, &mut MergeOrder::default(), false, size);
    }
}

/// One run as a future; a panic inside the host while running it becomes an error, not a crash.
fn launch(
    runtime: Arc<Runtime>,
    step: Arc<LoadedStep>,
    input: RunInput,
    run_id: u64,
) -> BoxFuture<'static, (u64, Result<RunReport, String>)> {
    async move {
        let outcome = std::panic::AssertUnwindSafe(async move { runtime.run(&step, input).await })
            .catch_unwind()
            .await
            .map_err(|_| "the host panicked while running the step".to_string());
        (run_id, outcome)
    }
    .boxed()
}

/// "step X failed: why" for the latest failed run of each failing step.
fn failure_message(task: &Task) -> Option<String> {
    let failing: Vec<String> = task
        .progress
        .iter()
        .filter(|(_, p)| p.last_failed)
        .filter_map(|(step, _)| {
            let run = task.runs.iter().rev().find(|r| &r.step == step)?;
            match &run.outcome {
                Some(RunOutcomeRecord::Error(e)) => Some(format!("step {step} failed: {}", e.message)),
                _ => None,
            }
        })
        .collect();
    (!failing.is_empty()).then(|| failing.join("; "))
}
