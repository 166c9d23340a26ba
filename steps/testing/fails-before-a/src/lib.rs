//! Test step: fails whenever it runs, on the same condition as `write-a`. Run beside it, it fails
//! while `write-a` writes `a`, so its condition no longer holds once both are done although its
//! failure stays recorded: a retry of it would run nothing.
use whenever_step_sdk::prelude::*;

struct FailsBeforeA;

impl Step for FailsBeforeA {
    fn condition() -> Value {
        condition!({ start: true, a: null })
    }
    fn content(_data: &mut Value) -> Result<(), StepError> {
        Err(StepError::new("fails before a is written"))
    }
}

export_step!(FailsBeforeA);
