//! The condition parser and matcher on arbitrary text: a pattern and data separated by a NUL.
//! Parsing never panics; when both parse, `explain` agrees with `matches` and `$not` negates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use whenever_condition::Condition;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let (pattern_text, data_text) = text.split_once('\0').unwrap_or((&text, "{}"));
    let Ok(condition) = Condition::from_json_text(pattern_text) else { return };
    let Ok(data) = serde_json::from_str::<Value>(data_text) else { return };
    let matched = condition.matches(&data);
    assert_eq!(matched, condition.explain(&data).is_ok(), "explain disagrees on {data}");
    let _ = condition.projection(&data).to_json();
    let negated = Condition::parse(&json!({"$not": condition.pattern()})).expect("$not of a valid pattern");
    assert_eq!(negated.matches(&data), !matched, "$not does not negate on {data}");
});
