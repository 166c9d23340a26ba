//! Benchmark step: scores an order (tier and internal fraud factors). Its logic lives in
//! `logic.rs` so the benchmark can run the same code natively.
use whenever_step_sdk::prelude::*;

mod logic;

struct OrderScoring;

impl Step for OrderScoring {
    fn condition() -> Value {
        condition!({ order: { customer: { id: String, tier: String, totalSpent: Number }, scored: null } })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        logic::score(data, &task::now());
        Ok(())
    }
}

export_step!(OrderScoring);
