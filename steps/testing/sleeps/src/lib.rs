//! Test step: sleeps `sleepMs` milliseconds (a WASI clock wait, time spent in the host, not in
//! wasm), then marks the task.
use whenever_step_sdk::prelude::*;

struct Sleeps;

impl Step for Sleeps {
    fn condition() -> Value {
        condition!({ sleepMs: "$number", slept: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let ms = get(data, "sleepMs").as_u64().unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        set(data, "slept", true);
        Ok(())
    }
}

export_step!(Sleeps);
