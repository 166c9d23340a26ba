//! Test step: README.md's example step, word for word (`tests/e2e/readme.rs` holds them equal
//! and runs it).
use whenever_step_sdk::prelude::*;

struct FraudDetection;

impl Step for FraudDetection {
    fn condition() -> Value {
        condition!({ order: { total: Number, payment: { method: String, token: String }, fraudChecked: null } })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        let args = json!({
            "amount": get_f64(data, "order.total"),
            "customerEmail": get_str(data, "order.customer.email"),
            "shippingAddress": get(data, "order.shipping"),
        });
        let result = connectors::call("fraudGuard", "analyze", &args)?;
        set(data, "order.fraud.score", result["score"].clone());
        set(data, "order.fraudChecked", true);
        Ok(())
    }
}

export_step!(FraudDetection);
