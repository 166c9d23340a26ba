//! `stripe`: card charges. The simulator follows Stripe's test-token idea: special sources
//! decline or fail, any other source is charged.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "stripe";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["charge"];

/// The test source whose charge is declined (`{success:false, error:"Your card was declined."}`).
pub const TOKEN_DECLINED: &str = "tok_chargeDeclined";

/// The test source for which Stripe cannot be reached (error kind `unavailable`).
pub const TOKEN_UNAVAILABLE: &str = "tok_unavailable";

/// Builds the implementation `config.kind` selects.
pub fn build(
    config: &ConnectorConfig,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(StripeSimulator::new(cx)))
        }
        other => Err(config::unknown_kind(NAME, other)),
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
            _ => {
                let id = format!("txn_{}", key_hash(&ctx.idempotency_key));
                let fee = fee_cents(amount) as f64 / 100.0;
                self.effects.record(ctx, NAME, "charge", &id);
                Ok(json!({"success": true, "transactionId": id, "fee": fee}))
            }
        }
    }
}

#[async_trait::async_trait]
impl Connector for StripeSimulator {
    async fn call(
        &self,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
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
        assert_eq!(
            r,
            Ok(json!({"success": true, "transactionId": id, "fee": 36.49}))
        );
        assert_eq!(reg.effects().count("stripe", "charge"), 1);
        let e = &reg.effects().all()[0];
        assert_eq!(
            (
                e.task_id.as_str(),
                e.reference.as_str(),
                e.idempotency_key.as_str()
            ),
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
        assert_eq!(
            r,
            Ok(json!({"success": false, "error": "Your card was declined."}))
        );
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
            assert_eq!(
                r.err().map(|e| e.kind),
                Some(ErrorKind::InvalidArgs),
                "{args}"
            );
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
