//! Test step: when `order.id` is a string, copies the data it was given to `seen`, removes
//! `order.lines` and sets `order.customerSeen`, so a test can tell what a step's manifest
//! `reads` let it see and that its writes and removals land in the whole data.
use whenever_step_sdk::prelude::*;

struct ShowsItsInput;

impl Step for ShowsItsInput {
    fn condition() -> Value {
        condition!({ order: { id: String }, seen: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let given = data.clone();
        set(data, "seen", given);
        remove(data, "order.lines");
        let email = get_str(data, "customer.email").to_string();
        set(data, "order.customerSeen", email);
        Ok(())
    }
}

export_step!(ShowsItsInput);
