//! Webhooks: any JSON body becomes a task, with `$via` naming the hook; a hook with a secret
//! must be signed (`X-Whenever-Signature: sha256=HEX`, HMAC-SHA256 of the raw body). A delivery
//! with an id (`Idempotency-Key`, or where the hook's config says) creates one task however
//! often it is delivered; `$via.key` is that id.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::tasks::{create_and_answer, query};
use super::{ApiError, AppState, WaitParam, body, idempotency, parse_json};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-whenever-signature";

/// Whether `signature` (`sha256=HEX`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    wait: Result<Query<WaitParam>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?;
    let raw = body(raw, state.options.max_body_bytes)?;
    if let Some(secret) = state.options.hook_secrets.get(&hook) {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized(format!("hook {hook} needs an {SIGNATURE_HEADER} header")))?;
        if !signature_valid(secret, &raw, signature) {
            return Err(ApiError::Unauthorized(format!(
                "the signature of this delivery to hook {hook} is not valid"
            )));
        }
    }
    let payload = parse_json(&raw)?;
    let source = state.options.hook_keys.get(&hook);
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
            map.insert("$via".into(), via);
            Value::Object(map)
        }
        // Anything else is kept whole under `payload`.
        other => {
            let mut map = Map::new();
            map.insert("payload".into(), other);
            map.insert("$via".into(), via);
            Value::Object(map)
        }
    };
    create_and_answer(&state.service, data, key, &wait).await
}
