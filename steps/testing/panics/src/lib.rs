//! Test step: panics, or with `exitCode` exits the process as `std::process::exit` does.
use whenever_step_sdk::prelude::*;

struct Panics;

impl Step for Panics {
    fn condition() -> Value {
        condition!({ panic: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        if let Some(code) = get(data, "exitCode").as_i64() {
            std::process::exit(code as i32);
        }
        panic!("this step always panics");
    }
}

export_step!(Panics);
