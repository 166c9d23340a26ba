//! The step manifest (`NAME.toml` beside `NAME.wasm`): which connectors the step may call (and,
//! for `http` connectors, which hosts) and its limits. A step without a manifest is granted
//! nothing.
//!
//! ```toml
//! connectors = ["inventorySystem", "slackCom"]
//! [http]
//! hosts = ["inventory.internal"]   # or "*.internal", or "*" for whatever the operator configures
//! [limits]
//! timeout_ms = 2000
//! ```
//!
//! A manifest may also list the data paths the step `reads` (`reads = ["order.id",
//! "order.customer"]`): the step is then given only those parts of the task data (see
//! [`super::view`]), which keeps what a third-party step sees to what it needs and makes each
//! run cheaper. Without `reads` the step is given the whole task data.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use whenever_connectors::Registry;

use super::error::LoadError;
use super::grants::host_pattern_problem;
use super::limits::StepLimits;
use super::view::data_path_problem;

/// What a step is granted and held to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepManifest {
    /// The connectors the step may call (`stripe`, `slackCom`, ...). Anything else is not granted.
    pub connectors: Vec<String>,
    /// What the step may reach through connectors of kind `http`.
    pub http: HttpGrants,
    /// Sandbox limits; unset fields keep the defaults.
    pub limits: StepLimits,
    /// A description for people.
    pub description: Option<String>,
    /// The data paths the step is given (dot-separated object keys, `order.customer.email`),
    /// besides those its condition tests; `None`: the whole task data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
}

/// The `[http]` section: the hosts the step may reach through connectors the operator configured
/// with `kind = "http"` (the host of their `base_url`). None listed: no `http` connector answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpGrants {
    /// Host names (`inventory.internal`), `*.suffix` for every name under a suffix, or `*`.
    pub hosts: Vec<String>,
}

/// The manifest text is not valid.
#[derive(Debug, Error)]
#[error("invalid step manifest: {0}")]
pub struct ManifestError(pub String);

impl StepManifest {
    /// Parses a manifest from TOML text.
    pub fn from_toml(text: &str) -> Result<StepManifest, ManifestError> {
        let manifest: StepManifest = toml::from_str(text).map_err(|e| ManifestError(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what TOML cannot: every `[http] hosts` entry is a host name pattern, every
    /// `reads` entry a path, and the deadline not 0 (which no run could meet but by chance).
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.limits.timeout_ms == 0 {
            return Err(ManifestError(
                "limits.timeout_ms = 0: a run's deadline is at least 1 ms".to_string(),
            ));
        }
        if let Some(problem) = self.http.hosts.iter().find_map(|h| host_pattern_problem(h)) {
            return Err(ManifestError(format!("[http] hosts: {problem}")));
        }
        match self.reads.iter().flatten().find_map(|path| data_path_problem(path)) {
            Some(problem) => Err(ManifestError(format!("reads: {problem}"))),
            None => Ok(()),
        }
    }

    /// Whether the step may call `connector`.
    pub fn grants(&self, connector: &str) -> bool {
        self.connectors.iter().any(|c| c == connector)
    }

    /// Refuses a grant of a connector `connectors` does not have, naming step `step` and the
    /// ones it has: a misspelt `strpie` would otherwise deploy and fail at the first call, or
    /// never be noticed.
    pub fn check_connectors(&self, step: &str, connectors: &Registry) -> Result<(), LoadError> {
        let Some(unknown) = self.connectors.iter().find(|c| !connectors.contains(c)) else {
            return Ok(());
        };
        let names = connectors.names();
        // A typo of one of them (`slakCom`, `Stripe`) is told which it likely meant.
        let meant = names.iter().find(|name| {
            name.eq_ignore_ascii_case(unknown)
                || whenever_condition::one_edit_apart(&name.to_ascii_lowercase(), &unknown.to_ascii_lowercase())
        });
        let or_else = match meant {
            Some(name) => format!("did you mean `{name}`? Or else a"),
            None => "a".to_string(),
        };
        Err(LoadError::Manifest {
            step: step.to_string(),
            message: ManifestError(format!(
                "connectors: `{unknown}` is no connector of this host (its connectors: {}); {or_else} \
                 service of your own is configured as [connectors.{unknown}] with kind = \"http\"",
                names.join(", ")
            ))
            .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_of_a_connector_the_host_lacks_is_refused_by_name() {
        let connectors = Registry::simulators();
        let known = connectors.names().join(", ");
        let manifest = StepManifest::from_toml("connectors = [\"stripe\", \"strpie\"]\n").expect("valid TOML");
        let refused = manifest
            .check_connectors("charger", &connectors)
            .expect_err("strpie is unknown");
        assert!(
            refused.to_string().starts_with(&format!(
                "step charger: invalid step manifest: connectors: `strpie` is no connector of this host \
                 (its connectors: {known})"
            )),
            "{refused}"
        );
        // A typo is told the connector it likely meant; another name is not.
        assert!(
            refused.to_string().contains(
                "; did you mean `stripe`? Or else a service of your own is configured as [connectors.strpie]"
            ),
            "{refused}"
        );
        for (typo, meant) in [("slakCom", "slackCom"), ("Stripe", "stripe")] {
            let manifest = StepManifest {
                connectors: vec![typo.to_string()],
                ..StepManifest::default()
            };
            let refused = manifest.check_connectors("s", &connectors).expect_err("unknown");
            assert!(
                refused.to_string().contains(&format!("did you mean `{meant}`?")),
                "{refused}"
            );
        }
        let far = StepManifest {
            connectors: vec!["ledger".to_string()],
            ..StepManifest::default()
        };
        let refused = far.check_connectors("s", &connectors).expect_err("unknown");
        assert!(!refused.to_string().contains("did you mean"), "{refused}");
        let fine = StepManifest::from_toml("connectors = [\"stripe\"]\n").expect("valid TOML");
        assert!(fine.check_connectors("charger", &connectors).is_ok());
    }

    #[test]
    fn a_deadline_of_0_is_refused() {
        let refused = StepManifest::from_toml("[limits]\ntimeout_ms = 0\n").expect_err("refused");
        assert_eq!(refused.0, "limits.timeout_ms = 0: a run's deadline is at least 1 ms");
    }

    #[test]
    fn parses_grants_and_limits() {
        let m =
            StepManifest::from_toml("connectors = [\"stripe\"]\n[limits]\ntimeout_ms = 500\n").expect("valid manifest");
        assert!(m.grants("stripe"));
        assert!(!m.grants("paypal"));
        assert_eq!(m.limits.timeout_ms, 500);
        assert_eq!(m.limits.memory_mib, 64);
    }

    #[test]
    fn parses_http_hosts_and_refuses_urls() {
        let m =
            StepManifest::from_toml("connectors = [\"fraudGuard\"]\n[http]\nhosts = [\"fraud.internal\", \"*.svc\"]\n")
                .expect("valid manifest");
        assert_eq!(m.http.hosts, vec!["fraud.internal".to_string(), "*.svc".to_string()]);
        assert!(StepManifest::from_toml("").expect("empty").http.hosts.is_empty());
        let err =
            StepManifest::from_toml("[http]\nhosts = [\"https://fraud.internal/x\"]\n").expect_err("a URL refused");
        assert!(
            err.to_string().contains("[http] hosts") && err.to_string().contains("not a host name pattern"),
            "{err}"
        );
        let err = StepManifest::from_toml("[http]\nhost = [\"a\"]\n").expect_err("typo refused");
        assert!(err.to_string().contains("host"), "{err}");
    }

    #[test]
    fn parses_reads_and_refuses_paths_with_empty_keys() {
        let m = StepManifest::from_toml("reads = [\"order.id\", \"customer\"]\n").expect("valid manifest");
        assert_eq!(m.reads, Some(vec!["order.id".to_string(), "customer".to_string()]));
        assert_eq!(StepManifest::from_toml("").expect("empty").reads, None);
        for bad in ["", "order..id", ".order", "order."] {
            let err = StepManifest::from_toml(&format!("reads = [\"order.total\", {bad:?}]\n"))
                .expect_err("an empty key refused");
            assert!(
                err.to_string().contains("reads") && err.to_string().contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }

    /// A path deeper than a task's data may nest could match nothing, and a million keys of it
    /// (a 2 MB manifest) would overflow the stack of the view built from it.
    #[test]
    fn refuses_reads_paths_deeper_than_a_tasks_data_may_nest() {
        let path = |keys: usize| vec!["a"; keys].join(".");
        assert!(StepManifest::from_toml(&format!("reads = [{:?}]\n", path(120))).is_ok());
        for keys in [121, 1_000_000] {
            let err = StepManifest::from_toml(&format!("reads = [{:?}]\n", path(keys))).expect_err("too deep");
            assert_eq!(
                err.0,
                format!(
                    "reads: the data path {:?}… joins {keys} keys, past the 120 levels a task's data may nest",
                    &path(keys)[..40]
                )
            );
        }
    }

    #[test]
    fn refuses_unknown_keys() {
        let err = StepManifest::from_toml("connector = [\"stripe\"]").expect_err("typo refused");
        assert!(err.to_string().contains("connector"), "{err}");
    }
}
