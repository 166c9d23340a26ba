//! The HTTP API of `whenever serve`, JSON under `/v1` (README.md and `openapi.json` list the
//! routes):
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/tasks[?wait=MS]` | body: the task data (a JSON object) → 201 and the task |
//! | `POST /v1/hooks/{hook}[?wait=MS]` | any JSON body becomes a task with `$via` → 201 |
//! | `GET /v1/tasks/{id}[?wait=MS]` | the task with its history |
//! | `GET /v1/tasks?status=&tag=&limit=&cursor=` | `{tasks, next_cursor}`, newest first |
//! | `PATCH /v1/tasks/{id}[?wait=MS]` | JSON merge patch on `data`; resumes the task (409 while running) |
//! | `POST /v1/tasks/{id}/retry[?wait=MS]` | body `{"step": NAME}` (or empty: every failed step) |
//! | `GET /v1/tasks/{id}/conditions` | each serving step's standing on the task: its condition's first failing path and why, or that it ran on these values, or that it starts |
//! | `GET /v1/tasks/by-key/{key}`, `GET /v1/hooks/{hook}/deliveries/{key}` | the task a create or a delivery with this idempotency key created |
//! | `DELETE /v1/tasks/{id}` | deletes a settled task with its history (204; 409 while running) |
//! | `GET /v1/steps`, `GET /v1/steps/{name}` | serving steps with their versions |
//! | `PUT /v1/steps/{name}[?manifest=TOML]` | body: the component bytes; deployed live (422 if invalid) |
//! | `POST /v1/steps/{name}/rollback` | body `{"version": V}`: an earlier version serves again |
//! | `DELETE /v1/steps/{name}` | stops serving the step (204) |
//! | `GET /v1/steps/{name}/changes` | every deploy, rollback and removal of the step: when, by whom |
//! | `GET /v1/steps/{name}/versions` | every stored version of the step, a removed step's too |
//! | `GET /v1/hosts` | the hosts sharing the store: live or not, the format each writes, the tasks each holds |
//! | `GET /v1/openapi.json` | this API as an OpenAPI 3.1 document ([`OPENAPI`]) |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | liveness; readiness (serving, the store takes a write, drives not failing); Prometheus text (with every request counted by route) |
//!
//! A create (`POST /v1/tasks`, a webhook) with an `Idempotency-Key` header (a webhook: or the
//! delivery id its `[hooks.NAME]` config names) creates one task however often it is sent: a
//! repeat is answered 200 with the task the first created and `Idempotent-Replayed: true`; the
//! same key with another body is refused (422). See [`crate::request_key`].
//!
//! Task answers carry the task's revision as their `ETag` (`"7"`): a `GET` with an
//! `If-None-Match` naming it answers 304 without a body (with `?wait`, once the task settled at
//! another revision, or when the wait ends: a long poll), and a `PATCH`, retry or `DELETE` with an
//! `If-Match` applies only to a task still at a revision it names, 412 otherwise
//! ([`preconditions`]).
//!
//! `?wait=MS` waits up to MS milliseconds (at most 60,000) for the task to settle before answering.
//! Errors are `{"error": {"code", "message"}}` ([`ApiError`]). With a token configured every
//! route but `/healthz` and `/readyz` needs `Authorization: Bearer TOKEN` (`WHENEVER_TOKEN`, or a token of
//! `[server.tokens]` within its scopes: [`auth`]), except webhooks with a secret, which
//! are authenticated by their signature instead: `X-Whenever-Signature: sha256=HEX`, the
//! HMAC-SHA256 of the raw body under the hook's secret, or the scheme of the hook's provider
//! (GitHub, Shopify, Stripe: [`signatures`]).

pub mod auth;
mod cluster;
pub mod connections;
mod error;
mod hooks;
mod idempotency;
mod lingering;
mod path;
mod preconditions;
pub mod secret_files;
pub mod signatures;
mod stalled_bodies;
mod steps;
mod task_counts;
mod tasks;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::Value;

pub use error::ApiError;
pub use idempotency::{IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER};

use crate::config::{DeliveryKey, SignatureScheme};
use crate::service::Service;

/// How the API is exposed.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// The bearer token that may do everything (`None`: no such token; with no scoped tokens
    /// either, no auth, loopback only).
    pub token: Option<String>,
    /// Tokens that may do only what their scopes allow ([`auth`]).
    pub scoped: Vec<auth::ScopedToken>,
    /// The configured hooks by name: how each one's deliveries are signed and keyed (a hook not
    /// named here: unsigned, keyed by an `Idempotency-Key` header when present).
    pub hooks: BTreeMap<String, HookOptions>,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Largest component for `PUT /v1/steps/{name}`.
    pub max_component_bytes: usize,
    /// How many threads [`serve_on_own_thread`] serves from (0 counts as one).
    pub threads: usize,
    /// HTTPS: the certificate to serve (`None`: plain HTTP).
    pub tls: Option<tls::Tls>,
    /// How long a client has to send a request's headers, and a kept-alive connection (HTTP/1.1,
    /// or HTTP/2 without a request under way) may sit idle, before it is closed (`None`:
    /// [`connections::DEFAULT_HEADER_TIMEOUT`]).
    pub header_timeout: Option<std::time::Duration>,
    /// How many connections are served at once; more wait until one closes (`None`: no limit).
    pub max_connections: Option<usize>,
    /// Whether HTTP/2 is served beside HTTP/1.1, and how many requests one connection may have
    /// under way at once.
    pub http2: connections::Http2,
}

impl ApiOptions {
    /// Whether the API has tokens (the full one, or scoped ones): without, it asks none of any
    /// request, and listens only on loopback.
    pub fn has_tokens(&self) -> bool {
        self.token.is_some() || !self.scoped.is_empty()
    }

    /// Options from the service's config: limits, hook secrets (read from the environment
    /// variables or the files the config names) and the TLS certificate; the full `token`, or
    /// the file it is kept in (`WHENEVER_TOKEN_FILE`, served among the scoped tokens so that it
    /// is read again when it changes). A named variable that
    /// is unset, a secret file that does not load, or a certificate or key that does not load,
    /// is an error.
    pub fn from_service(
        service: &Service,
        token: Option<String>,
        token_file: Option<&std::path::Path>,
    ) -> Result<ApiOptions, String> {
        let config = service.config();
        let mut hooks = BTreeMap::new();
        for (hook, section) in &config.hooks {
            let scheme = section.signature_scheme(hook)?;
            let secrets = match (&section.secret_env, &section.secret_file) {
                (Some(var), _) => Some(secret_files::HookSecrets::fixed(
                    std::env::var(var)
                        .map_err(|_| format!("hook {hook}: the environment variable {var} (its secret) is not set"))?
                        .into_bytes(),
                )),
                (None, Some(file)) => {
                    Some(secret_files::HookSecrets::from_file(file).map_err(|e| format!("hook {hook}: {e}"))?)
                }
                (None, None) => None,
            };
            let signed = secrets.map(|secrets| HookSignature { scheme, secrets });
            let options = HookOptions {
                signed,
                delivery_key: section.delivery_key(hook)?,
            };
            hooks.insert(hook.clone(), options);
        }
        let mut scoped = auth::scoped_tokens(&config.server.tokens, token.as_deref(), |var| std::env::var(var).ok())?;
        if let Some(file) = token_file {
            if token.is_some() {
                return Err("WHENEVER_TOKEN and WHENEVER_TOKEN_FILE are both set; keep one".into());
            }
            scoped.push(auth::full_token_from_file(file)?);
            auth::distinct(&scoped, None)?;
        }
        Ok(ApiOptions {
            token,
            scoped,
            hooks,
            max_body_bytes: config.server.max_body_bytes,
            max_component_bytes: config.server.max_component_bytes,
            threads: config.server.api_threads.get(),
            tls: match config.server.tls() {
                Some((cert, key)) => Some(tls::Tls::load(cert, key).map_err(|e| format!("HTTPS: {e}"))?),
                None => None,
            },
            header_timeout: Some(std::time::Duration::from_millis(config.server.header_timeout_ms.get())),
            max_connections: Some(
                config
                    .server
                    .max_connections
                    .map_or_else(connections::default_max_connections, |max| max.get()),
            ),
            http2: connections::Http2 {
                enabled: config.server.http2,
                max_streams: config.server.http2_max_streams.get(),
                keepalive: (config.server.http2_keepalive_ms > 0)
                    .then(|| std::time::Duration::from_millis(config.server.http2_keepalive_ms)),
            },
        })
    }
}

/// How the API treats the deliveries to one configured hook.
#[derive(Debug, Clone, Default)]
pub struct HookOptions {
    /// The signature every delivery must carry (`None`: deliveries are not signed, and the
    /// bearer token guards the hook like any route).
    pub signed: Option<HookSignature>,
    /// Where its deliveries carry their idempotency key.
    pub delivery_key: DeliveryKey,
}

impl HookOptions {
    /// A hook whose deliveries are signed the `whenever` way with `secret`.
    pub fn signed_with(secret: &[u8]) -> HookOptions {
        HookOptions {
            signed: Some(HookSignature {
                scheme: SignatureScheme::Whenever,
                secrets: secret_files::HookSecrets::fixed(secret.to_vec()),
            }),
            ..HookOptions::default()
        }
    }
}

/// How a hook's deliveries are signed: the provider's scheme and the HMAC-SHA256 key.
#[derive(Debug, Clone)]
pub struct HookSignature {
    /// Which header carries the signature, and over what.
    pub scheme: SignatureScheme,
    /// The shared secrets (HMAC keys): a delivery signed with any of them is accepted.
    pub secrets: secret_files::HookSecrets,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) service: Service,
    pub(crate) options: Arc<ApiOptions>,
    /// The scoped tokens accepted now (`options.scoped` as their files last said).
    pub(crate) tokens: secret_files::LiveTokens,
    /// Whether `/metrics` could count the tasks last time (a change is logged).
    task_counts: task_counts::TaskCounts,
}

/// The API's routes over `service`.
pub fn router(service: Service, options: ApiOptions) -> Router {
    let tokens = secret_files::LiveTokens::new(options.scoped.clone());
    router_with(service, options, tokens)
}

/// [`router`] with the scoped tokens in `tokens`, which may change while it serves.
fn router_with(service: Service, options: ApiOptions, tokens: secret_files::LiveTokens) -> Router {
    let body_limit = options.max_body_bytes;
    let component_limit = options.max_component_bytes;
    let state = AppState {
        service,
        options: Arc::new(options),
        tokens,
        task_counts: task_counts::TaskCounts::default(),
    };
    Router::new()
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route(
            "/v1/tasks/{id}",
            get(tasks::show).patch(tasks::patch).delete(tasks::delete),
        )
        .route("/v1/tasks/{id}/retry", post(tasks::retry))
        .route("/v1/tasks/{id}/conditions", get(tasks::conditions))
        .route("/v1/tasks/by-key/{key}", get(idempotency::task_of_request))
        .route("/v1/hooks/{hook}", post(hooks::receive))
        .route("/v1/hooks/{hook}/deliveries/{key}", get(idempotency::task_of_delivery))
        .route("/v1/steps", get(steps::list))
        .route(
            "/v1/steps/{name}",
            put(steps::deploy)
                .layer(DefaultBodyLimit::max(component_limit))
                .get(steps::show)
                .delete(steps::remove),
        )
        .route("/v1/steps/{name}/rollback", post(steps::rollback))
        .route("/v1/steps/{name}/changes", get(steps::changes))
        .route("/v1/steps/{name}/versions", get(steps::versions))
        .route("/v1/hosts", get(cluster::hosts))
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            stalled_bodies::limit_pauses,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(lingering::close_after_refusal))
        .layer(middleware::from_fn(finish_what_is_begun))
        .with_state(state)
}

/// Runs a request that may change something apart from its connection, to its end: a client
/// that goes away (or an HTTP/2 stream reset) drops the connection's future, and with it a
/// handler in the middle of its work, say between a task's commit and the drive that follows it,
/// which would leave the task `running` with nothing driving it until the next start. A read
/// (`GET`, `HEAD`) has nothing to leave half done and is answered in place. What the handler
/// does after its work, waiting for the task to settle (`?wait=`), ends once its client is gone
/// ([`while_the_client_waits`]): such waits do not pile up past their connections.
async fn finish_what_is_begun(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    // Dropped with this future, when the client goes away: the handler's waits then end.
    let (_present, presence) = tokio::sync::watch::channel(());
    match tokio::spawn(CLIENT.scope(presence, next.run(request))).await {
        Ok(response) => response,
        Err(e) => {
            // A panic's message is the server's to read, not the client's.
            eprintln!("whenever serve: a request's handler failed: {e}");
            ApiError::Internal("the request's handler failed; the server's log says why".into()).into_response()
        }
    }
}

tokio::task_local! {
    /// Whether the client of the request a detached handler answers is still there: its sender
    /// is dropped when the client goes away ([`finish_what_is_begun`]).
    static CLIENT: tokio::sync::watch::Receiver<()>;
}

/// `wait` (a task settling), or `None` once the client of the request being answered went away:
/// nobody is left to be answered.
pub(crate) async fn while_the_client_waits<T>(wait: impl Future<Output = T>) -> Option<T> {
    let Ok(mut presence) = CLIENT.try_with(Clone::clone) else {
        return Some(wait.await);
    };
    tokio::select! {
        value = wait => Some(value),
        // Nothing is ever sent: this ends only when the sender is dropped.
        _ = presence.changed() => None,
    }
}

/// What a handler answers a client that went away while it waited (nobody reads it; the
/// request's metrics count it).
pub(crate) fn client_gone() -> ApiError {
    ApiError::RequestTimeout("the client went away while the request waited for its task".into())
}

/// Serves the API on `listener` until `shutdown` resolves: over HTTPS when
/// [`ApiOptions::tls`] is set (its certificate reloaded when its files change), else over HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Service,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = options.header_timeout.unwrap_or(connections::DEFAULT_HEADER_TIMEOUT);
    let tokens = secret_files::LiveTokens::new(options.scoped.clone());
    let hooks: Vec<(String, secret_files::HookSecrets)> = options
        .hooks
        .iter()
        .filter_map(|(name, hook)| Some((name.clone(), hook.signed.as_ref()?.secrets.clone())))
        .collect();
    let rereading = secret_files::any_file(&tokens, &hooks).then(|| {
        let (tokens, full) = (tokens.clone(), options.token.clone());
        tokio::spawn(secret_files::reread_on_change(
            tokens,
            full,
            hooks,
            secret_files::RELOAD_INTERVAL,
        ))
    });
    let limits = connections::Limits {
        header_timeout,
        max_connections: options.max_connections,
        http2: options.http2,
    };
    let served = match options.tls.clone() {
        None => {
            let metrics = service.metrics().clone();
            let router = router_with(service, options, tokens);
            connections::serve(listener, router, limits, metrics, shutdown).await
        }
        Some(tls) => {
            let reloading = tokio::spawn(
                tls.clone()
                    .reload_on_change(tls::RELOAD_INTERVAL, service.metrics().clone()),
            );
            let offered = if options.http2.enabled { tls } else { tls.http1_only() };
            let listener = offered.listener(listener, service.metrics().clone());
            let metrics = service.metrics().clone();
            let router = router_with(service, options, tokens);
            let served = connections::serve(listener, router, limits, metrics, shutdown).await;
            reloading.abort();
            served
        }
    };
    if let Some(rereading) = rereading {
        rereading.abort();
    }
    served
}

/// Serves the API like [`serve`], but from threads of its own (`whenever-api`, as many as
/// [`ApiOptions::threads`]; with one, a single-threaded runtime), until `shutdown` resolves
/// (it is polled there).
///
/// Why: the service's runtime is kept busy by its drives, one step run after another. A request
/// waiting in that runtime's queue behind them kept webhook senders waiting about 4 ms more for
/// their `201` under load (the service bench, 16 senders), so the API took orders more slowly
/// than the drives could finish them. On its own thread a request is answered as soon as the
/// operating system gives the thread a turn; the tasks it creates are still driven on the
/// service's runtime.
pub async fn serve_on_own_thread(
    listener: tokio::net::TcpListener,
    service: Service,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // A listener belongs to the runtime that registered it: it moves over as a std one.
    let listener = listener.into_std()?;
    let threads = options.threads.max(1);
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("whenever-api".into()).spawn(move || {
        let runtime = if threads == 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("whenever-api")
                .enable_all()
                .build()
        };
        let served = runtime.and_then(|runtime| {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(listener, service, options, shutdown).await
            })
        });
        let _ = done.send(served);
    })?;
    outcome
        .await
        .map_err(|_| std::io::Error::other("the API thread stopped without an answer"))?
}

/// Counts every answer in the service's metrics (`whenever_http_requests_total`, and the time to
/// answer in `whenever_http_request_duration_seconds`), by route template, method and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    state.service.metrics().request_answered(
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The API described as an OpenAPI 3.1 document (`GET /v1/openapi.json`), for clients,
/// generators and API fuzzers; `tests/e2e/openapi.rs` checks it against the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when this host should be sent work, else 503; the body names each check's
/// outcome ([`crate::service::Readiness`]).
async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.service.readiness().await;
    let status = match readiness.status {
        crate::service::readiness::ReadyStatus::Ready => StatusCode::OK,
        crate::service::readiness::ReadyStatus::NotReady => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, axum::Json(readiness)).into_response()
}

/// The metrics, answered while the store fails too (that is when they are wanted): the task
/// counts are left out when the store cannot count them within
/// [`crate::service::readiness::PROBE_TIMEOUT`] (logged once, with why: [`task_counts`]), and
/// the readiness (one probe a second at most, as for `/readyz`) says why.
async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.service.store();
    let counting = tokio::time::timeout(crate::service::readiness::PROBE_TIMEOUT, store.count_tasks());
    // In a cluster, the hosts on the store (left out, as the counts, when the store is slow).
    let listing = async {
        state.service.host_id()?;
        let listed = tokio::time::timeout(crate::service::readiness::PROBE_TIMEOUT, state.service.hosts());
        listed.await.ok().and_then(Result::ok)
    };
    let (counts, readiness, hosts) = tokio::join!(counting, state.service.readiness(), listing);
    let (counts, counted) = match counts {
        Ok(Ok(counts)) => (Some(counts), Ok(())),
        Ok(Err(error)) => (None, Err(error.to_string())),
        Err(_) => (
            None,
            Err(format!(
                "the store did not count them within {} s",
                crate::service::readiness::PROBE_TIMEOUT.as_secs()
            )),
        ),
    };
    if let Some(line) = state.task_counts.record(counted) {
        eprintln!("whenever serve: {line}");
    }
    let text = state.service.metrics().render(
        counts.as_ref(),
        state.service.drives_under_way(),
        store.commit_stats().as_ref(),
        &readiness,
        hosts.as_ref(),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The body, or 413 beyond the limit (400 for another read failure).
pub(crate) fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else if let Some(stalled) = stalled_bodies::stalled(&rejection) {
            ApiError::RequestTimeout(stalled.to_string())
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

/// A serializable answer as JSON (a value that does not serialize is a 500).
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<axum::Json<Value>, ApiError> {
    serde_json::to_value(value)
        .map(axum::Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Parses a request's JSON body. The body decides, not its `Content-Type`: `curl -d '{...}'`
/// labels JSON as a form. A body that is not JSON is a 400 naming where the parser stopped, or,
/// sent as another type (a form, XML), a 415 naming that type, which says more. One holding an
/// integer beyond 64 bits (which would be kept rounded) is a 400 naming it and where.
pub(crate) fn json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty; send JSON".into()));
    }
    let value = serde_json::from_slice(bytes).map_err(|e| match declared_not_json(headers) {
        // JSON, nested past what serde_json reads (127 levels): not another media type.
        _ if is_nested_too_deep(&e) => ApiError::BadRequest(format!(
            "the request body nests arrays and objects deeper than this server reads ({DEEPEST_READ} \
             levels): {e}"
        )),
        Some(declared) => ApiError::UnsupportedMediaType(format!(
            "the request body was sent as {declared} and is not JSON ({e}); this route takes JSON \
             (Content-Type: application/json)"
        )),
        None => ApiError::BadRequest(format!("malformed JSON in the request body: {e}")),
    })?;
    // Read, such an integer has been rounded already: refused rather than stored so.
    if let Some(wide) = crate::wide_integer::first_wide_integer(bytes) {
        return Err(ApiError::BadRequest(format!("in the request body, {wide}")));
    }
    Ok(value)
}

/// The deepest nesting of arrays and objects serde_json reads (its recursion limit).
const DEEPEST_READ: usize = 127;

/// Whether serde_json stopped at its nesting limit ([`DEEPEST_READ`] levels), which
/// it names only in its message.
fn is_nested_too_deep(error: &serde_json::Error) -> bool {
    error.to_string().starts_with("recursion limit exceeded")
}

/// The media type a request's `Content-Type` names, when it is not a JSON one
/// (`application/json`, `text/json`, `…+json`).
fn declared_not_json(headers: &HeaderMap) -> Option<String> {
    let value = String::from_utf8_lossy(headers.get(header::CONTENT_TYPE)?.as_bytes()).into_owned();
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = essence == "application/json" || essence == "text/json" || essence.ends_with("+json");
    (!json && !essence.is_empty()).then_some(essence)
}

/// A small request body read strictly into `T` (which denies unknown fields): anything but an
/// object (serde would take an array's items as the fields in order), a misspelt key or a value
/// of the wrong type is a 400 naming it, after the body's expected `shape`.
pub(crate) fn strict_body<T: serde::de::DeserializeOwned>(body: Value, shape: &str) -> Result<T, ApiError> {
    let found = match &body {
        Value::Object(_) => {
            return T::deserialize(body).map_err(|e| ApiError::BadRequest(format!("the body must be {shape}: {e}")));
        }
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    Err(ApiError::BadRequest(format!(
        "the body must be {shape}, an object; it is {found}"
    )))
}

/// `?wait=MS`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WaitParam {
    wait: Option<u64>,
}

impl WaitParam {
    pub(crate) fn duration(&self) -> Option<Duration> {
        self.wait.map(|ms| Duration::from_millis(ms.min(60_000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_as(media_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_str(media_type).expect("a header value"),
        );
        headers
    }

    #[test]
    fn json_nested_too_deep_is_a_400_whatever_type_it_was_sent_as() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for headers in [
            HeaderMap::new(),
            sent_as("application/json"),
            sent_as("application/x-www-form-urlencoded"),
        ] {
            match json_body(&headers, deep.as_bytes()) {
                Err(ApiError::BadRequest(message)) => assert!(
                    message.starts_with("the request body nests arrays and objects deeper than this server reads (127 levels): recursion limit exceeded"),
                    "{message}"
                ),
                other => panic!("{headers:?}: {other:?}"),
            }
        }
        // 127 levels are read.
        let within = format!("{}{}", "[".repeat(DEEPEST_READ), "]".repeat(DEEPEST_READ));
        assert!(json_body(&sent_as("application/x-www-form-urlencoded"), within.as_bytes()).is_ok());
        // A form that is not JSON is still another media type.
        assert!(matches!(
            json_body(&sent_as("application/x-www-form-urlencoded"), b"a=1&b=2"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
