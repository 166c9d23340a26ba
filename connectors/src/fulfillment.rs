//! `fulfillmentSystem`: hands an order to the warehouse for picking and shipping.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "fulfillmentSystem";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["createOrder"];

/// The processing time the simulator promises, in hours.
pub const ESTIMATED_PROCESSING_HOURS: u64 = 4;

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(FulfillmentSimulator::new(cx)))
        }
        config::HTTP => crate::http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, config::HTTP])),
    }
}

/// The deterministic fulfilment system: accepts every order (any JSON object) as
/// `FF-<HASH OF THE IDEMPOTENCY KEY>`, processed in [`ESTIMATED_PROCESSING_HOURS`] hours.
#[derive(Debug, Clone)]
pub struct FulfillmentSimulator {
    effects: Effects,
}

impl FulfillmentSimulator {
    /// A simulator recording its orders in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        FulfillmentSimulator {
            effects: cx.effects.clone(),
        }
    }

    fn create_order(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Args::new("fulfillmentSystem.createOrder", args)?;
        let id = format!("FF-{}", key_hash(&ctx.idempotency_key).to_uppercase());
        self.effects.record(ctx, NAME, "createOrder", &id);
        Ok(json!({"id": id, "estimatedProcessingTime": ESTIMATED_PROCESSING_HOURS}))
    }
}

#[async_trait::async_trait]
impl Connector for FulfillmentSimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "createOrder" => self.create_order(args, ctx),
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
    async fn creates_orders_once_per_key() {
        let reg = Registry::simulators();
        let args = json!({"orderId": "o1", "items": [{"sku": "MONITOR-LG-27", "quantity": 1}], "warehouse": "TX-MAIN"});
        let a = call(&reg, NAME, "createOrder", args.clone(), "k").await;
        let id = format!("FF-{}", key_hash("k").to_uppercase());
        assert_eq!(a, Ok(json!({"id": id, "estimatedProcessingTime": 4})));
        assert_eq!(call(&reg, NAME, "createOrder", args.clone(), "k").await, a);
        assert_eq!(reg.effects().count(NAME, "createOrder"), 1);
        let b = call(&reg, NAME, "createOrder", args, "k2").await;
        assert_ne!(a, b);
        assert_eq!(reg.effects().count(NAME, "createOrder"), 2);
    }

    #[tokio::test]
    async fn arguments_must_be_an_object() {
        let reg = Registry::simulators();
        let r = call(&reg, NAME, "createOrder", json!([1, 2]), "k").await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }
}
