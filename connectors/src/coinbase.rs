//! `coinbase`: crypto payments from a customer's wallet. Kind `coinbase` is the real Coinbase
//! Commerce ([`CoinbaseApi`]): a charge created through its REST API.

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, COINBASE, CallOptions, ConnectorConfig, HTTP, SIMULATOR, Settings};
use crate::http::{Caller, TlsClient};
use crate::http_service::{self, IDEMPOTENCY_HEADER, idempotency_value};
use crate::idempotency::key_hash;
use crate::secret::Secret;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "coinbase";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["processPayment"];

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(CoinbaseSimulator::new(cx)))
        }
        COINBASE => Ok(Arc::new(CoinbaseApi::new(config, cx)?)),
        HTTP => http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, COINBASE, HTTP])),
    }
}

/// Coinbase Commerce's API unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.commerce.coinbase.com";

/// The `X-CC-Version` sent unless `api_version` says otherwise.
pub const DEFAULT_API_VERSION: &str = "2018-03-22";

/// The settings of kind `coinbase`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "api_key_env",
    "base_url",
    "api_version",
    "default_currency",
    "charge_name",
    "ca_file",
    "client_cert",
    "client_key",
];

/// The real Coinbase Commerce.
///
/// `processPayment {amount, currency, wallet, description?, orderId?}`: a missing or empty
/// wallet is refused as by the simulator (`{success:false, error:"invalid wallet"}`, nothing
/// sent); otherwise `POST {base_url}/charges` with `X-CC-Api-Key` (from the environment),
/// `X-CC-Version`, `Idempotency-Key`, and the JSON body `{name, description, pricing_type:
/// "fixed_price", local_price: {amount, currency}, metadata: {wallet, orderId?, taskId,
/// idempotencyKey}}`.
///
/// Answers: a charge (`2xx`, `{data: {id, code, hosted_url}}`) → `{success:true,
/// transactionId: <code, else id>, chargeId: <id>, hostedUrl}`; a `4xx` → `failed` with
/// Coinbase's `error.message`; `5xx`, `429`, no connection → retried, then `unavailable`;
/// no answer in time → `timeout`.
pub struct CoinbaseApi {
    client: TlsClient,
    base_url: String,
    api_key: Secret,
    api_key_header: HeaderValue,
    api_version: String,
    default_currency: String,
    charge_name: String,
    options: CallOptions,
    effects: Effects,
}

impl fmt::Debug for CoinbaseApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinbaseApi")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("api_version", &self.api_version)
            .field("default_currency", &self.default_currency)
            .field("charge_name", &self.charge_name)
            .field("options", &self.options)
            .finish()
    }
}

impl CoinbaseApi {
    /// Reads the settings of kind `coinbase`; the API key comes from the environment variable
    /// `api_key_env` names.
    pub fn new(config: &ConnectorConfig, cx: &BuildContext) -> Result<Self, ConfigError> {
        let s = Settings::new(NAME, config, cx, SETTINGS)?;
        let api_key = s.secret("api_key_env")?;
        let mut api_key_header = HeaderValue::from_str(api_key.expose())
            .map_err(|_| s.error("the key in the variable named by `api_key_env` is not a valid header value"))?;
        api_key_header.set_sensitive(true);
        Ok(CoinbaseApi {
            client: s.http_client()?,
            base_url: s.url("base_url", Some(DEFAULT_BASE_URL))?,
            api_key,
            api_key_header,
            api_version: s.opt_str("api_version")?.unwrap_or(DEFAULT_API_VERSION).to_string(),
            default_currency: s.opt_str("default_currency")?.unwrap_or("USD").to_string(),
            charge_name: s.opt_str("charge_name")?.unwrap_or("Order").to_string(),
            options: s.call_options()?,
            effects: cx.effects.clone(),
        })
    }

    async fn process_payment(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("coinbase.processPayment", args)?;
        let wallet = a.opt_str("wallet")?.unwrap_or_default();
        let currency = a.opt_str("currency")?.unwrap_or(&self.default_currency);
        let description = a.opt_str("description")?;
        let order_id = a.opt_str("orderId")?;
        if wallet.trim().is_empty() {
            return Ok(json!({"success": false, "error": "invalid wallet"}));
        }
        let amount = a.number("amount")?;
        if !(amount.is_finite() && amount > 0.0) {
            return Err(a.error("`amount` must be greater than zero"));
        }
        let mut metadata = json!({
            "wallet": wallet,
            "taskId": ctx.task_id,
            "idempotencyKey": ctx.idempotency_key,
        });
        if let Some(o) = order_id {
            metadata["orderId"] = json!(o);
        }
        let body = json!({
            "name": self.charge_name,
            "description": description.map(str::to_string).unwrap_or_else(|| match order_id {
                Some(o) => format!("Order {o}"),
                None => self.charge_name.clone(),
            }),
            "pricing_type": "fixed_price",
            "local_price": {"amount": amount.to_string(), "currency": currency},
            "metadata": metadata,
        });
        let url = format!("{}/charges", self.base_url);
        let key = idempotency_value(ctx);
        let caller = Caller {
            connector: NAME,
            options: &self.options,
            secrets: vec![&self.api_key],
        };
        let reply = caller
            .send(|| {
                self.client
                    .post(&url)
                    .header("X-CC-Api-Key", self.api_key_header.clone())
                    .header("X-CC-Version", &self.api_version)
                    .header(IDEMPOTENCY_HEADER, key.clone())
                    .json(&body)
            })
            .await?;
        if !reply.status.is_success() {
            return Err(caller.failed(&reply.message()));
        }
        let answer = reply.json().unwrap_or(Value::Null);
        let data = answer.get("data").unwrap_or(&Value::Null);
        let id = data.get("id").and_then(Value::as_str);
        let code = data.get("code").and_then(Value::as_str);
        let Some(transaction_id) = code.or(id) else {
            return Err(ConnectorError::failed(format!(
                "coinbase: the answer ({}) holds no charge code or id",
                reply.status
            )));
        };
        self.effects.record(ctx, NAME, "processPayment", transaction_id);
        Ok(json!({
            "success": true,
            "transactionId": transaction_id,
            "chargeId": id,
            "hostedUrl": data.get("hosted_url"),
        }))
    }
}

#[async_trait::async_trait]
impl Connector for CoinbaseApi {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "processPayment" => self.process_payment(args, ctx).await,
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

/// The deterministic Coinbase: a missing or empty wallet is refused (`invalid wallet`), any
/// other is charged with `transactionId` `cb_<hash of the idempotency key>`.
#[derive(Debug, Clone)]
pub struct CoinbaseSimulator {
    effects: Effects,
}

impl CoinbaseSimulator {
    /// A simulator recording its payments in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        CoinbaseSimulator {
            effects: cx.effects.clone(),
        }
    }

    fn process_payment(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("coinbase.processPayment", args)?;
        let wallet = a.opt_str("wallet")?.unwrap_or_default();
        a.opt_str("currency")?;
        if wallet.trim().is_empty() {
            return Ok(json!({"success": false, "error": "invalid wallet"}));
        }
        let id = format!("cb_{}", key_hash(&ctx.idempotency_key));
        self.effects.record(ctx, NAME, "processPayment", &id);
        Ok(json!({"success": true, "transactionId": id}))
    }
}

#[async_trait::async_trait]
impl Connector for CoinbaseSimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "processPayment" => self.process_payment(args, ctx),
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
    async fn pays_from_a_wallet_with_deterministic_id() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "coinbase",
            "processPayment",
            json!({"amount": 10, "currency": "BTC", "wallet": "bc1qxyz"}),
            "k",
        )
        .await;
        let id = format!("cb_{}", key_hash("k"));
        assert_eq!(r, Ok(json!({"success": true, "transactionId": id})));
        assert_eq!(reg.effects().count("coinbase", "processPayment"), 1);
    }

    #[tokio::test]
    async fn empty_or_missing_wallet_is_refused_without_effect() {
        let reg = Registry::simulators();
        for (k, args) in [
            ("a", json!({"amount": 10, "currency": "BTC", "wallet": ""})),
            ("b", json!({"amount": 10, "currency": "BTC"})),
            ("c", json!({"amount": 10, "wallet": null})),
        ] {
            let r = call(&reg, "coinbase", "processPayment", args, k).await;
            assert_eq!(r, Ok(json!({"success": false, "error": "invalid wallet"})));
        }
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn a_wallet_that_is_not_a_string_is_invalid_args() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            "coinbase",
            "processPayment",
            json!({"amount": 10, "wallet": 5}),
            "k",
        )
        .await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }
}
