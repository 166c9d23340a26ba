//! `whenever match --condition FILE --data FILE`.

use std::path::Path;

use serde_json::Value;

use super::{EXIT_BAD_INPUT, EXIT_COMPLETED};
use crate::condition::Condition;

/// Exit code when the condition does not hold (grep's and `test`'s 1: `if whenever match ...`).
const EXIT_DOES_NOT_HOLD: u8 = 1;

/// Prints `true` (exit 0), or `false` and the first failing path and why (exit 1); exit 2 on bad
/// input.
pub(crate) fn run(condition: &Path, data: &Path) -> u8 {
    let pattern = match std::fs::read_to_string(condition) {
        Ok(text) => text,
        Err(e) => return bad(&format!("cannot read {}: {e}", condition.display())),
    };
    let condition_parsed = match Condition::from_json_text(&pattern) {
        Ok(c) => c,
        Err(e) => return bad(&format!("{}: {e}", condition.display())),
    };
    let data_value: Value = match std::fs::read_to_string(data) {
        Err(e) => return bad(&format!("cannot read {}: {e}", data.display())),
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return bad(&format!("{} is not valid JSON: {e}", data.display())),
        },
    };
    match condition_parsed.explain(&data_value) {
        Ok(()) => {
            println!("true");
            EXIT_COMPLETED
        }
        Err(mismatch) => {
            println!("false");
            println!("{mismatch}");
            EXIT_DOES_NOT_HOLD
        }
    }
}

fn bad(message: &str) -> u8 {
    eprintln!("whenever match: {message}");
    EXIT_BAD_INPUT
}
