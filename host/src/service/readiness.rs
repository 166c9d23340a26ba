//! Whether this host should be sent work now (`GET /readyz`): it is serving, neither draining
//! ahead of a stop nor stopping; its store committed a write just now; no drive of it failed
//! for want of storage lately; and in a cluster, it holds its `host_id` (a process that lost it
//! to another drives nothing) and no host of a newer version serves beside it (it would claim
//! no task). A load
//! balancer or an orchestrator takes a host that is not ready out of rotation (another host of a
//! cluster takes the requests), while `/healthz` only says that the process answers.
//!
//! The store is asked with a real write ([`Store::probe`]) made the way task saves are made, so a
//! full disk, a lost database connection or a stuck writer show; reads alone would pass on a
//! full disk. One probe's answer is reused for [`REUSED_FOR`], so however often the host is
//! asked (several balancers, a client in a loop), it writes no more than once a second.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Service;
use super::cluster::{NameLost, newer_host};
use crate::store::StoreError;

/// How long the store gets to commit a probe; a slower store counts as not ready.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A drive that ended on a storage failure less than this long ago makes the host not ready,
/// even when the probe (a small write) got through: a nearly full disk may take it and refuse
/// the saves of tasks.
pub const FAILED_DRIVE_WINDOW: Duration = Duration::from_secs(5);

/// How long one probe's answer is reused.
const REUSED_FOR: Duration = Duration::from_secs(1);

/// Whether the host is ready, and each check's outcome (`GET /readyz`'s body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    /// `ready` when every check is `ok`, else `not_ready`.
    pub status: ReadyStatus,
    /// `ok`; `draining` once the host left its balancers' rotation ahead of a stop
    /// ([`Service::leave_rotation`]); `stopping` once the service was told to stop.
    pub serving: Check,
    /// The probe write: `ok`, `unavailable` (refused for now: a full disk, a lost connection),
    /// `failed` (any other error) or `timed_out` (not committed within [`PROBE_TIMEOUT`]).
    pub store: Check,
    /// `ok`, or `failing` when a drive ended on a storage failure within [`FAILED_DRIVE_WINDOW`].
    pub drives: Check,
    /// In a cluster, whether this process holds its `host_id`: `ok`; `taken` when another
    /// process registered under it; `lapsed` when no registration of it was accepted for a
    /// lease. Either way it claims and drives nothing. `ok` on a store no hosts share.
    pub host_id: Check,
    /// In a cluster, `ok`; `superseded` while a host of a newer version serves on the store
    /// ([`crate::store::WRITE_FORMAT`]): this one claims no task then, and lets those it drives
    /// finish. `ok` on a store no hosts share.
    pub version: Check,
    /// How long the probe took to commit, in milliseconds (absent when it did not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_ms: Option<f64>,
    /// Why a check did not pass (the store, the drives, the name, the version), for the log
    /// (not served: a storage error may name paths and hosts, and `/readyz` answers without a
    /// token).
    #[serde(skip)]
    pub reason: Option<String>,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Send it work.
    Ready,
    /// Do not, for now.
    NotReady,
}

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Passed.
    Ok,
    /// The host is about to stop, and serves meanwhile.
    Draining,
    /// The service is stopping.
    Stopping,
    /// The store refused the write for now.
    Unavailable,
    /// The store failed the write otherwise.
    Failed,
    /// The store did not commit the write in time.
    TimedOut,
    /// Drives ended on storage failures lately.
    Failing,
    /// Another process holds this host's `host_id`.
    Taken,
    /// This host's `host_id` was not renewed for a lease.
    Lapsed,
    /// A host of a newer version serves on the store.
    Superseded,
}

/// The last probe's answer, reused for [`REUSED_FOR`]; its lock is held while a probe is under
/// way, so callers meanwhile wait for that probe instead of making their own.
#[derive(Debug, Default)]
pub(crate) struct LastProbe {
    last: tokio::sync::Mutex<Option<Probed>>,
}

#[derive(Debug, Clone)]
struct Probed {
    at: Instant,
    store: Check,
    took: Option<Duration>,
    reason: Option<String>,
    /// Whether the host was ready at this probe, to log the changes only.
    ready: bool,
}

/// What a `serving` check that did not pass means, for the log.
fn describe(serving: Check) -> &'static str {
    match serving {
        Check::Draining => "draining ahead of a stop",
        _ => "stopping",
    }
}

impl Service {
    /// Whether this host should be sent work now, check by check (see the module docs). A change
    /// from ready to not ready, and back, is logged with its reason.
    pub async fn readiness(&self) -> Readiness {
        let mut last = self.inner.last_probe.last.lock().await;
        let probed = match &*last {
            Some(probed) if probed.at.elapsed() < REUSED_FOR => probed.clone(),
            _ => {
                let (store, took, reason) = self.probe_store().await;
                Probed {
                    at: Instant::now(),
                    store,
                    took,
                    reason,
                    ready: last.as_ref().is_none_or(|p| p.ready),
                }
            }
        };
        let serving = if self.is_stopping() {
            Check::Stopping
        } else if self.is_leaving_rotation() {
            Check::Draining
        } else {
            Check::Ok
        };
        let drives = if self.inner.metrics.drive_failed_within(FAILED_DRIVE_WINDOW) {
            Check::Failing
        } else {
            Check::Ok
        };
        let name_lost = self.cluster().and_then(|c| c.name_lost());
        let host_id = match &name_lost {
            None => Check::Ok,
            Some(NameLost::Taken(_)) => Check::Taken,
            Some(NameLost::Lapsed(_)) => Check::Lapsed,
        };
        let newer = self.superseded();
        let version = match newer {
            None => Check::Ok,
            Some(_) => Check::Superseded,
        };
        let ready = [serving, probed.store, drives, host_id, version]
            .iter()
            .all(|c| *c == Check::Ok);
        let reason = probed
            .reason
            .clone()
            .or_else(|| {
                (drives == Check::Failing).then(|| {
                    format!(
                        "a drive ended on a storage failure less than {} s ago",
                        FAILED_DRIVE_WINDOW.as_secs()
                    )
                })
            })
            .or_else(|| name_lost.map(|lost| lost.to_string()))
            .or_else(|| newer.map(|format| format!("{} serves on this store", newer_host(format))));
        if ready != probed.ready {
            match &reason {
                _ if ready => eprintln!("whenever serve: ready again"),
                Some(why) => eprintln!("whenever serve: not ready: {why}"),
                None => eprintln!("whenever serve: not ready: {}", describe(serving)),
            }
        }
        *last = Some(Probed {
            ready,
            ..probed.clone()
        });
        Readiness {
            status: if ready {
                ReadyStatus::Ready
            } else {
                ReadyStatus::NotReady
            },
            serving,
            store: probed.store,
            drives,
            host_id,
            version,
            probe_ms: probed.took.map(crate::task::millis),
            reason,
        }
    }

    /// Makes one probe write, as this host ([`Service::host_id`], or `local` alone).
    async fn probe_store(&self) -> (Check, Option<Duration>, Option<String>) {
        let started = Instant::now();
        let host = self.host_id().unwrap_or("local");
        // The server ends the write a while after this gives up (see `Store::probe`).
        let probe = self.inner.store.probe(host, 2 * PROBE_TIMEOUT);
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => (Check::Ok, Some(started.elapsed()), None),
            Ok(Err(e)) => {
                let check = match e {
                    StoreError::Unavailable(_) => Check::Unavailable,
                    _ => Check::Failed,
                };
                (check, None, Some(format!("the store refused a probe write: {e}")))
            }
            Err(_) => (
                Check::TimedOut,
                None,
                Some(format!(
                    "the store did not commit a probe write within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
            ),
        }
    }
}
