//! One run of a step's `content`: the input, the report, and how failures are named.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use whenever_connectors::{ErrorKind, Registry};

use super::json_text::JsonText;
use super::log::LogLine;

/// What a run needs besides the step: the task, its data, and the connectors.
#[derive(Clone)]
pub struct RunInput {
    /// The task's id.
    pub task_id: String,
    /// What the step is given, as JSON text: the task data the run starts from, or the step's
    /// view of it ([`super::DataView`]).
    pub data: String,
    /// Which run of this step on this task this is (1-based); part of the idempotency key.
    pub run_number: u32,
    /// The host's connectors.
    pub connectors: Registry,
    /// Connector results journaled by an interrupted earlier attempt of this same run, by call
    /// number (`None`: that call was not journaled, such as one refused before it was sent),
    /// replayed instead of calling the connector again.
    pub replay: Vec<Option<ConnectorCallRecord>>,
    /// Where each real connector result is made durable before the step sees it (the service's
    /// store); `None` when nothing needs to survive a crash (`whenever run`, tests).
    pub journal: Option<Arc<dyn CallJournal>>,
}

/// Makes connector results durable before the step sees them, so an interrupted run can be
/// re-run with the same results replayed ([`RunInput::replay`]) and no side effect happens twice.
#[async_trait::async_trait]
pub trait CallJournal: Send + Sync {
    /// Records call number `index` (0-based) of this run. An error stops the run (it traps, as
    /// [`RunErrorKind::Journal`]) and a durable drive with it: a result that is not durable must
    /// not be acted on, and the run is re-run once the store takes writes again.
    async fn record(&self, index: usize, call: &ConnectorCallRecord) -> Result<(), String>;
}

impl std::fmt::Debug for RunInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunInput")
            .field("task_id", &self.task_id)
            .field("run_number", &self.run_number)
            .finish_non_exhaustive()
    }
}

/// A connector call's error as recorded in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

/// One connector call made by a run, with its result. In JSON (history, journal, the API) the
/// result is `returned` (what the connector answered) or `error` (`{kind, message}`), the one
/// or the other (`call_record` has the form, and reads records written before it too).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "super::call_record::CallRecordJson")]
pub struct ConnectorCallRecord {
    /// The connector's name.
    pub connector: String,
    /// The method called.
    pub method: String,
    /// The arguments as the step wrote them (a JSON string holding them when they did not
    /// parse). Kept as text: the call is written to the journal and then in its run's record,
    /// each time by copying the text.
    pub args: JsonText,
    /// What the connector answered, as the step was given it.
    pub result: Result<JsonText, CallError>,
    /// The idempotency key the call carried (task:step:run:call).
    pub idempotency_key: String,
    /// How long the call took, in microseconds.
    pub duration_us: u64,
    /// The result was not asked of the connector again but replayed from the journal of an
    /// attempt of this run that a crash interrupted.
    pub replayed: bool,
}

/// What a run asked of its task through the task API; applied only when the run succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRequests {
    /// A new name for the task.
    pub name: Option<String>,
    /// Tags to add.
    pub tags: Vec<String>,
    /// The step called `task.complete()`.
    pub complete: bool,
    /// The step called `task.redo()`.
    pub redo: bool,
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunErrorKind {
    /// `content` returned an error.
    StepError,
    /// The run exceeded its execution deadline.
    Deadline,
    /// The run tried to use more memory than its limit.
    Memory,
    /// The guest panicked.
    Panic,
    /// The guest overflowed its stack (recursion too deep).
    StackOverflow,
    /// The guest trapped for another reason.
    Trap,
    /// The output is not valid JSON (or not an object).
    InvalidOutput,
    /// The output is larger than the limit.
    OutputTooLarge,
    /// The run made more connector calls than allowed.
    TooManyConnectorCalls,
    /// The host could not instantiate the step.
    Instantiate,
    /// The host could not journal a connector result (its store failed): not the step's
    /// failure. A durable drive stops there, as at a failed commit, and the run is re-run with
    /// what was journaled once the store takes writes again; it is never recorded as failed.
    Journal,
}

/// A failed run: the kind and a message naming what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// The kind of failure.
    pub kind: RunErrorKind,
    /// What happened, for people.
    pub message: String,
}

/// The new data a successful run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// The task data as the step left it: JSON text within the output limit, not yet parsed (the
    /// scheduler parses it as it diffs it against the data the run started from, see
    /// [`crate::scheduler::output_diff`], and refuses it there when it is not a JSON object).
    pub text: String,
}

/// Everything a run reports back, successful or not.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The new data, or why the run failed.
    pub outcome: Result<RunOutput, RunError>,
    /// The run's log.
    pub logs: Vec<LogLine>,
    /// Whether the log was cut at its cap.
    pub logs_truncated: bool,
    /// Connector calls in order.
    pub calls: Vec<ConnectorCallRecord>,
    /// What the step asked of its task.
    pub requests: TaskRequests,
    /// Wall time of the run.
    pub duration: Duration,
}
