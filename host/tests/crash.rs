//! Crash recovery of the real `whenever serve` process.
//!
//! RetailMax orders arrive through a webhook; the server is killed with SIGKILL while they are
//! being processed, restarted on the same database, killed again during its recovery, and
//! restarted once more. Then every order must have reached the seed path's final state, and no
//! side effect may have happened twice.
//!
//! The connector simulators live in the server process, so their ledger dies with it. What is
//! asserted instead is what a real provider would see, read from the store:
//! - every order completed (`order.status = processing_complete`), every run succeeded, and no
//!   step was started twice on an order: an interrupted run is re-run in place (same run, same
//!   run number), not started anew;
//! - all successful `stripe.charge` calls of an order carry one idempotency key (a provider
//!   honouring `Idempotency-Key`, as Stripe does, charges once), and the order's transaction id
//!   is the one that key yields; likewise one key per reserved item for `inventorySystem.reserve`;
//! - every connector result that was journaled when the server died is exactly the result the
//!   re-run saw (same call, result and idempotency key) and is marked as replayed, not called
//!   again.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::ServeProcess;
use whenever::runtime::ConnectorCallRecord;
use whenever::store::sqlite::{SqliteOptions, SqliteStore};
use whenever::store::{Store, TaskQuery};
use whenever::task::{RunOutcomeRecord, Task, TaskStatus};

/// Orders sent through the webhook.
const ORDERS: usize = 200;
/// Concurrent webhook senders.
const SENDERS: usize = 8;

/// The seed's order with its own order id.
fn order(i: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-CRASH-{i:04}"));
    order
}

/// Sends every order through `POST /v1/hooks/checkout`; returns the task ids in order.
async fn send_orders(server: &ServeProcess) -> Vec<String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (http, base, next) = (server.http.clone(), server.base.clone(), next.clone());
        senders.spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ORDERS {
                    return accepted;
                }
                let response = http
                    .post(format!("{base}/v1/hooks/checkout"))
                    .body(order(i).to_string())
                    .send()
                    .await
                    .expect("webhook delivered");
                assert_eq!(response.status().as_u16(), 201, "the webhook is accepted");
                let task: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
                accepted.push((i, task["id"].as_str().expect("task id").to_string()));
            }
        });
    }
    let mut ids = vec![String::new(); ORDERS];
    while let Some(done) = senders.join_next().await {
        for (i, id) in done.expect("sender") {
            ids[i] = id;
        }
    }
    ids
}

/// What the store held when the server died.
#[derive(Debug, Default)]
struct AtDeath {
    /// Tasks still running.
    running: usize,
    /// Runs started and not finished.
    interrupted: usize,
    /// Journaled connector results of those runs, by (task, run id).
    journal: HashMap<(String, u64), Vec<ConnectorCallRecord>>,
}

impl AtDeath {
    async fn read(db: &Path) -> AtDeath {
        let store = SqliteStore::open(db, SqliteOptions::default()).expect("the killed server's database opens");
        let query = TaskQuery { status: Some(TaskStatus::Running), tag: None, limit: 1000, cursor: None };
        let page = store.list_tasks(&query).await.expect("lists");
        let mut at_death = AtDeath { running: page.tasks.len(), ..AtDeath::default() };
        for task in &page.tasks {
            for run in store.interrupted_runs(&task.id).await.expect("reads") {
                at_death.interrupted += 1;
                if !run.journal.is_empty() {
                    at_death.journal.insert((task.id.clone(), run.run_id), run.journal);
                }
            }
        }
        at_death
    }

    fn journaled_calls(&self) -> usize {
        self.journal.values().map(Vec::len).sum()
    }
}

/// Distinct journaled calls over several deaths.
fn journaled_calls(deaths: &[&AtDeath]) -> usize {
    let mut calls = BTreeSet::new();
    for death in deaths {
        for ((task, run), journal) in &death.journal {
            calls.extend((0..journal.len()).map(|i| (task.clone(), *run, i)));
        }
    }
    calls.len()
}

/// Kills the server once `completed` orders (at least) have completed, and reads the store.
async fn kill_when_completed(server: ServeProcess, db: &Path, completed: usize) -> AtDeath {
    server
        .until("orders to complete before the kill", Duration::from_secs(60), || server_has_completed(&server, completed))
        .await;
    server.kill();
    AtDeath::read(db).await
}

async fn server_has_completed(server: &ServeProcess, completed: usize) -> bool {
    server.count("completed").await >= completed
}

fn txn_for(key: &str) -> String {
    format!("txn_{}", &hex::encode(Sha256::digest(key.as_bytes()))[..12])
}

/// The successful calls of `connector.method` in a task's history, by idempotency key.
fn successful_calls<'a>(task: &'a Task, connector: &str, method: &str) -> BTreeMap<&'a str, &'a ConnectorCallRecord> {
    task.runs
        .iter()
        .flat_map(|run| &run.connector_calls)
        .filter(|call| call.connector == connector && call.method == method)
        .filter(|call| call.result.as_ref().is_ok_and(|r| r["success"] != json!(false)))
        .map(|call| (call.idempotency_key.as_str(), call))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_resumes_every_order_and_charges_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");

    // 1. Orders arrive; the server dies with SIGKILL while it processes them.
    let server = ServeProcess::start(&db, &[]);
    let ids = send_orders(&server).await;
    let first = kill_when_completed(server, &db, ORDERS / 5).await;
    assert!(first.running > 0, "the server was killed in the middle of the load: {first:?}");
    assert!(first.interrupted > 0, "runs were in flight when the server died: {first:?}");

    // 2. Restarted on the same database, it resumes; it is killed again during the recovery.
    let server = ServeProcess::start(&db, &[]);
    let completed_before = ORDERS - first.running;
    let second = kill_when_completed(server, &db, (completed_before + 10).min(ORDERS)).await;

    // 3. Restarted once more, it finishes every order.
    let server = ServeProcess::start(&db, &[]);
    server
        .until("every order to settle", Duration::from_secs(60), || async { server.count("running").await == 0 })
        .await;

    let mut replayed = 0;
    let mut checked_journal = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (status, answer) = server.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{answer}");
        let task: Task = serde_json::from_value(answer).expect("a task");
        let order = &task.data["order"];
        assert_eq!(task.status, TaskStatus::Completed, "order {i} ({id}): {:?}", task.message);
        assert_eq!(order["id"], json!(format!("ORD-CRASH-{i:04}")));
        assert_eq!(order["status"], json!("processing_complete"), "order {i}");
        assert_eq!(order["orderProcessingComplete"], json!(true), "order {i}");

        // Every run succeeded and no step was started twice: interrupted runs re-ran in place.
        let mut steps = BTreeSet::new();
        for run in &task.runs {
            assert_eq!(run.outcome, Some(RunOutcomeRecord::Ok), "order {i}: run {} of {}", run.id, run.step);
            assert!(steps.insert(run.step.as_str()), "order {i}: step {} started twice", run.step);
            assert_eq!(run.number, 1, "order {i}: {} is its first run", run.step);
        }

        // Exactly one charge: one idempotency key among the successful charges, and the
        // transaction the order records is that key's.
        let charges = successful_calls(&task, "stripe", "charge");
        assert_eq!(charges.len(), 1, "order {i}: one charge key, got {:?}", charges.keys());
        let key = charges.keys().next().copied().unwrap_or_default();
        assert_eq!(order["payment"]["transactionId"], json!(txn_for(key)), "order {i}");
        // One reservation per item, each under its own key.
        let items = order["items"].as_array().map(Vec::len).unwrap_or_default();
        let reservations = successful_calls(&task, "inventorySystem", "reserve");
        assert_eq!(reservations.len(), items, "order {i}: one reservation per item");

        // What the dead servers had journaled is what the re-runs saw, replayed.
        for journal in [&first.journal, &second.journal] {
            for ((task_id, run_id), calls) in journal.iter().filter(|((t, _), _)| t == id) {
                let run = task.runs.iter().find(|r| r.id == *run_id).expect("the interrupted run is in history");
                for (index, journaled) in calls.iter().enumerate() {
                    let seen = run.connector_calls.get(index).unwrap_or_else(|| {
                        panic!("{task_id} run {run_id}: journaled call {index} is not in the re-run's history")
                    });
                    assert_eq!(
                        (&seen.connector, &seen.method, &seen.result, &seen.idempotency_key),
                        (&journaled.connector, &journaled.method, &journaled.result, &journaled.idempotency_key),
                        "{task_id} run {run_id} call {index}: the re-run saw the journaled result"
                    );
                    assert!(seen.replayed, "{task_id} run {run_id} call {index} was replayed, not called again");
                    checked_journal.insert((task_id.clone(), *run_id, index));
                }
            }
        }
        replayed += task.runs.iter().flat_map(|r| &r.connector_calls).filter(|c| c.replayed).count();
    }
    // Every journaled call was checked (a run interrupted twice is in both journals), and every
    // replayed call was journaled by a server that died.
    assert_eq!(checked_journal.len(), journaled_calls(&[&first, &second]));
    assert_eq!(replayed, checked_journal.len());
    eprintln!(
        "crash test: {ORDERS} orders; first kill: {} running, {} interrupted runs, {} journaled calls; \
         second kill: {} running, {} interrupted runs, {} journaled calls; {replayed} calls replayed",
        first.running,
        first.interrupted,
        first.journaled_calls(),
        second.running,
        second.interrupted,
        second.journaled_calls()
    );
}
