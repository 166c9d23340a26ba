//! `coinbase`: crypto payments from a customer's wallet.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "coinbase";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["processPayment"];

/// Builds the implementation `config.kind` selects.
pub fn build(
    config: &ConnectorConfig,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(CoinbaseSimulator::new(cx)))
        }
        other => Err(config::unknown_kind(NAME, other)),
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
    async fn call(
        &self,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
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
