//! Test step: returns 100 MiB of task data (stopped by the output limit, or by the memory limit
//! when it has the default 64 MiB).
use whenever_step_sdk::prelude::*;

struct HugeOutput;

impl Step for HugeOutput {
    fn condition() -> Value {
        condition!({ hugeOutput: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "blob", "x".repeat(100 << 20));
        Ok(())
    }
}

export_step!(HugeOutput);
