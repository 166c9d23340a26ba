//! RetailMax orders through the service, printed as one table: orders per second and latency per
//! order (p50, p99) on the seed path (every order completes):
//!
//! - through the HTTP API: each client delivers an order to `POST /v1/hooks/bench?wait=60000` and
//!   waits for the answer, which comes once the task has completed (so the latency is "webhook
//!   sent → task completed", acceptance included), with SQLite durability (`synchronous = full`,
//!   the default, and `normal`);
//! - in process through the service API (`Service::create_task` then `wait_settled`), same store;
//! - the bare scheduler (`Scheduler::drive`), no store at all.
//!
//! Clients run closed loops (an order, then the next) for a fixed window after a warm-up; server
//! and clients share one tokio runtime with two worker threads, as on a 2-core machine.
//!
//! `cargo bench -p whenever --bench service`

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whenever::api::{self, ApiOptions};
use whenever::service::{Service, ServiceOptions};
use whenever::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

const WARMUP: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(3);

/// One line of the table.
struct Row {
    path: &'static str,
    clients: usize,
    orders: usize,
    window: Duration,
    latencies: Vec<Duration>,
}

fn order(n: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-BENCH-{n:07}"));
    order
}

/// Runs `clients` closed loops of `one` for the warm-up and the window; counts and times the
/// orders started in the window.
async fn closed_loop<F, Fut>(path: &'static str, clients: usize, one: F) -> Row
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let window_start = started + WARMUP;
    let window_end = window_start + WINDOW;
    let mut loops = tokio::task::JoinSet::new();
    for client in 0..clients {
        let one = one.clone();
        loops.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            loop {
                let at = Instant::now();
                if at >= window_end {
                    return latencies;
                }
                one(client * 1_000_000 + n).await;
                n += 1;
                if at >= window_start {
                    latencies.push(at.elapsed());
                }
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = loops.join_next().await {
        latencies.extend(done.expect("client"));
    }
    let window = started.elapsed().saturating_sub(WARMUP);
    Row { path, clients, orders: latencies.len(), window, latencies }
}

/// A service with the bundled RetailMax steps on a fresh SQLite file.
async fn service(dir: &tempfile::TempDir, synchronous: Synchronous) -> Service {
    let host = Host::start(&HostOptions { no_steps: true, ..HostOptions::default() }).await.expect("host");
    let db = dir.path().join(format!("{synchronous:?}.db"));
    let store = SqliteStore::open(&db, SqliteOptions { synchronous }).expect("store");
    let options = ServiceOptions { db, ..ServiceOptions::default() };
    Service::with_store(host, Arc::new(store), &options).await.expect("service")
}

async fn http_row(path: &'static str, clients: usize, synchronous: Synchronous) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/hooks/bench?wait=60000", listener.local_addr().expect("addr"));
    let options = ApiOptions { max_body_bytes: 1 << 20, max_component_bytes: 64 << 20, ..ApiOptions::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, service, options, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let row = closed_loop(path, clients, move |n| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http.post(&url).body(order(n).to_string()).send().await.expect("delivered");
            assert_eq!(response.status().as_u16(), 201);
            let task: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
            assert_eq!(task["status"], "completed", "{}", task["message"]);
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    row
}

async fn service_row(path: &'static str, clients: usize, synchronous: Synchronous) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous).await;
    closed_loop(path, clients, move |n| {
        let service = service.clone();
        async move {
            let task = service.create_task(order(n)).await.expect("created");
            let settled = service.wait_settled(&task.id, Duration::from_secs(60)).await.expect("settled");
            assert_eq!(settled.task.status, TaskStatus::Completed, "{:?}", settled.task.message);
        }
    })
    .await
}

async fn drive_row(path: &'static str, clients: usize) -> Row {
    let host = Host::start(&HostOptions::default()).await.expect("host");
    let scheduler = host.scheduler.clone();
    closed_loop(path, clients, move |n| {
        let scheduler = scheduler.clone();
        async move {
            let mut task = Task::new(order(n));
            let status = scheduler.drive(&mut task, &mut |_| {}).await;
            assert_eq!(status, TaskStatus::Completed, "{:?}", task.message);
        }
    })
    .await
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

/// What a row measures.
#[derive(Clone, Copy)]
enum Kind {
    Http(Synchronous),
    Service(Synchronous),
    Drive,
}

const ROWS: &[(&str, usize, Kind)] = &[
    ("HTTP API, SQLite synchronous=full", 1, Kind::Http(Synchronous::Full)),
    ("HTTP API, SQLite synchronous=full", 16, Kind::Http(Synchronous::Full)),
    ("HTTP API, SQLite synchronous=normal", 16, Kind::Http(Synchronous::Normal)),
    ("service API in process, SQLite synchronous=full", 1, Kind::Service(Synchronous::Full)),
    ("service API in process, SQLite synchronous=full", 16, Kind::Service(Synchronous::Full)),
    ("Scheduler::drive, no store", 1, Kind::Drive),
    ("Scheduler::drive, no store", 16, Kind::Drive),
];

/// `cargo bench -p whenever --bench service [-- FILTER]`: the rows whose path contains FILTER.
fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for (path, clients, kind) in ROWS.iter().copied().filter(|(path, _, _)| path.contains(filter.as_str())) {
            rows.push(match kind {
                Kind::Http(synchronous) => http_row(path, clients, synchronous).await,
                Kind::Service(synchronous) => service_row(path, clients, synchronous).await,
                Kind::Drive => drive_row(path, clients).await,
            });
        }
        rows
    });
    println!(
        "RetailMax seed orders; {} s per row after {} ms warm-up; 2 tokio workers",
        WINDOW.as_secs(),
        WARMUP.as_millis()
    );
    println!("| path | clients | orders | orders/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for mut row in rows {
        row.latencies.sort();
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            row.path,
            row.clients,
            row.orders,
            row.orders as f64 / row.window.as_secs_f64(),
            percentile(&row.latencies, 0.5),
            percentile(&row.latencies, 0.99)
        );
    }
}
