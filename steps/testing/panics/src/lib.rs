//! Test step: panics.
use whenever_step_sdk::prelude::*;

struct Panics;

impl Step for Panics {
    fn condition() -> Value {
        condition!({ panic: true })
    }
    fn content(_data: &mut Value) -> Result<(), StepError> {
        panic!("this step always panics");
    }
}

export_step!(Panics);
