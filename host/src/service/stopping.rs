//! Stopping the service gracefully (`whenever serve` on SIGTERM or Ctrl-C): no drive starts any
//! more, the drives under way get a grace period to finish, and whoever waits for a task is
//! answered. A task still running after that stays running in the store and resumes at the next
//! start, as after a crash; in a cluster its lease is released, so another host takes it over at
//! once instead of after the lease.
//!
//! Why: a supervisor (systemd, Kubernetes, a deploy script) stops a service with SIGTERM. Without
//! this, every run in flight was cut off and re-run at the next start, and in a cluster the
//! stopped host's tasks stalled for a whole lease before another host took them.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::Service;

/// How long a stopped service waits for its abandoned drives to end (in a cluster, after
/// releasing their tasks' leases).
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// Where the service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Driving tasks.
    Serving,
    /// Told to stop: no drive starts; those under way may finish.
    Draining,
    /// The grace is over: drives still under way are abandoned.
    Stopped,
}

/// Resolves once the service's phase satisfies `wanted` (at once if it does already); never if
/// the service is gone.
pub(crate) async fn reached(phase: &mut watch::Receiver<Phase>, wanted: impl FnMut(&Phase) -> bool) {
    if phase.wait_for(wanted).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How a graceful stop went ([`Service::stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Drives under way on this host when the stop began.
    pub under_way: usize,
    /// Of those, the drives still under way when the grace ran out: their tasks stay running in
    /// the store and resume at the next start.
    pub interrupted: usize,
}

impl Service {
    /// How many drives are under way on this host now (each holds one of the
    /// `max_concurrent_tasks` workers).
    pub fn drives_under_way(&self) -> usize {
        self.inner
            .worker_count
            .saturating_sub(self.inner.workers.available_permits())
    }

    /// Whether the service was told to stop ([`Service::stop`]): it starts no drive any more.
    pub fn is_stopping(&self) -> bool {
        *self.inner.phase.borrow() != Phase::Serving
    }

    /// Takes the host out of its balancers' rotation ahead of a stop: `/readyz` answers 503
    /// (`serving: draining`) from now on, while everything else goes on as before
    /// (`[server] drain_ms`).
    pub fn leave_rotation(&self) {
        self.inner.leaving.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Service::leave_rotation`] was called.
    pub fn is_leaving_rotation(&self) -> bool {
        self.inner.leaving.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops driving tasks. From now on no drive starts: a task created, patched or resumed
    /// meanwhile is stored as running and driven at the next start. The drives under way get up
    /// to `grace` to finish; those still under way then are abandoned, as a crash would abandon
    /// them (in a cluster, their leases are released for the other hosts), so that once this
    /// returns no drive of this service is under way. Whoever waits for a task that is not being
    /// driven is answered with it as it is. A second call returns at once with nothing under
    /// way.
    pub async fn stop(&self, grace: Duration) -> Stopped {
        let first = self.inner.phase.send_if_modified(|phase| {
            let serving = *phase == Phase::Serving;
            if serving {
                *phase = Phase::Draining;
            }
            serving
        });
        if !first {
            return Stopped {
                under_way: 0,
                interrupted: 0,
            };
        }
        let under_way = self.drives_under_way();
        let finished = self.all_drives_ended(grace).await;
        let interrupted = if finished { 0 } else { self.drives_under_way() };
        // Drives still under way are abandoned: they stop at once (in a cluster, each releases
        // its task's lease first).
        self.inner.phase.send_replace(Phase::Stopped);
        if !finished {
            self.all_drives_ended(ABANDON_WAIT).await;
        }
        // Drives still waiting for a worker give up instead of starting.
        self.inner.workers.close();
        self.unregister_host().await;
        Stopped { under_way, interrupted }
    }

    /// Runs `drive` to its end, or until the service has stopped and the grace is over: then it
    /// is abandoned as a crash would abandon it (dropped at its next await), and `None` comes
    /// back; its task, running in the store, resumes at the next start.
    pub(crate) async fn unless_stopped<F: Future>(&self, drive: F) -> Option<F::Output> {
        let mut phase = self.inner.phase.subscribe();
        tokio::select! {
            output = drive => Some(output),
            _ = reached(&mut phase, |p| *p == Phase::Stopped) => None,
        }
    }

    /// Waits up to `limit` until no drive holds a worker. Drives queued for a worker before
    /// this call take one in turn and give it back at once (the service is stopping); once every
    /// worker is held here, the workers close, so that a drive queued after this call gives up
    /// rather than take a worker the moment these are given back (it did, for an instant, after
    /// the stop had returned).
    async fn all_drives_ended(&self, limit: Duration) -> bool {
        let total = u32::try_from(self.inner.worker_count).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, self.inner.workers.acquire_many(total)).await {
            Ok(Ok(all)) => {
                self.inner.workers.close();
                drop(all);
                true
            }
            _ => false,
        }
    }
}
