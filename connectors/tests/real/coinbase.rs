//! `coinbase` kind "coinbase" against a local server answering like Coinbase Commerce's charges API.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{Log, assert_no_secret, call, registry, serve};

const API_KEY: &str = "cb8a1f2e-0000-4c6e-9f7a-secretkey0001";

async fn charges(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("x-cc-api-key") != API_KEY {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"type": "authorization_error", "message": "No such API key."}})),
        )
            .into_response();
    }
    if header("x-cc-version") != "2018-03-22" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request", "message": "Unsupported API version"}})),
        )
            .into_response();
    }
    if body.pointer("/local_price/amount").and_then(Value::as_str).is_none() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request", "message": "local_price: amount is required"}})),
        )
            .into_response();
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({"data": {
            "id": "f765421f-2b7e-4f5a-8a2c-5d8c3a1b9e10",
            "code": "66BEOV2A",
            "name": body["name"], "description": body["description"],
            "hosted_url": "https://commerce.coinbase.com/charges/66BEOV2A",
            "pricing_type": "fixed_price", "local_price": body["local_price"],
            "metadata": body["metadata"],
            "timeline": [{"status": "NEW", "time": "2024-01-01T00:00:00Z"}],
        }})),
    )
        .into_response()
}

async fn fake_coinbase() -> (String, Log) {
    serve(Router::new().route("/charges", post(charges))).await
}

fn config(url: &str) -> String {
    format!(
        "[connectors.coinbase]\nkind = \"coinbase\"\napi_key_env = \"COINBASE_COMMERCE_KEY\"\n\
         base_url = \"{url}\"\ncharge_name = \"RetailMax order\"\n"
    )
}

#[tokio::test]
async fn coinbase_creates_a_charge_with_key_version_and_idempotency_key() {
    let (url, log) = fake_coinbase().await;
    let reg = registry(&config(&url), &[("COINBASE_COMMERCE_KEY", API_KEY)]);
    let r = call(
        &reg,
        "coinbase",
        "processPayment",
        json!({"amount": 1247.99, "currency": "USD", "wallet": "bc1qxyz", "orderId": "o-7"}),
        "o-7/pay/1/0",
    )
    .await;
    assert_eq!(
        r,
        Ok(json!({"success": true, "transactionId": "66BEOV2A",
                  "chargeId": "f765421f-2b7e-4f5a-8a2c-5d8c3a1b9e10",
                  "hostedUrl": "https://commerce.coinbase.com/charges/66BEOV2A"}))
    );
    let s = &log.all()[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/charges"));
    assert_eq!(s.header("x-cc-api-key"), API_KEY);
    assert_eq!(s.header("x-cc-version"), "2018-03-22");
    assert_eq!(s.header("idempotency-key"), "o-7/pay/1/0");
    let body = s.json();
    assert_eq!(body["name"], json!("RetailMax order"));
    assert_eq!(body["description"], json!("Order o-7"));
    assert_eq!(body["pricing_type"], json!("fixed_price"));
    assert_eq!(body["local_price"], json!({"amount": "1247.99", "currency": "USD"}));
    assert_eq!(body["metadata"]["wallet"], json!("bc1qxyz"));
    assert_eq!(body["metadata"]["orderId"], json!("o-7"));
    assert_eq!(body["metadata"]["idempotencyKey"], json!("o-7/pay/1/0"));
    assert_eq!(reg.effects().count("coinbase", "processPayment"), 1);
}

#[tokio::test]
async fn coinbase_empty_wallet_is_refused_like_the_simulator_without_a_request() {
    let (url, log) = fake_coinbase().await;
    let reg = registry(&config(&url), &[("COINBASE_COMMERCE_KEY", API_KEY)]);
    let r = call(
        &reg,
        "coinbase",
        "processPayment",
        json!({"amount": 10, "wallet": " "}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"success": false, "error": "invalid wallet"})));
    let r = call(&reg, "coinbase", "processPayment", json!({"wallet": "w"}), "k2").await;
    assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    assert_eq!(log.len(), 0);
}

#[tokio::test]
async fn coinbase_refusal_is_failed_with_its_message() {
    let (url, _log) = fake_coinbase().await;
    let reg = registry(&config(&url), &[("COINBASE_COMMERCE_KEY", "cb-wrong-key-0042")]);
    let e = call(
        &reg,
        "coinbase",
        "processPayment",
        json!({"amount": 10, "wallet": "w"}),
        "k",
    )
    .await
    .err();
    let Some(e) = e else { panic!("a wrong key must fail") };
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Failed, "No such API key."));
    assert_no_secret(&format!("{e:?}"), &["cb-wrong-key-0042"]);
    assert!(reg.effects().is_empty());
}
