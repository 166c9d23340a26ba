//! Test step: its `condition()` never returns (stopped by the deadline at deploy).
use whenever_step_sdk::bindings::Guest;

struct ConditionLoops;

impl Guest for ConditionLoops {
    fn condition() -> String {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
            if n == u64::MAX {
                break;
            }
        }
        "{\"never\": true}".to_string()
    }
    fn content(data: String) -> Result<String, String> {
        Ok(data)
    }
}

whenever_step_sdk::bindings::__export_step_world!(ConditionLoops);
