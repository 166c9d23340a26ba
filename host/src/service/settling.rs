//! Waiting for a task that this host's own drive is driving: the waiter gets the task as the
//! drive saved it last, once it settled, instead of reading it back from the store.
//!
//! Reading a settled task back rebuilds it from the store (its records, every run record parsed
//! and its data replayed): with one client waiting on a webhook (`?wait`), the reads took 6.5–10%
//! of the CPU (perf), after the drive had had the same task in memory. A drive's final
//! save is committed before its waiters are answered, and the answer is the task as that save
//! wrote it, revision and `updated_at` included ([`crate::store::Store::save_task_at`]), so it is
//! what a read would give. Drives of tasks claimed from a shared store (a cluster) are not
//! registered: their waiters read the store as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::store::StoredTask;

/// The drives under way on this host, each with the waiters for its task to settle.
#[derive(Default)]
pub(crate) struct Settling {
    drives: Mutex<HashMap<String, Drive>>,
    /// Numbers the drives, so that a drive ending after a newer drive of the same task began
    /// leaves that one's waiters alone.
    begun: AtomicU64,
}

/// One drive under way.
struct Drive {
    /// Its number ([`Settling::begun`]).
    number: u64,
    /// Who waits for the task to settle.
    waiters: Vec<oneshot::Sender<StoredTask>>,
}

impl Settling {
    /// Notes that a drive of task `id` starts; the returned guard ends it (without a settled
    /// task) if the drive is dropped before it says how it ended. Waiters for an earlier drive of
    /// the task that has not ended yet wait for this one instead.
    pub fn begin(self: &Arc<Self>, id: &str) -> DriveEnd {
        let number = self.begun.fetch_add(1, Ordering::Relaxed);
        let mut drives = self.lock();
        let drive = drives.entry(id.to_string()).or_insert_with(|| Drive {
            number,
            waiters: Vec::new(),
        });
        drive.number = number;
        DriveEnd {
            settling: self.clone(),
            id: Some(id.to_string()),
            number,
        }
    }

    /// A receiver of task `id` as its drive leaves it settled, if a drive of it is under way
    /// here; `None` if not (settled already, driven elsewhere, or unknown). The receiver's
    /// channel closes without a task if the drive ends otherwise (an error).
    pub fn wait(&self, id: &str) -> Option<oneshot::Receiver<StoredTask>> {
        let mut drives = self.lock();
        let drive = drives.get_mut(id)?;
        let (send, receive) = oneshot::channel();
        drive.waiters.push(send);
        Some(receive)
    }

    /// How many drives are under way (for tests).
    #[cfg(test)]
    fn under_way(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Drive>> {
        self.drives.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends a drive registered with [`Settling::begin`], answering its waiters.
pub(crate) struct DriveEnd {
    settling: Arc<Settling>,
    /// The task's id, until the drive's end is told.
    id: Option<String>,
    /// The drive's number.
    number: u64,
}

impl DriveEnd {
    /// The drive ended with `task`, if it left it settled and saved; its waiters get it (a copy
    /// each but the last), or, with `None`, see their channel close.
    pub fn ended(mut self, task: Option<StoredTask>) {
        self.answer(task);
    }

    fn answer(&mut self, task: Option<StoredTask>) {
        let Some(id) = self.id.take() else { return };
        let waiters = {
            let mut drives = self.settling.lock();
            match drives.get(&id) {
                Some(drive) if drive.number == self.number => drives.remove(&id).map(|d| d.waiters),
                // A newer drive of the task began: its waiters wait for that one.
                _ => None,
            }
        };
        let (Some(waiters), Some(task)) = (waiters, task) else {
            return;
        };
        let mut waiters = waiters.into_iter().filter(|w| !w.is_closed()).peekable();
        while let Some(waiter) = waiters.next() {
            if waiters.peek().is_none() {
                let _ = waiter.send(task);
                return;
            }
            let _ = waiter.send(task.clone());
        }
    }
}

impl Drop for DriveEnd {
    fn drop(&mut self) {
        self.answer(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Task, TaskStatus};

    fn settled(id: &str) -> StoredTask {
        let mut task = Task::with_id(id.to_string(), serde_json::json!({"done": true}));
        task.status = TaskStatus::Completed;
        StoredTask {
            updated_at: task.created_at,
            task,
            revision: 3,
        }
    }

    #[test]
    fn every_waiter_of_a_drive_gets_the_task_it_settled() {
        let settling = Arc::new(Settling::default());
        assert!(settling.wait("t").is_none(), "no drive of t: nothing to wait for here");
        let end = settling.begin("t");
        let mut first = settling.wait("t").expect("under way");
        let mut second = settling.wait("t").expect("under way");
        assert!(settling.wait("other").is_none());
        end.ended(Some(settled("t")));
        assert_eq!(first.try_recv().expect("answered").revision, 3);
        assert_eq!(second.try_recv().expect("answered").task.id, "t");
        assert_eq!(settling.under_way(), 0);
        assert!(settling.wait("t").is_none(), "the drive is over");
    }

    #[test]
    fn a_drive_ending_without_a_settled_task_closes_its_waiters_channels() {
        let settling = Arc::new(Settling::default());
        let end = settling.begin("t");
        let mut waiting = settling.wait("t").expect("under way");
        end.ended(None);
        assert!(matches!(waiting.try_recv(), Err(oneshot::error::TryRecvError::Closed)));

        // A drive dropped before it says how it ended (a panic, a cancelled future) does the same.
        let end = settling.begin("u");
        let mut waiting = settling.wait("u").expect("under way");
        drop(end);
        assert!(matches!(waiting.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        assert_eq!(settling.under_way(), 0);
    }

    #[test]
    fn a_drive_ending_after_a_newer_one_began_leaves_its_waiters_to_the_newer_one() {
        let settling = Arc::new(Settling::default());
        let older = settling.begin("t");
        let mut waiting = settling.wait("t").expect("under way");
        let newer = settling.begin("t");
        older.ended(Some(settled("t")));
        assert!(matches!(waiting.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        let mut later = settling.wait("t").expect("the newer drive is under way");
        let mut task = settled("t");
        task.revision = 5;
        newer.ended(Some(task));
        assert_eq!(waiting.try_recv().expect("answered").revision, 5);
        assert_eq!(later.try_recv().expect("answered").revision, 5);
        assert_eq!(settling.under_way(), 0);
    }

    #[test]
    fn a_waiter_that_gave_up_is_skipped() {
        let settling = Arc::new(Settling::default());
        let end = settling.begin("t");
        drop(settling.wait("t").expect("under way"));
        let mut staying = settling.wait("t").expect("under way");
        end.ended(Some(settled("t")));
        assert_eq!(staying.try_recv().expect("answered").task.id, "t");
    }
}
