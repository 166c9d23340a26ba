//! `slackCom` kind "slack" against a local server answering like Slack's Web API
//! (`chat.postMessage`) and incoming webhooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{Log, assert_no_secret, call, registry, serve};

const BOT_TOKEN: &str = "xoxb-1234-5678-SecretBotToken";

/// Rate-limits the first `limited` posts (429, `Retry-After: 1`), as Slack does.
async fn post_message(
    State(limited): State<Arc<AtomicUsize>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {BOT_TOKEN}") {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    match body["channel"].as_str() {
        Some("#nope") => axum::Json(json!({"ok": false, "error": "channel_not_found"})).into_response(),
        Some(_) if body["text"].is_string() => axum::Json(json!({
            "ok": true, "channel": "C0123ORDERS", "ts": "1712345678.000100",
            "message": {"type": "message", "text": body["text"], "bot_id": "B01"}
        }))
        .into_response(),
        _ => axum::Json(json!({"ok": false, "error": "invalid_arguments"})).into_response(),
    }
}

async fn webhook(axum::Json(body): axum::Json<Value>) -> Response {
    if body["text"].as_str().is_some_and(|t| t.contains("archived")) {
        return (StatusCode::GONE, "channel_is_archived").into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

async fn fake_slack(rate_limited: usize) -> (String, Log) {
    serve(
        Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/services/T000/B000/XXXXsecretPath", post(webhook))
            .with_state(Arc::new(AtomicUsize::new(rate_limited))),
    )
    .await
}

fn bot_config(url: &str) -> String {
    format!("[connectors.slackCom]\nkind = \"slack\"\ntoken_env = \"SLACK_BOT_TOKEN\"\nbase_url = \"{url}/api\"\n")
}

const ENV: &[(&str, &str)] = &[("SLACK_BOT_TOKEN", BOT_TOKEN)];

#[tokio::test]
async fn slack_bot_posts_json_with_bearer_token() {
    let (url, log) = fake_slack(0).await;
    let reg = registry(&bot_config(&url), ENV);
    let r = call(
        &reg,
        "slackCom",
        "send",
        json!({"channel": "#orders", "text": "Order o-1 shipped"}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"ok": true, "ts": "1712345678.000100"})));
    let s = &log.all()[0];
    assert_eq!(s.path, "/api/chat.postMessage");
    assert_eq!(s.header("authorization"), format!("Bearer {BOT_TOKEN}"));
    assert!(s.header("content-type").starts_with("application/json"));
    assert_eq!(s.json(), json!({"channel": "#orders", "text": "Order o-1 shipped"}));
    let sent = reg.outbox().messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].to.as_str(), sent[0].body.as_str()),
        ("#orders", "Order o-1 shipped")
    );
    assert_eq!(reg.effects().all()[0].reference, "1712345678.000100");
}

#[tokio::test]
async fn slack_ok_false_is_failed_with_slacks_error() {
    let (url, _log) = fake_slack(0).await;
    let reg = registry(&bot_config(&url), ENV);
    let r = call(&reg, "slackCom", "send", json!({"channel": "#nope", "text": "hi"}), "k").await;
    assert_eq!(
        r.err().map(|e| (e.kind, e.message)),
        Some((ErrorKind::Failed, "channel_not_found".into()))
    );
    let reg = registry(&bot_config(&url), &[("SLACK_BOT_TOKEN", "xoxb-wrong-token-0000")]);
    let r = call(
        &reg,
        "slackCom",
        "send",
        json!({"channel": "#orders", "text": "hi"}),
        "k",
    )
    .await;
    assert_eq!(r.err().map(|e| e.message), Some("invalid_auth".into()));
    assert!(reg.outbox().is_empty());
}

#[tokio::test]
async fn slack_rate_limit_is_retried_after_retry_after() {
    let (url, log) = fake_slack(1).await;
    let reg = registry(&format!("{}backoff_ms = 10\n", bot_config(&url)), ENV);
    let started = Instant::now();
    let r = call(
        &reg,
        "slackCom",
        "send",
        json!({"channel": "#orders", "text": "hi"}),
        "k",
    )
    .await;
    assert!(r.is_ok_and(|v| v["ok"] == json!(true)));
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After is honoured");
    assert_eq!(log.len(), 2);
}

#[tokio::test]
async fn slack_incoming_webhook_posts_and_its_url_never_shows() {
    let (url, log) = fake_slack(0).await;
    let hook = format!("{url}/services/T000/B000/XXXXsecretPath");
    let config = "[connectors.slackCom]\nkind = \"slack\"\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n";
    let reg = registry(config, &[("SLACK_WEBHOOK_URL", hook.as_str())]);
    let r = call(
        &reg,
        "slackCom",
        "send",
        json!({"channel": "#orders", "text": "Order o-1 shipped"}),
        "k",
    )
    .await;
    assert_eq!(r, Ok(json!({"ok": true, "ts": null})));
    let s = &log.all()[0];
    assert_eq!(s.json(), json!({"channel": "#orders", "text": "Order o-1 shipped"}));
    assert_eq!(reg.outbox().len(), 1);
    let e = call(
        &reg,
        "slackCom",
        "send",
        json!({"channel": "#old", "text": "archived?"}),
        "k2",
    )
    .await
    .err();
    let Some(e) = e else {
        panic!("an archived channel must fail")
    };
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Failed, "channel_is_archived"));
    assert_no_secret(&format!("{e} {e:?}"), &["XXXXsecretPath"]);
    // Not a URL: refused without showing it.
    let e = crate::support::try_registry(config, &[("SLACK_WEBHOOK_URL", "XXXXsecretPath")]).err();
    let Some(e) = e else { panic!("must be refused") };
    assert_no_secret(&e.to_string(), &["XXXXsecretPath"]);
}

#[test]
fn slack_needs_exactly_one_of_token_and_webhook() {
    let both = "[connectors.slackCom]\nkind = \"slack\"\ntoken_env = \"A\"\nwebhook_url_env = \"B\"\n";
    let none = "[connectors.slackCom]\nkind = \"slack\"\n";
    for text in [both, none] {
        let e = crate::support::try_registry(text, &[("A", "x"), ("B", "http://h")]).err();
        assert!(e.is_some_and(|e| e.message.contains("exactly one")));
    }
}
