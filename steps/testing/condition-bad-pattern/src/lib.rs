//! Test step: its `condition()` is JSON but not a valid pattern (a misspelt type name).
use whenever_step_sdk::bindings::Guest;

struct ConditionBadPattern;

impl Guest for ConditionBadPattern {
    fn condition() -> String {
        r#"{"order": {"id": "$strnig"}}"#.to_string()
    }
    fn content(data: String) -> Result<String, String> {
        Ok(data)
    }
}

whenever_step_sdk::bindings::__export_step_world!(ConditionBadPattern);
