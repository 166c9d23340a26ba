//! A restart with a backlog: a server dies with thousands of accepted RetailMax orders not yet
//! driven, and starts again. Printed: how long the backlog takes to drain (orders/s), and how
//! long the reads an operator makes meanwhile wait: the task counts `/metrics` shows and the
//! first page of the running tasks (`whenever tasks --status running`), each asked every 20 ms.
//! The drain is also measured alone (the counts asked every 250 ms), since an operator's reads
//! answered quickly are more reads, which take their share of the two cores.
//!
//! Each run stores the backlog in a fresh SQLite database (`synchronous = full`), with the
//! bundled steps, then starts the service on it on two tokio workers. Three runs of each kind,
//! in turn, one line each.
//!
//! `cargo bench -p whenever --bench restart [-- ORDERS]` (default 3,000 orders).

use std::sync::Arc;
use std::time::{Duration, Instant};

use whenever::service::{Service, ServiceOptions};
use whenever::store::sqlite::SqliteStore;
use whenever::store::{Store, TaskQuery};
use whenever::task::{Task, TaskStatus};

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;
/// How often the operator's reads are made while the backlog drains.
const READ_EVERY: Duration = Duration::from_millis(20);
/// How often the counts are asked when the drain is measured alone.
const POLL_EVERY: Duration = Duration::from_millis(250);

fn main() {
    // As the `whenever` binary does (whenever::allocator).
    whenever::allocator::configure();
    let orders: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3_000);
    println!("A restart with {orders} RetailMax orders accepted and not yet driven; 2 tokio worker threads");
    println!(
        "| run | operator reading | drained in s | orders/s | count reads: n, p50 / p99 / max ms | listing reads: n, p50 / p99 / max ms |"
    );
    println!("|---|---|---:|---:|---|---|");
    for (run, reading) in (1..=RUNS).flat_map(|run| [(run, true), (run, false)]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("whenever.db");
        let options = ServiceOptions {
            db: db.clone(),
            ..ServiceOptions::default()
        };
        runtime().block_on(async {
            // The bundled steps, deployed into the store (and compiled into the cache) once.
            Service::start(&options).await.expect("service");
        });
        runtime().block_on(async {
            let store = SqliteStore::open(&db, Default::default()).expect("store");
            let seed = whenever::demo::seed_order();
            let mut stored = tokio::task::JoinSet::new();
            let store = Arc::new(store);
            for _ in 0..orders {
                let store = store.clone();
                let task = Task::new(seed.clone());
                stored.spawn(async move { store.create_task(&task).await.expect("stored") });
            }
            stored.join_all().await;
        });
        let (drained, counts, listings) = runtime().block_on(drain(&options, orders, reading));
        let secs = drained.as_secs_f64();
        println!(
            "| {run} | {} | {secs:.2} | {:.0} | {} | {} |",
            if reading {
                "every 20 ms"
            } else {
                "no (counts every 250 ms)"
            },
            orders as f64 / secs,
            summary(counts),
            summary(listings)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// Starts the service on the backlog and, when `reading`, reads as an operator would until every
/// order completed: the time to drain it, and how long each count and each listing took.
async fn drain(options: &ServiceOptions, orders: usize, reading: bool) -> (Duration, Vec<Duration>, Vec<Duration>) {
    let started = Instant::now();
    let service = Service::start(options).await.expect("service");
    let store = service.store().clone();
    let running = TaskQuery {
        status: Some(TaskStatus::Running),
        tag: None,
        limit: 20,
        cursor: None,
    };
    let (mut counts, mut listings) = (Vec::new(), Vec::new());
    loop {
        let asked = Instant::now();
        let tally = store.count_tasks().await.expect("counts");
        counts.push(asked.elapsed());
        let completed = tally.get(&TaskStatus::Completed).copied().unwrap_or(0);
        if completed == orders as u64 {
            let drained = started.elapsed();
            return (drained, counts, listings);
        }
        assert!(
            tally
                .keys()
                .all(|s| matches!(s, TaskStatus::Completed | TaskStatus::Running)),
            "{tally:?}"
        );
        if !reading {
            tokio::time::sleep(POLL_EVERY).await;
            continue;
        }
        let asked = Instant::now();
        store.list_tasks(&running).await.expect("listing");
        listings.push(asked.elapsed());
        tokio::time::sleep(READ_EVERY).await;
    }
}

fn summary(mut took: Vec<Duration>) -> String {
    took.sort();
    let at = |q: f64| {
        took.get(((took.len().max(1) - 1) as f64 * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    format!("{}, {:.1} / {:.1} / {:.1}", took.len(), at(0.5), at(0.99), at(1.0))
}
