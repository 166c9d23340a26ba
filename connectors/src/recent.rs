//! A bounded record of the newest entries: what the effects ledger and the outbox keep, so a
//! long-running host holds a fixed amount of them however many calls it serves.

use std::collections::VecDeque;

/// The newest `capacity` entries, oldest first, and how many were ever added.
#[derive(Debug, Clone)]
pub(crate) struct Recent<T> {
    entries: VecDeque<T>,
    capacity: usize,
    added: usize,
}

impl<T> Recent<T> {
    /// An empty record keeping at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Recent {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            added: 0,
        }
    }

    /// Adds `entry`, forgetting the oldest one when full.
    pub(crate) fn push(&mut self, entry: T) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.added += 1;
    }

    /// The entries kept, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    /// How many entries were ever added, kept or not.
    pub(crate) fn added(&self) -> usize {
        self.added
    }

    /// How many entries are kept.
    pub(crate) fn kept(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_and_counts_every_one() {
        let mut recent = Recent::new(3);
        for n in 0..5 {
            recent.push(n);
        }
        assert_eq!(recent.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!((recent.added(), recent.kept()), (5, 3));
    }

    #[test]
    fn a_capacity_of_zero_keeps_one() {
        let mut recent = Recent::new(0);
        recent.push("a");
        recent.push("b");
        assert_eq!(recent.iter().copied().collect::<Vec<_>>(), vec!["b"]);
    }
}
