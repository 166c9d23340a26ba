//! The task: one JSON document plus its state, name, tags, per-step progress and run history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request_key::RequestKey;
use crate::runtime::{ConnectorCallRecord, LogLine, RunError};
use crate::scheduler::merge::Change;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// A run is in flight or a step is eligible.
    Running,
    /// A step called `task.complete()`.
    Completed,
    /// Nothing runs and nothing matches: the task waits for new data.
    Waiting,
    /// Quiet, and the latest run of some step failed (or the runaway cap was hit).
    Failed,
}

impl TaskStatus {
    /// The lowercase name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the scheduler remembers about one step on one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    /// The digest ([`whenever_condition::Projection::digest`]) of the projection of the data
    /// onto the condition's paths at the last start. Stores written before digests kept the
    /// projection itself: it is read back as its digest.
    #[serde(default, deserialize_with = "projection_digest")]
    pub last_projection: Option<String>,
    /// How many runs of the step have started on this task.
    pub runs: u32,
    /// The last run asked for a redo (or an operator asked for a retry). Written only when set,
    /// like `last_failed`: the progress is rewritten at every save and is usually all false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub redo: bool,
    /// The latest finished run failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub last_failed: bool,
}

fn is_false(flag: &bool) -> bool {
    !flag
}

/// Reads `last_projection` as a digest, or as the projection JSON older stores kept (turned into
/// its digest, so a step does not re-run after an upgrade on a situation it already saw).
fn projection_digest<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(digest)) => Ok(Some(digest)),
        Some(stored) => whenever_condition::Projection::from_json(&stored)
            .map(|p| Some(p.digest()))
            .ok_or_else(|| D::Error::custom("last_projection is neither a digest nor a projection")),
    }
}

/// Two concurrent runs wrote the same path with different values; the later one won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The JSON Pointer both wrote.
    pub path: String,
    /// The steps involved, the earlier writer first.
    pub steps: Vec<String>,
    /// The step whose value stands.
    pub winner: String,
}

/// How a run ended, as history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcomeRecord {
    /// The run's changes were applied.
    Ok,
    /// The run failed; nothing it did was applied.
    Error(RunError),
}

/// The key of the host's record of how a task arrived (`$via`: a webhook's name and delivery),
/// which steps read and do not change.
pub const VIA: &str = "$via";

/// How deep a task's data created or patched may nest arrays and objects. Every answer that
/// holds the data (the task wraps it; a history entry's change value sits five levels down)
/// then stays within the 127 levels serde_json reads, this host's own store and CLI among its
/// readers.
pub const MAX_NESTING: usize = 120;

/// How deep `value` nests arrays and objects (a scalar: 0).
pub fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Why data nested `depth` levels cannot be a task's, or `None`: `what` names the data.
pub fn too_deep(what: &str, depth: usize) -> Option<String> {
    (depth > MAX_NESTING).then(|| {
        format!(
            "{what} nests arrays and objects {depth} levels deep, past the {MAX_NESTING} a task's data \
             may (so that every answer holding it reads in JSON parsers that stop at 128)"
        )
    })
}

/// The most tags a task holds: a step's further tags are not added (a run's log says so).
pub const MAX_TAGS: usize = 64;

/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 128;

/// The longest task name, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// One run in a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Position of the run in the task's history (0-based, in start order).
    pub id: u64,
    /// The step's name.
    pub step: String,
    /// The step version that ran.
    pub version: String,
    /// Which run of this step on this task (1-based).
    pub number: u32,
    /// When it started.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while in flight).
    #[serde(serialize_with = "crate::rfc3339::serialize_option")]
    pub ended_at: Option<DateTime<Utc>>,
    /// When it was run again from its start because the host stopped or crashed after recording
    /// it as starting (its journaled connector results replayed, not called again); `None` for a
    /// run not interrupted. A crash in the instant between that record and the launch marks a run
    /// that had not yet begun. Its `duration_ms` is that last attempt's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::rfc3339::serialize_option"
    )]
    pub restarted_at: Option<DateTime<Utc>>,
    /// The cluster host that ran it (its `host_id`; the one that ran it last, when it was run
    /// again after a takeover); `None` on a host of its own, and for changes made through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// Success, or the error that stopped it.
    pub outcome: Option<RunOutcomeRecord>,
    /// The run's log.
    pub logs: Vec<LogLine>,
    /// Whether the log was cut at its cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_truncated: bool,
    /// The changes it applied.
    pub changes: Vec<Change>,
    /// Conflicts with concurrent runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Connector calls with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connector_calls: Vec<ConnectorCallRecord>,
}

/// The `step` of a history entry recording a patch of the task's data through the API (a
/// person approving an order, say), not a run of a step: `$` is never in a step's name.
pub const PATCH_ENTRY: &str = "$patch";

/// The `step` of a history entry recording a retry asked for through the API.
pub const RETRY_ENTRY: &str = "$retry";

impl RunRecord {
    /// A history entry for a change made through the API (`kind`: [`PATCH_ENTRY`] or
    /// [`RETRY_ENTRY`]), appended to `task`'s runs: finished as it is made, its `changes` what it
    /// changed in the data, its log what was asked and by whom (`by`: the token's name, when the
    /// API has tokens). So the history tells every change to the data, not only the steps'.
    pub fn append_intervention(task: &mut Task, kind: &str, by: Option<&str>, what: String, changes: Vec<Change>) {
        let number = task.runs.iter().filter(|r| r.step == kind).count() as u32 + 1;
        let message = match by {
            Some(by) => format!("{what}, by the token {by}"),
            None => what,
        };
        let now = Utc::now();
        task.runs.push(RunRecord {
            started_at: now,
            ended_at: Some(now),
            outcome: Some(RunOutcomeRecord::Ok),
            logs: vec![LogLine {
                level: crate::runtime::LogLevel::Info,
                message,
            }],
            changes,
            ..RunRecord::starting(task.runs.len() as u64, kind, "", number)
        });
    }

    /// The record of run `number` of `step` (at `version`), starting now: no outcome, nothing
    /// logged or changed yet. `id` is its position in the task's runs.
    pub fn starting(id: u64, step: &str, version: &str, number: u32) -> RunRecord {
        RunRecord {
            id,
            step: step.to_string(),
            version: version.to_string(),
            number,
            started_at: Utc::now(),
            ended_at: None,
            restarted_at: None,
            host: None,
            duration_ms: 0.0,
            outcome: None,
            logs: Vec::new(),
            logs_truncated: false,
            changes: Vec::new(),
            conflicts: Vec::new(),
            connector_calls: Vec::new(),
        }
    }
}

/// A task: the data and everything the host knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub id: String,
    /// Its status.
    pub status: TaskStatus,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A name steps may set.
    pub name: Option<String>,
    /// Tags steps may add.
    pub tags: Vec<String>,
    /// The JSON document.
    pub data: Value,
    /// History of runs.
    pub runs: Vec<RunRecord>,
    /// Per-step progress (what the scheduler needs to decide re-runs).
    #[serde(default)]
    pub progress: BTreeMap<String, StepProgress>,
    /// When it was created.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// The idempotency key of the request that created it, if it carried one: a repeat of that
    /// request finds this task instead of creating another ([`crate::request_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<RequestKey>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `duration` in milliseconds to the microsecond, as run records and probes show it: `1.268`,
/// not the float noise of `1.2682900000000001` that nanoseconds divided out leave.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// A fresh task id: `t_`, the time in milliseconds (12 hex digits), then 12 hex digits hashed
/// from the time, the process and a counter. Ids made later sort later, so a new task's id goes
/// at the end of the store's index of ids, where the ids of the tasks created with it in one
/// commit share a page or two; with random ids each went to a page of its own, a page that
/// commit then wrote whole. The hashed part keeps ids made in the same millisecond, on one host
/// or several, apart (48 bits each millisecond).
pub fn new_task_id() -> String {
    use sha2::{Digest, Sha256};
    let now = Utc::now();
    let seed = format!(
        "{}:{}:{}",
        now.timestamp_nanos_opt().unwrap_or_default(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    // 48 bits of milliseconds last until the year 10889; a clock before 1970 counts as 1970.
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("t_{millis:012x}{}", &hex::encode(Sha256::digest(seed.as_bytes()))[..12])
}

impl Task {
    /// A new task over `data`, not yet evaluated.
    pub fn new(data: Value) -> Task {
        Task::with_id(new_task_id(), data)
    }

    /// A new task with a chosen id.
    pub fn with_id(id: String, data: Value) -> Task {
        Task {
            id,
            status: TaskStatus::Running,
            message: None,
            name: None,
            tags: Vec::new(),
            data,
            runs: Vec::new(),
            progress: BTreeMap::new(),
            created_at: Utc::now(),
            idempotency: None,
        }
    }

    /// A new task over `data` for a request carrying `key`: its id is the key's
    /// ([`RequestKey::task_id`]), so the store refuses a second task for the same request.
    pub fn for_request(key: RequestKey, data: Value) -> Task {
        let mut task = Task::with_id(key.task_id(), data);
        task.idempotency = Some(key);
        task
    }

    /// The task as the CLI prints it: `id, status, name, tags, data, runs`.
    pub fn summary_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "name": self.name,
            "tags": self.tags,
            "data": self.data,
            "runs": self.runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use whenever_condition::Condition;

    #[test]
    fn durations_are_shown_to_the_microsecond_without_float_noise() {
        let shown =
            |nanos: u64| serde_json::to_string(&millis(std::time::Duration::from_nanos(nanos))).unwrap_or_default();
        assert_eq!(shown(1_268_290), "1.268");
        assert_eq!(shown(2_064_328), "2.064");
        assert_eq!(shown(999), "0.0");
        assert_eq!(shown(12_500_000), "12.5");
        assert_eq!(shown(300_000_000_001), "300000.0");
    }

    #[test]
    fn task_ids_sort_by_when_they_were_made_and_are_all_different() {
        let first = new_task_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<String> = (0..10_000).map(|_| new_task_id()).collect();
        assert!(first.starts_with("t_") && first.len() == 26, "{first}");
        assert!(first[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
        // The time comes first: an id made milliseconds later sorts after the earlier one, and
        // so do ids made in later milliseconds among the 10,000.
        assert!(ids.iter().all(|id| *id > first), "{first}");
        assert!(ids.windows(2).all(|w| w[0][..14] <= w[1][..14]));
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn progress_stored_with_a_projection_reads_back_as_its_digest() {
        let condition = Condition::parse(&json!({"order": {"total": "$number", "paid": null}})).expect("pattern");
        let data = json!({"order": {"total": 12.0, "items": [1, 2]}});
        let projection = condition.projection(&data);
        // What stores written before digests hold.
        let old = json!({"last_projection": projection.to_json(), "runs": 2, "redo": false, "last_failed": false});
        let progress: StepProgress = serde_json::from_value(old).expect("old progress");
        assert_eq!(progress.last_projection, Some(projection.digest()));
        assert_eq!(progress.runs, 2);
        // What is written now reads back unchanged, and so does a step that never ran.
        let now = serde_json::to_value(&progress).expect("encode");
        assert_eq!(now["last_projection"], json!(projection.digest()));
        assert_eq!(
            serde_json::from_value::<StepProgress>(now).expect("new progress"),
            progress
        );
        let fresh: StepProgress =
            serde_json::from_value(json!({"runs": 0, "redo": false, "last_failed": false})).expect("no projection");
        assert_eq!(fresh.last_projection, None);
        // Anything else is refused, naming the field.
        let error = serde_json::from_value::<StepProgress>(
            json!({"last_projection": 3, "runs": 0, "redo": false, "last_failed": false}),
        )
        .expect_err("a number is no projection");
        assert!(error.to_string().contains("last_projection"), "{error}");
    }
}
