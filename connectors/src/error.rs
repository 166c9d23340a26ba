//! Errors: the one a connector call returns to a step, and the one a bad configuration gives.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a connector call failed; mirrors the WIT `error-kind` so the host can pass it to the step as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The step's manifest does not grant this connector (decided by the host, not by connectors).
    NotGranted,
    /// No connector (or method) of that name exists on this host.
    Unknown,
    /// The arguments were not what the connector expects.
    InvalidArgs,
    /// The service answered with an error.
    Failed,
    /// The service could not be reached.
    Unavailable,
    /// The service did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// The kebab-case name, as in the WIT interface and in JSON (`"not-granted"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotGranted => "not-granted",
            ErrorKind::Unknown => "unknown",
            ErrorKind::InvalidArgs => "invalid-args",
            ErrorKind::Failed => "failed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed connector call: its kind and a message for people; handed back to the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ConnectorError {
    /// What kind of failure, so the step can decide what to do.
    pub kind: ErrorKind,
    /// The message for people (the provider's own where there is one).
    pub message: String,
}

impl ConnectorError {
    /// An error of any kind with this message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
        }
    }

    /// The step is not granted the connector.
    pub fn not_granted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotGranted, message)
    }

    /// No such connector or method.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unknown, message)
    }

    /// The arguments were missing or of the wrong shape.
    pub fn invalid_args(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgs, message)
    }

    /// The service refused or failed the request.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// The service could not be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// The service did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
}

/// A connectors configuration that cannot be used: which connector and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connector `{connector}`: {message}")]
pub struct ConfigError {
    /// The connector whose section is wrong (as named in the config).
    pub connector: String,
    /// What is wrong, naming the offending kind, setting or file.
    pub message: String,
}

impl ConfigError {
    /// An error about `connector`'s configuration.
    pub fn new(connector: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            connector: connector.into(),
            message: message.into(),
        }
    }
}

/// An error with the errors that caused it, `outer: inner: innermost`, each cause said once (a
/// message that already contains its cause's text does not repeat it): reqwest's and
/// tokio-postgres's own messages ("error sending request") do not say why (a refused
/// connection, an untrusted certificate).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let said = e.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_kebab_case_and_display_the_same() {
        for (kind, text) in [
            (ErrorKind::NotGranted, "not-granted"),
            (ErrorKind::Unknown, "unknown"),
            (ErrorKind::InvalidArgs, "invalid-args"),
            (ErrorKind::Failed, "failed"),
            (ErrorKind::Unavailable, "unavailable"),
            (ErrorKind::Timeout, "timeout"),
        ] {
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::json!(text)));
            assert_eq!(kind.to_string(), text);
            let back: Option<ErrorKind> = serde_json::from_value(serde_json::json!(text)).ok();
            assert_eq!(back, Some(kind));
        }
    }

    #[test]
    fn constructors_set_the_kind() {
        assert_eq!(ConnectorError::not_granted("x").kind, ErrorKind::NotGranted);
        assert_eq!(ConnectorError::unknown("x").kind, ErrorKind::Unknown);
        assert_eq!(ConnectorError::invalid_args("x").kind, ErrorKind::InvalidArgs);
        assert_eq!(ConnectorError::failed("x").kind, ErrorKind::Failed);
        assert_eq!(ConnectorError::unavailable("x").kind, ErrorKind::Unavailable);
        assert_eq!(ConnectorError::timeout("x").kind, ErrorKind::Timeout);
        assert_eq!(
            ConnectorError::failed("mailbox unavailable").to_string(),
            "failed: mailbox unavailable"
        );
    }

    #[test]
    fn config_error_names_the_connector() {
        let e = ConfigError::new("stripe", "unknown kind \"http\"");
        assert_eq!(e.to_string(), "connector `stripe`: unknown kind \"http\"");
    }

    #[test]
    fn an_error_is_told_with_its_causes_each_once() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let error = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "connect failed: UnknownIssuer",
                Some(Box::new(Layer("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            with_causes(&error),
            "error sending request: connect failed: UnknownIssuer"
        );
    }
}
