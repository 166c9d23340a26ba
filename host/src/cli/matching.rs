//! `whenever match --condition FILE --data FILE` (either `-` for stdin).

use std::path::Path;

use serde_json::Value;

use super::input::read_json;
use super::{EXIT_BAD_INPUT, EXIT_COMPLETED};
use crate::condition::Condition;

/// Exit code when the condition does not hold (grep's and `test`'s 1: `if whenever match ...`).
const EXIT_DOES_NOT_HOLD: u8 = 1;

/// Prints `true` (exit 0), or `false` and the first failing path and why (exit 1); exit 2 on bad
/// input.
pub(crate) fn run(condition: &Path, data: &Path) -> u8 {
    // Either may be `-` for stdin, as for `run`, `create` and `patch`; not both.
    if condition.as_os_str() == "-" && data.as_os_str() == "-" {
        return bad("--condition and --data cannot both be - (stdin holds one document)");
    }
    // Text that is not JSON is told as such, before it is read as a pattern.
    let (pattern_value, pattern) = match read_json(Some(condition), "the condition") {
        Ok(read) => read,
        Err(message) => return bad(&message),
    };
    let condition_parsed = match Condition::parse(&pattern_value) {
        Ok(c) => c,
        Err(e) => return bad(&format!("{}: {e}", pattern.source)),
    };
    let data_value: Value = match read_json(Some(data), "the data") {
        Err(message) => return bad(&message),
        Ok((value, _)) => value,
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
