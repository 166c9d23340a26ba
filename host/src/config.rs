//! The host's configuration file (TOML): connectors, scheduler and runtime settings.
//!
//! ```toml
//! [connectors.inventorySystem]
//! kind = "simulator"
//! stock = "path/to/stock.json"
//!
//! [scheduler]
//! run_cap = 100
//!
//! [runtime]
//! cache_dir = "/var/cache/whenever"
//!
//! [server]                      # `whenever serve`
//! max_body_bytes = 1048576      # larger request bodies get 413
//! max_component_bytes = 67108864
//!
//! [store]
//! synchronous = "full"          # or "normal": survives kill -9, not a power cut
//!
//! [hooks.shopify]               # POST /v1/hooks/shopify must be signed:
//! secret_env = "SHOPIFY_HOOK_SECRET"   # X-Whenever-Signature: sha256=HEX(HMAC-SHA256(secret, body))
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use whenever_connectors::ConnectorsConfig;

/// The configuration could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS's explanation.
        message: String,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Scheduler settings from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Runs of one step on one task before the task is stopped as runaway.
    pub run_cap: Option<u32>,
}

/// Runtime settings from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Where compiled components are cached.
    pub cache_dir: Option<PathBuf>,
}

/// Settings of the HTTP server (`whenever serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Largest request body accepted (tasks, patches, webhooks); larger gets 413.
    pub max_body_bytes: usize,
    /// Largest component accepted by `PUT /v1/steps/{name}`.
    pub max_component_bytes: usize,
    /// How many tasks are driven at once.
    pub max_concurrent_tasks: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { max_body_bytes: 1 << 20, max_component_bytes: 64 << 20, max_concurrent_tasks: 512 }
    }
}

/// Settings of the embedded store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// How hard SQLite syncs (`full`, the default, or `normal`).
    pub synchronous: crate::store::sqlite::Synchronous,
}

/// One webhook's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSection {
    /// The environment variable holding the HMAC-SHA256 secret; when set, deliveries must carry
    /// a valid `X-Whenever-Signature: sha256=HEX` header.
    pub secret_env: Option<String>,
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connectors by name; a connector not named here is its simulator.
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    /// Scheduler settings.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Store settings.
    #[serde(default)]
    pub store: StoreSection,
    /// Webhooks by name.
    #[serde(default)]
    pub hooks: std::collections::BTreeMap<String, HookSection>,
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), message: e.to_string() })?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(config)
    }
}
