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
    fn from(error: ConnectorError) -> Self {
        StepError(error.to_string())
    }
}

impl From<serde_json::Error> for StepError {
    fn from(error: serde_json::Error) -> Self {
        StepError(format!("JSON error: {error}"))
    }
}
