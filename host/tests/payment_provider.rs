//! The bundled RetailMax steps against Stripe's own protocol when Stripe is slow: a local fake of
//! the Charges API, started here, makes every charge it is sent and answers after the connector
//! gave up waiting. The step cannot tell that from a charge never made, so the order must not be
//! taken for declined (its stock released, the customer asked for another card, which would be
//! charged a second time): it keeps its stock and waits for a person, who gives the charge's id
//! and retries the step, which records it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use support::ServeProcess;

/// How long the fake takes to answer: far past the connector's `timeout_ms`.
const ANSWER_AFTER: Duration = Duration::from_secs(4);

/// The idempotency keys of the charges the fake made, in order.
type Charges = Arc<Mutex<Vec<String>>>;

/// Makes the charge at once, answers it late.
async fn charge(State(charges): State<Charges>, headers: HeaderMap) -> axum::Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let id = {
        let mut made = charges.lock().unwrap_or_else(|p| p.into_inner());
        made.push(key);
        format!("ch_{}", made.len())
    };
    tokio::time::sleep(ANSWER_AFTER).await;
    axum::Json(json!({"id": id, "object": "charge", "status": "succeeded"}))
}

fn made(charges: &Charges) -> Vec<String> {
    charges.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_stripe_answers_too_late_keeps_the_stock_and_waits_for_a_person() {
    let charges = Charges::default();
    let router = Router::new()
        .route("/v1/charges", post(charge))
        .with_state(charges.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("whenever.toml");
    std::fs::write(
        &config,
        format!(
            "[connectors.stripe]\nkind = \"stripe\"\nbase_url = \"http://{address}\"\n\
             secret_key_env = \"STRIPE_TEST_KEY\"\ntimeout_ms = 1000\nretries = 0\n"
        ),
    )
    .expect("config");
    let server = ServeProcess::start_with_env(
        &dir.path().join("whenever.db"),
        &["--config", &config.display().to_string()],
        None,
        &[("STRIPE_TEST_KEY", "sk_test_slowStripe".as_ref())],
    );

    let order: Value = serde_json::from_str(include_str!("../src/demo/seed-order.json")).expect("seed order");
    let (status, task) = server.post("/v1/tasks?wait=20000", &order).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["status"], json!("waiting"), "{task}");
    let waiting = &task["data"]["order"];
    assert_eq!(waiting["status"], json!("payment_outcome_unknown"), "{waiting}");
    assert_eq!(waiting["paymentOutcomeUnknown"], json!(true));
    assert!(
        waiting["payment"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("1000 ms")),
        "the connector's timeout is named: {}",
        waiting["payment"]
    );
    assert_eq!(
        waiting["inventoryReserved"],
        json!(true),
        "the stock is kept: {waiting}"
    );
    for never in [
        "paymentFailed",
        "inventoryReleased",
        "retryRequested",
        "paymentProcessed",
    ] {
        assert!(waiting.get(never).is_none(), "{never}: {waiting}");
    }
    let ran: Vec<&str> = task["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["step"].as_str())
        .collect();
    assert!(!ran.contains(&"payment-failure-recovery"), "{ran:?}");
    assert_eq!(made(&charges).len(), 1, "Stripe made the charge");

    // A person finds the charge at Stripe, gives its id and retries the step, which records it:
    // the order completes, charged once.
    let id = task["id"].as_str().expect("id");
    let found = json!({"order": {"paymentOutcomeUnknown": null, "payment": {"transactionIdFound": "ch_1"}}});
    let (status, patched) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{id}?wait=20000"),
            Some(found.to_string().into_bytes()),
        )
        .await;
    assert_eq!((status, &patched["status"]), (200, &json!("waiting")), "{patched}");
    let (status, done) = server
        .post(
            &format!("/v1/tasks/{id}/retry?wait=20000"),
            &json!({"step": "payment-processing"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], json!("completed"), "{done}");
    let order = &done["data"]["order"];
    assert_eq!(order["status"], json!("processing_complete"), "{order}");
    assert_eq!(order["payment"]["transactionId"], json!("ch_1"), "{order}");
    assert_eq!(made(&charges).len(), 1, "no second charge");
}
