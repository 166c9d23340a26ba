//! `stripe` kind "stripe" against a local server answering like Stripe's Charges API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{assert_no_secret, call, registry, serve};

pub const KEY: &str = "sk_test_51HxSecretStripeKey0123456789";

/// Stripe's answers by idempotency key, so a repeat gets the first answer (as Stripe does).
#[derive(Clone, Default)]
struct FakeStripe {
    by_key: Arc<Mutex<HashMap<String, (StatusCode, Value)>>>,
    charges: Arc<Mutex<u32>>,
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"type": kind, "message": message}}))
}

async fn charges(
    State(stripe): State<FakeStripe>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let field = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    if header("authorization") != format!("Bearer {KEY}") {
        // Stripe echoes part of a wrong key; this one echoes all of it, to test scrubbing.
        let shown = header("authorization").trim_start_matches("Bearer ").to_string();
        let (s, v) = stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            &format!("Invalid API Key provided: {shown}"),
        );
        return (s, axum::Json(v)).into_response();
    }
    if !header("content-type").starts_with("application/x-www-form-urlencoded") {
        return (StatusCode::BAD_REQUEST, "form bodies only").into_response();
    }
    let key = header("idempotency-key").to_string();
    if let Some((s, v)) = stripe
        .by_key
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned()
    {
        return (s, axum::Json(v)).into_response();
    }
    let amount: Option<u64> = field("amount").and_then(|a| a.parse().ok());
    let answer = match (amount, field("source")) {
        (None, _) => stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: amount.",
        ),
        (_, Some("tok_chargeDeclined")) => (
            StatusCode::PAYMENT_REQUIRED,
            json!({"error": {"type": "card_error", "code": "card_declined",
                              "decline_code": "generic_decline", "charge": "ch_declined",
                              "message": "Your card was declined."}}),
        ),
        (Some(amount), Some(_)) => {
            let n = {
                let mut c = stripe.charges.lock().unwrap_or_else(PoisonError::into_inner);
                *c += 1;
                *c
            };
            let expanded = form.iter().any(|(k, v)| k == "expand[]" && v == "balance_transaction");
            let balance = if expanded {
                // Not the simulator's formula, so the test sees which one is used.
                json!({"id": format!("txn_{n}"), "object": "balance_transaction", "fee": 3700})
            } else {
                json!(format!("txn_{n}"))
            };
            (
                StatusCode::OK,
                json!({"id": format!("ch_3Test{n}"), "object": "charge", "amount": amount,
                       "currency": field("currency"), "status": "succeeded", "paid": true,
                       "balance_transaction": balance}),
            )
        }
        (Some(_), None) => stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Must provide source or customer.",
        ),
    };
    stripe
        .by_key
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, answer.clone());
    (answer.0, axum::Json(answer.1)).into_response()
}

/// A local Stripe; answers its base URL and request log.
pub async fn fake_stripe() -> (String, crate::support::Log) {
    serve(
        Router::new()
            .route("/v1/charges", post(charges))
            .with_state(FakeStripe::default()),
    )
    .await
}

fn config(base_url: &str, extra: &str) -> String {
    format!(
        "[connectors.stripe]\nkind = \"stripe\"\nsecret_key_env = \"STRIPE_SECRET_KEY\"\n\
         base_url = \"{base_url}\"\n{extra}\n"
    )
}

const ENV: &[(&str, &str)] = &[("STRIPE_SECRET_KEY", KEY)];

#[tokio::test]
async fn stripe_charge_posts_the_form_with_bearer_key_and_idempotency_key() {
    let (url, log) = fake_stripe().await;
    let reg = registry(&config(&url, ""), ENV);
    let args = json!({"amount": 124799, "currency": "usd", "source": "tok_visa",
                      "description": "Order o-1", "metadata": {"orderId": "o-1", "items": 2}});
    let r = call(&reg, "stripe", "charge", args.clone(), "o-1/charge/1/0").await;
    assert_eq!(
        r,
        Ok(json!({"success": true, "transactionId": "ch_3Test1", "fee": 37.0}))
    );
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/v1/charges"));
    assert_eq!(s.header("authorization"), format!("Bearer {KEY}"));
    assert_eq!(s.header("idempotency-key"), "o-1/charge/1/0");
    assert_eq!(s.form_value("amount").as_deref(), Some("124799"));
    assert_eq!(s.form_value("currency").as_deref(), Some("usd"));
    assert_eq!(s.form_value("source").as_deref(), Some("tok_visa"));
    assert_eq!(s.form_value("description").as_deref(), Some("Order o-1"));
    assert_eq!(s.form_value("metadata[orderId]").as_deref(), Some("o-1"));
    assert_eq!(s.form_value("metadata[items]").as_deref(), Some("2"));
    assert_eq!(s.form_value("expand[]").as_deref(), Some("balance_transaction"));
    // The effect is recorded like the simulator's, with Stripe's charge id.
    let effects = reg.effects().all();
    assert_eq!(effects.len(), 1);
    assert_eq!(
        (effects[0].connector.as_str(), effects[0].reference.as_str()),
        ("stripe", "ch_3Test1")
    );
    // The same key again: the registry answers from its cache, Stripe sees nothing more.
    assert_eq!(call(&reg, "stripe", "charge", args, "o-1/charge/1/0").await, r);
    assert_eq!(log.len(), 1);
    assert_eq!(reg.effects().count("stripe", "charge"), 1);
}

#[tokio::test]
async fn stripe_repeat_after_a_host_restart_is_answered_by_stripe_idempotency() {
    let (url, log) = fake_stripe().await;
    let args = json!({"amount": 1000, "currency": "usd", "source": "tok_visa"});
    // Two registries: as if the host restarted and lost its in-memory cache.
    let first = call(&registry(&config(&url, ""), ENV), "stripe", "charge", args.clone(), "k").await;
    let second = call(&registry(&config(&url, ""), ENV), "stripe", "charge", args, "k").await;
    assert_eq!(first, second);
    assert_eq!(log.len(), 2);
    assert!(log.all().iter().all(|s| s.header("idempotency-key") == "k"));
}

#[tokio::test]
async fn stripe_fee_is_computed_like_the_simulator_when_not_expanded() {
    let (url, log) = fake_stripe().await;
    let reg = registry(&config(&url, "expand_fee = false\ndefault_currency = \"eur\""), ENV);
    let r = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 124799, "source": "tok_visa"}),
        "k",
    )
    .await;
    assert_eq!(
        r,
        Ok(json!({"success": true, "transactionId": "ch_3Test1", "fee": 36.49}))
    );
    let s = &log.all()[0];
    assert_eq!(s.form_value("expand[]"), None);
    assert_eq!(s.form_value("currency").as_deref(), Some("eur"));
}

#[tokio::test]
async fn stripe_card_error_is_an_unsuccessful_answer_without_effect() {
    let (url, _log) = fake_stripe().await;
    let reg = registry(&config(&url, ""), ENV);
    let r = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 100, "currency": "usd", "source": "tok_chargeDeclined"}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"success": false, "error": "Your card was declined."})));
    assert!(reg.effects().is_empty());
}

#[tokio::test]
async fn stripe_other_4xx_is_failed_with_stripes_message() {
    let (url, _log) = fake_stripe().await;
    let reg = registry(&config(&url, ""), ENV);
    let r = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 100, "source": "tok_visa", "currency": "usd"}),
        "k",
    )
    .await;
    assert!(r.is_ok());
    // A wrong key: Stripe's message is passed on, the key scrubbed out of it.
    let reg = registry(&config(&url, ""), &[("STRIPE_SECRET_KEY", "sk_test_wrongWrongWrong99")]);
    let e = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 100, "source": "tok_visa"}),
        "k2",
    )
    .await
    .err();
    let Some(e) = e else { panic!("a wrong key must fail") };
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(e.message.starts_with("Invalid API Key provided:"), "{e}");
    assert_no_secret(&e.to_string(), &["sk_test_wrongWrongWrong99"]);
    assert_no_secret(&format!("{e:?}"), &["sk_test_wrongWrongWrong99"]);
}

#[tokio::test]
async fn stripe_bad_arguments_are_refused_before_any_request() {
    let (url, log) = fake_stripe().await;
    let reg = registry(&config(&url, ""), ENV);
    for (i, args) in [
        json!({"source": "tok_visa"}),
        json!({"amount": 0, "source": "tok_visa"}),
        json!({"amount": 100}),
        json!({"amount": 100, "source": "tok_visa", "metadata": "x"}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = call(&reg, "stripe", "charge", args, &format!("k{i}")).await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }
    assert_eq!(log.len(), 0);
}
