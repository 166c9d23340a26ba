//! Test step: writes `b` when `start` is true (runs in parallel with `write-a`).
use whenever_step_sdk::prelude::*;

struct WriteB;

impl Step for WriteB {
    fn condition() -> Value {
        condition!({ start: true, b: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "b", "B");
        Ok(())
    }
}

export_step!(WriteB);
