//! What SQLite writes per RetailMax order under two row layouts, as a basis for choosing the
//! store's next format. Not the real store: a model of its writes with the real store's row sizes.
//!
//! - **rows** (today's layout): the task row (data + progress, growing from 1.8 to 3.3 KB) is
//!   rewritten at each of the order's seven saves; each run record is written when it starts and
//!   again when it finishes; each of the eight connector results is journaled, then deleted when
//!   its run's record is saved.
//! - **rows keyed by task sequence**: the same rows, but the runs and the journal keyed by the
//!   task's sequence number (increasing) instead of its random id, so their index entries cluster.
//! - **log**: each save appends one record (the changes merged since the last save and the run
//!   records it names), each journal entry is appended to the same table, and the task row is
//!   written only when the task is created and when it settles.
//! - **log with whole records**: the log, each save's record carrying the whole data and progress
//!   (what the SQLite store does since schema 3: no replay of changes needed to read a task).
//! - **log, ids by creation time**: the log, with task ids that sort by when they were made (as
//!   `whenever::task::new_task_id` makes them since 2026-12-05) instead of random ones, so a
//!   commit's new ids go to the end of the id index rather than each to a page of its own.
//!
//! 3,000 orders, 512 in flight, their writes interleaved at random and committed in groups of 40
//! (what the service's writer sees under load), WAL mode with checkpoints off so that the WAL's
//! size is exactly what was written. `cargo bench -p whenever --bench store_layout`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, params};

const ORDERS: usize = 3_000;
const IN_FLIGHT: usize = 512;
const GROUP: usize = 40;
/// The order's saves before it settles (RetailMax's waves).
const SAVES: usize = 7;

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Rows,
    /// Today's rows, with runs and journal keyed by the task's sequence number instead of its id.
    SeqRows,
    Log,
    /// The log, with each commit record carrying the whole data and progress instead of changes.
    LogWhole,
}

/// How task ids are made.
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    Random,
    /// The creation time first, as `new_task_id` does.
    ByTime,
}

#[derive(Clone, Copy)]
enum Write {
    Create,
    Save(usize),
    Journal(usize),
    Settle,
}

/// A JSON text of about `n` bytes.
fn text(n: usize) -> String {
    format!("{{\"x\":\"{}\"}}", "y".repeat(n.saturating_sub(10)))
}

/// A small deterministic generator (xorshift), so both layouts see the same interleaving.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn open(path: &Path, layout: Layout) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA synchronous = FULL;")
        .expect("pragmas");
    let tables = match layout {
        Layout::Rows => {
            "CREATE TABLE runs (task_id TEXT NOT NULL, run_id INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (task_id, run_id));
             CREATE TABLE journal (task_id TEXT NOT NULL, run_id INTEGER NOT NULL, i INTEGER NOT NULL, record TEXT NOT NULL,
                                   PRIMARY KEY (task_id, run_id, i));"
        }
        Layout::SeqRows => {
            "CREATE TABLE runs (task_seq INTEGER NOT NULL, run_id INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (task_seq, run_id));
             CREATE TABLE journal (task_seq INTEGER NOT NULL, run_id INTEGER NOT NULL, i INTEGER NOT NULL, record TEXT NOT NULL,
                                   PRIMARY KEY (task_seq, run_id, i));"
        }
        Layout::Log | Layout::LogWhole => {
            "CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_seq INTEGER NOT NULL, kind TEXT NOT NULL, record TEXT NOT NULL);"
        }
    };
    conn.execute_batch(&format!(
        "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, data TEXT NOT NULL,
                             progress TEXT NOT NULL, revision INTEGER NOT NULL);
         {tables}"
    ))
    .expect("schema");
    conn
}

fn write(conn: &Connection, layout: Layout, task: &str, seqs: &mut HashMap<String, i64>, op: Write) {
    // Sizes as the real store writes them for RetailMax: data grows ~220 bytes a wave, progress
    // ~100 bytes a step, a started run's record ~300 bytes, a finished one ~1.3 KB, a journal
    // entry ~500 bytes.
    let data = |wave: usize| text(1_700 + 220 * wave);
    let progress = |wave: usize| text(100 * (wave + 1));
    let result = match (layout, op) {
        (_, Write::Create) => conn
            .execute(
                "INSERT INTO tasks (id, data, progress, revision) VALUES (?1, ?2, ?3, 1)",
                params![task, data(0), text(20)],
            )
            .map(|_| {
                seqs.insert(task.to_string(), conn.last_insert_rowid());
            }),
        (Layout::Rows | Layout::SeqRows, Write::Save(_) | Write::Settle) => {
            let wave = if let Write::Save(w) = op { w } else { SAVES };
            let key = if layout == Layout::Rows {
                task.to_string()
            } else {
                seqs[task].to_string()
            };
            let mut done = conn.execute(
                "UPDATE tasks SET data = ?2, progress = ?3, revision = revision + 1 WHERE id = ?1",
                params![task, data(wave), progress(wave)],
            );
            if wave > 0 {
                done = done
                    .and_then(|_| {
                        conn.execute(
                            "INSERT OR REPLACE INTO runs VALUES (?1, ?2, ?3)",
                            params![key, wave - 1, text(1_300)],
                        )
                    })
                    .and_then(|_| {
                        conn.execute(
                            if layout == Layout::Rows {
                                "DELETE FROM journal WHERE task_id = ?1 AND run_id = ?2"
                            } else {
                                "DELETE FROM journal WHERE task_seq = ?1 AND run_id = ?2"
                            },
                            params![key, wave - 1],
                        )
                    });
            }
            if wave < SAVES {
                done = done.and_then(|_| {
                    conn.execute(
                        "INSERT OR REPLACE INTO runs VALUES (?1, ?2, ?3)",
                        params![key, wave, text(300)],
                    )
                });
            }
            done.map(|_| ())
        }
        (Layout::Rows | Layout::SeqRows, Write::Journal(run)) => conn
            .execute(
                "INSERT INTO journal VALUES (?1, ?2, 0, ?3)",
                params![
                    if layout == Layout::Rows {
                        task.to_string()
                    } else {
                        seqs[task].to_string()
                    },
                    run,
                    text(500)
                ],
            )
            .map(|_| ()),
        (Layout::Log, Write::Save(_)) => conn
            .execute(
                "INSERT INTO log (task_seq, kind, record) VALUES (?1, 'commit', ?2)",
                params![seqs[task], text(1_300 + 300 + 250)],
            )
            .map(|_| ()),
        (Layout::LogWhole, Write::Save(wave)) => conn
            .execute(
                "INSERT INTO log (task_seq, kind, record) VALUES (?1, 'commit', ?2)",
                params![seqs[task], text(1_300 + 300 + 1_700 + 220 * wave + 100 * (wave + 1))],
            )
            .map(|_| ()),
        (Layout::Log | Layout::LogWhole, Write::Settle) => conn
            .execute(
                "INSERT INTO log (task_seq, kind, record) VALUES (?1, 'commit', ?2)",
                params![seqs[task], text(1_300 + 250)],
            )
            .and_then(|_| {
                conn.execute(
                    "UPDATE tasks SET data = ?2, progress = ?3, revision = revision + 1 WHERE id = ?1",
                    params![task, data(SAVES), progress(SAVES)],
                )
            })
            .map(|_| ()),
        (Layout::Log | Layout::LogWhole, Write::Journal(_)) => conn
            .execute(
                "INSERT INTO log (task_seq, kind, record) VALUES (?1, 'journal', ?2)",
                params![seqs[task], text(500)],
            )
            .map(|_| ()),
    };
    result.expect("write");
}

/// One order's writes in order: created, then each wave's save followed by its run's journal
/// entry, then settled.
fn order_writes() -> Vec<Write> {
    let mut writes = vec![Write::Create];
    for wave in 0..SAVES {
        writes.push(Write::Save(wave));
        writes.push(Write::Journal(wave));
    }
    writes.push(Write::Journal(SAVES));
    writes.push(Write::Settle);
    writes
}

/// Runs the model; returns (bytes of WAL per order, commits, seconds).
fn measure(dir: &Path, layout: Layout, ids: Ids) -> (f64, usize, f64) {
    let name = match layout {
        Layout::Rows => "rows",
        Layout::SeqRows => "seq-rows",
        Layout::Log => "log",
        Layout::LogWhole => "log-whole",
    };
    let order = if ids == Ids::ByTime { "-by-time" } else { "" };
    let path = dir.join(format!("{name}{order}.db"));
    let conn = open(&path, layout);
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut seqs = HashMap::new();
    let mut active: Vec<(String, Vec<Write>)> = Vec::new();
    let mut started = 0;
    let mut pending = 0;
    let mut commits = 0;
    let clock = Instant::now();
    conn.execute_batch("BEGIN").expect("begin");
    loop {
        while active.len() < IN_FLIGHT && started < ORDERS {
            let id = match ids {
                Ids::Random => format!("t_{:016x}", random.0 ^ started as u64),
                Ids::ByTime => format!("t_{started:012x}{:012x}", random.0 & 0xffff_ffff_ffff),
            };
            active.push((id, order_writes()));
            started += 1;
        }
        if active.is_empty() {
            break;
        }
        let index = random.below(active.len());
        let (task, writes) = &mut active[index];
        let op = writes.remove(0);
        write(&conn, layout, task, &mut seqs, op);
        if writes.is_empty() {
            active.swap_remove(index);
        }
        pending += 1;
        if pending == GROUP {
            conn.execute_batch("COMMIT; BEGIN").expect("commit");
            commits += 1;
            pending = 0;
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    commits += 1;
    let seconds = clock.elapsed().as_secs_f64();
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .expect("the WAL file");
    (wal as f64 / ORDERS as f64, commits, seconds)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "{ORDERS} RetailMax-shaped orders, {IN_FLIGHT} in flight, commits of {GROUP} writes, WAL with checkpoints off"
    );
    println!("| layout | WAL KB per order | commits | time s |");
    println!("|---|---:|---:|---:|");
    for (layout, ids, name) in [
        (Layout::Rows, Ids::Random, "rows (task row rewritten at every save)"),
        (
            Layout::SeqRows,
            Ids::Random,
            "rows keyed by task sequence (runs and journal)",
        ),
        (Layout::Log, Ids::Random, "log (commit and journal records appended)"),
        (Layout::Log, Ids::ByTime, "log, task ids by creation time"),
        (
            Layout::LogWhole,
            Ids::Random,
            "log, each commit record with the whole data and progress",
        ),
    ] {
        let (per_order, commits, seconds) = measure(dir.path(), layout, ids);
        println!("| {name} | {:.1} | {commits} | {seconds:.2} |", per_order / 1024.0);
    }
}
