//! Webhooks: any JSON body becomes a task, with `$via` naming the hook; a hook with a secret
//! must be signed (`X-Whenever-Signature: sha256=HEX`, HMAC-SHA256 of the raw body, or its
//! provider's scheme: [`super::signatures`]). A delivery
//! with an id (`Idempotency-Key`, or where the hook's config says) creates one task however
//! often it is delivered; `$via.key` is that id. A body that is not an object is kept under
//! `payload`. Where hooks have a secret, a server without tokens takes deliveries only to the
//! hooks its config names.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};

use super::path::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::tasks::{create_and_answer, query};
use super::{ApiError, AppState, WaitParam, body, idempotency, json_body, secret_files, signatures};
use crate::service::metrics::SecretOf;

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    wait: Result<Query<WaitParam>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?;
    let raw = body(raw, state.options.max_body_bytes)?;
    let options = state.options.hooks.get(&hook);
    if options.is_none() && !state.options.has_tokens() {
        let signed = signed_hooks(&state.options);
        // A hook with a secret signals deliveries that must be checked; an unsigned one to a
        // name the config lacks (misspelt, most often, or sent through a proxy that forwards
        // every hook) is refused rather than taken unchecked.
        if !signed.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no hook {hook:?} in this server's config; where hooks have a secret, a server \
                 without tokens takes deliveries only to the hooks its config names ({})",
                state
                    .options
                    .hooks
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if let Some(signed) = options.and_then(|h| h.signed.as_ref()) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let secrets = signed.secrets.now();
        let signer = signatures::verify_any(&signed.scheme, &secrets, &headers, &raw, now)
            .map_err(|e| ApiError::Unauthorized(format!("hook {hook}: {e}")))?;
        if let Some(secret) = secrets.get(signer) {
            state.service.metrics().secret_used(SecretOf {
                kind: "hook",
                name: hook.clone(),
                fingerprint: secret_files::fingerprint(secret),
            });
        }
    }
    let payload = json_body(&headers, &raw)?;
    let source = options.map(|h| &h.delivery_key);
    let key = idempotency::of_delivery(&hook, source, &headers, &payload, &raw)?;
    let mut via = json!({
        "id": crate::task::new_task_id().replacen("t_", "d_", 1),
        "name": hook,
        "type": "webhook",
        "received": crate::rfc3339::text(&chrono::Utc::now(), chrono::SecondsFormat::Millis),
    });
    if let Some(key) = &key {
        via["key"] = Value::String(key.key.clone());
    }
    let data = match payload {
        Value::Object(mut map) => {
            map.insert(crate::task::VIA.into(), via);
            Value::Object(map)
        }
        // Anything else is kept whole under `payload` (a level deeper, held to the task data's
        // nesting like any).
        other => {
            let mut map = Map::new();
            map.insert("payload".into(), other);
            map.insert(crate::task::VIA.into(), via);
            Value::Object(map)
        }
    };
    create_and_answer(&state.service, data, key, &wait).await
}

/// The names of the configured hooks that have a secret, in name order.
pub(super) fn signed_hooks(options: &super::ApiOptions) -> Vec<&str> {
    options
        .hooks
        .iter()
        .filter(|(_, h)| h.signed.is_some())
        .map(|(name, _)| name.as_str())
        .collect()
}
