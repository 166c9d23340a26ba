//! Configuration: which implementation (`kind`) each connector uses and its settings.
//!
//! The host parses the `[connectors.<name>]` sections of its config file into a
//! [`ConnectorsConfig`]; connectors it does not name run as their simulators. Real kinds read
//! their secrets from the environment variables their `*_env` settings name (see
//! [`BuildContext::env`]); the crate's README documents every kind's settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::HttpClient;
use crate::secret::{Env, Secret, is_env_name};
use crate::{ConfigError, Effects, Outbox};

/// Connector configurations by connector name (`stripe`, `inventorySystem`, ...).
pub type ConnectorsConfig = BTreeMap<String, ConnectorConfig>;

/// The `kind` that selects a connector's deterministic simulator.
pub const SIMULATOR: &str = "simulator";

/// The generic `kind`: `POST {base_url}/{method}` with the JSON arguments (any connector name,
/// including names that are not built in, e.g. a service of your own).
pub const HTTP: &str = "http";

/// The real Stripe (connector `stripe`).
pub const STRIPE: &str = "stripe";

/// The real PayPal (connector `paypal`).
pub const PAYPAL: &str = "paypal";

/// The real Coinbase Commerce (connector `coinbase`).
pub const COINBASE: &str = "coinbase";

/// The real Slack, bot token or incoming webhook (connector `slackCom`).
pub const SLACK: &str = "slack";

/// Real e-mail over SMTP (connector `eMailSmtpOAuth`).
pub const SMTP: &str = "smtp";

/// Every `kind` this build knows.
pub const KINDS: &[&str] = &[SIMULATOR, HTTP, STRIPE, PAYPAL, COINBASE, SLACK, SMTP];

/// One connector's section: its implementation kind and the kind's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Which implementation: `"simulator"`, `"http"`, or the connector's own real kind
    /// (`"stripe"`, `"paypal"`, `"coinbase"`, `"slack"`, `"smtp"`); see [`KINDS`].
    pub kind: String,
    /// Every other key of the section, read by the chosen implementation.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl ConnectorConfig {
    /// The simulator with no settings.
    pub fn simulator() -> Self {
        ConnectorConfig {
            kind: SIMULATOR.to_string(),
            settings: toml::Table::new(),
        }
    }
}

/// What connector constructors share: where effects and sent messages are recorded, the
/// directory relative setting paths (e.g. a stock file) are resolved against, and where secrets
/// are read.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Where messaging connectors record what they sent.
    pub outbox: Outbox,
    /// Where connectors record the side effects they performed.
    pub effects: Effects,
    /// The directory relative paths in settings are relative to (empty: the current directory).
    pub base_dir: PathBuf,
    /// Where the environment variables named by `*_env` settings are read (the process
    /// environment by default).
    pub env: Env,
    /// The HTTP client the real connectors share.
    pub http: HttpClient,
}

impl BuildContext {
    /// `path` as given when absolute, else relative to [`BuildContext::base_dir`].
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// The error for a `kind` no implementation of `connector` answers to; `known` lists the kinds
/// it does take.
pub(crate) fn unknown_kind(connector: &str, kind: &str, known: &[&str]) -> ConfigError {
    ConfigError::new(
        connector,
        format!(
            "unknown kind `{kind}` for connector `{connector}` (known kinds: {})",
            known.join(", ")
        ),
    )
}

/// The file at `path` that `connector`'s setting `key` names (a CA, a certificate, a key);
/// the error names the setting and the file.
pub(crate) fn read_setting_file(connector: &str, key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(connector, format!("cannot read `{key}` {}: {e}", path.display())))
}

/// Rejects settings other than `allowed`, so a typo does not silently fall back to a default.
pub(crate) fn check_settings(connector: &str, config: &ConnectorConfig, allowed: &[&str]) -> Result<(), ConfigError> {
    match config.settings.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(ConfigError::new(
            connector,
            format!(
                "unknown setting `{key}` for kind `{}`{}",
                config.kind,
                if allowed.is_empty() {
                    " (it takes none)".to_string()
                } else {
                    format!(" (allowed: {})", allowed.join(", "))
                }
            ),
        )),
    }
}

/// The per-attempt timeout real connectors use unless `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// How many times real connectors retry a transient failure unless `retries` says otherwise.
pub const DEFAULT_RETRIES: u64 = 2;

/// The first retry's delay unless `backoff_ms` says otherwise; each further retry doubles it.
pub const DEFAULT_BACKOFF_MS: u64 = 200;

/// The settings every real connector takes besides its own.
pub(crate) const COMMON_SETTINGS: &[&str] = &["timeout_ms", "retries", "backoff_ms"];

/// How a real connector calls its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOptions {
    /// How long one attempt may take, connecting and reading the whole answer included.
    pub timeout: Duration,
    /// How many times a transient failure (cannot connect, 5xx, 429) is retried.
    pub retries: u32,
    /// The delay before the first retry; it doubles for each further one.
    pub backoff: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            retries: DEFAULT_RETRIES as u32,
            backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
        }
    }
}

/// Typed access to one real connector's settings; every error names the connector and the
/// setting, and never a secret's value (secrets are not in the file, and the name of the
/// variable holding one is checked to look like a variable name before it is ever shown).
pub(crate) struct Settings<'a> {
    connector: &'a str,
    config: &'a ConnectorConfig,
    cx: &'a BuildContext,
}

impl<'a> Settings<'a> {
    /// The settings of `connector`, which may hold `allowed` and [`COMMON_SETTINGS`] only.
    pub(crate) fn new(
        connector: &'a str,
        config: &'a ConnectorConfig,
        cx: &'a BuildContext,
        allowed: &[&str],
    ) -> Result<Self, ConfigError> {
        let all: Vec<&str> = allowed.iter().chain(COMMON_SETTINGS).copied().collect();
        check_settings(connector, config, &all)?;
        Ok(Settings { connector, config, cx })
    }

    /// A configuration error about this connector.
    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.connector, message)
    }

    /// Whether the setting is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.config.settings.contains_key(key)
    }

    /// An optional string setting.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.config.settings.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.error(format!("setting `{key}` must be a string"))),
        }
    }

    /// A required, non-empty string setting.
    pub(crate) fn str(&self, key: &str) -> Result<&'a str, ConfigError> {
        match self.opt_str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.error(format!("setting `{key}` must not be empty"))),
            None => Err(self.error(format!("setting `{key}` is required for kind `{}`", self.config.kind))),
        }
    }

    /// An optional integer setting in `min..=max`.
    pub(crate) fn opt_u64(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.config.settings.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => match u64::try_from(*n) {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(self.error(format!("setting `{key}` must be between {min} and {max}"))),
            },
            Some(_) => Err(self.error(format!("setting `{key}` must be an integer"))),
        }
    }

    /// An optional boolean setting.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.config.settings.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(format!("setting `{key}` must be true or false"))),
        }
    }

    /// An optional list of non-empty strings.
    pub(crate) fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let bad = || self.error(format!("setting `{key}` must be a list of non-empty strings"));
        match self.config.settings.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    /// A string setting that must be one of `choices`, `default` when absent.
    pub(crate) fn one_of(
        &self,
        key: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, ConfigError> {
        match self.opt_str(key)? {
            None => Ok(default),
            Some(v) => choices.iter().find(|c| **c == v).copied().ok_or_else(|| {
                self.error(format!(
                    "setting `{key}` must be one of {} (got `{v}`)",
                    choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                ))
            }),
        }
    }

    /// The secret in the environment variable setting `key` names; required.
    pub(crate) fn secret(&self, key: &str) -> Result<Secret, ConfigError> {
        match self.opt_secret(key)? {
            Some(s) => Ok(s),
            None => Err(self.error(format!(
                "setting `{key}` is required for kind `{}`: it names the environment variable \
                 holding the secret (the secret itself never goes into the config file)",
                self.config.kind
            ))),
        }
    }

    /// The secret in the environment variable setting `key` names, `None` when the setting is
    /// absent; a named variable that is unset or empty is an error naming the variable.
    pub(crate) fn opt_secret(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(var) = self.opt_str(key)? else {
            return Ok(None);
        };
        if !is_env_name(var) {
            // Not echoed: it may be a secret pasted here by mistake.
            return Err(self.error(format!(
                "setting `{key}` must be the NAME of an environment variable (upper-case \
                 letters, digits and `_`), not a secret; its value is not shown"
            )));
        }
        match self.cx.env.secret(var) {
            Some(s) => Ok(Some(s)),
            None => Err(self.error(format!(
                "environment variable `{var}` (named by setting `{key}`) is not set or empty"
            ))),
        }
    }

    /// The `key` URL (`http` or `https`, with a host, no user info, query or fragment), without
    /// a trailing `/`; `default` when absent.
    pub(crate) fn url(&self, key: &str, default: Option<&str>) -> Result<String, ConfigError> {
        let text = match (self.opt_str(key)?, default) {
            (Some(t), _) => t,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(self.error(format!("setting `{key}` is required for kind `{}`", self.config.kind)));
            }
        };
        let url = reqwest::Url::parse(text).map_err(|e| self.error(format!("setting `{key}` is not a URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.error(format!(
                "setting `{key}` must not hold credentials; name an environment variable in the \
                 connector's `*_env` setting instead"
            )));
        }
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.error(format!(
                "setting `{key}` must be an http:// or https:// URL with a host (got `{text}`)"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.error(format!(
                "setting `{key}` must not have a query or fragment (got `{text}`)"
            )));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    /// `timeout_ms`, `retries` and `backoff_ms`, defaults filled in.
    pub(crate) fn call_options(&self) -> Result<CallOptions, ConfigError> {
        let timeout = self.opt_u64("timeout_ms", 1, 600_000)?.unwrap_or(DEFAULT_TIMEOUT_MS);
        let retries = self.opt_u64("retries", 0, 10)?.unwrap_or(DEFAULT_RETRIES);
        let backoff = self.opt_u64("backoff_ms", 0, 60_000)?.unwrap_or(DEFAULT_BACKOFF_MS);
        Ok(CallOptions {
            timeout: Duration::from_millis(timeout),
            retries: u32::try_from(retries).unwrap_or(10),
            backoff: Duration::from_millis(backoff),
        })
    }

    /// The HTTP client for this connector: the registry's shared one, or with `ca_file` set, one
    /// that also trusts the private CA that file holds, and with `client_cert` and `client_key`
    /// (both or neither), one that shows that certificate to a service asking for one (see
    /// [`crate::http::HttpClient`]).
    pub(crate) fn http_client(&self) -> Result<crate::http::TlsClient, ConfigError> {
        let tls = crate::tls_files::TlsFiles::from_settings(self)?;
        self.cx.http.get(self.connector, &tls)
    }

    /// A path setting resolved against the build context's base directory.
    pub(crate) fn opt_path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.opt_str(key)?.map(|p| self.cx.resolve(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        connectors: ConnectorsConfig,
    }

    #[test]
    fn parses_a_toml_section_with_flattened_settings() {
        let text = r#"
            [connectors.inventorySystem]
            kind = "simulator"
            stock = "path/to/stock.json"

            [connectors.stripe]
            kind = "simulator"
        "#;
        let file: File = toml::from_str(text).expect("valid toml");
        let inv = &file.connectors["inventorySystem"];
        assert_eq!(inv.kind, "simulator");
        assert_eq!(
            inv.settings.get("stock").and_then(|v| v.as_str()),
            Some("path/to/stock.json")
        );
        assert!(!inv.settings.contains_key("kind"));
        assert_eq!(file.connectors["stripe"], ConnectorConfig::simulator());
    }

    #[test]
    fn a_section_without_kind_does_not_parse() {
        let r: Result<File, _> = toml::from_str("[connectors.stripe]\nfoo = 1\n");
        assert!(r.is_err());
    }

    #[test]
    fn settings_are_checked_and_paths_resolved() {
        let mut c = ConnectorConfig::simulator();
        assert!(check_settings("stripe", &c, &[]).is_ok());
        c.settings.insert("stok".into(), toml::Value::String("x".into()));
        let e = check_settings("inventorySystem", &c, &["stock"]).err();
        assert!(e.is_some_and(|e| e.connector == "inventorySystem" && e.message.contains("`stok`")));
        let cx = BuildContext {
            base_dir: PathBuf::from("/etc/whenever"),
            ..BuildContext::default()
        };
        assert_eq!(cx.resolve("s.json"), PathBuf::from("/etc/whenever/s.json"));
        assert_eq!(cx.resolve("/abs/s.json"), PathBuf::from("/abs/s.json"));
        assert_eq!(BuildContext::default().resolve("s.json"), PathBuf::from("s.json"));
    }

    #[test]
    fn unknown_kind_names_connector_and_kind() {
        let e = unknown_kind("stripe", "smtp", &[SIMULATOR, STRIPE, HTTP]);
        assert_eq!(e.connector, "stripe");
        assert!(e.message.contains("`smtp`") && e.message.contains("stripe"));
        assert!(e.message.contains("simulator, stripe, http"), "{}", e.message);
    }
}
