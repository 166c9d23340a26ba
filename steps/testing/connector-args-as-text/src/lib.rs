//! Test step: calls `stripe.charge` through the raw import with arguments that are not JSON,
//! then with arguments written as text of its own (whitespace around them, spaces inside), then
//! with arrays nested 121 levels deep, and records the result text it was given and the errors.
//! (A refused call first: a replay of its journal must answer the calls after it with their
//! own results.)
use whenever_step_sdk::bindings::whenever::step::connectors as host;
use whenever_step_sdk::prelude::*;

/// The arguments as this step writes them: the host keeps them so, less the whitespace around.
const ARGS: &str = " \n{\"amount\": 100,  \"currency\": \"usd\", \"source\": \"tok_visa\"}\t ";

struct ConnectorArgsAsText;

impl Step for ConnectorArgsAsText {
    fn condition() -> Value {
        condition!({ passArgs: true, passed: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let not_json = match host::call("stripe", "charge", "{not json") {
            Ok(text) => json!({ "text": text }),
            Err(e) => json!({ "error": e.message }),
        };
        let charged = match host::call("stripe", "charge", ARGS) {
            Ok(text) => json!({ "text": text }),
            Err(e) => json!({ "error": e.message }),
        };
        let deep = (1..121).fold("[]".to_string(), |inner, _| format!("[{inner}]"));
        let too_deep = match host::call("stripe", "charge", &deep) {
            Ok(text) => json!({ "text": text }),
            Err(e) => json!({ "error": e.message }),
        };
        set(
            data,
            "passed",
            json!({ "charged": charged, "notJson": not_json, "tooDeep": too_deep }),
        );
        Ok(())
    }
}

export_step!(ConnectorArgsAsText);
