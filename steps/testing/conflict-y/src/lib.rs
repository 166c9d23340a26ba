//! Test step: writes `winner` = "y" when `conflictTest` is true; races `conflict-x`.
use whenever_step_sdk::prelude::*;

struct Conflict;

impl Step for Conflict {
    fn condition() -> Value {
        condition!({ conflictTest: true, winner: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "winner", "y");
        set(data, "byy", true);
        Ok(())
    }
}

export_step!(Conflict);
