//! The host's configuration file (TOML): connectors, scheduler and runtime settings.
//!
//! ```toml
//! [connectors.inventorySystem]
//! kind = "simulator"
//! stock = "path/to/stock.json"
//!
//! [scheduler]
//! run_cap = 100
//! max_task_bytes = 16777216     # a task's data as JSON text; a run that would pass it fails
//!
//! [runtime]
//! cache_dir = "/var/cache/whenever"
//! max_instances = 1000          # step runs at once; each reserves ~8 GiB of address space (not
//!                               # memory); unset: 1000, or fewer where `ulimit -v` limits it
//!
//! [server]                      # `whenever serve`
//! max_body_bytes = 1048576      # larger request bodies get 413
//! max_component_bytes = 67108864
//! max_concurrent_tasks = 512    # tasks driven at once
//! api_threads = 1               # threads serving the HTTP API
//! drive_threads = 2             # threads driving the tasks (default: one per core; 0: the runtime's)
//! shutdown_grace_ms = 10000     # on SIGTERM or Ctrl-C, drives under way get this long to finish
//! drain_ms = 0                  # before that, /readyz answers 503 this long while all goes on
//! header_timeout_ms = 30000     # a request's headers are due this long after a connection is ready
//!                               # (an idle HTTP/2 connection is closed after as long, and a body
//!                               # that pauses as long is answered 408)
//! max_connections = 10000       # served at once (default: 3/4 of the open files allowed)
//! http2 = true                  # HTTP/2 beside HTTP/1.1 (false: HTTP/1.1 only)
//! http2_max_streams = 200       # requests under way at once on one HTTP/2 connection
//! http2_keepalive_ms = 20000    # an HTTP/2 connection is pinged this often, and closed when a
//!                               # ping is not answered within as long (0: no pings)
//! tls_cert = "cert.pem"         # HTTPS with this certificate chain (PEM; relative to this file)
//! tls_key = "key.pem"           # and its key; both files are read again when they change
//!
//! [server.tokens.shop]          # a bearer token that may only do what its scopes say
//! env = "SHOP_TOKEN"            # the environment variable holding it (or file = "shop.token",
//!                               # one token per line, read again when it changes)
//! scopes = ["deliver"]          # read, tasks, deliver (webhooks only), steps (none listed: read)
//! hooks = ["checkout"]          # the hooks it may deliver to (absent: all)
//!
//! [store]
//! synchronous = "full"          # or "normal": survives kill -9, not a power cut
//! commit_delay_ms = 2           # a commit waits at most this for drives still running steps
//! postgres_connections = 27     # with --db postgres://...: the most this host opens (at least 4)
//!
//! [cluster]                     # hosts sharing `--db postgres://...`
//! lease_ms = 10000              # a dead host's tasks are taken over after this
//! poll_ms = 1000                # backstop poll for work (wake-ups come through LISTEN/NOTIFY)
//!
//! [retention]                   # settled tasks deleted with their history (default: kept)
//! completed_days = 30           # this long after they completed
//! failed_days = 90              # and waiting_days: after they last changed
//! sweep_ms = 60000              # how often a host looks for them
//!
//! [hooks.shopify]               # POST /v1/hooks/shopify must be signed:
//! secret_env = "SHOPIFY_HOOK_SECRET"   # X-Whenever-Signature: sha256=HEX(HMAC-SHA256(secret, body))
//! idempotency_header = "X-Shopify-Webhook-Id"   # one task per delivery id (default: Idempotency-Key)
//!
//! [hooks.stripe]
//! secret_env = "STRIPE_WEBHOOK_SECRET"  # or secret_file = "stripe.secret": read again when it changes
//! signature = "stripe"          # Stripe-Signature (also "github", "shopify"; default "whenever")
//! idempotency_pointer = "/id"   # or the delivery id read from the body (Stripe's event id)
//!
//! [steps.fraud-detection]       # narrows what the step's manifest grants (the intersection):
//! connectors = ["fraudGuard"]   # at most these connectors
//! hosts = ["fraud.internal"]    # at most these hosts for `kind = "http"` connectors
//! reads = ["order", "customer.email"]  # at most these paths of the data (condition's included)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use whenever_connectors::ConnectorsConfig;

use crate::runtime::{
    BASE_URL_SETTING, Capabilities, HTTP_KIND, OperatorGrants, data_path_problem, host_pattern_problem, url_host,
};
use crate::task::TaskStatus;

/// The configuration could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS's explanation.
        message: String,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Scheduler settings from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Runs of one step on one task before the task is stopped as runaway.
    pub run_cap: Option<u32>,
    /// The most a task's data may take as JSON text, in bytes (default 16 MiB).
    pub max_task_bytes: Option<usize>,
}

impl SchedulerSection {
    /// The least `max_task_bytes` may be: below it even a small order's data would not fit.
    pub const MIN_TASK_BYTES: usize = 1024;

    /// The scheduler's settings: the defaults, with what the file sets; refuses a `run_cap` of 0
    /// and a `max_task_bytes` under [`SchedulerSection::MIN_TASK_BYTES`].
    pub fn settings(&self) -> Result<crate::scheduler::SchedulerSettings, String> {
        let mut settings = crate::scheduler::SchedulerSettings::default();
        if let Some(cap) = self.run_cap {
            // No run at all would fail every task at its first step, blaming the step.
            if cap == 0 {
                return Err("[scheduler] run_cap must be at least 1; found 0".into());
            }
            settings.run_cap = cap;
        }
        if let Some(bytes) = self.max_task_bytes {
            if bytes < Self::MIN_TASK_BYTES {
                return Err(format!(
                    "[scheduler] max_task_bytes must be at least {}; found {bytes}",
                    Self::MIN_TASK_BYTES
                ));
            }
            settings.max_task_bytes = bytes;
        }
        Ok(settings)
    }
}

/// Runtime settings from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Where compiled components are cached.
    pub cache_dir: Option<PathBuf>,
    /// Step instances at once (runs beyond wait for one to finish); unset: 1,000, or fewer
    /// where the process's address space is limited ([`crate::runtime::RuntimeConfig`]).
    pub max_instances: Option<std::num::NonZeroU32>,
    /// The most a step's manifest may ask for its runs' limits (`[runtime.max_limits]`); unset
    /// keys keep theirs ([`crate::runtime::LimitCeilings`]).
    #[serde(default)]
    pub max_limits: crate::runtime::LimitCeilings,
}

/// Requests one HTTP/2 connection may have under way at once unless `[server]
/// http2_max_streams` says (hyper's default; nginx allows 128).
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 200;

/// How often an HTTP/2 connection is pinged unless `[server] http2_keepalive_ms` says, in ms
/// (hyper's own timeout for an answer).
pub const DEFAULT_HTTP2_KEEPALIVE_MS: u64 = 20_000;

/// The most tasks driven, or connections served, at once that `[server]` takes: far past what
/// a host can use, and within what a semaphore counts (a larger one panicked at start).
pub const MAX_AT_ONCE: usize = 1 << 24;

/// Settings of the HTTP server (`whenever serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Largest request body accepted (tasks, patches, webhooks); larger gets 413.
    pub max_body_bytes: usize,
    /// Largest component accepted by `PUT /v1/steps/{name}`.
    pub max_component_bytes: usize,
    /// How many tasks are driven at once.
    pub max_concurrent_tasks: usize,
    /// How many threads serve the HTTP API (beside the runtime that drives the tasks). One
    /// suffices for RetailMax's load on two cores (3–6% of the CPU at 2,500 orders/s); a machine
    /// with many cores takes webhooks faster than one thread can parse them.
    pub api_threads: std::num::NonZeroUsize,
    /// How many threads drive the tasks, each task always on the same one (0: the tasks are
    /// driven on the runtime's workers, a drive moving between them); by default one per core.
    pub drive_threads: usize,
    /// How long `whenever serve`, told to stop (SIGTERM, Ctrl-C), lets the drives under way
    /// finish before it exits, in milliseconds; tasks still running then resume at the next
    /// start (on another host at once, in a cluster).
    pub shutdown_grace_ms: u64,
    /// How long `whenever serve`, told to stop, first goes on as before while `/readyz` answers
    /// 503 (`serving: draining`), in milliseconds, so that a load balancer takes it out of
    /// rotation before it stops taking connections; 0 (the default): it stops at once.
    pub drain_ms: u64,
    /// How long a client has to send a request's headers, and a kept-alive connection (HTTP/1.1,
    /// or HTTP/2 without a request under way) may sit idle, before the API closes it, in
    /// milliseconds (a client that connects and sends nothing holds no connection longer); and
    /// how long a request's body may pause (then 408).
    pub header_timeout_ms: std::num::NonZeroU64,
    /// How many connections the API serves at once; more wait until one closes. Absent: three
    /// quarters of the open files the process may have (`api::connections`).
    pub max_connections: Option<std::num::NonZeroUsize>,
    /// Whether the API speaks HTTP/2 beside HTTP/1.1 (in clear to a client that opens with its
    /// preface; over TLS to one that chooses `h2` by ALPN). Off: HTTP/1.1 only, and an HTTP/2
    /// client is told so (`HTTP_1_1_REQUIRED`), for a proxy or client that mishandles HTTP/2.
    pub http2: bool,
    /// How many requests one HTTP/2 connection may have under way at once (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`): with `max_connections`, what bounds the requests
    /// served at once, as one HTTP/2 client could otherwise start hundreds on one connection.
    pub http2_max_streams: std::num::NonZeroU32,
    /// How often an HTTP/2 connection is pinged, and how long its client has to answer before
    /// the connection is closed, in ms (0: no pings): a client gone without closing (a machine
    /// switched off, a NAT that forgot the connection) is found during a long answer, such as a
    /// long poll, instead of when the answer is written.
    pub http2_keepalive_ms: u64,
    /// The certificate chain (PEM, the server's own first) to answer HTTPS with; with
    /// `tls_key`, the API speaks HTTPS only. A relative path is relative to the config file.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Bearer tokens with fewer rights than `WHENEVER_TOKEN`'s, by name (see `api::auth`).
    pub tokens: std::collections::BTreeMap<String, TokenSection>,
}

/// A bearer token that may do only what its scopes allow (`[server.tokens.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// The environment variable holding the token (secrets stay out of the file).
    pub env: Option<String>,
    /// Or a file holding it, one token per line, any of them accepted; read again when it
    /// changes, so a token is rotated without a restart (add the new line, move the clients,
    /// remove the old one). Relative to the config file.
    pub file: Option<PathBuf>,
    /// What it may do; none listed: `read` only.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// The hooks it may deliver to (`POST /v1/hooks/{hook}`); absent: every hook.
    pub hooks: Option<Vec<String>>,
}

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET`: tasks, steps, deliveries, metrics.
    Read,
    /// Create tasks and webhook deliveries; patch, retry and delete tasks.
    Tasks,
    /// Webhook deliveries only: a sender's token, which can neither change nor read a task.
    Deliver,
    /// Deploy, roll back and remove steps.
    Steps,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Tasks => "tasks",
            Scope::Deliver => "deliver",
            Scope::Steps => "steps",
        })
    }
}

impl ServerSection {
    /// The certificate and key files when HTTPS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// Refuses a count of tasks or connections at once past [`MAX_AT_ONCE`].
    fn check_counts(&self) -> Result<(), String> {
        let counts = [
            ("max_concurrent_tasks", self.max_concurrent_tasks),
            (
                "max_connections",
                self.max_connections.map_or(0, std::num::NonZeroUsize::get),
            ),
        ];
        match counts.into_iter().find(|(_, count)| *count > MAX_AT_ONCE) {
            Some((name, count)) => Err(format!("[server] {name} must be at most {MAX_AT_ONCE}; found {count}")),
            None => Ok(()),
        }
    }

    /// Refuses one of `tls_cert` and `tls_key` without the other, and a token with both or
    /// neither of `env` and `file`; makes the files relative to `base` (the config file's
    /// folder).
    fn resolve_tls(&mut self, base: &Path) -> Result<(), String> {
        for (name, token) in &mut self.tokens {
            match (&token.env, &mut token.file) {
                (Some(_), None) => {}
                (None, Some(file)) => *file = base.join(&*file),
                _ => return Err(format!("[server.tokens.{name}] needs exactly one of env and file")),
            }
        }
        match (&mut self.tls_cert, &mut self.tls_key) {
            (Some(cert), Some(key)) => {
                *cert = base.join(&*cert);
                *key = base.join(&*key);
                Ok(())
            }
            (None, None) => Ok(()),
            (Some(_), None) => Err("[server] tls_cert is set without tls_key (HTTPS needs both)".into()),
            (None, Some(_)) => Err("[server] tls_key is set without tls_cert (HTTPS needs both)".into()),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            max_body_bytes: 1 << 20,
            max_component_bytes: 64 << 20,
            max_concurrent_tasks: 512,
            api_threads: std::num::NonZeroUsize::MIN,
            drive_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace_ms: 10_000,
            drain_ms: 0,
            header_timeout_ms: std::num::NonZeroU64::MIN.saturating_add(29_999),
            max_connections: None,
            http2: true,
            http2_max_streams: std::num::NonZeroU32::MIN.saturating_add(DEFAULT_HTTP2_MAX_STREAMS - 1),
            http2_keepalive_ms: DEFAULT_HTTP2_KEEPALIVE_MS,
            tls_cert: None,
            tls_key: None,
            tokens: Default::default(),
        }
    }
}

/// Settings of the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// How hard SQLite syncs (`full`, the default, or `normal`).
    pub synchronous: crate::store::sqlite::Synchronous,
    /// How long a commit may wait for the saves of drives still running steps, in milliseconds
    /// (see [`crate::store::sqlite::SqliteOptions::commit_delay`]); 0 commits at once.
    pub commit_delay_ms: u64,
    /// On PostgreSQL, the most connections this host opens to the server, all pools together
    /// ([`crate::store::postgres::Connections`]): hosts times this must stay under the server's
    /// `max_connections`. At least 4.
    pub postgres_connections: u32,
}

impl StoreSection {
    /// Refuses a `postgres_connections` too small for the store's four kinds of connection.
    fn check(&self) -> Result<(), String> {
        crate::store::postgres::Connections::split(self.postgres_connections).map(drop)
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            synchronous: Default::default(),
            commit_delay_ms: crate::store::sqlite::DEFAULT_COMMIT_DELAY.as_millis() as u64,
            postgres_connections: crate::store::postgres::Connections::DEFAULT_TOTAL,
        }
    }
}

/// Settings of hosts sharing a PostgreSQL store (`whenever serve --db postgres://...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// How long a host holds a claimed task without renewing (renewed every quarter of it); a
    /// host that dies has its tasks taken over this long after its last renewal.
    pub lease_ms: u64,
    /// How often an idle host looks for work when no notification came (a backstop).
    pub poll_ms: u64,
    /// At most this many tasks claimed at once (spreads a burst over the hosts).
    pub claim_batch: u32,
    /// This host's name in the `owner` column (default: hostname, process id and a random part).
    pub host_id: Option<String>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            lease_ms: 10_000,
            poll_ms: 1_000,
            claim_batch: 16,
            host_id: None,
        }
    }
}

/// How long settled tasks are kept before they are deleted with their history (`whenever
/// serve`). A status left out is kept forever, the default: the store grows with every task.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Completed tasks are deleted this many days after they completed (fractions allowed).
    pub completed_days: Option<f64>,
    /// Failed tasks are deleted this many days after they failed.
    pub failed_days: Option<f64>,
    /// Waiting tasks are deleted this many days after they last changed.
    pub waiting_days: Option<f64>,
    /// How often a host looks for tasks to delete, in milliseconds.
    pub sweep_ms: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            completed_days: None,
            failed_days: None,
            waiting_days: None,
            sweep_ms: 60_000,
        }
    }
}

impl RetentionSection {
    /// How long tasks of each status are kept, for the statuses with a limit; refuses a
    /// negative or non-finite number of days, or a sweep interval of 0.
    pub fn limits(&self) -> Result<Vec<(TaskStatus, std::time::Duration)>, String> {
        if self.sweep_ms == 0 {
            return Err("[retention] sweep_ms must be at least 1".into());
        }
        let mut limits = Vec::new();
        for (key, status, days) in [
            ("completed_days", TaskStatus::Completed, self.completed_days),
            ("failed_days", TaskStatus::Failed, self.failed_days),
            ("waiting_days", TaskStatus::Waiting, self.waiting_days),
        ] {
            let Some(days) = days else { continue };
            let kept = std::time::Duration::try_from_secs_f64(days * 86_400.0)
                .map_err(|_| format!("[retention] {key} must be a number of days, 0 or more; found {days}"))?;
            limits.push((status, kept));
        }
        Ok(limits)
    }
}

/// One webhook's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSection {
    /// The environment variable holding the HMAC-SHA256 secret; when set, deliveries must carry
    /// a valid `X-Whenever-Signature: sha256=HEX` header.
    pub secret_env: Option<String>,
    /// Or a file holding the secret, one per line, a delivery signed with any of them accepted;
    /// read again when it changes, so the secret is rotated without a restart. Relative to the
    /// config file.
    pub secret_file: Option<PathBuf>,
    /// The request header holding each delivery's id (`X-GitHub-Delivery`,
    /// `X-Shopify-Webhook-Id`), its idempotency key; a delivery without it is refused.
    pub idempotency_header: Option<String>,
    /// A JSON Pointer (`/id`) to each delivery's id in the body (a string or a number: Stripe's
    /// event id), its idempotency key; a delivery without it is refused.
    pub idempotency_pointer: Option<String>,
    /// How deliveries are signed with the secret: `whenever` (the default), `github`, `shopify`
    /// or `stripe` (see `api::signatures`), so a provider's webhooks can point at the hook.
    pub signature: Option<String>,
    /// For `stripe`: how far (seconds) a delivery's signed timestamp may be from now; 300 by
    /// default.
    pub tolerance_s: Option<u64>,
}

/// How far (seconds) a Stripe delivery's signed timestamp may be from now unless the hook's
/// `tolerance_s` says otherwise (Stripe's own libraries use 300).
pub const STRIPE_TOLERANCE_S: u64 = 300;

/// How a webhook's deliveries are signed (HMAC-SHA256 under the hook's secret).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SignatureScheme {
    /// `X-Whenever-Signature: sha256=HEX` of the body.
    #[default]
    Whenever,
    /// GitHub's `X-Hub-Signature-256: sha256=HEX` of the body.
    GitHub,
    /// Shopify's `X-Shopify-Hmac-Sha256: BASE64` of the body.
    Shopify,
    /// Stripe's `Stripe-Signature: t=UNIX,v1=HEX` of `UNIX.body`, `UNIX` within `tolerance`.
    Stripe {
        /// How far the signed timestamp may be from now.
        tolerance: std::time::Duration,
    },
}

/// Where a webhook's deliveries carry their idempotency key ([`crate::request_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeliveryKey {
    /// The `Idempotency-Key` header, when a delivery has one (the default).
    #[default]
    IdempotencyKeyHeader,
    /// This header (lowercase); a delivery without it is refused.
    Header(String),
    /// The string or number at this JSON Pointer in the body; a delivery without it is refused.
    Pointer(String),
}

impl HookSection {
    /// How the deliveries to hook `name` are signed; refuses an unknown scheme, a scheme or a
    /// tolerance without a secret to check it with, and a tolerance for a scheme without one.
    pub fn signature_scheme(&self, name: &str) -> Result<SignatureScheme, String> {
        if self.secret_env.is_some() && self.secret_file.is_some() {
            return Err(format!("[hooks.{name}] sets both secret_env and secret_file; keep one"));
        }
        if self.secret_env.is_none()
            && self.secret_file.is_none()
            && (self.signature.is_some() || self.tolerance_s.is_some())
        {
            return Err(format!(
                "[hooks.{name}] sets how deliveries are signed but no secret_env or secret_file to check \
                 them with"
            ));
        }
        let scheme = match self.signature.as_deref() {
            None | Some("whenever") => SignatureScheme::Whenever,
            Some("github") => SignatureScheme::GitHub,
            Some("shopify") => SignatureScheme::Shopify,
            Some("stripe") => SignatureScheme::Stripe {
                tolerance: std::time::Duration::from_secs(self.tolerance_s.unwrap_or(STRIPE_TOLERANCE_S)),
            },
            Some(other) => {
                return Err(format!(
                    "[hooks.{name}] signature {other:?} is not one of whenever, github, shopify, stripe"
                ));
            }
        };
        if self.tolerance_s.is_some() && !matches!(scheme, SignatureScheme::Stripe { .. }) {
            return Err(format!(
                "[hooks.{name}] tolerance_s applies to signature = \"stripe\" only (signed timestamps)"
            ));
        }
        Ok(scheme)
    }

    /// Where the deliveries to hook `name` carry their key; refuses both keys set at once, a
    /// header that is not a header name and a pointer that is not a JSON Pointer.
    pub fn delivery_key(&self, name: &str) -> Result<DeliveryKey, String> {
        match (&self.idempotency_header, &self.idempotency_pointer) {
            (None, None) => Ok(DeliveryKey::IdempotencyKeyHeader),
            (Some(_), Some(_)) => Err(format!(
                "[hooks.{name}] sets both idempotency_header and idempotency_pointer; a delivery has one key"
            )),
            (Some(header), None) => {
                let valid = !header.is_empty()
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if valid {
                    Ok(DeliveryKey::Header(header.to_ascii_lowercase()))
                } else {
                    Err(format!(
                        "[hooks.{name}] idempotency_header {header:?} is not a header name (letters, digits, - and _)"
                    ))
                }
            }
            (None, Some(pointer)) => {
                if pointer.starts_with('/') {
                    Ok(DeliveryKey::Pointer(pointer.clone()))
                } else {
                    Err(format!(
                        "[hooks.{name}] idempotency_pointer {pointer:?} is not a JSON Pointer (it starts with /, as in \"/id\")"
                    ))
                }
            }
        }
    }
}

/// One step's section: the operator narrows what its manifest grants. A key left out leaves
/// that part of the manifest's grant as it is; an empty list withholds all of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepSection {
    /// At most these connectors (those the manifest also lists).
    pub connectors: Option<Vec<String>>,
    /// At most these hosts for `http` connectors (names, `*.suffix` or `*`).
    pub hosts: Option<Vec<String>>,
    /// At most these paths of the task data (dot-separated), the condition's paths included.
    pub reads: Option<Vec<String>>,
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connectors by name; a connector not named here is its simulator.
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    /// Scheduler settings.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Store settings.
    #[serde(default)]
    pub store: StoreSection,
    /// Settings of hosts sharing a PostgreSQL store.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// How long settled tasks are kept.
    #[serde(default)]
    pub retention: RetentionSection,
    /// Webhooks by name.
    #[serde(default)]
    pub hooks: std::collections::BTreeMap<String, HookSection>,
    /// Per-step narrowing of grants, by step name.
    #[serde(default)]
    pub steps: std::collections::BTreeMap<String, StepSection>,
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for hook in config.hooks.values_mut() {
            if let Some(file) = &mut hook.secret_file {
                *file = base.join(&*file);
            }
        }
        config
            .server
            .resolve_tls(base)
            .and_then(|_| config.server.check_counts())
            .and_then(|_| config.capabilities())
            .and_then(|_| config.retention.limits())
            .and_then(|_| config.store.check())
            .and_then(|_| config.scheduler.settings().map(drop))
            .and_then(|_| {
                config
                    .hooks
                    .iter()
                    .try_for_each(|(name, hook)| hook.delivery_key(name).and(hook.signature_scheme(name)).map(drop))
            })
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(config)
    }

    /// The operator's side of capabilities: the `[steps.NAME]` narrowing and the host each
    /// `kind = "http"` connector reaches. Refuses a connector name no connector has (a typo
    /// would silently withhold it), a host that is not a pattern, and an `http` connector
    /// without a usable `base_url`.
    pub fn capabilities(&self) -> Result<Capabilities, String> {
        let mut capabilities = Capabilities::new();
        for (name, connector) in &self.connectors {
            if connector.kind != HTTP_KIND {
                continue;
            }
            let url = connector
                .settings
                .get(BASE_URL_SETTING)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let host = url_host(url).ok_or_else(|| {
                format!(
                    "[connectors.{name}] needs a {BASE_URL_SETTING} with a host (http://HOST[:PORT]/...), found {url:?}"
                )
            })?;
            capabilities = capabilities.connector_host(name, &host);
        }
        let known: Vec<String> = whenever_connectors::registry::builtin_names()
            .into_iter()
            .map(str::to_string)
            .chain(self.connectors.keys().cloned())
            .collect();
        for (step, section) in &self.steps {
            if let Some(unknown) = section.connectors.iter().flatten().find(|c| !known.contains(c)) {
                return Err(format!(
                    "[steps.{step}] connectors: no connector is called {unknown:?} (known: {})",
                    known.join(", ")
                ));
            }
            if let Some(problem) = section.hosts.iter().flatten().find_map(|h| host_pattern_problem(h)) {
                return Err(format!("[steps.{step}] hosts: {problem}"));
            }
            if let Some(problem) = section.reads.iter().flatten().find_map(|p| data_path_problem(p)) {
                return Err(format!("[steps.{step}] reads: {problem}"));
            }
            capabilities = capabilities.limit_step(
                step,
                OperatorGrants {
                    connectors: section.connectors.clone(),
                    hosts: section.hosts.clone(),
                    reads: section.reads.clone(),
                },
            );
        }
        Ok(capabilities)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("whenever.toml");
        std::fs::write(&path, text).expect("written");
        (dir, path)
    }

    #[test]
    fn step_sections_narrow_grants() {
        let (_dir, path) =
            write("[steps.pay]\nconnectors = [\"stripe\"]\nhosts = [\"*.internal\"]\n[steps.quiet]\nconnectors = []\n");
        let config = Config::load(&path).expect("valid");
        assert_eq!(
            config.steps["pay"].connectors.as_deref(),
            Some(&["stripe".to_string()][..])
        );
        assert_eq!(config.steps["quiet"].hosts, None);
        let caps = config.capabilities().expect("valid");
        let manifest = crate::runtime::StepManifest {
            connectors: vec!["stripe".into(), "paypal".into()],
            ..Default::default()
        };
        let (narrowed, withheld) = caps.narrow("pay", manifest.clone());
        assert_eq!(narrowed.connectors, vec!["stripe".to_string()]);
        assert_eq!(withheld.connectors, vec!["paypal".to_string()]);
        let (quiet, _) = caps.narrow("quiet", manifest);
        assert!(quiet.connectors.is_empty());
    }

    #[test]
    fn the_api_serves_from_one_thread_unless_told_more_and_never_none() {
        assert_eq!(Config::default().server.api_threads.get(), 1);
        let (_dir, path) = write("[server]\napi_threads = 4\n");
        assert_eq!(Config::load(&path).expect("valid").server.api_threads.get(), 4);
        let (_dir, path) = write("[server]\napi_threads = 0\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("api_threads") && error.contains("nonzero"), "{error}");
    }

    #[test]
    fn the_shutdown_grace_is_ten_seconds_and_no_drain_unless_told_otherwise() {
        assert_eq!(Config::default().server.shutdown_grace_ms, 10_000);
        let (_dir, path) = write("[server]\nshutdown_grace_ms = 250\n");
        assert_eq!(Config::load(&path).expect("valid").server.shutdown_grace_ms, 250);
        assert_eq!(Config::default().server.drain_ms, 0, "no drain unless asked for");
        let (_dir, path) = write("[server]\ndrain_ms = 5000\n");
        assert_eq!(Config::load(&path).expect("valid").server.drain_ms, 5000);
    }

    #[test]
    fn the_scheduler_takes_a_run_cap_of_1_or_more_and_a_task_size_of_1024_or_more() {
        let (_dir, path) = write("[scheduler]\nrun_cap = 3\nmax_task_bytes = 1024\n");
        let settings = Config::load(&path).expect("valid").scheduler.settings().expect("valid");
        assert_eq!((settings.run_cap, settings.max_task_bytes), (3, 1024));
        let (_dir, path) = write("[scheduler]\nrun_cap = 0\n");
        let error = Config::load(&path).expect_err("no runs").to_string();
        assert!(error.contains("run_cap must be at least 1; found 0"), "{error}");
        let (_dir, path) = write("[scheduler]\nmax_task_bytes = 1023\n");
        let error = Config::load(&path).expect_err("too small").to_string();
        assert!(
            error.contains("max_task_bytes must be at least 1024; found 1023"),
            "{error}"
        );
    }

    #[test]
    fn a_host_opens_27_postgres_connections_unless_told_otherwise_and_at_least_4() {
        assert_eq!(Config::default().store.postgres_connections, 27);
        let (_dir, path) = write("[store]\npostgres_connections = 10\n");
        assert_eq!(Config::load(&path).expect("valid").store.postgres_connections, 10);
        let (_dir, path) = write("[store]\npostgres_connections = 3\n");
        let error = Config::load(&path).expect_err("too few").to_string();
        assert!(error.contains("postgres_connections must be at least 4"), "{error}");
    }

    #[test]
    fn request_headers_are_due_within_thirty_seconds_unless_told_otherwise_and_never_zero() {
        assert_eq!(Config::default().server.header_timeout_ms.get(), 30_000);
        let (_dir, path) = write("[server]\nheader_timeout_ms = 500\n");
        assert_eq!(Config::load(&path).expect("valid").server.header_timeout_ms.get(), 500);
        assert_eq!(
            Config::default().server.max_connections,
            None,
            "three quarters of the open files"
        );
        let (_dir, path) = write("[server]\nmax_connections = 100\n");
        let max = Config::load(&path).expect("valid").server.max_connections;
        assert_eq!(max.map(std::num::NonZeroUsize::get), Some(100));
        let (_dir, path) = write("[server]\nmax_connections = 0\n");
        assert!(Config::load(&path).is_err(), "no connection at all is refused");
        // Past what a semaphore counts (which would panic at start), or any host could use.
        for name in ["max_connections", "max_concurrent_tasks"] {
            let (_dir, path) = write(&format!("[server]\n{name} = 2305843009213693952\n"));
            let error = Config::load(&path).expect_err("refused").to_string();
            assert!(
                error.contains(&format!(
                    "[server] {name} must be at most 16777216; found 2305843009213693952"
                )),
                "{error}"
            );
        }
        let (_dir, path) = write("[server]\nmax_concurrent_tasks = 16777216\n");
        assert!(Config::load(&path).is_ok());
        let (_dir, path) = write("[server]\nheader_timeout_ms = 0\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(
            error.contains("header_timeout_ms") && error.contains("nonzero"),
            "{error}"
        );
        let (_dir, path) = write("[server]\nshutdown_grace_ms = -1\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("shutdown_grace_ms"), "{error}");
    }

    #[test]
    fn http2_is_on_with_200_streams_a_connection_unless_told_otherwise_and_never_zero() {
        let server = ServerSection::default();
        assert!(server.http2);
        assert_eq!(server.http2_max_streams.get(), DEFAULT_HTTP2_MAX_STREAMS);
        assert_eq!(server.http2_keepalive_ms, DEFAULT_HTTP2_KEEPALIVE_MS);
        let (_dir, path) = write("[server]\nhttp2 = false\nhttp2_max_streams = 16\nhttp2_keepalive_ms = 0\n");
        let server = Config::load(&path).expect("valid").server;
        assert_eq!(
            (server.http2, server.http2_max_streams.get(), server.http2_keepalive_ms),
            (false, 16, 0)
        );
        let (_dir, path) = write("[server]\nhttp2_max_streams = 0\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(
            error.contains("http2_max_streams") && error.contains("nonzero"),
            "{error}"
        );
    }

    #[test]
    fn max_instances_is_unset_unless_told_and_never_zero() {
        assert_eq!(Config::default().runtime.max_instances, None);
        let (_dir, path) = write("[runtime]\nmax_instances = 8\n");
        let runtime = Config::load(&path).expect("valid").runtime;
        assert_eq!(runtime.max_instances.map(|n| n.get()), Some(8));
        let (_dir, path) = write("[runtime]\nmax_instances = 0\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("max_instances") && error.contains("nonzero"), "{error}");
    }

    #[test]
    fn tls_files_are_both_or_neither_and_relative_to_the_config_file() {
        assert_eq!(Config::default().server.tls(), None);
        let (dir, path) = write("[server]\ntls_cert = \"certs/cert.pem\"\ntls_key = \"/etc/key.pem\"\n");
        let config = Config::load(&path).expect("valid");
        let expected_cert = dir.path().join("certs/cert.pem");
        assert_eq!(
            config.server.tls(),
            Some((expected_cert.as_path(), Path::new("/etc/key.pem")))
        );
        for (text, says) in [
            ("[server]\ntls_cert = \"cert.pem\"\n", "tls_cert is set without tls_key"),
            ("[server]\ntls_key = \"key.pem\"\n", "tls_key is set without tls_cert"),
        ] {
            let (_dir, path) = write(text);
            let error = Config::load(&path).expect_err("refused").to_string();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn a_hook_secret_comes_from_one_of_a_variable_and_a_file_relative_to_the_config() {
        let (dir, path) = write("[hooks.checkout]\nsecret_file = \"secrets/checkout\"\nsignature = \"github\"\n");
        let config = Config::load(&path).expect("valid");
        assert_eq!(
            config.hooks["checkout"].secret_file.as_deref(),
            Some(dir.path().join("secrets/checkout").as_path())
        );
        let (_dir, path) = write("[hooks.checkout]\nsecret_env = \"S\"\nsecret_file = \"f\"\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("both secret_env and secret_file"), "{error}");
        let (_dir, path) = write("[hooks.checkout]\nsignature = \"github\"\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("no secret_env or secret_file"), "{error}");
    }

    #[test]
    fn scoped_tokens_name_their_variable_and_known_scopes() {
        let (_dir, path) = write("[server.tokens.shop]\nenv = \"SHOP_TOKEN\"\nscopes = [\"tasks\", \"read\"]\n");
        let config = Config::load(&path).expect("valid");
        let shop = &config.server.tokens["shop"];
        assert_eq!(
            (shop.env.as_deref(), shop.scopes.as_slice()),
            (Some("SHOP_TOKEN"), &[Scope::Tasks, Scope::Read][..])
        );
        let (dir, path) = write("[server.tokens.shop]\nfile = \"secrets/shop\"\n");
        let config = Config::load(&path).expect("valid");
        assert_eq!(
            config.server.tokens["shop"].file.as_deref(),
            Some(dir.path().join("secrets/shop").as_path()),
            "relative to the config file"
        );
        for both_or_neither in ["env = \"S\"\nfile = \"f\"\n", "scopes = [\"read\"]\n"] {
            let (_dir, path) = write(&format!("[server.tokens.shop]\n{both_or_neither}"));
            let error = Config::load(&path).expect_err("refused").to_string();
            assert!(
                error.contains("[server.tokens.shop] needs exactly one of env and file"),
                "{error}"
            );
        }
        assert_eq!(shop.hooks, None);
        let (_dir, path) =
            write("[server.tokens.sender]\nenv = \"S\"\nscopes = [\"deliver\"]\nhooks = [\"checkout\"]\n");
        let config = Config::load(&path).expect("valid");
        let sender = &config.server.tokens["sender"];
        assert_eq!(sender.scopes, [Scope::Deliver]);
        assert_eq!(sender.hooks.as_deref(), Some(&["checkout".to_string()][..]));
        let (_dir, path) = write("[server.tokens.ci]\nenv = \"CI_TOKEN\"\nscopes = [\"admin\"]\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("admin") && error.contains("steps"), "{error}");
    }

    #[test]
    fn retention_keeps_everything_unless_told_and_refuses_negative_days() {
        assert!(Config::default().retention.limits().expect("valid").is_empty());
        let (_dir, path) = write("[retention]\ncompleted_days = 30\nwaiting_days = 0.5\n");
        let limits = Config::load(&path).expect("valid").retention.limits().expect("valid");
        assert_eq!(
            limits,
            vec![
                (TaskStatus::Completed, std::time::Duration::from_secs(30 * 86_400)),
                (TaskStatus::Waiting, std::time::Duration::from_secs(43_200)),
            ]
        );
        let (_dir, path) = write("[retention]\nfailed_days = -1\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("failed_days") && error.contains("-1"), "{error}");
        let (_dir, path) = write("[retention]\nsweep_ms = 0\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(error.contains("sweep_ms"), "{error}");
    }

    /// The error loading a config file of `text` gives.
    fn refused(text: &str) -> String {
        let (_dir, path) = write(text);
        Config::load(&path).expect_err("refused").to_string()
    }

    #[test]
    fn a_hook_takes_its_delivery_key_from_one_header_or_one_pointer() {
        let (_dir, path) = write(
            "[hooks.github]\nidempotency_header = \"X-GitHub-Delivery\"\n\
             [hooks.stripe]\nidempotency_pointer = \"/id\"\n[hooks.plain]\nsecret_env = \"S\"\n",
        );
        let config = Config::load(&path).expect("valid");
        let key = |name: &str| config.hooks[name].delivery_key(name).expect("valid");
        assert_eq!(key("github"), DeliveryKey::Header("x-github-delivery".into()));
        assert_eq!(key("stripe"), DeliveryKey::Pointer("/id".into()));
        assert_eq!(key("plain"), DeliveryKey::IdempotencyKeyHeader);
        for (section, named) in [
            (
                "[hooks.both]\nidempotency_header = \"X-Id\"\nidempotency_pointer = \"/id\"\n",
                "both idempotency_header and idempotency_pointer",
            ),
            (
                "[hooks.h]\nidempotency_header = \"X Id\"\n",
                "\"X Id\" is not a header name",
            ),
            (
                "[hooks.p]\nidempotency_pointer = \"id\"\n",
                "\"id\" is not a JSON Pointer",
            ),
        ] {
            let error = refused(section);
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn a_hook_checks_its_provider_s_signature_scheme_with_its_secret() {
        let (_dir, path) = write(
            "[hooks.gh]\nsecret_env = \"S\"\nsignature = \"github\"\n\
             [hooks.st]\nsecret_env = \"S\"\nsignature = \"stripe\"\ntolerance_s = 60\n\
             [hooks.plain]\nsecret_env = \"S\"\n",
        );
        let config = Config::load(&path).expect("valid");
        let scheme = |name: &str| config.hooks[name].signature_scheme(name).expect("valid");
        assert_eq!(scheme("gh"), SignatureScheme::GitHub);
        assert_eq!(
            scheme("st"),
            SignatureScheme::Stripe {
                tolerance: std::time::Duration::from_secs(60)
            }
        );
        assert_eq!(scheme("plain"), SignatureScheme::Whenever);
        for (section, named) in [
            (
                "[hooks.h]\nsecret_env = \"S\"\nsignature = \"paypal\"\n",
                "\"paypal\" is not one of",
            ),
            ("[hooks.h]\nsignature = \"github\"\n", "no secret_env"),
            (
                "[hooks.h]\nsecret_env = \"S\"\nsignature = \"github\"\ntolerance_s = 5\n",
                "tolerance_s applies to signature = \"stripe\" only",
            ),
        ] {
            let error = refused(section);
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn a_misspelt_connector_or_bad_host_in_a_step_section_is_refused() {
        let (_dir, path) = write("[steps.pay]\nconnectors = [\"strpe\"]\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(
            error.contains("[steps.pay] connectors") && error.contains("\"strpe\""),
            "{error}"
        );
        let (_dir, path) = write("[steps.pay]\nreads = [\"order.\"]\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(
            error.contains("[steps.pay] reads") && error.contains("\"order.\" is not a data path"),
            "{error}"
        );
        let (_dir, path) = write("[steps.pay]\nhosts = [\"http://x.internal\"]\n");
        let error = Config::load(&path).expect_err("refused").to_string();
        assert!(
            error.contains("[steps.pay] hosts") && error.contains("not a host name pattern"),
            "{error}"
        );
        let (_dir, path) = write("[steps.pay]\nconnector = []\n");
        assert!(Config::load(&path).is_err(), "unknown key refused");
    }

    #[test]
    fn http_connectors_reach_the_host_of_their_base_url() {
        let mut config = Config::default();
        let mut section = whenever_connectors::ConnectorConfig::simulator();
        section.kind = HTTP_KIND.to_string();
        section.settings.insert(
            BASE_URL_SETTING.into(),
            toml::Value::String("https://Inventory.internal:8443/api".into()),
        );
        config.connectors.insert("inventorySystem".into(), section.clone());
        let caps = config.capabilities().expect("valid");
        assert_eq!(caps.host_of("inventorySystem"), Some("inventory.internal"));
        assert_eq!(caps.host_of("stripe"), None);
        section.settings.clear();
        config.connectors.insert("inventorySystem".into(), section);
        let error = config.capabilities().expect_err("no base_url");
        assert!(
            error.contains("[connectors.inventorySystem]") && error.contains("base_url"),
            "{error}"
        );
    }
}
