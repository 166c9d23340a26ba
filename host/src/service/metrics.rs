//! Counters and histograms of the service, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::task::{RunOutcomeRecord, RunRecord, TaskStatus};

/// Upper bounds (seconds) of the run latency histogram's buckets.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Default)]
struct StepStats {
    ok: u64,
    failed: u64,
    buckets: Vec<u64>,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct ConnectorStats {
    calls: u64,
    errors: u64,
}

#[derive(Debug, Default)]
struct State {
    steps: BTreeMap<String, StepStats>,
    connectors: BTreeMap<(String, String), ConnectorStats>,
    /// Tasks deleted, on request and by retention.
    deleted: Deleted,
    /// Requests answered with the task an earlier request with the same idempotency key created.
    replayed: u64,
}

#[derive(Debug, Default)]
struct Deleted {
    requested: u64,
    retention: u64,
}

/// The service's metrics since it started. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Counts tasks deleted: on request (`DELETE /v1/tasks/{id}`), or by retention's sweeps.
    pub fn tasks_deleted(&self, count: u64, by_retention: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if by_retention {
            state.deleted.retention += count;
        } else {
            state.deleted.requested += count;
        }
    }

    /// Counts a request answered with the task an earlier request with its idempotency key
    /// created (a webhook delivered again, a client's retry).
    pub fn request_replayed(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).replayed += 1;
    }

    /// Counts a finished run: its outcome, latency and connector calls.
    pub fn run_finished(&self, run: &RunRecord) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stats = state.steps.entry(run.step.clone()).or_default();
        if stats.buckets.is_empty() {
            stats.buckets = vec![0; BUCKETS.len()];
        }
        match run.outcome {
            Some(RunOutcomeRecord::Ok) => stats.ok += 1,
            _ => stats.failed += 1,
        }
        let seconds = run.duration_ms / 1000.0;
        stats.sum_seconds += seconds;
        for (bound, count) in BUCKETS.iter().zip(stats.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        for call in &run.connector_calls {
            let entry = state
                .connectors
                .entry((call.connector.clone(), call.method.clone()))
                .or_default();
            entry.calls += 1;
            if call.result.is_err() {
                entry.errors += 1;
            }
        }
    }

    /// The Prometheus text exposition, with the task counts by status from the store and the
    /// drives under way on this host.
    pub fn render(&self, tasks: &BTreeMap<TaskStatus, u64>, drives_under_way: usize) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP whenever_tasks Tasks by status.\n# TYPE whenever_tasks gauge"
        );
        for status in [
            TaskStatus::Running,
            TaskStatus::Waiting,
            TaskStatus::Completed,
            TaskStatus::Failed,
        ] {
            let n = tasks.get(&status).copied().unwrap_or_default();
            let _ = writeln!(out, "whenever_tasks{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP whenever_drives_under_way Tasks this host is driving now.\n\
             # TYPE whenever_drives_under_way gauge\n\
             whenever_drives_under_way {drives_under_way}"
        );
        let _ = writeln!(
            out,
            "# HELP whenever_tasks_deleted_total Settled tasks deleted with their history, on request or by \
             retention.\n\
             # TYPE whenever_tasks_deleted_total counter\n\
             whenever_tasks_deleted_total{{reason=\"request\"}} {}\n\
             whenever_tasks_deleted_total{{reason=\"retention\"}} {}",
            state.deleted.requested, state.deleted.retention
        );
        let _ = writeln!(
            out,
            "# HELP whenever_requests_replayed_total Requests that carried the idempotency key of an earlier \
             one, answered with the task it created.\n\
             # TYPE whenever_requests_replayed_total counter\n\
             whenever_requests_replayed_total {}",
            state.replayed
        );
        let _ = writeln!(
            out,
            "# HELP whenever_runs_total Finished runs by step and outcome.\n# TYPE whenever_runs_total counter"
        );
        for (step, s) in &state.steps {
            let step = escape(step);
            let _ = writeln!(out, "whenever_runs_total{{step=\"{step}\",outcome=\"ok\"}} {}", s.ok);
            let _ = writeln!(
                out,
                "whenever_runs_total{{step=\"{step}\",outcome=\"error\"}} {}",
                s.failed
            );
        }
        let _ = writeln!(
            out,
            "# HELP whenever_run_duration_seconds Run latency by step.\n# TYPE whenever_run_duration_seconds histogram"
        );
        for (step, s) in &state.steps {
            let step = escape(step);
            for (bound, count) in BUCKETS.iter().zip(&s.buckets) {
                let _ = writeln!(
                    out,
                    "whenever_run_duration_seconds_bucket{{step=\"{step}\",le=\"{bound}\"}} {count}"
                );
            }
            let total = s.ok + s.failed;
            let _ = writeln!(
                out,
                "whenever_run_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                out,
                "whenever_run_duration_seconds_sum{{step=\"{step}\"}} {}",
                s.sum_seconds
            );
            let _ = writeln!(out, "whenever_run_duration_seconds_count{{step=\"{step}\"}} {total}");
        }
        let _ = writeln!(
            out,
            "# HELP whenever_connector_calls_total Connector calls.\n# TYPE whenever_connector_calls_total counter"
        );
        for ((connector, method), c) in &state.connectors {
            let _ = writeln!(
                out,
                "whenever_connector_calls_total{{connector=\"{}\",method=\"{}\"}} {}",
                escape(connector),
                escape(method),
                c.calls
            );
        }
        let _ = writeln!(
            out,
            "# HELP whenever_connector_errors_total Connector calls that returned an error.\n# TYPE whenever_connector_errors_total counter"
        );
        for ((connector, method), c) in &state.connectors {
            let _ = writeln!(
                out,
                "whenever_connector_errors_total{{connector=\"{}\",method=\"{}\"}} {}",
                escape(connector),
                escape(method),
                c.errors
            );
        }
        out
    }
}
