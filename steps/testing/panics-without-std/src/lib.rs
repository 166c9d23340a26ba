//! Test step: a `#![no_std]` step that panics, so that the SDK's panic handler
//! (`no_std_support!`) is seen to report the message as `std`'s hook does.
#![cfg_attr(target_arch = "wasm32", no_std)]

use whenever_step_sdk::prelude::*;

struct PanicsWithoutStd;

impl Step for PanicsWithoutStd {
    fn condition() -> Value {
        condition!({ panicWithoutStd: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let reason = get_str(data, "reason");
        panic!("this step panics without std: {reason}");
    }
}

export_step!(PanicsWithoutStd);
whenever_step_sdk::no_std_support!();
