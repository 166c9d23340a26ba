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
