//! Watching steps folders (`whenever serve --steps DIR`, or one `--steps NAME.wasm`): every
//! interval the folders are read again, and a `NAME.wasm` that appeared, or whose bytes or
//! `NAME.toml` manifest changed, is deployed live through [`Service::deploy_step`] once it has
//! stayed unchanged for one interval (so a file caught half-written is not deployed). An invalid
//! component or manifest is reported on stderr and the version that served keeps serving; the
//! file is tried again when it changes.
//! Removing a file removes nothing: a step is taken away with `DELETE /v1/steps/{name}`.
//!
//! Polling keeps this free of platform file-notification machinery; a folder of a few dozen
//! steps costs a few `stat` calls a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::steps::read_source;
use super::{Service, ServiceError};
use crate::catalog::step_files;
use crate::file_stamp::{FileStamp, file_stamp};
use crate::store::StoreError;

/// What a step's files looked like at one poll: the stamps of the component and its manifest.
type Signature = (Option<FileStamp>, Option<FileStamp>);

/// The `NAME.wasm` files of the folders (or the files themselves), with their signatures.
fn scan(dirs: &[PathBuf]) -> BTreeMap<PathBuf, Signature> {
    let mut found = BTreeMap::new();
    for dir in dirs {
        for path in step_files(dir).unwrap_or_default() {
            let signature = (file_stamp(&path), file_stamp(&path.with_extension("toml")));
            found.insert(path, signature);
        }
    }
    found
}

/// What the steps folders held at one moment. `whenever serve` takes it before the service
/// deploys the folders at start, so that a file written while the service starts (a build that
/// ends then) counts as changed and is deployed, rather than taken for what start deployed.
#[derive(Debug, Clone, Default)]
pub struct StepsSeen(BTreeMap<PathBuf, Signature>);

impl StepsSeen {
    /// The folders' `NAME.wasm` files (or the files themselves) and their manifests, now.
    pub fn now(dirs: &[PathBuf]) -> StepsSeen {
        StepsSeen(scan(dirs))
    }
}

/// The watcher's memory between polls.
#[derive(Debug, Default)]
struct Watcher {
    /// The signature each file had when it was last dealt with (deployed, found unchanged, or
    /// refused).
    handled: BTreeMap<PathBuf, Signature>,
    /// Changed files waiting to be stable for one interval, with the signature last seen.
    pending: BTreeMap<PathBuf, Signature>,
    /// Files the store could not take, with the signature they had then, how many times in a
    /// row and when to try again: twice as long after each failure, up to [`MAX_RETRY_DELAY`]
    /// (each try compiles the component again, and a full disk may stay full for a while). A
    /// file changed since starts afresh.
    retry: BTreeMap<PathBuf, (Signature, u32, std::time::Instant)>,
}

/// The longest a watched file the store could not take waits before it is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

impl Watcher {
    /// Whether `path` (now `signature`) waits out its delay after the store could not take it.
    fn backing_off(&mut self, path: &Path, signature: Signature) -> bool {
        match self.retry.get(path) {
            Some((failed, _, at)) if *failed == signature => std::time::Instant::now() < *at,
            Some(_) => {
                self.retry.remove(path);
                false
            }
            None => false,
        }
    }

    /// Notes that the store could not take `path` (at `signature`): tried again after a delay.
    fn store_failed(&mut self, path: PathBuf, signature: Signature) {
        let failures = self.retry.get(&path).map_or(0, |(_, n, _)| *n) + 1;
        let delay = Duration::from_secs(1 << failures.min(6)).min(MAX_RETRY_DELAY);
        self.retry
            .insert(path, (signature, failures, std::time::Instant::now() + delay));
    }

    /// The files to deploy now: changed since they were handled and unchanged since last poll.
    fn due(&mut self, now: BTreeMap<PathBuf, Signature>) -> Vec<(PathBuf, Signature)> {
        let mut due = Vec::new();
        self.pending.retain(|path, _| now.contains_key(path));
        for (path, signature) in now {
            if self.handled.get(&path) == Some(&signature) {
                self.pending.remove(&path);
                continue;
            }
            match self.pending.insert(path.clone(), signature) {
                Some(previous) if previous == signature => {
                    self.pending.remove(&path);
                    due.push((path, signature));
                }
                _ => {}
            }
        }
        due
    }
}

impl Service {
    /// Watches `dirs` every `interval` and deploys new or changed steps live (see the module
    /// docs). The files as `seen` holds them count as deployed: take it before the start-up
    /// deploy ([`StepsSeen::now`]). Runs until the task is aborted.
    pub fn watch_steps(&self, dirs: Vec<PathBuf>, interval: Duration, seen: StepsSeen) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        self.spawn(async move {
            let mut watcher = Watcher {
                handled: seen.0,
                pending: BTreeMap::new(),
                retry: BTreeMap::new(),
            };
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let scan_dirs = dirs.clone();
                let Ok(now) = tokio::task::spawn_blocking(move || scan(&scan_dirs)).await else {
                    continue;
                };
                // A file gone is tried afresh if it comes back.
                watcher.retry.retain(|path, _| now.contains_key(path));
                for (path, signature) in watcher.due(now) {
                    if watcher.backing_off(&path, signature) {
                        continue;
                    }
                    // A file the store could not take now (a full disk, a busy database) is
                    // tried again; any other outcome stands until the file changes.
                    if service.deploy_file(&path).await {
                        watcher.retry.remove(&path);
                        watcher.handled.insert(path, signature);
                    } else {
                        watcher.store_failed(path, signature);
                    }
                }
            }
        })
    }

    /// Deploys one `NAME.wasm` (with its manifest) unless that exact version and manifest
    /// already serve; reports the outcome on stderr. False when the store could not take it now
    /// ([`StoreError::Unavailable`]), to be tried again.
    async fn deploy_file(&self, path: &Path) -> bool {
        let read_path = path.to_path_buf();
        let source = match tokio::task::spawn_blocking(move || read_source(&read_path)).await {
            Ok(Ok(source)) => source,
            Ok(Err(e)) => {
                let name = crate::catalog::step_name(path);
                eprintln!("{}", refusal(path, &name, self.serving_version(&name).as_deref(), &e));
                return true;
            }
            Err(e) => {
                eprintln!("whenever serve: {}: {e}", path.display());
                return true;
            }
        };
        let name = source.name.clone();
        let serving = self.inner.scheduler.catalog().get(&name);
        if serving
            .as_ref()
            .is_some_and(|step| step.version == crate::runtime::version_of(&source.bytes, &source.manifest))
        {
            return true;
        }
        let by = format!("the watched file {}", path.display());
        let deployed = match self.check_grants(&source) {
            Ok(()) => self.deploy_step(&name, source.bytes, source.manifest, Some(&by)).await,
            Err(e) => Err(e),
        };
        let serving = serving.as_ref().map(|step| step.version.as_str());
        match deployed {
            Ok(step) => {
                eprintln!(
                    "whenever serve: deployed {name} version {} from {}",
                    step.version,
                    path.display()
                );
                true
            }
            Err(ServiceError::Store(e @ StoreError::Unavailable(_))) => {
                let error = format!("{e} (tried again, less often while it fails)");
                eprintln!("{}", refusal(path, &name, serving, &error));
                false
            }
            Err(e) => {
                eprintln!("{}", refusal(path, &name, serving, &e));
                true
            }
        }
    }
}

/// What stderr says of a step file refused, by the watcher or at start: what serves meanwhile,
/// then the error, last because it may span lines (a manifest's TOML error shows the line and a
/// caret).
pub(super) fn refusal(path: &Path, name: &str, serving: Option<&str>, error: &dyn std::fmt::Display) -> String {
    let meanwhile = match serving {
        Some(version) => format!("{name} keeps serving version {version}"),
        None => format!("no version of {name} serves"),
    };
    // A TOML error ends with a newline of its own.
    let error = error.to_string();
    format!(
        "whenever serve: {} refused ({meanwhile}): {}",
        path.display(),
        error.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u64) -> Signature {
        (Some((std::time::SystemTime::UNIX_EPOCH, n)), None)
    }

    #[test]
    fn a_refusal_says_what_serves_meanwhile_then_the_error() {
        let path = Path::new("/steps/discount.wasm");
        let toml = "invalid step manifest: TOML parse error at line 1\n  |\n1 | connectors = [\n";
        assert_eq!(
            refusal(path, "discount", Some("bf89292d3ebf"), &toml),
            format!(
                "whenever serve: /steps/discount.wasm refused (discount keeps serving version bf89292d3ebf): {}",
                toml.trim_end()
            )
        );
        assert_eq!(
            refusal(path, "discount", None, &"not a valid WebAssembly component"),
            "whenever serve: /steps/discount.wasm refused (no version of discount serves): not a valid WebAssembly component"
        );
    }

    #[test]
    fn a_change_is_due_once_it_has_been_stable_for_one_poll() {
        let path = PathBuf::from("a.wasm");
        let mut watcher = Watcher::default();
        watcher.handled.insert(path.clone(), sig(1));
        assert!(
            watcher.due(BTreeMap::from([(path.clone(), sig(1))])).is_empty(),
            "unchanged"
        );
        assert!(
            watcher.due(BTreeMap::from([(path.clone(), sig(2))])).is_empty(),
            "changed: wait a poll"
        );
        assert!(
            watcher.due(BTreeMap::from([(path.clone(), sig(3))])).is_empty(),
            "still being written"
        );
        assert_eq!(
            watcher.due(BTreeMap::from([(path.clone(), sig(3))])),
            vec![(path.clone(), sig(3))]
        );
        watcher.handled.insert(path.clone(), sig(3));
        assert!(
            watcher.due(BTreeMap::from([(path.clone(), sig(3))])).is_empty(),
            "dealt with"
        );
        // A new file is due after one stable poll too; a vanished one is forgotten.
        let new = PathBuf::from("b.wasm");
        assert!(watcher.due(BTreeMap::from([(new.clone(), sig(1))])).is_empty());
        assert_eq!(
            watcher.due(BTreeMap::from([(new.clone(), sig(1))])),
            vec![(new, sig(1))]
        );
        assert!(watcher.due(BTreeMap::new()).is_empty());
        assert!(watcher.pending.is_empty());
    }
}
