//! RetailMax orders per second with 1, 2 and 3 `whenever serve` hosts sharing one PostgreSQL
//! database, printed as one markdown table, with the CPU figures that show where the ceiling is.
//!
//! Each row starts real `whenever serve --db postgres://…` processes (the binary built by the
//! same profile) on loopback ports, in a fresh schema of the database (dropped at the end, also
//! when the bench panics), with the default `[cluster]` settings. A fixed number of orders
//! ([`IN_FLIGHT`], the same for every row) is kept unfinished: each slot posts a RetailMax seed
//! order with its own order id to `POST /v1/hooks/bench` of the next host (round-robin), waits
//! until the task completed, and posts the next. Completion is read from the store: the bench
//! polls the `tasks` table for the ids it waits on every [`POLL`]. Latency is webhook `201`
//! received → the completed task's `updated_at` (the host's save; same machine clock), for the
//! orders accepted in the window; throughput counts the orders completed in the window. Every
//! order accepted, warm-up included, must complete; the bench fails loudly otherwise.
//!
//! CPU time (user + system, from `/proc/PID/stat`, over the window only) per completed order:
//! - **hosts**: the `whenever serve` processes;
//! - **PostgreSQL**: every process of the server (the postmaster's children: backends, WAL
//!   writer, checkpointer, autovacuum; exited ones through the postmaster's reaped-children
//!   time), minus the bench's own backends; "n/a" when the server's processes are not readable
//!   (not on this machine);
//! - **bench**: this process (HTTP clients and the completion poll).
//!
//! "cores busy" is the sum over the window divided by its length: near the number of cores, the
//! machine is saturated and the split says who spends it. A second table splits the latency
//! (p50) into accepted → first step run started (waiting for a claim and a worker), first run
//! started → last run ended (the eight step runs and the saves between them; "in runs" is the
//! sum of the runs' own durations) and last run ended → task completed (the final save), and
//! gives the database's commits and WAL per order (`pg_stat_database`, `pg_stat_wal`) and the
//! whole machine's busy cores (`/proc/stat`). Below it: the hosts' PostgreSQL sessions by state
//! (sampled from `pg_stat_activity` every 20 ms: on CPU, waiting on a lock or the WAL, or idle
//! waiting for their host), and the CPU other processes took in the window — the rows are only
//! comparable when that is near zero.
//!
//! With `WHENEVER_BENCH_COMPLETION=wait` the slots learn of completion as a client of the API
//! does instead: `GET /v1/tasks/{id}?wait=60000` on the host after the one that accepted the
//! order (another host, with two or more), which marks the task watched, so that the host that
//! settles it notifies the waiting one (`NOTIFY`, which PostgreSQL commits one at a time): what
//! the clients' long waits cost the cluster. Latency is then webhook `201` → the waiting
//! answer received.
//!
//! `cargo bench -p whenever --bench cluster`. The database is `$WHENEVER_BENCH_POSTGRES`, else
//! `$WHENEVER_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test` (the role must be
//! allowed to create schemas; about 28 connections per host). Without a server answering it
//! prints "skipped: no PostgreSQL at ..." and exits successfully.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::ServeProcess;
use tokio::sync::oneshot;
use whenever::store::postgres::redact;
use whenever::store::postgres_tls;
use whenever::store::scratch_schema::ScratchSchema;

/// Rows: how many hosts share the database.
const HOSTS: [usize; 3] = [1, 2, 3];
/// Orders kept unfinished at once, over all hosts (the same load for every row), unless
/// `$WHENEVER_BENCH_IN_FLIGHT` says otherwise.
const IN_FLIGHT: usize = 48;
/// Load before the window (hosts warm their caches, pools fill).
const WARMUP: Duration = Duration::from_secs(2);
/// What is measured.
const WINDOW: Duration = Duration::from_secs(5);
/// How often the bench looks for completed tasks.
const POLL: Duration = Duration::from_millis(10);
/// An order that takes longer than this to settle fails the bench.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `/proc/PID/stat` counts in clock ticks of `USER_HZ` (100 on Linux).
const TICK: Duration = Duration::from_millis(10);

/// How the slots learn that their orders completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// The bench reads the `tasks` table every [`POLL`].
    Poll,
    /// Each slot waits on the API of the next host (`?wait`).
    Wait,
}

fn completion() -> Completion {
    match std::env::var("WHENEVER_BENCH_COMPLETION").as_deref() {
        Err(_) | Ok("poll") => Completion::Poll,
        Ok("wait") => Completion::Wait,
        Ok(other) => panic!("WHENEVER_BENCH_COMPLETION={other:?} is neither poll nor wait"),
    }
}

fn in_flight() -> usize {
    match std::env::var("WHENEVER_BENCH_IN_FLIGHT") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("WHENEVER_BENCH_IN_FLIGHT={n:?} is not a positive number")),
        Err(_) => IN_FLIGHT,
    }
}

fn database_url() -> String {
    std::env::var("WHENEVER_BENCH_POSTGRES")
        .or_else(|_| std::env::var("WHENEVER_TEST_POSTGRES"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A client on `url` (with the TLS its `sslmode` asks for, as the hosts connect), its connection
/// driven in the background; why not when none answers in 5 s.
async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (config, tls) = postgres_tls::connection(url)?;
    match tokio::time::timeout(Duration::from_secs(5), config.connect(tls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The fields of `/proc/PID/stat` after the command name (`state` is the first).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Non-numeric fields (the state) become 0; only numeric ones are read.
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// utime + stime of a process (all its threads), in ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)? + f.get(12)?)
}

fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1).and_then(|p| u32::try_from(*p).ok())
}

/// CPU ticks of a PostgreSQL server so far: the postmaster itself, the children it reaped, and
/// its live children.
fn postgres_ticks(postmaster: u32) -> Option<u64> {
    let f = stat_fields(postmaster)?;
    let mut ticks = f.get(11)? + f.get(12)? + f.get(13)? + f.get(14)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(f) = stat_fields(pid)
            && f.get(1) == Some(&u64::from(postmaster))
        {
            ticks += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
        }
    }
    Some(ticks)
}

/// Every process's command name, parent and CPU ticks so far.
fn processes() -> HashMap<u32, (String, u32, u64)> {
    let mut all = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((name, _)) = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')) else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        let ppid = f.get(1).and_then(|p| u32::try_from(*p).ok()).unwrap_or_default();
        let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
        all.insert(pid, (name.to_string(), ppid, ticks));
    }
    all
}

/// CPU ticks spent between two [`processes`] snapshots by processes that are not the hosts,
/// PostgreSQL or the bench, by command name, largest first (processes that ended in between are
/// not seen).
fn other_processes(
    start: &HashMap<u32, (String, u32, u64)>,
    end: &HashMap<u32, (String, u32, u64)>,
    sources: &CpuSources,
) -> Vec<(String, u64)> {
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for (pid, (name, ppid, ticks)) in end {
        let ours = sources.hosts.contains(pid)
            || *pid == std::process::id()
            || sources.postmaster.is_some_and(|p| p == *pid || p == *ppid);
        if ours {
            continue;
        }
        let before = start.get(pid).map_or(0, |(_, _, t)| *t);
        let spent = ticks.saturating_sub(before);
        if spent > 0 {
            *by_name.entry(name.clone()).or_default() += spent;
        }
    }
    let mut others: Vec<(String, u64)> = by_name.into_iter().collect();
    others.sort_by_key(|(_, ticks)| std::cmp::Reverse(*ticks));
    others
}

/// Busy and I/O-wait ticks of all CPUs so far (the first line of `/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let busy = f.get(..8)?.iter().sum::<u64>() - f[3] - f[4];
    Some((busy, f[4]))
}

/// The database's counters: commits, WAL flushes (fsyncs) and WAL bytes so far (`None` when the
/// statistics views cannot be read).
async fn database_counters(client: &tokio_postgres::Client) -> Option<(i64, i64, f64)> {
    let commits: i64 = client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .ok()?
        .get(0);
    let wal = client
        .query_one("SELECT wal_sync, wal_bytes::float8 FROM pg_stat_wal", &[])
        .await
        .ok()?;
    Some((commits, wal.get(0), wal.get(1)))
}

/// CPU ticks spent so far, by whom.
#[derive(Clone, Copy, Default)]
struct Cpu {
    hosts: u64,
    /// PostgreSQL minus the bench's own backends; `None` when not readable.
    postgres: Option<u64>,
    bench: u64,
    /// The whole machine (`/proc/stat`): busy (everything but idle and I/O wait), and I/O wait.
    machine: (u64, u64),
}

/// Where the CPU figures come from.
struct CpuSources {
    hosts: Vec<u32>,
    postmaster: Option<u32>,
    /// The bench's own backends (their time is not the hosts' load).
    own_backends: Vec<u32>,
}

impl CpuSources {
    fn read(&self) -> Cpu {
        let postgres = self.postmaster.and_then(postgres_ticks).map(|all| {
            let own: u64 = self.own_backends.iter().filter_map(|p| process_ticks(*p)).sum();
            all.saturating_sub(own)
        });
        Cpu {
            hosts: self.hosts.iter().filter_map(|p| process_ticks(*p)).sum(),
            postgres,
            bench: process_ticks(std::process::id()).unwrap_or_default(),
            machine: machine_ticks().unwrap_or_default(),
        }
    }
}

/// The backend process id serving `client`.
async fn backend_pid(client: &tokio_postgres::Client) -> u32 {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("reads pg_backend_pid()")
        .get(0);
    u32::try_from(pid).unwrap_or_default()
}

/// A task as the completion poll saw it settle.
struct Settled {
    status: String,
    updated_at: String,
    message: Option<String>,
}

/// One order's times.
struct Order {
    id: String,
    accepted: DateTime<Utc>,
    completed: DateTime<Utc>,
}

/// One line of the table.
struct Row {
    hosts: usize,
    /// Completed in the window.
    orders: usize,
    /// Latencies of the orders accepted in the window.
    latencies: Vec<Duration>,
    cpu: (Cpu, Cpu),
    /// Commits, WAL flushes and WAL bytes in the window (the bench's own few queries included).
    database: Option<(i64, i64, f64)>,
    /// p50 of accepted → first run started, first run started → last run ended, the sum of the
    /// run durations, and last run ended → completed.
    phases: [f64; 4],
    /// The hosts' PostgreSQL sessions by state (wait event), averaged over samples in the window.
    sessions: Vec<(String, f64)>,
    /// Lines of the hosts' logs about leases (lost, renewed late, taken over).
    lease_lines: Vec<String>,
    /// CPU ticks of other processes on the machine in the window, by command name.
    others: Vec<(String, u64)>,
}

fn order(n: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-CLUSTER-BENCH-{n:07}"));
    order
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("a stored time is not RFC 3339 ({text:?}): {e}"))
        .with_timezone(&Utc)
}

/// Starts `n` hosts on `url`, in parallel.
async fn start_hosts(url: &str, n: usize) -> Vec<ServeProcess> {
    let starting: Vec<_> = (0..n)
        .map(|_| {
            let db = std::path::PathBuf::from(url);
            tokio::task::spawn_blocking(move || ServeProcess::start(&db, &[] as &[&str]))
        })
        .collect();
    let mut hosts = Vec::new();
    for host in starting {
        hosts.push(host.await.expect("a host starts"));
    }
    hosts
}

/// Delivers orders and waits for each to complete, one at a time, until `stop`.
async fn slot(
    targets: Arc<Vec<(reqwest::Client, String)>>,
    next: Arc<AtomicUsize>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Settled>>>>,
    stop: Instant,
    completion: Completion,
) -> Vec<Order> {
    let mut orders = Vec::new();
    while Instant::now() < stop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let (http, base) = &targets[n % targets.len()];
        let response = http
            .post(format!("{base}/v1/hooks/bench"))
            .body(order(n).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("order {n} to {base}: {e}"));
        let accepted = Utc::now();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("order {n}: {e}"));
        assert_eq!(status, 201, "order {n} to {base}: {}", String::from_utf8_lossy(&body));
        let task: Value = serde_json::from_slice(&body).expect("the webhook answers JSON");
        let id = task["id"].as_str().expect("the answer has the task id").to_string();
        let (settled, completed) = match completion {
            Completion::Poll => {
                let settled = polled(&pending, &id, n).await;
                let completed = parse_time(&settled.updated_at);
                (settled, completed)
            }
            Completion::Wait => (waited(&targets[(n + 1) % targets.len()], &id, n).await, Utc::now()),
        };
        assert_eq!(
            settled.status, "completed",
            "order {n} (task {id}) settled {}: {:?}",
            settled.status, settled.message
        );
        orders.push(Order {
            id,
            accepted,
            completed,
        });
    }
    orders
}

/// Waits until the completion poll finds task `id` (order `n`) settled.
async fn polled(pending: &Mutex<HashMap<String, oneshot::Sender<Settled>>>, id: &str, n: usize) -> Settled {
    let (settled, settling) = oneshot::channel();
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_string(), settled);
    match tokio::time::timeout(SETTLE_TIMEOUT, settling).await {
        Ok(Ok(settled)) => settled,
        Ok(Err(_)) => panic!("the completion poll stopped before order {n} (task {id}) settled"),
        Err(_) => panic!("order {n} (task {id}) did not settle within {SETTLE_TIMEOUT:?}"),
    }
}

/// Waits for task `id` (order `n`) on host `target`'s API until it settles.
async fn waited((http, base): &(reqwest::Client, String), id: &str, n: usize) -> Settled {
    let url = format!("{base}/v1/tasks/{id}?wait={}", SETTLE_TIMEOUT.as_millis());
    let response = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("order {n}: {url}: {e}"));
    let status = response.status().as_u16();
    let task: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("order {n}: {url}: {e}"));
    assert_eq!(status, 200, "order {n}: {url}: {task}");
    let text = |key: &str| task[key].as_str().map(String::from);
    let settled = Settled {
        status: text("status").unwrap_or_default(),
        updated_at: text("updated_at").unwrap_or_default(),
        message: text("message"),
    };
    assert_ne!(
        settled.status, "running",
        "order {n} (task {id}) did not settle within {SETTLE_TIMEOUT:?}"
    );
    settled
}

/// Answers the slots' waits: looks up the tasks they wait on every [`POLL`].
async fn completion_poll(
    client: tokio_postgres::Client,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Settled>>>>,
) {
    let settled = client
        .prepare("SELECT id, status, updated_at, message FROM tasks WHERE id = ANY($1) AND status <> 'running'")
        .await
        .expect("prepares the completion poll");
    loop {
        tokio::time::sleep(POLL).await;
        let ids: Vec<String> = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        let rows = client
            .query(&settled, &[&ids])
            .await
            .expect("the completion poll reads the tasks");
        let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let id: String = row.get(0);
            if let Some(waiting) = pending.remove(&id) {
                let _ = waiting.send(Settled {
                    status: row.get(1),
                    updated_at: row.get(2),
                    message: row.get(3),
                });
            }
        }
    }
}

/// Samples the state of the hosts' PostgreSQL sessions (`pg_stat_activity`, every backend but the
/// bench's own) until `until`: the average number of sessions per state, busiest first. An active
/// session without a wait event is on CPU; `idle` waits for its host; `idle in transaction` waits
/// for its host in the middle of a transaction.
async fn sample_sessions(client: Arc<tokio_postgres::Client>, own: &[u32], until: Instant) -> Vec<(String, f64)> {
    let own: Vec<i32> = own.iter().filter_map(|p| i32::try_from(*p).ok()).collect();
    let sample = client
        .prepare(
            "SELECT CASE WHEN state = 'active' THEN 'active: ' || coalesce(wait_event_type || ' ' || wait_event, 'on CPU')
                         ELSE coalesce(state, '?') END, count(*)
             FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = current_database()
               AND pid <> ALL($1) GROUP BY 1",
        )
        .await
        .expect("prepares the pg_stat_activity sample");
    let mut totals: HashMap<String, i64> = HashMap::new();
    let mut samples = 0;
    while Instant::now() < until {
        for row in client.query(&sample, &[&own]).await.expect("samples pg_stat_activity") {
            *totals.entry(row.get(0)).or_default() += row.get::<_, i64>(1);
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut average: Vec<(String, f64)> = totals
        .into_iter()
        .map(|(state, n)| (state, n as f64 / f64::from(samples.max(1))))
        .collect();
    average.sort_by(|a, b| b.1.total_cmp(&a.1));
    average
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

fn p50_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    percentile(&samples, 0.5)
}

async fn measure(
    admin: &tokio_postgres::Client,
    base: &str,
    hosts: usize,
    in_flight: usize,
    completion: Completion,
) -> Row {
    // A fresh schema per row; dropped at the end, or when a panic drops it.
    let schema = ScratchSchema::create(base, &format!("bench_cluster_{hosts}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create the row's schema (the role must be allowed to): {e}"));
    let servers = start_hosts(schema.url(), hosts).await;
    let poller = connect(schema.url())
        .await
        .unwrap_or_else(|e| panic!("the bench connects to its schema: {e}"));
    let checker = Arc::new(
        connect(schema.url())
            .await
            .unwrap_or_else(|e| panic!("the bench connects to its schema: {e}")),
    );
    let own_backends = vec![
        backend_pid(&poller).await,
        backend_pid(&checker).await,
        backend_pid(admin).await,
    ];
    let sources = CpuSources {
        hosts: servers.iter().map(ServeProcess::pid).collect(),
        postmaster: parent_pid(own_backends[0]).filter(|_| process_ticks(own_backends[0]).is_some()),
        own_backends,
    };

    let targets: Arc<Vec<(reqwest::Client, String)>> =
        Arc::new(servers.iter().map(|h| (h.http.clone(), h.base.clone())).collect());
    let pending = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let poll = tokio::spawn(completion_poll(poller, pending.clone()));
    let started = Instant::now();
    let stop = started + WARMUP + WINDOW;
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        slots.spawn(slot(targets.clone(), next.clone(), pending.clone(), stop, completion));
    }
    tokio::time::sleep_until((started + WARMUP).into()).await;
    let (cpu_start, window_start, processes_start) = (sources.read(), Utc::now(), processes());
    let counters_start = database_counters(&checker).await;
    let sessions = sample_sessions(checker.clone(), &sources.own_backends, stop).await;
    tokio::time::sleep_until(stop.into()).await;
    let (cpu_end, window_end) = (sources.read(), Utc::now());
    let others = other_processes(&processes_start, &processes(), &sources);
    let counters_end = database_counters(&checker).await;
    let mut orders = Vec::new();
    while let Some(done) = slots.join_next().await {
        match done {
            Ok(slot_orders) => orders.extend(slot_orders),
            Err(e) if e.is_panic() => {
                for (i, host) in servers.iter().enumerate() {
                    eprintln!("cluster bench: host {i} log:\n{}", host.stderr());
                }
                std::panic::resume_unwind(e.into_panic())
            }
            Err(e) => panic!("an order slot: {e}"),
        }
    }
    poll.abort();

    // Every order delivered is one completed task: no failures, nothing left behind.
    let counts = checker
        .query("SELECT status, count(*) FROM tasks GROUP BY status", &[])
        .await
        .expect("counts the tasks");
    let counts: Vec<(String, i64)> = counts.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        counts,
        vec![("completed".to_string(), orders.len() as i64)],
        "every delivered order is one completed task"
    );

    let in_window = |t: &DateTime<Utc>| *t >= window_start && *t < window_end;
    let completed = orders.iter().filter(|o| in_window(&o.completed)).count();
    let measured: Vec<&Order> = orders.iter().filter(|o| in_window(&o.accepted)).collect();
    let latencies = measured
        .iter()
        .map(|o| (o.completed - o.accepted).to_std().unwrap_or_default())
        .collect();

    // Where the latency goes, from the runs' own times.
    let ids: Vec<String> = measured.iter().map(|o| o.id.clone()).collect();
    let runs = checker
        .query(
            "SELECT task_id, record::json->>'started_at', record::json->>'ended_at',
                    (record::json->>'duration_ms')::float8 FROM runs WHERE task_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("reads the runs");
    let mut spans: HashMap<String, (DateTime<Utc>, DateTime<Utc>, f64)> = HashMap::new();
    for run in runs {
        let started = parse_time(run.get(1));
        let ended = run.get::<_, Option<&str>>(2).map(parse_time).unwrap_or(started);
        let duration: f64 = run.get::<_, Option<f64>>(3).unwrap_or_default();
        let span = spans.entry(run.get(0)).or_insert((started, ended, 0.0));
        span.0 = span.0.min(started);
        span.1 = span.1.max(ended);
        span.2 += duration;
    }
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for o in &measured {
        let Some((first, last, in_runs)) = spans.get(&o.id) else {
            panic!("completed task {} has no runs", o.id)
        };
        let ms = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().unwrap_or_default();
        phases[0].push(ms(o.accepted, *first));
        phases[1].push(ms(*first, *last));
        phases[2].push(Duration::from_secs_f64(in_runs.max(0.0) / 1e3));
        phases[3].push(ms(*last, o.completed));
    }
    let lease_lines = servers
        .iter()
        .flat_map(|h| {
            h.stderr()
                .lines()
                .filter(|l| l.contains("lease lost") || l.contains(" apart ") || l.contains("took task"))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    drop(servers);
    schema.drop_schema().await;
    let [queue, span, in_runs, save] = phases;
    Row {
        hosts,
        orders: completed,
        latencies,
        cpu: (cpu_start, cpu_end),
        database: counters_start
            .zip(counters_end)
            .map(|(a, b)| (b.0 - a.0, b.1 - a.1, b.2 - a.2)),
        phases: [p50_ms(queue), p50_ms(span), p50_ms(in_runs), p50_ms(save)],
        sessions,
        lease_lines,
        others,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let base = database_url();
    let admin = match connect(&base).await {
        Ok(client) => client,
        Err(e) => {
            println!("skipped: no PostgreSQL at {} ({e})", redact(&base));
            return;
        }
    };
    let in_flight = in_flight();
    let completion = completion();
    let mut rows = Vec::new();
    for hosts in HOSTS {
        rows.push(measure(&admin, &base, hosts, in_flight, completion).await);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let window = WINDOW.as_secs_f64();
    println!(
        "RetailMax seed orders through `POST /v1/hooks/bench`, hosts sharing PostgreSQL at {}; this machine has \
         {cores} cores (hosts, database and bench share them). {in_flight} orders in flight over all hosts \
         (round-robin), {} s window after {} s warm-up; latency is webhook 201 → {}; CPU is \
         user+system over the window per completed order.",
        redact(&base),
        WINDOW.as_secs(),
        WARMUP.as_secs(),
        match completion {
            Completion::Poll => "task completed (the bench reads the tasks table every 10 ms)",
            Completion::Wait => "the answer of `GET /v1/tasks/{id}?wait` on the next host (round-robin)",
        }
    );
    println!();
    println!(
        "| hosts | orders | orders/s | p50 ms | p99 ms | host CPU ms/order | PostgreSQL CPU ms/order | bench CPU \
         ms/order | cores busy (hosts + PostgreSQL + bench) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &mut rows {
        row.latencies.sort();
        let per_order = |ticks: u64| {
            (TICK * u32::try_from(ticks).unwrap_or(u32::MAX)).as_secs_f64() * 1e3 / row.orders.max(1) as f64
        };
        let cores_of = |ticks: u64| (TICK * u32::try_from(ticks).unwrap_or(u32::MAX)).as_secs_f64() / window;
        let (a, b) = row.cpu;
        let hosts = b.hosts.saturating_sub(a.hosts);
        let bench = b.bench.saturating_sub(a.bench);
        let postgres = a.postgres.zip(b.postgres).map(|(a, b)| b.saturating_sub(a));
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {} | {:.2} | {:.2} = {:.2} + {} + {:.2} |",
            row.hosts,
            row.orders,
            row.orders as f64 / window,
            percentile(&row.latencies, 0.5),
            percentile(&row.latencies, 0.99),
            per_order(hosts),
            postgres.map_or("n/a".into(), |t| format!("{:.2}", per_order(t))),
            per_order(bench),
            cores_of(hosts + postgres.unwrap_or(0) + bench),
            cores_of(hosts),
            postgres.map_or("n/a".into(), |t| format!("{:.2}", cores_of(t))),
            cores_of(bench),
        );
    }
    println!();
    println!(
        "Where the time goes: latency p50 by phase (from the runs' own start and end times), the database's \
         commits and WAL flushes (pg_stat_database, pg_stat_wal), and the whole machine's CPU (/proc/stat):"
    );
    println!();
    println!(
        "| hosts | accepted → first run ms | first run → last run ended ms | of which in runs ms | → completed ms \
         | commits/order | WAL flushes/s | WAL kB/order | machine cores busy | I/O wait cores |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let orders = row.orders.max(1) as f64;
        let (a, b) = (row.cpu.0.machine, row.cpu.1.machine);
        let cores_of = |ticks: u64| (TICK * u32::try_from(ticks).unwrap_or(u32::MAX)).as_secs_f64() / window;
        let database = |f: &dyn Fn((i64, i64, f64)) -> String| row.database.map_or("n/a".into(), f);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.2} | {:.2} |",
            row.hosts,
            row.phases[0],
            row.phases[1],
            row.phases[2],
            row.phases[3],
            database(&|(commits, _, _)| format!("{:.1}", commits as f64 / orders)),
            database(&|(_, flushes, _)| format!("{:.0}", flushes as f64 / window)),
            database(&|(_, _, bytes)| format!("{:.1}", bytes / 1024.0 / orders)),
            cores_of(b.0.saturating_sub(a.0)),
            cores_of(b.1.saturating_sub(a.1)),
        );
    }
    println!();
    println!("The hosts' PostgreSQL sessions, average number in each state over the window (top 6):");
    println!();
    for row in &rows {
        let states: Vec<String> = row
            .sessions
            .iter()
            .take(6)
            .map(|(s, n)| format!("{s} {n:.1}"))
            .collect();
        println!("- {} hosts: {}", row.hosts, states.join(", "));
    }
    println!();
    println!("Other processes on the machine during the window (CPU, largest first):");
    println!();
    for row in &rows {
        let window_ms = WINDOW.as_secs_f64() * 1e3;
        let total: u64 = row.others.iter().map(|(_, t)| t).sum();
        let top: Vec<String> = row
            .others
            .iter()
            .take(3)
            .map(|(name, t)| {
                format!(
                    "{name} {:.2}",
                    (TICK * u32::try_from(*t).unwrap_or(u32::MAX)).as_secs_f64() * 1e3 / window_ms
                )
            })
            .collect();
        println!(
            "- {} hosts: {:.2} cores ({})",
            row.hosts,
            (TICK * u32::try_from(total).unwrap_or(u32::MAX)).as_secs_f64() * 1e3 / window_ms,
            top.join(", ")
        );
    }
    for row in &rows {
        if !row.lease_lines.is_empty() {
            println!();
            println!(
                "{} hosts: {} lease lines in the hosts' logs, e.g.:",
                row.hosts,
                row.lease_lines.len()
            );
            for line in row.lease_lines.iter().take(3) {
                println!("    {line}");
            }
        }
    }
}
