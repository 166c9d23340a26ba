//! Counters and histograms of the service, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::cluster::Hosts;
use super::readiness::{Check, FAILED_DRIVE_WINDOW, PROBE_TIMEOUT, Readiness, ReadyStatus};
use crate::histogram::Histogram;
use crate::store::commit_stats::CommitStats;
use crate::task::{RunOutcomeRecord, RunRecord, TaskStatus};

#[derive(Debug, Default)]
struct StepStats {
    ok: u64,
    failed: u64,
    latency: Histogram,
}

/// The HTTP API's requests to one route (the router's template, such as `/v1/tasks/{id}`, never
/// a raw path, so the labels stay few): counts by method and status, and their latency.
#[derive(Debug, Default)]
struct RouteStats {
    answered: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

/// One connector method's calls: those made (errors among them) and how long each took, and
/// the results replayed from the journal instead of calling again.
#[derive(Debug, Default)]
struct ConnectorStats {
    calls: u64,
    /// Errors by kind ([`whenever_connectors::ErrorKind::as_str`]).
    errors: BTreeMap<&'static str, u64>,
    latency: Histogram,
    replayed: u64,
}

#[derive(Debug, Default)]
struct State {
    steps: BTreeMap<String, StepStats>,
    connectors: BTreeMap<(String, String), ConnectorStats>,
    /// Tasks deleted, on request and by retention.
    deleted: Deleted,
    /// Requests answered with the task an earlier request with the same idempotency key created.
    replayed: u64,
    /// Drives started on this host, by the drive thread they run on (`None`: the runtime's
    /// workers, with `[server] drive_threads = 0`).
    drives: BTreeMap<Option<usize>, u64>,
    /// Drives that ended on a storage failure, their tasks to be driven again from their last
    /// commit.
    drives_failed: u64,
    /// When the last of them ended (`/readyz` counts a host whose drives fail as not ready).
    last_drive_failure: Option<std::time::Instant>,
    /// How long the drives' saves took to commit, from sent to durable.
    saves: Histogram,
}

#[derive(Debug, Default)]
struct Deleted {
    requested: u64,
    retention: u64,
}

/// The service's metrics since it started. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    /// Apart from the runs' state: the API's thread records a request while the drives record
    /// their runs.
    requests: Arc<Mutex<BTreeMap<String, RouteStats>>>,
    /// The uses of each secret that authenticated a request, by what it belongs to.
    secrets: Arc<Mutex<BTreeMap<SecretOf, SecretUses>>>,
    /// The API's connections: accepted, open now, the limit, and how often it held new ones back.
    connections: Arc<Connections>,
    /// HTTPS connections closed before their TLS handshake finished (counted by the listener).
    tls_handshakes_failed: Arc<AtomicU64>,
    /// When the HTTPS certificate serving now expires, in Unix seconds ([`NO_CERTIFICATE`]:
    /// none, or its date unreadable).
    tls_not_after: Arc<AtomicI64>,
    /// This host's name among the hosts sharing its store (`None`: unshared).
    host: Option<Arc<str>>,
}

/// The API's connections ([`Metrics::connection_opened`]).
#[derive(Debug, Default)]
struct Connections {
    accepted: AtomicU64,
    open: AtomicU64,
    /// `[server] max_connections` (0: no limit).
    max: AtomicU64,
    held_back: AtomicU64,
    /// Of `accepted`, those that spoke HTTP/2.
    http2: AtomicU64,
}

/// A connection counted open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Connections>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a secret belongs to: a bearer token (by its name) or a webhook (by its hook), and which
/// of its secrets it is, by fingerprint ([`crate::api::secret_files::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretOf {
    /// `token` or `hook`.
    pub kind: &'static str,
    /// The token's name (`WHENEVER_TOKEN` for the one that may do everything) or the hook's.
    pub name: String,
    /// The secret's fingerprint.
    pub fingerprint: String,
}

#[derive(Debug, Default)]
struct SecretUses {
    count: u64,
    /// When it was last used, in Unix seconds.
    last: u64,
}

/// [`Metrics::tls_certificate_expires`] never told a date.
const NO_CERTIFICATE: i64 = 0;

/// The error kinds whose series every connector method has from its first call, at zero until
/// one happens, so that a rate of them is defined before: what the service answers (`failed`: a
/// card declined, say) apart from what says it is in trouble (`unavailable`, `timeout`).
const ERROR_KINDS_ALWAYS_SHOWN: [whenever_connectors::ErrorKind; 3] = [
    whenever_connectors::ErrorKind::Failed,
    whenever_connectors::ErrorKind::Unavailable,
    whenever_connectors::ErrorKind::Timeout,
];

/// The most connector and method pairs `/metrics` counts apart; further pairs are counted
/// together under [`OTHER`]. A host's connectors have a few dozen methods in all, but a step
/// may call any name, and each pair kept would cost memory and a series for ever.
pub const MAX_CONNECTOR_SERIES: usize = 512;

/// The connector and method of the calls counted together past [`MAX_CONNECTOR_SERIES`].
pub const OTHER: &str = "(other)";

/// The connector series: calls made, errors by kind and latency, and results replayed, by
/// connector and method.
fn render_connectors(out: &mut String, connectors: &BTreeMap<(String, String), ConnectorStats>) {
    let labels =
        |connector: &str, method: &str| format!("connector=\"{}\",method=\"{}\"", escape(connector), escape(method));
    /// A counter's name, its help, and its count in a method's stats.
    type Counter = (&'static str, &'static str, fn(&ConnectorStats) -> u64);
    let counters: [Counter; 2] = [
        (
            "whenever_connector_calls_total",
            "Connector calls made (results replayed from the journal are counted apart).",
            |c| c.calls,
        ),
        (
            "whenever_connector_calls_replayed_total",
            "Connector results replayed from the journal of a run a crash interrupted, instead of \
             calling the connector again.",
            |c| c.replayed,
        ),
    ];
    for (name, help, count) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((connector, method), c) in connectors {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(connector, method), count(c));
        }
    }
    let name = "whenever_connector_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connector calls that returned an error, by its kind (failed: the service said no; \
         unavailable, timeout: it could not be reached or did not answer; invalid-args, unknown, not-granted: \
         the step's call was wrong).\n# TYPE {name} counter"
    );
    for ((connector, method), c) in connectors {
        let always = ERROR_KINDS_ALWAYS_SHOWN.map(|k| (k.as_str(), 0));
        let mut by_kind: BTreeMap<&str, u64> = always.into_iter().collect();
        by_kind.extend(c.errors.iter().map(|(kind, n)| (*kind, *n)));
        for (kind, n) in by_kind {
            let _ = writeln!(out, "{name}{{{},kind=\"{kind}\"}} {n}", labels(connector, method));
        }
    }
    let name = "whenever_connector_call_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long each connector call took, retries included (a slow provider).\n\
         # TYPE {name} histogram"
    );
    for ((connector, method), c) in connectors {
        c.latency.render(out, name, &labels(connector, method));
    }
}

/// A label value escaped for the Prometheus text format.
fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Metrics of the host named `host` among those sharing its store (`None`: unshared).
    pub fn of_host(host: Option<&str>) -> Metrics {
        Metrics {
            host: host.map(Arc::from),
            ..Metrics::default()
        }
    }

    /// Counts tasks deleted: on request (`DELETE /v1/tasks/{id}`), or by retention's sweeps.
    pub fn tasks_deleted(&self, count: u64, by_retention: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if by_retention {
            state.deleted.retention += count;
        } else {
            state.deleted.requested += count;
        }
    }

    /// Counts a request answered with the task an earlier request with its idempotency key
    /// created (a webhook delivered again, a client's retry).
    pub fn request_replayed(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).replayed += 1;
    }

    /// Counts a drive started on this host, on drive thread `thread` (`None`: on the runtime's
    /// workers): how the tasks spread over the threads, and proof that every kind of drive (a
    /// lone host's, a cluster's claims and takeovers) runs where it should.
    pub fn drive_started(&self, thread: Option<usize>) {
        *self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drives
            .entry(thread)
            .or_default() += 1;
    }

    /// Counts a drive that ended because the store failed (a full disk, a lost connection): its
    /// task is driven again from its last commit, and an alert wants to know.
    pub fn drive_failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.drives_failed += 1;
        state.last_drive_failure = Some(std::time::Instant::now());
    }

    /// Whether a drive ended on a storage failure less than `window` ago.
    pub fn drive_failed_within(&self, window: std::time::Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_drive_failure.is_some_and(|at| at.elapsed() < window)
    }

    /// Counts a request the API answered: its method, its route (the router's template, or
    /// `unmatched`), its status and how long it took.
    pub fn request_answered(&self, method: &'static str, route: &str, status: u16, took: std::time::Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if !requests.contains_key(route) {
            requests.insert(route.to_string(), RouteStats::default());
        }
        if let Some(stats) = requests.get_mut(route) {
            *stats.answered.entry((method, status)).or_default() += 1;
            stats.latency.observe(took.as_secs_f64());
        }
    }

    /// Counts a request authenticated by `secret`: during a rotation, the old secret's count
    /// stops growing once every client (or the provider) has moved to the new one.
    pub fn secret_used(&self, secret: SecretOf) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let uses = secrets.entry(secret).or_default();
        uses.count += 1;
        uses.last = now;
    }

    /// Counts a connection the API accepted, open until the value returned is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.accepted.fetch_add(1, Ordering::Relaxed);
        self.connections.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.connections.clone())
    }

    /// Counts a connection that turned out to speak HTTP/2 (already counted accepted).
    pub fn http2_connection_opened(&self) {
        self.connections.http2.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the most connections the API serves at once (`None`: no limit).
    pub fn connections_limited_to(&self, max: Option<usize>) {
        let max = max.map_or(0, |max| u64::try_from(max).unwrap_or(u64::MAX));
        self.connections.max.store(max, Ordering::Relaxed);
    }

    /// Counts a time the API stopped accepting because `max_connections` were open: new
    /// connections waited in the kernel's queue until one closed.
    pub fn connections_held_back(&self) {
        self.connections.held_back.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an HTTPS connection whose TLS handshake failed or timed out (a client that does
    /// not trust the certificate, plain HTTP sent to the HTTPS port, a scanner).
    pub fn tls_handshake_failed(&self) {
        self.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps when the HTTPS certificate serving now expires (`None`: unknown), for an alert
    /// before it does.
    pub fn tls_certificate_expires(&self, at: Option<chrono::DateTime<chrono::Utc>>) {
        let seconds = at.map_or(NO_CERTIFICATE, |at| at.timestamp());
        self.tls_not_after.store(seconds, Ordering::Relaxed);
    }

    /// Counts a drive's save of its task that took `took` from sent to committed: what a step's
    /// outcome waits before the steps it enables may start (a slow disk, a busy database).
    pub fn save_committed(&self, took: std::time::Duration) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.saves.observe(took.as_secs_f64());
    }

    /// Counts a finished run: its outcome, latency and connector calls (a result replayed from
    /// the journal counted apart: the service was not called again).
    pub fn run_finished(&self, run: &RunRecord) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stats = state.steps.entry(run.step.clone()).or_default();
        match run.outcome {
            Some(RunOutcomeRecord::Ok) => stats.ok += 1,
            _ => stats.failed += 1,
        }
        stats.latency.observe(run.duration_ms / 1000.0);
        for call in &run.connector_calls {
            let key = (call.connector.clone(), call.method.clone());
            // A step may call any name (refused, unknown): past the cap, a new pair is counted
            // with the others rather than kept for ever.
            let key = if state.connectors.len() >= MAX_CONNECTOR_SERIES && !state.connectors.contains_key(&key) {
                (OTHER.to_string(), OTHER.to_string())
            } else {
                key
            };
            let entry = state.connectors.entry(key).or_default();
            if call.replayed {
                entry.replayed += 1;
                continue;
            }
            entry.calls += 1;
            entry.latency.observe(call.duration_us as f64 / 1e6);
            if let Err(e) = &call.result {
                *entry.errors.entry(e.kind.as_str()).or_default() += 1;
            }
        }
    }

    /// The Prometheus text exposition, with the task counts by status from the store (`None`:
    /// the store could not count them, and they are left out), the drives under way on this
    /// host, the store's commits (for a store that groups them), the host's readiness and, in a
    /// cluster, the hosts registered on the store (`None`: not listed, and left out).
    pub fn render(
        &self,
        tasks: Option<&BTreeMap<TaskStatus, u64>>,
        drives_under_way: usize,
        commits: Option<&CommitStats>,
        readiness: &Readiness,
        hosts: Option<&Hosts>,
    ) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Which build answers, and which host of a cluster: scrapes of several hosts, or of
        // one across an upgrade, tell theirs apart.
        let _ = writeln!(
            out,
            "# HELP whenever_build_info The whenever version serving, and the host's name among those \
             sharing its store (empty: unshared); always 1.\n# TYPE whenever_build_info gauge\n\
             whenever_build_info{{version=\"{}\",host=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION")),
            escape(self.host.as_deref().unwrap_or_default())
        );
        if let Some(tasks) = tasks {
            let _ = writeln!(
                out,
                "# HELP whenever_tasks Tasks by status in the whole store (every host of a cluster reports the \
                 same counts: take one host's, not their sum).\n# TYPE whenever_tasks gauge"
            );
            for status in [
                TaskStatus::Running,
                TaskStatus::Waiting,
                TaskStatus::Completed,
                TaskStatus::Failed,
            ] {
                let n = tasks.get(&status).copied().unwrap_or_default();
                let _ = writeln!(out, "whenever_tasks{{status=\"{status}\"}} {n}");
            }
        }
        render_readiness(&mut out, readiness);
        if let Some(hosts) = hosts {
            render_hosts(&mut out, hosts);
        }
        let _ = writeln!(
            out,
            "# HELP whenever_drives_under_way Tasks this host is driving now.\n\
             # TYPE whenever_drives_under_way gauge\n\
             whenever_drives_under_way {drives_under_way}"
        );
        let _ = writeln!(
            out,
            "# HELP whenever_tasks_deleted_total Settled tasks deleted with their history, on request or by \
             retention.\n\
             # TYPE whenever_tasks_deleted_total counter\n\
             whenever_tasks_deleted_total{{reason=\"request\"}} {}\n\
             whenever_tasks_deleted_total{{reason=\"retention\"}} {}",
            state.deleted.requested, state.deleted.retention
        );
        let _ = writeln!(
            out,
            "# HELP whenever_requests_replayed_total Requests that carried the idempotency key of an earlier \
             one, answered with the task it created.\n\
             # TYPE whenever_requests_replayed_total counter\n\
             whenever_requests_replayed_total {}",
            state.replayed
        );
        let _ = writeln!(
            out,
            "# HELP whenever_drives_started_total Drives started on this host, by the thread they run on \
             (whenever-drive-N, or runtime for the runtime's workers).\n\
             # TYPE whenever_drives_started_total counter"
        );
        for (thread, count) in &state.drives {
            let _ = match thread {
                Some(index) => writeln!(
                    out,
                    "whenever_drives_started_total{{thread=\"whenever-drive-{index}\"}} {count}"
                ),
                None => writeln!(out, "whenever_drives_started_total{{thread=\"runtime\"}} {count}"),
            };
        }
        let _ = writeln!(
            out,
            "# HELP whenever_drives_failed_total Drives that ended on a storage failure; each task is driven \
             again from its last commit.\n\
             # TYPE whenever_drives_failed_total counter\n\
             whenever_drives_failed_total {}",
            state.drives_failed
        );
        let _ = writeln!(
            out,
            "# HELP whenever_task_save_duration_seconds How long a drive's save of its task took, from \
             sent to committed.\n\
             # TYPE whenever_task_save_duration_seconds histogram"
        );
        state.saves.render(&mut out, "whenever_task_save_duration_seconds", "");
        if let Some(commits) = commits {
            render_commits(&mut out, commits);
        }
        let _ = writeln!(
            out,
            "# HELP whenever_runs_total Finished runs by step and outcome.\n# TYPE whenever_runs_total counter"
        );
        for (step, s) in &state.steps {
            let step = escape(step);
            let _ = writeln!(out, "whenever_runs_total{{step=\"{step}\",outcome=\"ok\"}} {}", s.ok);
            let _ = writeln!(
                out,
                "whenever_runs_total{{step=\"{step}\",outcome=\"error\"}} {}",
                s.failed
            );
        }
        let _ = writeln!(
            out,
            "# HELP whenever_run_duration_seconds Run latency by step.\n# TYPE whenever_run_duration_seconds histogram"
        );
        for (step, s) in &state.steps {
            s.latency.render(
                &mut out,
                "whenever_run_duration_seconds",
                &format!("step=\"{}\"", escape(step)),
            );
        }
        render_connectors(&mut out, &state.connectors);
        drop(state);
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP whenever_http_requests_total Requests the API answered, by method, route and status.\n\
             # TYPE whenever_http_requests_total counter"
        );
        for (route, stats) in requests.iter() {
            for ((method, status), count) in &stats.answered {
                let _ = writeln!(
                    out,
                    "whenever_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP whenever_http_request_duration_seconds Time to answer a request (to its status and \
             headers), by route.\n# TYPE whenever_http_request_duration_seconds histogram"
        );
        for (route, stats) in requests.iter() {
            stats.latency.render(
                &mut out,
                "whenever_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        self.render_connections(&mut out);
        self.render_secrets(&mut out);
        let _ = writeln!(
            out,
            "# HELP whenever_tls_handshake_failures_total HTTPS connections closed because their TLS \
             handshake failed or timed out.\n\
             # TYPE whenever_tls_handshake_failures_total counter\n\
             whenever_tls_handshake_failures_total {}",
            self.tls_handshakes_failed.load(Ordering::Relaxed)
        );
        let not_after = self.tls_not_after.load(Ordering::Relaxed);
        if not_after != NO_CERTIFICATE {
            let _ = writeln!(
                out,
                "# HELP whenever_tls_certificate_expiry_timestamp_seconds When the HTTPS certificate \
                 serving now expires (its notAfter), in Unix seconds.\n\
                 # TYPE whenever_tls_certificate_expiry_timestamp_seconds gauge\n\
                 whenever_tls_certificate_expiry_timestamp_seconds {not_after}"
            );
        }
        out
    }

    /// The lines of the API's connections.
    fn render_connections(&self, out: &mut String) {
        let connections = &self.connections;
        let _ = writeln!(
            out,
            "# HELP whenever_http_connections_total Connections the API accepted.\n\
             # TYPE whenever_http_connections_total counter\n\
             whenever_http_connections_total {}\n\
             # HELP whenever_http_connections_open Connections open now.\n\
             # TYPE whenever_http_connections_open gauge\n\
             whenever_http_connections_open {}\n\
             # HELP whenever_http_connections_held_back_total Times the API stopped accepting because \
             max_connections were open (new connections waited in the kernel's queue).\n\
             # TYPE whenever_http_connections_held_back_total counter\n\
             whenever_http_connections_held_back_total {}\n\
             # HELP whenever_http2_connections_total Connections accepted that spoke HTTP/2 (the \
             others spoke HTTP/1.1, or nothing in time).\n\
             # TYPE whenever_http2_connections_total counter\n\
             whenever_http2_connections_total {}",
            connections.accepted.load(Ordering::Relaxed),
            connections.open.load(Ordering::Relaxed),
            connections.held_back.load(Ordering::Relaxed),
            connections.http2.load(Ordering::Relaxed),
        );
        let max = connections.max.load(Ordering::Relaxed);
        if max > 0 {
            let _ = writeln!(
                out,
                "# HELP whenever_http_connections_max The most connections served at once \
                 ([server] max_connections).\n\
                 # TYPE whenever_http_connections_max gauge\n\
                 whenever_http_connections_max {max}"
            );
        }
    }

    /// The lines of the secrets' uses.
    fn render_secrets(&self, out: &mut String) {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP whenever_secret_uses_total Requests authenticated by each secret: bearer tokens by \
             name, webhook signatures by hook, each secret by its fingerprint (the first 8 hex digits of \
             its SHA-256).\n\
             # TYPE whenever_secret_uses_total counter"
        );
        let labels = |of: &SecretOf| {
            format!(
                "kind=\"{}\",name=\"{}\",fingerprint=\"{}\"",
                of.kind,
                escape(&of.name),
                escape(&of.fingerprint)
            )
        };
        for (of, uses) in secrets.iter() {
            let _ = writeln!(out, "whenever_secret_uses_total{{{}}} {}", labels(of), uses.count);
        }
        let _ = writeln!(
            out,
            "# HELP whenever_secret_last_use_timestamp_seconds When each secret last authenticated a \
             request, in Unix seconds.\n\
             # TYPE whenever_secret_last_use_timestamp_seconds gauge"
        );
        for (of, uses) in secrets.iter() {
            let _ = writeln!(
                out,
                "whenever_secret_last_use_timestamp_seconds{{{}}} {}",
                labels(of),
                uses.last
            );
        }
    }
}

/// The lines of the host's readiness, as `/readyz` answers it.
fn render_readiness(out: &mut String, readiness: &Readiness) {
    let passed = |check: Check| u8::from(check == Check::Ok);
    let _ = writeln!(
        out,
        "# HELP whenever_ready Whether this host should be sent work now, as /readyz answers: 1 ready, \
         0 not.\n\
         # TYPE whenever_ready gauge\n\
         whenever_ready {}\n\
         # HELP whenever_ready_check Each check of /readyz: 1 when it passes (serving: neither draining \
         nor stopping; store: a probe write committed within {} s; drives: none ended on a storage \
         failure in the last {} s; host_id: in a cluster, this process holds its name; version: in a \
         cluster, no host of a newer version serves beside it).\n\
         # TYPE whenever_ready_check gauge\n\
         whenever_ready_check{{check=\"serving\"}} {}\n\
         whenever_ready_check{{check=\"store\"}} {}\n\
         whenever_ready_check{{check=\"drives\"}} {}\n\
         whenever_ready_check{{check=\"host_id\"}} {}\n\
         whenever_ready_check{{check=\"version\"}} {}",
        u8::from(readiness.status == ReadyStatus::Ready),
        PROBE_TIMEOUT.as_secs(),
        FAILED_DRIVE_WINDOW.as_secs(),
        passed(readiness.serving),
        passed(readiness.store),
        passed(readiness.drives),
        passed(readiness.host_id),
        passed(readiness.version),
    );
    if let Some(ms) = readiness.probe_ms {
        let _ = writeln!(
            out,
            "# HELP whenever_store_probe_seconds How long the last probe write took to commit.\n\
             # TYPE whenever_store_probe_seconds gauge\n\
             whenever_store_probe_seconds {}",
            ms / 1000.0
        );
    }
}

/// The hosts registered on a shared store, counted by whether they are live and the format
/// they write: live hosts of two formats are an upgrade under way (one that lasts has stalled).
fn render_hosts(out: &mut String, hosts: &Hosts) {
    let mut counted: BTreeMap<(bool, u32), u64> = BTreeMap::new();
    for host in &hosts.hosts {
        *counted.entry((host.live, host.format)).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP whenever_cluster_hosts Hosts registered on the shared store, by whether the store saw \
         them within their lease and the format of what they write (every host reports the same: \
         take one host's); live hosts of two formats: an upgrade under way.\n\
         # TYPE whenever_cluster_hosts gauge"
    );
    for ((live, format), n) in counted {
        let _ = writeln!(out, "whenever_cluster_hosts{{live=\"{live}\",format=\"{format}\"}} {n}");
    }
}

/// The lines of the store's group commits.
fn render_commits(out: &mut String, commits: &CommitStats) {
    let _ = writeln!(
        out,
        "# HELP whenever_store_commits_total The store's group commits: committed, or rolled back with \
         the writes they carried.\n\
         # TYPE whenever_store_commits_total counter\n\
         whenever_store_commits_total{{outcome=\"committed\"}} {}\n\
         whenever_store_commits_total{{outcome=\"rolled_back\"}} {}\n\
         # HELP whenever_store_committed_writes_total Writes (task saves and creations, deploys, \
         deletions) the commits carried; divided by the commits, how many each grouped.\n\
         # TYPE whenever_store_committed_writes_total counter\n\
         whenever_store_committed_writes_total {}\n\
         # HELP whenever_store_commit_duration_seconds How long each commit took to be durable (its \
         fsync).\n\
         # TYPE whenever_store_commit_duration_seconds histogram",
        commits.commits, commits.failed, commits.writes
    );
    commits
        .duration
        .render(out, "whenever_store_commit_duration_seconds", "");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A host that passed every check.
    fn ready() -> Readiness {
        Readiness {
            status: ReadyStatus::Ready,
            serving: Check::Ok,
            store: Check::Ok,
            drives: Check::Ok,
            host_id: Check::Ok,
            version: Check::Ok,
            probe_ms: Some(1.5),
            reason: None,
        }
    }

    #[test]
    fn connector_and_method_pairs_past_the_cap_are_counted_together() {
        let metrics = Metrics::default();
        let mut run = crate::task::RunRecord::starting(0, "caller", "v1", 1);
        run.outcome = Some(RunOutcomeRecord::Ok);
        run.connector_calls = (0..MAX_CONNECTOR_SERIES + 88)
            .map(|n| {
                let mut call = crate::store::suite::call(0);
                call.method = format!("m{n}");
                call
            })
            .collect();
        metrics.run_finished(&run);
        let text = metrics.render(None, 0, None, &ready(), None);
        let series = text
            .lines()
            .filter(|line| line.starts_with("whenever_connector_calls_total{"))
            .count();
        assert_eq!(series, MAX_CONNECTOR_SERIES + 1, "{text}");
        assert!(
            text.contains("whenever_connector_calls_total{connector=\"stripe\",method=\"m511\"} 1\n")
                && text.contains("whenever_connector_calls_total{connector=\"(other)\",method=\"(other)\"} 88\n"),
            "{text}"
        );
    }

    #[test]
    fn a_clusters_hosts_are_counted_by_liveness_and_format() {
        use crate::service::{HostShown, Hosts};
        let host = |id: &str, live: bool, format: u32| HostShown {
            host_id: id.to_string(),
            live,
            seen_ms_ago: 10,
            lease_ms: 3000,
            format,
            tasks: 0,
            this: false,
        };
        let hosts = Hosts {
            shared: true,
            superseded: false,
            format: 1,
            hosts: vec![
                host("a", true, 1),
                host("b", true, 2),
                host("c", true, 1),
                host("d", false, 1),
            ],
        };
        let text = Metrics::default().render(None, 0, None, &ready(), Some(&hosts));
        for line in [
            "# TYPE whenever_cluster_hosts gauge\n",
            "whenever_cluster_hosts{live=\"true\",format=\"1\"} 2\n",
            "whenever_cluster_hosts{live=\"true\",format=\"2\"} 1\n",
            "whenever_cluster_hosts{live=\"false\",format=\"1\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
        let alone = Metrics::default().render(None, 0, None, &ready(), None);
        assert!(!alone.contains("whenever_cluster_hosts"), "{alone}");
    }

    #[test]
    fn readiness_is_rendered_check_by_check_and_tasks_only_when_counted() {
        let metrics = Metrics::default();
        let text = metrics.render(None, 0, None, &ready(), None);
        assert!(!text.contains("whenever_tasks{"), "{text}");
        let build = format!(
            "whenever_build_info{{version=\"{}\",host=\"\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        let named = Metrics::of_host(Some("h\"1")).render(None, 0, None, &ready(), None);
        assert!(named.contains(",host=\"h\\\"1\"} 1\n"), "{named}");
        for line in [
            "whenever_ready 1\n",
            "whenever_ready_check{check=\"store\"} 1\n",
            "whenever_store_probe_seconds 0.0015\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
        let failing = Readiness {
            status: ReadyStatus::NotReady,
            store: Check::TimedOut,
            host_id: Check::Taken,
            version: Check::Superseded,
            probe_ms: None,
            ..ready()
        };
        let counts = BTreeMap::from([(TaskStatus::Waiting, 3)]);
        let text = metrics.render(Some(&counts), 0, None, &failing, None);
        for line in [
            "whenever_tasks{status=\"waiting\"} 3\n",
            "whenever_ready 0\n",
            "whenever_ready_check{check=\"serving\"} 1\n",
            "whenever_ready_check{check=\"store\"} 0\n",
            "whenever_ready_check{check=\"drives\"} 1\n",
            "whenever_ready_check{check=\"host_id\"} 0\n",
            "whenever_ready_check{check=\"version\"} 0\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
        assert!(!text.contains("whenever_store_probe_seconds"), "{text}");
    }

    #[test]
    fn connector_calls_are_counted_with_their_latency_and_replays_apart() {
        use crate::runtime::{CallError, ConnectorCallRecord};
        use whenever_connectors::ErrorKind;
        let call = |ms: u64, failed: Option<ErrorKind>, replayed: bool| ConnectorCallRecord {
            connector: "stripe".into(),
            method: "charge".into(),
            args: crate::runtime::JsonText::of(&serde_json::json!({})),
            result: match failed {
                Some(kind) => Err(CallError {
                    kind,
                    message: "down".into(),
                }),
                None => Ok(crate::runtime::JsonText::of(&serde_json::json!({"success": true}))),
            },
            idempotency_key: "t:pay:1:0".into(),
            duration_us: ms * 1000,
            replayed,
        };
        let mut run = crate::store::suite::run_record(0, "pay", true);
        run.connector_calls = vec![
            call(2, None, false),
            call(30, Some(ErrorKind::Unavailable), false),
            call(1, Some(ErrorKind::InvalidArgs), false),
            call(0, None, true),
        ];
        let metrics = Metrics::default();
        metrics.run_finished(&run);
        let text = metrics.render(None, 0, None, &ready(), None);
        let labels = "connector=\"stripe\",method=\"charge\"";
        for line in [
            format!("whenever_connector_calls_total{{{labels}}} 3\n"),
            format!("whenever_connector_errors_total{{{labels},kind=\"unavailable\"}} 1\n"),
            format!("whenever_connector_errors_total{{{labels},kind=\"failed\"}} 0\n"),
            format!("whenever_connector_errors_total{{{labels},kind=\"timeout\"}} 0\n"),
            format!("whenever_connector_errors_total{{{labels},kind=\"invalid-args\"}} 1\n"),
            format!("whenever_connector_calls_replayed_total{{{labels}}} 1\n"),
            format!("whenever_connector_call_duration_seconds_bucket{{{labels},le=\"0.0005\"}} 0\n"),
            format!("whenever_connector_call_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1\n"),
            format!("whenever_connector_call_duration_seconds_bucket{{{labels},le=\"0.0025\"}} 2\n"),
            format!("whenever_connector_call_duration_seconds_bucket{{{labels},le=\"0.05\"}} 3\n"),
            format!("whenever_connector_call_duration_seconds_count{{{labels}}} 3\n"),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status_with_cumulative_latency_buckets() {
        let metrics = Metrics::default();
        metrics.request_answered("POST", "/v1/tasks", 201, Duration::from_micros(800));
        metrics.request_answered("POST", "/v1/tasks", 201, Duration::from_millis(30));
        metrics.request_answered("POST", "/v1/tasks", 400, Duration::from_micros(50));
        metrics.request_answered("GET", "a\"route", 404, Duration::from_secs(9));
        let text = metrics.render(Some(&BTreeMap::new()), 0, None, &ready(), None);
        for line in [
            "whenever_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"201\"} 2\n",
            "whenever_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"400\"} 1\n",
            "whenever_http_requests_total{method=\"GET\",route=\"a\\\"route\",status=\"404\"} 1\n",
            // Cumulative: two of three within 1 ms, all three within 50 ms.
            "whenever_http_request_duration_seconds_bucket{route=\"/v1/tasks\",le=\"0.001\"} 2\n",
            "whenever_http_request_duration_seconds_bucket{route=\"/v1/tasks\",le=\"0.025\"} 2\n",
            "whenever_http_request_duration_seconds_bucket{route=\"/v1/tasks\",le=\"0.05\"} 3\n",
            "whenever_http_request_duration_seconds_bucket{route=\"/v1/tasks\",le=\"+Inf\"} 3\n",
            "whenever_http_request_duration_seconds_count{route=\"/v1/tasks\"} 3\n",
            // Beyond the last bound: only in +Inf.
            "whenever_http_request_duration_seconds_bucket{route=\"a\\\"route\",le=\"5\"} 0\n",
            "whenever_http_request_duration_seconds_bucket{route=\"a\\\"route\",le=\"+Inf\"} 1\n",
            "whenever_http_request_duration_seconds_sum{route=\"a\\\"route\"} 9\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
    }

    #[test]
    fn each_secret_is_counted_apart_with_its_last_use() {
        let metrics = Metrics::default();
        let of = |kind, name: &str, fingerprint: &str| SecretOf {
            kind,
            name: name.into(),
            fingerprint: fingerprint.into(),
        };
        metrics.secret_used(of("token", "shop", "0000aaaa"));
        metrics.secret_used(of("token", "shop", "0000aaaa"));
        metrics.secret_used(of("token", "shop", "1111bbbb"));
        metrics.secret_used(of("hook", "shop", "0000aaaa"));
        let text = metrics.render(Some(&BTreeMap::new()), 0, None, &ready(), None);
        for line in [
            "whenever_secret_uses_total{kind=\"token\",name=\"shop\",fingerprint=\"0000aaaa\"} 2\n",
            "whenever_secret_uses_total{kind=\"token\",name=\"shop\",fingerprint=\"1111bbbb\"} 1\n",
            "whenever_secret_uses_total{kind=\"hook\",name=\"shop\",fingerprint=\"0000aaaa\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
        let last: Vec<u64> = text
            .lines()
            .filter(|line| line.starts_with("whenever_secret_last_use_timestamp_seconds{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert_eq!(last.len(), 3, "{text}");
        assert!(last.iter().all(|at| now.abs_diff(*at) < 60), "{last:?} against {now}");
    }
}
