//! `paypal`: executing (capturing) an approved PayPal payment.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "paypal";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["executePayment"];

/// Payment ids starting with this are declined (`{success:false, error:"INSTRUMENT_DECLINED"}`).
pub const DECLINED_PREFIX: &str = "PAY-DECLINED";

/// Builds the implementation `config.kind` selects.
pub fn build(
    config: &ConnectorConfig,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(PaypalSimulator::new(cx)))
        }
        other => Err(config::unknown_kind(NAME, other)),
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
    async fn call(
        &self,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
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
        assert_eq!(
            r,
            Ok(json!({"success": false, "error": "INSTRUMENT_DECLINED"}))
        );
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn missing_payment_id_is_invalid_args() {
        let reg = Registry::simulators();
        let r = call(&reg, "paypal", "executePayment", json!({"amount": 1}), "k").await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }
}
