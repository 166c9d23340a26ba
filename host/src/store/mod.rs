//! Durable storage of tasks, their run history, the connector-call journal and deployed steps.
//!
//! [`Store`] is the contract; [`sqlite::SqliteStore`] the embedded default (one file, WAL,
//! grouped commits). The trait makes no single-process assumption: concurrent writers of one task
//! are detected by the store itself (each task carries a revision, and a save names the revision
//! it read — a compare-and-swap the database performs), so a PostgreSQL backend shared by several
//! hosts can implement it as it stands.
//!
//! [`postgres::PostgresStore`] is that backend. Hosts sharing it divide the running tasks with
//! leases ([`Store::claim_tasks`], [`Store::renew_leases`], [`Store::release_task`]) and hear of
//! each other's changes through [`Store::events`]; the SQLite store keeps the leases in memory (one
//! host owns the file) and has no events.

pub mod background;
pub mod backup;
mod call_log;
pub mod commit_stats;
pub mod lease;
pub mod postgres;
pub mod postgres_tls;
mod rows;
pub mod scratch_schema;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;
mod task_log;
pub mod writes_coming;
#[cfg(test)]
mod written_format;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::runtime::{ConnectorCallRecord, StepManifest};
use crate::scheduler::Commit;
use crate::task::{Task, TaskStatus};

/// A storage operation failed.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The task (or step version) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Someone else changed the task since it was read (or the id is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The task is not at any of the revisions the caller named (an `If-Match`): it changed
    /// since they read it.
    #[error("changed: {0}")]
    Changed(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("storage error: {0}")]
    Backend(String),
    /// The database cannot be this host's: another process has the SQLite file open, or a newer
    /// whenever wrote it (its schema is newer than this host knows). The operator's to fix.
    #[error("{0}")]
    Unusable(String),
    /// The database cannot take writes now (its disk is full, an I/O error, the connection is
    /// lost): nothing of the failed write was stored, and the same write may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Task `id`, at `revision`, is not at any of the revisions `named`: a change that named
    /// them is refused (the task changed since it was read).
    pub(crate) fn not_at(id: &str, revision: u64, named: &[u64]) -> StoreError {
        let list: Vec<String> = named.iter().map(u64::to_string).collect();
        StoreError::Changed(match list.as_slice() {
            [] => format!("task {id} is at revision {revision}, which the request did not name"),
            [one] => format!("task {id} is at revision {revision}, not {one}: it changed since it was read"),
            _ => format!(
                "task {id} is at revision {revision}, not one of {}: it changed since it was read",
                list.join(", ")
            ),
        })
    }
}

/// A task as stored: the task, its revision (for compare-and-swap saves) and the last write time.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    /// The task with its whole history.
    pub task: Task,
    /// Incremented by every save; a save names the revision it read.
    pub revision: u64,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// A task in a listing (no data, no history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// The task's id.
    pub id: String,
    /// Its status.
    pub status: TaskStatus,
    /// Its name.
    pub name: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// Which tasks to list: newest first, filtered, one page at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks with this tag.
    pub tag: Option<String>,
    /// At most this many (the store may cap it).
    pub limit: u32,
    /// Continue after this cursor (from the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    /// The tasks, newest first.
    pub tasks: Vec<TaskSummary>,
    /// Pass this as the cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What one save writes: the task row and the named run records.
#[derive(Debug, Clone, Copy)]
pub struct TaskSave<'a> {
    /// The task as it is now.
    pub task: &'a Task,
    /// The revision the writer read (the save fails with [`StoreError::Conflict`] otherwise).
    pub expected_revision: u64,
    /// Run records to write (positions in `task.runs`), new or changed.
    pub runs: &'a [u64],
    /// Runs that are starting, with the data they start from (kept until they finish, to re-run
    /// them after a crash).
    pub starting: &'a [u64],
    /// The data the starting runs start from.
    pub input: Option<&'a Value>,
    /// `task.data` as JSON text, when the caller has it already (the scheduler has just
    /// encoded it for the steps): the store writes it instead of encoding the data again.
    /// It must be the encoding of `task.data` itself.
    pub data_text: Option<&'a str>,
    /// How the data came to be, when only runs changed it: the runs (positions in `task.runs`,
    /// their records written by this save or an earlier one) whose `changes` were merged into
    /// the data of revision `expected_revision`, in the order they were merged. A store may then
    /// log this list instead of the data and rebuild the data by replaying those changes. Such a
    /// save also says that only the steps of the runs it names changed their progress (as in a
    /// drive, where a step's progress moves when its runs start or finish), so a store may log
    /// just theirs. `None`: the data changed otherwise (or the caller does not say); the store
    /// keeps data and progress whole.
    pub applied: Option<&'a [u64]>,
}

impl<'a> TaskSave<'a> {
    /// The ids of all of `task`'s runs, for [`TaskSave::creating`].
    pub fn every_run(task: &Task) -> Vec<u64> {
        (0..task.runs.len() as u64).collect()
    }

    /// Whether the starting runs start on the data this save writes (the common case: the
    /// driver commits before they start), so the store need not keep their input apart.
    pub fn starts_on_saved_data(&self) -> bool {
        self.input
            .is_some_and(|input| std::ptr::eq(input, &self.task.data) || *input == self.task.data)
    }

    /// What committing `commit` of a drive of `task` writes, over the revision the drive last
    /// saved.
    pub fn of_commit(task: &'a Task, expected_revision: u64, commit: Commit<'a>) -> TaskSave<'a> {
        TaskSave {
            task,
            expected_revision,
            runs: commit.runs,
            starting: commit.starting,
            input: commit.input,
            data_text: commit.data_text,
            applied: Some(commit.applied),
        }
    }

    /// A save of `task`'s state and whole data over `expected_revision`, naming no runs (a
    /// person's patch or retry, a test's plain write).
    pub fn whole(task: &'a Task, expected_revision: u64) -> TaskSave<'a> {
        TaskSave {
            task,
            expected_revision,
            runs: &[],
            starting: &[],
            input: None,
            data_text: None,
            applied: None,
        }
    }

    /// What creating `task` writes: its row and the runs `all` (see [`TaskSave::every_run`]),
    /// of which `starting` start on its data.
    pub fn creating(task: &'a Task, all: &'a [u64], starting: &'a [u64]) -> TaskSave<'a> {
        TaskSave {
            task,
            expected_revision: 0,
            runs: all,
            starting,
            input: (!starting.is_empty()).then_some(&task.data),
            data_text: None,
            applied: None,
        }
    }
}

/// A run that started and never finished (the host stopped): re-run it with its journal.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptedRun {
    /// Its position in the task's runs.
    pub run_id: u64,
    /// The data it started from.
    pub input: Value,
    /// The connector results it had received, by call number (`None`: a call not journaled,
    /// such as one refused before it was sent).
    pub journal: Vec<Option<ConnectorCallRecord>>,
}

/// A run's journal as rows of call number and record, in call order, placed by call number: a
/// call not journaled leaves its place empty, so that those after it are replayed as
/// themselves.
pub(crate) fn by_call_number(
    rows: impl IntoIterator<Item = (i64, ConnectorCallRecord)>,
) -> Result<Vec<Option<ConnectorCallRecord>>, StoreError> {
    let mut journal = Vec::new();
    for (index, record) in rows {
        // No run makes more calls than its limit (10,000 at the most): a larger number is no
        // call's, and would have the list allocated to it.
        let index = usize::try_from(index)
            .ok()
            .filter(|index| *index < 1 << 24)
            .ok_or_else(|| StoreError::Corrupt(format!("a journaled call's number {index} is no call's")))?;
        if index >= journal.len() {
            journal.resize(index + 1, None);
        }
        journal[index] = Some(record);
    }
    Ok(journal)
}

/// One deployed version of a step, with its component.
#[derive(Debug, Clone, PartialEq)]
pub struct StepVersion {
    /// The step's name.
    pub name: String,
    /// Its version (the first 12 hex digits of the component's SHA-256).
    pub version: String,
    /// The component's full SHA-256.
    pub digest: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// Grants and limits.
    pub manifest: StepManifest,
    /// When this version was first deployed.
    pub deployed_at: DateTime<Utc>,
    /// Who first deployed it: the API token's name, or the watched file (`None`: not known,
    /// as for versions deployed before this was recorded).
    pub deployed_by: Option<String>,
}

/// A step version in a listing (no bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepVersionInfo {
    /// The step's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The component's SHA-256.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was first deployed.
    pub deployed_at: DateTime<Utc>,
    /// Who first deployed it ([`StepVersion::deployed_by`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// Whether it is the version that serves now.
    pub current: bool,
}

/// A host registered on a shared store ([`Store::hosts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSeen {
    /// Its `host_id`.
    pub host_id: String,
    /// The process registered under it now.
    pub instance: String,
    /// How long ago the store last saw it, in milliseconds.
    pub seen_ms_ago: u64,
    /// Its lease: not seen for that long, it is gone.
    pub lease_ms: u64,
    /// Seen within its lease, as the claims judge it: a live host of a newer format makes an
    /// older one stand aside.
    pub live: bool,
    /// The format of what it writes ([`WRITE_FORMAT`]; 0 while it starts, or a build before
    /// formats).
    pub format: u32,
    /// The running tasks it holds a lease on now.
    pub tasks: u64,
}

/// What a change to a step's serving version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepChangeKind {
    /// A version was deployed (new, or deployed again) and serves.
    Deployed,
    /// An earlier stored version was made to serve again.
    RolledBack,
    /// The step stopped serving (its versions stay).
    Removed,
}

impl StepChangeKind {
    /// The name stored and shown (`deployed`, `rolled_back`, `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepChangeKind::Deployed => "deployed",
            StepChangeKind::RolledBack => "rolled_back",
            StepChangeKind::Removed => "removed",
        }
    }

    /// The kind stored as `text`, or `None` for a name this host does not know.
    pub fn parse(text: &str) -> Option<StepChangeKind> {
        [
            StepChangeKind::Deployed,
            StepChangeKind::RolledBack,
            StepChangeKind::Removed,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One change to which version of a step serves: the step's audit trail, kept across removals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepChange {
    /// The step's name.
    pub step: String,
    /// What the change did.
    pub change: StepChangeKind,
    /// The version that serves after it (`None` after a removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// Who made it: an API token's name, a watched file, the server's start (`None`: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A change made through another host sharing the store, which this host should react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Tasks became claimable (created, resumed, or released by a host).
    TasksAvailable,
    /// The serving steps changed (a deploy, rollback or removal): reload them.
    StepsChanged,
    /// A watched task settled ([`Store::watch_task`]): a client waiting for it here hears of it.
    TaskSettled(String),
}

/// The version of what this build writes to a shared store that a host built before it may
/// not read: raise it with every change of that kind (a new kind of run or connector-call
/// record, a new meaning of a column). Each host registers its format ([`Store::register_host`])
/// once it claims tasks; a host that sees a live host of a newer one claims no more tasks and
/// answers `/readyz` 503 (`version: superseded`), so that a cluster upgraded one host at a time
/// never has an older host drive a task a newer one wrote. (Builds before this one record none:
/// 0.) A test renders every record kind the stores write and compares it with
/// `store/written_format.txt`: a change to them fails it until someone decides whether this
/// must be raised.
pub const WRITE_FORMAT: u32 = 1;

/// Durable storage for the service. Every method returns once its effect is durable.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new task with its runs; revision 1. [`StoreError::Conflict`] if the id exists.
    async fn create_task(&self, task: &Task) -> Result<u64, StoreError> {
        self.create_task_starting(task, &[]).await
    }

    /// Stores a new task with its runs, of which `starting` (positions in `task.runs`) start on
    /// its data (see [`crate::scheduler::Scheduler::first_wave`]): after a crash they are
    /// interrupted runs, re-run on that data. Revision 1; [`StoreError::Conflict`] if the id
    /// exists.
    async fn create_task_starting(&self, task: &Task, starting: &[u64]) -> Result<u64, StoreError>;

    /// Writes the task row and the named runs if the stored revision is still
    /// `expected_revision`; returns the new revision. Finished runs no longer need their input and
    /// journal (a backend may drop them or keep them as history).
    async fn save_task(&self, save: TaskSave<'_>) -> Result<u64, StoreError> {
        self.save_task_at(save, Utc::now()).await
    }

    /// [`Store::save_task`], stamping the task's last write `at` (its `updated_at` as read back),
    /// so that the caller knows the task as stored without reading it back.
    async fn save_task_at(&self, save: TaskSave<'_>, at: DateTime<Utc>) -> Result<u64, StoreError>;

    /// One task with its whole history.
    async fn get_task(&self, id: &str) -> Result<Option<StoredTask>, StoreError>;

    /// A page of tasks, newest first.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, StoreError>;

    /// How many tasks are in each status.
    async fn count_tasks(&self) -> Result<BTreeMap<TaskStatus, u64>, StoreError>;

    /// Deletes a settled task (waiting, failed or completed) with its whole history and
    /// journal, if it is at one of `revisions` (`None`: at any). [`StoreError::NotFound`] when
    /// there is no such task, [`StoreError::Changed`] when it is at another revision,
    /// [`StoreError::Conflict`] while it is running (a drive may still write it).
    async fn delete_task(&self, id: &str, revisions: Option<&[u64]>) -> Result<(), StoreError>;

    /// Deletes, oldest first, up to `limit` tasks in `status` whose last write is older than
    /// `before`, each with its history and journal (retention); returns how many it deleted.
    /// Running tasks are never deleted: with `status` running it deletes nothing.
    async fn delete_settled(&self, status: TaskStatus, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// The runs of a task that started and never finished, with their inputs and journals.
    async fn interrupted_runs(&self, task_id: &str) -> Result<Vec<InterruptedRun>, StoreError>;

    /// Journals connector call `index` of run `run_id` of a task. Once it returns the result
    /// survives a crash of the process, and it is committed no later than the next save (a
    /// backend may drop it once the run's finished record, which holds it, is committed).
    async fn journal_call(
        &self,
        task_id: &str,
        run_id: u64,
        index: usize,
        call: &ConnectorCallRecord,
    ) -> Result<(), StoreError>;

    /// Stores a step version (a version that exists keeps its component, first deploy time and
    /// first deployer, and takes the new manifest) and, when `make_current`, makes it the one
    /// that serves and records that as a [`StepChangeKind::Deployed`] change, made at
    /// `version.deployed_at` by `version.deployed_by`, in the same transaction.
    async fn put_step_version(&self, version: &StepVersion, make_current: bool) -> Result<(), StoreError>;

    /// Makes `version` the serving version of step `name`, or, with `None`, removes the step
    /// (its versions stay for history and rollback), and records the change as made `by` whom in
    /// the same transaction. [`StoreError::NotFound`] for an unknown version.
    async fn set_current_step(&self, name: &str, version: Option<&str>, by: Option<&str>) -> Result<(), StoreError>;

    /// Every recorded change to step `name`'s serving version, oldest first (kept after the
    /// step is removed).
    async fn step_changes(&self, name: &str) -> Result<Vec<StepChange>, StoreError>;

    /// The serving version of every step, with components.
    async fn current_steps(&self) -> Result<Vec<StepVersion>, StoreError>;

    /// One version of a step, with its component.
    async fn step_version(&self, name: &str, version: &str) -> Result<Option<StepVersion>, StoreError>;

    /// Every stored version (of one step, or of all), oldest first, without components.
    async fn step_versions(&self, name: Option<&str>) -> Result<Vec<StepVersionInfo>, StoreError>;

    /// Whether several hosts may share this store: they then claim tasks with leases and listen
    /// to [`Store::events`] instead of driving every task they see.
    fn shared(&self) -> bool {
        false
    }

    /// Claims up to `limit` running tasks that no host holds (or whose holder's lease expired),
    /// oldest first, for `owner` until `lease` from now; returns their ids. Two concurrent claims
    /// never get the same task. A save that settles a task (any status but running) ends its lease.
    /// A task taken over from another owner moves on a revision, so that owner, should it still
    /// be driving it (paused past its lease), can save it no more: its compare-and-swap fails.
    /// The service's owners are processes (`host_id/instance`), so this holds between two
    /// processes given one `host_id` too. Nothing is claimed while a host of a newer
    /// [`WRITE_FORMAT`] is registered and seen within its lease.
    async fn claim_tasks(&self, owner: &str, limit: u32, lease: Duration) -> Result<Vec<String>, StoreError>;

    /// Extends `owner`'s leases on `ids` to `lease` from now; returns the ids it still holds (a
    /// missing id was taken over, or settled).
    async fn renew_leases(&self, owner: &str, ids: &[String], lease: Duration) -> Result<Vec<String>, StoreError>;

    /// Ends `owner`'s lease on task `id` (nothing when it does not hold it); a task still running
    /// becomes claimable at once.
    async fn release_task(&self, id: &str, owner: &str) -> Result<(), StoreError>;

    /// Registers this process, `instance` (a name no other process has), as the cluster host
    /// named `host`, seen now, with its lease `fresh`; again, it renews the registration.
    /// [`StoreError::Conflict`], naming how long ago it was last seen, while another instance
    /// registered under that name was seen within its own lease or `fresh`, the longer: two
    /// processes given one `host_id` would each take the other's tasks for their own. The
    /// registration records `format`, the format of what the process writes: its build's
    /// [`WRITE_FORMAT`] once it claims tasks, 0 while it starts (an upgraded host compiling its
    /// steps takes no work from the older ones yet). Answers the newest format among the other
    /// hosts seen within their lease (0 when none, or only starting hosts and older builds,
    /// which record none). A store no hosts share has nothing to register (0).
    async fn register_host(&self, host: &str, instance: &str, fresh: Duration, format: u32) -> Result<u32, StoreError> {
        let _ = (host, instance, fresh, format);
        Ok(0)
    }

    /// Asks that task `id`'s settles from now on be announced to every host
    /// ([`StoreEvent::TaskSettled`]): a client waits for it on a host that may not drive it. A
    /// store no hosts share has no one else to announce them (nothing is done).
    async fn watch_task(&self, id: &str) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Ends `instance`'s registration as `host` (a host stopping), so that the name is free at
    /// once; nothing when another instance holds it.
    async fn unregister_host(&self, host: &str, instance: &str) -> Result<(), StoreError> {
        let _ = (host, instance);
        Ok(())
    }

    /// The hosts registered on the store ([`Store::register_host`]), by name, as the store's
    /// clock sees them: a cluster's operator watches an upgrade go through with it. Empty on a
    /// store no hosts share.
    async fn hosts(&self) -> Result<Vec<HostSeen>, StoreError> {
        Ok(Vec::new())
    }

    /// Commits a small write for `host` (its row in `probes`), the way task saves commit (the
    /// SQLite writer's group commit, the PostgreSQL pool): it succeeds only while the store takes
    /// writes from this host (`/readyz`). A database server ends the write once it has waited
    /// `limit` (a locked or stuck server), so a caller that gave up sooner leaves no connection
    /// held by it for long.
    async fn probe(&self, host: &str, limit: Duration) -> Result<(), StoreError>;

    /// A token that changes whenever the serving steps change (deploy, rollback, removal, a new
    /// manifest): a host that claims work compares it with the one it loaded. It counts every
    /// change on record, not only the newest time a host's clock wrote (which one behind the
    /// others left as it was).
    async fn steps_stamp(&self) -> Result<String, StoreError>;

    /// What names the steps every waiting and failed task was last re-evaluated against, all of
    /// them (a text the host makes of their names and versions); `None` before the first such
    /// pass. A start whose steps it names has nothing to re-evaluate, and reads no task.
    async fn reevaluated_at(&self) -> Result<Option<String>, StoreError>;

    /// Records that every waiting and failed task was re-evaluated against the steps `mark`
    /// names.
    async fn set_reevaluated_at(&self, mark: &str) -> Result<(), StoreError>;

    /// The count of writers at work towards their next write, for a store that groups commits
    /// and can hold one briefly while writes are on their way ([`writes_coming`]); `None` for a
    /// store that does not (the default).
    fn writes_coming(&self) -> Option<std::sync::Arc<writes_coming::WritesComing>> {
        None
    }

    /// How its group commits went since it opened, for a store that groups them (`None`, the
    /// default, for one that commits each write by itself).
    fn commit_stats(&self) -> Option<commit_stats::CommitStats> {
        None
    }

    /// Changes made through other hosts, as they commit (`None` for a store no other host
    /// shares). Delivery is best effort: a host also polls slowly as a backstop.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }
}
