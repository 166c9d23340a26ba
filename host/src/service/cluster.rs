//! Several hosts on one shared store (PostgreSQL): who drives which task, and hearing of what the
//! other hosts did.
//!
//! - **Claiming.** A host drives only the tasks it holds a lease on. One claim loop per host takes
//!   as many running, unheld (or expired) tasks as it has free workers, a batch at a time
//!   ([`Store::claim_tasks`](crate::store::Store::claim_tasks), `FOR NO KEY UPDATE SKIP
//!   LOCKED`). It wakes when a task is created or resumed here, when a drive ends, when another
//!   host's `NOTIFY` arrives, and every `poll_ms` as a backstop.
//! - **Renewing.** Every quarter of the lease the host renews the leases of the tasks it drives; a
//!   task it no longer holds (another host took it over after the lease expired) stops being
//!   driven here at once, and so does everything when renewals have failed for a whole lease.
//!   Saves stay compare-and-swap on the revision, so a host that lost a task cannot overwrite
//!   the new holder's progress; an interrupted run is re-run by the new holder with the journaled
//!   connector results replayed, and calls it repeats carry the same idempotency key.
//! - **Versions.** Each host registers the format of what it writes
//!   ([`WRITE_FORMAT`](crate::store::WRITE_FORMAT)); one that sees a live host of a newer format
//!   claims nothing (the claim query skips it too), changes no task and is not ready, until that
//!   host is gone ([`Cluster::superseded`]): an upgrade one host at a time moves the work onto the
//!   new hosts. A starting host registers 0 until its steps are compiled, and its format only
//!   then, before it writes anything ([`Service::begin_claiming`]): the older hosts serve on
//!   while it starts.
//! - **Steps.** A deploy, rollback or removal through any host is stored and notified; every host
//!   reloads the serving steps from the store, and a host that claims work first checks that its
//!   steps are those the store serves (the steps stamp), so a task resumed for a new step is never
//!   evaluated against an older set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, broadcast, oneshot};

use super::drive::redrive_delay;
use super::stopping::Phase;
use super::{Inner, Service, ServiceError};
use crate::config::ClusterSection;
use crate::store::{StoreError, StoreEvent, WRITE_FORMAT};
use crate::task::TaskStatus;

/// A task this host drives: the drive's generation and the signal that stops it.
type Held = HashMap<String, (u64, oneshot::Sender<()>)>;

/// At most this many tasks' counts of failed drives are kept ([`Cluster::drive_ended`]).
const FAILING_KEPT: usize = 10_000;

/// This host's side of the cluster.
pub(crate) struct Cluster {
    /// This host's name in the store's `owner` column.
    pub(crate) host_id: String,
    /// This process's own name, under which it registers `host_id` ([`Service::register_host`]):
    /// two processes given one `host_id` are told apart by it.
    instance: String,
    /// The owner of this process's leases in the store: `host_id/instance`. A process's own,
    /// so that even two processes given one `host_id` never take each other's leases for their
    /// own, and a takeover between them moves the task's revision on as any takeover does.
    owner: String,
    /// Whether this process holds its registration (until it stops): held across each renewal
    /// (until its answer is taken in) and the removal at stop, so that no renewal under way puts
    /// the row back once it is gone, nor the starting format back once the claiming one is
    /// registered.
    registered: tokio::sync::Mutex<bool>,
    /// Whether this process claims tasks yet ([`Service::begin_claiming`]): it registers its
    /// build's [`WRITE_FORMAT`] from then on, and 0 before ([`Cluster::format`]).
    claiming: AtomicBool,
    /// Whether this process still holds `host_id` as far as it can tell ([`Cluster::name_lost`]).
    name: Mutex<NameHeld>,
    /// How long a claim holds without renewal.
    pub(crate) lease: Duration,
    poll: Duration,
    batch: u32,
    wake: Notify,
    held: Mutex<Held>,
    /// Tasks whose last drives here ended on a storage failure, with how many in a row: each is
    /// held that much longer before it is released to be claimed again ([`redrive_delay`]).
    failing: Mutex<HashMap<String, u32>>,
    generation: AtomicU64,
    /// The steps stamp the catalog was loaded at.
    steps_stamp: tokio::sync::Mutex<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host_id", &self.host_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What this process knows of its registration: its hold on its `host_id`, and whether a host
/// of a newer build serves beside it.
#[derive(Debug, Default)]
struct NameHeld {
    /// When the last registration the store accepted was sent: the store saw this process then
    /// or later, so no other process can have taken the name until a lease after it.
    renewed: Option<Instant>,
    /// Why the last registration was refused: another process holds the name now.
    taken: Option<String>,
    /// The newest format another live host registered, when newer than this build's
    /// [`WRITE_FORMAT`] ([`Cluster::superseded`]).
    newer: Option<u32>,
    /// The format of the last registration the store accepted: until it is this build's, the
    /// older hosts do not stand aside for this one, and it claims nothing.
    format: u32,
}

impl NameHeld {
    /// Why the name is not held now, with registrations fresh for `lease` ([`Cluster::name_lost`]).
    fn lost(&self, lease: Duration) -> Option<NameLost> {
        if let Some(why) = &self.taken {
            return Some(NameLost::Taken(why.clone()));
        }
        let ago = self.renewed.map_or(Duration::MAX, |sent| sent.elapsed());
        (ago >= lease).then_some(NameLost::Lapsed(ago))
    }
}

/// Why this process does not hold its `host_id` now ([`Cluster::name_lost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameLost {
    /// Another process registered under it (this one was not seen for a lease: paused, cut
    /// off): the store's refusal.
    Taken(String),
    /// No registration of it was accepted for a lease (the store unreachable, this process
    /// paused): another process may have taken it meanwhile.
    Lapsed(Duration),
}

impl std::fmt::Display for NameLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameLost::Taken(why) => write!(f, "another process took this host's host_id: {why}"),
            NameLost::Lapsed(ago) => write!(
                f,
                "the registration of this host's host_id was last accepted {} ms ago, more than a lease",
                ago.as_millis()
            ),
        }
    }
}

/// The hosts sharing this host's store, as `GET /v1/hosts` shows them ([`Service::hosts`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hosts {
    /// Whether the store is shared (PostgreSQL): a host of its own lists none.
    pub shared: bool,
    /// Whether the answering host stands aside for a live host of a newer format
    /// ([`Cluster::superseded`]).
    pub superseded: bool,
    /// The format of what this host's build writes ([`WRITE_FORMAT`]).
    pub format: u32,
    /// Each host registered on the store, by name.
    pub hosts: Vec<HostShown>,
}

/// One host registered on a shared store ([`Hosts`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostShown {
    /// Its `host_id`.
    pub host_id: String,
    /// Seen within its lease, as the claims judge it: it serves. Else it died or lost the store
    /// (a host that stops removes its row); its tasks' leases lapse, and others take them.
    pub live: bool,
    /// How long ago the store last saw it, in milliseconds.
    pub seen_ms_ago: u64,
    /// Its lease, in milliseconds.
    pub lease_ms: u64,
    /// The format of what it writes; 0 while it starts (or a build before formats). A live host
    /// of a format above this host's makes it stand aside.
    pub format: u32,
    /// The running tasks it holds a lease on now.
    pub tasks: u64,
    /// Whether it is the host answering.
    pub this: bool,
}

/// Names a live host of format `newer`, newer than this build's, for what this one says of it.
pub(crate) fn newer_host(newer: u32) -> String {
    format!("a host of a newer version (it writes format {newer}, this one {WRITE_FORMAT})")
}

/// A name for this host: the configured one, else [`process_name`].
fn host_id(configured: Option<&str>) -> String {
    match configured.filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => process_name(),
    }
}

/// A name no other process has: hostname, process id and a part from the clock.
fn process_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = chrono::Utc::now().timestamp_subsec_nanos();
    format!("{hostname}-{}-{:05x}", std::process::id(), nanos & 0xfffff)
}

impl Cluster {
    /// This host's settings.
    pub(crate) fn new(settings: &ClusterSection) -> Cluster {
        let host_id = host_id(settings.host_id.as_deref());
        let instance = process_name();
        Cluster {
            owner: format!("{host_id}/{instance}"),
            host_id,
            instance,
            registered: tokio::sync::Mutex::new(false),
            claiming: AtomicBool::new(false),
            name: Mutex::new(NameHeld::default()),
            lease: Duration::from_millis(settings.lease_ms.max(100)),
            poll: Duration::from_millis(settings.poll_ms.max(10)),
            batch: settings.claim_batch.max(1),
            wake: Notify::new(),
            held: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            steps_stamp: tokio::sync::Mutex::new(String::new()),
        }
    }

    /// Why this process does not hold its `host_id` now, if it does not: then it claims no task,
    /// renews no lease and drives nothing (the renewals stop its drives within a quarter lease),
    /// until it holds the name again. The leases are the process's own (`owner`), so two
    /// processes of one name cannot take each other's tasks for their own; but their run
    /// records, metrics and logs would mix, so the one that was not seen for a lease, whose name
    /// another process may have taken, is the one that stops.
    pub(crate) fn name_lost(&self) -> Option<NameLost> {
        self.name_held().lost(self.lease)
    }

    /// Records a registration of `format` sent at `sent` and accepted; answers why the name was
    /// lost before, when it was.
    fn name_renewed(&self, sent: Instant, format: u32) -> Option<NameLost> {
        let mut name = self.name_held();
        let lost = name.lost(self.lease);
        name.renewed = Some(sent);
        name.taken = None;
        name.format = format;
        lost
    }

    /// The format this process registers: 0 while it starts, so that the hosts of an older
    /// build serve on while an upgraded one compiles its steps; its build's [`WRITE_FORMAT`]
    /// once it claims tasks, and with them may write what those hosts cannot read.
    fn format(&self) -> u32 {
        if self.claiming.load(Ordering::Acquire) {
            WRITE_FORMAT
        } else {
            0
        }
    }

    /// The format of a live host of a newer build than this one, if one serves on the store:
    /// this process then claims no task (those it drives finish), and is not ready, since a
    /// task a newer host wrote may hold what this build cannot read. An upgrade one host at a
    /// time thus moves the work onto the new hosts as they start.
    pub(crate) fn superseded(&self) -> Option<u32> {
        self.name_held().newer
    }

    /// Records `newest`, the newest format another live host registered; answers whether this
    /// process is superseded now, when that changed.
    fn newest_seen(&self, newest: u32) -> Option<bool> {
        let newer = (newest > WRITE_FORMAT).then_some(newest);
        let was = std::mem::replace(&mut self.name_held().newer, newer);
        (was.is_some() != newer.is_some()).then_some(newer.is_some())
    }

    /// Whether this process claims tasks now: it holds its name, the store has its format
    /// (the claim query of an older host skips from then on), and no newer host serves.
    fn claims(&self) -> bool {
        let held = self.name_held();
        held.lost(self.lease).is_none() && held.newer.is_none() && held.format == WRITE_FORMAT
    }

    fn name_held(&self) -> std::sync::MutexGuard<'_, NameHeld> {
        self.name.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a registration refused because another process holds the name (`why`); answers
    /// whether it was held until now.
    fn name_taken(&self, why: String) -> bool {
        let mut held = self.name_held();
        // What a registration refused saw of the other hosts is not known.
        held.newer = None;
        held.taken.replace(why).is_none()
    }

    /// Stops every drive here (the name they were claimed under may be another process's now).
    fn lose_all(&self) -> usize {
        let mut held = self.held();
        let count = held.len();
        for (_, (_, stop)) in held.drain() {
            let _ = stop.send(());
        }
        count
    }

    /// Wakes the claim loop (a task may be waiting for a worker).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how a drive of `id` here ended; returns how many drives of it in a row ended on
    /// a storage failure (0 after one that did not).
    fn drive_ended(&self, id: &str, failed: bool) -> u32 {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if !failed {
            failing.remove(id);
            return 0;
        }
        if failing.len() >= FAILING_KEPT && !failing.contains_key(id) {
            // Tasks that failed here and then settled on other hosts leave their counts behind:
            // forgetting them all now and then costs a shorter delay at most.
            failing.clear();
        }
        let count = failing.entry(id.to_string()).or_default();
        *count += 1;
        *count
    }

    /// Stops driving `id` here if generation `generation` still drives it; answers whether it
    /// did (else the drive was stopped already: its lease lost, the name lost, or a newer drive
    /// of the task under way).
    fn lose(&self, id: &str, generation: u64) -> bool {
        let mut held = self.held();
        if held.get(id).is_some_and(|(g, _)| *g == generation)
            && let Some((_, stop)) = held.remove(id)
        {
            let _ = stop.send(());
            return true;
        }
        false
    }
}

impl Service {
    /// This host's side of the cluster, when the store is shared.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// The format of a live host of a newer build than this one, when one serves on the store
    /// ([`Cluster::superseded`]; `None` on an unshared store).
    pub(crate) fn superseded(&self) -> Option<u32> {
        self.cluster().and_then(|c| c.superseded())
    }

    /// The hosts registered on the store, and which of them answers ([`Hosts`]).
    pub async fn hosts(&self) -> Result<Hosts, ServiceError> {
        let seen = self.inner.store.hosts().await?;
        let cluster = self.cluster();
        let hosts = seen
            .into_iter()
            .map(|host| HostShown {
                this: cluster.is_some_and(|c| c.host_id == host.host_id && c.instance == host.instance),
                live: host.live,
                host_id: host.host_id,
                seen_ms_ago: host.seen_ms_ago,
                lease_ms: host.lease_ms,
                format: host.format,
                tasks: host.tasks,
            })
            .collect();
        Ok(Hosts {
            shared: cluster.is_some(),
            superseded: self.superseded().is_some(),
            format: WRITE_FORMAT,
            hosts,
        })
    }

    /// This host's name among the hosts sharing the store (`None` on an unshared store).
    pub fn host_id(&self) -> Option<&str> {
        self.cluster().map(|c| c.host_id.as_str())
    }

    /// Registers this process under its `host_id` in the store ([`Store::register_host`]), so
    /// that a second process given the same one is refused. A process of that name that is no
    /// longer seen (one that crashed, restarted now under its configured name) is waited for,
    /// at most a lease and a half: renewed every quarter of a lease ([`keep_registered`]), a
    /// live one never lapses.
    ///
    /// [`Store::register_host`]: crate::store::Store::register_host
    pub(crate) async fn register_host(&self) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster().cloned() else {
            return Ok(());
        };
        let patience = cluster.lease + cluster.lease / 2;
        let started = tokio::time::Instant::now();
        let mut told = false;
        loop {
            let sent = Instant::now();
            let format = cluster.format();
            match self
                .inner
                .store
                .register_host(&cluster.host_id, &cluster.instance, cluster.lease, format)
                .await
            {
                Err(StoreError::Conflict(why)) if started.elapsed() < patience => {
                    if !told {
                        eprintln!(
                            "whenever serve: {why}; waiting up to {patience:?} in case it is this \
                             host's previous process, stopped without a word"
                        );
                        told = true;
                    }
                    tokio::time::sleep(cluster.lease / 8).await;
                }
                Err(StoreError::Conflict(why)) => return Err(ServiceError::Invalid(why)),
                Err(e) => return Err(e.into()),
                Ok(newest) => {
                    cluster.name_renewed(sent, format);
                    if let Some(change) = cluster.newest_seen(newest) {
                        tell_superseded(&cluster, change);
                    }
                    break;
                }
            }
        }
        *cluster.registered.lock().await = true;
        // Renewed from now on: what the start does next (compiling steps) may take a lease.
        self.spawn(keep_registered(Arc::downgrade(&self.inner), cluster));
        Ok(())
    }

    /// Ends this process's registration of its `host_id` (a stop), so that the name is free at
    /// once for its next process.
    pub(crate) async fn unregister_host(&self) {
        let Some(cluster) = self.cluster() else { return };
        let mut registered = cluster.registered.lock().await;
        if !std::mem::replace(&mut *registered, false) {
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .unregister_host(&cluster.host_id, &cluster.instance)
            .await
        {
            eprintln!(
                "whenever serve: cannot end the registration of host_id {}: {e}",
                cluster.host_id
            );
        }
    }

    /// Starts the claim loop, the lease renewals and the listener for other hosts' changes.
    pub(crate) async fn start_cluster(&self) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster().cloned() else {
            return Ok(());
        };
        self.reload_steps().await?;
        let weak = Arc::downgrade(&self.inner);
        if let Some(events) = self.inner.store.events() {
            self.spawn(listen(weak.clone(), cluster.clone(), events));
        }
        self.spawn(renew(weak.clone(), cluster.clone()));
        self.spawn(claim(weak, cluster));
        Ok(())
    }

    /// Registers this build's [`WRITE_FORMAT`] from now on, at once: the hosts of an older
    /// build claim nothing from then on, and this one claims. Made once the steps are compiled
    /// and loaded, so that the older hosts claim on while an upgraded one starts, and before it
    /// writes anything; tried again for a lease, after which the start fails: a host whose
    /// format the store does not have must write nothing.
    pub(crate) async fn begin_claiming(&self, cluster: &Arc<Cluster>) -> Result<(), ServiceError> {
        cluster.claiming.store(true, Ordering::Release);
        let started = Instant::now();
        let mut failing = false;
        loop {
            if !renew_registration(&self.inner, cluster, &mut failing).await {
                return Err(StoreError::Unavailable(
                    "the host gave its host_id up while it started: it writes nothing".to_string(),
                )
                .into());
            }
            if cluster.name_held().format == WRITE_FORMAT {
                return Ok(());
            }
            if started.elapsed() >= cluster.lease {
                return Err(StoreError::Unavailable(format!(
                    "the store did not take this host's registration as host_id {} writing format \
                     {WRITE_FORMAT} within a lease ({} ms); see above",
                    cluster.host_id,
                    cluster.lease.as_millis()
                ))
                .into());
            }
            tokio::time::sleep(cluster.lease / 8).await;
        }
    }

    /// Loads the steps the store serves now (new versions: a new manifest is one too) and drops
    /// the removed ones, remembering the stamp they were read at; answers the names of the
    /// steps that serve another version now. Only the new versions' components are read: the
    /// others are loaded already.
    pub(crate) async fn reload_steps(&self) -> Result<Vec<String>, ServiceError> {
        self.reload_steps_but(&[]).await
    }

    /// [`Service::reload_steps`], but for the steps named in `replaced` (a start's new versions
    /// of them are compiled already, and about to be stored).
    pub(crate) async fn reload_steps_but(&self, replaced: &[&str]) -> Result<Vec<String>, ServiceError> {
        let Some(cluster) = self.cluster() else {
            self.load_current_steps().await?;
            return Ok(Vec::new());
        };
        let _deploying = self.inner.deploys.lock().await;
        let mut loaded_stamp = cluster.steps_stamp.lock().await;
        let stamp = self.inner.store.steps_stamp().await?;
        let mut current = self.inner.store.step_versions(None).await?;
        current.retain(|v| v.current);
        let catalog = self.inner.scheduler.catalog();
        // The first load, at start, is no news for the log.
        let starting = loaded_stamp.is_empty();
        let mut changed = Vec::new();
        for step in catalog.snapshot().iter() {
            if !current.iter().any(|v| v.name == step.name) {
                catalog.remove(&step.name);
            }
        }
        for serving in current {
            if replaced.contains(&serving.name.as_str()) {
                continue;
            }
            if catalog
                .get(&serving.name)
                // The version, not the manifests: the loaded step's is narrowed by the operator's
                // config, the store's as deployed, and they differ wherever the config narrows.
                .is_some_and(|s| s.version == serving.version)
            {
                continue;
            }
            let Some(version) = self.inner.store.step_version(&serving.name, &serving.version).await? else {
                // Gone since the listing: a change the next reload (its notice) takes in.
                continue;
            };
            let name = version.name.clone();
            match self
                .inner
                .scheduler
                .runtime()
                .load_stored(&version.name, &version.component, version.manifest, &version.version)
                .await
            {
                Ok(step) => {
                    if !starting {
                        eprintln!(
                            "whenever serve: loaded step {name} version {} (deployed through the store)",
                            step.version
                        );
                    }
                    catalog.insert(step);
                    changed.push(name);
                }
                Err(refused) => match catalog.get(&name) {
                    // A new version that does not load here: the one loaded before serves on.
                    Some(serving) => eprintln!(
                        "whenever serve: step {name}'s version {} does not load on this host, which \
                         serves version {} of it still: {refused}",
                        version.version, serving.version
                    ),
                    None => super::steps::not_loaded(&name, &version.version, &refused),
                },
            }
        }
        *loaded_stamp = stamp;
        Ok(changed)
    }

    /// Reloads the steps when the store serves others than those loaded.
    async fn sync_steps(&self, cluster: &Cluster) {
        let stamp = match self.inner.store.steps_stamp().await {
            Ok(stamp) => stamp,
            Err(e) => {
                eprintln!("whenever serve: cannot read the steps stamp: {e}");
                return;
            }
        };
        if *cluster.steps_stamp.lock().await == stamp {
            return;
        }
        match self.reload_steps().await {
            // The host that deployed it re-evaluates the tasks too, and so does every other: the
            // work is not lost with the host that began it.
            Ok(changed) => changed.into_iter().for_each(|name| self.spawn_reevaluation(Some(name))),
            Err(e) => eprintln!("whenever serve: cannot reload the steps: {e}"),
        }
    }

    /// Claims tasks while workers are free, and drives each on one.
    async fn claim_available(&self, cluster: &Arc<Cluster>) {
        loop {
            // A process that may have lost its name to another claims nothing under it, nor one a
            // newer host superseded.
            if self.is_stopping() || !cluster.claims() {
                return;
            }
            let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
            while permits.len() < cluster.batch as usize {
                match self.inner.workers.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if permits.is_empty() {
                return;
            }
            let wanted = permits.len();
            let ids = match self
                .inner
                .store
                .claim_tasks(&cluster.owner, wanted as u32, cluster.lease)
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    eprintln!("whenever serve: cannot claim tasks: {e}");
                    return;
                }
            };
            if ids.is_empty() {
                return;
            }
            if cluster.name_lost().is_some() {
                // Lost while the claim was under way: the leases are left to lapse.
                return;
            }
            if cluster.superseded().is_some() {
                // Superseded while the claim was under way: the tasks are the newer hosts' at once,
                // but for one a drive here holds still (its lease had lapsed and was taken back).
                let driven: Vec<String> = {
                    let held = cluster.held();
                    ids.iter().filter(|id| held.contains_key(*id)).cloned().collect()
                };
                for id in ids.iter().filter(|id| !driven.contains(id)) {
                    if let Err(e) = self.inner.store.release_task(id, &cluster.owner).await {
                        eprintln!("whenever serve: task {id}: cannot release it: {e}");
                    }
                }
                return;
            }
            let claimed = ids.len();
            self.sync_steps(cluster).await;
            for id in ids {
                let Some(permit) = permits.pop() else { break };
                self.spawn_claimed(cluster, id, permit);
            }
            if claimed < wanted {
                return;
            }
        }
    }

    /// Drives a claimed task on a worker until it settles or the lease is lost, then ends the lease.
    fn spawn_claimed(&self, cluster: &Arc<Cluster>, id: String, permit: OwnedSemaphorePermit) {
        let (stop, stopped) = oneshot::channel();
        let generation = cluster.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut held = cluster.held();
            if held.contains_key(&id) {
                // Already driven here (its lease had lapsed and this host took it again).
                return;
            }
            held.insert(id.clone(), (generation, stop));
        }
        let service = self.clone();
        let cluster = cluster.clone();
        let placed = id.clone();
        self.spawn_driving(&placed, async move {
            // Held until the lease is released: a stop waits for every permit, so the task is
            // released before the host exits.
            let _permit = permit;
            let mut failed = false;
            tokio::select! {
                result = service.unless_stopped(service.drive_stored(&id)) => match result {
                    Some(Ok(_)) => {}
                    // A save refused because another host took the task over (a takeover moves
                    // its revision on) is a lease lost, not a failing store: the holder drives it.
                    Some(Err(e)) if cluster.name_lost().is_some() => eprintln!(
                        "whenever serve: task {id}: stopped driving it (this process may no longer \
                         hold its host_id) ({e})"
                    ),
                    Some(Err(e)) => match service
                        .inner
                        .store
                        .renew_leases(&cluster.owner, std::slice::from_ref(&id), cluster.lease)
                        .await
                    {
                        Ok(held) if held.is_empty() => eprintln!(
                            "whenever serve: task {id}: lease lost (another host took it over); stopped \
                             driving it ({e})"
                        ),
                        _ => {
                            failed = true;
                            eprintln!("whenever serve: task {id}: {e}");
                        }
                    },
                    // The host stopped and the grace is over: the lease is released below, so
                    // another host takes the task over at once.
                    None => eprintln!("whenever serve: task {id}: released for another host (this host is stopping)"),
                },
                _ = stopped => {
                    // A renewal that ran while the final save settled the task misses it too:
                    // only a task still running was really lost.
                    let running = match service.inner.store.get_task(&id).await {
                        Ok(Some(stored)) => stored.task.status == TaskStatus::Running,
                        Ok(None) => false,
                        Err(_) => true,
                    };
                    if let Some(lost) = cluster.name_lost() {
                        eprintln!("whenever serve: task {id}: stopped driving it: {lost}");
                    } else if running {
                        eprintln!("whenever serve: task {id}: lease lost (another host took it over); stopped driving it");
                    }
                }
            }
            let failures = cluster.drive_ended(&id, failed);
            if failed {
                // The store failed (a full disk, a lost connection): what it committed last is
                // whole, and the task is driven again from there, by whichever host claims it
                // once it is released. Held (its lease renewed) a while first, so that a store
                // that stays down is not hammered by claim after failed drive.
                service.inner.metrics.drive_failed();
                let delay = redrive_delay(failures - 1);
                eprintln!(
                    "whenever serve: task {id}: released to be driven again from its last commit in {} s",
                    delay.as_secs_f64()
                );
                let mut phase = service.inner.phase.subscribe();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = phase.wait_for(|p| *p != Phase::Serving) => {}
                }
            }
            // Released only by the drive that still held it here: one stopped already lost it,
            // or left it to lapse (the name lost), or a newer drive of the task holds it now.
            let holding = cluster.lose(&id, generation);
            if holding
                && cluster.name_lost().is_none()
                && let Err(e) = service.inner.store.release_task(&id, &cluster.owner).await
            {
                eprintln!("whenever serve: task {id}: cannot release it: {e}");
            }
            service.announce_settled(id);
            cluster.wake();
        });
    }
}

/// The claim loop: claims whenever woken, and every poll interval.
async fn claim(service: Weak<Inner>, cluster: Arc<Cluster>) {
    loop {
        {
            let Some(inner) = service.upgrade() else { return };
            Service { inner }.claim_available(&cluster).await;
        }
        tokio::select! {
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep(cluster.poll) => {}
        }
    }
}

/// Renews the leases of the tasks driven here every quarter of the lease; stops the drives of
/// tasks lost, and of all when renewals have failed for a whole lease.
async fn renew(service: Weak<Inner>, cluster: Arc<Cluster>) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cluster.lease / 4).await;
        let Some(inner) = service.upgrade() else { return };
        if let Some(lost) = cluster.name_lost() {
            // A process that may have lost its name drives nothing: whatever is driven here
            // stops, and the tasks' leases are left to lapse for the name's holder or any host.
            let stopped = cluster.lose_all();
            if stopped > 0 {
                eprintln!("whenever serve: stopped driving {stopped} tasks: {lost}");
            }
            last_renewed = tokio::time::Instant::now();
            continue;
        }
        let held: Vec<(String, u64)> = cluster.held().iter().map(|(id, (g, _))| (id.clone(), *g)).collect();
        if held.is_empty() {
            last_renewed = tokio::time::Instant::now();
            continue;
        }
        let ids: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
        let renewed = inner.store.renew_leases(&cluster.owner, &ids, cluster.lease).await;
        if last_renewed.elapsed() > cluster.lease / 2 {
            // Starved (an overloaded host or database): the leases came close to lapsing.
            eprintln!(
                "whenever serve: leases renewed {:?} apart (lease {:?})",
                last_renewed.elapsed(),
                cluster.lease
            );
        }
        match renewed {
            Ok(still) => {
                last_renewed = tokio::time::Instant::now();
                for (id, generation) in &held {
                    if !still.contains(id) {
                        cluster.lose(id, *generation);
                    }
                }
            }
            Err(e) => {
                eprintln!("whenever serve: cannot renew leases: {e}");
                if last_renewed.elapsed() >= cluster.lease {
                    for (id, generation) in &held {
                        cluster.lose(id, *generation);
                    }
                }
            }
        }
    }
}

/// Renews this process's registration of its `host_id` every quarter of the lease (the upsert
/// made at start, with the format it writes now), until the service gave its name up
/// ([`Service::unregister_host`]). When another process holds the name (it took it while this
/// one was not seen for a lease), this one stops driving and claiming ([`Cluster::name_lost`])
/// and tries again, every quarter lease, to take the name back once the other has stopped.
async fn keep_registered(service: Weak<Inner>, cluster: Arc<Cluster>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(cluster.lease / 4).await;
        let Some(inner) = service.upgrade() else { return };
        if !renew_registration(&inner, &cluster, &mut failing).await {
            return;
        }
    }
}

/// Registers this process once more, with the format it writes now ([`Cluster::format`]), and
/// takes in what the store answered; `failing`: whether the last renewal failed (a failure is
/// told once). Answers false once the service gave its name up.
async fn renew_registration(inner: &Inner, cluster: &Arc<Cluster>, failing: &mut bool) -> bool {
    let registered = cluster.registered.lock().await;
    if !*registered {
        return false;
    }
    let sent = Instant::now();
    let format = cluster.format();
    let renewed = inner
        .store
        .register_host(&cluster.host_id, &cluster.instance, cluster.lease, format)
        .await;
    // Held until what the store answered is taken in: a reply to an earlier registration (one
    // of the starting format, say) must not be taken in after a later one's.
    let _registered = registered;
    match renewed {
        Ok(newest) => {
            *failing = false;
            let could_claim = cluster.claims();
            // What it saw of the others first: a claim woken by the name regained must not go
            // ahead on a host superseded meanwhile.
            let superseded = cluster.newest_seen(newest);
            let regained = cluster.name_renewed(sent, format);
            if let Some(lost) = &regained {
                eprintln!(
                    "whenever serve: host_id {} is this process's again ({lost} before){}",
                    cluster.host_id,
                    if cluster.claims() { ": claiming tasks again" } else { "" }
                );
            }
            if let Some(change) = superseded {
                tell_superseded(cluster, change);
            }
            if cluster.claims() && !could_claim {
                cluster.wake();
            }
        }
        Err(StoreError::Conflict(why)) => {
            if cluster.name_taken(why.clone()) {
                let stopped = cluster.lose_all();
                eprintln!(
                    "whenever serve: another process took host_id {} while this one was not seen \
                     for a lease ({why}): this one claims no task and drives none (it stopped \
                     {stopped}), and is not ready, until it can take the name back (once the \
                     other stops); give every host its own host_id",
                    cluster.host_id
                );
            }
        }
        Err(e) if !*failing => {
            *failing = true;
            eprintln!(
                "whenever serve: cannot renew the registration of host_id {}: {e}",
                cluster.host_id
            );
        }
        Err(_) => {}
    }
    true
}

/// Says that a host of a newer build serves beside this one now (`superseded`), or no longer.
fn tell_superseded(cluster: &Cluster, superseded: bool) {
    match cluster.superseded() {
        Some(newer) if superseded => eprintln!(
            "whenever serve: {} serves on this store, and this one may not read what it writes: \
             this one claims no more tasks, lets those it drives finish, and is not ready; stop \
             it, or upgrade it",
            newer_host(newer)
        ),
        _ => eprintln!(
            "whenever serve: no host of a newer version serves on this store any more{}",
            if cluster.claims() { ": claiming tasks again" } else { "" }
        ),
    }
}

/// Hears other hosts' changes: claimable tasks wake the claim loop; changed steps are reloaded.
async fn listen(service: Weak<Inner>, cluster: Arc<Cluster>, mut events: broadcast::Receiver<StoreEvent>) {
    loop {
        let event = events.recv().await;
        let steps_changed = match event {
            Ok(StoreEvent::TasksAvailable) => false,
            Ok(StoreEvent::StepsChanged) => true,
            Ok(StoreEvent::TaskSettled(id)) => {
                let Some(inner) = service.upgrade() else { return };
                inner.settle_waiters.settled(&id);
                continue;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Whatever was missed: new work, a deploy, settled tasks someone waits for.
                if let Some(inner) = service.upgrade() {
                    inner.settle_waiters.wake_all();
                }
                cluster.wake();
                true
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if steps_changed {
            let Some(inner) = service.upgrade() else { return };
            // Also said when the store's listener (re)connects, after which a settle notified
            // while it was away is lost: the waiters read their tasks again.
            inner.settle_waiters.wake_all();
            // Reloaded only if the store serves others than those loaded: the store announces a
            // possible change when it starts listening, too.
            (Service { inner }).sync_steps(&cluster).await;
        } else {
            cluster.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_drives_are_counted_in_a_row_per_task_and_kept_within_bounds() {
        let cluster = Cluster::new(&ClusterSection::default());
        assert_eq!(cluster.drive_ended("a", true), 1);
        assert_eq!(cluster.drive_ended("a", true), 2);
        assert_eq!(cluster.drive_ended("b", true), 1);
        assert_eq!(cluster.drive_ended("a", false), 0);
        assert_eq!(cluster.drive_ended("a", true), 1, "a success starts the count again");
        for n in 0..FAILING_KEPT {
            cluster.drive_ended(&format!("t{n}"), true);
        }
        let kept = cluster.failing.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert!(kept <= FAILING_KEPT, "{kept} counts kept");
    }

    #[test]
    fn the_name_is_held_from_an_accepted_registration_for_a_lease_and_not_once_taken() {
        let cluster = Cluster::new(&ClusterSection {
            lease_ms: 200,
            host_id: Some("web-1".into()),
            ..ClusterSection::default()
        });
        assert!(cluster.owner.starts_with("web-1/"), "{}", cluster.owner);
        assert!(
            matches!(cluster.name_lost(), Some(NameLost::Lapsed(_))),
            "never registered"
        );
        assert!(
            cluster.name_renewed(Instant::now(), WRITE_FORMAT).is_some(),
            "it was not held before"
        );
        assert_eq!(cluster.name_lost(), None);
        // Sent more than a lease ago: another process may have taken it since.
        let long_ago = Instant::now() - Duration::from_millis(300);
        assert_eq!(cluster.name_renewed(long_ago, WRITE_FORMAT), None, "it was held before");
        assert!(matches!(cluster.name_lost(), Some(NameLost::Lapsed(ago)) if ago >= cluster.lease));
        cluster.name_renewed(Instant::now(), WRITE_FORMAT);
        // Refused: taken, however recent the last registration accepted.
        assert!(cluster.name_taken("in use".into()), "held until now");
        assert!(!cluster.name_taken("in use".into()), "told once");
        assert_eq!(cluster.name_lost(), Some(NameLost::Taken("in use".into())));
        assert!(
            matches!(
                cluster.name_renewed(Instant::now(), WRITE_FORMAT),
                Some(NameLost::Taken(_))
            ),
            "taken back, and said what it was"
        );
        assert_eq!(cluster.name_lost(), None);
    }

    #[test]
    fn a_process_claims_while_it_holds_its_name_registered_as_claiming_and_no_newer_host_serves() {
        let cluster = Cluster::new(&ClusterSection::default());
        assert!(!cluster.claims(), "never registered");
        assert_eq!(cluster.format(), 0, "a starting process writes nothing yet");
        cluster.name_renewed(Instant::now(), 0);
        assert!(!cluster.claims(), "the older hosts do not stand aside for it yet");
        cluster.claiming.store(true, Ordering::Release);
        assert_eq!(cluster.format(), WRITE_FORMAT);
        cluster.name_renewed(Instant::now(), WRITE_FORMAT);
        assert!(cluster.claims());
        assert_eq!(cluster.newest_seen(0), None, "no other host: nothing changed");
        assert_eq!(cluster.newest_seen(WRITE_FORMAT), None, "hosts of its own version");
        assert!(cluster.claims());
        assert_eq!(cluster.newest_seen(WRITE_FORMAT + 1), Some(true), "superseded now");
        assert_eq!(cluster.newest_seen(WRITE_FORMAT + 2), None, "superseded still");
        assert_eq!(cluster.superseded(), Some(WRITE_FORMAT + 2));
        assert!(!cluster.claims());
        assert_eq!(cluster.name_lost(), None, "its name is its own all along");
        assert_eq!(cluster.newest_seen(WRITE_FORMAT), Some(false), "the newer host is gone");
        assert!(cluster.claims());
    }

    #[test]
    fn a_drive_is_lost_once_and_only_by_its_own_generation() {
        let cluster = Cluster::new(&ClusterSection::default());
        let (stop, _stopped) = oneshot::channel();
        cluster.held().insert("t".into(), (7, stop));
        assert!(!cluster.lose("t", 6), "another generation's drive");
        assert!(cluster.lose("t", 7));
        assert!(!cluster.lose("t", 7), "stopped already");
        let (stop, _stopped) = oneshot::channel();
        cluster.held().insert("u".into(), (8, stop));
        assert_eq!(cluster.lose_all(), 1);
        assert!(!cluster.lose("u", 8), "stopped with the rest");
    }
}
