//! Test step: counts its runs in `runs`; its condition names only `counter`, so it runs again
//! only when `counter` changes.
use whenever_step_sdk::prelude::*;

struct CountRuns;

impl Step for CountRuns {
    fn condition() -> Value {
        condition!({ counter: Number })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let runs = get_f64(data, "runs") + 1.0;
        set(data, "runs", runs);
        Ok(())
    }
}

export_step!(CountRuns);
