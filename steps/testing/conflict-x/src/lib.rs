//! Test step: writes `winner` = "x" when `conflictTest` is true; races `conflict-y`.
use whenever_step_sdk::prelude::*;

struct Conflict;

impl Step for Conflict {
    fn condition() -> Value {
        condition!({ conflictTest: true, winner: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "winner", "x");
        set(data, "byx", true);
        Ok(())
    }
}

export_step!(Conflict);
