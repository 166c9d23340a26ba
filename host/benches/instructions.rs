//! Instructions per RetailMax order, counted by valgrind: the same figure for the same binary
//! and inputs whatever else the machine does. The service bench's orders/s move by 10% and more
//! from one minute to the next on these VMs, so a change of a few per cent on the hot path needs
//! ten alternating runs there; here one run of each binary tells it.
//!
//! `cargo bench -p whenever --bench instructions` runs this binary again under `valgrind
//! --tool=cachegrind --cache-sim=no` for each path, once with [`FEW`] orders and twice with
//! [`MANY`], and prints the instructions of one more order: the difference over the orders
//! between, so start-up (components loaded, the engine set up, the store opened) cancels out;
//! a first run with one order, not counted, fills the compile cache, so no counted run compiles
//! the steps. The two runs with [`MANY`] show how repeatable the count is. Counted: the instructions of
//! every thread in user space (the steps' compiled code, the host, SQLite, the allocator); not
//! counted: the kernel's work (writes, fsync, wake-ups) and time spent waiting, which the
//! service bench's CPU ms per order include. The engine's pool is 4 instances (`[runtime]
//! max_instances`): valgrind cannot reserve the default pool's address space.
//!
//! The HTTP path posts each order to a webhook, as the service bench's senders do, so that what
//! the API adds (reading the body, answering with the task) is counted too; its client is kept
//! lean (the body written from a template, only the answer's id read), and what it costs is the
//! same for any server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use whenever::service::{Service, ServiceOptions};
use whenever::store::sqlite::{SqliteOptions, SqliteStore};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

mod seed_orders;
use seed_orders::{order, order_text};

/// What the seed orders' ids begin with ([`seed_orders`]).
const ORDER_ID_PREFIX: &str = "ORD-COUNTED-";

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Orders in the shorter run.
const FEW: usize = 10;
/// Orders in the longer runs.
const MANY: usize = 60;

/// The paths measured: a name for the table, and the argument the child runs it by.
const PATHS: [(&str, &str); 3] = [
    ("in process, no store (Scheduler::drive), 1 client", "drive"),
    (
        "in process (Service API) + SQLite, synchronous=full, 1 waiting client",
        "service",
    ),
    (
        "HTTP webhooks + SQLite, synchronous=full, 1 sender (the client's instructions too)",
        "http",
    ),
];

fn main() {
    whenever::allocator::configure();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let path = args.get(at + 1).map(String::as_str).unwrap_or_default();
        let orders = args.get(at + 2).and_then(|n| n.parse().ok()).unwrap_or(FEW);
        child(path, orders);
        return;
    }
    let filter = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("valgrind is not installed: nothing measured");
        return;
    }
    let this = std::env::current_exe().expect("this binary's path");
    println!(
        "RetailMax seed orders, instructions counted by valgrind (cachegrind, no cache simulation), all threads, user \
         space only; one more order = (count with {MANY} orders - count with {FEW}) / {}",
        MANY - FEW
    );
    println!("| path | instructions, {FEW} orders | {MANY} orders (two runs) | one more order | its spread |");
    println!("|---|---:|---:|---:|---:|");
    for (name, path) in PATHS.iter().filter(|(name, _)| name.contains(filter.as_str())) {
        warm_up(&this, path);
        let few = counted(&this, path, FEW);
        let many = [counted(&this, path, MANY), counted(&this, path, MANY)];
        assert!(
            many.iter().all(|&many| many > few),
            "{name}: a run of {MANY} orders counted fewer instructions ({many:?}) than one of {FEW} ({few}): \
             something other than the orders (compiling the steps?) was counted"
        );
        let per_order = |many: u64| (many - few) / (MANY - FEW) as u64;
        let (a, b) = (per_order(many[0]), per_order(many[1]));
        println!(
            "| {name} | {} | {} / {} | {} | {:.2}% |",
            thousands(few),
            thousands(many[0]),
            thousands(many[1]),
            thousands((a + b) / 2),
            a.abs_diff(b) as f64 * 100.0 / a.max(1) as f64
        );
    }
}

/// Runs the child of `path` once with one order under valgrind, its count unused: the steps are
/// compiled into the compile cache then, not in the first counted run. Under valgrind, not
/// natively: the engine sees fewer CPU features there (no AVX-512), so the code it compiles, and
/// the cache's key, differ. On a fresh machine that compilation counted 14.7 billion
/// instructions into the run of [`FEW`] orders.
fn warm_up(this: &Path, path: &str) {
    counted(this, path, 1);
}

/// The instructions valgrind counted in this binary's child run of `path` with `orders` orders.
fn counted(this: &Path, path: &str, orders: usize) -> u64 {
    let output = Command::new("valgrind")
        .args(["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"])
        .arg(this)
        .args(["--child", path, &orders.to_string()])
        .output()
        .expect("valgrind runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed under valgrind:\n{stderr}");
    stderr
        .lines()
        .find_map(|line| {
            // `==PID== I   refs:      483,044,769`
            let (before, count) = line.split_once("refs:")?;
            before.trim_end().ends_with(" I").then_some(())?;
            count.trim().replace(',', "").parse().ok()
        })
        .unwrap_or_else(|| panic!("no `I refs` in valgrind's output:\n{stderr}"))
}

/// The child: `orders` seed orders through `path`, one after the other, each to completion.
fn child(path: &str, orders: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("whenever.toml");
    std::fs::write(&config, "[runtime]\nmax_instances = 4\n").expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        match path {
            "drive" => drive(&config, orders).await,
            "service" => service(dir.path(), &config, orders).await,
            "http" => http(dir.path(), &config, orders).await,
            other => panic!("no path `{other}`"),
        }
    });
}

async fn drive(config: &Path, orders: usize) {
    let host = Host::start(&HostOptions {
        config: Some(config.to_path_buf()),
        ..HostOptions::default()
    })
    .await
    .expect("host");
    for n in 0..orders {
        let mut task = Task::new(order(n));
        let status = host.scheduler.drive(&mut task, &mut |_| {}).await;
        assert_eq!(status, TaskStatus::Completed, "{:?}", task.message);
    }
}

/// The service over SQLite, as `whenever serve` runs it (but for the pool's size).
async fn started_service(dir: &Path, config: &Path) -> Service {
    let host = Host::start(&HostOptions {
        config: Some(config.to_path_buf()),
        no_steps: true,
        ..HostOptions::default()
    })
    .await
    .expect("host");
    let db: PathBuf = dir.join("whenever.db");
    let store = SqliteStore::open(&db, SqliteOptions::default()).expect("store");
    let options = ServiceOptions {
        db,
        config: Some(config.to_path_buf()),
        ..ServiceOptions::default()
    };
    Service::with_store(host, Arc::new(store), &options)
        .await
        .expect("service")
}

/// Waits for task `id` to settle, and checks that it completed.
async fn completes(service: &Service, id: &str) {
    let settled = service
        .wait_settled(id, Duration::from_secs(600))
        .await
        .expect("settled");
    assert_eq!(settled.task.status, TaskStatus::Completed, "{:?}", settled.task.message);
}

async fn service(dir: &Path, config: &Path, orders: usize) {
    let service = started_service(dir, config).await;
    for n in 0..orders {
        let id = service
            .create_task_then(order(n), |created| created.task.id.clone())
            .await
            .expect("created");
        completes(&service, &id).await;
    }
}

/// Each order posted to a webhook of the service's HTTP API (on its own thread, as `whenever
/// serve` runs it) over one kept-alive HTTP/1.1 connection, answered `201` with the task as
/// created, as the service bench's senders post them; its completion is awaited in process.
/// The client's instructions (writing the order, reading the answer) are counted too: the same
/// for any server.
async fn http(dir: &Path, config: &Path, orders: usize) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let service = started_service(dir, config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(whenever::api::serve_on_own_thread(
        listener,
        service.clone(),
        whenever::api::ApiOptions {
            max_body_bytes: 1 << 20,
            ..whenever::api::ApiOptions::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    for n in 0..orders {
        let body = order_text(n);
        let request = hyper::Request::post("/v1/hooks/counted")
            .header(hyper::header::HOST, "counted")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        sender.ready().await.expect("the connection is open");
        let response = sender.send_request(request).await.expect("delivered");
        assert_eq!(response.status().as_u16(), 201);
        let answer = response.into_body().collect().await.expect("body").to_bytes();
        let created: Created = serde_json::from_slice(&answer).expect("a task as JSON");
        completes(&service, &created.id).await;
    }
    drop(sender);
    let _ = connection.await;
    let _ = stop.send(());
    server.await.expect("the server's task").expect("served");
}

/// What the HTTP child reads of an answer: its id alone, so that the client's share of the count
/// stays small (the rest of the task is skipped, not built as a `Value`).
#[derive(serde::Deserialize)]
struct Created {
    id: String,
}

/// `n` with thousands separated, for people.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
