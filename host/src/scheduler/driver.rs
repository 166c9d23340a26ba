//! The scheduler loop: start every eligible step on a snapshot, wait for runs to finish, merge
//! their changes (recording conflicts), and repeat until the task settles.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use tokio::task::JoinSet;
use whenever_connectors::Registry;

use super::merge::{self, Change};
use super::rules;
use crate::catalog::Catalog;
use crate::runtime::{LoadedStep, RunError, RunErrorKind, RunInput, RunReport, Runtime};
use crate::task::{Conflict, RunOutcomeRecord, RunRecord, Task, TaskStatus};

/// Tunables of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// Runs of one step on one task before the task is stopped as runaway.
    pub run_cap: u32,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings { run_cap: 100 }
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
    snapshot: Arc<Value>,
    start_seq: u64,
}

struct Applied {
    seq: u64,
    run_id: u64,
    step: String,
    path: String,
    value: Option<Value>,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(runtime: Arc<Runtime>, catalog: Catalog, connectors: Registry, settings: SchedulerSettings) -> Self {
        Scheduler { runtime, catalog, connectors, settings }
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
    /// `on_event` sees every start and finish as it happens.
    pub async fn drive(&self, task: &mut Task, on_event: &mut (dyn FnMut(Event<'_>) + Send)) -> TaskStatus {
        let mut runs: JoinSet<(u64, RunReport)> = JoinSet::new();
        let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
        let mut applied: Vec<Applied> = Vec::new();
        let mut seq: u64 = 0;
        let mut completed = task.status == TaskStatus::Completed;
        let mut cap_hit = false;
        if task.status != TaskStatus::Completed {
            task.status = TaskStatus::Running;
            task.message = None;
        }

        loop {
            if !completed && !cap_hit {
                let busy: HashSet<String> = in_flight.values().map(|f| f.step.name.clone()).collect();
                let steps = self.catalog.snapshot();
                let eligible = rules::eligible(task, &steps, &busy);
                if !eligible.is_empty() {
                    let snapshot = Arc::new(task.data.clone());
                    let text: Arc<str> = Arc::from(task.data.to_string());
                    for start in eligible {
                        let progress = task.progress.entry(start.step.name.clone()).or_default();
                        if progress.runs >= self.settings.run_cap {
                            cap_hit = true;
                            task.message = Some(format!(
                                "step {} reached the cap of {} runs on this task; the task was stopped",
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
                            id: run_id,
                            step: start.step.name.clone(),
                            version: start.step.version.clone(),
                            number,
                            started_at: Utc::now(),
                            ended_at: None,
                            duration_ms: 0.0,
                            outcome: None,
                            logs: Vec::new(),
                            logs_truncated: false,
                            changes: Vec::new(),
                            conflicts: Vec::new(),
                            connector_calls: Vec::new(),
                        });
                        if let Some(run) = task.runs.last() {
                            on_event(Event::RunStarted { task, run });
                        }
                        let input = RunInput {
                            task_id: task.id.clone(),
                            data: text.to_string(),
                            run_number: number,
                            connectors: self.connectors.clone(),
                            replay: Vec::new(),
                        };
                        let runtime = self.runtime.clone();
                        let step = start.step.clone();
                        runs.spawn(async move { (run_id, runtime.run(&step, input).await) });
                        in_flight.insert(run_id, InFlight { step: start.step, snapshot: snapshot.clone(), start_seq: seq });
                    }
                }
            }

            let Some(joined) = runs.join_next().await else { break };
            let (run_id, report) = match joined {
                Ok(done) => done,
                Err(join_error) => {
                    // A run's task panicked inside the host: fail every run we can no longer track.
                    let lost: Vec<u64> = in_flight.keys().copied().collect();
                    for run_id in lost {
                        if let Some(flight) = in_flight.remove(&run_id) {
                            self.finish_failed(task, run_id, &flight, format!("internal error: {join_error}"));
                        }
                    }
                    continue;
                }
            };
            let Some(flight) = in_flight.remove(&run_id) else { continue };
            seq += 1;
            let finished = self.finish(task, run_id, &flight, report, seq, &mut applied);
            completed |= finished;
            if let Some(run) = task.runs.get(run_id as usize) {
                on_event(Event::RunFinished { task, run });
            }
            let oldest = in_flight.values().map(|f| f.start_seq).min().unwrap_or(seq);
            applied.retain(|a| a.seq > oldest);
        }

        task.status = rules::settled_status(task, completed, cap_hit);
        if task.status == TaskStatus::Failed && task.message.is_none() {
            task.message = failure_message(task);
        }
        on_event(Event::Settled { task });
        task.status
    }

    /// Records a finished run and merges its output; returns whether it completed the task.
    fn finish(
        &self,
        task: &mut Task,
        run_id: u64,
        flight: &InFlight,
        report: RunReport,
        seq: u64,
        applied: &mut Vec<Applied>,
    ) -> bool {
        let step = flight.step.name.clone();
        let mut completes = false;
        let mut changes: Vec<Change> = Vec::new();
        let mut conflicts: Vec<(u64, Conflict)> = Vec::new();
        let outcome = match report.outcome {
            Ok(output) => {
                changes = merge::diff(&flight.snapshot, &output.data);
                let skipped = merge::apply(&mut task.data, &changes);
                for change in &changes {
                    for earlier in applied.iter().filter(|a| {
                        a.seq > flight.start_seq
                            && a.run_id != run_id
                            && merge::overlaps(&a.path, change.path())
                            && (a.path != change.path() || a.value.as_ref() != change.value())
                    }) {
                        conflicts.push((
                            earlier.run_id,
                            Conflict {
                                path: change.path().to_string(),
                                steps: vec![earlier.step.clone(), step.clone()],
                                winner: step.clone(),
                            },
                        ));
                    }
                }
                for path in skipped {
                    conflicts.push((
                        run_id,
                        Conflict { path, steps: vec![step.clone()], winner: "(not applied: the data changed shape)".into() },
                    ));
                }
                for change in &changes {
                    applied.push(Applied {
                        seq,
                        run_id,
                        step: step.clone(),
                        path: change.path().to_string(),
                        value: change.value().cloned(),
                    });
                }
                if let Some(name) = report.requests.name.clone() {
                    task.name = Some(name);
                }
                for tag in &report.requests.tags {
                    if !task.tags.contains(tag) {
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
            if other != run_id {
                if let Some(record) = task.runs.get_mut(other as usize) {
                    record.conflicts.push(conflict.clone());
                }
            }
            if let Some(record) = task.runs.get_mut(run_id as usize) {
                record.conflicts.push(conflict);
            }
        }
        if let Some(record) = task.runs.get_mut(run_id as usize) {
            let ended = Utc::now();
            record.ended_at = Some(ended);
            record.duration_ms = report.duration.as_secs_f64() * 1000.0;
            record.outcome = Some(outcome);
            record.logs = report.logs;
            record.logs_truncated = report.logs_truncated;
            record.changes = changes;
            record.connector_calls = report.calls;
        }
        completes
    }

    fn finish_failed(&self, task: &mut Task, run_id: u64, flight: &InFlight, message: String) {
        let report = RunReport {
            outcome: Err(RunError { kind: RunErrorKind::Trap, message }),
            logs: Vec::new(),
            logs_truncated: false,
            calls: Vec::new(),
            requests: Default::default(),
            duration: Default::default(),
        };
        let mut none = Vec::new();
        self.finish(task, run_id, flight, report, 0, &mut none);
    }
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
