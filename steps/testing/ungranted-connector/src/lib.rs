//! Test step: calls `charge` on the connector `connector` names (`stripe` when it is absent),
//! which its manifest does not grant, and records the error; `chargeTimes` times (once when
//! absent), recording the last answer or the first error.
use whenever_step_sdk::prelude::*;

struct UngrantedConnector;

impl Step for UngrantedConnector {
    fn condition() -> Value {
        condition!({ tryStripe: true, stripeResult: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let args = json!({"amount": 100, "currency": "usd", "source": "tok_visa"});
        let connector = get(data, "connector").as_str().unwrap_or("stripe").to_string();
        let times = get(data, "chargeTimes").as_u64().unwrap_or(1);
        let mut answer = Value::Null;
        for _ in 0..times {
            match connectors::call(&connector, "charge", &args) {
                Ok(result) => answer = json!({"ok": result}),
                Err(e) => {
                    answer = json!({"error": e.kind_name(), "message": e.message});
                    break;
                }
            }
        }
        set(data, "stripeResult", answer);
        Ok(())
    }
}

export_step!(UngrantedConnector);
