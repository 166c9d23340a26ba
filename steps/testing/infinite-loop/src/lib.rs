//! Test step: never returns (stopped by the CPU deadline).
use whenever_step_sdk::prelude::*;

struct InfiniteLoop;

impl Step for InfiniteLoop {
    fn condition() -> Value {
        condition!({ loopForever: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
            if n == u64::MAX {
                break;
            }
        }
        set(data, "unreachable", true);
        Ok(())
    }
}

export_step!(InfiniteLoop);
