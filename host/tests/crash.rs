//! Crash recovery of the real `whenever serve` process.
//!
//! RetailMax orders arrive through a webhook from eight concurrent senders; the server is killed
//! with SIGKILL while orders are still arriving and being processed, restarted on the same
//! database (the senders go on delivering what was not accepted), killed again in the middle of
//! that, and restarted once more. Then every order must have reached the seed path's final state,
//! and no side effect may have happened twice.
//!
//! A delivery that was in flight when the server died got no answer: it may or may not have been
//! accepted, so the sender delivers it again, as any webhook sender would, with the same delivery
//! id (`Idempotency-Key`). Every order must then exist as exactly one task: a delivery whose
//! first attempt had been stored is answered with that task (200), not made a second order.
//!
//! The connector simulators live in the server process, so their ledger dies with it. What is
//! asserted instead is what a real provider would see, read from the store:
//! - every order completed (`order.status = processing_complete`), every run succeeded, and no
//!   step was started twice on a task: an interrupted run is re-run in place (same run, same run
//!   number), not started anew;
//! - all successful `stripe.charge` calls of a task carry one idempotency key (a provider
//!   honouring `Idempotency-Key`, as Stripe does, charges once), and the order's transaction id
//!   is the one that key yields; likewise one key per reserved item for `inventorySystem.reserve`;
//! - every connector result that was journaled when a server died is exactly the result the re-run
//!   saw (same call, result and idempotency key) and is marked as replayed, not called again; and
//!   every replayed result is one of those.
//!
//! A run's journaled results outlive a kill only if the kill lands between a call's answer and the
//! run's end, which a kill timed by the load alone rarely does (runs take milliseconds). So the
//! inventory service is a fake started here (connector `inventorySystem` of kind `http`): it holds
//! the first reservations each server that is to be killed asks for unanswered (the others are
//! answered, and the orders flow), and the server is killed only once one is held. That run's
//! stock check, answered before, is journaled at the kill.

mod support;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{
    FakeInventory, ServeProcess, assert_each_step_ran_once_ok, largest_file, set_file_size_limit, successful_calls,
};
use whenever::runtime::ConnectorCallRecord;
use whenever::task::{Task, TaskStatus};

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

/// What the senders delivered to one server.
#[derive(Debug, Default)]
struct Delivered {
    /// (order number, task id) of each accepted delivery.
    accepted: Vec<(usize, String)>,
    /// Deliveries answered with the task an earlier attempt of theirs had created (200).
    replayed: usize,
    /// Orders whose delivery got no answer (the server died): delivered again later.
    unanswered: Vec<usize>,
}

/// Starts `SENDERS` senders taking order numbers from `queue` and delivering them through
/// `POST /v1/hooks/checkout` until the queue is empty, `stop` is set, or `quota` deliveries were
/// made; `accepted` counts the deliveries answered `201`.
fn start_senders(
    server: &ServeProcess,
    queue: &Arc<Mutex<VecDeque<usize>>>,
    stop: &Arc<AtomicBool>,
    quota: usize,
    accepted: &Arc<AtomicUsize>,
) -> tokio::task::JoinSet<Delivered> {
    let mut senders = tokio::task::JoinSet::new();
    let left = Arc::new(AtomicUsize::new(quota));
    for _ in 0..SENDERS {
        let (http, base, queue, stop, left, accepted) = (
            server.http.clone(),
            server.base.clone(),
            queue.clone(),
            stop.clone(),
            left.clone(),
            accepted.clone(),
        );
        senders.spawn(async move {
            let mut delivered = Delivered::default();
            while !stop.load(Ordering::SeqCst) {
                if left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let Some(i) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
                    break;
                };
                let sent = http
                    .post(format!("{base}/v1/hooks/checkout"))
                    .header("Idempotency-Key", delivery_id(i))
                    .body(order(i).to_string())
                    .send()
                    .await;
                let answer = match sent {
                    Ok(response) => Some((response.status().as_u16(), response.text().await)),
                    Err(_) => None,
                };
                match answer {
                    Some((status @ (200 | 201), Ok(text))) => {
                        let task: Value = serde_json::from_str(&text).expect("the answer is JSON");
                        accepted.fetch_add(1, Ordering::SeqCst);
                        delivered.replayed += usize::from(status == 200);
                        delivered
                            .accepted
                            .push((i, task["id"].as_str().expect("task id").to_string()));
                    }
                    Some((status, text)) if status != 200 && status != 201 => {
                        panic!("delivery refused: {status} {text:?}")
                    }
                    _ => {
                        delivered.unanswered.push(i);
                        break;
                    }
                }
            }
            delivered
        });
    }
    senders
}

/// The delivery id of order `i`: the same at every attempt to deliver it.
fn delivery_id(i: usize) -> String {
    format!("delivery-{i:04}")
}

/// What the store held when the server died.
#[derive(Debug, Default)]
struct AtDeath {
    /// Tasks still running.
    running: usize,
    /// Runs started and not finished.
    interrupted: usize,
    /// Journaled connector results of those runs, by (task, run id).
    /// By call number: `None` for a call not journaled.
    journal: HashMap<(String, u64), Vec<Option<ConnectorCallRecord>>>,
}

impl AtDeath {
    async fn read(db: &Path) -> AtDeath {
        let running = support::under_way(db).await;
        let mut at_death = AtDeath {
            running: running.len(),
            ..AtDeath::default()
        };
        for (task, runs) in running {
            for run in runs {
                at_death.interrupted += 1;
                if !run.journal.is_empty() {
                    at_death.journal.insert((task.clone(), run.run_id), run.journal);
                }
            }
        }
        at_death
    }

    fn journaled_calls(&self) -> usize {
        self.journal.values().map(|calls| calls.iter().flatten().count()).sum()
    }
}

/// Distinct journaled calls over several deaths.
fn journaled_calls(deaths: &[&AtDeath]) -> usize {
    let mut calls = BTreeSet::new();
    for death in deaths {
        for ((task, run), journal) in &death.journal {
            let numbers = journal.iter().enumerate().filter(|(_, call)| call.is_some());
            calls.extend(numbers.map(|(i, _)| (task.clone(), *run, i)));
        }
    }
    calls.len()
}

fn txn_for(key: &str) -> String {
    format!("txn_{}", &hex::encode(Sha256::digest(key.as_bytes()))[..12])
}

/// Waits for the senders; what got no answer goes back to the front of the queue. Answers how
/// many deliveries were answered as replays.
async fn collect(
    senders: &mut tokio::task::JoinSet<Delivered>,
    queue: &Mutex<VecDeque<usize>>,
    accepted: &mut Vec<(usize, String)>,
    redelivered: &mut BTreeSet<usize>,
) -> usize {
    let mut replayed = 0;
    while let Some(done) = senders.join_next().await {
        let done = done.expect("sender");
        accepted.extend(done.accepted);
        replayed += done.replayed;
        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
        for i in done.unanswered {
            redelivered.insert(i);
            queue.push_front(i);
        }
    }
    replayed
}

/// The order number of a task.
fn order_number(task: &Task) -> usize {
    let id = task.data["order"]["id"].as_str().unwrap_or_default();
    id.strip_prefix("ORD-CRASH-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unknown order {id:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_resumes_every_order_and_charges_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let queue = Arc::new(Mutex::new((0..ORDERS).collect::<VecDeque<usize>>()));
    let mut accepted: Vec<(usize, String)> = Vec::new();
    let mut redelivered = BTreeSet::new();
    let mut replayed_deliveries = 0;
    let mut deaths: Vec<AtDeath> = Vec::new();
    let inventory = FakeInventory::default();
    let address = inventory.start().await;
    let config = dir.path().join("whenever.toml");
    std::fs::write(
        &config,
        format!(
            "[connectors.inventorySystem]\nkind = \"http\"\nbase_url = \"http://{address}/held\"\n\
             timeout_ms = 60000\nretries = 0\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();

    // Two servers die under load; the third finishes the work.
    for round in 0..3 {
        let server = ServeProcess::start(&db, &["--config", config.as_str()]);
        let stop = Arc::new(AtomicBool::new(false));
        // Each killed server is sent two fifths of the orders and dies once half of those were
        // accepted: orders are still arriving and being processed. The server accepts orders
        // faster than it finishes them, and counting what completed (a read of the store) may
        // wait behind a restarted server's resumed tasks, so the kill is timed by the senders.
        // The last server is sent the rest.
        let quota = if round < 2 { ORDERS * 2 / 5 } else { usize::MAX };
        // The last server is also sent again every order the dead ones accepted, as a sender
        // unsure of what a dead server acknowledged would: each must find its task.
        let sent_again: BTreeSet<usize> = if round < 2 {
            BTreeSet::new()
        } else {
            accepted.iter().map(|(i, _)| *i).collect()
        };
        queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sent_again.iter().copied());
        let accepted_here = Arc::new(AtomicUsize::new(0));
        // The server to be killed is held at its first reservations (see the file's comment).
        let held = inventory.held.load(Ordering::SeqCst);
        if round < 2 {
            inventory.hold.store(2, Ordering::SeqCst);
        }
        let mut senders = start_senders(&server, &queue, &stop, quota, &accepted_here);
        if round < 2 {
            server
                .until("half the round's orders accepted", Duration::from_secs(60), || async {
                    accepted_here.load(Ordering::SeqCst) >= quota / 2
                })
                .await;
            // The kill lands while a run waits for its reservation, its stock check journaled.
            server
                .until("a reservation to be held", Duration::from_secs(60), || async {
                    inventory.held.load(Ordering::SeqCst) > held
                })
                .await;
            stop.store(true, Ordering::SeqCst);
            server.kill();
            inventory.let_go();
            replayed_deliveries += collect(&mut senders, &queue, &mut accepted, &mut redelivered).await;
            let death = AtDeath::read(&db).await;
            assert!(
                death.running > 0,
                "server {round} was killed in the middle of the load: {death:?}"
            );
            assert!(
                death.interrupted > 0,
                "runs were in flight when server {round} died: {death:?}"
            );
            assert!(
                death.journaled_calls() > 0,
                "a run held at its reservation had its stock check journaled when server {round} died: {death:?}"
            );
            deaths.push(death);
            continue;
        }
        replayed_deliveries += collect(&mut senders, &queue, &mut accepted, &mut redelivered).await;
        assert!(
            replayed_deliveries >= sent_again.len(),
            "every order sent again was answered with its task: {replayed_deliveries} replays, {} sent again",
            sent_again.len()
        );
        assert!(
            queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty(),
            "every order was delivered"
        );
        server
            .until("every task to settle", Duration::from_secs(60), || async {
                server.count("running").await == 0
            })
            .await;

        let (status, page) = server.get("/v1/tasks?limit=1000").await;
        assert_eq!(status, 200, "{page}");
        assert!(page["next_cursor"].is_null());
        let ids: Vec<String> = page["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_str().map(String::from))
            .collect();
        for (_, id) in &accepted {
            assert!(ids.contains(id), "accepted task {id} is stored");
        }
        let mut tasks_per_order = vec![0usize; ORDERS];
        let mut replayed = BTreeSet::new();
        let mut checked = BTreeSet::new();
        for id in &ids {
            let (status, answer) = server.get(&format!("/v1/tasks/{id}")).await;
            assert_eq!(status, 200, "{answer}");
            let task: Task = serde_json::from_value(answer).expect("a task");
            let i = order_number(&task);
            tasks_per_order[i] += 1;
            check_order(&task, i);
            checked.extend(check_replays(&task, &deaths));
            for run in &task.runs {
                let calls = run.connector_calls.iter().enumerate().filter(|(_, c)| c.replayed);
                replayed.extend(calls.map(|(index, _)| (task.id.clone(), run.id, index)));
            }
        }
        for (i, count) in tasks_per_order.iter().enumerate() {
            assert_eq!(*count, 1, "order {i} is one task, however often it was delivered");
        }
        let mut answered: HashMap<usize, BTreeSet<&str>> = HashMap::new();
        for (i, id) in &accepted {
            answered.entry(*i).or_default().insert(id);
        }
        for (i, ids) in &answered {
            assert_eq!(
                ids.len(),
                1,
                "order {i}: every delivery was answered with its one task: {ids:?}"
            );
        }
        // Every journaled call was checked (a run interrupted twice is in both journals), and
        // every replayed call had been journaled by a server that died.
        assert_eq!(checked.len(), journaled_calls(&deaths.iter().collect::<Vec<_>>()));
        assert!(!checked.is_empty(), "journaled calls were checked");
        assert_eq!(replayed, checked);
        // This server re-ran what the last death interrupted, so it replayed at least those
        // journaled results, and `/metrics` counts them apart from calls made (earlier
        // servers' counts died with them).
        let counted: i64 = server
            .metric_series("whenever_connector_calls_replayed_total{")
            .await
            .iter()
            .map(|(_, n)| n)
            .sum();
        let last = deaths.last().map_or(0, AtDeath::journaled_calls);
        assert!(
            (last..=replayed.len()).contains(&usize::try_from(counted).unwrap_or(usize::MAX)),
            "{counted} replays counted in /metrics; {last} journaled at the last death, {} replayed in all",
            replayed.len()
        );
        eprintln!(
            "crash test: {ORDERS} orders in {} tasks; {} unanswered deliveries sent again, {} accepted ones \
             sent again, {replayed_deliveries} deliveries answered with the task of an earlier one; at the \
             kills: {}; {} calls replayed",
            ids.len(),
            redelivered.len(),
            sent_again.len(),
            deaths
                .iter()
                .map(|d| format!(
                    "{} tasks running, {} runs interrupted, {} calls journaled",
                    d.running,
                    d.interrupted,
                    d.journaled_calls()
                ))
                .collect::<Vec<_>>()
                .join(" / "),
            replayed.len()
        );
    }
}

/// The seed path's final state, each step once, one charge and one reservation per item.
fn check_order(task: &Task, i: usize) {
    let order = &task.data["order"];
    let id = &task.id;
    assert_eq!(
        task.status,
        TaskStatus::Completed,
        "order {i} ({id}): {:?}",
        task.message
    );
    assert_eq!(order["status"], json!("processing_complete"), "order {i}");
    assert_eq!(order["orderProcessingComplete"], json!(true), "order {i}");

    // Every run succeeded and no step was started twice: interrupted runs re-ran in place.
    assert_each_step_ran_once_ok(task, &format!("order {i}"));
    for run in &task.runs {
        assert_eq!(run.number, 1, "order {i}: {} is its first run", run.step);
    }

    // Exactly one charge: one idempotency key among the successful charges, and the transaction
    // the order records is that key's.
    let charges = successful_calls(task, "stripe", "charge");
    assert_eq!(charges.len(), 1, "order {i}: one charge key, got {:?}", charges.keys());
    let key = charges.keys().next().copied().unwrap_or_default();
    assert_eq!(order["payment"]["transactionId"], json!(txn_for(key)), "order {i}");
    // One reservation per item, each under its own key.
    let items = order["items"].as_array().map(Vec::len).unwrap_or_default();
    let reservations = successful_calls(task, "inventorySystem", "reserve");
    assert_eq!(reservations.len(), items, "order {i}: one reservation per item");
}

/// Checks that what the dead servers had journaled for this task is what its re-runs saw,
/// replayed; returns the (task, run, call) checked.
fn check_replays(task: &Task, deaths: &[AtDeath]) -> BTreeSet<(String, u64, usize)> {
    let mut checked = BTreeSet::new();
    for death in deaths {
        for ((task_id, run_id), calls) in death.journal.iter().filter(|((t, _), _)| *t == task.id) {
            let run = task
                .runs
                .iter()
                .find(|r| r.id == *run_id)
                .expect("the interrupted run is in history");
            let journaled_calls = calls
                .iter()
                .enumerate()
                .filter_map(|(i, call)| Some((i, call.as_ref()?)));
            for (index, journaled) in journaled_calls {
                let seen = run.connector_calls.get(index).unwrap_or_else(|| {
                    panic!("{task_id} run {run_id}: journaled call {index} is not in the re-run's history")
                });
                assert_eq!(
                    (&seen.connector, &seen.method, &seen.result, &seen.idempotency_key),
                    (
                        &journaled.connector,
                        &journaled.method,
                        &journaled.result,
                        &journaled.idempotency_key
                    ),
                    "{task_id} run {run_id} call {index}: the re-run saw the journaled result"
                );
                assert!(
                    seen.replayed,
                    "{task_id} run {run_id} call {index} was replayed, not called again"
                );
                checked.insert((task_id.clone(), *run_id, index));
            }
        }
    }
    checked
}

/// Delivers order `i` once through `POST /v1/hooks/checkout` with its delivery id; answers the
/// status, the `Retry-After` header and the body.
async fn deliver_once(http: &reqwest::Client, base: &str, i: usize) -> (u16, Option<String>, Value) {
    let response = http
        .post(format!("{base}/v1/hooks/checkout"))
        .header("Idempotency-Key", delivery_id(i))
        .body(order(i).to_string())
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry_after, response.json().await.expect("a JSON answer"))
}

/// How one delivery was answered while the store filled up.
enum Answer {
    Accepted(usize, String),
    /// 503: the store could not take the order; it is to be delivered again.
    Refused(usize),
}

/// A store that cannot write for a while (its files at the process's file size limit, which
/// fails writes as a full disk does): the server stays up; new orders are refused with 503,
/// `Retry-After` and a message naming the storage; the drives under way stop at their last
/// commit and are driven again once writes succeed. A sender delivering its refused orders again
/// after the outage sees them accepted, and every order completes on the same process, each
/// step once and each charge once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_caught_by_a_full_store_complete_once_it_has_room_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let server = ServeProcess::start(&db, &[] as &[&str]);
    // Room for a few hundred orders' writes beyond what the start wrote.
    set_file_size_limit(server.pid(), Some(largest_file(dir.path()) + 300_000));

    let next = Arc::new(AtomicUsize::new(0));
    let full = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (http, base, next, full) = (server.http.clone(), server.base.clone(), next.clone(), full.clone());
        senders.spawn(async move {
            let mut answers = Vec::new();
            while !full.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                assert!(i < 5_000, "the store never filled up");
                let (status, retry_after, body) = deliver_once(&http, &base, i).await;
                if status == 201 {
                    answers.push(Answer::Accepted(i, body["id"].as_str().expect("id").to_string()));
                    continue;
                }
                assert_eq!(status, 503, "order {i}: {body}");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("storage unavailable"), "{message}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                answers.push(Answer::Refused(i));
                full.store(true, Ordering::SeqCst);
            }
            answers
        });
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    while let Some(answers) = senders.join_next().await {
        for answer in answers.expect("sender") {
            match answer {
                Answer::Accepted(i, id) => accepted.push((i, id)),
                Answer::Refused(i) => refused.push(i),
            }
        }
    }
    assert!(!refused.is_empty() && !accepted.is_empty());
    server
        .until(
            "drives under way to stop on the full store",
            Duration::from_secs(30),
            || async { server.metric("whenever_drives_failed_total").await >= 1 },
        )
        .await;
    assert!(server.count("running").await > 0, "orders wait for room, not failed");
    // A balancer is told to send this host no work while its store cannot write.
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, &ready["status"]), (503, &json!("not_ready")), "{ready}");
    assert!(
        ready["store"] != "ok" || ready["drives"] == "failing",
        "a check names the store: {ready}"
    );
    // `/metrics` answers meanwhile, and says the same.
    assert_eq!(server.metric("whenever_ready").await, 0);
    server.until_logged("not ready: ");

    // Room again: the stopped drives go on from their last commits by themselves, and the
    // refused orders, delivered again, are accepted.
    set_file_size_limit(server.pid(), None);
    for &i in &refused {
        let (status, _, task) = deliver_once(&server.http, &server.base, i).await;
        assert_eq!(status, 201, "order {i}, delivered again: {task}");
        accepted.push((i, task["id"].as_str().expect("id").to_string()));
    }
    server
        .until("every order to settle", Duration::from_secs(120), || async {
            server.count("running").await == 0
        })
        .await;
    server
        .until("the host to be ready again", Duration::from_secs(30), || async {
            server.get("/readyz").await.0 == 200
        })
        .await;
    server.until_logged("ready again");
    let numbers: BTreeSet<usize> = accepted.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        numbers,
        (0..next.load(Ordering::SeqCst)).collect(),
        "every order delivered was accepted, once"
    );
    assert_eq!(numbers.len(), accepted.len());
    let (status, page) = server.get("/v1/tasks?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["tasks"].as_array().map(Vec::len),
        Some(accepted.len()),
        "a refused delivery left no task behind"
    );
    for (i, id) in &accepted {
        let (status, answer) = server.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{answer}");
        let task: Task = serde_json::from_value(answer).expect("a task");
        assert_eq!(order_number(&task), *i);
        check_order(&task, *i);
    }
    eprintln!(
        "full store: {} orders accepted before it filled up, {} refused with 503 and accepted when sent \
         again, {} drives stopped and driven again",
        accepted.len() - refused.len(),
        refused.len(),
        server.metric("whenever_drives_failed_total").await
    );
}
