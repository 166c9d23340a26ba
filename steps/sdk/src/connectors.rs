//! Calls to the host's connectors: `connectors::call("stripe", "charge", &json!({...}))`.

use alloc::format;
use alloc::string::String;
use core::fmt;

use serde_json::Value;

use crate::bindings::whenever::step::connectors as host;
use crate::text;

pub use host::ErrorKind;

/// A failed connector call.
#[derive(Debug, Clone)]
pub struct ConnectorError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message for people (the provider's own where there is one).
    pub message: String,
    /// The connector called.
    pub connector: String,
    /// The method called.
    pub method: String,
}

impl ConnectorError {
    /// The kind as the contract names it: `not-granted`, `unknown`, `invalid-args`, `failed`,
    /// `unavailable`, `timeout`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ErrorKind::NotGranted => "not-granted",
            ErrorKind::Unknown => "unknown",
            ErrorKind::InvalidArgs => "invalid-args",
            ErrorKind::Failed => "failed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ConnectorError {
    /// The message alone (the seed's `error.message`); a [`crate::StepError`] made of it with
    /// `?` says which call failed and how.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl core::error::Error for ConnectorError {}

/// Calls `connector.method` with `args` and returns the JSON result.
pub fn call(connector: &str, method: &str, args: &Value) -> Result<Value, ConnectorError> {
    let args = text::write(args, 128);
    match host::call(connector, method, &args) {
        Ok(result) => text::parse(&result).map_err(|e| ConnectorError {
            kind: ErrorKind::Failed,
            message: format!("{connector}.{method} returned invalid JSON: {e}"),
            connector: connector.into(),
            method: method.into(),
        }),
        Err(e) => Err(ConnectorError {
            kind: e.kind,
            message: e.message,
            connector: connector.into(),
            method: method.into(),
        }),
    }
}
