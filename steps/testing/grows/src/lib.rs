//! Test step: adds a field of `growBytes` bytes to the task at every run (`chunk1`, `chunk2`,
//! …), counting its runs in `grown`, and asks to run again, for ever.
use whenever_step_sdk::prelude::*;

struct Grows;

impl Step for Grows {
    fn condition() -> Value {
        condition!({ growBytes: "$number" })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let bytes = get(data, "growBytes").as_u64().unwrap_or(0) as usize;
        let grown = get(data, "grown").as_u64().unwrap_or(0) + 1;
        set(data, &format!("chunk{grown}"), "x".repeat(bytes));
        set(data, "grown", grown);
        task::redo();
        Ok(())
    }
}

export_step!(Grows);
