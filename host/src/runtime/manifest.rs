//! The step manifest (`NAME.toml` beside `NAME.wasm`): which connectors the step may call and
//! its limits. A step without a manifest is granted nothing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::limits::StepLimits;

/// What a step is granted and held to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepManifest {
    /// The connectors the step may call (`stripe`, `slackCom`, ...). Anything else is not granted.
    pub connectors: Vec<String>,
    /// Sandbox limits; unset fields keep the defaults.
    pub limits: StepLimits,
    /// A description for people.
    pub description: Option<String>,
}

/// The manifest text is not valid.
#[derive(Debug, Error)]
#[error("invalid step manifest: {0}")]
pub struct ManifestError(pub String);

impl StepManifest {
    /// Parses a manifest from TOML text.
    pub fn from_toml(text: &str) -> Result<StepManifest, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError(e.to_string()))
    }

    /// Whether the step may call `connector`.
    pub fn grants(&self, connector: &str) -> bool {
        self.connectors.iter().any(|c| c == connector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grants_and_limits() {
        let m = StepManifest::from_toml("connectors = [\"stripe\"]\n[limits]\ntimeout_ms = 500\n")
            .expect("valid manifest");
        assert!(m.grants("stripe"));
        assert!(!m.grants("paypal"));
        assert_eq!(m.limits.timeout_ms, 500);
        assert_eq!(m.limits.memory_mib, 64);
    }

    #[test]
    fn refuses_unknown_keys() {
        let err = StepManifest::from_toml("connector = [\"stripe\"]").expect_err("typo refused");
        assert!(err.to_string().contains("connector"), "{err}");
    }
}
