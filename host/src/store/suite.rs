//! The behaviour every [`Store`] must have, as one generic suite: the SQLite tests run it, and a
//! PostgreSQL backend runs the same functions.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{StepChangeKind, StepVersion, Store, StoreError, StoreEvent, TaskQuery, TaskSave, WRITE_FORMAT};
use crate::request_key::RequestKey;
use crate::runtime::{CallError, ConnectorCallRecord, JsonText, StepManifest};
use crate::task::{RunOutcomeRecord, RunRecord, Task, TaskStatus};

/// Runs every check of the suite on `store` (which should be empty).
pub(crate) async fn run_all<S: Store>(store: &S) {
    tasks_round_trip(store).await;
    saves_are_compare_and_swap(store).await;
    a_task_reads_back_last_written_when_its_last_save_says(store).await;
    interrupted_runs_keep_input_and_journal(store).await;
    a_rewritten_unfinished_run_keeps_its_input(store).await;
    saves_naming_their_applied_runs_read_back_the_same_data(store).await;
    a_task_created_with_its_first_wave_starting_resumes_it(store).await;
    listing_filters_and_pages(store).await;
    step_versions_and_current(store).await;
    leases_are_exclusive_expire_and_end_when_settled(store).await;
    settled_tasks_are_deleted_with_their_history_and_running_ones_never(store).await;
    a_task_keeps_the_key_of_its_request_and_its_id_takes_one_task(store).await;
    a_whole_save_keeps_the_history_entries_it_names(store).await;
    probes_write_again_and_again_and_touch_no_task(store).await;
    a_host_name_is_one_process_s_while_that_process_is_seen(store).await;
    a_watched_task_s_settle_is_announced_to_every_host(store).await;
    the_re_evaluation_mark_keeps_the_last_one_set(store).await;
}

/// The mark a full re-evaluation leaves ([`Store::reevaluated_at`]): none at first, then the
/// last one set.
async fn the_re_evaluation_mark_keeps_the_last_one_set<S: Store>(store: &S) {
    assert_eq!(store.reevaluated_at().await.expect("read"), None);
    let (first, then) = ("rules 1; a@0123456789ab", "rules 1; a@0123456789ab, b@ba9876543210");
    store.set_reevaluated_at(first).await.expect("set");
    store.set_reevaluated_at(then).await.expect("set again");
    assert_eq!(store.reevaluated_at().await.expect("read").as_deref(), Some(then));
}

/// A watched task settled by one host is announced to all (`StoreEvent::TaskSettled`): a client
/// waits for it on another. One not watched is not: notifying transactions commit one at a time.
/// A store without events has no other host to tell.
async fn a_watched_task_s_settle_is_announced_to_every_host<S: Store>(store: &S) {
    use tokio::sync::broadcast::error::RecvError;
    let Some(mut events) = store.events() else {
        return;
    };
    async fn settle<S: Store>(store: &S, task: &mut Task) {
        task.status = TaskStatus::Waiting;
        store.save_task(TaskSave::whole(task, 1)).await.expect("saved");
    }
    // The listener may still be connecting: a settle before it listens is heard by no one, so
    // settle another pair until one is heard (each waited for 2 s). Notifications come in
    // commit order: the unwatched task's, were there one, would come first.
    for _ in 0..15 {
        let mut unwatched = Task::new(json!({"watched": false}));
        let mut watched = Task::new(json!({"watched": true}));
        store.create_task(&unwatched).await.expect("created");
        store.create_task(&watched).await.expect("created");
        store.watch_task(&watched.id).await.expect("watched");
        store.watch_task(&watched.id).await.expect("watched again");
        settle(store, &mut unwatched).await;
        settle(store, &mut watched).await;
        let heard = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match events.recv().await {
                    Ok(StoreEvent::TaskSettled(id)) => return Some(id),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(id)) = heard {
            assert_eq!(id, watched.id, "only the watched task's settle is announced");
            return;
        }
    }
    panic!("no settle was announced in 30 s");
}

/// Two processes given one `host_id` would each take the other's tasks for their own: a shared
/// store registers each name to one process, until that process stops or is not seen for a
/// while (it crashed, and a new process of the same name starts). A store of one host's has
/// nothing to register.
async fn a_host_name_is_one_process_s_while_that_process_is_seen<S: Store>(store: &S) {
    const LONG: Duration = Duration::from_secs(60);
    let host = format!("h-{}", crate::task::new_task_id());
    store
        .register_host(&host, "p1", LONG, WRITE_FORMAT)
        .await
        .expect("the first process registers");
    store
        .register_host(&host, "p1", LONG, WRITE_FORMAT)
        .await
        .expect("and again");
    let refused = store.register_host(&host, "p2", LONG, WRITE_FORMAT).await;
    if !store.shared() {
        assert!(refused.is_ok(), "{refused:?}");
        return;
    }
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains(&host) && m.contains("ms ago")),
        "{refused:?}"
    );
    // Not seen for longer than the new process's lease, but within the holder's own: the
    // holder drives on until its registration is that old, so the name is not free.
    let short = Duration::from_millis(30);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let refused = store.register_host(&host, "p2", short, WRITE_FORMAT).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "p1's lease is a minute: {refused:?}"
    );
    // Not seen for longer than either lease: the new process takes the name over.
    store
        .register_host(&host, "p1", short, WRITE_FORMAT)
        .await
        .expect("renewed, now with a short lease");
    tokio::time::sleep(Duration::from_millis(60)).await;
    store
        .register_host(&host, "p2", short, WRITE_FORMAT)
        .await
        .expect("p1 was not seen for 30 ms");
    let lost = store.register_host(&host, "p1", LONG, WRITE_FORMAT).await;
    assert!(
        matches!(lost, Err(StoreError::Conflict(_))),
        "p1 lost the name: {lost:?}"
    );
    store.unregister_host(&host, "p1").await.expect("nothing to end");
    assert!(
        store.register_host(&host, "p3", LONG, WRITE_FORMAT).await.is_err(),
        "p2 holds it still"
    );
    store.unregister_host(&host, "p2").await.expect("ended");
    store
        .register_host(&host, "p3", LONG, WRITE_FORMAT)
        .await
        .expect("free once p2 stopped");
    store.unregister_host(&host, "p3").await.expect("ended");
}

/// A probe is a write each host makes as often as it is asked whether it is ready: the same
/// host's row is written over (no key conflict), several hosts have theirs, and no task changes.
async fn probes_write_again_and_again_and_touch_no_task<S: Store>(store: &S) {
    let before = store.count_tasks().await.expect("counted");
    for host in ["host-a", "host-a", "host-b", "host-a"] {
        store
            .probe(host, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("probe of {host}: {e}"));
    }
    assert_eq!(store.count_tasks().await.expect("counted"), before);
}

/// A person's patch saves the whole data and appends an entry to the history
/// ([`RunRecord::append_intervention`]): the entry reads back after the runs before it, finished,
/// and is no interrupted run to re-run.
async fn a_whole_save_keeps_the_history_entries_it_names<S: Store>(store: &S) {
    let mut task = Task::new(json!({"order": 1}));
    task.runs.push(run_record(0, "write-a", true));
    task.status = TaskStatus::Waiting;
    let revision = store.create_task(&task).await.expect("created");
    let before = task.data.clone();
    task.data = json!({"order": 1, "approved": true});
    let changes = crate::scheduler::merge::diff(&before, &task.data);
    RunRecord::append_intervention(
        &mut task,
        crate::task::PATCH_ENTRY,
        Some("ops"),
        "patched".into(),
        changes,
    );
    task.status = TaskStatus::Running;
    let appended = [1];
    let revision = store
        .save_task(TaskSave {
            runs: &appended,
            ..TaskSave::whole(&task, revision)
        })
        .await
        .expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.revision, revision);
    assert_eq!(stored.task, task, "the entry and the data read back");
    assert_eq!(stored.task.runs[1].logs[0].message, "patched, by the token ops");
    assert!(
        store.interrupted_runs(&task.id).await.expect("read").is_empty(),
        "a finished entry is nothing to re-run"
    );
}

pub(crate) fn run_record(id: u64, step: &str, finished: bool) -> RunRecord {
    let mut record = RunRecord::starting(id, step, "v1", 1);
    record.duration_ms = 1.5;
    if finished {
        record.ended_at = Some(Utc::now());
        record.outcome = Some(RunOutcomeRecord::Ok);
    }
    record
}

/// A new task with `data`, created and saved (revision 2) with one run of `step` starting on it.
pub(crate) async fn with_a_starting_run<S: Store>(store: &S, data: serde_json::Value, step: &str) -> Task {
    let mut task = Task::new(data);
    store.create_task(&task).await.expect("created");
    task.runs.push(run_record(0, step, false));
    let input = task.data.clone();
    let save = TaskSave {
        task: &task,
        expected_revision: 1,
        runs: &[0],
        starting: &[0],
        input: Some(&input),
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    task
}

pub(crate) fn call(n: u32) -> ConnectorCallRecord {
    ConnectorCallRecord {
        connector: "stripe".into(),
        method: "charge".into(),
        args: JsonText::of(&json!({"amount": n})),
        result: if n.is_multiple_of(2) {
            Ok(JsonText::of(&json!({"success": true, "n": n})))
        } else {
            Err(CallError {
                kind: whenever_connectors::ErrorKind::Unavailable,
                message: "down".into(),
            })
        },
        idempotency_key: format!("t:s:1:{n}"),
        duration_us: 10,
        replayed: false,
    }
}

async fn tasks_round_trip<S: Store>(store: &S) {
    let mut task = Task::new(json!({"order": {"id": 1, "items": ["a", "b"]}}));
    task.name = Some("Order 1".into());
    task.tags = vec!["retail".into()];
    task.runs.push(run_record(0, "write-a", true));
    let revision = store.create_task(&task).await.expect("created");
    assert_eq!(revision, 1);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task, task);
    assert_eq!(stored.revision, 1);
    assert_eq!(
        stored.updated_at, task.created_at,
        "a new task was last written when created"
    );
    assert!(
        matches!(store.create_task(&task).await, Err(StoreError::Conflict(_))),
        "ids are unique"
    );
    assert!(store.get_task("t_missing").await.expect("read").is_none());
}

/// A save's time is what the task reads back as written last ([`Store::save_task_at`]), whether
/// the save changes what listings show (the status) or not: a drive answers waiting clients with
/// the task as it saved it, without reading it back.
async fn a_task_reads_back_last_written_when_its_last_save_says<S: Store>(store: &S) {
    let mut task = Task::new(json!({"n": 0}));
    store.create_task(&task).await.expect("created");
    let running_at = chrono::DateTime::parse_from_rfc3339("2031-02-03T04:05:06.123456789Z")
        .expect("time")
        .with_timezone(&Utc);
    task.data = json!({"n": 1});
    let save = TaskSave::whole(&task, 1);
    assert_eq!(store.save_task_at(save, running_at).await.expect("saved"), 2);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!((stored.revision, stored.updated_at), (2, running_at));

    let settled_at = running_at + chrono::Duration::nanoseconds(1);
    task.status = TaskStatus::Completed;
    let save = TaskSave::whole(&task, 2);
    assert_eq!(store.save_task_at(save, settled_at).await.expect("saved"), 3);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!((stored.revision, stored.updated_at), (3, settled_at));
    assert_eq!(stored.task, task);
}

async fn saves_are_compare_and_swap<S: Store>(store: &S) {
    let mut task = Task::new(json!({"n": 0}));
    store.create_task(&task).await.expect("created");
    task.data = json!({"n": 1});
    task.status = TaskStatus::Waiting;
    let save = TaskSave::whole(&task, 1);
    assert_eq!(store.save_task(save).await.expect("saved"), 2);
    // A writer that read revision 1 is refused: someone else wrote meanwhile.
    let stale = TaskSave::whole(&task, 1);
    assert!(matches!(store.save_task(stale).await, Err(StoreError::Conflict(_))));
    let missing = Task::new(json!({}));
    let save = TaskSave::whole(&missing, 1);
    assert!(matches!(store.save_task(save).await, Err(StoreError::NotFound(_))));
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task.data, json!({"n": 1}));
    assert_eq!(stored.task.status, TaskStatus::Waiting);
    assert_eq!(stored.revision, 2);
    // A save handed the data already encoded stores that text as the data.
    task.data = json!({"n": 2, "nested": {"list": [1, "two", null]}});
    let text = task.data.to_string();
    let save = TaskSave {
        task: &task,
        expected_revision: 2,
        runs: &[],
        starting: &[],
        input: None,
        data_text: Some(&text),
        applied: None,
    };
    assert_eq!(store.save_task(save).await.expect("saved"), 3);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task.data, task.data);
}

async fn interrupted_runs_keep_input_and_journal<S: Store>(store: &S) {
    let mut task = Task::new(json!({"start": true}));
    store.create_task(&task).await.expect("created");
    task.runs.push(run_record(0, "charge", false));
    task.runs.push(run_record(1, "notify", false));
    let input = task.data.clone();
    let save = TaskSave {
        task: &task,
        expected_revision: 1,
        runs: &[0, 1],
        starting: &[0, 1],
        input: Some(&input),
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    store.journal_call(&task.id, 0, 0, &call(0)).await.expect("journaled");
    store.journal_call(&task.id, 0, 1, &call(1)).await.expect("journaled");
    // Run 1's first two calls were not journaled (refused before they were sent): its third
    // keeps its place.
    store.journal_call(&task.id, 1, 2, &call(2)).await.expect("journaled");
    let interrupted = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(interrupted.len(), 2);
    assert_eq!(interrupted[0].run_id, 0);
    assert_eq!(interrupted[0].input, input);
    assert_eq!(interrupted[0].journal, vec![Some(call(0)), Some(call(1))]);
    assert_eq!(interrupted[1].journal, vec![None, None, Some(call(2))]);

    // Run 0 finishes and its change is merged: it is no longer interrupted, its journal is gone,
    // and run 1 keeps the input it started from although the task's data moved on.
    task.runs[0] = run_record(0, "charge", true);
    task.data = json!({"start": true, "charged": true});
    let save = TaskSave {
        task: &task,
        expected_revision: 2,
        runs: &[0],
        starting: &[],
        input: None,
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    let interrupted = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].run_id, 1);
    assert_eq!(interrupted[0].input, input);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task.runs, task.runs);
    assert_eq!(stored.task.data, task.data);

    // Another save while run 1 is still unfinished: its input stays the one it started from.
    task.data = json!({"start": true, "charged": true, "noted": 1});
    let save = TaskSave::whole(&task, 3);
    store.save_task(save).await.expect("saved");
    let interrupted = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(interrupted[0].input, input);

    // A run starting on data other than the task's keeps that data.
    task.runs.push(run_record(2, "late", false));
    let other = json!({"other": true});
    let save = TaskSave {
        task: &task,
        expected_revision: 4,
        runs: &[2],
        starting: &[2],
        input: Some(&other),
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    let interrupted = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(interrupted.len(), 2);
    assert_eq!(interrupted[0].input, input);
    assert_eq!(interrupted[1].input, other);
}

/// An unfinished run whose record is written again (a conflict noted on it) while the task's
/// data changes keeps the data it started from.
async fn a_rewritten_unfinished_run_keeps_its_input<S: Store>(store: &S) {
    let mut task = with_a_starting_run(store, json!({"v": 1}), "slow").await;
    let input = task.data.clone();
    task.data = json!({"v": 2});
    task.runs[0].logs_truncated = true;
    let save = TaskSave {
        task: &task,
        expected_revision: 2,
        runs: &[0],
        starting: &[],
        input: None,
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    let interrupted = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].input, input);
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task.runs, task.runs);
    assert_eq!(stored.task.data, json!({"v": 2}));
}

/// Saves that say which runs' changes made the data (as the driver's do)
/// read back exactly as whole-data saves would: the data, the runs, an interrupted run's input,
/// a tag added mid-way in listings, and the settled task.
async fn saves_naming_their_applied_runs_read_back_the_same_data<S: Store>(store: &S) {
    use crate::scheduler::merge::{self, Change};

    let mut task = with_a_starting_run(store, json!({"order": {"id": 7, "items": [1, 2]}}), "first").await;
    task.runs.push(run_record(1, "second", false));
    let input = task.data.clone();
    // The first wave: run 0 finishes, run 1 starts on the data it made.
    let changes = vec![
        Change::Set {
            path: "/order/tier".into(),
            value: json!("gold"),
        },
        Change::Remove {
            path: "/order/items".into(),
        },
    ];
    merge::apply(&mut task.data, &changes);
    task.runs[0] = run_record(0, "first", true);
    task.runs[0].changes = changes;
    let input_of_1 = task.data.clone();
    assert_ne!(input_of_1, input);
    let save = TaskSave {
        task: &task,
        expected_revision: 2,
        runs: &[0, 1],
        starting: &[1],
        input: Some(&task.data),
        data_text: None,
        applied: Some(&[0]),
    };
    let revision = store.save_task(save).await.expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("exists");
    assert_eq!(stored.task, task);
    assert_eq!(stored.revision, revision);
    let open = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].run_id, &open[0].input), (1, &input_of_1));

    // Run 1 finishes and tags the task (listings show it at once); no run starts.
    let changes = vec![Change::Set {
        path: "/order/tier".into(),
        value: json!("platinum"),
    }];
    merge::apply(&mut task.data, &changes);
    task.runs[1] = run_record(1, "second", true);
    task.runs[1].changes = changes;
    task.tags.push("tagged-mid-drive".into());
    let save = TaskSave {
        task: &task,
        expected_revision: revision,
        runs: &[1],
        starting: &[],
        input: None,
        data_text: None,
        applied: Some(&[1]),
    };
    let revision = store.save_task(save).await.expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("exists");
    assert_eq!((stored.task, stored.revision), (task.clone(), revision));
    assert!(store.interrupted_runs(&task.id).await.expect("read").is_empty());
    let query = TaskQuery {
        tag: Some("tagged-mid-drive".into()),
        limit: 10,
        ..TaskQuery::default()
    };
    let listed = store.list_tasks(&query).await.expect("listed");
    assert_eq!(
        listed.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [task.id.as_str()]
    );

    // It settles with nothing more applied: the settled task reads back whole.
    task.status = TaskStatus::Completed;
    let save = TaskSave {
        task: &task,
        expected_revision: revision,
        runs: &[],
        starting: &[],
        input: None,
        data_text: None,
        applied: Some(&[]),
    };
    let revision = store.save_task(save).await.expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("exists");
    assert_eq!((stored.task, stored.revision), (task, revision));
}

/// A task stored with runs starting on its data (its first wave) has them as interrupted runs,
/// on that data, until a save finishes them.
async fn a_task_created_with_its_first_wave_starting_resumes_it<S: Store>(store: &S) {
    let mut task = Task::new(json!({"order": {"id": 8}}));
    task.runs.push(run_record(0, "first", false));
    task.runs.push(run_record(1, "second", false));
    let revision = store.create_task_starting(&task, &[0, 1]).await.expect("created");
    assert_eq!(revision, 1);
    let stored = store.get_task(&task.id).await.expect("read").expect("exists");
    assert_eq!((stored.task, stored.revision), (task.clone(), 1));
    let open = store.interrupted_runs(&task.id).await.expect("read");
    let inputs: Vec<(u64, &serde_json::Value)> = open.iter().map(|r| (r.run_id, &r.input)).collect();
    assert_eq!(inputs, vec![(0, &task.data), (1, &task.data)]);

    // Run 0 finishes and changes the data; run 1 is still interrupted on the data it started on.
    let started_on = task.data.clone();
    let changes = vec![crate::scheduler::merge::Change::Set {
        path: "/order/paid".into(),
        value: json!(true),
    }];
    crate::scheduler::merge::apply(&mut task.data, &changes);
    task.runs[0] = run_record(0, "first", true);
    task.runs[0].changes = changes;
    let save = TaskSave {
        task: &task,
        expected_revision: 1,
        runs: &[0],
        starting: &[],
        input: None,
        data_text: None,
        applied: Some(&[0]),
    };
    let revision = store.save_task(save).await.expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("exists");
    assert_eq!((stored.task, stored.revision), (task.clone(), revision));
    let open = store.interrupted_runs(&task.id).await.expect("read");
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].run_id, &open[0].input), (1, &started_on));
}

async fn listing_filters_and_pages<S: Store>(store: &S) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut task = Task::new(json!({"i": i}));
        task.status = if i % 2 == 0 {
            TaskStatus::Completed
        } else {
            TaskStatus::Failed
        };
        task.tags = vec![format!("batch-{}", i % 3), "listing".into()];
        store.create_task(&task).await.expect("created");
        ids.push(task.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let query = TaskQuery {
            tag: Some("listing".into()),
            limit: 3,
            cursor: cursor.clone(),
            ..TaskQuery::default()
        };
        let page = store.list_tasks(&query).await.expect("listed");
        assert!(page.tasks.len() <= 3);
        seen.extend(page.tasks.iter().map(|t| t.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "every task once, newest first");

    let query = TaskQuery {
        status: Some(TaskStatus::Completed),
        tag: Some("batch-0".into()),
        limit: 50,
        cursor: None,
    };
    let page = store.list_tasks(&query).await.expect("listed");
    let got: Vec<&str> = page.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(got, vec![ids[6].as_str(), ids[0].as_str()]);
    assert!(page.next_cursor.is_none());
    let counts = store.count_tasks().await.expect("counts");
    assert!(counts.get(&TaskStatus::Completed).copied().unwrap_or_default() >= 4);
}

async fn step_versions_and_current<S: Store>(store: &S) {
    let version = |v: &str, bytes: &[u8]| StepVersion {
        name: "charge".into(),
        version: v.into(),
        digest: format!("{v}-digest"),
        component: bytes.to_vec(),
        manifest: StepManifest {
            connectors: vec!["stripe".into()],
            ..StepManifest::default()
        },
        deployed_at: Utc::now(),
        deployed_by: Some(format!("deployer of {v}")),
    };
    let stamp = store.steps_stamp().await.expect("stamp");
    store
        .put_step_version(&version("v1", b"one"), true)
        .await
        .expect("stored");
    let after_deploy = store.steps_stamp().await.expect("stamp");
    assert_ne!(stamp, after_deploy, "a deploy changes the steps stamp");
    store
        .put_step_version(&version("v2", b"two!"), true)
        .await
        .expect("stored");
    let current = store.current_steps().await.expect("read");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].version, "v2");
    assert_eq!(current[0].component, b"two!");
    assert_eq!(current[0].manifest.connectors, vec!["stripe".to_string()]);
    // Rollback is making an older version current again.
    store
        .set_current_step("charge", Some("v1"), Some("the rollback's caller"))
        .await
        .expect("rolled back");
    assert_eq!(store.current_steps().await.expect("read")[0].version, "v1");
    assert!(matches!(
        store.set_current_step("charge", Some("v9"), None).await,
        Err(StoreError::NotFound(_))
    ));
    let versions = store.step_versions(Some("charge")).await.expect("listed");
    let listed: Vec<(&str, bool, u64, Option<&str>)> = versions
        .iter()
        .map(|v| (v.version.as_str(), v.current, v.size, v.deployed_by.as_deref()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("v1", true, 3, Some("deployer of v1")),
            ("v2", false, 4, Some("deployer of v2"))
        ]
    );
    // A version deployed again keeps its component and who first deployed it, and takes the
    // new manifest.
    let mut again = version("v2", b"two!");
    again.manifest.connectors = vec!["paypal".into()];
    again.deployed_by = Some("someone else".into());
    store.put_step_version(&again, false).await.expect("stored");
    let stored = store.step_version("charge", "v2").await.expect("read").expect("there");
    assert_eq!(stored.manifest.connectors, vec!["paypal".to_string()]);
    assert_eq!(stored.deployed_by.as_deref(), Some("deployer of v2"));
    assert_eq!(
        store.current_steps().await.expect("read")[0].version,
        "v1",
        "not made current"
    );
    // The serving version deployed again (a second host starting on the same files, say) is no
    // change to record.
    store
        .put_step_version(&version("v1", b"one"), true)
        .await
        .expect("stored");
    // Removal keeps the versions.
    let before_removal = store.steps_stamp().await.expect("stamp");
    store.set_current_step("charge", None, None).await.expect("removed");
    assert_ne!(
        store.steps_stamp().await.expect("stamp"),
        before_removal,
        "a removal changes the steps stamp"
    );
    assert!(store.current_steps().await.expect("read").is_empty());
    assert!(store.step_version("charge", "v2").await.expect("read").is_some());
    // Every change to what served is on record, oldest first, after the removal too; the
    // refused rollback and the deploy that did not make its version serve are not changes.
    let changes = store.step_changes("charge").await.expect("changes");
    let recorded: Vec<(StepChangeKind, Option<&str>, Option<&str>)> = changes
        .iter()
        .map(|c| (c.change, c.version.as_deref(), c.by.as_deref()))
        .collect();
    assert_eq!(
        recorded,
        vec![
            (StepChangeKind::Deployed, Some("v1"), Some("deployer of v1")),
            (StepChangeKind::Deployed, Some("v2"), Some("deployer of v2")),
            (StepChangeKind::RolledBack, Some("v1"), Some("the rollback's caller")),
            (StepChangeKind::Removed, None, None),
        ]
    );
    assert!(changes.iter().all(|c| c.step == "charge"));
    assert!(
        changes.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "in the order they were made: {changes:?}"
    );
    assert!(store.step_changes("never-deployed").await.expect("changes").is_empty());
}

fn sorted(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

async fn leases_are_exclusive_expire_and_end_when_settled<S: Store>(store: &S) {
    const LONG: Duration = Duration::from_secs(60);
    let mut mine = Vec::new();
    for i in 0..20 {
        let task = Task::new(json!({"lease": i}));
        store.create_task(&task).await.expect("created");
        mine.push(task);
    }
    let ids: Vec<String> = mine.iter().map(|t| t.id.clone()).collect();
    // Concurrent claims never share a task, and together take every running task.
    let claims = futures_util::future::join_all(
        ["h1", "h2", "h3", "h4"].map(|owner| async move { (owner, store.claim_tasks(owner, 1000, LONG).await) }),
    )
    .await;
    let mut holder = std::collections::HashMap::new();
    for (owner, claimed) in claims {
        for id in claimed.expect("claimed") {
            assert!(
                holder.insert(id.clone(), owner).is_none(),
                "task {id} was claimed twice"
            );
        }
    }
    for id in &ids {
        assert!(holder.contains_key(id), "every running task is claimed once");
    }
    assert!(
        store.claim_tasks("h5", 1000, LONG).await.expect("claimed").is_empty(),
        "nothing is left to claim"
    );
    // Only the holder renews and releases.
    let first = ids[0].clone();
    let owner = holder[&first];
    let other = if owner == "h1" { "h2" } else { "h1" };
    let one = [first.clone()];
    assert_eq!(
        store.renew_leases(owner, &one, LONG).await.expect("renewed"),
        one.to_vec()
    );
    assert!(store.renew_leases(other, &one, LONG).await.expect("renewed").is_empty());
    store.release_task(&first, other).await.expect("released");
    assert!(
        store.claim_tasks("h5", 1000, LONG).await.expect("claimed").is_empty(),
        "a stranger's release is a no-op"
    );
    store.release_task(&first, owner).await.expect("released");
    assert_eq!(
        store.claim_tasks("h5", 1000, LONG).await.expect("claimed"),
        one.to_vec(),
        "released: claimable"
    );
    // A settled task's lease ends with the save that settles it.
    let mut settled = mine[1].clone();
    settled.status = TaskStatus::Completed;
    let save = TaskSave::whole(&settled, 1);
    store.save_task(save).await.expect("saved");
    let settled_owner = holder[&settled.id];
    assert!(
        store
            .renew_leases(settled_owner, &[settled.id.clone()], LONG)
            .await
            .expect("renewed")
            .is_empty()
    );
    // An expired lease is taken over; the old holder learns it on its next renewal.
    let batch: Vec<String> = ids[2..6].to_vec();
    let by_owner: Vec<(&str, String)> = batch.iter().map(|id| (holder[id], id.clone())).collect();
    for (owner, id) in &by_owner {
        store.release_task(id, owner).await.expect("released");
    }
    let short = store
        .claim_tasks("h6", 2, Duration::from_millis(1))
        .await
        .expect("claimed");
    assert_eq!(short.len(), 2, "the limit holds");
    assert!(sorted(&short).is_subset(&sorted(&batch)));
    // What h6 read of a task, to save once its lease has lapsed.
    let stale = store.get_task(&short[0]).await.expect("read").expect("stored");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let taken = store.claim_tasks("h7", 1000, LONG).await.expect("claimed");
    assert_eq!(
        sorted(&taken),
        sorted(&batch),
        "expired and free tasks are claimed, oldest first"
    );
    assert_eq!(taken, batch, "oldest first");
    assert!(
        store
            .renew_leases("h6", &short, LONG)
            .await
            .expect("renewed")
            .is_empty(),
        "h6 lost them"
    );
    // Nor can h6 save them, had it gone on driving them (paused past its lease): a takeover
    // moves a task's revision on. (Leases of a store of one host's are kept in its process.)
    if store.shared() {
        let saved = store.save_task(TaskSave::whole(&stale.task, stale.revision)).await;
        assert!(matches!(saved, Err(StoreError::Conflict(_))), "{saved:?}");
    }
    // Leave nothing held for whoever uses the store next.
    for id in &ids {
        for owner in ["h1", "h2", "h3", "h4", "h5", "h7"] {
            store.release_task(id, owner).await.expect("released");
        }
    }
}

/// A task settled at `at` in `status`, with a finished run whose connector call was journaled.
async fn settled_at<S: Store>(store: &S, status: TaskStatus, at: chrono::DateTime<Utc>) -> Task {
    let mut task = with_a_starting_run(store, json!({"settles": status.as_str()}), "write-a").await;
    store.journal_call(&task.id, 0, 0, &call(1)).await.expect("journaled");
    task.runs[0] = run_record(0, "write-a", true);
    task.status = status;
    let save = TaskSave {
        runs: &[0],
        ..TaskSave::whole(&task, 2)
    };
    store.save_task_at(save, at).await.expect("settled");
    task
}

/// Deleting a task (`DELETE /v1/tasks/{id}`) and retention's sweeps: a settled task goes with its
/// history and journal; a running one is never deleted.
async fn settled_tasks_are_deleted_with_their_history_and_running_ones_never<S: Store>(store: &S) {
    let running = with_a_starting_run(store, json!({"deleting": "running"}), "write-a").await;
    store
        .journal_call(&running.id, 0, 0, &call(1))
        .await
        .expect("journaled");
    assert!(
        matches!(store.delete_task(&running.id, None).await, Err(StoreError::Conflict(_))),
        "a running task is not deleted"
    );
    assert!(
        matches!(
            store.delete_task(&running.id, Some(&[1])).await,
            Err(StoreError::Changed(_))
        ),
        "the revision is checked first"
    );
    let kept = store.get_task(&running.id).await.expect("read").expect("still there");
    assert_eq!(kept.task.runs.len(), 1);
    assert_eq!(
        store.interrupted_runs(&running.id).await.expect("read")[0]
            .journal
            .len(),
        1
    );

    let now = Utc::now();
    let done = settled_at(store, TaskStatus::Completed, now).await;
    let before = store.count_tasks().await.expect("counts");
    // At revision 3 (created, its run started, settled): a delete naming others changes nothing.
    match store.delete_task(&done.id, Some(&[1, 2])).await {
        Err(StoreError::Changed(message)) => {
            assert!(message.contains("is at revision 3, not one of 1, 2"), "{message}")
        }
        other => panic!("a delete naming old revisions is refused: {other:?}"),
    }
    assert_eq!(store.get_task(&done.id).await.expect("read").expect("kept").revision, 3);
    store.delete_task(&done.id, Some(&[2, 3])).await.expect("deleted");
    assert!(store.get_task(&done.id).await.expect("read").is_none());
    assert!(store.interrupted_runs(&done.id).await.expect("read").is_empty());
    assert!(
        matches!(store.delete_task(&done.id, None).await, Err(StoreError::NotFound(_))),
        "deleted once"
    );
    let after = store.count_tasks().await.expect("counts");
    assert_eq!(
        after.get(&TaskStatus::Completed).copied().unwrap_or_default() + 1,
        before.get(&TaskStatus::Completed).copied().unwrap_or_default()
    );

    // Retention: the old tasks of one status, oldest first, a batch at a time.
    let old = now - chrono::Duration::days(40);
    let cutoff = now - chrono::Duration::days(30);
    let old_done: Vec<Task> = vec![
        settled_at(store, TaskStatus::Completed, old).await,
        settled_at(store, TaskStatus::Completed, old).await,
    ];
    let recent_done = settled_at(store, TaskStatus::Completed, now).await;
    let old_failed = settled_at(store, TaskStatus::Failed, old).await;
    let old_waiting = settled_at(store, TaskStatus::Waiting, old).await;
    // Settled long ago and patched now (saved again as it settled): as recent as its patch.
    let mut patched = settled_at(store, TaskStatus::Completed, old).await;
    patched.data = json!({"settles": "completed", "patched": true});
    store
        .save_task_at(TaskSave::whole(&patched, 3), now)
        .await
        .expect("patched");
    assert_eq!(swept(store, TaskStatus::Running, now, 100).await, 0);
    assert_eq!(swept(store, TaskStatus::Completed, cutoff, 1).await, 1);
    assert!(gone(store, &old_done[0]).await, "oldest first");
    assert!(!gone(store, &old_done[1]).await);
    assert_eq!(swept(store, TaskStatus::Completed, cutoff, 100).await, 1);
    assert_eq!(swept(store, TaskStatus::Completed, cutoff, 100).await, 0);
    assert!(gone(store, &old_done[1]).await);
    for (task, status) in [
        (&recent_done, TaskStatus::Completed),
        (&patched, TaskStatus::Completed),
        (&old_failed, TaskStatus::Failed),
        (&old_waiting, TaskStatus::Waiting),
        (&running, TaskStatus::Running),
    ] {
        let stored = store.get_task(&task.id).await.expect("read").expect("kept");
        assert_eq!(stored.task.status, status);
    }
    assert_eq!(swept(store, TaskStatus::Failed, cutoff, 100).await, 1);
    assert!(gone(store, &old_failed).await);
    assert!(!gone(store, &old_waiting).await);
}

/// One retention batch: how many tasks it deleted.
async fn swept<S: Store>(store: &S, status: TaskStatus, before: chrono::DateTime<Utc>, limit: u32) -> u64 {
    store.delete_settled(status, before, limit).await.expect("swept")
}

/// Whether `task` is no longer stored.
async fn gone<S: Store>(store: &S, task: &Task) -> bool {
    store.get_task(&task.id).await.expect("read").is_none()
}

/// A task created for a request with an idempotency key reads back with the key, through
/// saves; its id (the key's) refuses a second task until the task is deleted.
async fn a_task_keeps_the_key_of_its_request_and_its_id_takes_one_task<S: Store>(store: &S) {
    let key = RequestKey::new("hook:orders", "evt_1", br#"{"order":1}"#).expect("key");
    let mut task = Task::for_request(key.clone(), json!({"order": 1}));
    task.runs.push(run_record(0, "write-a", false));
    store.create_task_starting(&task, &[0]).await.expect("created");
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(stored.task, task);
    assert_eq!(stored.task.idempotency.as_ref(), Some(&key));

    let again = Task::for_request(key.clone(), json!({"order": 2}));
    assert!(
        matches!(store.create_task(&again).await, Err(StoreError::Conflict(_))),
        "one task per key"
    );
    task.status = TaskStatus::Completed;
    store.save_task(TaskSave::whole(&task, 1)).await.expect("saved");
    let stored = store.get_task(&task.id).await.expect("read").expect("found");
    assert_eq!(
        stored.task.data,
        json!({"order": 1}),
        "the first request's task is untouched"
    );
    assert_eq!(stored.task.idempotency, Some(key), "saves keep the key");
    let plain = store
        .get_task(&with_a_starting_run(store, json!({}), "s").await.id)
        .await;
    assert_eq!(plain.expect("read").expect("found").task.idempotency, None);

    store.delete_task(&task.id, None).await.expect("deleted");
    store
        .create_task(&again)
        .await
        .expect("a deleted task's key takes a new one");
}
