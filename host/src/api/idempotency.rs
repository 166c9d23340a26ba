//! Idempotency keys of requests that create tasks ([`crate::request_key`]): read from the
//! `Idempotency-Key` header, or from where a hook's config says its deliveries carry their id;
//! a repeat is answered `200` with the task the first request created and
//! `Idempotent-Replayed: true` (as Stripe answers), instead of `201`. The task a key created can
//! be looked up by the key (`GET /v1/tasks/by-key/{key}`, `GET /v1/hooks/{hook}/deliveries/{key}`).

use axum::extract::State;

use super::path::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::config::DeliveryKey;
use crate::request_key::RequestKey;
use crate::service::Created;

/// The header a client puts its idempotency key in (the IETF's draft, Stripe's API).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The header a repeat's answer carries.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The scope of keys sent to `POST /v1/tasks`.
const TASKS_SCOPE: &str = "tasks";

/// The key of a `POST /v1/tasks` with body `raw`, if it carries one.
pub(crate) fn of_request(headers: &HeaderMap, raw: &[u8]) -> Result<Option<RequestKey>, ApiError> {
    header(headers, IDEMPOTENCY_KEY_HEADER)?
        .map(|key| keyed(TASKS_SCOPE, key, raw))
        .transpose()
}

/// The key of a delivery to `hook`, read where `source` says (`None`: the default, the
/// `Idempotency-Key` header), with raw body `raw` parsed as `payload`. A hook configured with a
/// header or a pointer refuses a delivery without it.
pub(crate) fn of_delivery(
    hook: &str,
    source: Option<&DeliveryKey>,
    headers: &HeaderMap,
    payload: &Value,
    raw: &[u8],
) -> Result<Option<RequestKey>, ApiError> {
    let scoped = |key: &str| keyed(&format!("hook:{hook}"), key, raw).map(Some);
    match source.unwrap_or(&DeliveryKey::IdempotencyKeyHeader) {
        DeliveryKey::IdempotencyKeyHeader => header(headers, IDEMPOTENCY_KEY_HEADER)?.map_or(Ok(None), scoped),
        DeliveryKey::Header(name) => match header(headers, name)? {
            Some(key) => scoped(key),
            None => Err(ApiError::BadRequest(format!(
                "hook {hook} takes each delivery's id from the {name} header, which this delivery lacks"
            ))),
        },
        DeliveryKey::Pointer(pointer) => match payload.pointer(pointer) {
            Some(Value::String(id)) => scoped(id),
            Some(Value::Number(id)) => scoped(&id.to_string()),
            found => Err(ApiError::BadRequest(format!(
                "hook {hook} takes each delivery's id from {pointer} in the body, a string or a number; \
                 this delivery has {}",
                found.map_or_else(|| "nothing there".to_string(), |v| format!("{v} there"))
            ))),
        },
    }
}

/// Header `name`'s value, if present; a value that is not visible ASCII is refused.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("the {name} header is not visible ASCII text")))
        })
        .transpose()
}

/// `GET /v1/tasks/by-key/{key}`: the task a `POST /v1/tasks` with this key created.
pub(crate) async fn task_of_request(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    show_created(&state, &keyed(TASKS_SCOPE, &key, b"")?).await
}

/// `GET /v1/hooks/{hook}/deliveries/{key}`: the task a delivery with this id created.
pub(crate) async fn task_of_delivery(
    State(state): State<AppState>,
    Path((hook, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    show_created(&state, &keyed(&format!("hook:{hook}"), &key, b"")?).await
}

async fn show_created(state: &AppState, key: &RequestKey) -> Result<Response, ApiError> {
    let stored = state.service.task_for_request(key).await?;
    Ok(super::tasks::task_response(StatusCode::OK, &stored))
}

fn keyed(scope: &str, key: &str, raw: &[u8]) -> Result<RequestKey, ApiError> {
    RequestKey::new(scope, key, raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The answer to a create: the task's answer as a create gives it (`201`) for a new task; for a
/// repeat, the same answer as `200` with [`REPLAYED_HEADER`].
pub(crate) fn answer(created: Created<Response>) -> Response {
    match created {
        Created::New(response) => response,
        Created::Replayed(mut response) => {
            *response.status_mut() = StatusCode::OK;
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            response
        }
    }
}
