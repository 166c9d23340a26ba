//! The deployed steps: a name → current version map, swapped atomically on deploy, and loading
//! steps from folders (`NAME.wasm` + `NAME.toml`) or from the bundled RetailMax set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use thiserror::Error;

use crate::runtime::{LoadError, LoadedStep, Runtime, StepManifest};

/// Steps could not be loaded from a folder.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The folder or a file in it could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS's explanation.
        message: String,
    },
    /// A component or its manifest was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A step as read from a folder: `NAME.wasm` with the manifest `NAME.toml` beside it.
#[derive(Debug, Clone)]
pub struct StepFile {
    /// The step's name (the file's stem).
    pub name: String,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Its manifest (none beside it: no grants, default limits).
    pub manifest: StepManifest,
}

/// Reads `NAME.wasm` and the manifest `NAME.toml` beside it, if any (not yet validated as a
/// component: loading does that).
pub fn read_step_file(path: &Path) -> Result<StepFile, CatalogError> {
    let io = |path: &Path, e: std::io::Error| CatalogError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let manifest_path = path.with_extension("toml");
    let manifest = if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| io(&manifest_path, e))?;
        StepManifest::from_toml(&text).map_err(|e| LoadError::Manifest {
            step: name.clone(),
            message: format!("{}: {e}", manifest_path.display()),
        })?
    } else {
        StepManifest::default()
    };
    Ok(StepFile { name, bytes, manifest })
}

/// The steps currently deployed, by name. Cloning shares the same set.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    steps: Arc<RwLock<BTreeMap<String, Arc<LoadedStep>>>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Deploys (or replaces) a step; runs in flight keep the version they started with.
    pub fn insert(&self, step: LoadedStep) -> Option<Arc<LoadedStep>> {
        let mut steps = self.steps.write().unwrap_or_else(|p| p.into_inner());
        steps.insert(step.name.clone(), Arc::new(step))
    }

    /// Removes a step.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedStep>> {
        let mut steps = self.steps.write().unwrap_or_else(|p| p.into_inner());
        steps.remove(name)
    }

    /// The current version of every step, in name order.
    pub fn snapshot(&self) -> Vec<Arc<LoadedStep>> {
        let steps = self.steps.read().unwrap_or_else(|p| p.into_inner());
        steps.values().cloned().collect()
    }

    /// The current version of one step.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedStep>> {
        let steps = self.steps.read().unwrap_or_else(|p| p.into_inner());
        steps.get(name).cloned()
    }

    /// How many steps are deployed.
    pub fn len(&self) -> usize {
        self.steps.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no step is deployed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the RetailMax steps compiled into this binary.
    pub async fn load_bundled(&self, runtime: &Runtime) -> Result<(), CatalogError> {
        for bundled in whenever_step_artifacts::RETAILMAX {
            let manifest = StepManifest::from_toml(bundled.manifest).map_err(|e| LoadError::Manifest {
                step: bundled.name.to_string(),
                message: e.to_string(),
            })?;
            self.insert(runtime.load(bundled.name, bundled.component, manifest).await?);
        }
        Ok(())
    }

    /// Loads every `NAME.wasm` in `dir`, with `NAME.toml` beside it as its manifest (none: no
    /// grants and default limits).
    pub async fn load_dir(&self, runtime: &Runtime, dir: &Path) -> Result<usize, CatalogError> {
        let io = |path: &Path, e: std::io::Error| CatalogError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        files.sort();
        for path in &files {
            self.load_file(runtime, path).await?;
        }
        Ok(files.len())
    }

    /// Loads one `NAME.wasm` (and its `NAME.toml`, if any).
    pub async fn load_file(&self, runtime: &Runtime, path: &Path) -> Result<Arc<LoadedStep>, CatalogError> {
        let StepFile { name, bytes, manifest } = read_step_file(path)?;
        let step = runtime.load(&name, &bytes, manifest).await?;
        self.insert(step);
        self.get(&name).ok_or_else(|| CatalogError::Io {
            path: path.to_path_buf(),
            message: "vanished".into(),
        })
    }
}
