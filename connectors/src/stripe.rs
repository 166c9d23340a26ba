//! `stripe`: card charges. The simulator follows Stripe's test-token idea: special sources
//! decline or fail, any other source is charged. Kind `stripe` is the real Stripe
//! ([`StripeApi`]): the Charges REST API, form-encoded, with the secret key from the environment.

use std::fmt;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, CallOptions, ConnectorConfig, HTTP, SIMULATOR, STRIPE, Settings};
use crate::http::{Caller, TlsClient};
use crate::http_service::{self, IDEMPOTENCY_HEADER, idempotency_value};
use crate::idempotency::key_hash;
use crate::secret::Secret;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "stripe";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["charge"];

/// The test source whose charge is declined (`{success:false, error:"Your card was declined."}`).
pub const TOKEN_DECLINED: &str = "tok_chargeDeclined";

/// The test source for which Stripe cannot be reached (error kind `unavailable`).
pub const TOKEN_UNAVAILABLE: &str = "tok_unavailable";

/// The test source whose charge is made but whose answer is lost (error kind `timeout`): what a
/// slow provider does to a step, which cannot tell it from a charge never made.
pub const TOKEN_TIMEOUT: &str = "tok_chargeTimeout";

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(StripeSimulator::new(cx)))
        }
        STRIPE => Ok(Arc::new(StripeApi::new(config, cx)?)),
        HTTP => http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, STRIPE, HTTP])),
    }
}

/// Stripe's API unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The settings of kind `stripe`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "secret_key_env",
    "base_url",
    "api_version",
    "default_currency",
    "expand_fee",
    "ca_file",
    "client_cert",
    "client_key",
];

/// The real Stripe: `POST {base_url}/v1/charges`, form-encoded (`amount`, `currency`, `source`,
/// `description`, `metadata[k]=v`, and `expand[]=balance_transaction` unless `expand_fee =
/// false`), `Authorization: Bearer <secret key>`, `Idempotency-Key` = the call's key.
///
/// Answers, in the simulator's contract:
/// - a charge (`2xx`) → `{success:true, transactionId: <ch_… id>, fee}`, `fee` in currency units
///   from the expanded balance transaction's `fee` (in cents), else computed as the simulator
///   does ([`fee_cents`]: 2.9% + 30¢, an estimate); a charge whose `status` is `failed` →
///   `{success:false, error: failure_message}`;
/// - a card error (`402`, or any answer whose `error.type` is `card_error`) →
///   `{success:false, error: <Stripe's message>}`;
/// - another `4xx` → error kind `failed` with Stripe's message;
/// - `5xx`, `429`, no connection → retried, then `unavailable`; no answer in time → `timeout`.
pub struct StripeApi {
    client: TlsClient,
    base_url: String,
    secret_key: Secret,
    api_version: Option<String>,
    default_currency: String,
    expand_fee: bool,
    options: CallOptions,
    effects: Effects,
}

impl fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeApi")
            .field("base_url", &self.base_url)
            .field("secret_key", &self.secret_key)
            .field("api_version", &self.api_version)
            .field("default_currency", &self.default_currency)
            .field("expand_fee", &self.expand_fee)
            .field("options", &self.options)
            .finish()
    }
}

impl StripeApi {
    /// Reads the settings of kind `stripe`; the secret key comes from the environment variable
    /// `secret_key_env` names.
    pub fn new(config: &ConnectorConfig, cx: &BuildContext) -> Result<Self, ConfigError> {
        let s = Settings::new(NAME, config, cx, SETTINGS)?;
        Ok(StripeApi {
            client: s.http_client()?,
            base_url: s.url("base_url", Some(DEFAULT_BASE_URL))?,
            secret_key: s.secret("secret_key_env")?,
            api_version: s.opt_str("api_version")?.map(str::to_string),
            default_currency: s.opt_str("default_currency")?.unwrap_or("usd").to_string(),
            expand_fee: s.opt_bool("expand_fee")?.unwrap_or(true),
            options: s.call_options()?,
            effects: cx.effects.clone(),
        })
    }

    async fn charge(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("stripe.charge", args)?;
        let amount = a.positive_int("amount")?;
        let source = a.str("source")?;
        let currency = a.opt_str("currency")?.unwrap_or(&self.default_currency);
        let mut form: Vec<(String, String)> = vec![
            ("amount".into(), amount.to_string()),
            ("currency".into(), currency.to_string()),
            ("source".into(), source.to_string()),
        ];
        if let Some(d) = a.opt_str("description")? {
            form.push(("description".into(), d.to_string()));
        }
        for (k, v) in a.opt_object("metadata")?.into_iter().flatten() {
            let v = match v {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            form.push((format!("metadata[{k}]"), v));
        }
        if self.expand_fee {
            form.push(("expand[]".into(), "balance_transaction".into()));
        }
        let url = format!("{}/v1/charges", self.base_url);
        let key = idempotency_value(ctx);
        let caller = Caller {
            connector: NAME,
            options: &self.options,
            secrets: vec![&self.secret_key],
        };
        let reply = caller
            .send(|| {
                let mut r = self
                    .client
                    .post(&url)
                    .bearer_auth(self.secret_key.expose())
                    .header(IDEMPOTENCY_HEADER, key.clone())
                    .form(&form);
                if let Some(v) = &self.api_version {
                    r = r.header("Stripe-Version", v);
                }
                r
            })
            .await?;
        let body = reply.json().unwrap_or(Value::Null);
        let error_message = || {
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| reply.message())
        };
        if reply.status.is_success() {
            let Some(id) = body.get("id").and_then(Value::as_str) else {
                return Err(ConnectorError::failed(format!(
                    "stripe: the answer ({}) holds no charge id",
                    reply.status
                )));
            };
            if body.get("status").and_then(Value::as_str) == Some("failed") {
                let message = body
                    .get("failure_message")
                    .and_then(Value::as_str)
                    .unwrap_or("The charge failed.");
                return Ok(json!({"success": false, "error": caller.redact(message)}));
            }
            let fee_cents = body
                .pointer("/balance_transaction/fee")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| fee_cents(amount));
            self.effects.record(ctx, NAME, "charge", id);
            return Ok(json!({
                "success": true,
                "transactionId": id,
                "fee": fee_cents as f64 / 100.0,
            }));
        }
        let card_error = body.pointer("/error/type").and_then(Value::as_str) == Some("card_error");
        if reply.status == StatusCode::PAYMENT_REQUIRED || card_error {
            return Ok(json!({"success": false, "error": caller.redact(&error_message())}));
        }
        Err(caller.failed(&error_message()))
    }
}

#[async_trait::async_trait]
impl Connector for StripeApi {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "charge" => self.charge(args, ctx).await,
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

/// Stripe's fee in cents for a charge of `amount` cents: 2.9% + 30¢, rounded half up.
pub fn fee_cents(amount: u64) -> u64 {
    let thousandths = u128::from(amount) * 29 + 30_000;
    u64::try_from((thousandths + 500) / 1000).unwrap_or(u64::MAX)
}

/// The deterministic Stripe: see [`TOKEN_DECLINED`], [`TOKEN_UNAVAILABLE`]; other sources are
/// charged, with `transactionId` `txn_<hash of the idempotency key>` and the fee in dollars.
#[derive(Debug, Clone)]
pub struct StripeSimulator {
    effects: Effects,
}

impl StripeSimulator {
    /// A simulator recording its charges in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        StripeSimulator {
            effects: cx.effects.clone(),
        }
    }

    fn charge(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("stripe.charge", args)?;
        let amount = a.positive_int("amount")?;
        let source = a.str("source")?;
        a.opt_str("currency")?;
        match source {
            TOKEN_DECLINED => Ok(json!({"success": false, "error": "Your card was declined."})),
            TOKEN_UNAVAILABLE => Err(ConnectorError::unavailable(format!(
                "stripe could not be reached (test source {TOKEN_UNAVAILABLE})"
            ))),
            TOKEN_TIMEOUT => {
                self.effects.record(ctx, NAME, "charge", &charge_id(ctx));
                Err(ConnectorError::timeout(format!(
                    "stripe: no answer in time (test source {TOKEN_TIMEOUT}, charged all the same)"
                )))
            }
            _ => {
                let id = charge_id(ctx);
                let fee = fee_cents(amount) as f64 / 100.0;
                self.effects.record(ctx, NAME, "charge", &id);
                Ok(json!({"success": true, "transactionId": id, "fee": fee}))
            }
        }
    }
}

/// The id of the charge the simulator makes for a call: the same for the same idempotency key.
fn charge_id(ctx: &CallContext) -> String {
    format!("txn_{}", key_hash(&ctx.idempotency_key))
}

#[async_trait::async_trait]
impl Connector for StripeSimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "charge" => self.charge(args, ctx),
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
    async fn charges_with_deterministic_id_and_fee() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "stripe",
            "charge",
            json!({"amount": 124799, "currency": "usd", "source": "tok_visa"}),
            "k1",
        )
        .await;
        let id = format!("txn_{}", key_hash("k1"));
        assert_eq!(r, Ok(json!({"success": true, "transactionId": id, "fee": 36.49})));
        assert_eq!(reg.effects().count("stripe", "charge"), 1);
        let e = &reg.effects().all()[0];
        assert_eq!(
            (e.task_id.as_str(), e.reference.as_str(), e.idempotency_key.as_str()),
            ("task-1", id.as_str(), "k1")
        );
    }

    #[test]
    fn fee_is_2_9_percent_plus_30_cents_rounded() {
        assert_eq!(fee_cents(124799), 3649);
        assert_eq!(fee_cents(1000), 59);
        assert_eq!(fee_cents(1), 30);
        assert_eq!(fee_cents(500), 45); // 14.5 + 30 = 44.5 → 45
    }

    #[tokio::test]
    async fn declined_card_is_an_ok_answer_without_effect() {
        let reg = Registry::simulators();
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
    async fn unavailable_token_is_an_unavailable_error() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "stripe",
            "charge",
            json!({"amount": 100, "source": "tok_unavailable"}),
            "k",
        )
        .await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::Unavailable));
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn timeout_token_charges_and_answers_a_timeout() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "stripe",
            "charge",
            json!({"amount": 100, "source": TOKEN_TIMEOUT}),
            "t_1:payment-processing:1:1",
        )
        .await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::Timeout));
        assert_eq!(reg.effects().count("stripe", "charge"), 1);
    }

    #[tokio::test]
    async fn missing_or_invalid_amount_or_source_is_invalid_args() {
        let reg = Registry::simulators();
        for (i, args) in [
            json!({"source": "tok_visa"}),
            json!({"amount": "100", "source": "tok_visa"}),
            json!({"amount": 12.5, "source": "tok_visa"}),
            json!({"amount": 0, "source": "tok_visa"}),
            json!({"amount": -5, "source": "tok_visa"}),
            json!({"amount": 100}),
            json!({"amount": 100, "source": ""}),
            json!({"amount": 100, "source": 7}),
            json!("charge"),
        ]
        .into_iter()
        .enumerate()
        {
            let r = call(&reg, "stripe", "charge", args.clone(), &format!("k{i}")).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{args}");
        }
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn same_key_charges_once_and_different_keys_twice() {
        let reg = Registry::simulators();
        let args = json!({"amount": 5000, "currency": "usd", "source": "tok_visa"});
        let a = call(&reg, "stripe", "charge", args.clone(), "order-1").await;
        let b = call(&reg, "stripe", "charge", args.clone(), "order-1").await;
        assert_eq!(a, b);
        assert_eq!(reg.effects().count("stripe", "charge"), 1);
        let c = call(&reg, "stripe", "charge", args, "order-2").await;
        assert_ne!(a, c);
        assert_eq!(reg.effects().count("stripe", "charge"), 2);
    }

    #[tokio::test]
    async fn a_stored_error_is_returned_again() {
        let reg = Registry::simulators();
        let a = call(
            &reg,
            "stripe",
            "charge",
            json!({"amount": 1, "source": "tok_unavailable"}),
            "k",
        )
        .await;
        let b = call(
            &reg,
            "stripe",
            "charge",
            json!({"amount": 1, "source": "tok_visa"}),
            "k",
        )
        .await;
        assert!(a.is_err());
        assert_eq!(a, b);
        assert!(reg.effects().is_empty());
    }
}
