//! What this build writes to a store, rendered as text and compared with `written_format.txt`,
//! the record of what builds of this [`WRITE_FORMAT`] write. A change to a record kind, a
//! field, a variant or the schema fails the test until the two are made to agree: raise
//! [`WRITE_FORMAT`] if a build before the change cannot read what it writes (a new variant, a
//! field it would drop on saving the record back, a manifest field, which older builds refuse),
//! then record the new text. A field, variant or kind added here fails to compile until its
//! sample is filled in. Each record is shown full (every field, every flag set) and as short as
//! it gets (what a writer may leave out). What no rendering shows is a new *meaning* of what is
//! written in an unchanged shape, and what the steps' WIT world asks of a host: those too need
//! the format raised, by whoever makes them.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::json;
use whenever_connectors::ErrorKind;

use super::rows::{TaskRow, parse_status, step_change_kind, time_text};
use super::{StepChangeKind, WRITE_FORMAT};
use crate::request_key::RequestKey;
use crate::runtime::{
    CallError, ConnectorCallRecord, HttpGrants, JsonText, LogLevel, LogLine, RunError, RunErrorKind, StepLimits,
    StepManifest,
};
use crate::scheduler::merge::Change;
use crate::task::{Conflict, RunOutcomeRecord, RunRecord, StepProgress, Task, TaskStatus};

/// The record of what builds of this [`WRITE_FORMAT`] write.
const RECORDED: &str = include_str!("written_format.txt");

/// Every value of a field-less enum, checked by an exhaustive `match`: a new variant fails to
/// compile here until it is listed.
macro_rules! every {
    ($ty:ident: $($variant:ident),+ $(,)?) => {{
        let listed = |value: &$ty| match value {
            $($ty::$variant)|+ => (),
        };
        let all = [$($ty::$variant),+];
        all.iter().for_each(listed);
        all
    }};
}

/// One line: `what: value as the store writes it`.
fn line(out: &mut String, what: &str, value: &impl serde::Serialize) {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("(cannot encode: {e})"));
    let _ = writeln!(out, "{what}: {text}");
}

/// A call record whose result is an answer, or an error.
fn call(result: Result<JsonText, CallError>, replayed: bool) -> ConnectorCallRecord {
    ConnectorCallRecord {
        connector: "stripe".into(),
        method: "charge".into(),
        args: JsonText::of(&json!({"amount": 4200, "currency": "eur"})),
        result,
        idempotency_key: "t_1:payment:1:0".into(),
        duration_us: 1500,
        replayed,
    }
}

/// What this build writes, every record kind with every field filled in.
fn written() -> String {
    let at: DateTime<Utc> = DateTime::from_timestamp(1_796_000_000, 123_456_789).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "WRITE_FORMAT {WRITE_FORMAT}");
    let _ = writeln!(out, "SQLite migrations {}", super::sqlite::MIGRATIONS.len());
    let _ = writeln!(out, "PostgreSQL migrations {}", super::postgres::MIGRATIONS.len());
    let statuses = every!(TaskStatus: Running, Completed, Waiting, Failed);
    for status in statuses {
        assert_eq!(parse_status(status.as_str()).ok(), Some(status), "read back as written");
    }
    let _ = writeln!(
        out,
        "task status: {}",
        statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    );
    let kinds = every!(StepChangeKind: Deployed, RolledBack, Removed);
    for kind in kinds {
        assert_eq!(step_change_kind(kind.as_str()).ok(), Some(kind), "read back as written");
    }
    let _ = writeln!(
        out,
        "step change: {}",
        kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" ")
    );
    let key = RequestKey {
        scope: "hook:orders".into(),
        key: "delivery-7".into(),
        body_sha256: "ab".repeat(32),
    };
    line(&mut out, "idempotency key", &key);
    let progress = BTreeMap::from([(
        "fraud-check".to_string(),
        StepProgress {
            last_projection: Some("9f86d081".into()),
            runs: 2,
            redo: true,
            last_failed: true,
        },
    )]);
    line(&mut out, "progress", &progress);
    line(
        &mut out,
        "progress, short",
        &BTreeMap::from([("fraud-check".to_string(), StepProgress::default())]),
    );
    let error_kinds = every!(RunErrorKind:
        StepError, Deadline, Memory, Panic, StackOverflow, Trap, InvalidOutput, OutputTooLarge,
        TooManyConnectorCalls, Instantiate, Journal,
    );
    line(&mut out, "run error kinds", &error_kinds);
    let call_error_kinds = every!(ErrorKind: NotGranted, Unknown, InvalidArgs, Failed, Unavailable, Timeout);
    line(&mut out, "call error kinds", &call_error_kinds);
    let levels = every!(LogLevel: Trace, Debug, Info, Warn, Error, Stdout, Stderr);
    line(&mut out, "log levels", &levels);
    let answered = call(Ok(JsonText::of(&json!({"id": "ch_1", "status": "succeeded"}))), false);
    let failed = call(
        Err(CallError {
            kind: ErrorKind::Failed,
            message: "card declined".into(),
        }),
        true,
    );
    line(&mut out, "journal", &answered);
    line(&mut out, "journal", &failed);
    // Arguments that were not JSON, kept as a string.
    let unparsed = ConnectorCallRecord {
        args: JsonText::string("amount=4200"),
        ..answered.clone()
    };
    line(&mut out, "journal, arguments not JSON", &unparsed);
    let outcomes = [
        RunOutcomeRecord::Ok,
        RunOutcomeRecord::Error(RunError {
            kind: RunErrorKind::Deadline,
            message: "the run exceeded its deadline".into(),
        }),
    ];
    let changes = vec![
        Change::Set {
            path: "/fraudApproved".into(),
            value: json!(true),
        },
        Change::Remove { path: "/hold".into() },
    ];
    for change in &changes {
        // A new kind of change fails to compile here, until it has a sample above.
        match change {
            Change::Set { .. } | Change::Remove { .. } => {}
        }
    }
    let mut runs = Vec::new();
    for outcome in outcomes {
        match &outcome {
            RunOutcomeRecord::Ok | RunOutcomeRecord::Error(_) => {}
        }
        let run = RunRecord {
            id: 3,
            step: "fraud-check".into(),
            version: "v-2a".into(),
            number: 2,
            started_at: at,
            ended_at: Some(at),
            restarted_at: Some(at),
            host: Some("web-1".into()),
            duration_ms: 12.5,
            outcome: Some(outcome),
            logs: vec![LogLine {
                level: LogLevel::Info,
                message: "checked".into(),
            }],
            logs_truncated: true,
            changes: changes.clone(),
            conflicts: vec![Conflict {
                path: "/route".into(),
                steps: vec!["route-a".into(), "route-b".into()],
                winner: "route-b".into(),
            }],
            connector_calls: vec![answered.clone(), failed.clone()],
        };
        line(&mut out, "run", &run);
        runs.push(run);
    }
    // In flight, nothing logged or changed yet: what a writer leaves out.
    let starting = RunRecord {
        started_at: at,
        ..RunRecord::starting(0, "tier-analysis", "v-1", 1)
    };
    line(&mut out, "run, starting", &starting);
    let task = Task {
        id: "t_0001".into(),
        status: TaskStatus::Waiting,
        message: Some("waits for fraudApproved".into()),
        name: Some("order 7".into()),
        tags: vec!["vip".into(), "express".into()],
        data: json!({"order": {"total": 42}}),
        runs,
        progress,
        created_at: at,
        idempotency: Some(key),
    };
    match TaskRow::of(&task, None, &at) {
        Ok(TaskRow {
            id,
            status,
            name,
            tags,
            message,
            data,
            progress,
            created_at,
            updated_at,
        }) => {
            let _ = writeln!(
                out,
                "task row: id {id}; status {status}; name {name:?}; tags {tags}; message {message:?}; \
                 data {data}; progress {progress}; created_at {created_at}; updated_at {updated_at}"
            );
        }
        Err(e) => {
            let _ = writeln!(out, "task row: (cannot encode: {e})");
        }
    }
    // No name, message, tags, progress or key: what a new task's row holds.
    let short = Task {
        created_at: at,
        ..Task::with_id("t_0002".into(), json!({}))
    };
    match TaskRow::of(&short, None, &at) {
        Ok(row) => {
            let _ = writeln!(
                out,
                "task row, short: status {}; name {:?}; tags {}; message {:?}; data {}; progress {}",
                row.status, row.name, row.tags, row.message, row.data, row.progress
            );
        }
        Err(e) => {
            let _ = writeln!(out, "task row, short: (cannot encode: {e})");
        }
    }
    let _ = writeln!(out, "time: {}", time_text(&at));
    let manifest = StepManifest {
        connectors: vec!["stripe".into()],
        http: HttpGrants {
            hosts: vec!["*.internal".into()],
        },
        limits: StepLimits {
            timeout_ms: 1000,
            memory_mib: 64,
            max_output_bytes: 1 << 20,
            max_connector_calls: 32,
            max_log_bytes: 65536,
        },
        description: Some("charges the order".into()),
        reads: Some(vec!["order.total".into()]),
    };
    line(&mut out, "step manifest", &manifest);
    line(&mut out, "step manifest, short", &StepManifest::default());
    out
}

#[test]
fn what_this_build_writes_is_what_its_write_format_records() {
    let now = written();
    let differs = now
        .lines()
        .zip(RECORDED.lines().chain(std::iter::repeat("(nothing)")))
        .find(|(now, recorded)| now != recorded);
    let differs = match differs {
        Some((now, recorded)) => format!("it writes\n  {now}\nwhere the file has\n  {recorded}"),
        None => "the file has more lines".to_string(),
    };
    assert!(
        now == RECORDED,
        "what this build writes to a store is not what host/src/store/written_format.txt \
         records for WRITE_FORMAT {WRITE_FORMAT}: {differs}\nIf a build before this change could \
         not read what it writes, raise WRITE_FORMAT (store/mod.rs); then write this into the \
         file:\n{now}"
    );
}
