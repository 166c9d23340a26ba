//! Test step: marks the order's first item reserved (`order.items.0.reserved`, a write into an
//! array element with the SDK's `set`), so a test can tell that such a write keeps the array,
//! and that a step not given the array is refused rather than let replace it.
use whenever_step_sdk::prelude::*;

struct MarksAnItem;

impl Step for MarksAnItem {
    fn condition() -> Value {
        condition!({ order: { id: String }, marked: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        set(data, "order.items.0.reserved", true);
        set(data, "marked", true);
        Ok(())
    }
}

export_step!(MarksAnItem);
