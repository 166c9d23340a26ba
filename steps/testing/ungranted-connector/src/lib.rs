//! Test step: calls `charge` on the connector `connector` names (`stripe` when it is absent),
//! which its manifest does not grant, and records the error.
use whenever_step_sdk::prelude::*;

struct UngrantedConnector;

impl Step for UngrantedConnector {
    fn condition() -> Value {
        condition!({ tryStripe: true, stripeResult: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let args = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
        let connector = get(data, "connector").as_str().unwrap_or("stripe").to_string();
        match connectors::call(&connector, "charge", &args) {
            Ok(result) => set(data, "stripeResult", json!({"ok": result})),
            Err(e) => set(
                data,
                "stripeResult",
                json!({"error": e.kind_name(), "message": e.message}),
            ),
        }
        Ok(())
    }
}

export_step!(UngrantedConnector);
