//! Test step: its content returns an error.
use whenever_step_sdk::prelude::*;

struct ReturnsError;

impl Step for ReturnsError {
    fn condition() -> Value {
        condition!({ failPlease: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "neverApplied", true);
        Err(StepError::new("the order cannot be processed: no reason at all"))
    }
}

export_step!(ReturnsError);
