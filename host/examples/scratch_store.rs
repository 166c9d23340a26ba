// TEMPORARY measurement scratch; deleted after profiling.
use std::sync::Arc;
use std::time::Instant;
use whenever::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use whenever::store::{Store, TaskSave};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let host = Host::start(&HostOptions::default()).await.unwrap();
    let mut task = Task::new(whenever::demo::seed_order());
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    assert_eq!(task.status, TaskStatus::Completed);
    let data_len = task.data.to_string().len();
    let runs_len: usize = task.runs.iter().map(|r| serde_json::to_string(r).unwrap().len()).sum();
    let calls: usize = task.runs.iter().map(|r| r.connector_calls.len()).sum();
    println!(
        "data {data_len} B, runs {} totalling {runs_len} B, {calls} calls",
        task.runs.len()
    );
    let n = 300;
    // serialisation costs
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(task.data.to_string());
    }
    println!("data to_string: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let text = serde_json::to_string(&task.runs).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let v: Vec<whenever::task::RunRecord> = serde_json::from_str(&text).unwrap();
        std::hint::black_box(v);
    }
    println!("runs decode: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(task.clone());
    }
    println!("task clone: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(serde_json::to_vec(&task).unwrap());
    }
    println!("task to_vec: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("x.db"), SqliteOptions { synchronous: sync }).unwrap());
        let mut ids = Vec::new();
        let t = Instant::now();
        for i in 0..n {
            let mut t2 = task.clone();
            t2.id = format!("t{i}");
            store.create_task(&t2).await.unwrap();
            ids.push(t2.id);
        }
        println!(
            "{sync:?} create (sequential): {:.1} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let t = Instant::now();
        for id in &ids {
            std::hint::black_box(store.get_task(id).await.unwrap());
        }
        println!(
            "{sync:?} get_task: {:.1} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let all: Vec<u64> = (0..task.runs.len() as u64).collect();
        let t = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            let mut t2 = task.clone();
            t2.id = id.clone();
            let _ = i;
            store
                .save_task(TaskSave {
                    task: &t2,
                    expected_revision: 1,
                    runs: &all[..2],
                    starting: &[],
                    input: Some(&task.data),
                })
                .await
                .unwrap();
        }
        println!(
            "{sync:?} save_task 2 runs (sequential): {:.1} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let call = task
            .runs
            .iter()
            .flat_map(|r| r.connector_calls.iter())
            .next()
            .unwrap()
            .clone();
        let t = Instant::now();
        for id in &ids {
            store.journal_call(id, 0, 0, &call).await.unwrap();
        }
        println!(
            "{sync:?} journal_call (sequential): {:.1} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        // concurrent journal calls: 64 at once
        let t = Instant::now();
        let mut js = tokio::task::JoinSet::new();
        for (k, id) in ids.iter().enumerate() {
            let s = store.clone();
            let id = id.clone();
            let c = call.clone();
            js.spawn(async move { s.journal_call(&id, 1, k, &c).await.unwrap() });
        }
        while js.join_next().await.is_some() {}
        println!(
            "{sync:?} journal_call ({n} concurrent): {:.1} us each",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
