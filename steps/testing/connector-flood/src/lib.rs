//! Test step: calls `slackCom.send` 100,000 times in one run (stopped at the per-run cap).
use whenever_step_sdk::prelude::*;

struct ConnectorFlood;

impl Step for ConnectorFlood {
    fn condition() -> Value {
        condition!({ floodConnectors: true, flooded: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        for n in 0..100_000u32 {
            let args = json!({"channel": "#flood", "text": format!("message {n}")});
            connectors::call("slackCom", "send", &args).map_err(|e| StepError::new(e.message))?;
        }
        set(data, "flooded", true);
        Ok(())
    }
}

export_step!(ConnectorFlood);
