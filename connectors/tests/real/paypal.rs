//! `paypal` kind "paypal" against a local server answering like PayPal's OAuth2 and Orders v2 APIs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{Log, assert_no_secret, call, registry, serve};

const CLIENT_ID: &str = "AcLientIdForTests123";
const CLIENT_SECRET: &str = "EClientSecretForTests456";

#[derive(Clone)]
struct FakePaypal {
    tokens_issued: Arc<AtomicUsize>,
    expires_in: u64,
    /// Tokens PayPal no longer accepts (revoked).
    revoked: Arc<Mutex<Vec<String>>>,
    by_request_id: Arc<Mutex<HashMap<String, (StatusCode, Value)>>>,
    captures: Arc<AtomicU64>,
}

impl FakePaypal {
    fn new(expires_in: u64) -> Self {
        FakePaypal {
            tokens_issued: Arc::new(AtomicUsize::new(0)),
            expires_in,
            revoked: Arc::default(),
            by_request_id: Arc::default(),
            captures: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn token(
    State(pp): State<FakePaypal>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if header(&headers, "authorization") != expected {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "Client Authentication failed"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})),
        )
            .into_response();
    }
    let n = pp.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({"scope": "https://uri.paypal.com/services/payments/payment",
                      "access_token": format!("A21AAtoken{n}"), "token_type": "Bearer",
                      "app_id": "APP-80W284485P519543T", "expires_in": pp.expires_in,
                      "nonce": "2024-01-01T00:00:00ZnOnCe"}))
    .into_response()
}

async fn capture(State(pp): State<FakePaypal>, Path(order): Path<String>, headers: HeaderMap) -> Response {
    let auth = header(&headers, "authorization");
    let valid = auth.starts_with("Bearer A21AAtoken")
        && !pp
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|t| auth.ends_with(t.as_str()));
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token", "error_description": "Token signature verification failed"})),
        )
            .into_response();
    }
    let request_id = header(&headers, "paypal-request-id").to_string();
    if let Some((s, v)) = pp
        .by_request_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&request_id)
        .cloned()
    {
        return (s, axum::Json(v)).into_response();
    }
    let answer = if order.starts_with("PAY-DECLINED") {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"name": "UNPROCESSABLE_ENTITY",
                   "details": [{"issue": "INSTRUMENT_DECLINED",
                                "description": "The instrument presented  was either declined by the processor or bank, or it can't be used for this payment."}],
                   "message": "The requested action could not be performed, semantically incorrect, or failed business validation.",
                   "debug_id": "90957fca61718"}),
        )
    } else if order == "MISSING" {
        (
            StatusCode::NOT_FOUND,
            json!({"name": "RESOURCE_NOT_FOUND",
                   "details": [{"issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist. Please check the resource ID and try again."}],
                   "message": "The specified resource does not exist."}),
        )
    } else if order == "CAPTURE-DECLINED" {
        (
            StatusCode::CREATED,
            json!({"id": order, "status": "COMPLETED",
                   "purchase_units": [{"payments": {"captures": [{"id": "CAPDECL", "status": "DECLINED"}]}}]}),
        )
    } else {
        let n = pp.captures.fetch_add(1, Ordering::SeqCst) + 1;
        (
            StatusCode::CREATED,
            json!({"id": order, "status": "COMPLETED",
                   "payer": {"email_address": "buyer@example.com"},
                   "purchase_units": [{"reference_id": "default",
                       "payments": {"captures": [{"id": format!("3C679366HH90851{n}"), "status": "COMPLETED",
                                                  "amount": {"currency_code": "USD", "value": "100.00"}}]}}]}),
        )
    };
    pp.by_request_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(request_id, answer.clone());
    (answer.0, axum::Json(answer.1)).into_response()
}

async fn fake_paypal(pp: FakePaypal) -> (String, Log) {
    serve(
        Router::new()
            .route("/v1/oauth2/token", post(token))
            .route("/v2/checkout/orders/{order}/capture", post(capture))
            .with_state(pp),
    )
    .await
}

fn config(url: &str) -> String {
    format!(
        "[connectors.paypal]\nkind = \"paypal\"\nclient_id_env = \"PAYPAL_CLIENT_ID\"\n\
         client_secret_env = \"PAYPAL_CLIENT_SECRET\"\nbase_url = \"{url}\"\nbackoff_ms = 10\n"
    )
}

const ENV: &[(&str, &str)] = &[("PAYPAL_CLIENT_ID", CLIENT_ID), ("PAYPAL_CLIENT_SECRET", CLIENT_SECRET)];

#[tokio::test]
async fn paypal_captures_orders_with_one_cached_token() {
    let (url, log) = fake_paypal(FakePaypal::new(32400)).await;
    let reg = registry(&config(&url), ENV);
    let a = call(
        &reg,
        "paypal",
        "executePayment",
        json!({"paymentId": "5O190127TN364715T", "amount": 100, "currency": "USD"}),
        "o-1/pay/1/0",
    )
    .await;
    assert_eq!(a, Ok(json!({"success": true, "transactionId": "3C679366HH908511"})));
    let b = call(
        &reg,
        "paypal",
        "executePayment",
        json!({"paymentId": "8AB12345CD678901E"}),
        "o-2/pay/1/0",
    )
    .await;
    assert_eq!(b, Ok(json!({"success": true, "transactionId": "3C679366HH908512"})));
    assert_eq!(log.to("/v1/oauth2/token").len(), 1);
    let token = &log.to("/v1/oauth2/token")[0];
    assert_eq!(token.form_value("grant_type").as_deref(), Some("client_credentials"));
    let captures: Vec<_> = log.all().into_iter().filter(|s| s.path.ends_with("/capture")).collect();
    assert_eq!(captures.len(), 2);
    assert_eq!(captures[0].path, "/v2/checkout/orders/5O190127TN364715T/capture");
    assert_eq!(captures[0].header("paypal-request-id"), "o-1/pay/1/0");
    assert_eq!(captures[1].header("paypal-request-id"), "o-2/pay/1/0");
    assert_eq!(captures[0].header("authorization"), "Bearer A21AAtoken1");
    assert_eq!(captures[0].header("content-type"), "application/json");
    assert_eq!(reg.effects().count("paypal", "executePayment"), 2);
}

#[tokio::test]
async fn paypal_instrument_declined_is_an_unsuccessful_answer() {
    let (url, _log) = fake_paypal(FakePaypal::new(32400)).await;
    let reg = registry(&config(&url), ENV);
    let r = call(
        &reg,
        "paypal",
        "executePayment",
        json!({"paymentId": "PAY-DECLINED-42"}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"success": false, "error": "INSTRUMENT_DECLINED"})));
    let r = call(
        &reg,
        "paypal",
        "executePayment",
        json!({"paymentId": "CAPTURE-DECLINED"}),
        "k2",
    )
    .await;
    assert_eq!(r, Ok(json!({"success": false, "error": "CAPTURE_DECLINED"})));
    assert!(reg.effects().is_empty());
}

#[tokio::test]
async fn paypal_unknown_order_is_failed_with_paypals_issue() {
    let (url, _log) = fake_paypal(FakePaypal::new(32400)).await;
    let reg = registry(&config(&url), ENV);
    let e = call(&reg, "paypal", "executePayment", json!({"paymentId": "MISSING"}), "k")
        .await
        .err();
    assert!(
        e.as_ref().is_some_and(|e| e.kind == ErrorKind::Failed
            && e.message
                .starts_with("INVALID_RESOURCE_ID: Specified resource ID does not exist")),
        "{e:?}"
    );
}

/// A token said to live longer than any clock holds (2^64 − 1 s) is kept a day: one token
/// serves both calls, where adding its life to now used to panic and fail every call.
#[tokio::test]
async fn paypal_token_of_an_endless_life_is_kept_and_used() {
    let (url, log) = fake_paypal(FakePaypal::new(u64::MAX)).await;
    let reg = registry(&config(&url), ENV);
    for k in ["a", "b"] {
        let r = call(&reg, "paypal", "executePayment", json!({"paymentId": "ORDER1"}), k).await;
        assert!(r.as_ref().is_ok_and(|v| v["success"] == json!(true)), "{r:?}");
    }
    assert_eq!(log.to("/v1/oauth2/token").len(), 1);
}

#[tokio::test]
async fn paypal_expired_and_revoked_tokens_are_renewed() {
    // `expires_in = 0`: every call needs a new token.
    let (url, log) = fake_paypal(FakePaypal::new(0)).await;
    let reg = registry(&config(&url), ENV);
    for k in ["a", "b"] {
        let r = call(&reg, "paypal", "executePayment", json!({"paymentId": "ORDER1"}), k).await;
        assert!(r.is_ok_and(|v| v["success"] == json!(true)));
    }
    assert_eq!(log.to("/v1/oauth2/token").len(), 2);

    // A revoked token: the capture's 401 makes the connector fetch a new one and try again.
    let pp = FakePaypal::new(32400);
    let (url, log) = fake_paypal(pp.clone()).await;
    let reg = registry(&config(&url), ENV);
    let r = call(&reg, "paypal", "executePayment", json!({"paymentId": "ORDER1"}), "a").await;
    assert!(r.is_ok());
    pp.revoked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push("A21AAtoken1".into());
    let r = call(&reg, "paypal", "executePayment", json!({"paymentId": "ORDER2"}), "b").await;
    assert!(r.is_ok_and(|v| v["success"] == json!(true)));
    assert_eq!(log.to("/v1/oauth2/token").len(), 2);
    let last = log.all().pop().map(|s| s.header("authorization"));
    assert_eq!(last.as_deref(), Some("Bearer A21AAtoken2"));
}

#[tokio::test]
async fn paypal_wrong_credentials_fail_without_showing_them() {
    let (url, log) = fake_paypal(FakePaypal::new(32400)).await;
    let reg = registry(
        &config(&url),
        &[
            ("PAYPAL_CLIENT_ID", CLIENT_ID),
            ("PAYPAL_CLIENT_SECRET", "EWrongSecretValue789"),
        ],
    );
    let e = call(&reg, "paypal", "executePayment", json!({"paymentId": "ORDER1"}), "k")
        .await
        .err();
    let Some(e) = e else {
        panic!("wrong credentials must fail")
    };
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(e.message.contains("invalid_client") && e.message.contains("401"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"), &["EWrongSecretValue789", CLIENT_ID]);
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn paypal_order_ids_cannot_reach_other_paths() {
    let (url, log) = fake_paypal(FakePaypal::new(32400)).await;
    let reg = registry(&config(&url), ENV);
    for (k, id) in [("a", "../../v1/oauth2/token"), ("b", "ORDER?x=1"), ("c", "")] {
        let r = call(&reg, "paypal", "executePayment", json!({"paymentId": id}), k).await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{id}");
    }
    assert_eq!(log.len(), 0);
}
