//! The two error types of the crate: a pattern refused at parse time, and a
//! data value that does not match a condition.

use std::borrow::Cow;

/// A condition pattern that was refused at parse time.
///
/// It names where in the pattern the problem is (`path`, keys joined by `.`,
/// array positions as `[i]`, `""` for the top level) and what the problem is,
/// so an author can fix the step's condition without guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid condition at {}: {message}", location(.path))]
pub struct PatternError {
    /// Where in the pattern the problem is; `""` means the top level.
    pub path: String,
    /// What is wrong there, in plain words.
    pub message: String,
}

impl PatternError {
    /// Builds an error at `path` with `message`.
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PatternError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why some data does not match a condition: the first failing path and the
/// reason, so the host can tell a user why a step did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", mismatch_location(.path))]
pub struct Mismatch {
    /// The data path (keys joined by `.`) where matching failed; `""` is the top level.
    pub path: String,
    /// What was expected there and what was found, e.g. `expected a string, found 12`.
    pub reason: String,
}

fn location(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        Cow::Borrowed("the top level")
    } else {
        Cow::Borrowed(path)
    }
}

fn mismatch_location(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        Cow::Borrowed("top level")
    } else {
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_error_display_names_the_path() {
        let e = PatternError::new("order.total", "$gt needs a number, found \"abc\"");
        assert_eq!(
            e.to_string(),
            "invalid condition at order.total: $gt needs a number, found \"abc\""
        );
    }

    #[test]
    fn pattern_error_display_top_level() {
        let e = PatternError::new("", "the condition must be a JSON object, found 1");
        assert_eq!(
            e.to_string(),
            "invalid condition at the top level: the condition must be a JSON object, found 1"
        );
    }

    #[test]
    fn mismatch_display() {
        let m = Mismatch {
            path: "order.customer".into(),
            reason: "missing".into(),
        };
        assert_eq!(m.to_string(), "order.customer: missing");
        let m = Mismatch {
            path: String::new(),
            reason: "expected an object, found 1".into(),
        };
        assert_eq!(m.to_string(), "top level: expected an object, found 1");
    }
}
