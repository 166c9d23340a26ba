//! Leases kept in memory, for a store that one host owns (SQLite): the same contract as a shared
//! store's (a task is held by one owner until its lease expires or it is released), without a
//! database round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who holds which task, and until when.
#[derive(Debug, Default)]
pub struct LeaseTable {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

impl LeaseTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims, for `owner`, up to `limit` of `candidates` (running tasks, oldest first) that
    /// nobody holds or whose lease expired.
    pub fn claim(&self, candidates: Vec<String>, owner: &str, limit: u32, lease: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut held = self.lock();
        let mut claimed = Vec::new();
        for id in candidates {
            if claimed.len() >= limit as usize {
                break;
            }
            if held.get(&id).is_some_and(|(_, until)| *until >= now) {
                continue;
            }
            held.insert(id.clone(), (owner.to_string(), now + lease));
            claimed.push(id);
        }
        claimed
    }

    /// Extends `owner`'s leases on `ids`; returns those it still holds.
    pub fn renew(&self, owner: &str, ids: &[String], lease: Duration) -> Vec<String> {
        let until = Instant::now() + lease;
        let mut held = self.lock();
        ids.iter()
            .filter(|id| match held.get_mut(id.as_str()) {
                Some((holder, expires)) if holder == owner => {
                    *expires = until;
                    true
                }
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Ends `owner`'s lease on `id`.
    pub fn release(&self, id: &str, owner: &str) {
        let mut held = self.lock();
        if held.get(id).is_some_and(|(holder, _)| holder == owner) {
            held.remove(id);
        }
    }

    /// Ends any lease on `id` (the task settled).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_exclusive_until_it_expires_or_is_released() {
        let table = LeaseTable::default();
        let ids = vec!["a".to_string(), "b".to_string()];
        assert_eq!(table.claim(ids.clone(), "h1", 1, Duration::from_secs(60)), vec!["a"]);
        assert_eq!(table.claim(ids.clone(), "h2", 5, Duration::from_millis(1)), vec!["b"]);
        assert!(
            table.claim(ids.clone(), "h3", 5, Duration::from_secs(60)).is_empty() || {
                // h2's lease on b may have expired already (1 ms): then h3 takes b, never a.
                table.renew("h3", &ids, Duration::from_secs(60)) == vec!["b"]
            }
        );
        assert_eq!(table.renew("h1", &ids, Duration::from_secs(60)), vec!["a"]);
        table.release("a", "h2");
        assert_eq!(
            table.renew("h1", &ids, Duration::from_secs(60)),
            vec!["a"],
            "only the holder releases"
        );
        table.release("a", "h1");
        assert!(table.renew("h1", &ids, Duration::from_secs(60)).is_empty());
    }
}
