//! `paypal`: executing (capturing) an approved PayPal payment. Kind `paypal` is the real
//! PayPal ([`PaypalApi`]): OAuth2 client credentials, then the Orders v2 capture.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, CallOptions, ConnectorConfig, HTTP, PAYPAL, SIMULATOR, Settings};
use crate::http::{Caller, Reply, TlsClient};
use crate::http_service::{self, idempotency_value};
use crate::idempotency::key_hash;
use crate::secret::Secret;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "paypal";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["executePayment"];

/// Payment ids starting with this are declined (`{success:false, error:"INSTRUMENT_DECLINED"}`).
pub const DECLINED_PREFIX: &str = "PAY-DECLINED";

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(PaypalSimulator::new(cx)))
        }
        PAYPAL => Ok(Arc::new(PaypalApi::new(config, cx)?)),
        HTTP => http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, PAYPAL, HTTP])),
    }
}

/// PayPal's live API unless `base_url` says otherwise (the sandbox is
/// `https://api-m.sandbox.paypal.com`).
pub const DEFAULT_BASE_URL: &str = "https://api-m.paypal.com";

/// The settings of kind `paypal`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "client_id_env",
    "client_secret_env",
    "base_url",
    "ca_file",
    "client_cert",
    "client_key",
];

/// A token is renewed this long before PayPal says it expires (or at half its life, if shorter).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The longest a token is kept, whatever `expires_in` says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);

/// An access token and when to stop using it.
struct Token {
    value: Secret,
    renew_at: Instant,
}

/// The real PayPal.
///
/// `executePayment {paymentId}` gets an access token (`POST {base_url}/v1/oauth2/token`,
/// `grant_type=client_credentials`, basic auth with the client id and secret from the
/// environment; cached until shortly before it expires, fetched again after a `401`), then
/// captures the approved order: `POST {base_url}/v2/checkout/orders/{paymentId}/capture` with
/// `PayPal-Request-Id` = the call's idempotency key (PayPal answers a repeat with the first
/// result) and `Prefer: return=representation`.
///
/// Answers, in the simulator's contract:
/// - order `COMPLETED` with its capture `COMPLETED` (or `PENDING`, then also `status:"PENDING"`)
///   → `{success:true, transactionId: <capture id>}`;
/// - a capture `DECLINED`/`FAILED` → `{success:false, error:"CAPTURE_DECLINED"}` (`CAPTURE_FAILED`);
///   another order status → `{success:false, error: <status>}`;
/// - `422 UNPROCESSABLE_ENTITY` → `{success:false, error: <the issue, e.g. INSTRUMENT_DECLINED>}`;
/// - another `4xx` (a bad token too) → `failed` with PayPal's issue and message;
/// - `5xx`, `429`, no connection → retried, then `unavailable`; no answer in time → `timeout`.
pub struct PaypalApi {
    client: TlsClient,
    base_url: String,
    client_id: Secret,
    client_secret: Secret,
    options: CallOptions,
    token: tokio::sync::Mutex<Option<Token>>,
    effects: Effects,
}

impl fmt::Debug for PaypalApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaypalApi")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("options", &self.options)
            .finish()
    }
}

/// PayPal's error text: `issue: description` of the first detail, else `name: message`.
fn paypal_message(reply: &Reply) -> String {
    let Some(body) = reply.json() else {
        return reply.message();
    };
    let detail = body.pointer("/details/0");
    let issue = detail
        .and_then(|d| d.get("issue"))
        .or_else(|| body.get("name"))
        .or_else(|| body.get("error"))
        .and_then(Value::as_str);
    let text = detail
        .and_then(|d| d.get("description"))
        .or_else(|| body.get("message"))
        .or_else(|| body.get("error_description"))
        .and_then(Value::as_str);
    match (issue, text) {
        (Some(i), Some(t)) => format!("{i}: {t}"),
        (Some(i), None) => i.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => reply.message(),
    }
}

/// Order ids go into the URL path: only letters, digits, `-` and `_`.
fn is_order_id(id: &str) -> bool {
    id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl PaypalApi {
    /// Reads the settings of kind `paypal`; the client id and secret come from the
    /// environment variables `client_id_env` and `client_secret_env` name.
    pub fn new(config: &ConnectorConfig, cx: &BuildContext) -> Result<Self, ConfigError> {
        let s = Settings::new(NAME, config, cx, SETTINGS)?;
        Ok(PaypalApi {
            client: s.http_client()?,
            base_url: s.url("base_url", Some(DEFAULT_BASE_URL))?,
            client_id: s.secret("client_id_env")?,
            client_secret: s.secret("client_secret_env")?,
            options: s.call_options()?,
            token: tokio::sync::Mutex::new(None),
            effects: cx.effects.clone(),
        })
    }

    fn caller<'a>(&'a self, token: Option<&'a Secret>) -> Caller<'a> {
        let mut secrets = vec![&self.client_id, &self.client_secret];
        secrets.extend(token);
        Caller {
            connector: NAME,
            options: &self.options,
            secrets,
        }
    }

    /// A valid access token: the cached one, or a new one (one request at a time).
    async fn access_token(&self) -> Result<Secret, ConnectorError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let url = format!("{}/v1/oauth2/token", self.base_url);
        let caller = self.caller(None);
        let reply = caller
            .send(|| {
                self.client
                    .post(&url)
                    .basic_auth(self.client_id.expose(), Some(self.client_secret.expose()))
                    .header(reqwest::header::ACCEPT, "application/json")
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;
        if !reply.status.is_success() {
            return Err(caller.failed(&format!(
                "paypal: authentication failed ({}): {}",
                reply.status,
                paypal_message(&reply)
            )));
        }
        let body = reply.json().unwrap_or(Value::Null);
        let Some(value) = body.get("access_token").and_then(Value::as_str) else {
            return Err(ConnectorError::failed("paypal: the token answer holds no access_token"));
        };
        // PayPal's tokens live hours; a longer life (say 2^64 s, which no `Instant` holds) is
        // taken as a day.
        let life = Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(MAX_TOKEN_LIFE.as_secs()),
        );
        let token = Secret::new(value);
        *cached = Some(Token {
            value: token.clone(),
            renew_at: Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 2)),
        });
        Ok(token)
    }

    /// Forgets `token` if it is still the cached one (PayPal refused it).
    async fn forget_token(&self, token: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == token) {
            *cached = None;
        }
    }

    async fn capture(&self, order_id: &str, ctx: &CallContext, token: &Secret) -> Result<Reply, ConnectorError> {
        let url = format!("{}/v2/checkout/orders/{order_id}/capture", self.base_url);
        let key = idempotency_value(ctx);
        self.caller(Some(token))
            .send(|| {
                self.client
                    .post(&url)
                    .bearer_auth(token.expose())
                    .header("PayPal-Request-Id", key.clone())
                    .header("Prefer", "return=representation")
                    .json(&json!({}))
            })
            .await
    }

    async fn execute_payment(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("paypal.executePayment", args)?;
        let order_id = a.str("paymentId")?;
        a.opt_str("currency")?;
        if !is_order_id(order_id) {
            return Err(a.error("`paymentId` must hold only letters, digits, `-` and `_`"));
        }
        let mut token = self.access_token().await?;
        let mut reply = self.capture(order_id, ctx, &token).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            // The token was revoked or expired early: once more with a fresh one.
            self.forget_token(&token).await;
            token = self.access_token().await?;
            reply = self.capture(order_id, ctx, &token).await?;
        }
        let caller = self.caller(Some(&token));
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            let body = reply.json().unwrap_or(Value::Null);
            let issue = body
                .pointer("/details/0/issue")
                .or_else(|| body.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("UNPROCESSABLE_ENTITY");
            return Ok(json!({"success": false, "error": caller.redact(issue)}));
        }
        if !reply.status.is_success() {
            return Err(caller.failed(&paypal_message(&reply)));
        }
        let body = reply.json().unwrap_or(Value::Null);
        let status = body.get("status").and_then(Value::as_str).unwrap_or("");
        let capture = body
            .get("purchase_units")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|u| u.pointer("/payments/captures/0"));
        let capture_id = capture.and_then(|c| c.get("id")).and_then(Value::as_str);
        let capture_status = capture.and_then(|c| c.get("status")).and_then(Value::as_str);
        match (status, capture_id, capture_status) {
            (_, Some(_), Some(s @ ("DECLINED" | "FAILED"))) => {
                Ok(json!({"success": false, "error": format!("CAPTURE_{s}")}))
            }
            ("COMPLETED", Some(id), cs) => {
                self.effects.record(ctx, NAME, "executePayment", id);
                if cs == Some("PENDING") {
                    Ok(json!({"success": true, "transactionId": id, "status": "PENDING"}))
                } else {
                    Ok(json!({"success": true, "transactionId": id}))
                }
            }
            ("COMPLETED", None, _) => Err(ConnectorError::failed(
                "paypal: the order is COMPLETED but the answer holds no capture",
            )),
            ("", _, _) => Err(ConnectorError::failed(format!(
                "paypal: the capture answer ({}) holds no order status",
                reply.status
            ))),
            (other, _, _) => Ok(json!({"success": false, "error": caller.redact(other)})),
        }
    }
}

#[async_trait::async_trait]
impl Connector for PaypalApi {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "executePayment" => self.execute_payment(args, ctx).await,
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

/// The deterministic PayPal: ids starting [`DECLINED_PREFIX`] are declined, others captured
/// with `transactionId` `pp_<hash of the idempotency key>`.
#[derive(Debug, Clone)]
pub struct PaypalSimulator {
    effects: Effects,
}

impl PaypalSimulator {
    /// A simulator recording its captures in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        PaypalSimulator {
            effects: cx.effects.clone(),
        }
    }

    fn execute_payment(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("paypal.executePayment", args)?;
        let payment_id = a.str("paymentId")?;
        a.opt_str("currency")?;
        if payment_id.starts_with(DECLINED_PREFIX) {
            return Ok(json!({"success": false, "error": "INSTRUMENT_DECLINED"}));
        }
        let id = format!("pp_{}", key_hash(&ctx.idempotency_key));
        self.effects.record(ctx, NAME, "executePayment", &id);
        Ok(json!({"success": true, "transactionId": id}))
    }
}

#[async_trait::async_trait]
impl Connector for PaypalSimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "executePayment" => self.execute_payment(args, ctx),
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::call;
    use crate::{ErrorKind, Registry};

    use super::*;

    #[tokio::test]
    async fn executes_with_deterministic_id() {
        let reg = Registry::simulators();
        let args = json!({"paymentId": "PAY-123", "amount": 12.5, "currency": "USD"});
        let r = call(&reg, "paypal", "executePayment", args.clone(), "k").await;
        let id = format!("pp_{}", key_hash("k"));
        assert_eq!(r, Ok(json!({"success": true, "transactionId": id})));
        assert_eq!(call(&reg, "paypal", "executePayment", args, "k").await, r);
        assert_eq!(reg.effects().count("paypal", "executePayment"), 1);
    }

    #[tokio::test]
    async fn declined_prefix_is_declined_without_effect() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "paypal",
            "executePayment",
            json!({"paymentId": "PAY-DECLINED-42", "amount": 1}),
            "k",
        )
        .await;
        assert_eq!(r, Ok(json!({"success": false, "error": "INSTRUMENT_DECLINED"})));
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn missing_payment_id_is_invalid_args() {
        let reg = Registry::simulators();
        let r = call(&reg, "paypal", "executePayment", json!({"amount": 1}), "k").await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }
}
