//! How a store's group commits go, for `/metrics`: how many committed and failed, how many
//! writes they carried (writes per commit tell whether grouping works), and how long each commit
//! took to be durable (on SQLite the `COMMIT` with its fsync: a slow or overloaded disk shows
//! here first).

use std::sync::Mutex;
use std::time::Duration;

use crate::histogram::Histogram;

/// The commits since the store opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitStats {
    /// Commits that went through.
    pub commits: u64,
    /// Groups rolled back (a failed write, journal or commit): their writes failed.
    pub failed: u64,
    /// Writes those commits carried.
    pub writes: u64,
    /// How long each commit took, in seconds.
    pub duration: Histogram,
}

/// [`CommitStats`] kept up to date by the store's writer.
#[derive(Debug, Default)]
pub struct CommitCounters(Mutex<CommitStats>);

impl CommitCounters {
    /// Counts a commit of `writes` writes that took `took`.
    pub fn committed(&self, writes: usize, took: Duration) {
        let mut stats = self.0.lock().unwrap_or_else(|p| p.into_inner());
        stats.commits += 1;
        stats.writes += writes as u64;
        stats.duration.observe(took.as_secs_f64());
    }

    /// Counts a group rolled back.
    pub fn failed(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).failed += 1;
    }

    /// The counts as they are now.
    pub fn now(&self) -> CommitStats {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
