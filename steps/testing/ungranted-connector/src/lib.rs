//! Test step: calls `stripe.charge`, which its manifest does not grant, and records the error.
use whenever_step_sdk::prelude::*;

struct UngrantedConnector;

impl Step for UngrantedConnector {
    fn condition() -> Value {
        condition!({ tryStripe: true, stripeResult: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let args = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
        match connectors::call("stripe", "charge", &args) {
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
