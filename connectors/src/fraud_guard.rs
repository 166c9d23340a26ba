//! `fraudGuard`: scores an order's fraud risk.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::{CallContext, ConfigError, Connector, ConnectorError};

/// The name steps call this connector by.
pub const NAME: &str = "fraudGuard";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["analyze"];

/// Scores above this are recommended for `review`; others `approve`.
pub const REVIEW_ABOVE: u32 = 30;

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(FraudGuardSimulator))
        }
        config::HTTP => crate::http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, config::HTTP])),
    }
}

/// The deterministic fraud scorer: +30 for an e-mail domain ending in `.test`, +15 when the
/// shipping country is not `US` (or not given), +10 for an amount over 5000; `review` above 30.
/// It has no side effects.
#[derive(Debug, Clone, Copy, Default)]
pub struct FraudGuardSimulator;

impl FraudGuardSimulator {
    fn analyze(&self, args: &Value) -> Result<Value, ConnectorError> {
        let a = Args::new("fraudGuard.analyze", args)?;
        let email = a.str("customerEmail")?;
        let amount = a.number("amount")?;
        let address = a.opt_object("shippingAddress")?;
        let country = address.and_then(|addr| addr.get("country")).and_then(Value::as_str);

        let domain = email
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .trim()
            .to_ascii_lowercase();
        let mut score = 0u32;
        if domain.ends_with(".test") {
            score += 30;
        }
        if country != Some("US") {
            score += 15;
        }
        if amount > 5000.0 {
            score += 10;
        }
        let recommendation = if score > REVIEW_ABOVE { "review" } else { "approve" };
        Ok(json!({"score": score, "recommendation": recommendation}))
    }
}

#[async_trait::async_trait]
impl Connector for FraudGuardSimulator {
    async fn call(&self, method: &str, args: &Value, _ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "analyze" => self.analyze(args),
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

    fn order(email: &str, amount: f64, country: Option<&str>) -> serde_json::Value {
        let mut v = json!({"orderId": "o1", "customerEmail": email, "amount": amount, "paymentToken": "tok_visa"});
        if let Some(c) = country {
            v["shippingAddress"] = json!({"street": "1 Main St", "country": c});
        }
        v
    }

    #[tokio::test]
    async fn scores_each_rule() {
        let reg = Registry::simulators();
        let cases = [
            (order("a@example.com", 100.0, Some("US")), 0, "approve"),
            (order("a@shop.test", 100.0, Some("US")), 30, "approve"),
            (order("a@example.com", 100.0, Some("DE")), 15, "approve"),
            (order("a@example.com", 100.0, None), 15, "approve"),
            (order("a@example.com", 5000.0, Some("US")), 0, "approve"),
            (order("a@example.com", 5000.01, Some("US")), 10, "approve"),
            (order("a@example.com", 6000.0, Some("CA")), 25, "approve"),
            (order("a@Shop.TEST", 100.0, Some("CA")), 45, "review"),
            (order("a@shop.test", 9000.0, Some("US")), 40, "review"),
            (order("a@shop.test", 9000.0, Some("FR")), 55, "review"),
            (order("a@test.com", 100.0, Some("US")), 0, "approve"),
        ];
        for (i, (args, score, rec)) in cases.into_iter().enumerate() {
            let r = call(&reg, "fraudGuard", "analyze", args.clone(), &format!("k{i}")).await;
            assert_eq!(r, Ok(json!({"score": score, "recommendation": rec})), "{args}");
        }
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn missing_email_or_amount_is_invalid_args() {
        let reg = Registry::simulators();
        for (k, args) in [
            ("a", json!({"amount": 1})),
            ("b", json!({"customerEmail": "a@b.com"})),
            ("c", json!({"customerEmail": "a@b.com", "amount": "1"})),
            (
                "d",
                json!({"customerEmail": "a@b.com", "amount": 1, "shippingAddress": "US"}),
            ),
        ] {
            let r = call(&reg, "fraudGuard", "analyze", args, k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
        }
    }
}
