//! Test step: computes for `computeIterations` rounds of a loop the compiler cannot skip (time
//! in wasm, which yields its thread at every epoch tick), then writes the result.
use whenever_step_sdk::prelude::*;

struct Computes;

impl Step for Computes {
    fn condition() -> Value {
        condition!({ computeIterations: "$number", computed: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let rounds = get(data, "computeIterations").as_u64().unwrap_or(0);
        let mut n: u64 = 0;
        for i in 0..rounds {
            n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(i));
        }
        set(data, "computed", n);
        Ok(())
    }
}

export_step!(Computes);
