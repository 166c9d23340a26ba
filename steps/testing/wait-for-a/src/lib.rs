//! Test step: waits until some other step has written `a`.
use whenever_step_sdk::prelude::*;

struct WaitForA;

impl Step for WaitForA {
    fn condition() -> Value {
        condition!({ a: "A", waited: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "waited", true);
        Ok(())
    }
}

export_step!(WaitForA);
