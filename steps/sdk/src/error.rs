//! The error a step's content returns: a message that lands in the run's history.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::connectors::ConnectorError;

/// Why a step's content failed; the host records the message and applies no change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(pub String);

impl StepError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        StepError(message.into())
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for StepError {}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError(message.to_string())
    }
}

impl From<ConnectorError> for StepError {
    /// Which call failed, how, and the message: `slackCom.send failed: channel_not_found`
    /// (a step's `?` on a call; its message alone named neither).
    fn from(error: ConnectorError) -> Self {
        StepError(format!(
            "{}.{} {}: {}",
            error.connector,
            error.method,
            error.kind_name(),
            error.message
        ))
    }
}

impl From<serde_json::Error> for StepError {
    fn from(error: serde_json::Error) -> Self {
        StepError(format!("JSON error: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::ErrorKind;

    #[test]
    fn a_failed_call_turned_into_a_step_error_says_which_call_and_how() {
        let error = ConnectorError {
            kind: ErrorKind::Failed,
            message: "mailbox unavailable".to_string(),
            connector: "eMailSmtpOAuth".to_string(),
            method: "sendEmail".to_string(),
        };
        assert_eq!(
            error.to_string(),
            "mailbox unavailable",
            "the message alone, as the seed reads it"
        );
        assert_eq!(
            StepError::from(error).0,
            "eMailSmtpOAuth.sendEmail failed: mailbox unavailable"
        );
    }
}
