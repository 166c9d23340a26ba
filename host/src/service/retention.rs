//! Deleting tasks with their history: one on request (`DELETE /v1/tasks/{id}`), and the settled
//! tasks past the `[retention]` limits, swept now and then, so that a store that takes orders day
//! after day does not grow forever (about 15 KB per RetailMax order on SQLite). Running tasks are
//! never deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::{Service, ServiceError};

/// Tasks deleted in one write: a sweep of a large backlog goes in batches, each a short write
/// among the drives' saves (about 13 ms of the SQLite writer for 100 RetailMax orders).
const BATCH: u32 = 100;

/// After each full batch a sweep pauses this many times as long as the batch took (and at least
/// `MIN_PAUSE`), so that it takes at most a quarter of the store's time. Beside 16 clients'
/// live orders (`task_retention` bench), unpaced batches of 200 deleted 7,400 tasks/s and cut the
/// orders completed by 40% (p99 19 → 51–61 ms); paced, 2,250–2,430 tasks/s and 20% (p99 17–19 →
/// 27–30 ms).
const PAUSE_FACTOR: u32 = 3;
const MIN_PAUSE: Duration = Duration::from_millis(10);

impl Service {
    /// Deletes a settled task with its history and journal, if it is at one of `revisions`
    /// (`None`: at any): [`ServiceError::NotFound`] for an unknown task,
    /// [`ServiceError::Changed`] at another revision, [`ServiceError::Conflict`] while it runs.
    pub async fn delete_task(&self, id: &str, revisions: Option<&[u64]>) -> Result<(), ServiceError> {
        self.inner.store.delete_task(id, revisions).await?;
        self.inner.metrics.tasks_deleted(1, false);
        // A long poll on it is answered now (404), not when its wait ends.
        self.inner.settle_waiters.settled(id);
        Ok(())
    }

    /// Deletes, as of `now`, the settled tasks past their status's `[retention]` limit (oldest
    /// first, in paced batches, until the service is stopping); returns how many. The service
    /// does this every `sweep_ms` by itself; this is one sweep.
    pub async fn sweep_retention(&self, now: DateTime<Utc>) -> Result<u64, ServiceError> {
        let limits = self.inner.config.retention.limits().map_err(ServiceError::Invalid)?;
        let mut deleted = 0;
        for (status, kept) in limits {
            let before = TimeDelta::from_std(kept)
                .ok()
                .and_then(|kept| now.checked_sub_signed(kept))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            loop {
                let started = Instant::now();
                let batch = self.inner.store.delete_settled(status, before, BATCH).await?;
                deleted += batch;
                self.inner.metrics.tasks_deleted(batch, true);
                // A long poll on a task swept is answered 404 now, not when its wait ends.
                if batch > 0 {
                    self.inner.settle_waiters.wake_all();
                }
                // A stopping service leaves the rest to its next start.
                if batch < u64::from(BATCH) || self.is_stopping() {
                    break;
                }
                tokio::time::sleep((started.elapsed() * PAUSE_FACTOR).max(MIN_PAUSE)).await;
            }
        }
        Ok(deleted)
    }

    /// Sweeps every `[retention] sweep_ms` while the service lives and serves, when a limit is
    /// configured.
    pub(crate) fn start_retention(&self) {
        if self
            .inner
            .config
            .retention
            .limits()
            .map_or(true, |limits| limits.is_empty())
        {
            return;
        }
        let every = Duration::from_millis(self.inner.config.retention.sweep_ms);
        let service = Arc::downgrade(&self.inner);
        self.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = service.upgrade() else { return };
                let service = Service { inner };
                if service.is_stopping() {
                    return;
                }
                match service.sweep_retention(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => eprintln!("whenever serve: retention: deleted {n} settled tasks past their limit"),
                    Err(e) => eprintln!("whenever serve: retention: {e}"),
                }
            }
        });
    }
}
