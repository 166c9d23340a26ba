//! Writers at work towards their next write, counted so that a store grouping commits can hold a
//! commit briefly while writes are on their way.
//!
//! A drive between two commits is running steps and will save again within a run or two; a drive
//! waiting for its commit will not write until that commit is done. When drives are at work, a
//! commit held for a moment takes their saves along: one fsync and one copy of each shared page
//! serve more writes (on RetailMax under load, groups of about 20 saves instead of 4–5). When none
//! is at work, holding the commit would only add latency, so the store commits at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

/// How many writers are at work towards their next write, and the thread that waits for them.
#[derive(Debug, Default)]
pub struct WritesComing {
    working: AtomicUsize,
    /// The store's thread that holds a commit for the writers at work ([`WritesComing::wait_here`]).
    waiter: OnceLock<Thread>,
}

impl WritesComing {
    /// Writers at work now.
    pub fn working(&self) -> usize {
        self.working.load(Ordering::SeqCst)
    }

    /// Makes the calling thread the one [`WritesComing::sent`] wakes: it parks
    /// ([`std::thread::park_timeout`]) while writers are at work, so that the writes arriving
    /// meanwhile do not wake it one by one.
    pub fn wait_here(&self) {
        let _ = self.waiter.set(std::thread::current());
    }

    /// Tells the waiting thread that a write was sent: it is woken when no writer is at work any
    /// more (this was the last write it waited for).
    pub fn sent(&self) {
        if self.working() == 0
            && let Some(waiter) = self.waiter.get()
        {
            waiter.unpark();
        }
    }

    /// Counts one more writer at work until the returned guard is dropped (drop it before
    /// sending the write it was working towards, so a store waiting for writes sees it waiting).
    pub fn begin(self: &Arc<Self>) -> Working {
        self.working.fetch_add(1, Ordering::SeqCst);
        Working(self.clone())
    }
}

/// One writer at work ([`WritesComing::begin`]); dropping it ends that.
#[derive(Debug)]
pub struct Working(Arc<WritesComing>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_counts_while_its_guard_lives() {
        let coming = Arc::new(WritesComing::default());
        let first = coming.begin();
        let second = coming.begin();
        assert_eq!(coming.working(), 2);
        drop(first);
        assert_eq!(coming.working(), 1);
        drop(second);
        assert_eq!(coming.working(), 0);
    }

    #[test]
    fn a_write_sent_wakes_the_waiter_only_once_nobody_is_at_work() {
        let coming = Arc::new(WritesComing::default());
        let working = coming.begin();
        let (woke, woken) = std::sync::mpsc::channel();
        let waiter = {
            let coming = coming.clone();
            std::thread::spawn(move || {
                coming.wait_here();
                woke.send(()).ok();
                // Reports every wake-up until the test stops listening.
                loop {
                    std::thread::park_timeout(std::time::Duration::from_secs(60));
                    if woke.send(()).is_err() {
                        break;
                    }
                }
            })
        };
        woken.recv().expect("the waiter registered");
        // A write sent while another writer is at work leaves the waiter parked.
        coming.sent();
        assert!(woken.recv_timeout(std::time::Duration::from_millis(300)).is_err());
        // The last writer at work sends its write: the waiter wakes.
        drop(working);
        coming.sent();
        assert!(woken.recv_timeout(std::time::Duration::from_secs(10)).is_ok());
        drop(woken);
        waiter.thread().unpark();
        waiter.join().expect("the waiter stops");
    }
}
