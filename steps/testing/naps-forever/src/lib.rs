//! Test step: naps a nanosecond at a time for ever (a WASI clock wait that is over at once, so
//! each nap yields to the host and is woken again straight away). Its time is its own, however
//! often it is woken: the deadline must stop it.
use whenever_step_sdk::prelude::*;

struct NapsForever;

impl Step for NapsForever {
    fn condition() -> Value {
        condition!({ napForever: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        loop {
            std::thread::sleep(std::time::Duration::from_nanos(1));
            if get(data, "never").as_bool() == Some(true) {
                break;
            }
        }
        set(data, "unreachable", true);
        Ok(())
    }
}

export_step!(NapsForever);
