//! `whenever backup` while orders flow: the copy is a whole store, and a server started on it
//! has every order that had completed, and drives the ones that were under way to the end.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{ServeProcess, whenever_binary};

/// The seed's order with its own order id.
fn order(i: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-BACKUP-{i:04}"));
    order
}

fn backup(db: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    Command::new(whenever_binary())
        .args(["backup", "--db"])
        .arg(db)
        .arg(to)
        .output()
        .expect("whenever backup runs")
}

/// What a copy held under way: its running tasks, and their runs started and not finished.
#[derive(Debug)]
struct UnderWay {
    running: Vec<String>,
    interrupted: usize,
}

impl UnderWay {
    async fn read(copy: &Path) -> UnderWay {
        let running = support::under_way(copy).await;
        UnderWay {
            interrupted: running.iter().map(|(_, runs)| runs.len()).sum(),
            running: running.into_iter().map(|(id, _)| id).collect(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_under_load_is_a_store_a_server_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let server = ServeProcess::start(&db, &[] as &[&str]);
    let mut completed = Vec::new();
    for i in 0..10 {
        let (status, task) = server.post("/v1/tasks?wait=20000", &order(i)).await;
        assert_eq!(status, 201, "{task}");
        assert_eq!(task["status"], "completed", "{task}");
        completed.push(task["id"].as_str().expect("id").to_string());
    }
    // Orders keep arriving while the copy is made.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(10));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, base, stop, sent) = (server.http.clone(), server.base.clone(), stop.clone(), sent.clone());
        senders.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = sent.fetch_add(1, Ordering::SeqCst);
                let response = http
                    .post(format!("{base}/v1/hooks/checkout"))
                    .body(order(i).to_string())
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(response.status().as_u16(), 201);
            }
        });
    }
    server
        .until("orders to be under way", Duration::from_secs(20), || async {
            server.count("running").await > 0 || sent.load(Ordering::SeqCst) > 40
        })
        .await;
    // A copy made while orders are under way holds some running: the copy is made again (under
    // another name) until one does, so that the server on it has runs to finish.
    let mut attempt = 0;
    let (copy, under_way) = loop {
        let copy = dir.path().join(format!("backup-{attempt}.db"));
        let output = backup(&db, &copy);
        let printed = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            printed.contains("backed up") && printed.contains("14 step versions"),
            "{printed}"
        );
        let under_way = UnderWay::read(&copy).await;
        if !under_way.running.is_empty() {
            break (copy, under_way);
        }
        attempt += 1;
        assert!(attempt < 20, "no copy of 20 held an order under way");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        under_way.interrupted > 0,
        "the running orders in the copy have runs started and not finished: {under_way:?}"
    );
    // Made again onto the same name: refused, the first copy untouched.
    let before = std::fs::read(&copy).expect("the copy");
    let again = backup(&db, &copy);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read(&copy).expect("the copy"), before);
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }
    server.kill();

    // A server on the copy: the completed orders are there; what was under way completes.
    let restored = ServeProcess::start(&copy, &[] as &[&str]);
    for id in &completed {
        let (status, task) = restored.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["status"], "completed", "{task}");
    }
    restored
        .until("every order in the copy to settle", Duration::from_secs(60), || async {
            restored.count("running").await == 0
        })
        .await;
    for id in &under_way.running {
        let (status, task) = restored.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{task}");
        assert_eq!(
            task["status"], "completed",
            "under way in the copy, driven to the end: {task}"
        );
    }
    let total = restored.count("completed").await;
    assert!(
        total > completed.len(),
        "orders that arrived during the copy are in it: {total}"
    );
    assert_eq!(restored.count("failed").await + restored.count("waiting").await, 0);
}
