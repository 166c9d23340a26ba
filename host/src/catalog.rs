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
    /// A `--steps` path that is neither a folder nor a component.
    #[error("{path} is neither a folder of steps nor a component (NAME.wasm)")]
    NotSteps {
        /// The path.
        path: PathBuf,
    },
    /// A folder given to run steps from holds none.
    #[error("{path} holds no steps: no NAME.wasm in it")]
    NoSteps {
        /// The folder.
        path: PathBuf,
    },
    /// A component or its manifest was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The components at `path`: a folder's `NAME.wasm` files in name order, or `path` itself when
/// it names one `NAME.wasm` (a step's build output, run or watched where it is built; one not
/// there yet is reported when it is read, and a watcher deploys it once it appears).
pub fn step_files(path: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let is_component = |path: &Path| path.extension().is_some_and(|ext| ext == "wasm");
    if is_component(path) && !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if path.is_file() {
        return Err(CatalogError::NotSteps {
            path: path.to_path_buf(),
        });
    }
    files_in(path, "wasm").map_err(|e| CatalogError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The files of the folder `dir` whose extension is `extension`, in name order.
fn files_in(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    Ok(files)
}

/// The name of the step a `NAME.wasm` file (or its `NAME.toml`) is: the file's stem.
pub fn step_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What `run` and `serve` warn of in the steps folders `paths`: each `.toml` file that no
/// `NAME.wasm` beside it takes as its manifest (`step.toml`, say). It is read by nothing, and a
/// step meant to have it runs without its grants and limits. Beside a `NAME.wasm` that `paths`
/// names, whose folder holds other files too (a crate's `Cargo.toml`), only a manifest named
/// nearly as it (`fraud_check.toml` beside `fraud-check.wasm`) is warned of.
pub fn stray_manifest_warnings(paths: &[PathBuf]) -> Vec<String> {
    let manifests = paths.iter().flat_map(|path| files_in(path, "toml").unwrap_or_default());
    // A link to a build not made yet is a component all the same.
    let stray = manifests.filter(|manifest| manifest.with_extension("wasm").symlink_metadata().is_err());
    let mut warnings: Vec<String> = stray
        .map(|manifest| {
            format!(
                "{} is no step's manifest, and is not read: a step's manifest is NAME.toml beside \
                 its NAME.wasm, and there is no {}.wasm",
                manifest.display(),
                step_name(&manifest)
            )
        })
        .collect();
    for component in paths.iter().filter(|path| !path.is_dir()) {
        warnings.extend(near_miss_manifest(component));
    }
    warnings
}

/// A manifest beside the component `NAME.wasm` named nearly as its own (`_` for `-`, another
/// case) when its own `NAME.toml` is not there: a misnamed manifest, which nothing reads.
fn near_miss_manifest(component: &Path) -> Option<String> {
    if component.with_extension("toml").exists() {
        return None;
    }
    let folder = match component.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let looks = |name: &str| name.to_lowercase().replace('_', "-");
    let name = step_name(component);
    let near = files_in(folder, "toml")
        .unwrap_or_default()
        .into_iter()
        .find(|manifest| looks(&step_name(manifest)) == looks(&name))?;
    Some(format!(
        "{} is not read as the manifest of {}: its manifest is {name}.toml, so the step runs with \
         no connectors granted and the default limits",
        near.display(),
        component.display()
    ))
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

/// A component's bytes; a link to a build's output not made yet (as `whenever new` links it) says
/// so.
pub fn read_component(path: &Path) -> Result<Vec<u8>, CatalogError> {
    std::fs::read(path).map_err(|e| CatalogError::Io {
        path: path.to_path_buf(),
        message: match std::fs::read_link(path) {
            Ok(target) if e.kind() == std::io::ErrorKind::NotFound => {
                format!(
                    "it links to {}, which does not exist (not built yet? `cargo build --release --target \
                     wasm32-wasip2` builds it there)",
                    target.display()
                )
            }
            _ => e.to_string(),
        },
    })
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
    let bytes = read_component(path)?;
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

    /// Deploys (or replaces) a step; runs in flight keep the version they started with. What
    /// the host's config withholds from it is logged, as the version starts to serve.
    pub fn insert(&self, step: LoadedStep) -> Option<Arc<LoadedStep>> {
        if !step.withheld.is_empty() {
            eprintln!(
                "whenever: step {} version {}: the host's config withholds {}",
                step.name, step.version, step.withheld
            );
        }
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

    /// Loads the steps at `path` (see [`step_files`]), each `NAME.wasm` with `NAME.toml` beside it
    /// as its manifest (none: no grants and default limits); returns how many.
    pub async fn load_path(&self, runtime: &Runtime, path: &Path) -> Result<usize, CatalogError> {
        let files = step_files(path)?;
        for file in &files {
            self.load_file(runtime, file).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_a_folders_components_in_name_order_or_one_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["b.wasm", "a.wasm", "a.toml", "notes.txt"] {
            std::fs::write(dir.path().join(file), b"").expect("write");
        }
        let found = step_files(dir.path()).expect("a folder");
        assert_eq!(found, vec![dir.path().join("a.wasm"), dir.path().join("b.wasm")]);
        let one = dir.path().join("b.wasm");
        assert_eq!(step_files(&one).expect("a component"), vec![one.clone()]);
        // One not built yet is named all the same: reading it says what is missing.
        let later = dir.path().join("later.wasm");
        assert_eq!(step_files(&later).expect("a component to come"), vec![later.clone()]);

        let notes = dir.path().join("notes.txt");
        let refused = step_files(&notes).expect_err("not a component");
        assert!(
            matches!(refused, CatalogError::NotSteps { ref path } if *path == notes),
            "{refused}"
        );
        let missing = dir.path().join("missing");
        let refused = step_files(&missing).expect_err("no such folder");
        assert!(
            refused
                .to_string()
                .starts_with(&format!("cannot read {}: ", missing.display())),
            "{refused}"
        );
    }

    #[test]
    fn a_manifest_beside_no_component_is_stray() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["ops.wasm", "ops.toml", "step.toml", "later.toml", "notes.txt"] {
            std::fs::write(dir.path().join(file), b"").expect("write");
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink("../target/later.wasm", dir.path().join("later.wasm")).expect("symlink");
        let warnings = stray_manifest_warnings(&[dir.path().to_path_buf()]);
        #[cfg(unix)]
        assert_eq!(warnings.len(), 1, "a link not built yet has its manifest: {warnings:?}");
        assert!(
            warnings[0].starts_with(&format!(
                "{} is no step's manifest",
                dir.path().join("step.toml").display()
            )) && warnings[0]
                .ends_with("a step's manifest is NAME.toml beside its NAME.wasm, and there is no step.wasm"),
            "{warnings:?}"
        );
        assert!(
            stray_manifest_warnings(&[dir.path().join("ops.wasm")]).is_empty(),
            "one component: its folder's other files are not looked at"
        );
        // One whose manifest is misnamed is warned of, naming the name it needs.
        std::fs::write(dir.path().join("fraud-check.wasm"), b"").expect("write");
        std::fs::write(dir.path().join("fraud_check.toml"), b"").expect("write");
        let warnings = stray_manifest_warnings(&[dir.path().join("fraud-check.wasm")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("fraud_check.toml is not read as the manifest of")
                && warnings[0].contains("its manifest is fraud-check.toml"),
            "{warnings:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_build_not_made_yet_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("my-step.wasm");
        std::os::unix::fs::symlink("../target/my_step.wasm", &link).expect("symlink");
        let refused = read_step_file(&link).expect_err("nothing to read");
        assert_eq!(
            refused.to_string(),
            format!(
                "cannot read {}: it links to ../target/my_step.wasm, which does not exist (not built yet? \
                 `cargo build --release --target wasm32-wasip2` builds it there)",
                link.display()
            )
        );
    }
}
