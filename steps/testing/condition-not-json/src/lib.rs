//! Test step: its `condition()` is not JSON (written with the raw bindings, past the SDK).
use whenever_step_sdk::bindings::Guest;

struct ConditionNotJson;

impl Guest for ConditionNotJson {
    fn condition() -> String {
        "{\"order\": {\"total\": $number".to_string()
    }
    fn content(data: String) -> Result<String, String> {
        Ok(data)
    }
}

whenever_step_sdk::bindings::__export_step_world!(ConditionNotJson);
