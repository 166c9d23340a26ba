//! Test step: recurses without bound (stopped by the stack limit).
use whenever_step_sdk::prelude::*;

struct DeepRecursion;

/// Counts down from `n`, one stack frame per step; the result is used so nothing is folded away.
fn depth(n: u64) -> u64 {
    if std::hint::black_box(n) == 0 {
        return 0;
    }
    std::hint::black_box(depth(n - 1)).wrapping_add(1)
}

impl Step for DeepRecursion {
    fn condition() -> Value {
        condition!({ recurseDeeply: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let deepest = depth(std::hint::black_box(u64::MAX));
        set(data, "unreachable", deepest);
        Ok(())
    }
}

export_step!(DeepRecursion);
