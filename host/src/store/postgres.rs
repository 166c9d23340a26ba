//! The shared store: PostgreSQL, for several hosts (`whenever serve --db postgres://...`).
//!
//! The schema is SQLite's translated (JSON kept as text, so documents round-trip byte for byte;
//! times as RFC 3339 text, except lease expiry, which is the server's `timestamptz` so every host
//! reads one clock). Migrations are versioned in `schema_version` and applied on open under an
//! advisory lock, so hosts starting together apply them once.
//!
//! Several hosts: a running task is held by one host at a time through a lease (`owner`,
//! `lease_until`), claimed with `FOR NO KEY UPDATE SKIP LOCKED`, renewed while the host drives it
//! and ended when the task settles; a lease that expires (its host died) lets another host claim
//! the task, which re-runs interrupted runs with the journaled connector results. Saves stay
//! compare-and-swap on the revision, so a host that lost its lease cannot overwrite the new
//! holder's progress. Changes other hosts must hear of go out with `pg_notify` in the same
//! transaction (a claimable task; a change of serving steps), on one channel per schema;
//! [`PostgresStore::events`] LISTENs on a dedicated connection.
//!
//! Connector results are journaled on connections of their own with `synchronous_commit = off`:
//! a result is committed (visible to every session, kept if the host dies) before the step sees
//! it, without waiting for the WAL to reach the disk. Only a crash of the database server itself
//! can lose the results journaled since its last flush (at most a few hundred milliseconds, and
//! never one older than a later synchronous commit such as the run's save); the run, whose
//! outcome is not saved either, then re-runs and calls again with the same idempotency keys. That
//! is the same promise as the SQLite store's journal file, and it spares each call a WAL flush:
//! about 8 of an order's 21 commits.
//!
//! TLS is not built in: use a local socket, a loopback address or a tunnel.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use super::postgres_tls::{self, PostgresTls};

use super::rows::{
    RunRow, TaskRow, UNFINISHED_RUN_INPUTS, corrupt, parse_request_key, parse_status, parse_time, run_rows, signed,
    step_change_kind, still_running, time_text, to_json,
};
use super::{
    HostSeen, InterruptedRun, StepChange, StepChangeKind, StepVersion, StepVersionInfo, Store, StoreError, StoreEvent,
    StoredTask, TaskPage, TaskQuery, TaskSave, TaskSummary,
};
use crate::runtime::{ConnectorCallRecord, StepManifest};
use crate::task::{RunRecord, Task, TaskStatus};

/// The migrations, in order; `schema_version.version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: SQLite's schema, translated.
    r#"
CREATE TABLE tasks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    name TEXT,
    tags TEXT NOT NULL,
    message TEXT,
    data TEXT NOT NULL,
    progress TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX tasks_by_status ON tasks (status, seq);
CREATE TABLE runs (
    task_id TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    finished BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    input TEXT,
    PRIMARY KEY (task_id, run_id)
);
CREATE TABLE journal (
    task_id TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    call_index BIGINT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (task_id, run_id, call_index)
);
CREATE TABLE step_versions (
    seq BIGSERIAL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    component BYTEA NOT NULL,
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
    // 2: leases, for several hosts.
    r#"
ALTER TABLE tasks ADD COLUMN owner TEXT, ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX tasks_running ON tasks (seq) WHERE status = 'running';
"#,
    // 3: a starting run whose input is the data saved with it stores a flag, not a copy.
    "ALTER TABLE runs ADD COLUMN input_from_task BOOLEAN NOT NULL DEFAULT FALSE;",
    // 4: the JSON columns are rewritten at every save: compress them with lz4 rather than the
    // default pglz (a tenth of the database's CPU in the cluster benchmark). A server built
    // without lz4 keeps pglz: this is only about speed.
    r#"
DO $$ BEGIN
    ALTER TABLE tasks ALTER COLUMN data SET COMPRESSION lz4, ALTER COLUMN progress SET COMPRESSION lz4;
    ALTER TABLE runs ALTER COLUMN record SET COMPRESSION lz4, ALTER COLUMN input SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 compression is not available: the JSON columns keep pglz';
END $$;
"#,
    // 5: the idempotency key of the request that created a task (`crate::request_key`).
    "ALTER TABLE tasks ADD COLUMN idempotency TEXT;",
    // 6: who first deployed each step version.
    "ALTER TABLE step_versions ADD COLUMN deployed_by TEXT;",
    // 7: every change to which version of a step serves, and who made it.
    r#"
CREATE TABLE step_changes (
    seq BIGSERIAL PRIMARY KEY,
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
    // 9: the process registered under each host name, and when it was last seen (`host_id`s
    // must differ).
    "CREATE TABLE hosts (host TEXT PRIMARY KEY, instance TEXT NOT NULL, seen TIMESTAMPTZ NOT NULL);",
    // 10: what the hosts remember between starts (`Store::reevaluated_at`).
    "CREATE TABLE marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 11: a task a client waits for on a host that does not drive it (`Store::watch_task`).
    "ALTER TABLE tasks ADD COLUMN watched BOOLEAN NOT NULL DEFAULT FALSE;",
    // 12: the lease of the process registered under each name, which its registration is fresh
    // for (0 in rows of hosts before this).
    "ALTER TABLE hosts ADD COLUMN lease_ms BIGINT NOT NULL DEFAULT 0;",
    // 13: the format of what each host writes (`store::WRITE_FORMAT`; 0 in rows of hosts before
    // this), so that an older host stands aside for a newer one.
    "ALTER TABLE hosts ADD COLUMN format INTEGER NOT NULL DEFAULT 0;",
    // 14: a task's journal goes with the task. A host that lost its lease may journal a call as
    // the task is deleted: the key lock the insert takes makes the delete wait for it and then
    // take the row too (the rows such a race left before are swept first). The tables are locked
    // first, tasks before journal as the deletions of hosts not yet upgraded take them, so that
    // none of them deadlocks with this or journals a row between the sweep and the check.
    r#"
LOCK TABLE tasks, journal IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM journal j WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = j.task_id);
ALTER TABLE journal ADD CONSTRAINT journal_task FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;
"#,
];

/// Whether the `hosts` row `h` is live: seen within its own lease, by the database's clock. One
/// definition for the claims (which skip while a live host is newer), the registrations (which
/// answer the newest live format) and the listing, so that what `GET /v1/hosts` calls live is
/// what makes a host stand aside.
macro_rules! live_host {
    () => {
        "h.seen >= now() - h.lease_ms * interval '1 millisecond'"
    };
}

/// How long the name of a process not seen since is kept in `hosts`: a name is registered again
/// every quarter lease while its process lives, so one not seen for a day is a process killed
/// without a word (by default each process registers a name of its own, so a host that crashes
/// and restarts leaves one behind every time).
const HOSTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The name of the mark that names the steps every waiting and failed task was last
/// re-evaluated ([`Store::reevaluated_at`]).
const REEVALUATED: &str = "reevaluated";

/// Records one change to a step's serving version (parameters: name, change, version, at, by).
const RECORD_STEP_CHANGE: &str = "INSERT INTO step_changes (name, change, version, at, by) VALUES ($1, $2, $3, $4, $5)";

/// The advisory lock that serializes migrations between hosts starting together.
const MIGRATION_LOCK: i64 = 0x5768_656e_6576_6572; // "Whenever"

/// Whether a `--db` value names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// What is wrong with a `--db` that is no PostgreSQL URL but looks meant as one (any other
/// `SCHEME://`, or `postgres` with `//` or `@` but no `://`); a SQLite file path gives `None`.
/// Taken as a path, it would make a new database in folders named after it.
pub fn mistyped_url(db: &str) -> Option<String> {
    if is_postgres_url(db) {
        return None;
    }
    let meant = db.contains("://") || (db.starts_with("postgres") && (db.contains("//") || db.contains('@')));
    // `redact` reads `SCHEME://`; without it, a password is still hidden.
    let shown = match db.rsplit_once('@') {
        Some((before, host)) if !db.contains("://") => {
            let start = before.rfind('/').map_or(0, |i| i + 1);
            let credentials = &before[start..];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***@{host}", &before[..start]),
                None => db.to_string(),
            }
        }
        _ => redact(db),
    };
    meant.then(|| {
        format!(
            "--db {shown}: this is no PostgreSQL URL (postgres://USER@HOST[:PORT]/DATABASE) nor, as \
             meant, a SQLite file path"
        )
    })
}

/// A connection string with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = credentials.split(':').next().unwrap_or_default();
    let sep = if tail.is_empty() && !rest.contains('/') {
        ""
    } else {
        "/"
    };
    format!(
        "{scheme}://{user}{}@{host}{sep}{tail}",
        if credentials.contains(':') { ":***" } else { "" }
    )
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Whether SQLSTATE `code` says the server cannot take the write now, though the same write may
/// succeed later: a connection problem (class 08), a transaction rolled back for a serialization
/// failure or a deadlock (40), a full disk or exhausted resources (53), a server shutting down
/// (57P).
fn unavailable_sqlstate(code: &str) -> bool {
    ["08", "40", "53", "57P"].iter().any(|class| code.starts_with(class))
}

/// A PostgreSQL error as the store reports it: [`StoreError::Unavailable`] for the SQLSTATEs of
/// [`unavailable_sqlstate`] and a lost connection (ended by the server, or reset on the way:
/// `host/tests/cluster.rs` shows both), [`StoreError::Backend`] otherwise.
fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = format!("postgres: {} ({code})", db.message());
            if unavailable_sqlstate(code) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Backend(message)
            }
        }
        None if e.is_closed() => StoreError::Unavailable(format!("postgres: {e}")),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

/// No connection could be had from the pool (the server is down or unreachable): the store is
/// unavailable until it is back.
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!(
        "postgres pool: {}",
        whenever_connectors::error::with_causes(&e)
    ))
}

fn millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// A new task in one statement: the task row unless the id exists, its runs `$10..$15` (arrays;
/// no inputs: a new task has no run in flight), a notification on channel `$16` when it is
/// running, and the idempotency key `$17` of the request that created it. Answers whether it
/// was created.
const CREATE_TASK: &str = "
WITH created AS (
    INSERT INTO tasks (id, status, name, tags, message, data, progress, created_at, updated_at, revision, idempotency)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $17) ON CONFLICT (id) DO NOTHING
    RETURNING id
),
written AS (
    INSERT INTO runs (task_id, run_id, step, version, finished, record, input_from_task)
    SELECT $1, u.run_id, u.step, u.version, u.finished, u.record, u.from_task
    FROM unnest($10::bigint[], $11::text[], $12::text[], $13::boolean[], $14::text[], $15::boolean[])
      AS u(run_id, step, version, finished, record, from_task)
    WHERE EXISTS (SELECT 1 FROM created)
    ON CONFLICT (task_id, run_id) DO UPDATE SET
      step = excluded.step, version = excluded.version, finished = excluded.finished, record = excluded.record,
      input = NULL, input_from_task = excluded.input_from_task
),
notified AS (
    SELECT pg_notify($16, 'tasks') FROM created WHERE $2 = 'running'
)
SELECT EXISTS (SELECT 1 FROM created), (SELECT count(*) FROM notified)";

/// A save in one statement (one round trip, one implicit transaction): the task row if its
/// revision is still `$9` (compare-and-swap), the run rows `$10..$16` (arrays, one element per
/// run), the inputs of unfinished runs that started from the old data copied before it changes
/// (every part of the statement reads the rows as they were before it), the journal of runs that
/// finished dropped, and a notification on channel `$17` when a running task has no holder
/// (`tasks`) or a watched task settled (`settled ID`: a client waits for it on another host;
/// only then, as notifying transactions commit one at a time).
/// Answers whether it saved and the revision it found.
const SAVE_TASK: &str = "
WITH old AS (SELECT data, revision FROM tasks WHERE id = $1),
saved AS (
    UPDATE tasks SET status = $2, name = $3, tags = $4, message = $5, data = $6, progress = $7,
      updated_at = $8, revision = revision + 1,
      owner = CASE WHEN $2 = 'running' THEN owner END,
      lease_until = CASE WHEN $2 = 'running' THEN lease_until END
    WHERE id = $1 AND revision = $9
    RETURNING owner IS NULL AS unheld, watched
),
materialized AS (
    UPDATE runs SET input = (SELECT data FROM old), input_from_task = FALSE
    WHERE task_id = $1 AND input_from_task AND NOT finished AND NOT (run_id = ANY($10))
      AND EXISTS (SELECT 1 FROM saved)
),
written AS (
    INSERT INTO runs (task_id, run_id, step, version, finished, record, input, input_from_task)
    SELECT $1, u.run_id, u.step, u.version, u.finished, u.record, u.input, u.input_from_task
    FROM unnest($10::bigint[], $11::text[], $12::text[], $13::boolean[], $14::text[], $15::text[], $16::boolean[])
      AS u(run_id, step, version, finished, record, input, input_from_task)
    WHERE EXISTS (SELECT 1 FROM saved)
    ON CONFLICT (task_id, run_id) DO UPDATE SET
      finished = excluded.finished, record = excluded.record,
      input = CASE WHEN excluded.finished THEN NULL
                   WHEN excluded.input IS NOT NULL OR excluded.input_from_task THEN excluded.input
                   WHEN runs.input_from_task THEN (SELECT data FROM old)
                   ELSE runs.input END,
      input_from_task = CASE WHEN excluded.finished THEN FALSE
                             WHEN excluded.input IS NOT NULL OR excluded.input_from_task THEN excluded.input_from_task
                             ELSE FALSE END
),
forgotten AS (
    DELETE FROM journal
    WHERE task_id = $1 AND run_id = ANY(SELECT run_id FROM unnest($10::bigint[], $13::boolean[]) AS f(run_id, finished) WHERE finished)
      AND EXISTS (SELECT 1 FROM saved)
),
notified AS (
    SELECT pg_notify($17, CASE WHEN $2 = 'running' THEN 'tasks' ELSE 'settled ' || $1 END)
    FROM saved WHERE (saved.unheld AND $2 = 'running') OR ($2 <> 'running' AND saved.watched)
)
SELECT EXISTS (SELECT 1 FROM saved), (SELECT revision FROM old), (SELECT count(*) FROM notified)";

/// What a notification on the schema's channel says.
const TASKS: &str = "tasks";
const STEPS: &str = "steps";
/// The start of a notification that a task settled; its id follows.
const SETTLED: &str = "settled ";

/// The event a notification's payload tells of.
fn event_of(payload: &str) -> StoreEvent {
    if payload == STEPS {
        StoreEvent::StepsChanged
    } else if let Some(id) = payload.strip_prefix(SETTLED) {
        StoreEvent::TaskSettled(id.to_string())
    } else {
        StoreEvent::TasksAvailable
    }
}

/// The PostgreSQL store. Cloning shares the pool and the listener.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Claims, renewals and releases: their own connections, so a renewal never waits behind
    /// a burst of saves (a late renewal would let the lease lapse under a live host).
    leases: Pool,
    /// Journaling connector results: `synchronous_commit = off` (see the module docs).
    journal: Pool,
    config: tokio_postgres::Config,
    /// The TLS the URL asks for (`sslmode`, `sslrootcert`), for the listener's connection.
    tls: PostgresTls,
    /// The NOTIFY channel of this schema (hosts on other schemas of the database do not hear it).
    channel: String,
    events: Arc<OnceLock<broadcast::Sender<StoreEvent>>>,
    /// The runtime the store was connected on, where every connection's I/O task runs. A
    /// connection opened from another runtime ran its I/O there and closed when that runtime
    /// stopped: the HTTP API's, stopped first at a graceful stop, closed connections that drives
    /// still held during their grace ("connection closed").
    home: tokio::runtime::Handle,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// How a host's connections to PostgreSQL are shared among its pools: one for LISTEN, the
/// leases' renewals (kept apart so that a busy pool never delays them past their expiry), the
/// connector journal's (committed without waiting for the WAL flush), and the rest for tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Task saves, reads, claims, deploys.
    pub main: usize,
    /// The connector journal.
    pub journal: usize,
    /// Lease renewals and releases.
    pub leases: usize,
}

impl Connections {
    /// The default total: 16 for tasks, 8 for the journal, 2 for leases and the LISTEN one.
    pub const DEFAULT_TOTAL: u32 = 27;

    /// `total` connections shared out: one for LISTEN, 2 for leases (1 below 8 in all), a third
    /// of the rest for the journal, the others for tasks. Refuses fewer than 4.
    pub fn split(total: u32) -> Result<Connections, String> {
        if total < 4 {
            return Err(format!(
                "[store] postgres_connections must be at least 4 (one each for tasks, the journal, \
                 leases and LISTEN); found {total}"
            ));
        }
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let leases = if total >= 8 { 2 } else { 1 };
        let journal = ((total - 1 - leases) / 3).max(1);
        Ok(Connections {
            main: total - 1 - leases - journal,
            journal,
            leases,
        })
    }
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            main: 16,
            journal: 8,
            leases: 2,
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db[?options=...]`, with TLS as
    /// its `sslmode` and `sslrootcert` say: [`super::postgres_tls`]), applies the missing
    /// migrations and returns the store. Fails when no server answers.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, Connections::default()).await
    }

    /// [`PostgresStore::connect`], opening at most `connections` (besides the LISTEN one).
    pub async fn connect_with(url: &str, connections: Connections) -> Result<PostgresStore, StoreError> {
        let home = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Backend(format!("postgres: connect from a tokio runtime: {e}")))?;
        let invalid =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("invalid PostgreSQL URL {}: {e}", redact(url)));
        let (mut config, tls) = postgres_tls::connection(url).map_err(|e| invalid(&e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("whenever");
        }
        let manager = |config: &tokio_postgres::Config| {
            Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            )
        };
        let pool = Pool::builder(manager(&config))
            .max_size(connections.main)
            .build()
            .map_err(backend)?;
        let leases = Pool::builder(manager(&config))
            .max_size(connections.leases)
            .build()
            .map_err(backend)?;
        // The journal's sessions commit without waiting for the WAL flush (see the module docs).
        let mut asynchronous = config.clone();
        asynchronous.options(&match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_string(),
        });
        let journal = Pool::builder(manager(&asynchronous))
            .max_size(connections.journal)
            .build()
            .map_err(backend)?;
        let mut client = pool.get().await.map_err(|e| {
            // The server's own words ("connection requires a valid client certificate") are
            // in the error's causes.
            let why = whenever_connectors::error::with_causes(&e);
            StoreError::Backend(format!("cannot connect to {}: {why}", redact(url)))
        })?;
        migrate(&mut client).await?;
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(pg)?
            .get(0);
        Ok(PostgresStore {
            pool,
            leases,
            journal,
            config,
            tls,
            channel: format!("whenever:{schema}"),
            events: Arc::default(),
            home,
        })
    }

    /// A client of `pool`, taken on the store's own runtime ([`PostgresStore::home`]): a
    /// connection opened for it has its I/O task there, whichever runtime asks.
    async fn pooled(&self, pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
        let pool = pool.clone();
        self.home
            .spawn(async move { pool.get().await })
            .await
            .map_err(|e| StoreError::Backend(format!("postgres: the store's runtime is gone: {e}")))?
            .map_err(pool_error)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pooled(&self.pool).await
    }

    async fn lease_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pooled(&self.leases).await
    }

    /// Starts the LISTEN connection (once); it reconnects when the connection drops and stops
    /// once nobody listens any more.
    fn start_listener(&self) -> broadcast::Sender<StoreEvent> {
        self.events
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(1024);
                let config = self.config.clone();
                let channel = self.channel.clone();
                let events = sender.clone();
                self.home.spawn(listen(config, self.tls.clone(), channel, events));
                sender
            })
            .clone()
    }
}

/// Listens on `channel` and forwards notifications as events until nobody subscribes.
async fn listen(
    config: tokio_postgres::Config,
    tls: PostgresTls,
    channel: String,
    events: broadcast::Sender<StoreEvent>,
) {
    let mut first = true;
    loop {
        if !first && events.receiver_count() == 0 {
            return;
        }
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (forward_events, forward_channel) = (events.clone(), channel.clone());
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let forward = tokio::spawn(async move {
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == forward_channel => {
                                if forward_events.send(event_of(n.payload())).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                let quoted = channel.replace('"', "\"\"");
                if client.batch_execute(&format!("LISTEN \"{quoted}\"")).await.is_ok() {
                    // Whatever happened while not listening is picked up now: after a dropped
                    // connection, and at first too, as the host loaded its steps before this
                    // LISTEN (a deploy through another host in between was notified to no one).
                    let _ = events.send(StoreEvent::StepsChanged);
                    let _ = events.send(StoreEvent::TasksAvailable);
                    let mut forward = forward;
                    loop {
                        tokio::select! {
                            _ = &mut forward => break,
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                                if events.receiver_count() == 0 {
                                    forward.abort();
                                    return;
                                }
                            }
                        }
                    }
                } else {
                    forward.abort();
                }
                drop(client);
            }
            Err(e) => eprintln!("whenever: cannot LISTEN for other hosts' changes ({e}); retrying"),
        }
        first = false;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes the runs of the tasks `ids` (their rows are deleted already, and their journal with
/// them: migration 14's foreign key).
async fn delete_history(tx: &deadpool_postgres::Transaction<'_>, ids: &[&str]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute("DELETE FROM runs WHERE task_id = ANY($1)", &[&ids])
        .await
        .map_err(pg)?;
    Ok(())
}

/// Journals one connector call (parameters: task id, run id, call index, record), only while
/// the task runs: a host that lost its lease (paused past it) may still journal a call after
/// another host completed the task, and that row, the call's arguments with it, would be kept
/// by nothing and swept by nothing but the task's deletion. The foreign key's lock on the task's
/// row makes a deletion under way wait for the insert, and then take the row with the task.
const JOURNAL_CALL: &str = "INSERT INTO journal (task_id, run_id, call_index, record)
     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND status = 'running')
     ON CONFLICT (task_id, run_id, call_index) DO UPDATE SET record = excluded.record";

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await
        .map_err(pg)?;
    let applied: Option<i32> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(pg)?
        .map(|r| r.get(0));
    if applied.is_none() {
        tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
            .await
            .map_err(pg)?;
    }
    let applied = usize::try_from(applied.unwrap_or(0)).map_err(|e| corrupt("schema_version", e))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Unusable(format!(
            "the database has schema version {applied}, newer than this host knows ({}): a newer \
             whenever wrote it; run that version or a later one",
            MIGRATIONS.len()
        )));
    }
    for migration in &MIGRATIONS[applied..] {
        tx.batch_execute(migration).await.map_err(pg)?;
    }
    let version = i32::try_from(MIGRATIONS.len()).map_err(|e| corrupt("schema_version", e))?;
    tx.execute("UPDATE schema_version SET version = $1", &[&version])
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

/// Run rows as the column arrays the statements `unnest` (one round trip for any number of runs).
struct RunArrays<'a> {
    run_ids: Vec<i64>,
    steps: Vec<&'a str>,
    versions: Vec<&'a str>,
    finished: Vec<bool>,
    records: Vec<&'a str>,
    inputs: Vec<Option<&'a str>>,
    from_task: Vec<bool>,
}

impl<'a> RunArrays<'a> {
    fn of(rows: &'a [RunRow]) -> RunArrays<'a> {
        RunArrays {
            run_ids: rows.iter().map(|r| r.run_id).collect(),
            steps: rows.iter().map(|r| r.step.as_str()).collect(),
            versions: rows.iter().map(|r| r.version.as_str()).collect(),
            finished: rows.iter().map(|r| r.finished).collect(),
            records: rows.iter().map(|r| r.record.as_str()).collect(),
            inputs: rows.iter().map(|r| r.input.as_deref()).collect(),
            from_task: rows.iter().map(|r| r.input_from_task).collect(),
        }
    }
}

impl PostgresStore {
    async fn notify(&self, tx: &deadpool_postgres::Transaction<'_>, what: &str) -> Result<(), StoreError> {
        tx.execute("SELECT pg_notify($1, $2)", &[&self.channel, &what])
            .await
            .map_err(pg)?;
        Ok(())
    }
}

fn step_version_of(row: &tokio_postgres::Row) -> Result<StepVersion, StoreError> {
    let manifest: String = row.get(4);
    let manifest: StepManifest = serde_json::from_str(&manifest).map_err(|e| corrupt("manifest", e))?;
    let deployed_at: String = row.get(5);
    Ok(StepVersion {
        name: row.get(0),
        version: row.get(1),
        digest: row.get(2),
        component: row.get(3),
        manifest,
        deployed_at: parse_time(&deployed_at)?,
        deployed_by: row.get(6),
    })
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_task_starting(&self, task: &Task, starting: &[u64]) -> Result<u64, StoreError> {
        // A new task was last written when it was created.
        let row = TaskRow::of(task, None, &task.created_at)?;
        let idempotency = task.idempotency.as_ref().map(to_json).transpose()?;
        let all = TaskSave::every_run(task);
        let runs = run_rows(&TaskSave::creating(task, &all, starting))?;
        let arrays = RunArrays::of(&runs);
        let client = self.client().await?;
        let create = client.prepare_cached(CREATE_TASK).await.map_err(pg)?;
        let answer = client
            .query_one(
                &create,
                &[
                    &row.id,
                    &row.status,
                    &row.name,
                    &row.tags,
                    &row.message,
                    &row.data,
                    &row.progress,
                    &row.created_at,
                    &row.updated_at,
                    &arrays.run_ids,
                    &arrays.steps,
                    &arrays.versions,
                    &arrays.finished,
                    &arrays.records,
                    &arrays.from_task,
                    &self.channel,
                    &idempotency,
                ],
            )
            .await
            .map_err(pg)?;
        if !answer.get::<_, bool>(0) {
            return Err(StoreError::Conflict(format!("a task with id {} exists", row.id)));
        }
        Ok(1)
    }

    async fn save_task_at(&self, save: TaskSave<'_>, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let row = TaskRow::of(save.task, save.data_text, &at)?;
        let runs = run_rows(&save)?;
        let expected = signed(save.expected_revision, "revision")?;
        let arrays = RunArrays::of(&runs);
        let client = self.client().await?;
        let save_statement = client.prepare_cached(SAVE_TASK).await.map_err(pg)?;
        let answer = client
            .query_one(
                &save_statement,
                &[
                    &row.id,
                    &row.status,
                    &row.name,
                    &row.tags,
                    &row.message,
                    &row.data,
                    &row.progress,
                    &row.updated_at,
                    &expected,
                    &arrays.run_ids,
                    &arrays.steps,
                    &arrays.versions,
                    &arrays.finished,
                    &arrays.records,
                    &arrays.inputs,
                    &arrays.from_task,
                    &self.channel,
                ],
            )
            .await
            .map_err(pg)?;
        let saved: bool = answer.get(0);
        if !saved {
            // The statement's `old` is the row as it was when the statement began: a save or a
            // delete that committed while this one waited for the row is read again, to be told.
            let found = match answer.get::<_, Option<i64>>(1) {
                Some(current) if current == expected => {
                    let again = client
                        .prepare_cached("SELECT revision FROM tasks WHERE id = $1")
                        .await
                        .map_err(pg)?;
                    client
                        .query_opt(&again, &[&row.id])
                        .await
                        .map_err(pg)?
                        .map(|r| r.get::<_, i64>(0))
                }
                other => other,
            };
            return Err(match found {
                None => StoreError::NotFound(format!("task {}", row.id)),
                Some(current) => StoreError::Conflict(format!(
                    "task {} changed meanwhile (revision {current}, expected {expected})",
                    row.id
                )),
            });
        }
        Ok(save.expected_revision + 1)
    }

    async fn get_task(&self, id: &str) -> Result<Option<StoredTask>, StoreError> {
        let client = self.client().await?;
        let select = client
            .prepare_cached(
                "SELECT id, status, name, tags, message, data, progress, created_at, updated_at, revision, idempotency
                 FROM tasks WHERE id = $1",
            )
            .await
            .map_err(pg)?;
        let Some(row) = client.query_opt(&select, &[&id]).await.map_err(pg)? else {
            return Ok(None);
        };
        let runs_q = client
            .prepare_cached("SELECT record FROM runs WHERE task_id = $1 ORDER BY run_id")
            .await
            .map_err(pg)?;
        let runs: Vec<RunRecord> = client
            .query(&runs_q, &[&id])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| corrupt("run record", e)))
            .collect::<Result<_, _>>()?;
        let status: &str = row.get(1);
        let tags: &str = row.get(3);
        let data: &str = row.get(5);
        let progress: &str = row.get(6);
        let created: &str = row.get(7);
        let updated: &str = row.get(8);
        let revision: i64 = row.get(9);
        let task = Task {
            id: row.get(0),
            status: parse_status(status)?,
            message: row.get(4),
            name: row.get(2),
            tags: serde_json::from_str(tags).map_err(|e| corrupt("tags", e))?,
            data: serde_json::from_str(data).map_err(|e| corrupt("data", e))?,
            runs,
            progress: serde_json::from_str(progress).map_err(|e| corrupt("progress", e))?,
            created_at: parse_time(created)?,
            idempotency: parse_request_key(row.get(10))?,
        };
        Ok(Some(StoredTask {
            task,
            revision: u64::try_from(revision).map_err(|e| corrupt("revision", e))?,
            updated_at: parse_time(updated)?,
        }))
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let status = query.status.map(|s| s.as_str().to_string());
        let limit = query.limit.clamp(1, 1000);
        let cursor: Option<i64> = match &query.cursor {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|_| StoreError::NotFound(format!("cursor {text:?}")))?,
            ),
        };
        let client = self.client().await?;
        let select = client
            .prepare_cached(
                "SELECT seq, id, status, name, tags, message, created_at, updated_at FROM tasks
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR tags::jsonb ? $2)
                   AND ($3::bigint IS NULL OR seq < $3)
                 ORDER BY seq DESC LIMIT $4",
            )
            .await
            .map_err(pg)?;
        let rows = client
            .query(&select, &[&status, &query.tag, &cursor, &(i64::from(limit) + 1)])
            .await
            .map_err(pg)?;
        let more = rows.len() > limit as usize;
        let mut tasks = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let tags: &str = row.get(4);
            let created: &str = row.get(6);
            let updated: &str = row.get(7);
            tasks.push(TaskSummary {
                id: row.get(1),
                status: parse_status(row.get(2))?,
                name: row.get(3),
                tags: serde_json::from_str(tags).map_err(|e| corrupt("tags", e))?,
                message: row.get(5),
                created_at: parse_time(created)?,
                updated_at: parse_time(updated)?,
            });
            last = Some(row.get::<_, i64>(0));
        }
        Ok(TaskPage {
            tasks,
            next_cursor: if more { last.map(|s| s.to_string()) } else { None },
        })
    }

    async fn count_tasks(&self) -> Result<BTreeMap<TaskStatus, u64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT status, count(*) FROM tasks GROUP BY status", &[])
            .await
            .map_err(pg)?;
        let mut counts = BTreeMap::new();
        for row in rows {
            counts.insert(
                parse_status(row.get(0))?,
                u64::try_from(row.get::<_, i64>(1)).unwrap_or_default(),
            );
        }
        Ok(counts)
    }

    async fn delete_task(&self, id: &str, revisions: Option<&[u64]>) -> Result<(), StoreError> {
        let named: Option<Vec<i64>> = revisions
            .map(|named| named.iter().map(|r| signed(*r, "revision")).collect())
            .transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The row is locked by the delete: a concurrent resume (a compare-and-swap on the
        // revision) either came first, and the task is running or at another revision, or
        // finds it gone.
        let deleted = tx
            .execute(
                "DELETE FROM tasks WHERE id = $1 AND status <> 'running'
                   AND ($2::bigint[] IS NULL OR revision = ANY($2))",
                &[&id, &named],
            )
            .await
            .map_err(pg)?;
        if deleted == 0 {
            let found = tx
                .query_opt("SELECT status, revision FROM tasks WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            let Some(found) = found else {
                return Err(StoreError::NotFound(format!("task {id}")));
            };
            let revision = u64::try_from(found.get::<_, i64>(1)).map_err(|e| corrupt("revision", e))?;
            return Err(match revisions {
                Some(named) if !named.contains(&revision) => StoreError::not_at(id, revision, named),
                _ => still_running(id),
            });
        }
        let ids = [id];
        delete_history(&tx, &ids).await?;
        tx.commit().await.map_err(pg)
    }

    async fn delete_settled(&self, status: TaskStatus, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        if status == TaskStatus::Running {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Hosts sweeping at once skip each other's rows rather than wait for them.
        let rows = tx
            .query(
                "DELETE FROM tasks WHERE seq IN (
                     SELECT seq FROM tasks WHERE status = $1 AND updated_at < $2
                     ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[&status.as_str(), &time_text(&before), &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        let ids: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
        delete_history(&tx, &ids).await?;
        tx.commit().await.map_err(pg)?;
        Ok(ids.len() as u64)
    }

    async fn interrupted_runs(&self, task_id: &str) -> Result<Vec<InterruptedRun>, StoreError> {
        let client = self.client().await?;
        let runs_q = client.prepare_cached(UNFINISHED_RUN_INPUTS).await.map_err(pg)?;
        let journal_q = client
            .prepare_cached(
                "SELECT call_index, record FROM journal WHERE task_id = $1 AND run_id = $2 ORDER BY call_index",
            )
            .await
            .map_err(pg)?;
        let mut interrupted = Vec::new();
        for row in client.query(&runs_q, &[&task_id]).await.map_err(pg)? {
            let run_id: i64 = row.get(0);
            let Some(input) = row.get::<_, Option<&str>>(1) else {
                continue;
            };
            let journal = client
                .query(&journal_q, &[&task_id, &run_id])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| {
                    let index: i64 = r.get(0);
                    Ok((
                        index,
                        serde_json::from_str(r.get::<_, &str>(1)).map_err(|e| corrupt("journal", e))?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let journal = super::by_call_number(journal)?;
            interrupted.push(InterruptedRun {
                run_id: u64::try_from(run_id).map_err(|e| corrupt("run id", e))?,
                input: serde_json::from_str(input).map_err(|e| corrupt("run input", e))?,
                journal,
            });
        }
        Ok(interrupted)
    }

    async fn journal_call(
        &self,
        task_id: &str,
        run_id: u64,
        index: usize,
        call: &ConnectorCallRecord,
    ) -> Result<(), StoreError> {
        let record = to_json(call)?;
        let run_id = signed(run_id, "run id")?;
        let index = i64::try_from(index).map_err(|e| corrupt("call index", e))?;
        let client = self.pooled(&self.journal).await?;
        let upsert = client.prepare_cached(JOURNAL_CALL).await.map_err(pg)?;
        match client.execute(&upsert, &[&task_id, &run_id, &index, &record]).await {
            // The task was deleted between the statement's look at it and its key check: there
            // is nothing to keep the result for.
            Err(e)
                if e.as_db_error()
                    .is_some_and(|db| db.constraint() == Some("journal_task")) =>
            {
                Ok(())
            }
            Err(e) => Err(pg(e)),
            Ok(_) => Ok(()),
        }
    }

    async fn put_step_version(&self, version: &StepVersion, make_current: bool) -> Result<(), StoreError> {
        let manifest = to_json(&version.manifest)?;
        let now = time_text(&Utc::now());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO step_versions (name, version, digest, component, manifest, deployed_at, deployed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO UPDATE SET manifest = excluded.manifest",
            &[
                &version.name,
                &version.version,
                &version.digest,
                &version.component,
                &manifest,
                &time_text(&version.deployed_at),
                &version.deployed_by,
            ],
        )
        .await
        .map_err(pg)?;
        let changed = if make_current {
            // Serving already (another host of the cluster, starting at the same time, deployed
            // the same files first: this upsert waited for its commit): no change to record.
            let changed = tx
                .execute(
                    "INSERT INTO steps (name, current, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at
                     WHERE steps.current IS DISTINCT FROM excluded.current",
                    &[&version.name, &version.version, &now],
                )
                .await
                .map_err(pg)?;
            if changed > 0 {
                tx.execute(
                    RECORD_STEP_CHANGE,
                    &[
                        &version.name,
                        &StepChangeKind::Deployed.as_str(),
                        &version.version,
                        &time_text(&version.deployed_at),
                        &version.deployed_by,
                    ],
                )
                .await
                .map_err(pg)?;
            }
            changed
        } else {
            // The serving version may have taken a new manifest: that changes the serving steps too.
            tx.execute(
                "UPDATE steps SET updated_at = $3 WHERE name = $1 AND current = $2",
                &[&version.name, &version.version, &now],
            )
            .await
            .map_err(pg)?
        };
        if changed > 0 {
            self.notify(&tx, STEPS).await?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn set_current_step(&self, name: &str, version: Option<&str>, by: Option<&str>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if let Some(version) = version {
            let known = tx
                .query_opt(
                    "SELECT 1 FROM step_versions WHERE name = $1 AND version = $2",
                    &[&name, &version],
                )
                .await
                .map_err(pg)?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!("version {version} of step {name}")));
            }
        }
        tx.execute(
            "INSERT INTO steps (name, current, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at",
            &[&name, &version, &time_text(&Utc::now())],
        )
        .await
        .map_err(pg)?;
        let change = match version {
            Some(_) => StepChangeKind::RolledBack,
            None => StepChangeKind::Removed,
        };
        tx.execute(
            RECORD_STEP_CHANGE,
            &[&name, &change.as_str(), &version, &time_text(&Utc::now()), &by],
        )
        .await
        .map_err(pg)?;
        self.notify(&tx, STEPS).await?;
        tx.commit().await.map_err(pg)
    }

    async fn step_changes(&self, name: &str) -> Result<Vec<StepChange>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT change, version, at, by FROM step_changes WHERE name = $1 ORDER BY seq",
                &[&name],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|row| {
                Ok(StepChange {
                    step: name.to_string(),
                    change: step_change_kind(row.get(0))?,
                    version: row.get(1),
                    at: parse_time(row.get(2))?,
                    by: row.get(3),
                })
            })
            .collect()
    }

    async fn current_steps(&self) -> Result<Vec<StepVersion>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT v.name, v.version, v.digest, v.component, v.manifest, v.deployed_at, v.deployed_by
                 FROM steps s JOIN step_versions v ON v.name = s.name AND v.version = s.current
                 ORDER BY v.name",
                &[],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(step_version_of).collect()
    }

    async fn step_version(&self, name: &str, version: &str) -> Result<Option<StepVersion>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT name, version, digest, component, manifest, deployed_at, deployed_by FROM step_versions
                 WHERE name = $1 AND version = $2",
                &[&name, &version],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(step_version_of).transpose()
    }

    async fn step_versions(&self, name: Option<&str>) -> Result<Vec<StepVersionInfo>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT v.name, v.version, v.digest, octet_length(v.component)::bigint, v.deployed_at,
                        coalesce(s.current = v.version, false), v.deployed_by
                 FROM step_versions v LEFT JOIN steps s ON s.name = v.name
                 WHERE ($1::text IS NULL OR v.name = $1)
                 ORDER BY v.name, v.deployed_at, v.seq",
                &[&name],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|row| {
                let deployed_at: &str = row.get(4);
                Ok(StepVersionInfo {
                    name: row.get(0),
                    version: row.get(1),
                    digest: row.get(2),
                    size: u64::try_from(row.get::<_, i64>(3)).unwrap_or_default(),
                    deployed_at: parse_time(deployed_at)?,
                    deployed_by: row.get(6),
                    current: row.get(5),
                })
            })
            .collect()
    }

    fn shared(&self) -> bool {
        true
    }

    async fn claim_tasks(&self, owner: &str, limit: u32, lease: Duration) -> Result<Vec<String>, StoreError> {
        let client = self.lease_client().await?;
        let claim = client
            .prepare_cached(
                // Nothing while a host of a newer format serves (`WRITE_FORMAT`): it may have
                // written what this build cannot read. (This query sees it at once; the host
                // itself learns of it at its next registration.)
                concat!(
                    "WITH free AS (
                   SELECT seq, owner AS previous, lease_until AS expired FROM tasks
                   WHERE status = 'running' AND (owner IS NULL OR lease_until < now())
                     AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.format > $4 AND ",
                    live_host!(),
                    ")
                   ORDER BY seq LIMIT $2
                   FOR NO KEY UPDATE SKIP LOCKED)
                 UPDATE tasks SET owner = $1, lease_until = now() + $3::bigint * interval '1 millisecond',
                   revision = CASE WHEN free.previous <> $1 THEN tasks.revision + 1 ELSE tasks.revision END
                 FROM free WHERE tasks.seq = free.seq
                 RETURNING tasks.id, tasks.seq, free.previous, (now() - free.expired)::text"
                ),
            )
            .await
            .map_err(pg)?;
        let format = i32::try_from(super::WRITE_FORMAT).map_err(|e| corrupt("format", e))?;
        let mut rows = client
            .query(&claim, &[&owner, &i64::from(limit), &millis(lease), &format])
            .await
            .map_err(pg)?;
        rows.sort_by_key(|r| r.get::<_, i64>(1));
        for row in &rows {
            if let Some(previous) = row.get::<_, Option<&str>>(2) {
                let id: &str = row.get(0);
                let ago: Option<&str> = row.get(3);
                eprintln!(
                    "whenever: took task {id} over from host {previous} (its lease expired {} ago)",
                    ago.unwrap_or("?")
                );
            }
        }
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn renew_leases(&self, owner: &str, ids: &[String], lease: Duration) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.lease_client().await?;
        let renew = client
            .prepare_cached(
                "UPDATE tasks SET lease_until = now() + $3::bigint * interval '1 millisecond'
                 WHERE owner = $1 AND id = ANY($2) RETURNING id",
            )
            .await
            .map_err(pg)?;
        let rows = client
            .query(&renew, &[&owner, &ids, &millis(lease)])
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn register_host(&self, host: &str, instance: &str, fresh: Duration, format: u32) -> Result<u32, StoreError> {
        let client = self.lease_client().await?;
        let format = i32::try_from(format).map_err(|e| corrupt("format", e))?;
        // The database's clock alone decides what is fresh: the hosts' clocks may disagree. The
        // holder's own lease counts too: it goes on driving until its registration is that old
        // (`Cluster::name_lost`), however short a lease the process asking has. The other hosts
        // are read as they were before the statement (all that matters is theirs).
        let taken = client
            .query_opt(
                concat!(
                    "INSERT INTO hosts (host, instance, seen, lease_ms, format) VALUES ($1, $2, now(), $3, $4)
                 ON CONFLICT (host) DO UPDATE
                   SET instance = excluded.instance, seen = now(), lease_ms = excluded.lease_ms,
                       format = excluded.format
                 WHERE hosts.instance = excluded.instance
                    OR hosts.seen < now() - greatest(hosts.lease_ms, $3) * interval '1 millisecond'
                 RETURNING xmax = 0,
                   (SELECT coalesce(max(h.format), 0) FROM hosts h WHERE h.host <> $1 AND ",
                    live_host!(),
                    ")"
                ),
                &[&host, &instance, &millis(fresh), &format],
            )
            .await
            .map_err(pg)?;
        if let Some(taken) = taken {
            let newest = u32::try_from(taken.get::<_, i32>(1)).unwrap_or(0);
            if taken.get::<_, bool>(0) {
                // A name new to the store: a start (a default `host_id` is new at every start).
                // The names of processes killed without a word are swept now and then here; the
                // registration stands whether the sweep does or not.
                if let Err(e) = client
                    .execute(
                        "DELETE FROM hosts WHERE seen < now() - $1::bigint * interval '1 millisecond'",
                        &[&millis(HOSTS_KEPT)],
                    )
                    .await
                {
                    eprintln!(
                        "whenever: cannot sweep the names of hosts not seen for a day: {}",
                        pg(e)
                    );
                }
            }
            return Ok(newest);
        }
        let ago: Option<i64> = client
            .query_opt(
                "SELECT (extract(epoch FROM now() - seen) * 1000)::bigint FROM hosts WHERE host = $1",
                &[&host],
            )
            .await
            .map_err(pg)?
            .map(|row| row.get(0));
        Err(StoreError::Conflict(format!(
            "host_id {host:?} is in use by another running host (seen {} ms ago); give every host \
             its own host_id",
            ago.unwrap_or_default().max(0)
        )))
    }

    async fn unregister_host(&self, host: &str, instance: &str) -> Result<(), StoreError> {
        let client = self.lease_client().await?;
        client
            .execute(
                "DELETE FROM hosts WHERE host = $1 AND instance = $2",
                &[&host, &instance],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostSeen>, StoreError> {
        let client = self.client().await?;
        // The leases held, counted over the running tasks alone (their partial index).
        let rows = client
            .query(
                concat!(
                    "WITH held AS (
                   SELECT owner, count(*) AS tasks FROM tasks
                   WHERE status = 'running' AND owner IS NOT NULL AND lease_until >= now()
                   GROUP BY owner)
                 SELECT h.host, h.instance,
                   greatest((extract(epoch FROM now() - h.seen) * 1000)::bigint, 0),
                   h.lease_ms, h.format, coalesce(held.tasks, 0), ",
                    live_host!(),
                    "
                 FROM hosts h LEFT JOIN held ON held.owner = h.host || '/' || h.instance
                 ORDER BY h.host"
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        // An odd row (a negative lease written by hand) is shown as 0, as the registration reads
        // it, rather than hiding the cluster from the operator.
        Ok(rows
            .iter()
            .map(|row| HostSeen {
                host_id: row.get(0),
                instance: row.get(1),
                seen_ms_ago: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                lease_ms: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                format: u32::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                tasks: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
                live: row.get(6),
            })
            .collect())
    }

    async fn probe(&self, host: &str, limit: Duration) -> Result<(), StoreError> {
        let (store, host) = (self.clone(), host.to_string());
        // On a task of its own: a caller that gives up does not drop the statement half-way
        // and hand its connection back to the pool while the server still works on it (the next
        // save on that connection would queue behind it).
        self.home
            .spawn(async move {
                let mut client = store.client().await?;
                let tx = client.transaction().await.map_err(pg)?;
                // Ended by the server after `limit`: a probe stuck behind a lock gives its
                // connection back instead of holding it until the lock goes.
                tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", millis(limit)))
                    .await
                    .map_err(pg)?;
                tx.execute(
                    "INSERT INTO probes (host, at) VALUES ($1, $2) ON CONFLICT (host) DO UPDATE SET at = excluded.at",
                    &[&host, &time_text(&Utc::now())],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("postgres: the store's runtime is gone: {e}")))?
    }

    async fn release_task(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let mut client = self.lease_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let released = tx
            .query_opt(
                "UPDATE tasks SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2 RETURNING status",
                &[&id, &owner],
            )
            .await
            .map_err(pg)?;
        if released.is_some_and(|r| r.get::<_, &str>(0) == TaskStatus::Running.as_str()) {
            self.notify(&tx, TASKS).await?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn watch_task(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("UPDATE tasks SET watched = TRUE WHERE id = $1 AND NOT watched", &[&id])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn reevaluated_at(&self) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM marks WHERE name = $1", &[&REEVALUATED])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_reevaluated_at(&self, mark: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO marks (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&REEVALUATED, &mark],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn steps_stamp(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let stamp = client
            .prepare_cached(
                "SELECT count(*) || ':' || coalesce(max(updated_at), '') || ':' ||
                        (SELECT count(*) FROM step_versions) || ':' ||
                        (SELECT count(*) || '/' || coalesce(max(seq), 0) FROM step_changes) FROM steps",
            )
            .await
            .map_err(pg)?;
        Ok(client.query_one(&stamp, &[]).await.map_err(pg)?.get(0))
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.start_listener().subscribe())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::WRITE_FORMAT;
    use crate::store::scratch_schema::ScratchSchema;

    #[test]
    fn notifications_read_as_the_events_they_tell_of() {
        assert!(matches!(event_of("steps"), StoreEvent::StepsChanged));
        assert!(matches!(event_of("tasks"), StoreEvent::TasksAvailable));
        assert!(matches!(event_of("settled t_01"), StoreEvent::TaskSettled(id) if id == "t_01"));
        // A payload this version does not know wakes the claim loop, the cheapest guess.
        assert!(matches!(event_of("something new"), StoreEvent::TasksAvailable));
    }

    #[test]
    fn a_mistyped_url_is_told_from_a_file_path() {
        assert_eq!(mistyped_url("postgres://u@h/db"), None);
        assert_eq!(mistyped_url("orders.db"), None);
        assert_eq!(mistyped_url("postgres.db"), None);
        assert_eq!(mistyped_url("/var/lib/whenever/postgres/orders.db"), None);
        for meant in [
            "postgresql//postgres@127.0.0.1/qaops",
            "postgres:/u@h/db",
            "mysql://u@h/db",
            "postgres@h/db",
        ] {
            assert!(
                mistyped_url(meant).is_some_and(|m| m.contains("is no PostgreSQL URL")),
                "{meant}"
            );
        }
        assert_eq!(
            mistyped_url("postgresql//app:s3cret@db.internal/orders").as_deref(),
            Some(
                "--db postgresql//app:***@db.internal/orders: this is no PostgreSQL URL \
                 (postgres://USER@HOST[:PORT]/DATABASE) nor, as meant, a SQLite file path"
            )
        );
    }

    #[test]
    fn a_hosts_connections_are_shared_out_among_its_pools() {
        assert_eq!(
            Connections::split(Connections::DEFAULT_TOTAL),
            Ok(Connections::default()),
            "the default total gives the default pools"
        );
        let share = |total| {
            let c = Connections::split(total).expect("enough");
            (c.main, c.journal, c.leases)
        };
        assert_eq!(share(4), (1, 1, 1));
        assert_eq!(share(8), (4, 1, 2));
        assert_eq!(share(10), (5, 2, 2));
        for total in 4..200 {
            let (main, journal, leases) = share(total);
            assert_eq!(
                main + journal + leases + 1,
                total as usize,
                "all of {total}, LISTEN's included"
            );
            assert!(main >= journal && journal >= 1 && leases >= 1, "{total}");
        }
        let error = Connections::split(3).expect_err("too few");
        assert!(error.contains("postgres_connections must be at least 4"), "{error}");
    }

    #[test]
    fn a_lost_connection_a_conflict_a_full_disk_or_a_shutdown_is_unavailable() {
        // connection_failure, serialization_failure, deadlock_detected, disk_full,
        // too_many_connections, admin_shutdown, cannot_connect_now.
        for code in ["08006", "40001", "40P01", "53100", "53300", "57P01", "57P03"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        // unique_violation, undefined_table, query_canceled, insufficient_privilege.
        for code in ["23505", "42P01", "57014", "42501"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }

    /// The test server: `$WHENEVER_TEST_POSTGRES`, else the local one.
    pub(crate) fn test_url() -> String {
        std::env::var("WHENEVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A fresh schema on the test server for `test`; `None` (with a message) when no server
    /// answers.
    pub(crate) async fn test_schema(test: &str) -> Option<ScratchSchema> {
        match ScratchSchema::create(&test_url(), &format!("t_{test}")).await {
            Ok(schema) => Some(schema),
            Err(e) => {
                eprintln!("{test}: skipped: {e}");
                None
            }
        }
    }

    /// A process killed without a word leaves its name in `hosts`; a name new to the store
    /// sweeps those not seen for a day, and keeps the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_name_sweeps_the_names_not_seen_for_a_day() {
        let Some(schema) = test_schema("hosts_sweep").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let client = store.client().await.expect("a client");
        client
            .batch_execute(
                "INSERT INTO hosts (host, instance, seen) VALUES
                   ('crashed-last-week', 'p1', now() - interval '7 days'),
                   ('crashed-an-hour-ago', 'p2', now() - interval '1 hour')",
            )
            .await
            .expect("inserted");
        let names = || async {
            let rows = client
                .query("SELECT host FROM hosts ORDER BY host", &[])
                .await
                .expect("listed");
            rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
        };
        let lease = Duration::from_secs(10);
        store
            .register_host("web-1", "p3", lease, WRITE_FORMAT)
            .await
            .expect("registered");
        assert_eq!(names().await, ["crashed-an-hour-ago", "web-1"]);
        // A renewal of a name the store has is no start: it sweeps nothing.
        client
            .batch_execute("UPDATE hosts SET seen = now() - interval '2 days' WHERE host = 'crashed-an-hour-ago'")
            .await
            .expect("aged");
        store
            .register_host("web-1", "p3", lease, WRITE_FORMAT)
            .await
            .expect("renewed");
        assert_eq!(names().await, ["crashed-an-hour-ago", "web-1"]);
        store
            .register_host("web-2", "p4", lease, WRITE_FORMAT)
            .await
            .expect("registered");
        assert_eq!(names().await, ["web-1", "web-2"]);
        drop(client);
        schema.drop_schema().await;
    }

    /// A registration answers the newest format among the other hosts seen within their lease:
    /// its own row, a host not seen for its lease, a host of a build before formats and a host
    /// starting (both 0) do not make it newer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registration_answers_the_newest_format_of_the_other_live_hosts() {
        let Some(schema) = test_schema("host_formats").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let lease = Duration::from_secs(10);
        assert_eq!(
            store
                .register_host("web-1", "p1", lease, WRITE_FORMAT)
                .await
                .expect("registered"),
            0
        );
        let client = store.client().await.expect("client");
        client
            .execute(
                "INSERT INTO hosts (host, instance, seen, lease_ms) VALUES ('old', 'p0', now(), 60000)",
                &[],
            )
            .await
            .expect("inserted");
        // An upgraded host starting (compiling its steps) writes nothing yet: 0.
        store
            .register_host("upgraded", "p2", Duration::from_secs(60), 0)
            .await
            .expect("registered");
        assert_eq!(
            store
                .register_host("web-1", "p1", lease, WRITE_FORMAT)
                .await
                .expect("renewed"),
            0
        );
        let running = super::super::suite::with_a_starting_run(&store, serde_json::json!({"n": 1}), "write-a").await;
        let second = super::super::suite::with_a_starting_run(&store, serde_json::json!({"n": 2}), "write-a").await;
        let claimed = store.claim_tasks("web-1/p1", 1, lease).await.expect("claims");
        assert_eq!(
            claimed,
            std::slice::from_ref(&running.id),
            "claimed while the upgraded host starts"
        );
        // As an operator lists them: by name, each with its format and the leases it holds (a
        // lapsed lease is held by no one), and whether it is live (a host not seen for its
        // lease is gone).
        client
            .batch_execute(
                "INSERT INTO hosts (host, instance, seen, lease_ms) VALUES ('crashed', 'p9', now() - interval '1 hour', 60000)",
            )
            .await
            .expect("a host gone");
        client
            .execute(
                "UPDATE tasks SET owner = 'web-1/p1', lease_until = now() - interval '1 minute' WHERE id = $1",
                &[&second.id],
            )
            .await
            .expect("a lapsed lease");
        let hosts = store.hosts().await.expect("listed");
        let shown: Vec<(&str, u32, u64, bool)> = hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.format, h.tasks, h.live))
            .collect();
        assert_eq!(
            shown,
            [
                ("crashed", 0, 0, false),
                ("old", 0, 0, true),
                ("upgraded", 0, 0, true),
                ("web-1", WRITE_FORMAT, 1, true)
            ]
        );
        store.release_task(&running.id, "web-1/p1").await.expect("released");
        // Then it claims, and registers what it writes.
        store
            .register_host("upgraded", "p2", Duration::from_secs(60), WRITE_FORMAT + 1)
            .await
            .expect("renewed");
        assert_eq!(
            store
                .register_host("web-1", "p1", lease, WRITE_FORMAT)
                .await
                .expect("renewed"),
            WRITE_FORMAT + 1
        );
        let claimed = store.claim_tasks("web-1/p1", 10, lease).await.expect("claims");
        assert!(claimed.is_empty(), "nothing while a newer host serves: {claimed:?}");
        let format: i32 = client
            .query_one("SELECT format FROM hosts WHERE host = 'web-1'", &[])
            .await
            .expect("read")
            .get(0);
        assert_eq!(format as u32, WRITE_FORMAT, "its own build's, recorded");
        // Not seen for its lease: gone, as far as formats go.
        client
            .execute(
                "UPDATE hosts SET seen = now() - interval '2 minutes' WHERE host = 'upgraded'",
                &[],
            )
            .await
            .expect("aged");
        assert_eq!(
            store
                .register_host("web-1", "p1", lease, WRITE_FORMAT)
                .await
                .expect("renewed"),
            0
        );
        let mut claimed = store.claim_tasks("web-1/p1", 10, lease).await.expect("claims");
        claimed.sort();
        let mut both = [running.id, second.id];
        both.sort();
        assert_eq!(claimed, both, "claimable again");
        assert_eq!(
            store
                .register_host("web-2", "p3", lease, WRITE_FORMAT)
                .await
                .expect("registered"),
            WRITE_FORMAT,
            "web-1, of this build"
        );
        drop(client);
        schema.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_opened_from_another_runtime_outlive_it() {
        let Some(schema) = test_schema("home_runtime").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        // Another runtime (as the HTTP API's thread has) takes two clients at once, so that a
        // second connection is opened while it asks, then gives them back and waits.
        let (taken, was_taken) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let asking = store.clone();
        let other = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let first = asking.client().await.expect("a client");
                let second = asking.client().await.expect("a second client");
                drop((first, second));
            });
            taken.send(()).expect("told");
            let _ = stopped.recv();
            // The runtime stops here, with whatever it ran.
        });
        was_taken.recv().expect("the other runtime took its clients");
        // This runtime holds both connections while the other runtime stops.
        let first = store.client().await.expect("a client");
        let second = store.client().await.expect("a second client");
        stop.send(()).expect("stop");
        other.join().expect("the other runtime's thread");
        for client in [&first, &second] {
            let one: i32 = client
                .query_one("SELECT 1", &[])
                .await
                .expect("the connection is open")
                .get(0);
            assert_eq!(one, 1);
        }
    }

    #[tokio::test]
    async fn connector_results_are_journaled_without_waiting_for_the_wal_and_saves_wait_for_it() {
        let Some(schema) = test_schema("journal_async").await else {
            return;
        };
        // The schema comes in the URL's options: the journal's own option must not replace it.
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let setting = |client: deadpool_postgres::Object| async move {
            let row = client
                .query_one("SELECT current_setting('synchronous_commit'), current_schema()", &[])
                .await
                .expect("settings");
            (row.get::<_, String>(0), row.get::<_, String>(1))
        };
        let journal = setting(store.journal.get().await.expect("journal session")).await;
        assert_eq!(journal, ("off".to_string(), schema.name().to_string()));
        let saves = setting(store.client().await.expect("session")).await;
        assert_ne!(saves.0, "off", "saves commit synchronously");
        assert_eq!(saves.1, schema.name());
        schema.drop_schema().await;
    }

    /// How many calls are journaled for task `id`.
    async fn journal_rows(store: &PostgresStore, id: &str) -> i64 {
        let client = store.client().await.expect("client");
        client
            .query_one("SELECT count(*) FROM journal WHERE task_id = $1", &[&id])
            .await
            .expect("counted")
            .get(0)
    }

    /// A call journaled for a task that no longer runs (a host that lost its lease, still
    /// driving it) is not kept: nothing would ever read or delete it.
    #[tokio::test]
    async fn a_call_journaled_for_a_task_that_no_longer_runs_is_not_kept() {
        use super::super::suite::{call, with_a_starting_run};
        let Some(schema) = test_schema("journal_settled").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let running = with_a_starting_run(&store, serde_json::json!({"n": 1}), "write-a").await;
        let mut settled = with_a_starting_run(&store, serde_json::json!({"n": 2}), "write-a").await;
        settled.status = TaskStatus::Completed;
        store.save_task(TaskSave::whole(&settled, 2)).await.expect("settled");
        for task in [&running, &settled] {
            store.journal_call(&task.id, 0, 0, &call(1)).await.expect("journaled");
        }
        assert_eq!(journal_rows(&store, &running.id).await, 1, "kept while the task runs");
        assert_eq!(
            journal_rows(&store, &settled.id).await,
            0,
            "not kept for a completed task"
        );
        schema.drop_schema().await;
    }

    /// A call journaled by a host that lost its lease, while other hosts complete and delete the
    /// task, goes with the task: the deletion waits for the insert's key lock, then takes its
    /// row. (Before the foreign key the deletion went first, and the row was kept for ever.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_journaled_as_its_task_is_deleted_goes_with_the_task() {
        use super::super::suite::{call, with_a_starting_run};
        let Some(schema) = test_schema("journal_deleted").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let mut task = with_a_starting_run(&store, serde_json::json!({"n": 1}), "write-a").await;
        // The stale host's insert, under way: as far as it can see, the task runs.
        let mut stale = store.client().await.expect("client");
        let insert = stale.transaction().await.expect("begun");
        let record = to_json(&call(1)).expect("record");
        let inserted = insert
            .execute(JOURNAL_CALL, &[&task.id, &0i64, &0i64, &record])
            .await
            .expect("journaled");
        assert_eq!(inserted, 1);
        // Another host completes the task meanwhile: a save takes no key lock, so it does not wait.
        task.status = TaskStatus::Completed;
        tokio::time::timeout(Duration::from_secs(10), store.save_task(TaskSave::whole(&task, 2)))
            .await
            .expect("the save does not wait for the insert")
            .expect("saved");
        // And a client deletes it: that waits for the insert to end.
        let deleting = tokio::spawn({
            let (store, id) = (store.clone(), task.id.clone());
            async move { store.delete_task(&id, None).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!deleting.is_finished(), "the deletion waits for the insert");
        insert.commit().await.expect("committed");
        deleting.await.expect("joined").expect("deleted");
        assert_eq!(journal_rows(&store, &task.id).await, 0, "the call went with its task");
        drop(stale);
        schema.drop_schema().await;
    }

    /// A task deleted after a journal insert looked at it but before the insert's key check (a
    /// trigger holds the insert in between) keeps nothing, and the call is no error: there is no
    /// task to keep its result for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_journaled_for_a_task_deleted_under_it_keeps_nothing_and_is_no_error() {
        use super::super::suite::{call, with_a_starting_run};
        let Some(schema) = test_schema("journal_key_check").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let mut task = with_a_starting_run(&store, serde_json::json!({"n": 1}), "write-a").await;
        const HELD: i64 = 0x006a_6f75_726e_616c; // "journal"
        let holder = store.client().await.expect("client");
        holder
            .batch_execute(&format!(
                "CREATE FUNCTION held_insert() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN PERFORM pg_advisory_xact_lock({HELD}); RETURN NEW; END $$;
                 CREATE TRIGGER held_insert BEFORE INSERT ON journal
                   FOR EACH ROW EXECUTE FUNCTION held_insert();
                 SELECT pg_advisory_lock({HELD});"
            ))
            .await
            .expect("the insert held");
        // The insert looks at the task (it runs) and waits in the trigger, before its key check.
        let journaling = tokio::spawn({
            let (store, id) = (store.clone(), task.id.clone());
            async move { store.journal_call(&id, 0, 0, &call(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!journaling.is_finished(), "the insert waits in the trigger");
        task.status = TaskStatus::Completed;
        store.save_task(TaskSave::whole(&task, 2)).await.expect("saved");
        store.delete_task(&task.id, None).await.expect("deleted");
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&HELD])
            .await
            .expect("released");
        journaling.await.expect("joined").expect("no error: the task is gone");
        assert_eq!(journal_rows(&store, &task.id).await, 0);
        drop(holder);
        schema.drop_schema().await;
    }

    #[tokio::test]
    async fn store_suite_passes_on_postgres() {
        let Some(schema) = test_schema("store_suite").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        super::super::suite::run_all(&store).await;
        // Migrations are recorded and applying them again changes nothing.
        let again = PostgresStore::connect(schema.url()).await.expect("connects again");
        let client = again.client().await.expect("client");
        let version: i32 = client
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .expect("v")
            .get(0);
        assert_eq!(version as usize, MIGRATIONS.len());
        schema.drop_schema().await;
    }

    #[tokio::test]
    async fn notifications_reach_listeners_of_the_same_schema() {
        let Some(schema) = test_schema("notify").await else {
            return;
        };
        let a = PostgresStore::connect(schema.url()).await.expect("connects");
        let b = PostgresStore::connect(schema.url()).await.expect("connects");
        let mut events = b.events().expect("shared");
        // Once it listens, what may have changed before is announced: steps, then tasks.
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("an event in time")
                .expect("an event")
        };
        assert_eq!(next().await, StoreEvent::StepsChanged);
        assert_eq!(next().await, StoreEvent::TasksAvailable);
        // Then what another host does is heard.
        a.create_task(&Task::new(serde_json::json!({}))).await.expect("created");
        assert_eq!(next().await, StoreEvent::TasksAvailable);
        let version = StepVersion {
            name: "s".into(),
            version: "v1".into(),
            digest: "d".into(),
            component: vec![1],
            manifest: StepManifest::default(),
            deployed_at: Utc::now(),
            deployed_by: None,
        };
        a.put_step_version(&version, true).await.expect("stored");
        let steps = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(StoreEvent::StepsChanged) = events.recv().await {
                    return;
                }
            }
        })
        .await;
        assert!(steps.is_ok(), "a deploy is heard as StepsChanged");
        schema.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claimers_in_small_batches_never_share_a_task() {
        let Some(schema) = test_schema("claims").await else {
            return;
        };
        let store = PostgresStore::connect(schema.url()).await.expect("connects");
        let created = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut claimers = tokio::task::JoinSet::new();
        for c in 0..6 {
            let (store, created) = (store.clone(), created.clone());
            claimers.spawn(async move {
                let owner = format!("h{c}");
                let mut claimed = Vec::new();
                // Claims until every task is created and a few claims in a row find none (a
                // slow machine may create them slower than the claimers poll).
                let mut idle = 0;
                while idle < 20 {
                    let done = created.load(std::sync::atomic::Ordering::SeqCst);
                    let got = store
                        .claim_tasks(&owner, 3, Duration::from_secs(60))
                        .await
                        .expect("claims");
                    if got.is_empty() {
                        idle += usize::from(done);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        idle = 0;
                    }
                    claimed.extend(got);
                }
                claimed
            });
        }
        // Tasks arrive while the claimers run, as webhooks would deliver them.
        for i in 0..300 {
            store
                .create_task(&Task::new(serde_json::json!({ "i": i })))
                .await
                .expect("created");
        }
        created.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut seen = std::collections::HashSet::new();
        while let Some(claimed) = claimers.join_next().await {
            for id in claimed.expect("claimer") {
                assert!(seen.insert(id.clone()), "task {id} claimed twice");
            }
        }
        assert_eq!(seen.len(), 300, "every task claimed once");
        schema.drop_schema().await;
    }

    #[test]
    fn urls_are_recognized_and_redacted() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("whenever.db"));
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
