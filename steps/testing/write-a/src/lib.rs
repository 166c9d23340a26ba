//! Test step: writes `a` when `start` is true (runs in parallel with `write-b`).
use whenever_step_sdk::prelude::*;

struct WriteA;

impl Step for WriteA {
    fn condition() -> Value {
        condition!({ start: true, a: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("writing a");
        set(data, "a", "A");
        Ok(())
    }
}

export_step!(WriteA);
