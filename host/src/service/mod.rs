//! The long-running service behind `whenever serve`: tasks are stored before anything runs, driven
//! by tokio workers that commit every applied change before the runs it enables start, journal
//! every connector result before the step sees it, and resume after a restart.
//!
//! - `creating`: storing new tasks, once per request key ([`Service::create_for_request_then`]).
//! - [`drive`]: driving one stored task durably (checkpoint, journal, crash resumption).
//! - [`steps`]: deploying, removing and listing steps; their versions persist in the store.
//! - [`metrics`]: counters and histograms for `/metrics`.
//! - A task's data is patched with JSON merge patch (RFC 7396,
//!   [`crate::scheduler::merge::merge_patch`]).
//! - `cluster`: several hosts on one shared store (PostgreSQL): who drives which task.
//! - `watch`: the steps-folder watcher of `whenever serve --steps DIR` ([`Service::watch_steps`]).
//! - [`readiness`]: whether this host should be sent work now (`/readyz`).
//! - [`stopping`]: stopping gracefully, the drives under way given a grace ([`Service::stop`]).
//! - `retention`: deleting settled tasks, on request and past the `[retention]` limits.
//!
//! Concurrency between writers of one task is the store's business: a task is changed from
//! outside (patch, retry, re-evaluation after a deploy) only while it is settled, through a
//! compare-and-swap on its revision, which moves it to `running`; the worker that then drives it
//! saves with the same compare-and-swap. A patch of a running task is refused (409).

mod cluster;
mod creating;
pub mod drive;
mod drive_threads;
pub mod metrics;
pub mod readiness;
mod retention;
mod settle_waiters;
mod settling;
pub mod steps;
pub mod stopping;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use tokio::sync::{Semaphore, broadcast};

use crate::config::Config;
use crate::host::{Host, HostOptions, SetupError};
use crate::runtime::LoadError;
use crate::scheduler::{Scheduler, data_size};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError, StoredTask, TaskPage, TaskQuery, TaskSave, TaskSummary};
use crate::task::{PATCH_ENTRY, RETRY_ENTRY, RunRecord, Task, TaskStatus};

pub use cluster::{HostShown, Hosts};
pub use creating::Created;
pub use metrics::Metrics;
pub use readiness::Readiness;
pub use steps::StepInfo;
pub use stopping::Stopped;
pub use watch::StepsSeen;

/// What to start a service from.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Folders of steps deployed at start (new or changed files only); empty: the bundled
    /// RetailMax steps.
    pub steps: Vec<PathBuf>,
    /// The bundled RetailMax steps as well as `steps` (deployed first, so a step of the same
    /// name in `steps` serves instead).
    pub with_bundled: bool,
    /// Start with no steps but those in the store (tests).
    pub no_steps: bool,
    /// The config file.
    pub config: Option<PathBuf>,
}

/// A service operation failed; the API maps each kind to a status code.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// No such task or step.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but cannot apply (a running task, a changed revision).
    #[error("{0}")]
    Conflict(String),
    /// The task is not at a revision the caller named (an `If-Match`): it changed since they
    /// read it, and nothing was done.
    #[error("{0}")]
    Changed(String),
    /// The request is well-formed but not acceptable (a step that never ran, a non-object).
    #[error("{0}")]
    Invalid(String),
    /// A component or manifest was refused; the previous version keeps serving.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The service could not be assembled.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => ServiceError::Conflict(what),
            StoreError::Changed(what) => ServiceError::Changed(what),
            other => ServiceError::Store(other),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) scheduler: Scheduler,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) settled: broadcast::Sender<String>,
    /// This host's own drives under way, with who waits for their tasks to settle.
    pub(crate) settling: Arc<settling::Settling>,
    /// Who waits for a task no drive here has under way to settle (a long poll, a task another
    /// host drives), each woken by its own task's settles only.
    pub(crate) settle_waiters: Arc<settle_waiters::SettleWaiters>,
    /// One permit per task that may be driven at once (`max_concurrent_tasks`); a drive holds
    /// one while under way.
    pub(crate) workers: Arc<Semaphore>,
    /// How many permits `workers` has in all.
    pub(crate) worker_count: usize,
    /// Serving, or stopping ([`Service::stop`]).
    pub(crate) phase: tokio::sync::watch::Sender<stopping::Phase>,
    pub(crate) deploys: tokio::sync::Mutex<()>,
    /// Set when the store is shared by several hosts: tasks are claimed with leases.
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    /// The runtime the service was started on, where its background work runs (and its drives,
    /// without `drives`), whichever runtime calls it: the HTTP API runs on a thread of its own
    /// ([`crate::api::serve_on_own_thread`]), and a task it creates is driven here or on
    /// `drives`, not there.
    pub(crate) runtime: tokio::runtime::Handle,
    /// The threads the drives run on (`[server] drive_threads`), a cluster's claimed tasks'
    /// too; `None`: on `runtime`.
    pub(crate) drives: Option<drive_threads::DriveThreads>,
    /// The last readiness probe's answer ([`Service::readiness`]).
    pub(crate) last_probe: readiness::LastProbe,
    /// Out of rotation ahead of a stop ([`Service::leave_rotation`]).
    pub(crate) leaving: std::sync::atomic::AtomicBool,
}

/// What [`Service::resume_with`] does with a settled task once its change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Nothing changed: nothing is saved.
    Nothing,
    /// Saved as it settled (a patch of a completed task).
    Save,
    /// Saved as running, and driven.
    Drive,
}

/// The service. Cloning shares it.
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// Opens the store, assembles the host, deploys new or changed steps from the folders (or the
    /// bundled set), loads the steps the store serves, and resumes every unsettled task.
    pub async fn start(options: &ServiceOptions) -> Result<Service, ServiceError> {
        let host = Host::start(&HostOptions {
            steps: Vec::new(),
            with_bundled: false,
            config: options.config.clone(),
            no_steps: true,
        })
        .await?;
        let url = options.db.to_string_lossy();
        if let Some(problem) = crate::store::postgres::mistyped_url(&url) {
            return Err(ServiceError::Invalid(problem));
        }
        if crate::store::postgres::is_postgres_url(&url) {
            let connections = crate::store::postgres::Connections::split(host.config.store.postgres_connections)
                .map_err(|e| ServiceError::Store(StoreError::Backend(e)))?;
            let store = crate::store::postgres::PostgresStore::connect_with(&url, connections)
                .await
                .map_err(ServiceError::Store)?;
            return Service::with_store(host, Arc::new(store), options).await;
        }
        let sqlite = SqliteOptions {
            synchronous: host.config.store.synchronous,
            commit_delay: std::time::Duration::from_millis(host.config.store.commit_delay_ms),
        };
        let db = options.db.clone();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db, sqlite))
            .await
            .map_err(|e| ServiceError::Store(StoreError::Backend(e.to_string())))??;
        Service::with_store(host, Arc::new(store), options).await
    }

    /// Like [`Service::start`] over a given store and host (another backend, tests).
    pub async fn with_store(
        host: Host,
        store: Arc<dyn Store>,
        options: &ServiceOptions,
    ) -> Result<Service, ServiceError> {
        let (settled, _) = broadcast::channel(4096);
        let worker_count = host.config.server.max_concurrent_tasks.max(1);
        let drive_threads = host.config.server.drive_threads;
        let workers = Arc::new(Semaphore::new(worker_count));
        let cluster = store
            .shared()
            .then(|| Arc::new(cluster::Cluster::new(&host.config.cluster)));
        let mut scheduler = host.scheduler;
        if let Some(cluster) = &cluster {
            scheduler.name_runs_after(&cluster.host_id);
        }
        let service = Service {
            inner: Arc::new(Inner {
                scheduler,
                store,
                config: host.config,
                metrics: Metrics::of_host(cluster.as_ref().map(|c| c.host_id.as_str())),
                settled,
                settling: Arc::default(),
                settle_waiters: Arc::default(),
                workers,
                worker_count,
                phase: tokio::sync::watch::Sender::new(stopping::Phase::Serving),
                deploys: tokio::sync::Mutex::new(()),
                cluster,
                runtime: tokio::runtime::Handle::current(),
                drives: match drive_threads {
                    0 => None,
                    count => Some(
                        drive_threads::DriveThreads::start(count)
                            .map_err(|e| ServiceError::Invalid(format!("cannot start the drive threads: {e}")))?,
                    ),
                },
                last_probe: readiness::LastProbe::default(),
                leaving: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        // First of all: a second process given this host's `host_id` must change nothing.
        service.register_host().await?;
        if let Err(e) = service.start_serving(options).await {
            // The name is free at once for the next start, which need not wait for it to lapse.
            service.unregister_host().await;
            return Err(e);
        }
        Ok(service)
    }

    /// The start after the host registered: the steps deployed and loaded, the unfinished
    /// tasks resumed or claimed, and the background work begun.
    async fn start_serving(&self, options: &ServiceOptions) -> Result<(), ServiceError> {
        let mut compiled = steps::Compiled::default();
        if !options.no_steps {
            // The bundled steps are the default of a store that serves none of its own: a start
            // without `--steps` on a store serving someone's steps must not add fourteen others.
            let by_default = options.steps.is_empty() && !options.with_bundled;
            let own = if by_default {
                self.own_steps_served().await?
            } else {
                Vec::new()
            };
            if own.is_empty() {
                let sources = steps::sources(&options.steps, options.with_bundled)?;
                compiled = self.compile_sources(sources).await?;
            } else {
                eprintln!(
                    "whenever serve: the store serves steps of its own ({}): the bundled RetailMax \
                     steps are not deployed beside them (`--retailmax` deploys them too)",
                    own.join(", ")
                );
            }
        }
        if let Some(cluster) = self.cluster().cloned() {
            // Everything compiled before this host registers the format it writes, and nothing
            // written before: the older hosts serve on meanwhile. The versions about to be
            // replaced are not compiled.
            let replaced = compiled.names();
            self.reload_steps_but(&replaced).await?;
            self.begin_claiming(&cluster).await?;
            let newer = self.superseded();
            if let Some(newer) = newer
                && !replaced.is_empty()
            {
                // A newer version's steps serve: this build's must not replace them.
                eprintln!(
                    "whenever serve: {} serves on this store: the steps of this start are not \
                     deployed ({})",
                    cluster::newer_host(newer),
                    replaced.join(", ")
                );
            }
            self.store_compiled(compiled, newer.is_none()).await?;
            // The serving steps are loaded with the stamp they were read at, and running tasks
            // are claimed from the store, this host's share of them.
            self.start_cluster().await?;
        } else {
            self.store_compiled(compiled, true).await?;
            self.load_current_steps().await?;
            self.resume_unsettled().await?;
        }
        // A deploy made before a crash (or by another host while none of this one ran) may not
        // have re-evaluated every task, and the steps deployed at start have not.
        self.spawn_reevaluation(None);
        self.start_retention();
        Ok(())
    }

    /// Spawns `work` on the service's own runtime ([`Inner::runtime`]), whichever runtime the
    /// caller is on.
    pub(crate) fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.runtime.spawn(work)
    }

    /// Spawns `work`, a drive of task `id`, on the thread that task's drives run on
    /// ([`Inner::drives`]), or on the service's runtime without drive threads: a task's drives
    /// then never change threads, whether this host drives alone or claims from a cluster.
    pub(crate) fn spawn_driving<F>(&self, id: &str, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // Boxed: a drive's future (4.7 KB) is then moved once, into its box, rather than copied
        // whole into the spawned task and again as the task finishes.
        let work = Box::pin(work);
        match &self.inner.drives {
            Some(threads) => {
                let (index, runtime) = threads.for_task(id);
                self.inner.metrics.drive_started(Some(index));
                drop(runtime.spawn(work));
            }
            None => {
                self.inner.metrics.drive_started(None);
                drop(self.spawn(work));
            }
        }
    }

    /// Tells whoever waits that a drive of task `id` on this host ended: the waiters for that
    /// task ([`settle_waiters`]), then the listeners of every settle ([`Service::settled`]).
    pub(crate) fn announce_settled(&self, id: String) {
        self.inner.settle_waiters.settled(&id);
        let _ = self.inner.settled.send(id);
    }

    /// The scheduler (runtime, catalog, connectors).
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// One task with its history.
    pub async fn task(&self, id: &str) -> Result<StoredTask, ServiceError> {
        self.stored_task(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("task {id} not found")))
    }

    /// Task `id` as the store has it (`None`: no such task), a failure answered as
    /// [`Service::read_failed`] says.
    async fn stored_task(&self, id: &str) -> Result<Option<StoredTask>, ServiceError> {
        self.inner.store.get_task(id).await.map_err(|e| self.read_failed(e))
    }

    /// A page of tasks.
    pub async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage, ServiceError> {
        self.inner
            .store
            .list_tasks(query)
            .await
            .map_err(|e| self.read_failed(e))
    }

    /// A read's failure `e` as this host answers it. A record it cannot decode while a host of a
    /// newer version serves is most likely that host's, in a format this build does not know:
    /// the answer is then 503, for another host to answer the request, not a corrupt store's 500.
    fn read_failed(&self, e: StoreError) -> ServiceError {
        match (e, self.superseded()) {
            (StoreError::Corrupt(why), Some(newer)) => stands_aside(
                newer,
                &format!("and cannot read what that host may have written ({why})"),
            )
            .into(),
            (e, _) => e.into(),
        }
    }

    /// Applies a JSON merge patch to a settled task's data and resumes it (409 while running),
    /// if the task is at one of `revisions` (`None`: at any; see [`Service::resume_with`]). The
    /// patch goes into the task's history as a [`PATCH_ENTRY`] with what it changed and `by`, the
    /// name of the token that asked for it. A completed task stays completed, its data corrected:
    /// once a step completed it no run starts on it (`task.complete`), so resuming it could only
    /// leave it waiting on nothing, out of retention's reach. A patch that changes nothing, and
    /// makes no failure moot, changes nothing else either: no revision, no history entry, no
    /// drive.
    pub async fn patch_task(
        &self,
        id: &str,
        merge: &Value,
        revisions: Option<&[u64]>,
        by: Option<&str>,
    ) -> Result<Task, ServiceError> {
        if !merge.is_object() {
            return Err(ServiceError::Invalid(
                "a merge patch of task data must be a JSON object".into(),
            ));
        }
        let catalog = self.inner.scheduler.catalog().clone();
        self.resume_with(id, revisions, |task| {
            if task.status == TaskStatus::Running {
                return Err(ServiceError::Conflict(format!(
                    "task {} is running; patch it once it is waiting, failed or completed",
                    task.id
                )));
            }
            let before = task.data.clone();
            crate::scheduler::merge::merge_patch(&mut task.data, merge);
            if let Some(why) = crate::task::too_deep(
                &format!("task {}'s data as patched", task.id),
                crate::task::nesting(&task.data),
            ) {
                return Err(ServiceError::Invalid(why));
            }
            // Data over the limit already (a limit lowered since) may be patched smaller.
            let limit = self.inner.scheduler.settings().max_task_bytes;
            if let Err(bytes) = data_size::kept_within(limit, &before, &task.data) {
                return Err(ServiceError::Invalid(format!(
                    "task {}'s data as patched would be {}",
                    task.id,
                    data_size::over_limit(bytes, limit)
                )));
            }
            // A failure the patch made moot (the failed step's condition no longer holds on the
            // data as patched: a person chose another way) no longer fails the task.
            // (A version deployed since may have made one moot without a change of the data.)
            let mut mooted = false;
            for (name, progress) in task.progress.iter_mut().filter(|(_, p)| p.last_failed) {
                if catalog
                    .get(name)
                    .is_some_and(|step| !step.condition.matches(&task.data))
                {
                    progress.last_failed = false;
                    mooted = true;
                }
            }
            // A patch that changes nothing (`{}`, or values the data holds already), and makes
            // no failure moot, could make no step run: the task stays as it is, at its revision,
            // its history unchanged.
            if task.data == before && !mooted {
                return Ok(Resume::Nothing);
            }
            let changes = crate::scheduler::merge::diff(&before, &task.data);
            let what = match changes.len() {
                1 => "data patched through the API (1 change)".to_string(),
                n => format!("data patched through the API ({n} changes)"),
            };
            RunRecord::append_intervention(task, PATCH_ENTRY, by, what, changes);
            Ok(if task.status == TaskStatus::Completed {
                Resume::Save
            } else {
                Resume::Drive
            })
        })
        .await
    }

    /// Runs a step again on a settled task (`None`: every step whose latest run failed), if
    /// the task is at one of `revisions` (`None`: at any); recorded in the history as a
    /// [`RETRY_ENTRY`], `by` the token that asked for it.
    pub async fn retry_task(
        &self,
        id: &str,
        step: Option<&str>,
        revisions: Option<&[u64]>,
        by: Option<&str>,
    ) -> Result<Task, ServiceError> {
        let catalog = self.inner.scheduler.catalog().clone();
        self.resume_with(id, revisions, |task| {
            if task.status == TaskStatus::Running {
                return Err(ServiceError::Conflict(format!(
                    "task {} is running; retry it once it settles",
                    task.id
                )));
            }
            // Once a step completed the task no run starts on it (as after a patch).
            if task.status == TaskStatus::Completed {
                return Err(ServiceError::Conflict(format!(
                    "task {} is completed, and no step runs on a completed task; patch its data if \
                     it needs correcting",
                    task.id
                )));
            }
            let names: Vec<String> = match step {
                Some(name) => {
                    if catalog.get(name).is_none() {
                        return Err(ServiceError::Invalid(format!("step {name:?} is not deployed")));
                    }
                    if !task.progress.contains_key(name) {
                        return Err(ServiceError::Invalid(format!(
                            "step {name} never ran on task {}",
                            task.id
                        )));
                    }
                    vec![name.to_string()]
                }
                None => task
                    .progress
                    .iter()
                    .filter(|(_, p)| p.last_failed)
                    .map(|(n, _)| n.clone())
                    .collect(),
            };
            if names.is_empty() {
                return Err(ServiceError::Invalid(format!(
                    "task {} has no failed step to retry",
                    task.id
                )));
            }
            // A step runs only while its condition holds: a retry of one whose condition no
            // longer holds would run nothing and leave the task as it was, said to be retried.
            // Of every failed step, those that would run are retried; none is a refusal.
            let (mut unheld, mut moot) = (Vec::new(), Vec::new());
            let names: Vec<String> = names
                .into_iter()
                .filter(
                    |name| match catalog.get(name).map(|step| step.condition.explain(&task.data)) {
                        Some(Err(mismatch)) => {
                            moot.push(name.clone());
                            unheld.push(format!(
                                "step {name} would not run: its condition does not hold on task {}'s data \
                             ({mismatch})",
                                task.id
                            ));
                            false
                        }
                        _ => true,
                    },
                )
                .collect();
            if names.is_empty() {
                return Err(ServiceError::Invalid(format!(
                    "{}; patch the data for it to run",
                    unheld.join("; ")
                )));
            }
            // A failure left out is moot, as one a patch made moot: it no longer fails the task.
            for name in moot {
                if let Some(progress) = task.progress.get_mut(&name) {
                    progress.last_failed = false;
                }
            }
            let mut what = format!("retry of {} asked for through the API", names.join(", "));
            // A failed step left out is said, with why, where the retry is recorded.
            if !unheld.is_empty() {
                what.push_str(&format!("; left out: {}", unheld.join("; ")));
            }
            for name in names {
                task.progress.entry(name).or_default().redo = true;
            }
            RunRecord::append_intervention(task, RETRY_ENTRY, by, what, Vec::new());
            Ok(Resume::Drive)
        })
        .await
    }

    /// The ids of the tasks whose drive on this host ends from now on: they settled (completed,
    /// waiting or failed) or a store failure stopped the drive. A receiver that falls more than
    /// 4,096 behind skips ahead (`RecvError::Lagged`).
    pub fn settled(&self) -> broadcast::Receiver<String> {
        self.inner.settled.subscribe()
    }

    /// Waits until the task is settled or `timeout` passes, and returns it as it is then: as its
    /// drive saved it last, when this host drives it (no read back), else as the store has it.
    /// Once the service is stopping ([`Service::stop`]), a task no drive here moves any more is
    /// returned at once as it is.
    pub async fn wait_settled(&self, id: &str, timeout: Duration) -> Result<StoredTask, ServiceError> {
        self.wait_settled_beyond(id, timeout, |_| false).await
    }

    /// [`Service::wait_settled`] for a client that already has the task at the revisions `held`
    /// names (an `If-None-Match`): waits until the task is settled at a revision it does not
    /// name (a waiting task, once a patch or a deploy moved it on and it settled again), or
    /// `timeout` passes. A long poll: the client hears of a change without asking again.
    pub async fn wait_settled_beyond(
        &self,
        id: &str,
        timeout: Duration,
        held: impl Fn(u64) -> bool,
    ) -> Result<StoredTask, ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut phase = self.inner.phase.subscribe();
        // Driven here: its drive answers with the task as it saved it (no read back).
        if let Some(driven) = self.inner.settling.wait(id) {
            tokio::select! {
                // Otherwise the drive ended without a settled task (an error, or it never
                // started because the service is stopping): the store says how the task is.
                answer = driven => if let Ok(task) = answer && !held(task.revision) {
                    return Ok(task);
                },
                _ = tokio::time::sleep_until(deadline) => return self.task(id).await,
                // The grace is over: the drive was abandoned.
                _ = stopping::reached(&mut phase, |p| *p == stopping::Phase::Stopped) => return self.task(id).await,
            }
        }
        // Another host may drive the task: its settle comes as the store's notification, once
        // the task is watched (`Store::watch_task`). Waiters are woken when the listener
        // reconnects, as one may have been lost meanwhile; a look every 5 s is the backstop.
        let recheck = if self.inner.cluster.is_some() {
            if let Err(e) = self.inner.store.watch_task(id).await {
                eprintln!("whenever serve: cannot watch task {id} ({e}); looking at it every 5 s");
            }
            Duration::from_secs(5)
        } else {
            timeout
        };
        loop {
            // Registered before the read, so that a settle right after it is not missed.
            let mut next = self.inner.settle_waiters.register(id);
            let stored = self.task(id).await?;
            if (stored.task.status != TaskStatus::Running && !held(stored.revision)) || self.is_stopping() {
                return Ok(stored);
            }
            let wake = deadline.min(tokio::time::Instant::now() + recheck);
            tokio::select! {
                _ = next.settled() => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return self.task(id).await;
                    }
                }
                _ = stopping::reached(&mut phase, |p| *p != stopping::Phase::Serving) => {}
            }
        }
    }

    /// Changes a settled task through `change` (which says what then: see [`Resume`]), saves
    /// it with a compare-and-swap, and, to resume it, moves it to running and starts driving it.
    /// With `revisions` (an `If-Match`), only a task at one of them is changed: at another, or
    /// moved on before the save, the answer is [`ServiceError::Changed`], checked before
    /// anything else.
    pub(crate) async fn resume_with(
        &self,
        id: &str,
        revisions: Option<&[u64]>,
        change: impl FnOnce(&mut Task) -> Result<Resume, ServiceError>,
    ) -> Result<Task, ServiceError> {
        if let Some(newer) = self.superseded() {
            // A task a newer host wrote may hold what this build cannot read, and would lose it
            // here, saved back whole.
            return Err(stands_aside(newer, "whose tasks it may not read whole").into());
        }
        let stored = self.task(id).await?;
        if let Some(named) = revisions
            && !named.contains(&stored.revision)
        {
            return Err(StoreError::not_at(id, stored.revision, named).into());
        }
        let mut task = stored.task;
        let recorded = task.runs.len() as u64;
        let resume = change(&mut task)?;
        if resume == Resume::Nothing {
            return Ok(task);
        }
        if resume == Resume::Drive {
            task.status = TaskStatus::Running;
            task.message = None;
        }
        // The history entries the change appended (a patch's, a retry's) are saved with it.
        let appended: Vec<u64> = (recorded..task.runs.len() as u64).collect();
        let saved = self
            .inner
            .store
            .save_task(TaskSave {
                runs: &appended,
                ..TaskSave::whole(&task, stored.revision)
            })
            .await;
        let revision = match (saved, revisions) {
            // The compare-and-swap found a newer revision: for a caller who named one, that is
            // a changed task, as if it had been read a moment later.
            (Err(StoreError::Conflict(message)), Some(_)) => return Err(ServiceError::Changed(message)),
            (saved, _) => saved?,
        };
        if resume == Resume::Drive {
            self.spawn_drive_saved(task.clone(), revision, Vec::new());
        }
        Ok(task)
    }

    async fn resume_unsettled(&self) -> Result<(), ServiceError> {
        let mut pages = TaskPages::of(&*self.inner.store, TaskStatus::Running);
        let mut resumed = 0usize;
        while let Some(tasks) = pages.next().await? {
            for task in tasks {
                self.spawn_drive(task.id);
                resumed += 1;
            }
        }
        // After a stop that let its drives finish there are none; after a crash, what it left.
        if resumed > 0 {
            eprintln!(
                "whenever serve: resuming {resumed} unfinished {} (the runs a crash interrupted run \
                 again, their journaled connector results replayed)",
                if resumed == 1 { "task" } else { "tasks" }
            );
        }
        Ok(())
    }
}

/// What a host superseded by a host of format `newer` answers a request it leaves to another
/// host, saying `why` (503: a balancer or the client tries another host).
fn stands_aside(newer: u32, why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "this host stands aside for {}, {why}: send the request to another host",
        cluster::newer_host(newer)
    ))
}

/// Every task of one status in the store, newest first, read a page of 500 at a time (a pass
/// over all of them: resuming, re-evaluating).
pub(crate) struct TaskPages<'a> {
    store: &'a dyn Store,
    status: TaskStatus,
    /// Where the next page starts; `None` before the first.
    cursor: Option<String>,
    done: bool,
}

impl<'a> TaskPages<'a> {
    /// The tasks of `status` in `store`, from the newest.
    pub(crate) fn of(store: &'a dyn Store, status: TaskStatus) -> TaskPages<'a> {
        TaskPages {
            store,
            status,
            cursor: None,
            done: false,
        }
    }

    /// The next page; `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<TaskSummary>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let query = TaskQuery {
            status: Some(self.status),
            tag: None,
            limit: 500,
            cursor: self.cursor.clone(),
        };
        let page = self.store.list_tasks(&query).await?;
        self.cursor = page.next_cursor;
        self.done = self.cursor.is_none();
        Ok(Some(page.tasks))
    }
}
