//! RetailMax orders through the service, printed as one table: orders per second and latency per
//! order (p50, p99) on the seed path (every order completes; eight step runs and eight connector
//! calls each).
//!
//! Two ways to load it:
//! - **waiting clients**: each client sends an order and waits for it to complete before sending
//!   the next (`POST /v1/hooks/bench?wait=60000`, whose answer comes once the task completed;
//!   in process, `Service::create_task` then `wait_settled`; or `Scheduler::drive`). Latency is
//!   order sent → task completed, acceptance included. Throughput is bounded by
//!   clients ÷ latency.
//! - **webhook senders**: each sender delivers orders as fast as they are accepted (`201` once
//!   the task is durably stored), keeping at most 32 of its orders unfinished; the server drives
//!   up to 512 at once. Latency is webhook accepted → task completed (completion as the service
//!   announces it, [`Service::settled`]). This is how a shop's checkout feeds the service, and
//!   where grouped commits pay: one fsync serves every write waiting for it.
//!
//! Where the load comes from: the clients (HTTP clients, or callers of the Service API) and the
//! listener that hears of their orders' completions run on a thread of their own with a
//! single-threaded runtime, as clients elsewhere would, sharing the same two cores; the HTTP API
//! serves from its own thread as `whenever serve` does ([`api::serve_on_own_thread`]); the drives
//! run on the service's drive threads. The store-less rows drive in the clients' own tasks, on
//! the two workers of the main runtime.
//!
//! Durability: SQLite in WAL mode with `synchronous = full` (fsync at every group commit; survives
//! power loss) or `normal` (survives `kill -9`, not a power cut); the bare scheduler row has no
//! store at all. Each row starts a fresh service on a fresh database, warms up for 0.5 s and
//! measures for 3 s; every row is measured three times, in rounds over all rows, and the run with
//! the median throughput is shown with the other two beside it (this machine is a VM whose
//! neighbours take CPU now and then: the last line says how much); server, drives and clients
//! share the machine's two cores (see above for their threads). "CPU ms/order" is the process's
//! CPU time (both cores, clients included) per order: what the throughput would be on two
//! otherwise idle cores is about 2,000 ÷ that figure. "written KB/order" is what the process wrote
//! to files per order (SQLite's WAL frames and checkpoints): unlike time, it does not move with
//! the machine's load.
//!
//! The store-less rows: with 1 or 16 waiting clients each order is driven in its client's task
//! (`Scheduler::drive`: nothing pends, so each drive runs through at once); with 512, each
//! commit of `Scheduler::drive_durable` only yields, so that 512 orders interleave as the
//! 16-sender rows' do (16 × 32 unfinished). That row is what those rows' drives cost without
//! their store, with as many orders' data gone cold between their waves.
//!
//! HTTPS: the row so labelled is the 16 senders' row over TLS (rustls, TLS 1.3, a P-256
//! certificate from a CA made for the run; connections kept alive, so a handshake per sender, not
//! per order): what encryption costs per order.
//!
//! HTTP/2: the 16 senders' row with every delivery over one HTTP/2 connection in clear (h2c with
//! prior knowledge), the 16 senders' deliveries as streams side by side on it: what multiplexing
//! costs or saves against a kept-alive HTTP/1.1 connection per sender.
//!
//! Steps given: the bundled steps' manifests list the paths each step `reads`, so each run is
//! given its view of the order; the "whole data" rows load the same components with those lists
//! removed, so each run is given (and parses, serializes and has diffed) the whole order.
//!
//! `cargo bench -p whenever --bench service [-- FILTER]`: only the rows whose
//! `PATH / N LOAD / STEPS GIVEN` (e.g. `HTTP API + SQLite, synchronous=full / 16 senders / whole`)
//! contains FILTER. With `WHENEVER_BENCH_CONFIG=FILE`, every host starts with that config file
//! (`whenever serve --config`), to measure a setting (`[server] max_concurrent_tasks`, say)
//! without a build of its own; the table's first line names it.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use whenever::api::tls::Tls;
use whenever::api::{self, ApiOptions};
use whenever::service::{Service, ServiceOptions};
use whenever::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use whenever::task::{Task, TaskStatus};
use whenever::{Host, HostOptions};

mod seed_orders;
use seed_orders::{order, order_text};

/// What the seed orders' ids begin with ([`seed_orders`]).
const ORDER_ID_PREFIX: &str = "ORD-BENCH-";

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the clients run: a thread of their own, with a single-threaded runtime (see the module
/// docs).
static CLIENTS: LazyLock<tokio::runtime::Handle> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the clients' runtime");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("bench-clients".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .expect("the clients' thread");
    handle
});

const WARMUP: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(3);
/// How many times each row is measured.
const ROUNDS: usize = 3;
/// Unfinished orders a webhook sender keeps.
const DEPTH: usize = 32;

/// One line of the table.
struct Row {
    path: &'static str,
    load: String,
    /// What the steps were given to read ([`Given::label`]).
    given: &'static str,
    orders: usize,
    window: Duration,
    latencies: Vec<Duration>,
    /// CPU time of the whole process per order over the whole row (warm-up included).
    cpu_per_order: Duration,
    /// Bytes the process wrote (the database's WAL and checkpoints) per order, likewise.
    written_per_order: f64,
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux; zero
/// elsewhere), in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let Some(rest) = stat.rsplit(')').next() else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or_default();
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Bytes this process has written so far (`wchar` of `/proc/self/io`; zero elsewhere).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_default()
}

/// Bytes written per order since `since`.
fn written_per_order(since: u64, orders: usize) -> f64 {
    written_bytes().saturating_sub(since) as f64 / orders.max(1) as f64
}

/// CPU time per order between `since` and now.
fn cpu_per_order(since: Duration, orders: usize) -> Duration {
    cpu_time().saturating_sub(since) / u32::try_from(orders.max(1)).unwrap_or(u32::MAX)
}

/// CPU time the hypervisor gave other guests while this machine wanted it (`steal` in
/// `/proc/stat`, summed over cores; zero where not reported), in clock ticks of 10 ms.
fn steal_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let steal = stat
        .lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(8))
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or_default();
    Duration::from_millis(steal * 10)
}

/// Runs `clients` closed loops of `one` on `on` for the warm-up and the window; counts and times
/// the orders started in the window.
async fn waiting_clients<F, Fut>(path: &'static str, clients: usize, on: &tokio::runtime::Handle, one: F) -> Row
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let cpu = cpu_time();
    let written = written_bytes();
    let started = Instant::now();
    let window_start = started + WARMUP;
    let window_end = window_start + WINDOW;
    let all = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for client in 0..clients {
        let all = all.clone();
        let one = one.clone();
        loops.spawn_on(
            async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                loop {
                    let at = Instant::now();
                    if at >= window_end {
                        return latencies;
                    }
                    one(client * 1_000_000 + n).await;
                    n += 1;
                    all.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if at >= window_start {
                        latencies.push(at.elapsed());
                    }
                }
            },
            on,
        );
    }
    let mut latencies = Vec::new();
    while let Some(done) = loops.join_next().await {
        latencies.extend(done.expect("client"));
    }
    let window = started.elapsed().saturating_sub(WARMUP);
    let load = format!("{clients} waiting client{}", if clients == 1 { "" } else { "s" });
    let all = all.load(std::sync::atomic::Ordering::Relaxed);
    Row {
        path,
        load,
        given: "",
        orders: latencies.len(),
        window,
        latencies,
        cpu_per_order: cpu_per_order(cpu, all),
        written_per_order: written_per_order(written, all),
    }
}

/// What the senders and the completion listener know of each order.
enum Seen {
    /// Accepted at this instant by this sender.
    Accepted(Instant, usize),
    /// Completed at this instant (the listener heard of it before the sender's answer came).
    Completed(Instant),
}

#[derive(Default)]
struct Tracker {
    orders: HashMap<String, Seen>,
    /// (accepted, completed) of every order.
    done: Vec<(Instant, Instant)>,
}

/// Runs `senders` webhook senders, each keeping at most [`DEPTH`] unfinished orders, for the
/// warm-up and the window. `accept` delivers one order and returns its task id once accepted.
async fn webhook_senders<F, Fut>(path: &'static str, senders: usize, service: &Service, accept: F) -> Row
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let credits: Arc<Vec<Semaphore>> = Arc::new((0..senders).map(|_| Semaphore::new(DEPTH)).collect());
    let mut settled = service.settled();
    // On the clients' thread, with the senders it gives credit to: each completion then wakes
    // that one thread, not also one of the service's runtime workers.
    let listener = {
        let (tracker, credits) = (tracker.clone(), credits.clone());
        CLIENTS.spawn(async move {
            loop {
                let id = match settled.recv().await {
                    Ok(id) => id,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    Err(e) => panic!("the completion listener fell behind: {e}"),
                };
                let now = Instant::now();
                let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                match tracker.orders.remove(&id) {
                    Some(Seen::Accepted(at, sender)) => {
                        tracker.done.push((at, now));
                        credits[sender].add_permits(1);
                    }
                    _ => {
                        tracker.orders.insert(id, Seen::Completed(now));
                    }
                }
            }
        })
    };
    let cpu = cpu_time();
    let written = written_bytes();
    let started = Instant::now();
    let window_end = started + WARMUP + WINDOW;
    let mut loops = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let (accept, tracker, credits) = (accept.clone(), tracker.clone(), credits.clone());
        loops.spawn_on(
            async move {
                let mut n = 0;
                while Instant::now() < window_end {
                    credits[sender].acquire().await.expect("open").forget();
                    let id = accept(sender * 1_000_000 + n).await;
                    let now = Instant::now();
                    n += 1;
                    let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                    match tracker.orders.remove(&id) {
                        Some(Seen::Completed(at)) => {
                            tracker.done.push((now, at));
                            credits[sender].add_permits(1);
                        }
                        _ => {
                            tracker.orders.insert(id, Seen::Accepted(now, sender));
                        }
                    }
                }
            },
            &CLIENTS,
        );
    }
    while let Some(done) = loops.join_next().await {
        done.expect("sender");
    }
    // Let every accepted order finish.
    for _ in 0..600 {
        let pending = tracker.lock().unwrap_or_else(|p| p.into_inner()).orders.len();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listener.abort();
    let tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        tracker.orders.is_empty(),
        "{} orders never completed",
        tracker.orders.len()
    );
    let (window_start, window_end) = (started + WARMUP, started + WARMUP + WINDOW);
    let orders = tracker
        .done
        .iter()
        .filter(|(_, done)| *done >= window_start && *done < window_end)
        .count();
    let latencies: Vec<Duration> = tracker
        .done
        .iter()
        .filter(|(accepted, _)| *accepted >= window_start && *accepted < window_end)
        .map(|(accepted, done)| done.saturating_duration_since(*accepted))
        .collect();
    let load = format!("{senders} webhook senders × {DEPTH}");
    Row {
        path,
        load,
        given: "",
        orders,
        window: WINDOW,
        latencies,
        cpu_per_order: cpu_per_order(cpu, tracker.done.len()),
        written_per_order: written_per_order(written, tracker.done.len()),
    }
}

/// What the steps are given to read.
#[derive(Clone, Copy)]
enum Given {
    /// Their views: the paths their manifests list in `reads`, as bundled.
    Views,
    /// The whole task data: the bundled manifests without `reads`.
    WholeData,
}

impl Given {
    fn label(self) -> &'static str {
        match self {
            Given::Views => "views (`reads`)",
            Given::WholeData => "whole data",
        }
    }

    /// The step folders to start from: none (the bundled steps as they are), or the bundled
    /// steps without their `reads`, written into `dir`.
    fn steps(self, dir: &tempfile::TempDir) -> Vec<PathBuf> {
        match self {
            Given::Views => Vec::new(),
            Given::WholeData => vec![whole_data_steps(dir)],
        }
    }
}

/// A folder with the bundled RetailMax steps, their manifests without `reads`: each step is given
/// the whole task data, as before manifests listed what steps read.
fn whole_data_steps(dir: &tempfile::TempDir) -> PathBuf {
    let folder = dir.path().join("whole-data-steps");
    std::fs::create_dir_all(&folder).expect("steps folder");
    for step in whenever_step_artifacts::RETAILMAX {
        let mut manifest: toml::Table = step.manifest.parse().expect("manifest");
        manifest.remove("reads");
        let manifest = toml::to_string(&manifest).expect("manifest");
        std::fs::write(folder.join(format!("{}.wasm", step.name)), step.component).expect("component");
        std::fs::write(folder.join(format!("{}.toml", step.name)), manifest).expect("manifest");
    }
    folder
}

/// The config file every host of the bench starts with: `WHENEVER_BENCH_CONFIG`, if set.
fn bench_config() -> Option<PathBuf> {
    std::env::var_os("WHENEVER_BENCH_CONFIG").map(PathBuf::from)
}

/// A service with the bundled RetailMax steps on a fresh SQLite file.
async fn service(dir: &tempfile::TempDir, synchronous: Synchronous, given: Given) -> Service {
    let host = Host::start(&HostOptions {
        no_steps: true,
        config: bench_config(),
        ..HostOptions::default()
    })
    .await
    .expect("host");
    let db = dir.path().join(format!("{synchronous:?}.db"));
    let options = SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&db, options).expect("store");
    let options = ServiceOptions {
        db,
        steps: given.steps(dir),
        ..ServiceOptions::default()
    };
    Service::with_store(host, Arc::new(store), &options)
        .await
        .expect("service")
}

/// The service behind its HTTP API on a loopback port (HTTPS with `tls`): its address and a
/// stop switch.
async fn serve(
    service: &Service,
    tls: Option<Tls>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let options = ApiOptions {
        max_body_bytes: 1 << 20,
        max_component_bytes: 64 << 20,
        tls,
        ..ApiOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = service.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        api::serve_on_own_thread(listener, service, options, shutdown)
            .await
            .expect("serves");
    });
    (address, stop, server)
}

async fn http_waiting(path: &'static str, clients: usize, synchronous: Synchronous, given: Given) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous, given).await;
    let (server_address, stop, server) = serve(&service, None).await;
    let webhook = Webhook::new(server_address, "/v1/hooks/bench?wait=60000", false, None);
    let row = waiting_clients(path, clients, &CLIENTS, move |n| {
        let webhook = webhook.clone();
        async move {
            let task = webhook.post_order(n).await;
            assert_eq!(task.status, "completed", "{:?}", task.message);
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    row
}

/// What a client reads of the task the server answers with: a load generator shares the CPU with
/// the server, and building the whole answer (a settled order with its history is about 15 KB) as
/// a `Value` took 7% of the process's CPU in the row with 16 waiting clients.
#[derive(serde::Deserialize)]
struct Answer {
    id: String,
    status: String,
    #[serde(default)]
    message: Option<String>,
}

/// The bench's HTTP client for one webhook: HTTP/1.1 connections kept alive, one per client at a
/// time, on the clients' runtime. It shares the two cores with the server, so it is kept lean:
/// reqwest (its pool, URL parsing and layers) took 3.7% of the process's CPU in a profile of the
/// row with 16 senders.
#[derive(Clone)]
struct Webhook {
    server: std::net::SocketAddr,
    /// The path and query posted to.
    target: Arc<str>,
    /// Whether each order is sent with an `Idempotency-Key` (its delivery id, as webhook
    /// providers send one).
    keyed: bool,
    /// Connections between requests.
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
    /// HTTPS: the client side of the bench's TLS (`None`: plain HTTP).
    tls: Option<TlsConnector>,
    /// HTTP/2 (in clear, with prior knowledge): every delivery over this one connection, made
    /// at the first (`None`: HTTP/1.1, a connection per delivery under way).
    http2: Option<Arc<tokio::sync::OnceCell<http2::SendRequest<Full<Bytes>>>>>,
}

impl Webhook {
    fn new(server: std::net::SocketAddr, target: &str, keyed: bool, tls: Option<TlsConnector>) -> Webhook {
        Webhook {
            server,
            target: target.into(),
            keyed,
            idle: Arc::default(),
            tls,
            http2: None,
        }
    }

    /// Delivers over one HTTP/2 connection, its streams multiplexed.
    fn over_http2(self) -> Webhook {
        Webhook {
            http2: Some(Arc::default()),
            ..self
        }
    }

    /// Posts order `n`; the task the server answers with (`201`), read as an [`Answer`] (serde
    /// skips the other fields).
    async fn post_order(&self, n: usize) -> Answer {
        let mut request = match &self.http2 {
            // HTTP/2 names the server in the URI (`:authority`), not in a `Host` header.
            Some(_) => hyper::Request::post(format!("http://{}{}", self.server, self.target)),
            None => hyper::Request::post(&*self.target).header(hyper::header::HOST, "bench"),
        }
        .header(hyper::header::CONTENT_TYPE, "application/json");
        if self.keyed {
            request = request.header("idempotency-key", format!("delivery-{n}"));
        }
        let request = request.body(Full::new(Bytes::from(order_text(n)))).expect("a request");
        let body = if let Some(shared) = &self.http2 {
            let mut connection = shared.get_or_init(|| self.connect_http2()).await.clone();
            connection.ready().await.expect("the connection is open");
            let response = connection.send_request(request).await.expect("delivered");
            assert_eq!(response.status().as_u16(), 201);
            response.into_body().collect().await.expect("body").to_bytes()
        } else {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut connection = match idle {
                Some(connection) => connection,
                None => self.connect().await,
            };
            connection.ready().await.expect("the connection is open");
            let response = connection.send_request(request).await.expect("delivered");
            assert_eq!(response.status().as_u16(), 201);
            let body = response.into_body().collect().await.expect("body").to_bytes();
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
            body
        };
        serde_json::from_slice(&body).expect("a task as JSON")
    }

    async fn connect_http2(&self) -> http2::SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(self.server).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        sender
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(self.server).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let Some(tls) = &self.tls else {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(connection);
            return sender;
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
        let stream = tls.connect(name, stream).await.expect("TLS handshake");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        sender
    }
}

/// The bench's HTTPS: a certificate for `localhost` from a CA made for the run (written into
/// `dir`, loaded as `[server] tls_cert` and `tls_key` would be), and a client that trusts that CA.
fn bench_tls(dir: &tempfile::TempDir) -> (Tls, TlsConnector) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).expect("cert written");
    std::fs::write(&key_file, key.serialize_pem()).expect("key written");
    let server = Tls::load(&cert_file, &key_file).expect("the bench's certificate loads");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("the CA");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, TlsConnector::from(Arc::new(client)))
}

/// How the webhook senders deliver.
#[derive(Clone, Copy, PartialEq)]
enum Delivery {
    /// Plain HTTP.
    Plain,
    /// Each delivery carries an `Idempotency-Key`.
    Keyed,
    /// Over HTTPS (TLS 1.3 on kept-alive connections).
    Https,
    /// Over one HTTP/2 connection in clear (h2c with prior knowledge), the senders' deliveries
    /// multiplexed on it.
    Http2,
}

/// Webhook senders over HTTP, delivering as `delivery` says.
async fn http_senders(
    path: &'static str,
    senders: usize,
    synchronous: Synchronous,
    given: Given,
    delivery: Delivery,
) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous, given).await;
    let (server_tls, client_tls) = match delivery {
        Delivery::Https => {
            let (server, client) = bench_tls(&dir);
            (Some(server), Some(client))
        }
        Delivery::Plain | Delivery::Keyed | Delivery::Http2 => (None, None),
    };
    let keyed = delivery == Delivery::Keyed;
    let (server_address, stop, server) = serve(&service, server_tls).await;
    let mut webhook = Webhook::new(server_address, "/v1/hooks/bench", keyed, client_tls);
    if delivery == Delivery::Http2 {
        webhook = webhook.over_http2();
    }
    let row = webhook_senders(path, senders, &service, move |n| {
        let webhook = webhook.clone();
        async move { webhook.post_order(n).await.id }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    assert_all_completed(&service).await;
    row
}

/// Creates a task through the Service API, taking only its id (no copy of the created task).
async fn created_id(service: &Service, order: Value) -> String {
    service
        .create_task_then(order, |created| created.task.id.clone())
        .await
        .expect("created")
}

async fn service_waiting(path: &'static str, clients: usize, synchronous: Synchronous, given: Given) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous, given).await;
    waiting_clients(path, clients, &CLIENTS, move |n| {
        let service = service.clone();
        async move {
            let id = created_id(&service, order(n)).await;
            let settled = service
                .wait_settled(&id, Duration::from_secs(60))
                .await
                .expect("settled");
            assert_eq!(settled.task.status, TaskStatus::Completed, "{:?}", settled.task.message);
        }
    })
    .await
}

async fn service_senders(path: &'static str, senders: usize, synchronous: Synchronous, given: Given) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(&dir, synchronous, given).await;
    let creating = service.clone();
    let row = webhook_senders(path, senders, &service, move |n| {
        let service = creating.clone();
        async move { created_id(&service, order(n)).await }
    })
    .await;
    assert_all_completed(&service).await;
    row
}

async fn assert_all_completed(service: &Service) {
    let counts = service.store().count_tasks().await.expect("counts");
    assert!(
        counts.keys().all(|s| *s == TaskStatus::Completed),
        "every order completed: {counts:?}"
    );
}

/// A checkpoint that stores nothing and lets the other drives run at every commit, as a store's
/// commit does: the drives interleave as in the service, with as many orders' data in memory.
struct Yielding;

#[async_trait::async_trait]
impl whenever::scheduler::Checkpoint for Yielding {
    async fn commit(
        &mut self,
        _task: &Task,
        _commit: whenever::scheduler::Commit<'_>,
    ) -> Result<(), whenever::scheduler::CheckpointError> {
        tokio::task::yield_now().await;
        Ok(())
    }
    fn journal(&self, _task: &Task, _run_id: u64) -> Option<Arc<dyn whenever::runtime::CallJournal>> {
        None
    }
}

/// `clients` store-less drives at once: each to its end (`Scheduler::drive`), or, `interleaved`,
/// yielding at each commit ([`Yielding`]): with 512, what the 16-sender rows' drives cost without
/// their store, their data as cold between waves.
async fn drive_waiting(path: &'static str, clients: usize, given: Given, interleaved: bool) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::start(&HostOptions {
        steps: given.steps(&dir),
        config: bench_config(),
        ..HostOptions::default()
    })
    .await
    .expect("host");
    let scheduler = host.scheduler.clone();
    // Each client drives its orders itself: they run on the two workers.
    let here = tokio::runtime::Handle::current();
    waiting_clients(path, clients, &here, move |n| {
        let scheduler = scheduler.clone();
        async move {
            let mut task = Task::new(order(n));
            let status = if interleaved {
                scheduler
                    .drive_durable(&mut task, Vec::new(), &mut Yielding, &mut |_| {})
                    .await
                    .expect("no commit fails")
            } else {
                scheduler.drive(&mut task, &mut |_| {}).await
            };
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
    HttpWaiting(Synchronous),
    HttpSenders(Synchronous, Delivery),
    ServiceWaiting(Synchronous),
    ServiceSenders(Synchronous),
    Drive,
    /// Store-less drives whose commits only yield to the others: as many orders interleaved
    /// as the senders keep unfinished.
    DriveYielding,
}

const FULL: Synchronous = Synchronous::Full;
const NORMAL: Synchronous = Synchronous::Normal;

const VIEWS: Given = Given::Views;
const WHOLE: Given = Given::WholeData;

const ROWS: &[(&str, usize, Kind, Given)] = &[
    ("HTTP API + SQLite, synchronous=full", 1, Kind::HttpWaiting(FULL), VIEWS),
    (
        "HTTP API + SQLite, synchronous=full",
        16,
        Kind::HttpWaiting(FULL),
        VIEWS,
    ),
    (
        "HTTP API + SQLite, synchronous=full",
        16,
        Kind::HttpSenders(FULL, Delivery::Plain),
        VIEWS,
    ),
    (
        "HTTP API + SQLite, synchronous=full",
        16,
        Kind::HttpSenders(FULL, Delivery::Plain),
        WHOLE,
    ),
    (
        "HTTP API + SQLite, synchronous=full, deliveries with an Idempotency-Key",
        16,
        Kind::HttpSenders(FULL, Delivery::Keyed),
        VIEWS,
    ),
    (
        "HTTPS API + SQLite, synchronous=full",
        16,
        Kind::HttpSenders(FULL, Delivery::Https),
        VIEWS,
    ),
    (
        "HTTP/2 API (one connection) + SQLite, synchronous=full",
        16,
        Kind::HttpSenders(FULL, Delivery::Http2),
        VIEWS,
    ),
    (
        "HTTP API + SQLite, synchronous=normal",
        16,
        Kind::HttpWaiting(NORMAL),
        VIEWS,
    ),
    (
        "HTTP API + SQLite, synchronous=normal",
        16,
        Kind::HttpSenders(NORMAL, Delivery::Plain),
        VIEWS,
    ),
    (
        "in process (Service API) + SQLite, synchronous=full",
        1,
        Kind::ServiceWaiting(FULL),
        VIEWS,
    ),
    (
        "in process (Service API) + SQLite, synchronous=full",
        16,
        Kind::ServiceWaiting(FULL),
        VIEWS,
    ),
    (
        "in process (Service API) + SQLite, synchronous=full",
        16,
        Kind::ServiceSenders(FULL),
        VIEWS,
    ),
    (
        "in process (Service API) + SQLite, synchronous=full",
        16,
        Kind::ServiceSenders(FULL),
        WHOLE,
    ),
    ("in process, no store (Scheduler::drive)", 1, Kind::Drive, VIEWS),
    ("in process, no store (Scheduler::drive)", 16, Kind::Drive, VIEWS),
    (
        "in process, no store, each commit a yield (Scheduler::drive_durable)",
        512,
        Kind::DriveYielding,
        VIEWS,
    ),
    ("in process, no store (Scheduler::drive)", 16, Kind::Drive, WHOLE),
];

fn main() {
    // As the `whenever` binary does (whenever::allocator).
    whenever::allocator::configure();
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let selected: Vec<(&str, usize, Kind, Given)> = ROWS
        .iter()
        .copied()
        .filter(|(path, clients, kind, given)| {
            let load = match kind {
                Kind::HttpSenders(..) | Kind::ServiceSenders(_) => "senders",
                _ => "waiting",
            };
            format!("{path} / {clients} {load} / {}", given.label()).contains(filter.as_str())
        })
        .collect();
    let steal_before = steal_time();
    let started = Instant::now();
    // Rounds rather than repeats of one row: a disturbance of the machine spreads over the rows.
    let mut runs: Vec<Vec<Row>> = selected.iter().map(|_| Vec::new()).collect();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            for (index, (path, clients, kind, given)) in selected.iter().copied().enumerate() {
                let mut row = match kind {
                    Kind::HttpWaiting(synchronous) => http_waiting(path, clients, synchronous, given).await,
                    Kind::HttpSenders(synchronous, delivery) => {
                        http_senders(path, clients, synchronous, given, delivery).await
                    }
                    Kind::ServiceWaiting(synchronous) => service_waiting(path, clients, synchronous, given).await,
                    Kind::ServiceSenders(synchronous) => service_senders(path, clients, synchronous, given).await,
                    Kind::Drive => drive_waiting(path, clients, given, false).await,
                    Kind::DriveYielding => drive_waiting(path, clients, given, true).await,
                };
                row.given = given.label();
                runs[index].push(row);
            }
        }
    });
    let stolen = steal_time().saturating_sub(steal_before).as_secs_f64() / started.elapsed().as_secs_f64();
    println!(
        "RetailMax seed orders, {} s per row after {} ms warm-up, 2 tokio worker threads; every row measured \
         {ROUNDS} times (in rounds), the run with the median orders/s shown",
        WINDOW.as_secs(),
        WARMUP.as_millis()
    );
    if let Some(config) = bench_config() {
        println!("Every host started with the config file {}", config.display());
    }
    println!(
        "| path | load | steps given | orders | orders/s | orders/s, all {ROUNDS} runs | p50 ms | p99 ms | CPU ms/order | written KB/order |"
    );
    println!("|---|---|---|---:|---:|---|---:|---:|---:|---:|");
    for mut row_runs in runs {
        let rate = |row: &Row| row.orders as f64 / row.window.as_secs_f64();
        row_runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        let all: Vec<String> = row_runs.iter().map(|r| format!("{:.0}", rate(r))).collect();
        let mut row = row_runs.swap_remove(row_runs.len() / 2);
        row.latencies.sort();
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.2} | {:.1} |",
            row.path,
            row.load,
            row.given,
            row.orders,
            rate(&row),
            all.join(", "),
            percentile(&row.latencies, 0.5),
            percentile(&row.latencies, 0.99),
            row.cpu_per_order.as_secs_f64() * 1e3,
            row.written_per_order / 1024.0
        );
    }
    println!(
        "CPU time the hypervisor took from this machine while the bench ran (steal): {stolen:.2} cores on average"
    );
}
