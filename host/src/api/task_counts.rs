//! Whether `/metrics` could count the tasks, logged when that changes.
//!
//! `/metrics` leaves the task counts out when the store cannot give them in time, and still
//! answers: that is when an operator needs the rest. Readiness logs a store that cannot write, but
//! a count that fails or times out while the store's probes still commit would go unseen, so the
//! first scrape without counts says why on stderr, and the first with them again says so. A
//! failure that lasts is logged once, not at every scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the last scrape of `/metrics` left the task counts out, shared by the API's threads.
#[derive(Clone, Default)]
pub(crate) struct TaskCounts {
    missing: Arc<AtomicBool>,
}

impl TaskCounts {
    /// Records how this scrape's count went (`Err`: why the counts are left out) and returns
    /// the line to log when that differs from the last scrape.
    pub(crate) fn record(&self, counted: Result<(), String>) -> Option<String> {
        match counted {
            Ok(()) => self
                .missing
                .swap(false, Ordering::Relaxed)
                .then(|| "/metrics counts the tasks again".to_owned()),
            Err(why) => (!self.missing.swap(true, Ordering::Relaxed))
                .then(|| format!("/metrics leaves the task counts out: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_with_its_reason_and_so_is_the_recovery() {
        let counts = TaskCounts::default();
        assert_eq!(counts.record(Ok(())), None, "counting as usual says nothing");
        assert_eq!(
            counts.record(Err("the store did not answer within 2 s".to_owned())),
            Some("/metrics leaves the task counts out: the store did not answer within 2 s".to_owned())
        );
        assert_eq!(
            counts.record(Err("again".to_owned())),
            None,
            "a failure that lasts is logged once"
        );
        let shared = counts.clone();
        assert_eq!(
            shared.record(Ok(())),
            Some("/metrics counts the tasks again".to_owned())
        );
        assert_eq!(counts.record(Ok(())), None, "the clones share one state");
    }
}
