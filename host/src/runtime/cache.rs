//! The on-disk cache of compiled components, keyed by the component's hash and the engine's
//! compatibility hash, so a restart does not recompile. Only files this host wrote are loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The cached component for `digest`, if this host compiled it before.
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path_for(digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file is named by the source's SHA-256 and this engine's compatibility hash
        // and was written by `store` below from `Component::serialize`; nothing else writes there.
        unsafe { Component::deserialize_file(engine, &path) }.ok()
    }

    /// Stores a freshly compiled component (atomically: a temp file made durable, then renamed,
    /// so a power cut leaves the whole file or none). A temp file a failure left (a full disk)
    /// is removed: its name holds the process id, so none would ever be written over.
    pub(crate) fn store(&self, digest: &str, component: &Component) {
        let Ok(bytes) = component.serialize() else { return };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let path = self.path_for(digest);
        let tmp = self.dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&tmp).and_then(|mut file| {
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()
        });
        if written.and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The cache folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The hex SHA-256 of a component's bytes: the compile cache's key, and with the manifest the
/// step's version ([`super::version_id`]).
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
