//! The size of a task's data as JSON text, held to the scheduler's `max_task_bytes`.
//!
//! A run's output is bounded (`limits.max_output_bytes`), but a step given a view returns only
//! what it writes, so run after run, and step after step, a task's data could grow without end.
//! A drive keeps an upper bound on the data's size that each merged run raises by what it could
//! add, and encodes the data to learn its exact size only when that bound passes the limit: a
//! task well under it (every order) is never encoded for this.

use std::io;

use serde_json::Value;

use super::merge::{self, Change};

/// A task's data's size when the configuration does not say (`[scheduler] max_task_bytes`).
pub const DEFAULT_MAX_TASK_BYTES: usize = 16 << 20;

/// The length in bytes of `value` as compact JSON text (as the store keeps it), counted without
/// building the text.
pub fn json_len(value: &Value) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, nor can encoding a `Value` (its keys are strings).
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Whether data changed from `before` to `after` may be kept under `limit`: `Ok` with its size
/// when it fits, or when it does not grow (data over a limit lowered since may still shrink or
/// change within its size); else `Err` with its size.
pub fn kept_within(limit: usize, before: &Value, after: &Value) -> Result<usize, usize> {
    let bytes = json_len(after);
    if bytes > limit && bytes > json_len(before) {
        Err(bytes)
    } else {
        Ok(bytes)
    }
}

/// Data of `bytes` against `limit`, as every refusal says it: `N bytes as JSON, over the limit of
/// L ([scheduler] max_task_bytes)`.
pub fn over_limit(bytes: usize, limit: usize) -> String {
    format!("{bytes} bytes as JSON, over the limit of {limit} ([scheduler] max_task_bytes)")
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a drive knows of its task's data's size, to refuse the run whose output would take it
/// past `limit`.
pub(super) struct DataSize {
    limit: usize,
    /// At least the data's size in bytes; `None` until first needed.
    bound: Option<usize>,
}

impl DataSize {
    /// Nothing known yet of a task's data held to `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        DataSize { limit, bound: None }
    }

    /// The data was just encoded, `bytes` long.
    pub(super) fn known(&mut self, bytes: usize) {
        self.bound = Some(bytes);
    }

    /// Applies `changes` to `data` as [`merge::apply`] does (returning the paths it skipped),
    /// unless they would take it past the limit, growing it: then `data` is left as it was and
    /// the size it would have had is the error. Data over the limit already (a limit lowered
    /// since) may still shrink, or change within its size.
    pub(super) fn apply(&mut self, data: &mut Value, changes: &[Change]) -> Result<Vec<String>, usize> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let bound = *self.bound.get_or_insert_with(|| json_len(data));
        let grown = bound.saturating_add(changes.iter().map(most_added).sum());
        if grown <= self.limit {
            self.bound = Some(grown);
            return Ok(merge::apply(data, changes));
        }
        // Near the limit: the changes are tried on a copy, and the copy measured.
        let mut trial = data.clone();
        let skipped = merge::apply(&mut trial, changes);
        let exact = kept_within(self.limit, data, &trial)?;
        *data = trial;
        self.bound = Some(exact);
        Ok(skipped)
    }

    /// Why a run whose output would have made the data `bytes` long was refused.
    pub(super) fn refusal(&self, bytes: usize) -> String {
        format!(
            "its output would make the task's data {}; nothing it wrote was kept",
            over_limit(bytes, self.limit)
        )
    }
}

/// The most `change` can add to the data's size: its value, and each key on its path escaped
/// at worst (six bytes a character, `\u001f`) with its quotes, colon, comma and the braces of an
/// object made for it.
fn most_added(change: &Change) -> usize {
    match change {
        Change::Set { path, value } => json_len(value) + 6 * path.len() + 6,
        Change::Remove { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(path: &str, value: Value) -> Change {
        Change::Set {
            path: path.into(),
            value,
        }
    }

    #[test]
    fn json_len_is_the_compact_texts_length() {
        let value = json!({"a": [1, 2.5, "é\u{1f}"], "b": {"c": null, "d\"": true}});
        assert_eq!(json_len(&value), value.to_string().len());
    }

    #[test]
    fn a_change_adds_at_most_what_most_added_says() {
        let cases = [
            (json!({}), set("/a/b/c", json!("x"))),
            (json!({"k": 1}), set("/\u{1}/\u{2}", json!([1, 2]))),
            (json!({"a": {}}), set("/a/~0~1", json!({"z": 1e300}))),
            (json!({"list": [1]}), set("/list/0", json!("longer"))),
        ];
        for (mut data, change) in cases {
            let before = json_len(&data);
            merge::apply(&mut data, std::slice::from_ref(&change));
            assert!(json_len(&data) <= before + most_added(&change), "{change:?}: {data}");
        }
    }

    #[test]
    fn changes_within_the_limit_are_applied_and_counted() {
        let mut data = json!({"a": 1});
        let mut size = DataSize::new(100);
        size.apply(&mut data, &[set("/b", json!("xy"))])
            .expect("within the limit");
        assert_eq!(data, json!({"a": 1, "b": "xy"}));
        assert!(size.bound.is_some_and(|b| b >= json_len(&data) && b <= 100));
    }

    #[test]
    fn changes_past_the_limit_leave_the_data_as_it_was() {
        let mut data = json!({"a": "x".repeat(50)});
        let mut size = DataSize::new(80);
        let before = data.clone();
        let refused = size.apply(&mut data, &[set("/b", json!("y".repeat(40)))]);
        assert_eq!(
            refused,
            Err(json_len(&json!({"a": "x".repeat(50), "b": "y".repeat(40)})))
        );
        assert_eq!(data, before);
        assert!(size.refusal(95).contains("max_task_bytes"));
    }

    #[test]
    fn data_over_the_limit_already_may_shrink_or_stay_but_not_grow() {
        let mut data = json!({"a": "x".repeat(100), "b": "y".repeat(100)});
        let mut size = DataSize::new(150);
        size.apply(&mut data, &[]).expect("nothing changed");
        size.apply(&mut data, &[set("/a", json!("z".repeat(100)))])
            .expect("the same size");
        size.apply(&mut data, &[Change::Remove { path: "/b".into() }])
            .expect("smaller");
        assert_eq!(data, json!({"a": "z".repeat(100)}));
        let mut over = json!({"a": "x".repeat(200)});
        let refused = DataSize::new(150).apply(&mut over, &[set("/c", json!(1))]);
        assert!(refused.is_err(), "grown past the limit");
    }

    #[test]
    fn near_the_limit_the_exact_size_decides() {
        // The bound says it might pass 60; the data as changed is 58 bytes: kept.
        let mut data = json!({"a": "x".repeat(40)});
        let mut size = DataSize::new(60);
        size.apply(&mut data, &[set("/a", json!("y".repeat(50)))])
            .expect("58 bytes fit");
        assert_eq!(json_len(&data), 58);
        assert_eq!(size.bound, Some(58));
        // A removal then makes room that a bound alone would not see.
        size.apply(&mut data, &[Change::Remove { path: "/a".into() }])
            .expect("a removal");
        size.apply(&mut data, &[set("/b", json!("z".repeat(40)))])
            .expect("room again");
        assert_eq!(data, json!({"b": "z".repeat(40)}));
    }
}
