//! Waiters for one task's next settle, when no drive of it is under way here to wait on
//! ([`super::settling`]): a `?wait` on a task another host drives, or a long poll on a settled
//! task (`If-None-Match` with `?wait`) until a patch, a retry or a deploy moves it on.
//!
//! Each waiter is woken by its own task's settles only. A receiver of the service's `settled`
//! broadcast is woken by every settle of every task: under load, about 2,400 times a second for
//! each waiter, whatever it waits for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Each task's waiters, by task id: each waiter's number and the channel that wakes it.
type Waiting = HashMap<String, Vec<(u64, oneshot::Sender<()>)>>;

/// The waiters for each task's next settle.
#[derive(Default)]
pub(crate) struct SettleWaiters {
    waiting: Mutex<Waiting>,
    /// Numbers the waiters, so that one that stops waiting removes only itself.
    numbered: AtomicU64,
}

impl SettleWaiters {
    /// Waits for task `id`'s next settle: the returned [`NextSettle::settled`] ends at the next
    /// [`SettleWaiters::settled`] of `id`. Registered before the task is read, so that a settle
    /// between the read and the wait is not missed.
    pub fn register(self: &Arc<Self>, id: &str) -> NextSettle {
        let number = self.numbered.fetch_add(1, Ordering::Relaxed);
        let (send, receive) = oneshot::channel();
        self.lock().entry(id.to_string()).or_default().push((number, send));
        NextSettle {
            waiters: self.clone(),
            id: id.to_string(),
            number,
            receive,
        }
    }

    /// Task `id` settled: wakes its waiters, and only them.
    pub fn settled(&self, id: &str) {
        let waiters = self.lock().remove(id);
        for (_, waiter) in waiters.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }

    /// Wakes every waiter, whatever task it waits for: tasks went in bulk (retention's sweep),
    /// their ids not known here. Each reads its task again, and one whose task is still there
    /// waits on.
    pub fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.lock());
        for (_, waiter) in waiting.into_values().flatten() {
            let _ = waiter.send(());
        }
    }

    /// How many tasks have waiters (for tests).
    #[cfg(test)]
    fn tasks_waited_for(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One waiter for a task's next settle ([`SettleWaiters::register`]); dropped, it stops waiting.
pub(crate) struct NextSettle {
    waiters: Arc<SettleWaiters>,
    id: String,
    number: u64,
    receive: oneshot::Receiver<()>,
}

impl NextSettle {
    /// Ends once the task settled (or the service dropped its waiters).
    pub async fn settled(&mut self) {
        let _ = (&mut self.receive).await;
    }
}

impl Drop for NextSettle {
    fn drop(&mut self) {
        let mut waiting = self.waiters.lock();
        if let Some(waiters) = waiting.get_mut(&self.id) {
            waiters.retain(|(number, _)| *number != self.number);
            if waiters.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_settle_wakes_the_waiters_of_its_task_only() {
        let waiters = Arc::new(SettleWaiters::default());
        let mut first = waiters.register("t_a");
        let mut second = waiters.register("t_a");
        let mut other = waiters.register("t_b");
        waiters.settled("t_a");
        first.settled().await;
        second.settled().await;
        let still = tokio::time::timeout(Duration::from_millis(50), other.settled()).await;
        assert!(still.is_err(), "t_b did not settle");
        assert_eq!(waiters.tasks_waited_for(), 1);
        waiters.settled("t_b");
        other.settled().await;
        assert_eq!(waiters.tasks_waited_for(), 0);
    }

    #[tokio::test]
    async fn waking_all_wakes_every_task_s_waiters() {
        let waiters = Arc::new(SettleWaiters::default());
        let mut a = waiters.register("t_a");
        let mut b = waiters.register("t_b");
        waiters.wake_all();
        a.settled().await;
        b.settled().await;
        assert_eq!(waiters.tasks_waited_for(), 0);
    }

    #[test]
    fn a_waiter_that_stops_waiting_leaves_the_others_and_nothing_behind() {
        let waiters = Arc::new(SettleWaiters::default());
        let kept = waiters.register("t_a");
        let gone = waiters.register("t_a");
        drop(gone);
        assert_eq!(waiters.tasks_waited_for(), 1);
        drop(kept);
        assert_eq!(waiters.tasks_waited_for(), 0, "timed-out long polls leave no entry");
    }
}
