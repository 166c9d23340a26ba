//! The generic kind "http" against local services shaped like RetailMax's own
//! (`fraudGuard`, `inventorySystem`, and a service of one's own).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{Log, call, registry, serve};

const TOKEN: &str = "svc-token-SecretValue-77";

fn authorized(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(value)
}

async fn analyze(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    if !authorized(&headers, "authorization", &format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "bad token"}))).into_response();
    }
    match body["customerEmail"].as_str() {
        None => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": {"message": "customerEmail is required"}})),
        )
            .into_response(),
        Some(e) => {
            let score = if e.ends_with(".test") { 45 } else { 5 };
            axum::Json(json!({"score": score, "recommendation": if score > 30 {"review"} else {"approve"}}))
                .into_response()
        }
    }
}

async fn reserve(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    if !authorized(&headers, "x-api-key", TOKEN) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({"message": "forbidden"}))).into_response();
    }
    if body["sku"] == json!("GONE") {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"message": "insufficient stock for GONE"})),
        )
            .into_response();
    }
    axum::Json(json!({"id": "RES-42", "expiresAt": "2030-01-01T00:00:00Z"})).into_response()
}

async fn release(State(calls): State<Arc<AtomicUsize>>) -> Response {
    // Down twice, then fine.
    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
        return (StatusCode::BAD_GATEWAY, "upstream down").into_response();
    }
    axum::Json(json!({"released": true})).into_response()
}

async fn fake_services() -> (String, Log) {
    serve(
        Router::new()
            .route("/fraud/analyze", post(analyze))
            .route("/inventory/reserve", post(reserve))
            .route("/inventory/release", post(release))
            .route("/loyalty/v2.award", post(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/loyalty/echo",
                post(|axum::Json(v): axum::Json<Value>| async move { axum::Json(v) }),
            )
            .with_state(Arc::new(AtomicUsize::new(0))),
    )
    .await
}

fn config(url: &str) -> String {
    format!(
        r#"
[connectors.fraudGuard]
kind = "http"
base_url = "{url}/fraud/"
token_env = "FRAUD_TOKEN"

[connectors.inventorySystem]
kind = "http"
base_url = "{url}/inventory"
token_env = "INVENTORY_KEY"
auth_header = "X-Api-Key"
backoff_ms = 10

[connectors.loyaltyPoints]
kind = "http"
base_url = "{url}/loyalty"
effect_methods = ["v2.award"]
"#
    )
}

const ENV: &[(&str, &str)] = &[("FRAUD_TOKEN", TOKEN), ("INVENTORY_KEY", TOKEN)];

#[tokio::test]
async fn http_posts_the_json_args_with_bearer_token_and_idempotency_key() {
    let (url, log) = fake_services().await;
    let reg = registry(&config(&url), ENV);
    let args = json!({"orderId": "o-1", "customerEmail": "a@shop.test", "amount": 10,
                      "shippingAddress": {"country": "US"}});
    let r = call(&reg, "fraudGuard", "analyze", args.clone(), "o-1/fraud/1/0").await;
    assert_eq!(r, Ok(json!({"score": 45, "recommendation": "review"})));
    let s = &log.all()[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/fraud/analyze"));
    assert_eq!(s.header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(s.header("idempotency-key"), "o-1/fraud/1/0");
    assert_eq!(s.json(), args);
    // fraudGuard has no side effects.
    assert!(reg.effects().is_empty());
}

#[tokio::test]
async fn http_custom_header_auth_and_effects_for_effectful_methods() {
    let (url, log) = fake_services().await;
    let reg = registry(&config(&url), ENV);
    let r = call(
        &reg,
        "inventorySystem",
        "reserve",
        json!({"sku": "MONITOR-LG-27", "quantity": 1}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"id": "RES-42", "expiresAt": "2030-01-01T00:00:00Z"})));
    let s = &log.all()[0];
    assert_eq!(s.header("x-api-key"), TOKEN);
    assert_eq!(s.header("authorization"), "");
    let effects = reg.effects().all();
    assert_eq!(effects.len(), 1);
    assert_eq!(
        (effects[0].method.as_str(), effects[0].reference.as_str()),
        ("reserve", "RES-42")
    );
}

#[tokio::test]
async fn http_4xx_is_failed_or_invalid_args_with_the_services_message() {
    let (url, _log) = fake_services().await;
    let reg = registry(&config(&url), ENV);
    let r = call(&reg, "fraudGuard", "analyze", json!({"amount": 1}), "a").await;
    assert_eq!(
        r.err().map(|e| (e.kind, e.message)),
        Some((ErrorKind::InvalidArgs, "customerEmail is required".into()))
    );
    let r = call(&reg, "inventorySystem", "reserve", json!({"sku": "GONE"}), "b").await;
    assert_eq!(
        r.err().map(|e| (e.kind, e.message)),
        Some((ErrorKind::Failed, "insufficient stock for GONE".into()))
    );
    let reg = registry(
        &config(&url),
        &[("FRAUD_TOKEN", "wrong-token-1"), ("INVENTORY_KEY", TOKEN)],
    );
    let r = call(&reg, "fraudGuard", "analyze", json!({"customerEmail": "a@b.c"}), "c").await;
    assert_eq!(
        r.err().map(|e| (e.kind, e.message)),
        Some((ErrorKind::Failed, "bad token".into()))
    );
}

#[tokio::test]
async fn http_5xx_is_retried_with_the_same_key() {
    let (url, log) = fake_services().await;
    let reg = registry(&config(&url), ENV);
    let r = call(
        &reg,
        "inventorySystem",
        "release",
        json!({"reservationId": "RES-42"}),
        "rel-1",
    )
    .await;
    assert_eq!(r, Ok(json!({"released": true})));
    let seen = log.to("/inventory/release");
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.header("idempotency-key") == "rel-1"));
}

#[tokio::test]
async fn http_methods_are_checked_before_any_request() {
    let (url, log) = fake_services().await;
    let reg = registry(&config(&url), ENV);
    // A built-in name keeps its methods by default.
    let r = call(&reg, "fraudGuard", "refund", json!({}), "a").await;
    assert!(r.is_err_and(|e| e.kind == ErrorKind::Unknown && e.message.contains("fraudGuard.refund")));
    // A service of one's own takes any method that is safe in a URL path.
    let r = call(&reg, "loyaltyPoints", "../fraud/analyze", json!({}), "b").await;
    assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::Unknown));
    assert_eq!(log.len(), 0);
    let r = call(&reg, "loyaltyPoints", "echo", json!({"points": 5}), "c").await;
    assert_eq!(r, Ok(json!({"points": 5})));
    let r = call(&reg, "loyaltyPoints", "v2.award", json!({"points": 5}), "d").await;
    assert_eq!(r, Ok(Value::Null));
    assert_eq!(reg.effects().count("loyaltyPoints", "v2.award"), 1);
    assert_eq!(reg.effects().count("loyaltyPoints", "echo"), 0);
}
