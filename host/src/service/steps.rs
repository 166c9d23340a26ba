//! Steps in the service: every deployed version persists in the store with its component and
//! manifest; the store says which version serves. A deploy validates and compiles first, so an
//! invalid component changes nothing; a good one is stored, swapped into the catalog atomically
//! (runs in flight keep their version) and the waiting and failed tasks are re-evaluated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Resume, Service, ServiceError};
use crate::catalog::{CatalogError, read_step_file, step_files};
use crate::runtime::{LoadError, LoadedStep, StepLimits, StepManifest, Withheld};
use crate::scheduler::rules;
pub use crate::scheduler::rules::StepStanding;
use crate::store::{StepChange, StepVersion, StepVersionInfo, StoreError};
use crate::task::TaskStatus;

/// A step as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    /// The step's name.
    pub name: String,
    /// The serving version.
    pub version: String,
    /// The component's SHA-256.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// The connectors it is granted (its manifest's, narrowed by the host's config).
    pub connectors: Vec<String>,
    /// The hosts it may reach through `http` connectors (likewise narrowed).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// What its manifest asks for that the host's config withholds.
    #[serde(default, skip_serializing_if = "Withheld::is_empty")]
    pub withheld: Withheld,
    /// The limits each run is held to (its manifest's `[limits]`, the defaults where it names
    /// none): a change of them alone is a version too, and shown here.
    #[serde(default)]
    pub limits: StepLimits,
    /// Its condition (the JSON pattern).
    pub condition: serde_json::Value,
    /// The data paths it is given (its manifest's `reads` and its condition's paths, sorted);
    /// absent: the whole task data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
    /// When the serving version was first deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
    /// Who first deployed the serving version (an API token's name, a watched file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// Every stored version, oldest first.
    pub versions: Vec<StepVersionInfo>,
}

/// Where every serving step stands on one task (`GET /v1/tasks/{id}/conditions`): what a waiting
/// task waits on, told step by step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskConditions {
    /// The task's id.
    pub id: String,
    /// Its status.
    pub status: TaskStatus,
    /// The revision its data was read at.
    pub revision: u64,
    /// Each serving step, by name.
    pub steps: Vec<StepStanding>,
}

/// A step to deploy from a folder or the bundled set: its name, component and manifest, and
/// the file it came from (none: bundled).
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifest: StepManifest,
    pub(crate) path: Option<PathBuf>,
}

/// A step file found at start: read, or refused (the file, and why).
pub(crate) type Found = Result<Source, (PathBuf, ServiceError)>;

/// The start-up steps, compiled and not yet stored ([`Service::compile_sources`]), and the files
/// refused, told once the others are stored (a refusal names the version serving then).
#[derive(Default)]
pub(crate) struct Compiled {
    steps: Vec<(LoadedStep, Source)>,
    refused: Vec<(PathBuf, String, ServiceError)>,
}

impl Compiled {
    /// The names of the steps compiled.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.steps.iter().map(|(_, source)| source.name.as_str()).collect()
    }
}

/// The steps to deploy at start: the folders' `NAME.wasm` (+ `NAME.toml`), each read or refused
/// on its own, after the bundled set when there are no folders or `with_bundled` asks for it. A
/// folder that cannot be read is an error.
pub(crate) fn sources(dirs: &[PathBuf], with_bundled: bool) -> Result<Vec<Found>, ServiceError> {
    let manifest_error = |step: &str, message: String| LoadError::Manifest {
        step: step.to_string(),
        message,
    };
    let mut sources = Vec::new();
    if dirs.is_empty() || with_bundled {
        for bundled in whenever_step_artifacts::RETAILMAX {
            let manifest =
                StepManifest::from_toml(bundled.manifest).map_err(|e| manifest_error(bundled.name, e.to_string()))?;
            sources.push(Ok(Source {
                name: bundled.name.to_string(),
                bytes: bundled.component.to_vec(),
                manifest,
                path: None,
            }));
        }
    }
    for dir in dirs {
        let files = step_files(dir).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        sources.extend(files.into_iter().map(|path| read_source(&path).map_err(|e| (path, e))));
    }
    Ok(sources)
}

/// Reads `NAME.wasm` and the manifest `NAME.toml` beside it (none: no grants, default limits).
pub(crate) fn read_source(path: &Path) -> Result<Source, ServiceError> {
    let file = read_step_file(path).map_err(|e| match e {
        CatalogError::Load(e) => e.into(),
        other => ServiceError::Invalid(other.to_string()),
    })?;
    Ok(Source {
        name: file.name,
        bytes: file.bytes,
        manifest: file.manifest,
        path: Some(path.to_path_buf()),
    })
}

/// The fewest characters of a version id a rollback takes for the whole id.
const SHORTEST_PREFIX: usize = 4;

/// Who deployed the versions `whenever serve` finds in its steps folders (or bundled) at start.
const AT_START: &str = "whenever serve, at start";

impl Service {
    /// Compiles the start-up steps the store has not seen (new or changed files, a changed
    /// manifest included), to be stored by [`Service::store_compiled`]; a version the store
    /// knows with the same manifest keeps whatever the store says (a later deploy, rollback or
    /// removal over HTTP stands). A file that cannot be read, or whose component or manifest is
    /// invalid, is refused on stderr as the watcher refuses it, and the start goes on: a restart
    /// after a crash is not held up by a file half-edited, and the version the store serves
    /// keeps serving. Compiled first and stored after: a cluster host registers the format it
    /// writes in between ([`Service::begin_claiming`]).
    pub(crate) async fn compile_sources(&self, sources: Vec<Found>) -> Result<Compiled, ServiceError> {
        // What each stored version is: its component and its id.
        let known: Vec<(String, String, String)> = self
            .inner
            .store
            .step_versions(None)
            .await?
            .into_iter()
            .map(|v| (v.name, v.digest, v.version))
            .collect();
        let mut compiled = Compiled::default();
        for found in sources {
            let source = match found {
                Ok(source) => source,
                Err((path, e)) => {
                    let name = crate::catalog::step_name(&path);
                    compiled.refused.push((path, name, e));
                    continue;
                }
            };
            let digest = crate::runtime::digest(&source.bytes);
            let version = crate::runtime::version_id(&digest, &source.manifest);
            // A version id names its manifest; one an earlier host stored is the component's
            // alone (its digest's first 12 digits), and its manifest is read to compare.
            let mut stored_alike = known.iter().any(|(name, _, v)| *name == source.name && *v == version);
            let earlier = known
                .iter()
                .filter(|(name, d, v)| *name == source.name && *d == digest && v.as_str() == &digest[..12]);
            for (_, _, earlier) in earlier {
                let stored = self.inner.store.step_version(&source.name, earlier).await?;
                stored_alike |= stored.is_some_and(|stored| stored.manifest == source.manifest);
            }
            if stored_alike {
                continue;
            }
            let compiled_step = match self.check_grants(&source) {
                Ok(()) => self.compile(&source.name, &source.bytes, &source.manifest).await,
                Err(e) => Err(e),
            };
            match (compiled_step, &source.path) {
                (Ok(step), _) => compiled.steps.push((step, source)),
                (Err(e @ ServiceError::Load(_)), Some(path)) => {
                    compiled.refused.push((path.clone(), source.name, e));
                }
                (Err(e), _) => return Err(e),
            }
        }
        Ok(compiled)
    }

    /// Stores the start-up steps [`Service::compile_sources`] compiled, and serves them (`store`;
    /// else they are dropped); then tells the files refused.
    pub(crate) async fn store_compiled(&self, compiled: Compiled, store: bool) -> Result<(), ServiceError> {
        if store {
            for (step, source) in compiled.steps {
                self.serve_compiled(step, source.bytes, source.manifest, Some(AT_START))
                    .await?;
            }
        }
        for (path, name, e) in compiled.refused {
            self.refuse_at_start(&path, &name, &e).await?;
        }
        Ok(())
    }

    /// The names of the steps the store serves that are not bundled ones, in name order.
    pub(crate) async fn own_steps_served(&self) -> Result<Vec<String>, ServiceError> {
        let versions = self.inner.store.step_versions(None).await?;
        let mut own: Vec<String> = versions
            .into_iter()
            .filter(|v| v.current && !whenever_step_artifacts::RETAILMAX.iter().any(|b| b.name == v.name))
            .map(|v| v.name)
            .collect();
        // Listed oldest first; one version of each step serves.
        own.sort();
        Ok(own)
    }

    /// Says on stderr that the step file at `path` was refused at start, and which version of
    /// step `name` the store serves meanwhile.
    async fn refuse_at_start(&self, path: &Path, name: &str, error: &ServiceError) -> Result<(), ServiceError> {
        let versions = self.inner.store.step_versions(Some(name)).await?;
        let serving = versions.iter().find(|v| v.current).map(|v| v.version.as_str());
        eprintln!("{}", super::watch::refusal(path, name, serving, error));
        Ok(())
    }

    /// Loads the versions the store serves into the catalog.
    pub(crate) async fn load_current_steps(&self) -> Result<(), ServiceError> {
        let catalog = self.inner.scheduler.catalog();
        for version in self.inner.store.current_steps().await? {
            if catalog.get(&version.name).is_some_and(|s| s.version == version.version) {
                continue;
            }
            let loaded = self
                .inner
                .scheduler
                .runtime()
                .load_stored(&version.name, &version.component, version.manifest, &version.version)
                .await;
            match loaded {
                Ok(step) => {
                    catalog.insert(step);
                }
                // A version an earlier whenever took that this one refuses (a rule since made
                // stricter) must not keep the service, and every other step, from starting.
                Err(refused) => not_loaded(&version.name, &version.version, &refused),
            }
        }
        Ok(())
    }

    /// Validates, compiles and stores a version (`by` whom, for the record), then swaps it into
    /// the catalog.
    async fn store_and_serve(
        &self,
        name: &str,
        bytes: Vec<u8>,
        manifest: StepManifest,
        by: Option<&str>,
    ) -> Result<Arc<LoadedStep>, ServiceError> {
        let step = self.compile(name, &bytes, &manifest).await?;
        self.serve_compiled(step, bytes, manifest, by).await
    }

    /// Refuses a step file whose manifest grants a connector this host lacks, naming the
    /// manifest's file (as a manifest that does not parse is named), where the step came from a
    /// folder: the component beside it is what the refusal is told of.
    pub(crate) fn check_grants(&self, source: &Source) -> Result<(), ServiceError> {
        let checked = source
            .manifest
            .check_connectors(&source.name, self.inner.scheduler.connectors());
        let manifest_file = source
            .path
            .as_ref()
            .map(|p| p.with_extension("toml"))
            .filter(|p| p.is_file());
        match (checked, manifest_file) {
            (Err(LoadError::Manifest { step, message }), Some(file)) => Err(LoadError::Manifest {
                step,
                message: format!("{}: {message}", file.display()),
            }
            .into()),
            (checked, _) => Ok(checked?),
        }
    }

    /// Validates and compiles a version of step `name`.
    async fn compile(&self, name: &str, bytes: &[u8], manifest: &StepManifest) -> Result<LoadedStep, ServiceError> {
        manifest.check_connectors(name, self.inner.scheduler.connectors())?;
        Ok(self
            .inner
            .scheduler
            .runtime()
            .load(name, bytes, manifest.clone())
            .await?)
    }

    /// Stores compiled version `step` (`by` whom, for the record), then swaps it into the catalog.
    async fn serve_compiled(
        &self,
        step: LoadedStep,
        bytes: Vec<u8>,
        manifest: StepManifest,
        by: Option<&str>,
    ) -> Result<Arc<LoadedStep>, ServiceError> {
        let version = StepVersion {
            name: step.name.clone(),
            version: step.version.clone(),
            digest: step.digest.clone(),
            component: bytes,
            manifest,
            deployed_at: Utc::now(),
            deployed_by: by.map(str::to_string),
        };
        self.inner.store.put_step_version(&version, true).await?;
        let step = Arc::new(step);
        self.inner.scheduler.catalog().insert((*step).clone());
        Ok(step)
    }

    /// Deploys a step live: refused with a [`LoadError`] (the old version keeps serving), or
    /// stored, swapped in, and the waiting and failed tasks re-evaluated against it. `by` says
    /// who deployed it (an API token's name, a watched file), kept with a new version. On a host
    /// of its own, the version serving already (the same component and manifest) changes nothing.
    pub async fn deploy_step(
        &self,
        name: &str,
        bytes: Vec<u8>,
        manifest: StepManifest,
        by: Option<&str>,
    ) -> Result<StepInfo, ServiceError> {
        Ok(self.deploy_step_telling(name, bytes, manifest, by).await?.0)
    }

    /// [`Service::deploy_step`], and whether the deploy made a version serve (`false`: it was
    /// serving already), as decided under the deploy lock.
    pub async fn deploy_step_telling(
        &self,
        name: &str,
        bytes: Vec<u8>,
        manifest: StepManifest,
        by: Option<&str>,
    ) -> Result<(StepInfo, bool), ServiceError> {
        let _deploying = self.inner.deploys.lock().await;
        // The version serving already, deployed again: nothing to record or re-evaluate.
        let version = crate::runtime::version_of(&bytes, &manifest);
        if self.serves_already(name, &version) {
            return Ok((self.step(name).await?, false));
        }
        let step = self.store_and_serve(name, bytes, manifest, by).await?;
        self.spawn_reevaluation(Some(step.name.clone()));
        Ok((self.step(name).await?, true))
    }

    /// Makes an earlier stored version serve again; `by` says who asked, for the step's changes.
    /// On a host of its own, the version serving already changes nothing, and nothing is
    /// recorded.
    pub async fn rollback_step(&self, name: &str, version: &str, by: Option<&str>) -> Result<StepInfo, ServiceError> {
        Ok(self.rollback_step_telling(name, version, by).await?.0)
    }

    /// [`Service::rollback_step`], and whether it changed which version serves (`false`: that
    /// one served already), as decided under the deploy lock.
    pub async fn rollback_step_telling(
        &self,
        name: &str,
        version: &str,
        by: Option<&str>,
    ) -> Result<(StepInfo, bool), ServiceError> {
        let _deploying = self.inner.deploys.lock().await;
        let version = self.whole_version(name, version).await?;
        let version = version.as_str();
        if self.serves_already(name, version) {
            return Ok((self.step(name).await?, false));
        }
        let Some(stored) = self.inner.store.step_version(name, version).await? else {
            let known = self.inner.store.step_versions(Some(name)).await?;
            return Err(ServiceError::NotFound(unknown_version(name, version, &known)));
        };
        let step = self
            .inner
            .scheduler
            .runtime()
            .load_stored(name, &stored.component, stored.manifest, &stored.version)
            .await?;
        self.inner.store.set_current_step(name, Some(version), by).await?;
        self.inner.scheduler.catalog().insert(step);
        self.spawn_reevaluation(Some(name.to_string()));
        Ok((self.step(name).await?, true))
    }

    /// The stored version of step `name` that `given` names: itself, or the one version whose id
    /// begins with it (at least [`SHORTEST_PREFIX`] characters: timelines and logs may show ids
    /// cut short). A prefix of several is refused, naming them; one of none is returned as given,
    /// for the lookup to refuse.
    async fn whole_version(&self, name: &str, given: &str) -> Result<String, ServiceError> {
        if self.serves_already(name, given) {
            return Ok(given.to_string());
        }
        let versions = self.inner.store.step_versions(Some(name)).await?;
        whole_version_of(name, given, &versions).map_err(ServiceError::NotFound)
    }

    /// Where every serving step stands on task `id`: its condition against the data (the first
    /// failing path and why), or that it ran on these values, or that it starts.
    pub async fn conditions(&self, id: &str) -> Result<TaskConditions, ServiceError> {
        let stored = self.task(id).await?;
        // The catalog's snapshot is in name order.
        let steps = rules::standings(&stored.task, &self.inner.scheduler.catalog().snapshot());
        Ok(TaskConditions {
            id: stored.task.id,
            status: stored.task.status,
            revision: stored.revision,
            steps,
        })
    }

    /// Stops serving a step (its versions stay in the store); `by` says who asked, for the
    /// step's changes.
    pub async fn remove_step(&self, name: &str, by: Option<&str>) -> Result<(), ServiceError> {
        let _deploying = self.inner.deploys.lock().await;
        // The store says whether it serves: in a cluster this host may not have heard yet of a
        // deploy made through another, and on any host a serving version that does not load
        // here (a connector the config no longer has) is not in the catalog, yet is removed so.
        let versions = self.inner.store.step_versions(Some(name)).await?;
        if !versions.iter().any(|v| v.current) {
            return Err(ServiceError::NotFound(not_serving(name, &versions)));
        }
        self.inner.store.set_current_step(name, None, by).await?;
        self.inner.scheduler.catalog().remove(name);
        Ok(())
    }

    /// Whether `version` of step `name` serves already, so that deploying or rolling back to it
    /// would change nothing. Known only on a host of its own, whose catalog is what the store
    /// serves: in a cluster another host may have removed or rolled back the step a moment ago,
    /// which this host hears of later, so there it is never taken as serving already.
    fn serves_already(&self, name: &str, version: &str) -> bool {
        self.inner.cluster.is_none() && self.serving_version(name).as_deref() == Some(version)
    }

    /// The version of step `name` serving now (`None`: it does not serve).
    pub fn serving_version(&self, name: &str) -> Option<String> {
        self.inner
            .scheduler
            .catalog()
            .get(name)
            .map(|step| step.version.clone())
    }

    /// One serving step with its versions.
    pub async fn step(&self, name: &str) -> Result<StepInfo, ServiceError> {
        let step = self.inner.scheduler.catalog().get(name);
        let versions = self.inner.store.step_versions(Some(name)).await?;
        match step {
            Some(step) => Ok(info(&step, versions)),
            None => Err(ServiceError::NotFound(not_serving(name, &versions))),
        }
    }

    /// Every stored version of step `name`, oldest first, whether it serves or not (a removed
    /// step's are kept, to serve again by a rollback); [`ServiceError::NotFound`] for a name never
    /// deployed.
    pub async fn step_versions(&self, name: &str) -> Result<Vec<StepVersionInfo>, ServiceError> {
        let versions = self.inner.store.step_versions(Some(name)).await?;
        if versions.is_empty() {
            return Err(ServiceError::NotFound(not_serving(name, &versions)));
        }
        Ok(versions)
    }

    /// Every change to which version of step `name` serves, oldest first: who deployed, rolled
    /// back or removed it, and when. Answers for a removed step too; [`ServiceError::NotFound`]
    /// for a name never deployed.
    pub async fn step_changes(&self, name: &str) -> Result<Vec<StepChange>, ServiceError> {
        let changes = self.inner.store.step_changes(name).await?;
        if changes.is_empty() && self.inner.store.step_versions(Some(name)).await?.is_empty() {
            return Err(ServiceError::NotFound(not_serving(name, &[])));
        }
        Ok(changes)
    }

    /// Every serving step, by name.
    pub async fn steps(&self) -> Result<Vec<StepInfo>, ServiceError> {
        let versions = self.inner.store.step_versions(None).await?;
        Ok(self
            .inner
            .scheduler
            .catalog()
            .snapshot()
            .iter()
            .map(|step| info(step, versions.iter().filter(|v| v.name == step.name).cloned().collect()))
            .collect())
    }

    /// Re-evaluates every waiting and failed task against the steps serving, in the background:
    /// after `changed` (one step's deploy or rollback), or after a start (`None`: any step may
    /// have changed while no host was there to re-evaluate). [`rules::reevaluate`] asks for
    /// nothing twice, so hosts of a cluster that all do it run no step twice; a task another
    /// host moved meanwhile is skipped (its save finds a newer revision).
    ///
    /// A pass after a start is skipped when the store's mark says every task was re-evaluated
    /// against the steps loaded now ([`Store::reevaluated_at`]), and one that read every task
    /// sets the mark: a host restarted with no step changed reads no task.
    ///
    /// [`Store::reevaluated_at`]: crate::store::Store::reevaluated_at
    pub(crate) fn spawn_reevaluation(&self, changed: Option<String>) {
        if self.superseded().is_some() {
            // The hosts of the newer version re-evaluate the tasks, which this one may not read
            // whole.
            return;
        }
        let service = self.clone();
        self.spawn(async move {
            let store = &service.inner.store;
            // What this pass evaluates against: the steps loaded here (a version this host
            // cannot load is not among them, and the pass is made again once it loads).
            let mark = match changed {
                None => Some(steps_mark(&service.inner.scheduler.catalog().snapshot())),
                Some(_) => None,
            };
            if let Some(mark) = &mark {
                match store.reevaluated_at().await {
                    Ok(Some(done)) if done == *mark => {
                        eprintln!(
                            "whenever serve: every waiting and failed task was re-evaluated against \
                             the steps serving: none is read again"
                        );
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "whenever serve: cannot read which steps the tasks were last re-evaluated \
                         against ({e}): re-evaluating them all"
                    ),
                }
            }
            let pass = service.reevaluate_all(changed.as_deref()).await;
            let Some(mark) = mark else { return };
            match pass {
                Ok(Pass { read, skipped: 0 }) => {
                    eprintln!(
                        "whenever serve: re-evaluated every waiting and failed task against the steps \
                         serving ({read} read)"
                    );
                    if let Err(e) = store.set_reevaluated_at(&mark).await {
                        eprintln!(
                            "whenever serve: cannot record the re-evaluation ({e}); the next start makes it again"
                        );
                    }
                }
                Ok(Pass { read, skipped }) => eprintln!(
                    "whenever serve: re-evaluated the waiting and failed tasks ({read} read), but \
                     {skipped} could not be read or saved; the next start tries them all again"
                ),
                Err(e) => eprintln!(
                    "whenever serve: the re-evaluation of waiting and failed tasks stopped: cannot \
                     list them ({e}); the next start makes it again"
                ),
            }
        });
    }

    /// Re-evaluates every waiting and failed task (see [`Service::spawn_reevaluation`]). A task
    /// deleted, or moved by someone else, meanwhile is as it should be; one the store fails on
    /// is skipped and counted. Only a listing the store fails stops the pass.
    async fn reevaluate_all(&self, changed: Option<&str>) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        for status in [TaskStatus::Waiting, TaskStatus::Failed] {
            let mut pages = super::TaskPages::of(&*self.inner.store, status);
            while let Some(tasks) = pages.next().await? {
                for summary in tasks {
                    let steps = self.inner.scheduler.catalog().snapshot();
                    let resumed = self
                        .resume_with(&summary.id, None, move |task| {
                            let drive = rules::reevaluate(task, &steps, changed);
                            Ok(if drive { Resume::Drive } else { Resume::Nothing })
                        })
                        .await;
                    pass.read += 1;
                    // Deleted (NotFound) or running, moved on by another host (Conflict): fine.
                    // The first failure is told; a store that is down would fail them all.
                    if let Err(ServiceError::Store(e)) = resumed {
                        if pass.skipped == 0 {
                            eprintln!("whenever serve: cannot re-evaluate task {}: {e}", summary.id);
                        }
                        pass.skipped += 1;
                    }
                }
            }
        }
        Ok(pass)
    }
}

/// What a re-evaluation pass did: the tasks it read, and of them those the store failed on.
#[derive(Debug, Default)]
struct Pass {
    read: usize,
    skipped: usize,
}

/// Says that step `name`'s serving version `version` does not load on this host (`refused`
/// says why), so the step does not serve here, and what would mend it.
pub(crate) fn not_loaded(name: &str, version: &str, refused: &impl std::fmt::Display) {
    eprintln!(
        "whenever serve: step {name}'s serving version {version} does not load on this host, and \
         the step does not serve: {refused}; deploy a fixed version, or `whenever remove {name}`"
    );
}

/// The text that names a set of loaded steps for the re-evaluation mark: each name and version,
/// in name order, after the version of the rules that decide what a re-evaluation runs.
fn steps_mark(steps: &[Arc<LoadedStep>]) -> String {
    let mut named: Vec<String> = steps.iter().map(|s| format!("{}@{}", s.name, s.version)).collect();
    named.sort();
    format!("rules {}; {}", rules::REEVALUATION_RULES, named.join(", "))
}

fn info(step: &LoadedStep, versions: Vec<StepVersionInfo>) -> StepInfo {
    let serving = versions.iter().find(|v| v.version == step.version);
    StepInfo {
        name: step.name.clone(),
        version: step.version.clone(),
        digest: step.digest.clone(),
        size: step.size as u64,
        connectors: step.manifest.connectors.clone(),
        hosts: step.manifest.http.hosts.clone(),
        withheld: step.withheld.clone(),
        limits: step.manifest.limits,
        condition: step.condition.pattern().clone(),
        reads: step
            .view
            .as_ref()
            .map(|view| view.paths().iter().map(ToString::to_string).collect()),
        deployed_at: serving.map(|v| v.deployed_at),
        deployed_by: serving.and_then(|v| v.deployed_by.clone()),
        versions,
    }
}

/// What a request for serving step `name` that does not serve says: that none was ever
/// deployed, or that its versions are kept and how to serve one again.
fn not_serving(name: &str, versions: &[StepVersionInfo]) -> String {
    if versions.is_empty() {
        return format!("step {name} not found: no version of it was ever deployed");
    }
    // Serving in the store, not here: a deploy this host has not heard of yet, or a version
    // that does not load here (its log says why).
    if let Some(current) = versions.iter().find(|v| v.current) {
        return format!(
            "step {name} does not serve on this host: its version {} is the one to serve, and has \
             not loaded here (in a cluster, not yet; or it does not load here, as the server's log \
             says at start: deploy a fixed version, or `whenever remove {name}`)",
            current.version
        );
    }
    format!(
        "step {name} is not serving (it was removed); its {} kept (`whenever steps {name}` or GET \
         /v1/steps/{name}/versions lists them), and `whenever rollback {name} VERSION` serves one \
         again",
        match versions.len() {
            1 => "version is".to_string(),
            n => format!("{n} versions are"),
        }
    )
}

/// The version id of `versions` (step `name`'s) that `given` names: itself if stored, else the
/// one that begins with it (from [`SHORTEST_PREFIX`] characters on), else `given` as it is. A
/// prefix of several is refused, naming them.
fn whole_version_of(name: &str, given: &str, versions: &[StepVersionInfo]) -> Result<String, String> {
    if versions.iter().any(|v| v.version == given) || given.len() < SHORTEST_PREFIX {
        return Ok(given.to_string());
    }
    let begun: Vec<&str> = versions
        .iter()
        .map(|v| v.version.as_str())
        .filter(|v| v.starts_with(given))
        .collect();
    match begun.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Ok(given.to_string()),
        several => Err(format!(
            "version {given} of step {name} is ambiguous: {} versions begin with it ({}); give more of it",
            several.len(),
            several.join(", ")
        )),
    }
}

/// What a rollback to a version the store does not hold says: that no such step was ever
/// deployed, or which versions there are to roll back to (the newest few).
fn unknown_version(name: &str, version: &str, known: &[StepVersionInfo]) -> String {
    const LISTED: usize = 5;
    if known.is_empty() {
        return not_serving(name, known);
    }
    let newest: Vec<&str> = known.iter().rev().take(LISTED).map(|v| v.version.as_str()).collect();
    let more = match known.len().saturating_sub(LISTED) {
        0 => String::new(),
        n => format!(" and {n} older"),
    };
    format!(
        "version {version} of step {name} not found; its versions, newest first: {}{more}",
        newest.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(n: usize) -> Vec<StepVersionInfo> {
        (0..n)
            .map(|i| StepVersionInfo {
                name: "discount".into(),
                version: format!("v{i}"),
                digest: String::new(),
                size: 0,
                deployed_at: chrono::DateTime::UNIX_EPOCH,
                deployed_by: None,
                current: false,
            })
            .collect()
    }

    #[test]
    fn a_version_is_named_whole_or_by_the_start_of_its_id() {
        let mut stored = versions(3);
        for (v, id) in stored.iter_mut().zip(["558dc6ed6bd2", "558d00aa11bb", "f3f5224c0d9e"]) {
            v.version = id.to_string();
        }
        let whole = |given: &str| whole_version_of("discount", given, &stored);
        assert_eq!(whole("f3f5224c0d9e"), Ok("f3f5224c0d9e".to_string()));
        assert_eq!(whole("f3f5224"), Ok("f3f5224c0d9e".to_string()));
        assert_eq!(whole("558dc6e"), Ok("558dc6ed6bd2".to_string()));
        // Too short to be taken as a start, or the start of none: left for the lookup to refuse.
        assert_eq!(whole("f3f"), Ok("f3f".to_string()));
        assert_eq!(whole("abcd"), Ok("abcd".to_string()));
        assert_eq!(
            whole("558d"),
            Err(
                "version 558d of step discount is ambiguous: 2 versions begin with it (558dc6ed6bd2, \
                 558d00aa11bb); give more of it"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_step_not_serving_is_told_apart_from_one_never_deployed() {
        assert_eq!(
            not_serving("nostep", &[]),
            "step nostep not found: no version of it was ever deployed"
        );
        assert_eq!(
            not_serving("discount", &versions(2)),
            "step discount is not serving (it was removed); its 2 versions are kept (`whenever steps \
             discount` or GET /v1/steps/discount/versions lists them), and `whenever rollback discount \
             VERSION` serves one again"
        );
        assert!(not_serving("discount", &versions(1)).contains("its version is kept"));
    }

    #[test]
    fn an_unknown_version_is_answered_with_the_versions_there_are() {
        assert_eq!(
            unknown_version("nostep", "abc", &[]),
            "step nostep not found: no version of it was ever deployed"
        );
        assert_eq!(
            unknown_version("discount", "abc", &versions(2)),
            "version abc of step discount not found; its versions, newest first: v1, v0"
        );
        assert_eq!(
            unknown_version("discount", "abc", &versions(7)),
            "version abc of step discount not found; its versions, newest first: v6, v5, v4, v3, v2 and 2 older"
        );
    }
}
