//! Test step: counts `attempts` and asks for a redo until it has made three.
use whenever_step_sdk::prelude::*;

struct RedoThreeTimes;

impl Step for RedoThreeTimes {
    fn condition() -> Value {
        condition!({ redoTest: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let attempts = get_f64(data, "attempts") + 1.0;
        set(data, "attempts", attempts);
        if attempts < 3.0 {
            task::redo();
        }
        Ok(())
    }
}

export_step!(RedoThreeTimes);
