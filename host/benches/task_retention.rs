//! Retention on SQLite: how fast a sweep deletes a backlog of completed RetailMax orders with
//! their history (`[retention]`, `Service::sweep_retention`), and what a sweep running beside
//! live orders costs them.
//!
//! Each run fills a fresh database (`synchronous = full`, the bundled steps, two tokio workers)
//! with completed orders: they are stored accepted and the service drives them all. Then:
//! 1. the sweep alone deletes them (tasks deleted per second; the database's size before and
//!    after: SQLite reuses the freed pages, the file does not shrink);
//! 2. the database is filled again, and 16 clients in process each send an order and wait for it
//!    to complete, for 3 s, alone;
//! 3. then for 3 s more while a sweep deletes the new backlog beside them.
//!
//! Three runs, one line each.
//! `cargo bench -p whenever --bench task_retention [-- ORDERS]` (default 10,000 orders).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use whenever::service::{Service, ServiceOptions};
use whenever::store::Store;
use whenever::store::sqlite::SqliteStore;
use whenever::task::{Task, TaskStatus};

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;
const CLIENTS: usize = 16;
const WINDOW: Duration = Duration::from_secs(3);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    // As the `whenever` binary does (whenever::allocator).
    whenever::allocator::configure();
    let orders: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    println!("Retention: sweeps of {orders} completed RetailMax orders on SQLite; 2 tokio worker threads");
    println!(
        "| run | sweep alone: tasks/s | database MB before / after | live orders/s alone (p99 ms) | live orders/s beside a sweep (p99 ms) | that sweep: tasks/s |"
    );
    println!("|---|---:|---|---|---|---:|");
    for run in 1..=RUNS {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("whenever.db");
        let config = dir.path().join("whenever.toml");
        // Completed orders are kept a day; the service's own sweeps (hourly) stay out of the way.
        std::fs::write(&config, "[retention]\ncompleted_days = 1\nsweep_ms = 3600000\n").expect("config");
        let options = ServiceOptions {
            db: db.clone(),
            config: Some(config),
            ..ServiceOptions::default()
        };
        let runtime = runtime();
        let line = runtime.block_on(async {
            // The bundled steps, deployed into the store (and compiled into the cache) once.
            drop(Service::start(&options).await.expect("service"));
            fill(&db, orders).await;
            let service = Service::start(&options).await.expect("service");
            settled(&service, orders).await;
            let before_mb = megabytes(&db);
            let started = Instant::now();
            let deleted = sweep(&service).await;
            let sweep_alone = deleted as f64 / started.elapsed().as_secs_f64();
            let after_mb = megabytes(&db);
            assert_eq!(deleted, orders as u64, "every completed order was past its limit");

            fill(&db, orders).await;
            let service = Service::start(&options).await.expect("service");
            settled(&service, orders).await;
            let (alone, alone_p99) = live(&service).await;
            let sweeping = {
                let service = service.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let deleted = sweep(&service).await;
                    deleted as f64 / started.elapsed().as_secs_f64()
                })
            };
            let (beside, beside_p99) = live(&service).await;
            let sweep_beside = sweeping.await.expect("sweep");
            format!(
                "| {run} | {sweep_alone:.0} | {before_mb:.1} / {after_mb:.1} | {alone:.0} ({alone_p99:.1}) | {beside:.0} ({beside_p99:.1}) | {sweep_beside:.0} |"
            )
        });
        println!("{line}");
    }
}

/// Stores `orders` accepted seed orders, not yet driven, in the database (the service drives
/// them when it starts).
async fn fill(db: &Path, orders: usize) {
    let store = Arc::new(SqliteStore::open(db, Default::default()).expect("store"));
    let seed = whenever::demo::seed_order();
    let mut stored = tokio::task::JoinSet::new();
    for _ in 0..orders {
        let store = store.clone();
        let task = Task::new(seed.clone());
        stored.spawn(async move { store.create_task(&task).await.expect("stored") });
    }
    stored.join_all().await;
}

/// Waits until nothing runs any more, and checks that `orders` completed.
async fn settled(service: &Service, orders: usize) {
    loop {
        let counts = service.store().count_tasks().await.expect("counts");
        if counts.get(&TaskStatus::Running).copied().unwrap_or(0) == 0 {
            assert!(
                counts.get(&TaskStatus::Completed).copied().unwrap_or(0) >= orders as u64,
                "{counts:?}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sweep as of a day from now: with completed orders kept a day, every order completed
/// before now is past its limit, and orders completing from now on are not.
async fn sweep(service: &Service) -> u64 {
    let later = Utc::now() + chrono::Duration::days(1);
    service.sweep_retention(later).await.expect("sweep")
}

/// 16 clients each sending a seed order and waiting for it to complete, for the window: orders
/// per second and the p99 latency in ms.
async fn live(service: &Service) -> (f64, f64) {
    let seed = whenever::demo::seed_order();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let service = service.clone();
        let seed = seed.clone();
        clients.spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < WINDOW {
                let sent = Instant::now();
                let task = service.create_task_then(seed.clone(), |t| t.task.id.clone()).await;
                let id = task.expect("created");
                let done = service
                    .wait_settled(&id, Duration::from_secs(60))
                    .await
                    .expect("settled");
                assert_eq!(done.task.status, TaskStatus::Completed);
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = clients.join_all().await.into_iter().flatten().collect();
    let took = started.elapsed();
    latencies.sort();
    let p99 = latencies
        .get(((latencies.len().max(1) - 1) as f64 * 0.99).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    (latencies.len() as f64 / took.as_secs_f64(), p99)
}

/// The database's size (file and WAL) in MB.
fn megabytes(db: &Path) -> f64 {
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let wal = db.with_extension("db-wal");
    (size(db) + size(&wal)) as f64 / 1e6
}
