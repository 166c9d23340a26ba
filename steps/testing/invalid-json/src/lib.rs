//! Test step: returns text that is not JSON, bypassing the SDK's serializer.
use whenever_step_sdk::bindings::Guest;

struct InvalidJson;

impl Guest for InvalidJson {
    fn condition() -> String {
        r#"{"invalidJson": true}"#.to_string()
    }
    fn content(_data: String) -> Result<String, String> {
        Ok("{\"this is\": not json".to_string())
    }
}

whenever_step_sdk::bindings::__export_step_world!(InvalidJson);
