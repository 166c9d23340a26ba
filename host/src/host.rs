//! The host assembled: runtime, deployed steps, connectors and scheduler, from options and the
//! config file. The CLI commands, the demo and the tests all start here.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use whenever_connectors::Registry;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, ConfigError};
use crate::runtime::{LoadError, Runtime, RuntimeConfig, RuntimeError};
use crate::scheduler::Scheduler;

/// What to assemble a host from.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Folders of steps (`NAME.wasm` + `NAME.toml`), or single `NAME.wasm` files; a folder with
    /// no step in it is refused. Empty: the bundled RetailMax steps.
    pub steps: Vec<PathBuf>,
    /// The bundled RetailMax steps as well as `steps` (loaded first, so a step of the same name
    /// in `steps` replaces the bundled one): a step tried beside the flow it joins.
    pub with_bundled: bool,
    /// The config file.
    pub config: Option<PathBuf>,
    /// Start with no steps at all (tests and services that deploy later).
    pub no_steps: bool,
}

/// The host could not be assembled.
#[derive(Debug, Error)]
pub enum SetupError {
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The wasm engine could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A step could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A step's manifest was refused (a grant of a connector this host lacks).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A connector's configuration is invalid.
    #[error(transparent)]
    Connectors(#[from] whenever_connectors::ConfigError),
}

impl SetupError {
    /// Whether the error is the user's input (exit 2) rather than the host's (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, SetupError::Runtime(_))
    }
}

/// A running host: the scheduler and what it was built from.
#[derive(Debug, Clone)]
pub struct Host {
    /// The scheduler (with the runtime, catalog and connectors inside).
    pub scheduler: Scheduler,
    /// The configuration it was built from.
    pub config: Config,
}

impl Host {
    /// Reads the config, starts the runtime, loads the steps and the connectors.
    pub async fn start(options: &HostOptions) -> Result<Host, SetupError> {
        let config = match &options.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let mut runtime_config = RuntimeConfig::default();
        if let Some(dir) = &config.runtime.cache_dir {
            runtime_config.cache_dir = Some(dir.clone());
        }
        if let Some(instances) = config.runtime.max_instances {
            runtime_config.max_instances = instances.get();
            runtime_config.fit_to_address_space = false;
        }
        runtime_config.max_limits = config.runtime.max_limits;
        runtime_config
            .max_limits
            .validate()
            .map_err(|message| ConfigError::Invalid {
                path: options.config.clone().unwrap_or_default(),
                message,
            })?;
        runtime_config.capabilities = config.capabilities().map_err(|message| ConfigError::Invalid {
            path: options.config.clone().unwrap_or_default(),
            message,
        })?;
        let runtime = Arc::new(Runtime::new(runtime_config)?);
        let catalog = Catalog::new();
        if !options.no_steps {
            if options.steps.is_empty() || options.with_bundled {
                catalog.load_bundled(&runtime).await?;
            }
            for path in &options.steps {
                if catalog.load_path(&runtime, path).await? == 0 {
                    return Err(CatalogError::NoSteps { path: path.clone() }.into());
                }
            }
        }
        // Relative paths in connector settings (a stock file) are relative to the config file.
        let base = options
            .config
            .as_deref()
            .and_then(|p| p.parent())
            .map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(std::path::Path::new("."));
        let connectors = Registry::from_config_in(&config.connectors, base)?;
        for step in catalog.snapshot() {
            step.manifest.check_connectors(&step.name, &connectors)?;
        }
        let settings = config.scheduler.settings().map_err(|message| ConfigError::Invalid {
            path: options.config.clone().unwrap_or_default(),
            message,
        })?;
        let scheduler = Scheduler::new(runtime, catalog, connectors, settings);
        Ok(Host { scheduler, config })
    }
}
