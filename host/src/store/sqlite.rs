//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one dedicated writer thread that owns the only writing connection. It takes every
//! write waiting in its queue, runs them in one transaction and commits them together (group
//! commit): under load one fsync covers many writes, so durability does not cost throughput. Each
//! caller is answered only after the commit. Reads use a small pool of reader connections on
//! blocking threads (WAL lets them read while the writer writes).
//!
//! A save appends a record to the task log rather than rewriting the task's rows, and connector
//! results are appended to the journal and kept (`store::task_log` says why and how a task is
//! read back). A connector result does not wait for a commit: it is appended to a file and moved
//! into the journal by the writer's next transaction (`store::call_log`).
//!
//! The schema is versioned: `schema_version` holds the number of migrations applied, and
//! [`SqliteStore::open`] applies the missing ones.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::call_log::{CallLog, PendingCall};
use super::commit_stats::{CommitCounters, CommitStats};
use super::rows::{
    corrupt, parse_request_key, parse_status, parse_time, signed, step_change_kind, still_running, time_text, to_json,
};
use super::task_log::{LoggedRecord, SaveRecord, interrupted, latest_state, merge_runs};
use super::writes_coming::WritesComing;
use super::{
    InterruptedRun, StepChange, StepChangeKind, StepVersion, StepVersionInfo, Store, StoreError, StoredTask, TaskPage,
    TaskQuery, TaskSave, TaskSummary,
};
use crate::runtime::{ConnectorCallRecord, StepManifest};
use crate::task::{Task, TaskStatus};

/// The migrations, in order; `schema_version.version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks, runs, the journal, steps.
    r#"
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    name TEXT,
    tags TEXT NOT NULL,
    message TEXT,
    data TEXT NOT NULL,
    progress TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX tasks_by_status ON tasks (status, seq);
CREATE TABLE runs (
    task_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    finished INTEGER NOT NULL,
    record TEXT NOT NULL,
    input TEXT,
    PRIMARY KEY (task_id, run_id)
);
CREATE TABLE journal (
    task_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    call_index INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (task_id, run_id, call_index)
);
CREATE TABLE step_versions (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    component BLOB NOT NULL,
    manifest TEXT NOT NULL,
    deployed_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE steps (
    name TEXT PRIMARY KEY,
    current TEXT,
    updated_at TEXT NOT NULL
);
"#,
    // 2: a starting run whose input is the data saved with it stores a flag, not a copy.
    "ALTER TABLE runs ADD COLUMN input_from_task INTEGER NOT NULL DEFAULT 0;",
    // 3: saves append to the task log instead of rewriting rows (see the module docs); the runs,
    // their inputs and the journal move there, keyed by the task's sequence number.
    r#"
CREATE TABLE task_log (
    task_seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    name TEXT,
    tags TEXT NOT NULL,
    message TEXT,
    data TEXT NOT NULL,
    progress TEXT NOT NULL,
    runs TEXT NOT NULL,
    starting TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (task_seq, revision)
);
CREATE TABLE run_inputs (
    task_seq INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    input TEXT NOT NULL,
    PRIMARY KEY (task_seq, run_id)
);
CREATE TABLE call_journal (
    task_seq INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    call_index INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (task_seq, run_id, call_index)
);
INSERT INTO task_log (task_seq, revision, status, name, tags, message, data, progress, runs, starting, updated_at)
SELECT t.seq, t.revision, t.status, t.name, t.tags, t.message, t.data, t.progress,
       (SELECT json_group_array(json(r.record) ORDER BY r.run_id) FROM runs r WHERE r.task_id = t.id),
       NULL, t.updated_at
FROM tasks t WHERE EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.id);
INSERT INTO run_inputs (task_seq, run_id, input)
SELECT t.seq, r.run_id, CASE WHEN r.input_from_task THEN t.data ELSE r.input END
FROM runs r JOIN tasks t ON t.id = r.task_id
WHERE NOT r.finished AND (r.input_from_task OR r.input IS NOT NULL);
INSERT INTO call_journal (task_seq, run_id, call_index, record)
SELECT t.seq, j.run_id, j.call_index, j.record FROM journal j JOIN tasks t ON t.id = j.task_id;
DROP TABLE runs;
DROP TABLE journal;
"#,
    // 4: a record may hold, instead of the data, the runs whose changes made it (`applied`; see
    // `task_log`), so `data` may be null. SQLite cannot drop a NOT NULL: the table is rebuilt.
    r#"
CREATE TABLE task_log_4 (
    task_seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    name TEXT,
    tags TEXT NOT NULL,
    message TEXT,
    data TEXT,
    applied TEXT,
    progress TEXT NOT NULL,
    runs TEXT NOT NULL,
    starting TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (task_seq, revision)
);
INSERT INTO task_log_4 (task_seq, revision, status, name, tags, message, data, progress, runs, starting, updated_at)
SELECT task_seq, revision, status, name, tags, message, data, progress, runs, starting, updated_at FROM task_log;
DROP TABLE task_log;
ALTER TABLE task_log_4 RENAME TO task_log;
"#,
    // 5: the idempotency key of the request that created a task (`crate::request_key`).
    "ALTER TABLE tasks ADD COLUMN idempotency TEXT;",
    // 6: who first deployed each step version.
    "ALTER TABLE step_versions ADD COLUMN deployed_by TEXT;",
    // 7: every change to which version of a step serves, and who made it.
    r#"
CREATE TABLE step_changes (
    seq INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    change TEXT NOT NULL,
    version TEXT,
    at TEXT NOT NULL,
    by TEXT
);
CREATE INDEX step_changes_by_name ON step_changes (name, seq);
"#,
    // 8: each host's last write made to show that the store takes writes (`/readyz`).
    "CREATE TABLE probes (host TEXT PRIMARY KEY, at TEXT NOT NULL);",
    // 9: what the hosts remember between starts (`Store::reevaluated_at`).
    "CREATE TABLE marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

/// The name of the mark that names the steps every waiting and failed task was last
/// re-evaluated ([`Store::reevaluated_at`]).
const REEVALUATED: &str = "reevaluated";

/// Records one change to a step's serving version (parameters: name, change, version, at, by).
const RECORD_STEP_CHANGE: &str = "INSERT INTO step_changes (name, change, version, at, by) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Appends one record to the task log (parameters: task seq, revision, status, name, tags,
/// message, data, applied, progress, runs, starting, updated_at).
const APPEND_RECORD: &str = "INSERT INTO task_log
       (task_seq, revision, status, name, tags, message, data, applied, progress, runs, starting, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// How hard SQLite syncs to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every (group) commit: survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of the process (kill -9), not of the machine.
    Normal,
}

/// Settings of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How hard to sync.
    pub synchronous: Synchronous,
    /// How long the writer may hold a commit while writers are at work towards their next write
    /// ([`WritesComing`]), so that their writes join it; zero commits every group at once.
    pub commit_delay: Duration,
}

/// The default [`SqliteOptions::commit_delay`]: about ten times an fsync here, long enough for
/// the drives at work to finish a run and save (RetailMax under load: groups of ~20 saves
/// instead of 4–5, 10–20% less CPU per order in A/B runs), short beside an order's latency.
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(2);

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::default(),
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }
}

/// Pooled reader connections (WAL lets them read while the writer writes).
const READERS: usize = 4;

type WriteFn = Box<dyn FnMut(&Connection) -> Result<u64, StoreError> + Send>;

struct WriteJob {
    op: WriteFn,
    reply: oneshot::Sender<Answer>,
    /// The runs whose finished records the write saves (task id, run ids): once that commits,
    /// their records hold their connector results, and the journal need not keep them.
    finishes: Option<(String, Vec<i64>)>,
}

/// A write's result, with what the write leaves behind ([`Spent`]).
type Answer = (Result<u64, StoreError>, Option<Spent>);

/// What a write was made of (its closure with the encoded record it captured, its finished runs),
/// sent back with its answer so that the thread that allocated it frees it. Freed on the writer
/// thread instead, each of those blocks went on the allocating thread's list of blocks freed
/// elsewhere, which that thread then walks, block by block, cold in its cache.
struct Spent {
    _op: WriteFn,
    finishes: Option<(String, Vec<i64>)>,
}

/// A write of the open group that ran: where its answer goes, its result, what it leaves behind.
type Ran = (oneshot::Sender<Answer>, Result<u64, StoreError>, Spent);

/// Opens (or creates) the database file at `path` and locks it for this process alone. One host
/// owns a SQLite store: its leases live in memory and its journal files are its own, so a
/// second `whenever serve` on the same file would drive the same tasks again (and repeat their
/// e-mails), which the lock refuses by name. (An advisory `flock`, apart from SQLite's own
/// locks; `whenever backup` copies through SQLite and is not held up.)
fn own(path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
    // A store of this process closing (its writer finishing its last commit) lets go soon.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut locked = file.try_lock();
    while matches!(locked, Err(std::fs::TryLockError::WouldBlock)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        locked = file.try_lock();
    }
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unusable(format!(
            "{} is in use by another process (a `whenever serve` on the same file?): a SQLite \
             store serves one host; hosts that share their tasks share a PostgreSQL database \
             (--db postgres://…)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(backend(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// The SQLite store. Cloning shares the same writer and readers.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    /// The database file, locked for this store alone while it lives (see [`own`]).
    _owner: Arc<std::fs::File>,
    writer: mpsc::Sender<WriteJob>,
    /// Connector results appended before the step sees them, on their way into `call_journal`.
    calls: Arc<CallLog>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per pooled reader: a read waits for a free connection rather than opening one
    /// (opening costs far more than a read).
    reader_slots: Arc<tokio::sync::Semaphore>,
    /// Background reads ([`super::background`]) take one of these first: one reader fewer than
    /// the pool, so that other reads always find one free.
    background_slots: Arc<tokio::sync::Semaphore>,
    /// One host owns the file: leases live in memory.
    leases: Arc<super::lease::LeaseTable>,
    /// Writers at work towards their next write, which the writer may hold a commit for.
    coming: Arc<WritesComing>,
    /// How the writer's commits went.
    commits: Arc<CommitCounters>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A database error as the store reports it: [`StoreError::Unavailable`] when SQLite could not
/// write for want of space, by an I/O error, or because another process held the database past
/// the busy timeout (the transaction is rolled back; the write may succeed later),
/// [`StoreError::Backend`] otherwise.
fn backend(e: impl std::fmt::Display + 'static) -> StoreError {
    let code = (&e as &dyn std::any::Any)
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(
            rusqlite::ErrorCode::DiskFull
            | rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::DatabaseBusy
            | rusqlite::ErrorCode::DatabaseLocked,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// `error`'s kind with another message: the writes of a group that failed fail as it did.
fn failed_like(error: &StoreError, message: String) -> StoreError {
    match error {
        StoreError::Unavailable(_) => StoreError::Unavailable(message),
        _ => StoreError::Backend(message),
    }
}

fn open_connection(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 10000;"
    ))
    // The first read of the file: where one that is not a database (or not ours) shows.
    .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
    // Room for every statement a connection runs (the writer's are about a dozen, with BEGIN and
    // COMMIT): an evicted statement is parsed again the next time.
    conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
    Ok(conn)
}

/// How many prepared statements a connection keeps: more than any connection runs.
const STATEMENTS_CACHED: usize = 64;

/// Runs `sql`, a statement with no parameters and no rows (`BEGIN IMMEDIATE`, `COMMIT`), from the
/// connection's statement cache: the writer runs them at every group commit, and parsing them
/// each time through `execute_batch` cost about 25,000 instructions per RetailMax order with one
/// client.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(backend)?;
    let applied: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let applied = applied.unwrap_or(0);
    if applied == 0 {
        tx.execute("INSERT INTO schema_version (version) VALUES (0)", [])
            .map_err(backend)?;
    }
    let applied = usize::try_from(applied).map_err(|e| corrupt("schema_version", e))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Unusable(format!(
            "the database has schema version {applied}, newer than this host knows ({}): a newer \
             whenever wrote it; run that version or a later one",
            MIGRATIONS.len()
        )));
    }
    for migration in &MIGRATIONS[applied..] {
        tx.execute_batch(migration).map_err(backend)?;
    }
    tx.execute(
        "UPDATE schema_version SET version = ?1",
        params![MIGRATIONS.len() as i64],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)
}

/// Moves connector results into `call_journal` (those of a task that does not exist are
/// dropped: nothing can replay them).
fn insert_calls<'a>(conn: &Connection, calls: impl IntoIterator<Item = &'a PendingCall>) -> Result<(), StoreError> {
    for call in calls {
        let Some(seq) = task_seq(conn, &call.task)? else {
            continue;
        };
        conn.prepare_cached(
            "INSERT OR REPLACE INTO call_journal (task_seq, run_id, call_index, record) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![seq, call.run, call.call, call.record]))
        .map_err(backend)?;
    }
    Ok(())
}

/// The most writes committed together.
const MAX_BATCH: usize = 1024;

/// How the writer gathers a group of writes to commit together.
struct Grouping {
    /// Writers at work towards their next write.
    coming: Arc<WritesComing>,
    /// How long a commit may be held for them.
    delay: Duration,
}

impl Grouping {
    /// Runs `run` on every write waiting, then, while writers are at work and for at most
    /// `delay`, on those that arrive, until `count` writes are in the group ([`MAX_BATCH`]) or
    /// `run` says a write failed (returns false). A writer stops counting as at work before it
    /// sends its write, so the wait ends as soon as every writer's write is in. Each write runs
    /// as it arrives, inside the group's open transaction: when the wait ends only the commit is
    /// left, instead of every write of the group.
    fn gather(&self, jobs: &mpsc::Receiver<WriteJob>, count: &mut usize, run: &mut impl FnMut(WriteJob) -> bool) {
        if !run_waiting(jobs, count, run) || self.delay.is_zero() {
            return;
        }
        let deadline = Instant::now() + self.delay;
        while *count < MAX_BATCH && self.coming.working() > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                break;
            };
            // Parked rather than waiting on the channel: the writes that arrive meanwhile do not
            // wake this thread one by one (a wake-up each cost both threads CPU); the last writer
            // at work wakes it once its write is sent ([`WritesComing::sent`]). A writer that
            // stops without writing (a drive that failed) wakes nobody: look again now and then.
            std::thread::park_timeout(left.min(Duration::from_micros(500)));
            if !run_waiting(jobs, count, run) {
                return;
            }
        }
        run_waiting(jobs, count, run);
    }
}

/// Runs `run` on the writes waiting in `jobs`, until `count` reaches [`MAX_BATCH`] or `run`
/// returns false (a write failed); returns false then.
fn run_waiting(jobs: &mpsc::Receiver<WriteJob>, count: &mut usize, run: &mut impl FnMut(WriteJob) -> bool) -> bool {
    while *count < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => {
                *count += 1;
                if !run(job) {
                    return false;
                }
            }
            Err(_) => break,
        }
    }
    true
}

/// The writer thread: runs every write waiting, and those that arrive while writers are at work,
/// in one transaction, commits once, answers all (group commit). Connector results queued in
/// `calls` by the commit go into the same transaction, but for those of runs whose finished
/// records it saves: a finished run's record holds its connector results, and the journal is read
/// only to re-run unfinished runs. (Most results commit with their run's outcome: leaving them out
/// halved the journal's share of the bytes written per order.)
///
/// A write returns a logical error ([`StoreError::Conflict`], [`StoreError::NotFound`],
/// [`StoreError::Changed`]) only before it changes anything, so such an error leaves the group
/// intact (a delete naming a stale revision once rolled back every write committed with it). Any other error may come
/// after part of a write (a storage error, data it could not encode): the group is rolled back,
/// that write and the ones before it in the group fail with the error, and the ones after it run
/// in the next group. (Per-write savepoints would make the rollback finer, but cost a statement
/// journal copy of every page each write touches.)
fn writer_loop(
    conn: Connection,
    jobs: mpsc::Receiver<WriteJob>,
    calls: Arc<CallLog>,
    group: Grouping,
    stats: Arc<CommitCounters>,
) {
    group.coming.wait_here();
    loop {
        let first = match jobs.recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let _ = first.reply.send((Err(backend(e)), None));
            continue;
        }
        let mut answers: Vec<Ran> = Vec::new();
        let mut failed = None;
        let mut run = |mut job: WriteJob| match (job.op)(&conn) {
            result @ (Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Changed(_))) => {
                let spent = Spent {
                    _op: job.op,
                    finishes: job.finishes,
                };
                answers.push((job.reply, result, spent));
                true
            }
            Err(error) => {
                failed = Some((job.reply, error));
                false
            }
        };
        let mut count = 1;
        if run(first) {
            group.gather(&jobs, &mut count, &mut run);
        }
        let fail_all = |answers: Vec<Ran>, error: StoreError| {
            for (reply, _, spent) in answers {
                let _ = reply.send((Err(error.clone()), Some(spent)));
            }
        };
        if let Some((reply, error)) = failed {
            let _ = run_cached(&conn, "ROLLBACK");
            stats.failed();
            let together = failed_like(
                &error,
                format!("rolled back with the writes committed together: {error}"),
            );
            let _ = reply.send((Err(error), None));
            fail_all(answers, together);
            continue;
        }
        // Taken after the group's writes ran: a run's results are queued before its save is
        // sent, so they commit no later than its outcome.
        let (journal, journal_file) = calls.take();
        let inserted = {
            let mut finished: HashMap<&str, Vec<i64>> = HashMap::new();
            for (_, result, spent) in &answers {
                if let (Ok(_), Some((task, runs))) = (result, &spent.finishes) {
                    finished.entry(task.as_str()).or_default().extend(runs);
                }
            }
            let open = journal
                .iter()
                .filter(|c| !finished.get(c.task.as_str()).is_some_and(|runs| runs.contains(&c.run)));
            insert_calls(&conn, open)
        };
        if let Err(error) = inserted {
            let _ = run_cached(&conn, "ROLLBACK");
            stats.failed();
            calls.restore(journal);
            let message = format!("rolled back: the connector journal could not be written: {error}");
            fail_all(answers, failed_like(&error, message));
            continue;
        }
        let committing = Instant::now();
        let committed = run_cached(&conn, "COMMIT");
        if let Err(e) = committed {
            let _ = run_cached(&conn, "ROLLBACK");
            stats.failed();
            calls.restore(journal);
            let message = format!("commit failed: {e}");
            fail_all(answers, failed_like(&backend(e), message));
            continue;
        }
        stats.committed(answers.len(), committing.elapsed());
        // The results are in the table now: their file is emptied for its next turn.
        if let Some(file) = journal_file {
            calls.committed(file);
        }
        for (reply, result, spent) in answers {
            let _ = reply.send((result, Some(spent)));
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, applies migrations and starts the writer.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        // SQLite says only "unable to open database file" of a folder.
        if path.is_dir() {
            return Err(backend(format!(
                "cannot open {}: it is a folder; give the path of the database file (in it, say)",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let owner = Arc::new(own(path)?);
        let mut conn = open_connection(path, &options)?;
        migrate(&mut conn)?;
        // Connector results a crash left on their way into the journal go in first.
        let (calls, left) = CallLog::open(path)?;
        if !left.is_empty() {
            let tx = conn.transaction().map_err(backend)?;
            insert_calls(&tx, &left)?;
            tx.commit().map_err(backend)?;
        }
        calls.clear();
        let calls = Arc::new(calls);
        let (writer, jobs) = mpsc::channel::<WriteJob>();
        let journal = calls.clone();
        let coming = Arc::new(WritesComing::default());
        let group = Grouping {
            coming: coming.clone(),
            delay: options.commit_delay,
        };
        let commits = Arc::new(CommitCounters::default());
        let counted = commits.clone();
        // The writer holds the file too: a host opening it next waits for the last commit.
        let writer_owns = owner.clone();
        std::thread::Builder::new()
            .name("whenever-sqlite-writer".into())
            .spawn(move || {
                writer_loop(conn, jobs, journal, group, counted);
                drop(writer_owns);
            })
            .map_err(|e| backend(format!("cannot start the writer thread: {e}")))?;
        let mut readers = Vec::new();
        for _ in 0..READERS {
            readers.push(open_connection(path, &options)?);
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            _owner: owner,
            writer,
            calls,
            readers: Arc::new(Mutex::new(readers)),
            reader_slots: Arc::new(tokio::sync::Semaphore::new(READERS)),
            background_slots: Arc::new(tokio::sync::Semaphore::new(READERS - 1)),
            leases: Arc::default(),
            coming,
            commits,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: WriteFn) -> Result<u64, StoreError> {
        self.write_finishing(op, None).await
    }

    /// Like [`SqliteStore::write`], for a write that saves the finished records of `finishes`.
    async fn write_finishing(&self, op: WriteFn, finishes: Option<(String, Vec<i64>)>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply, finishes })
            .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        self.coming.sent();
        let (result, spent) = answer
            .await
            .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        // Freed here, on the thread that most likely allocated it (see `Spent`).
        drop(spent);
        result
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        // Held until the read is done: background reads never hold every reader.
        let _background = if super::background::is_background() {
            Some(self.background_slots.acquire().await.map_err(backend)?)
        } else {
            None
        };
        let slot = self.reader_slots.clone().acquire_owned().await.map_err(backend)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                // Only if a reader was lost to a panic: the slot is ours, open its replacement.
                None => open_connection(&path, &SqliteOptions::default())?,
            };
            let result = f(&conn);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(backend)?
    }
}

/// The revision of task `seq`: its newest log record's, or its row's when no record is newer.
fn current_revision(conn: &Connection, seq: i64, row_revision: i64) -> Result<i64, StoreError> {
    let logged: Option<i64> = conn
        .prepare_cached("SELECT max(revision) FROM task_log WHERE task_seq = ?1")
        .and_then(|mut s| s.query_row(params![seq], |r| r.get(0)))
        .map_err(backend)?;
    Ok(logged.map_or(row_revision, |logged| logged.max(row_revision)))
}

/// Appends `record` to the task log at `revision` and stores the inputs that are not its data.
fn append_record(conn: &Connection, seq: i64, revision: i64, record: &SaveRecord) -> Result<(), StoreError> {
    let row = &record.row;
    conn.prepare_cached(APPEND_RECORD)
        .and_then(|mut s| {
            s.execute(params![
                seq,
                revision,
                row.status,
                row.name,
                row.tags,
                row.message,
                record.logged_data(),
                record.applied,
                row.progress,
                record.runs,
                record.starting,
                row.updated_at
            ])
        })
        .map_err(backend)?;
    if !record.other_inputs.is_empty() {
        let mut keep = conn
            .prepare_cached("INSERT OR REPLACE INTO run_inputs (task_seq, run_id, input) VALUES (?1, ?2, ?3)")
            .map_err(backend)?;
        for (run_id, input) in &record.other_inputs {
            keep.execute(params![seq, run_id, input]).map_err(backend)?;
        }
    }
    Ok(())
}

/// A task's state as stored in its row or a log record: status, name, tags, message, progress,
/// updated_at, revision (the data is read apart: a record may not hold it).
type TaskState = (String, Option<String>, String, Option<String>, String, String, i64);

/// The [`TaskState`] in the columns of `row` from `first` on.
fn task_state(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<TaskState> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
        row.get(first + 5)?,
        row.get(first + 6)?,
    ))
}

/// The records of the task with sequence number `seq`, oldest first; their data only when newer
/// than revision `data_after` (older data is never needed: the row, or a newer record, has it).
fn logged_records(conn: &Connection, seq: i64, data_after: i64) -> Result<Vec<LoggedRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT revision, runs, CASE WHEN revision > ?2 THEN data END, applied, starting,
                CASE WHEN revision > ?2 THEN progress END
         FROM task_log WHERE task_seq = ?1 ORDER BY revision",
    )
    .and_then(|mut s| {
        s.query_map(params![seq, data_after], |r| {
            Ok(LoggedRecord {
                revision: r.get(0)?,
                runs: r.get(1)?,
                data: r.get(2)?,
                applied: r.get(3)?,
                starting: r.get(4)?,
                progress: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
    })
    .map_err(backend)
}

/// Deletes task `seq`'s row, its log records, its runs' inputs and its journal.
fn delete_rows(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    for statement in [
        "DELETE FROM task_log WHERE task_seq = ?1",
        "DELETE FROM run_inputs WHERE task_seq = ?1",
        "DELETE FROM call_journal WHERE task_seq = ?1",
        "DELETE FROM tasks WHERE seq = ?1",
    ] {
        conn.prepare_cached(statement)
            .and_then(|mut s| s.execute(params![seq]))
            .map_err(backend)?;
    }
    Ok(())
}

/// The sequence number of task `id`, if it exists.
fn task_seq(conn: &Connection, id: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT seq FROM tasks WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(backend)
}

fn read_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, [Option<String>; 7])> {
    Ok((
        row.get(0)?,
        [
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
        ],
    ))
}

fn decode_summary(cols: [Option<String>; 7]) -> Result<TaskSummary, StoreError> {
    let [id, status, name, tags, message, created, updated] = cols;
    Ok(TaskSummary {
        id: id.unwrap_or_default(),
        status: parse_status(status.as_deref().unwrap_or_default())?,
        name,
        tags: serde_json::from_str(tags.as_deref().unwrap_or("[]")).map_err(|e| corrupt("tags", e))?,
        message,
        created_at: parse_time(created.as_deref().unwrap_or_default())?,
        updated_at: parse_time(updated.as_deref().unwrap_or_default())?,
    })
}

/// A step version's columns as read: name, version, digest, component, manifest, deployed_at,
/// deployed_by.
type VersionColumns = (String, String, String, Vec<u8>, String, String, Option<String>);

fn decode_version(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn step_version_of(cols: VersionColumns) -> Result<StepVersion, StoreError> {
    let (name, version, digest, component, manifest, deployed_at, deployed_by) = cols;
    let manifest: StepManifest = serde_json::from_str(&manifest).map_err(|e| corrupt("manifest", e))?;
    Ok(StepVersion {
        name,
        version,
        digest,
        component,
        manifest,
        deployed_at: parse_time(&deployed_at)?,
        deployed_by,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_task_starting(&self, task: &Task, starting: &[u64]) -> Result<u64, StoreError> {
        let all = TaskSave::every_run(task);
        // A new task was last written when it was created.
        let record = SaveRecord::of(&TaskSave::creating(task, &all, starting), &task.created_at)?.leaving_data_to_row();
        let idempotency = task.idempotency.as_ref().map(to_json).transpose()?;
        self.write(Box::new(move |conn| {
            let row = &record.row;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO tasks (id, status, name, tags, message, data, progress, created_at, updated_at, revision,
                                        idempotency)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10) ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.id, row.status, row.name, row.tags, row.message, row.data, row.progress, row.created_at,
                        row.updated_at, idempotency
                    ])
                })
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("a task with id {} exists", row.id)));
            }
            // A new task's runs (an import, or its first wave starting) go to the log like any
            // save's.
            if !all.is_empty() {
                append_record(conn, conn.last_insert_rowid(), 1, &record)?;
            }
            Ok(1)
        }))
        .await
    }

    async fn save_task_at(&self, save: TaskSave<'_>, at: DateTime<Utc>) -> Result<u64, StoreError> {
        if save.task.status != TaskStatus::Running {
            self.leases.forget(&save.task.id);
        }
        let record = SaveRecord::of(&save, &at)?;
        let expected = signed(save.expected_revision, "revision")?;
        let finishes: Vec<i64> = save
            .runs
            .iter()
            .filter(|id| save.task.runs.get(**id as usize).is_some_and(|r| r.outcome.is_some()))
            .map(|id| signed(*id, "run id"))
            .collect::<Result<_, _>>()?;
        let finishes = (!finishes.is_empty()).then(|| (save.task.id.clone(), finishes));
        self.write_finishing(
            Box::new(move |conn| {
                // Check first: a refused save changes nothing (see `writer_loop`).
                type Head = (i64, i64, String, Option<String>, String, Option<String>);
                let row = &record.row;
                let head: Option<Head> = conn
                    .prepare_cached("SELECT seq, revision, status, name, tags, message FROM tasks WHERE id = ?1")
                    .and_then(|mut s| {
                        s.query_row(params![row.id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                        })
                        .optional()
                    })
                    .map_err(backend)?;
                let Some((seq, row_revision, status, name, tags, message)) = head else {
                    return Err(StoreError::NotFound(format!("task {}", row.id)));
                };
                let revision = current_revision(conn, seq, row_revision)?;
                if revision != expected {
                    return Err(StoreError::Conflict(format!(
                        "task {} changed meanwhile (revision {revision}, expected {expected})",
                        row.id
                    )));
                }
                let saved = expected + 1;
                append_record(conn, seq, saved, &record)?;
                // The row serves listings: it is rewritten when what they show changes, and only
                // that (its data stays the data it was created with, at revision 1: the log has the
                // rest). A settling order's row would otherwise grow from its first data to its last,
                // 0.9 to 3.2 KB for the seed's, and move to pages of its own. A settled task's save
                // (a patch of a completed task) rewrites it too, for its time: retention reads the
                // row's, and would otherwise delete a task patched a moment ago by when it settled.
                let listed_changed = status != row.status
                    || name != row.name
                    || tags != row.tags
                    || message != row.message
                    || row.status != TaskStatus::Running.as_str();
                if listed_changed {
                    conn.prepare_cached(
                    "UPDATE tasks SET status = ?2, name = ?3, tags = ?4, message = ?5, updated_at = ?6 WHERE seq = ?1",
                )
                .and_then(|mut s| s.execute(params![seq, row.status, row.name, row.tags, row.message, row.updated_at]))
                .map_err(backend)?;
                }
                Ok(saved as u64)
            }),
            finishes,
        )
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<StoredTask>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            // The state: from the row, or from a newer log record.
            let row: Option<(i64, String, String, TaskState, Option<String>)> = conn
                .prepare_cached(
                    "SELECT seq, created_at, data, status, name, tags, message, progress, updated_at, revision,
                            idempotency
                     FROM tasks WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, task_state(r, 3)?, r.get(10)?))
                    })
                    .optional()
                })
                .map_err(backend)?;
            let Some((seq, created, row_data, row_state, idempotency)) = row else {
                return Ok(None);
            };
            let row_revision = row_state.6;
            let logged: Option<TaskState> = conn
                .prepare_cached(
                    "SELECT status, name, tags, message, progress, updated_at, revision
                     FROM task_log WHERE task_seq = ?1 ORDER BY revision DESC LIMIT 1",
                )
                .and_then(|mut s| s.query_row(params![seq], |r| task_state(r, 0)).optional())
                .map_err(backend)?;
            let records = logged_records(conn, seq, row_revision)?;
            let runs = merge_runs(records.iter().map(|r| r.runs.as_str()))?;
            let (state, data, progress) = match logged {
                Some(logged) if logged.6 > row_revision => {
                    let newer: Vec<LoggedRecord> = records.into_iter().filter(|r| r.revision > row_revision).collect();
                    let (data, progress) = latest_state((&row_data, &row_state.4), &newer, &runs)?;
                    (logged, data, progress)
                }
                _ => {
                    let data = serde_json::from_str(&row_data).map_err(|e| corrupt("data", e))?;
                    let progress = serde_json::from_str(&row_state.4).map_err(|e| corrupt("progress", e))?;
                    (row_state, data, progress)
                }
            };
            let (status, name, tags, message, _, updated, revision) = state;
            let task = Task {
                id,
                status: parse_status(&status)?,
                message,
                name,
                tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
                data,
                runs,
                progress,
                created_at: parse_time(&created)?,
                idempotency: parse_request_key(idempotency.as_deref())?,
            };
            Ok(Some(StoredTask {
                task,
                revision: u64::try_from(revision).map_err(|e| corrupt("revision", e))?,
                updated_at: parse_time(&updated)?,
            }))
        })
        .await
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let status = query.status.map(|s| s.as_str().to_string());
        let tag = query.tag.clone();
        let limit = query.limit.clamp(1, 1000);
        let cursor: Option<i64> = match &query.cursor {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|_| StoreError::NotFound(format!("cursor {text:?}")))?,
            ),
        };
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT seq, id, status, name, tags, message, created_at,
                            coalesce((SELECT l.updated_at FROM task_log l WHERE l.task_seq = tasks.seq
                                      ORDER BY l.revision DESC LIMIT 1), updated_at)
                     FROM tasks
                     WHERE (?1 IS NULL OR status = ?1)
                       AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE json_each.value = ?2))
                       AND (?3 IS NULL OR seq < ?3)
                     ORDER BY seq DESC LIMIT ?4",
                )
                .map_err(backend)?;
            let rows: Vec<(i64, [Option<String>; 7])> = statement
                .query_map(params![status, tag, cursor, i64::from(limit) + 1], read_summary)
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            let more = rows.len() > limit as usize;
            let mut tasks = Vec::new();
            let mut last = None;
            for (seq, cols) in rows.into_iter().take(limit as usize) {
                tasks.push(decode_summary(cols)?);
                last = Some(seq);
            }
            Ok(TaskPage {
                tasks,
                next_cursor: if more { last.map(|s| s.to_string()) } else { None },
            })
        })
        .await
    }

    async fn count_tasks(&self) -> Result<BTreeMap<TaskStatus, u64>, StoreError> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT status, count(*) FROM tasks GROUP BY status")
                .map_err(backend)?;
            let rows: Vec<(String, i64)> = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            let mut counts = BTreeMap::new();
            for (status, count) in rows {
                counts.insert(parse_status(&status)?, u64::try_from(count).unwrap_or_default());
            }
            Ok(counts)
        })
        .await
    }

    async fn delete_task(&self, id: &str, revisions: Option<&[u64]>) -> Result<(), StoreError> {
        let id = id.to_string();
        let revisions = revisions.map(<[u64]>::to_vec);
        self.write(Box::new(move |conn| {
            // Check first: a refused delete changes nothing (see `writer_loop`).
            let head: Option<(i64, String, i64)> = conn
                .prepare_cached("SELECT seq, status, revision FROM tasks WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(backend)?;
            let Some((seq, status, row_revision)) = head else {
                return Err(StoreError::NotFound(format!("task {id}")));
            };
            if let Some(named) = &revisions {
                let revision = current_revision(conn, seq, row_revision)?;
                let revision = u64::try_from(revision).map_err(|e| corrupt("revision", e))?;
                if !named.contains(&revision) {
                    return Err(StoreError::not_at(&id, revision, named));
                }
            }
            if parse_status(&status)? == TaskStatus::Running {
                return Err(still_running(&id));
            }
            delete_rows(conn, seq)?;
            Ok(1)
        }))
        .await
        .map(|_| ())
    }

    async fn delete_settled(&self, status: TaskStatus, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        if status == TaskStatus::Running {
            return Ok(0);
        }
        let status = status.to_string();
        let before = time_text(&before);
        self.write(Box::new(move |conn| {
            let seqs: Vec<i64> = conn
                .prepare_cached("SELECT seq FROM tasks WHERE status = ?1 AND updated_at < ?2 ORDER BY seq LIMIT ?3")
                .and_then(|mut s| {
                    s.query_map(params![status, before, limit], |r| r.get(0))
                        .and_then(|rows| rows.collect())
                })
                .map_err(backend)?;
            for seq in &seqs {
                delete_rows(conn, *seq)?;
            }
            Ok(seqs.len() as u64)
        }))
        .await
    }

    async fn interrupted_runs(&self, task_id: &str) -> Result<Vec<InterruptedRun>, StoreError> {
        // An empty transaction: it moves the connector results queued so far into the table.
        self.write(Box::new(|_| Ok(0))).await?;
        let task_id = task_id.to_string();
        self.read(move |conn| {
            let row: Option<(i64, String)> = conn
                .prepare_cached("SELECT seq, data FROM tasks WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(backend)?;
            let Some((seq, base)) = row else {
                return Ok(Vec::new());
            };
            let records = logged_records(conn, seq, i64::MIN)?;
            let task_runs = merge_runs(records.iter().map(|r| r.runs.as_str()))?;
            let other_inputs: BTreeMap<u64, String> = conn
                .prepare_cached("SELECT run_id, input FROM run_inputs WHERE task_seq = ?1")
                .and_then(|mut s| {
                    s.query_map(params![seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                })
                .map_err(backend)?
                .into_iter()
                .filter_map(|(id, input)| u64::try_from(id).ok().map(|id| (id, input)))
                .collect();
            let mut journal_q = conn
                .prepare_cached(
                    "SELECT call_index, record FROM call_journal WHERE task_seq = ?1 AND run_id = ?2 ORDER BY call_index",
                )
                .map_err(backend)?;
            let mut runs = Vec::new();
            for (run_id, input) in interrupted(&base, &records, &task_runs, &other_inputs)? {
                let calls: Vec<(i64, String)> = journal_q
                    .query_map(params![seq, signed(run_id, "run id")?], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(backend)?;
                let calls = calls
                    .iter()
                    .map(|(index, c)| Ok((*index, serde_json::from_str(c).map_err(|e| corrupt("journal", e))?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                runs.push(InterruptedRun {
                    run_id,
                    input,
                    journal: super::by_call_number(calls)?,
                });
            }
            Ok(runs)
        })
        .await
    }

    async fn journal_call(
        &self,
        task_id: &str,
        run_id: u64,
        index: usize,
        call: &ConnectorCallRecord,
    ) -> Result<(), StoreError> {
        // Appended, not committed: see `store::call_log`. The writer's next transaction moves it
        // into `call_journal`.
        self.calls.append(PendingCall {
            task: task_id.to_string(),
            run: signed(run_id, "run id")?,
            call: i64::try_from(index).map_err(|e| corrupt("call index", e))?,
            record: to_json(call)?,
        })
    }

    async fn put_step_version(&self, version: &StepVersion, make_current: bool) -> Result<(), StoreError> {
        let v = version.clone();
        let manifest = to_json(&v.manifest)?;
        self.write(Box::new(move |conn| {
            conn.execute(
                "INSERT INTO step_versions (name, version, digest, component, manifest, deployed_at, deployed_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name, version) DO UPDATE SET manifest = excluded.manifest",
                params![
                    v.name,
                    v.version,
                    v.digest,
                    v.component,
                    manifest,
                    time_text(&v.deployed_at),
                    v.deployed_by
                ],
            )
            .map_err(backend)?;
            // Serving already: no change to record (as on PostgreSQL, where hosts that start
            // together deploy the same files).
            let changed = make_current
                && conn
                    .execute(
                        "INSERT INTO steps (name, current, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at
                         WHERE steps.current IS NOT excluded.current",
                        params![v.name, v.version, time_text(&Utc::now())],
                    )
                    .map_err(backend)?
                    > 0;
            if changed {
                conn.execute(
                    RECORD_STEP_CHANGE,
                    params![
                        v.name,
                        StepChangeKind::Deployed.as_str(),
                        v.version,
                        time_text(&v.deployed_at),
                        v.deployed_by
                    ],
                )
                .map_err(backend)?;
            }
            Ok(0)
        }))
        .await
        .map(|_| ())
    }

    async fn set_current_step(&self, name: &str, version: Option<&str>, by: Option<&str>) -> Result<(), StoreError> {
        let name = name.to_string();
        let version = version.map(str::to_string);
        let by = by.map(str::to_string);
        self.write(Box::new(move |conn| {
            if let Some(version) = &version {
                let known: Option<i64> = conn
                    .query_row(
                        "SELECT 1 FROM step_versions WHERE name = ?1 AND version = ?2",
                        params![name, version],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if known.is_none() {
                    return Err(StoreError::NotFound(format!("version {version} of step {name}")));
                }
            }
            conn.execute(
                "INSERT INTO steps (name, current, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at",
                params![name, version, time_text(&Utc::now())],
            )
            .map_err(backend)?;
            let change = match version {
                Some(_) => StepChangeKind::RolledBack,
                None => StepChangeKind::Removed,
            };
            conn.execute(
                RECORD_STEP_CHANGE,
                params![name, change.as_str(), version, time_text(&Utc::now()), by],
            )
            .map_err(backend)?;
            Ok(0)
        }))
        .await
        .map(|_| ())
    }

    async fn step_changes(&self, name: &str) -> Result<Vec<StepChange>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT change, version, at, by FROM step_changes WHERE name = ?1 ORDER BY seq")
                .map_err(backend)?;
            let rows: Vec<(String, Option<String>, String, Option<String>)> = statement
                .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            rows.into_iter()
                .map(|(change, version, at, by)| {
                    Ok(StepChange {
                        step: name.clone(),
                        change: step_change_kind(&change)?,
                        version,
                        at: parse_time(&at)?,
                        by,
                    })
                })
                .collect()
        })
        .await
    }

    async fn current_steps(&self) -> Result<Vec<StepVersion>, StoreError> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT v.name, v.version, v.digest, v.component, v.manifest, v.deployed_at, v.deployed_by
                     FROM steps s JOIN step_versions v ON v.name = s.name AND v.version = s.current
                     ORDER BY v.name",
                )
                .map_err(backend)?;
            let rows: Vec<_> = statement
                .query_map([], decode_version)
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            rows.into_iter().map(step_version_of).collect()
        })
        .await
    }

    async fn step_version(&self, name: &str, version: &str) -> Result<Option<StepVersion>, StoreError> {
        let (name, version) = (name.to_string(), version.to_string());
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT name, version, digest, component, manifest, deployed_at, deployed_by FROM step_versions
                     WHERE name = ?1 AND version = ?2",
                    params![name, version],
                    decode_version,
                )
                .optional()
                .map_err(backend)?;
            row.map(step_version_of).transpose()
        })
        .await
    }

    async fn step_versions(&self, name: Option<&str>) -> Result<Vec<StepVersionInfo>, StoreError> {
        let name = name.map(str::to_string);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT v.name, v.version, v.digest, length(v.component), v.deployed_at,
                            coalesce(s.current = v.version, 0), v.deployed_by
                     FROM step_versions v LEFT JOIN steps s ON s.name = v.name
                     WHERE (?1 IS NULL OR v.name = ?1)
                     ORDER BY v.name, v.deployed_at, v.rowid",
                )
                .map_err(backend)?;
            let rows: Vec<(String, String, String, i64, String, bool, Option<String>)> = statement
                .query_map(params![name], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            rows.into_iter()
                .map(|(name, version, digest, size, deployed_at, current, deployed_by)| {
                    Ok(StepVersionInfo {
                        name,
                        version,
                        digest,
                        size: u64::try_from(size).unwrap_or_default(),
                        deployed_at: parse_time(&deployed_at)?,
                        deployed_by,
                        current,
                    })
                })
                .collect()
        })
        .await
    }

    async fn claim_tasks(
        &self,
        owner: &str,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let running: Vec<String> = self
            .read(|conn| {
                let mut statement = conn
                    .prepare_cached("SELECT id FROM tasks WHERE status = 'running' ORDER BY seq")
                    .map_err(backend)?;
                statement
                    .query_map([], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(backend)
            })
            .await?;
        Ok(self.leases.claim(running, owner, limit, lease))
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.leases.renew(owner, ids, lease))
    }

    async fn release_task(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.leases.release(id, owner);
        Ok(())
    }

    fn writes_coming(&self) -> Option<Arc<WritesComing>> {
        Some(self.coming.clone())
    }

    fn commit_stats(&self) -> Option<CommitStats> {
        Some(self.commits.now())
    }

    async fn probe(&self, host: &str, _limit: std::time::Duration) -> Result<(), StoreError> {
        // The writer thread cannot be interrupted: a caller that gives up leaves this one small
        // write queued behind whatever holds the writer.
        let host = host.to_string();
        self.write(Box::new(move |conn| {
            conn.prepare_cached(
                "INSERT INTO probes (host, at) VALUES (?1, ?2) ON CONFLICT (host) DO UPDATE SET at = excluded.at",
            )
            .and_then(|mut statement| statement.execute(params![host, time_text(&Utc::now())]))
            .map_err(backend)?;
            Ok(0)
        }))
        .await
        .map(|_| ())
    }

    async fn reevaluated_at(&self) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT value FROM marks WHERE name = ?1", params![REEVALUATED], |r| {
                r.get(0)
            })
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn set_reevaluated_at(&self, mark: &str) -> Result<(), StoreError> {
        let mark = mark.to_string();
        self.write(Box::new(move |conn| {
            conn.execute(
                "INSERT INTO marks (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![REEVALUATED, mark],
            )
            .map_err(backend)?;
            Ok(0)
        }))
        .await
        .map(|_| ())
    }

    async fn steps_stamp(&self) -> Result<String, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT count(*), coalesce(max(updated_at), ''), (SELECT count(*) FROM step_versions),
                        (SELECT count(*) || '/' || coalesce(max(seq), 0) FROM step_changes)
                 FROM steps",
                [],
                |r| {
                    Ok(format!(
                        "{}:{}:{}:{}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?
                    ))
                },
            )
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_an_io_error_or_a_busy_database_is_unavailable_and_the_rest_a_failure() {
        let sqlite = |code: i32| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
        ] {
            assert!(
                matches!(backend(sqlite(code)), StoreError::Unavailable(_)),
                "code {code}"
            );
        }
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_CONSTRAINT] {
            assert!(matches!(backend(sqlite(code)), StoreError::Backend(_)), "code {code}");
        }
        assert!(matches!(backend("not a database error"), StoreError::Backend(_)));
        // A group's other writes fail as the one that failed did.
        let full = StoreError::Unavailable("full".into());
        assert!(matches!(failed_like(&full, "with it".into()), StoreError::Unavailable(m) if m == "with it"));
        let other = StoreError::Backend("x".into());
        assert!(matches!(failed_like(&other, "with it".into()), StoreError::Backend(_)));
    }

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("whenever.db"), SqliteOptions::default()).expect("opens")
    }

    #[tokio::test]
    async fn store_suite_passes_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::super::suite::run_all(&open(&dir)).await;
    }

    /// A write's closure, and what it captured, is freed by the writer that sent it, not on
    /// the writer thread (see `Spent`).
    #[tokio::test]
    async fn what_a_write_captured_is_freed_by_its_sender() {
        struct Noted(Arc<Mutex<Option<String>>>);
        impl Drop for Noted {
            fn drop(&mut self) {
                let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
                *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let dropped_on = Arc::new(Mutex::new(None));
        let captured = Noted(dropped_on.clone());
        let answer = store
            .write(Box::new(move |_conn| {
                let _held = &captured;
                Ok(7)
            }))
            .await;
        assert_eq!(answer.expect("written"), 7);
        let here = std::thread::current().name().map(str::to_owned);
        let dropped_on = dropped_on.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(dropped_on.is_some(), "the closure was freed");
        assert_eq!(dropped_on, here, "freed on the sender's thread, not the writer's");
    }

    #[tokio::test]
    async fn background_reads_leave_a_reader_for_the_others() {
        use crate::store::background::in_background;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let task = Task::new(serde_json::json!({"n": 1}));
        store.create_task(&task).await.expect("created");
        // Background reads in flight on every reader they may take.
        let background = READERS as u32 - 1;
        let held = store
            .background_slots
            .clone()
            .acquire_many_owned(background)
            .await
            .expect("slots");
        let reading = store
            .reader_slots
            .clone()
            .acquire_many_owned(background)
            .await
            .expect("readers");
        // Another read finds the last reader.
        let counts = tokio::time::timeout(Duration::from_secs(10), store.count_tasks())
            .await
            .expect("answered while the background reads go on")
            .expect("counts");
        assert_eq!(counts.get(&TaskStatus::Running), Some(&1));
        // One more background read waits for one of theirs to end rather than take it.
        let waiting = tokio::spawn({
            let (store, id) = (store.clone(), task.id.clone());
            in_background(async move { store.get_task(&id).await })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a background read took the last reader");
        drop((held, reading));
        let read = waiting.await.expect("joined").expect("read");
        assert_eq!(read.map(|t| t.task.id), Some(task.id));
    }

    #[tokio::test]
    async fn a_connector_result_journaled_just_before_a_crash_is_replayed_after_reopening() {
        use super::super::suite::{call, with_a_starting_run};
        let dir = tempfile::tempdir().expect("tempdir");
        let task;
        {
            let store = open(&dir);
            task = with_a_starting_run(&store, serde_json::json!({"start": true}), "charge").await;
            // Journaled, and then the process dies: no transaction moved it into the table.
            store.journal_call(&task.id, 0, 0, &call(0)).await.expect("journaled");
            let conn = Connection::open(dir.path().join("whenever.db")).expect("open");
            let in_table: i64 = conn
                .query_row("SELECT count(*) FROM call_journal", [], |r| r.get(0))
                .expect("count");
            assert_eq!(in_table, 0, "only in the file so far");
        }
        let store = open(&dir);
        let interrupted = store.interrupted_runs(&task.id).await.expect("read");
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].journal, vec![Some(call(0))]);
        // Moved into the table at opening, and the files hold no result any more.
        for n in 0..2 {
            let file = dir.path().join(format!("whenever.db-calls-{n}"));
            assert_eq!(crate::store::call_log::read_back(&file).0, vec![], "{}", file.display());
        }
    }

    #[tokio::test]
    async fn the_results_of_a_run_finished_in_the_same_commit_stay_out_of_the_journal_table() {
        use super::super::suite::{call, run_record, with_a_starting_run};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let mut task = with_a_starting_run(&store, serde_json::json!({"start": true}), "charge").await;
        task.runs.push(run_record(1, "reserve", false));
        let save = TaskSave {
            task: &task,
            expected_revision: 2,
            runs: &[1],
            starting: &[1],
            input: Some(&task.data),
            data_text: None,
            applied: None,
        };
        store.save_task(save).await.expect("saved");
        // Both runs call out; run 0 then finishes, and its save commits with the results queued.
        store.journal_call(&task.id, 0, 0, &call(0)).await.expect("journaled");
        store.journal_call(&task.id, 1, 0, &call(1)).await.expect("journaled");
        store.journal_call(&task.id, 1, 1, &call(2)).await.expect("journaled");
        task.runs[0] = run_record(0, "charge", true);
        task.runs[0].connector_calls = vec![call(0)];
        let save = TaskSave {
            task: &task,
            expected_revision: 3,
            runs: &[0],
            starting: &[],
            input: None,
            data_text: None,
            applied: Some(&[0]),
        };
        store.save_task(save).await.expect("saved");
        let conn = Connection::open(dir.path().join("whenever.db")).expect("open");
        let in_table: Vec<(i64, i64)> = conn
            .prepare("SELECT run_id, call_index FROM call_journal ORDER BY run_id, call_index")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("read");
        assert_eq!(in_table, vec![(1, 0), (1, 1)], "run 0's record holds its result");
        let stored = store.get_task(&task.id).await.expect("read").expect("exists");
        assert_eq!(stored.task.runs[0].connector_calls, vec![call(0)]);
        let interrupted = store.interrupted_runs(&task.id).await.expect("read");
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].journal, vec![Some(call(1)), Some(call(2))]);
    }

    #[tokio::test]
    async fn store_survives_reopening_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let task = Task::new(serde_json::json!({"x": 1}));
        {
            let store = open(&dir);
            store.create_task(&task).await.expect("created");
        }
        let store = open(&dir);
        let stored = store.get_task(&task.id).await.expect("reads").expect("still there");
        assert_eq!(stored.task.data, task.data);
        let conn = Connection::open(dir.path().join("whenever.db")).expect("open");
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_database_another_store_holds_is_refused_and_free_once_it_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = open(&dir);
        let path = dir.path().join("whenever.db");
        let Err(error) = SqliteStore::open(&path, SqliteOptions::default()) else {
            panic!("a second store opened the same file");
        };
        assert!(
            error
                .to_string()
                .contains("is in use by another process (a `whenever serve` on the same file?)"),
            "{error}"
        );
        drop(first);
        let again = open(&dir);
        assert!(again.get_task("t_none").await.expect("reads").is_none());
    }

    #[test]
    fn a_folder_is_refused_as_a_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = SqliteStore::open(dir.path(), SqliteOptions::default()).expect_err("a folder is no database");
        assert!(error.to_string().contains("it is a folder"), "{error}");
        assert_eq!(
            std::fs::read_dir(dir.path()).map(Iterator::count).ok(),
            Some(0),
            "nothing made in it"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_by_name_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orders.db");
        let bytes: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &bytes).expect("written");
        let Err(error) = SqliteStore::open(&path, SqliteOptions::default()) else {
            panic!("a file of noise opened as a database");
        };
        let error = error.to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("not a database"), "{error}");
        assert_eq!(std::fs::read(&path).expect("still there"), bytes, "left as it was");
    }

    #[test]
    fn a_database_of_a_newer_schema_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("whenever.db");
        drop(SqliteStore::open(&path, SqliteOptions::default()).expect("opens"));
        let conn = Connection::open(&path).expect("open");
        let newer = MIGRATIONS.len() as i64 + 1;
        conn.execute("UPDATE schema_version SET version = ?1", [newer])
            .expect("set");
        drop(conn);
        let Err(error) = SqliteStore::open(&path, SqliteOptions::default()) else {
            panic!("a newer schema opened");
        };
        assert!(
            error
                .to_string()
                .contains(&format!("schema version {newer}, newer than this host knows")),
            "{error}"
        );
        let conn = Connection::open(&path).expect("open");
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, newer, "left as it was");
    }

    #[tokio::test]
    async fn a_database_of_schema_2_keeps_its_runs_inputs_and_journal_after_the_task_log_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("whenever.db");
        let mut task = Task::new(serde_json::json!({"order": {"id": 7}}));
        let mut done = crate::task::RunRecord::starting(0, "tier", "v1", 1);
        done.outcome = Some(crate::task::RunOutcomeRecord::Ok);
        task.runs.push(done);
        task.runs.push(crate::task::RunRecord::starting(1, "charge", "v1", 1));
        task.runs.push(crate::task::RunRecord::starting(2, "notify", "v1", 1));
        let call = ConnectorCallRecord {
            connector: "stripe".into(),
            method: "charge".into(),
            args: crate::runtime::JsonText::of(&serde_json::json!({"amount": 1})),
            result: Ok(crate::runtime::JsonText::of(&serde_json::json!({"success": true}))),
            idempotency_key: "k".into(),
            duration_us: 1,
            replayed: false,
        };
        {
            // What a host of schema 2 wrote: run 1 started on the task's data (flagged), run 2
            // on other data, and run 1 journaled a call.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
            conn.execute_batch(MIGRATIONS[1]).expect("migration 2");
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);",
            )
            .expect("version");
            let row = crate::store::rows::TaskRow::of(&task, None, &task.created_at).expect("row");
            conn.execute(
                "INSERT INTO tasks (id, status, name, tags, message, data, progress, created_at, updated_at, revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 4)",
                params![
                    row.id,
                    row.status,
                    row.name,
                    row.tags,
                    row.message,
                    row.data,
                    row.progress,
                    row.created_at,
                    row.updated_at
                ],
            )
            .expect("task");
            for (run, finished, input, flagged) in [
                (0, true, None, false),
                (1, false, None, true),
                (2, false, Some(r#"{"other":true}"#), false),
            ] {
                conn.execute(
                    "INSERT INTO runs (task_id, run_id, step, version, finished, record, input, input_from_task)
                     VALUES (?1, ?2, 's', 'v1', ?3, ?4, ?5, ?6)",
                    params![
                        task.id,
                        run,
                        finished,
                        to_json(&task.runs[run as usize]).expect("record"),
                        input,
                        flagged
                    ],
                )
                .expect("run");
            }
            conn.execute(
                "INSERT INTO journal (task_id, run_id, call_index, record) VALUES (?1, 1, 0, ?2)",
                params![task.id, to_json(&call).expect("call")],
            )
            .expect("journal");
        }
        let store = open(&dir);
        let stored = store.get_task(&task.id).await.expect("reads").expect("found");
        assert_eq!(stored.task, task);
        assert_eq!(stored.revision, 4);
        let interrupted = store.interrupted_runs(&task.id).await.expect("reads");
        assert_eq!(interrupted.len(), 2);
        assert_eq!((interrupted[0].run_id, &interrupted[0].input), (1, &task.data));
        assert_eq!(interrupted[0].journal, vec![Some(call)]);
        assert_eq!(interrupted[1].run_id, 2);
        assert_eq!(interrupted[1].input, serde_json::json!({"other": true}));
        // It saves on from the revision it had.
        assert_eq!(store.save_task(TaskSave::whole(&task, 4)).await.expect("saved"), 5);
    }

    #[tokio::test]
    async fn concurrent_writes_are_grouped_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let mut handles = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                store.create_task(&Task::new(serde_json::json!({"i": i}))).await
            }));
        }
        for handle in handles {
            handle.await.expect("joined").expect("created");
        }
        let counts = store.count_tasks().await.expect("counts");
        assert_eq!(counts.get(&TaskStatus::Running), Some(&200));
        let commits = store.commit_stats().expect("counted");
        assert_eq!(commits.writes, 200, "{commits:?}");
        assert!(commits.commits < 200, "grouped: {commits:?}");
        assert_eq!(commits.duration.count(), commits.commits, "each commit timed");
        assert_eq!(commits.failed, 0);
    }

    /// A store whose commits may be held `delay` for writers at work, and its count of them.
    fn open_delaying(dir: &tempfile::TempDir, delay: Duration) -> (SqliteStore, Arc<WritesComing>) {
        let options = SqliteOptions {
            commit_delay: delay,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&dir.path().join("whenever.db"), options).expect("opens");
        let coming = store.writes_coming().expect("the SQLite store groups commits");
        (store, coming)
    }

    #[tokio::test]
    async fn a_commit_waits_for_the_writers_at_work_and_no_longer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, coming) = open_delaying(&dir, Duration::from_secs(600));

        // Nobody at work: a write commits at once, whatever the delay.
        store
            .create_task(&Task::new(serde_json::json!({"alone": true})))
            .await
            .expect("created");

        // A writer at work holds the commit of another's write...
        let working = coming.begin();
        let held = {
            let store = store.clone();
            tokio::spawn(async move { store.create_task(&Task::new(serde_json::json!({"held": true}))).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "the write committed while a writer was at work");
        // ...until it stops being at work and writes: both commit together.
        drop(working);
        store
            .create_task(&Task::new(serde_json::json!({"joined": true})))
            .await
            .expect("created");
        held.await.expect("joined").expect("the held write committed");
        assert_eq!(
            store.count_tasks().await.expect("counts").get(&TaskStatus::Running),
            Some(&3)
        );
    }

    #[tokio::test]
    async fn a_commit_is_held_no_longer_than_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, coming) = open_delaying(&dir, Duration::from_millis(20));
        // A writer at work that never writes (a drive stuck on a slow connector) delays commits by
        // the delay, not for ever.
        let _stuck = coming.begin();
        for i in 0..3 {
            store
                .create_task(&Task::new(serde_json::json!({"i": i})))
                .await
                .expect("created");
        }
        assert_eq!(
            store.count_tasks().await.expect("counts").get(&TaskStatus::Running),
            Some(&3)
        );
    }

    /// Sends `op` to the writer; the receiver gets its answer.
    fn queue(writer: &mpsc::Sender<WriteJob>, op: WriteFn) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        writer
            .send(WriteJob {
                op,
                reply,
                finishes: None,
            })
            .expect("queued");
        answer
    }

    #[tokio::test]
    async fn a_write_that_fails_midway_rolls_back_its_group_and_the_rest_runs_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_connection(&dir.path().join("w.db"), &SqliteOptions::default()).expect("open");
        conn.execute_batch("CREATE TABLE t (n INTEGER)").expect("table");
        let (writer, jobs) = mpsc::channel::<WriteJob>();
        let mut answers = Vec::new();
        // Queued before the writer starts, so all three land in one group.
        for (n, fail) in [(1, false), (2, true), (3, false)] {
            let op: WriteFn = Box::new(move |conn| {
                conn.execute("INSERT INTO t (n) VALUES (?1)", params![n])
                    .map_err(backend)?;
                if fail {
                    return Err(backend("disk on fire"));
                }
                Ok(0)
            });
            answers.push(queue(&writer, op));
        }
        let path = dir.path().join("w.db");
        let (calls, _) = CallLog::open(&path).expect("call log");
        let group = Grouping {
            coming: Arc::default(),
            delay: Duration::ZERO,
        };
        let stats = Arc::new(CommitCounters::default());
        let counted = stats.clone();
        std::thread::spawn(move || writer_loop(conn, jobs, Arc::new(calls), group, counted));
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.expect("answered").0);
        }
        let commits = stats.now();
        assert_eq!(
            (commits.failed, commits.commits, commits.writes),
            (1, 1, 1),
            "{commits:?}"
        );
        assert!(
            matches!(&results[0], Err(StoreError::Backend(m)) if m.contains("disk on fire")),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], Err(StoreError::Backend(m)) if m == "disk on fire"),
            "{results:?}"
        );
        assert!(results[2].is_ok(), "{results:?}");
        let check = open_connection(&path, &SqliteOptions::default()).expect("open");
        let rows: Vec<i64> = check
            .prepare("SELECT n FROM t ORDER BY n")
            .and_then(|mut s| s.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()))
            .expect("read");
        assert_eq!(rows, vec![3]);
    }

    #[tokio::test]
    async fn a_write_runs_as_it_arrives_while_its_commit_is_held_for_writers_at_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let conn = open_connection(&path, &SqliteOptions::default()).expect("open");
        conn.execute_batch("CREATE TABLE t (n INTEGER)").expect("table");
        let (writer, jobs) = mpsc::channel::<WriteJob>();
        let (calls, _) = CallLog::open(&path).expect("call log");
        let coming = Arc::new(WritesComing::default());
        // A writer at work: the group's commit is held for it (up to a minute).
        let working = coming.begin();
        let group = Grouping {
            coming: coming.clone(),
            delay: Duration::from_secs(60),
        };
        std::thread::spawn(move || writer_loop(conn, jobs, Arc::new(calls), group, Arc::default()));
        let (ran, has_run) = mpsc::channel::<()>();
        let mut answer = queue(
            &writer,
            Box::new(move |conn| {
                conn.execute("INSERT INTO t (n) VALUES (1)", []).map_err(backend)?;
                let _ = ran.send(());
                Ok(0)
            }),
        );
        coming.sent();
        has_run
            .recv_timeout(Duration::from_secs(20))
            .expect("the write ran while its commit was held");
        assert!(
            matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "answered before the commit"
        );
        // The writer at work sends nothing after all: the commit goes ahead.
        drop(working);
        coming.sent();
        assert_eq!(answer.await.expect("answered").0.expect("committed"), 0);
        let check = open_connection(&path, &SqliteOptions::default()).expect("open");
        let rows: i64 = check
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("read");
        assert_eq!(rows, 1);
    }

    /// `count` new tasks, created in `store`.
    async fn created_tasks(store: &SqliteStore, count: usize) -> Vec<Task> {
        let tasks: Vec<Task> = (0..count).map(|i| Task::new(serde_json::json!({"i": i}))).collect();
        for task in &tasks {
            store.create_task(task).await.expect("created");
        }
        tasks
    }

    /// Task number `i` with data marked saved.
    fn saved_copy(task: &Task, i: usize) -> Task {
        let mut task = task.clone();
        task.data = serde_json::json!({"i": i, "saved": true});
        task
    }

    #[tokio::test]
    async fn a_refused_write_leaves_the_others_of_its_group_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let tasks = created_tasks(&store, 100).await;
        // Every other save names a stale revision; they race in the same groups as the good ones.
        let mut handles = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let (store, task) = (store.clone(), saved_copy(task, i));
            handles.push(tokio::spawn(async move {
                let expected_revision = if i % 2 == 0 { 1 } else { 7 };
                store.save_task(TaskSave::whole(&task, expected_revision)).await
            }));
        }
        for (i, handle) in handles.into_iter().enumerate() {
            let result = handle.await.expect("joined");
            if i % 2 == 0 {
                assert_eq!(result.expect("saved"), 2);
            } else {
                assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
            }
        }
        for (i, task) in tasks.iter().enumerate() {
            let stored = store.get_task(&task.id).await.expect("read").expect("found");
            let saved = i % 2 == 0;
            assert_eq!(stored.revision, if saved { 2 } else { 1 });
            assert_eq!(stored.task.data["saved"].as_bool().unwrap_or(false), saved);
        }
    }

    /// A rollback made by a host whose clock is behind the one that wrote the steps last moves
    /// the stamp on all the same (every change is on record), so the other hosts of a cluster
    /// reload: by the newest time alone it did not, and they served the old version.
    #[tokio::test]
    async fn the_steps_stamp_moves_on_a_rollback_by_a_host_whose_clock_is_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        for (name, version) in [("charge", "v1"), ("charge", "v2"), ("other", "v1")] {
            let step = crate::store::StepVersion {
                name: name.into(),
                version: version.into(),
                digest: format!("{name}-{version}"),
                component: version.as_bytes().to_vec(),
                manifest: crate::runtime::StepManifest::default(),
                deployed_at: Utc::now(),
                deployed_by: None,
            };
            store.put_step_version(&step, true).await.expect("deployed");
        }
        // Another host, its clock a while ahead, deployed `other` last.
        let raw = Connection::open(dir.path().join("whenever.db")).expect("opened");
        raw.execute(
            "UPDATE steps SET updated_at = '2999-01-01T00:00:00Z' WHERE name = 'other'",
            [],
        )
        .expect("updated");
        let before = store.steps_stamp().await.expect("stamp");
        store
            .set_current_step("charge", Some("v1"), None)
            .await
            .expect("rolled back");
        assert_ne!(store.steps_stamp().await.expect("stamp"), before);
    }

    /// A delete that names a stale revision (`If-Match`) is refused before it changes anything,
    /// as a conflict is: the saves committed in its group stand.
    #[tokio::test]
    async fn a_delete_at_a_stale_revision_leaves_the_others_of_its_group_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let tasks = created_tasks(&store, 100).await;
        let mut handles = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let (store, task) = (store.clone(), saved_copy(task, i));
            handles.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    store.save_task(TaskSave::whole(&task, 1)).await.map(drop)
                } else {
                    store.delete_task(&task.id, Some(&[7])).await
                }
            }));
        }
        for (i, handle) in handles.into_iter().enumerate() {
            let result = handle.await.expect("joined");
            if i % 2 == 0 {
                assert!(result.is_ok(), "save {i}: {result:?}");
            } else {
                assert!(matches!(result, Err(StoreError::Changed(_))), "{result:?}");
            }
        }
        for (i, task) in tasks.iter().enumerate() {
            let stored = store.get_task(&task.id).await.expect("read").expect("still there");
            assert_eq!(stored.task.data["saved"].as_bool().unwrap_or(false), i % 2 == 0);
        }
    }
}
