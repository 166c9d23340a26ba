//! What every real connector shares: retries with backoff, timeouts, connection failures, and
//! secrets that come from the environment and never show.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;
use whenever_connectors::{BuildContext, ConnectorConfig, Env, ErrorKind, Registry};

use crate::support::{SLOW, assert_no_secret, call, closed_port_url, parse, registry, serve, try_registry};

const KEY: &str = "sk_test_commonSecretKey42";

/// A Stripe that fails `failures` times with 503, then charges.
async fn flaky_stripe(failures: usize) -> (String, crate::support::Log) {
    let count = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/charges",
            post(move |State(count): State<Arc<AtomicUsize>>| async move {
                if count.fetch_add(1, Ordering::SeqCst) < failures {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"error": {"type": "api_error", "message": "Try again."}})),
                    )
                        .into_response()
                } else {
                    axum::Json(json!({"id": "ch_after_retries", "status": "succeeded"})).into_response()
                }
            }),
        )
        .with_state(count);
    serve(router).await
}

fn stripe_config(url: &str, extra: &str) -> String {
    format!("[connectors.stripe]\nkind = \"stripe\"\nsecret_key_env = \"STRIPE_KEY\"\nbase_url = \"{url}\"\n{extra}\n")
}

const ENV: &[(&str, &str)] = &[("STRIPE_KEY", KEY)];

#[tokio::test]
async fn two_503s_are_retried_with_the_same_idempotency_key() {
    let (url, log) = flaky_stripe(2).await;
    let reg = registry(&stripe_config(&url, "backoff_ms = 50"), ENV);
    let started = Instant::now();
    let r = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 1000, "source": "tok_visa", "currency": "usd"}),
        "order-9/pay/1/0",
    )
    .await;
    assert_eq!(
        r,
        Ok(json!({"success": true, "transactionId": "ch_after_retries", "fee": 0.59}))
    );
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.header("idempotency-key") == "order-9/pay/1/0"));
    assert!(seen.iter().all(|s| s.body == seen[0].body));
    // Backoff 50 ms, then 100 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reg.effects().count("stripe", "charge"), 1);
}

#[tokio::test]
async fn retries_run_out_as_unavailable_with_the_providers_message() {
    let (url, log) = flaky_stripe(usize::MAX).await;
    let reg = registry(&stripe_config(&url, "retries = 1\nbackoff_ms = 10"), ENV);
    let e = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 1, "source": "tok_visa"}),
        "k",
    )
    .await
    .err();
    assert!(
        e.as_ref().is_some_and(|e| e.kind == ErrorKind::Unavailable
            && e.message.contains("503")
            && e.message.contains("Try again.")),
        "{e:?}"
    );
    assert_eq!(log.len(), 2);
    // `retries = 0`: one attempt only.
    let (url, log) = flaky_stripe(usize::MAX).await;
    let reg = registry(&stripe_config(&url, "retries = 0"), ENV);
    let e = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 1, "source": "tok_visa"}),
        "k",
    )
    .await;
    assert_eq!(e.err().map(|e| e.kind), Some(ErrorKind::Unavailable));
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn a_slow_service_is_a_timeout_and_not_retried() {
    let router = Router::new().route(
        "/v1/charges",
        post(|| async {
            tokio::time::sleep(SLOW).await;
            axum::Json(json!({"id": "ch_late", "status": "succeeded"}))
        }),
    );
    let (url, log) = serve(router).await;
    let reg = registry(&stripe_config(&url, "timeout_ms = 200\nbackoff_ms = 10"), ENV);
    let started = Instant::now();
    let e = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 1, "source": "tok_visa"}),
        "k",
    )
    .await
    .err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Timeout && e.message.contains("200 ms")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.len(), 1);
    assert!(reg.effects().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_unavailable_after_the_retries() {
    let url = closed_port_url().await;
    let reg = registry(&stripe_config(&url, "backoff_ms = 20"), ENV);
    let started = Instant::now();
    let e = call(
        &reg,
        "stripe",
        "charge",
        json!({"amount": 1, "source": "tok_visa"}),
        "k",
    )
    .await
    .err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Unavailable && e.message.contains("cannot reach")),
        "{e:?}"
    );
    // Two retries: 20 ms, then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[test]
fn a_missing_secret_is_a_config_error_naming_the_variable() {
    for (toml_text, var) in [
        (stripe_config("http://127.0.0.1:1", ""), "STRIPE_KEY"),
        (
            "[connectors.paypal]\nkind = \"paypal\"\nclient_id_env = \"PP_ID\"\nclient_secret_env = \"PP_SECRET\"\n".to_string(),
            "PP_SECRET",
        ),
        (
            "[connectors.coinbase]\nkind = \"coinbase\"\napi_key_env = \"CB_KEY\"\n".to_string(),
            "CB_KEY",
        ),
        (
            "[connectors.slackCom]\nkind = \"slack\"\ntoken_env = \"SLACK_BOT_TOKEN\"\n".to_string(),
            "SLACK_BOT_TOKEN",
        ),
        (
            "[connectors.slackCom]\nkind = \"slack\"\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n".to_string(),
            "SLACK_WEBHOOK_URL",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"smtp.example.com\"\nusername = \"shop\"\npassword_env = \"SMTP_PASSWORD\"\n".to_string(),
            "SMTP_PASSWORD",
        ),
        (
            "[connectors.fraudGuard]\nkind = \"http\"\nbase_url = \"https://fraud.example.com\"\ntoken_env = \"FRAUD_TOKEN\"\n".to_string(),
            "FRAUD_TOKEN",
        ),
    ] {
        // PP_ID is set, the other variables are not.
        let e = try_registry(&toml_text, &[("PP_ID", "client-id-value")]).err();
        assert!(
            e.as_ref().is_some_and(|e| e.message.contains(&format!("`{var}`"))
                && e.message.contains("not set")),
            "{var}: {e:?}"
        );
    }
}

#[test]
fn a_secret_written_into_the_config_is_refused_without_being_shown() {
    // Pasted into the `*_env` setting by mistake: refused, and not echoed.
    let e = try_registry(
        &stripe_config("http://127.0.0.1:1", "").replace("\"STRIPE_KEY\"", "\"sk_live_pastedByMistake\""),
        ENV,
    )
    .err();
    let Some(e) = e else { panic!("must be refused") };
    assert!(e.message.contains("`secret_key_env`"), "{e}");
    assert_no_secret(&e.to_string(), &["sk_live_pastedByMistake"]);
    // Written as a setting of its own: an unknown setting, named by key only.
    let e = try_registry(
        &stripe_config("http://127.0.0.1:1", "secret_key = \"sk_live_inTheFile\""),
        ENV,
    )
    .err();
    let Some(e) = e else { panic!("must be refused") };
    assert!(e.message.contains("`secret_key`"), "{e}");
    assert_no_secret(&e.to_string(), &["sk_live_inTheFile"]);
    // Credentials in a URL are refused too.
    let e = try_registry(&stripe_config("https://user:pw-in-url@api.example.com", ""), ENV).err();
    let Some(e) = e else { panic!("must be refused") };
    assert_no_secret(&e.to_string(), &["pw-in-url"]);
}

#[test]
fn bad_common_settings_are_config_errors() {
    for (extra, key) in [
        ("timeout_ms = 0", "timeout_ms"),
        ("timeout_ms = \"fast\"", "timeout_ms"),
        ("retries = 11", "retries"),
        ("backoff_ms = -1", "backoff_ms"),
        ("base_url = \"not a url\"", "base_url"),
        ("expand_fee = 1", "expand_fee"),
        ("secretKeyEnv = \"X\"", "secretKeyEnv"),
    ] {
        let text = if extra.starts_with("base_url") {
            format!("[connectors.stripe]\nkind = \"stripe\"\nsecret_key_env = \"STRIPE_KEY\"\n{extra}\n")
        } else {
            stripe_config("http://127.0.0.1:1", extra)
        };
        let e = try_registry(&text, ENV).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.connector == "stripe" && e.message.contains(key)),
            "{extra}: {e:?}"
        );
    }
}

/// Every real connector, built with secrets it could leak.
fn all_real_connectors_config(url: &str) -> String {
    format!(
        r#"
[connectors.stripe]
kind = "stripe"
secret_key_env = "STRIPE_KEY"
base_url = "{url}"
retries = 0

[connectors.paypal]
kind = "paypal"
client_id_env = "PP_ID"
client_secret_env = "PP_SECRET"
base_url = "{url}"
retries = 0

[connectors.coinbase]
kind = "coinbase"
api_key_env = "CB_KEY"
base_url = "{url}"
retries = 0

[connectors.slackCom]
kind = "slack"
webhook_url_env = "SLACK_WEBHOOK_URL"
retries = 0

[connectors.eMailSmtpOAuth]
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
auth = "xoauth2"
username = "shop@example.com"
token_env = "SMTP_TOKEN"
from = "shop@example.com"
retries = 0
timeout_ms = 500

[connectors.fraudGuard]
kind = "http"
base_url = "{url}"
token_env = "FRAUD_TOKEN"
retries = 0
"#,
        port = url.rsplit(':').next().unwrap_or("1"),
    )
}

const SECRETS: &[(&str, &str)] = &[
    ("STRIPE_KEY", "sk_test_neverShowMe111"),
    ("PP_ID", "pp-client-neverShowMe222"),
    ("PP_SECRET", "pp-secret-neverShowMe333"),
    ("CB_KEY", "cb-key-neverShowMe444"),
    ("SMTP_TOKEN", "ya29.neverShowMe555"),
    ("FRAUD_TOKEN", "fraud-neverShowMe666"),
];

fn secret_values(webhook: &str) -> Vec<String> {
    let mut v: Vec<String> = SECRETS.iter().map(|(_, s)| s.to_string()).collect();
    v.push(webhook.to_string());
    v.push("neverShowMe".to_string());
    v
}

#[tokio::test]
async fn no_secret_shows_in_errors_or_debug_output() {
    // A server that answers everything with 401 and echoes the credentials it got.
    let echo = |headers: axum::http::HeaderMap| async move {
        let all: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("")))
            .collect();
        let body = json!({"error": {"type": "invalid_request_error", "message": format!("bad credentials: {}", all.join(" "))},
                          "ok": false});
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    };
    let (url, _log) = serve(Router::new().fallback(echo)).await;
    let webhook = format!("{url}/services/T0/B0/neverShowMeWebhookPath");
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    env.push(("SLACK_WEBHOOK_URL", &webhook));
    let reg = registry(&all_real_connectors_config(&url), &env);
    let secrets = secret_values(&webhook);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut errors = Vec::new();
    for (connector, method, args) in [
        ("stripe", "charge", json!({"amount": 1, "source": "tok_visa"})),
        ("paypal", "executePayment", json!({"paymentId": "ORDER1"})),
        ("coinbase", "processPayment", json!({"amount": 1, "wallet": "w"})),
        ("slackCom", "send", json!({"channel": "#c", "text": "hi"})),
        (
            "eMailSmtpOAuth",
            "sendEmail",
            json!({"to": "a@example.com", "subject": "s", "html": "h"}),
        ),
        (
            "fraudGuard",
            "analyze",
            json!({"customerEmail": "a@example.com", "amount": 1}),
        ),
    ] {
        let r = call(&reg, connector, method, args, "k").await;
        let Err(e) = r else {
            panic!("{connector} must fail against the echo server")
        };
        errors.push(format!("{e} {e:?}"));
    }
    // Connection failures too.
    let closed = closed_port_url().await;
    let webhook_closed = format!("{closed}/services/T0/B0/neverShowMeWebhookPath");
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    env.push(("SLACK_WEBHOOK_URL", &webhook_closed));
    let reg = registry(&all_real_connectors_config(&closed), &env);
    for (connector, method, args) in [
        ("stripe", "charge", json!({"amount": 1, "source": "tok_visa"})),
        ("slackCom", "send", json!({"channel": "#c", "text": "hi"})),
        (
            "eMailSmtpOAuth",
            "sendEmail",
            json!({"to": "a@example.com", "html": "h"}),
        ),
    ] {
        let r = call(&reg, connector, method, args, "k").await;
        let Err(e) = r else {
            panic!("{connector} must fail with nothing listening")
        };
        errors.push(format!("{e} {e:?}"));
    }
    for text in &errors {
        assert_no_secret(text, &secrets);
    }
    // Debug output of the registry, its build context and each connector.
    let config = parse(&all_real_connectors_config(&url));
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    env.push(("SLACK_WEBHOOK_URL", &webhook));
    let cx = BuildContext {
        env: Env::from_vars(env.iter().copied()),
        ..Registry::empty().build_context(std::path::Path::new(""))
    };
    let mut debug = vec![format!("{reg:?}"), format!("{cx:?}"), format!("{config:?}")];
    let built = |name: &str| -> &ConnectorConfig { &config[name] };
    debug.push(format!(
        "{:?}",
        whenever_connectors::stripe::StripeApi::new(built("stripe"), &cx)
    ));
    debug.push(format!(
        "{:?}",
        whenever_connectors::paypal::PaypalApi::new(built("paypal"), &cx)
    ));
    debug.push(format!(
        "{:?}",
        whenever_connectors::coinbase::CoinbaseApi::new(built("coinbase"), &cx)
    ));
    debug.push(format!(
        "{:?}",
        whenever_connectors::slack::SlackApi::new(built("slackCom"), &cx)
    ));
    debug.push(format!(
        "{:?}",
        whenever_connectors::email::SmtpMailer::new(built("eMailSmtpOAuth"), &cx)
    ));
    for text in &debug {
        assert!(
            text.contains("Ok(") || text.contains("Registry") || text.contains("Env") || text.contains("kind"),
            "{text}"
        );
        assert_no_secret(text, &secrets);
    }
}
