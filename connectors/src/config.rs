//! Configuration: which implementation (`kind`) each connector uses and its settings.
//!
//! The host parses the `[connectors.<name>]` sections of its config file into a
//! [`ConnectorsConfig`]; connectors it does not name run as their simulators.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Effects, Outbox};

/// Connector configurations by connector name (`stripe`, `inventorySystem`, ...).
pub type ConnectorsConfig = BTreeMap<String, ConnectorConfig>;

/// The `kind` that selects a connector's deterministic simulator.
pub const SIMULATOR: &str = "simulator";

/// Every `kind` this build knows (real implementations add theirs here).
pub const KINDS: &[&str] = &[SIMULATOR];

/// One connector's section: its implementation kind and the kind's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Which implementation: `"simulator"` for now.
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

/// What connector constructors share: where effects and sent messages are recorded, and the
/// directory relative setting paths (e.g. a stock file) are resolved against.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Where messaging connectors record what they sent.
    pub outbox: Outbox,
    /// Where connectors record the side effects they performed.
    pub effects: Effects,
    /// The directory relative paths in settings are relative to (empty: the current directory).
    pub base_dir: PathBuf,
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

/// The error for a `kind` no implementation of `connector` answers to.
pub(crate) fn unknown_kind(connector: &str, kind: &str) -> ConfigError {
    ConfigError::new(
        connector,
        format!(
            "unknown kind `{kind}` for connector `{connector}` (known kinds: {})",
            KINDS.join(", ")
        ),
    )
}

/// Rejects settings other than `allowed`, so a typo does not silently fall back to a default.
pub(crate) fn check_settings(
    connector: &str,
    config: &ConnectorConfig,
    allowed: &[&str],
) -> Result<(), ConfigError> {
    match config
        .settings
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
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
        c.settings
            .insert("stok".into(), toml::Value::String("x".into()));
        let e = check_settings("inventorySystem", &c, &["stock"]).err();
        assert!(
            e.is_some_and(|e| e.connector == "inventorySystem" && e.message.contains("`stok`"))
        );
        let cx = BuildContext {
            base_dir: PathBuf::from("/etc/whenever"),
            ..BuildContext::default()
        };
        assert_eq!(cx.resolve("s.json"), PathBuf::from("/etc/whenever/s.json"));
        assert_eq!(cx.resolve("/abs/s.json"), PathBuf::from("/abs/s.json"));
        assert_eq!(
            BuildContext::default().resolve("s.json"),
            PathBuf::from("s.json")
        );
    }

    #[test]
    fn unknown_kind_names_connector_and_kind() {
        let e = unknown_kind("stripe", "http");
        assert_eq!(e.connector, "stripe");
        assert!(e.message.contains("`http`") && e.message.contains("stripe"));
    }
}
