//! Diff and merge of task data at leaf paths.
//!
//! A run's output is diffed against the snapshot it started from; only those changes are applied
//! to the current data, so concurrent runs that write different fields both land. Objects are
//! diffed key by key, arrays of equal length index by index, anything else is replaced whole.
//! Paths are JSON Pointers (RFC 6901).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use whenever_condition::{field, field_mut};

/// One change a run made: set a value at a path, or remove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Set `path` to `value` (creating objects on the way).
    Set {
        /// JSON Pointer of the leaf.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Remove `path`.
    Remove {
        /// JSON Pointer of the removed key.
        path: String,
    },
}

impl Change {
    /// The JSON Pointer this change touches.
    pub fn path(&self) -> &str {
        match self {
            Change::Set { path, .. } | Change::Remove { path } => path,
        }
    }

    /// The value written, `None` for a removal.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Change::Set { value, .. } => Some(value),
            Change::Remove { .. } => None,
        }
    }

    /// The same change relative to the value at the first `prefix` bytes of its path (a pointer
    /// to a value this change lies inside), to apply it to that value alone.
    pub(super) fn below(self, prefix: usize) -> Change {
        let rest = |path: String| path.get(prefix..).unwrap_or_default().to_string();
        match self {
            Change::Set { path, value } => Change::Set {
                path: rest(path),
                value,
            },
            Change::Remove { path } => Change::Remove { path: rest(path) },
        }
    }
}

/// Room for the JSON Pointer a diff builds as it walks (one string, pushed and truncated): made
/// at once, it is not regrown segment by segment, as from empty it was about ten times a run.
pub(super) const PATH_ROOM: usize = 64;

/// The changes that turn `before` into `after`.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut path = String::with_capacity(PATH_ROOM);
    diff_into(before, after, &mut path, &mut changes);
    changes
}

/// Appends to `changes` those that turn `before` into `after`, both at `path`.
pub(super) fn diff_into(before: &Value, after: &Value, path: &mut String, changes: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            // A step usually hands back its objects with the keys in the order it got them, so
            // each key is first looked for at its own position, and looked up only when that misses.
            let mut kept = 0;
            let mut same_place = a.iter();
            for (key, old) in b {
                let new = match same_place.next() {
                    Some((k, v)) if k == key => Some(v),
                    _ => field(a, key),
                };
                match new {
                    None => changes.push(Change::Remove { path: child(path, key) }),
                    Some(new) => {
                        kept += 1;
                        let len = path.len();
                        push_segment(path, key);
                        diff_into(old, new, path, changes);
                        path.truncate(len);
                    }
                }
            }
            // Every key of `after` that is not one of the `kept` ones is new.
            if kept < a.len() {
                for (key, new) in a {
                    if field(b, key).is_none() {
                        changes.push(Change::Set {
                            path: child(path, key),
                            value: new.clone(),
                        });
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (index, (old, new)) in b.iter().zip(a).enumerate() {
                let len = path.len();
                push_index(path, index);
                diff_into(old, new, path, changes);
                path.truncate(len);
            }
        }
        _ => {
            if before != after {
                changes.push(Change::Set {
                    path: path.clone(),
                    value: after.clone(),
                });
            }
        }
    }
}

/// Appends array position `index` to the JSON Pointer `path` (its digits, without `fmt` or a
/// `String` of their own: the diffs write one for every element they compare).
pub(super) fn push_index(path: &mut String, index: usize) {
    path.push('/');
    path.push_str(itoa::Buffer::new().format(index));
}

/// Appends `key` to the JSON Pointer `path`, escaped.
pub(super) fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    // Bytes, not chars: both are ASCII, and a char pattern decodes every character of every key
    // the diff walks.
    if !key.bytes().any(|b| b == b'~' || b == b'/') {
        path.push_str(key);
        return;
    }
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// The JSON Pointer of `key` inside `path`.
pub(super) fn child(path: &str, key: &str) -> String {
    let mut p = path.to_string();
    push_segment(&mut p, key);
    p
}

/// The pointer's segments, unescaped; borrowed from it unless they hold an escape.
fn segments(pointer: &str) -> Vec<Cow<'_, str>> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(unescape).collect()
}

/// Whether two pointers touch the same data: equal, or one inside the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    a == b
        || (b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'/'))
        || (a.starts_with(b) && a.as_bytes().get(b.len()) == Some(&b'/'))
}

/// Applies `changes` to `data`; returns the paths that could not be applied because the data
/// changed shape underneath (an array index that no longer exists). The changes are a diff's:
/// no path is another's or below another's.
pub fn apply(data: &mut Value, changes: &[Change]) -> Vec<String> {
    let mut skipped = Vec::new();
    // The removals are made last, those of one object together: one at a time, each would move
    // the keys after it, and a step that dropped many keys of a large object (every other one,
    // its changes alternating with sets) would cost their count squared. The changes of a diff
    // are on paths none of which is another's or below another's, so their order is free.
    let mut removals: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut removals_at: HashMap<&str, usize> = HashMap::new();
    for change in changes {
        match change {
            Change::Set { path, value } => {
                if !set(data, &segments(path), value.clone()) {
                    skipped.push(path.clone());
                }
            }
            // The root is never removed (nor was it one at a time).
            Change::Remove { path } if path.is_empty() => {}
            Change::Remove { path } => {
                let (parent, key) = split_last(path);
                match removals_at.get(parent) {
                    Some(&at) => removals[at].1.push(key),
                    None => {
                        removals_at.insert(parent, removals.len());
                        removals.push((parent, vec![key]));
                    }
                }
            }
        }
    }
    for (parent, keys) in removals {
        remove_keys(data, parent, &keys);
    }
    skipped
}

/// Removals of keys of one object past which [`apply`] makes them in one pass.
const REMOVED_ONE_BY_ONE: usize = 16;

/// The JSON Pointer of the value holding the one `path` points to (`""`: the root), and the
/// last key, as the pointer writes it (escaped).
fn split_last(path: &str) -> (&str, &str) {
    path.rfind('/').map_or(("", path), |at| (&path[..at], &path[at + 1..]))
}

/// Removes `keys` (escaped, as pointers write them) from the object at the JSON Pointer
/// `parent` (nothing when no object is there): one at a time when they are few, else in one
/// pass.
fn remove_keys(data: &mut Value, parent: &str, keys: &[&str]) {
    let Some(Value::Object(map)) = value_at(data, &segments(parent)) else {
        return;
    };
    if keys.len() < REMOVED_ONE_BY_ONE {
        for key in keys {
            map.shift_remove(unescape(key).as_ref());
        }
        return;
    }
    let keys: Vec<Cow<'_, str>> = keys.iter().map(|key| unescape(key)).collect();
    let keys: std::collections::HashSet<&str> = keys.iter().map(AsRef::as_ref).collect();
    map.retain(|key, _| !keys.contains(key.as_str()));
}

/// A pointer's key, `~1` and `~0` read back as `/` and `~`.
fn unescape(key: &str) -> Cow<'_, str> {
    if key.contains('~') {
        Cow::Owned(key.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(key)
    }
}

/// The value at `segments` in `data`, to change, if there is one (nothing is created).
fn value_at<'a>(data: &'a mut Value, segments: &[Cow<'_, str>]) -> Option<&'a mut Value> {
    let mut here = data;
    for segment in segments {
        here = match here {
            Value::Object(map) => field_mut(map, segment)?,
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i))?,
            _ => return None,
        };
    }
    Some(here)
}

fn set(data: &mut Value, segments: &[Cow<'_, str>], value: Value) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        *data = value;
        return true;
    };
    let mut here = data;
    for segment in parents {
        here = match here {
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return false,
            },
            other => {
                if !other.is_object() {
                    *other = Value::Object(Map::new());
                }
                match other {
                    Value::Object(map) => {
                        if field(map, segment).is_none() {
                            map.insert(segment.to_string(), Value::Null);
                        }
                        match field_mut(map, segment) {
                            Some(next) => next,
                            None => return false,
                        }
                    }
                    _ => return false,
                }
            }
        };
    }
    match here {
        Value::Array(items) => match last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
            Some(item) => {
                *item = value;
                true
            }
            None => false,
        },
        other => {
            if !other.is_object() {
                *other = Value::Object(Map::new());
            }
            if let Value::Object(map) = other {
                // Most changes set a key that is there: replace its value without a new key.
                match field_mut(map, last) {
                    Some(slot) => *slot = value,
                    None => {
                        map.insert(last.to_string(), value);
                    }
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Removals of many keys of one object are made in one pass, and leave what one at a time
    /// would: the other keys in their order, the changes between them (every kept key set anew,
    /// one new key, escaped keys) applied.
    #[test]
    fn many_removals_from_one_object_leave_the_rest_in_order() {
        let mut keys: Map<String, Value> = (0..1000).map(|n| (format!("k{n}"), json!(n))).collect();
        keys.insert("a/b~c".into(), json!(1));
        let before = json!({"o": keys, "other": {"a~/b": 1}});
        let mut after = before.clone();
        if let Some(o) = after["o"].as_object_mut() {
            o.retain(|key, value| key != "a/b~c" && value.as_u64().is_some_and(|n| n % 3 == 0));
            for value in o.values_mut() {
                *value = json!(["kept", value.clone()]);
            }
            o.insert("new/key".into(), json!("added"));
        }
        after["other"] = json!({});
        let changes = diff(&before, &after);
        assert!(changes.len() > 600);
        let mut applied = before.clone();
        assert!(apply(&mut applied, &changes).is_empty());
        assert_eq!(applied, after);
        let order: Vec<&String> = applied["o"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        let expected: Vec<&String> = after["o"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(order, expected);
    }

    #[test]
    fn diff_is_leafwise() {
        let before = json!({"order": {"id": 1, "items": [{"sku": "A"}, {"sku": "B"}], "old": true}});
        let after = json!({"order": {"id": 1, "items": [{"sku": "A", "warehouse": "TX"}, {"sku": "B"}], "new": 2}});
        let changes = diff(&before, &after);
        assert_eq!(
            changes,
            vec![
                Change::Set {
                    path: "/order/items/0/warehouse".into(),
                    value: json!("TX")
                },
                Change::Remove {
                    path: "/order/old".into()
                },
                Change::Set {
                    path: "/order/new".into(),
                    value: json!(2)
                },
            ]
        );
    }

    #[test]
    fn arrays_of_different_length_are_replaced_whole() {
        let changes = diff(&json!({"a": [1, 2]}), &json!({"a": [1, 2, 3]}));
        assert_eq!(
            changes,
            vec![Change::Set {
                path: "/a".into(),
                value: json!([1, 2, 3])
            }]
        );
    }

    #[test]
    fn merging_two_runs_keeps_both_changes() {
        let snapshot = json!({"start": true});
        let mut current = snapshot.clone();
        apply(&mut current, &diff(&snapshot, &json!({"start": true, "a": "A"})));
        apply(&mut current, &diff(&snapshot, &json!({"start": true, "b": "B"})));
        assert_eq!(current, json!({"start": true, "a": "A", "b": "B"}));
    }

    #[test]
    fn apply_of_diff_gives_the_output() {
        let before = json!({"x": {"y": [1, {"z": 2}], "k~/": 1}, "drop": null});
        let after = json!({"x": {"y": [1, {"z": 3, "w": [4]}], "k~/": 2, "n": {"deep": true}}});
        let mut merged = before.clone();
        let skipped = apply(&mut merged, &diff(&before, &after));
        assert!(skipped.is_empty());
        assert_eq!(merged, after);
    }

    #[test]
    fn a_vanished_index_is_reported_not_invented() {
        let mut current = json!({"items": []});
        let skipped = apply(
            &mut current,
            &[Change::Set {
                path: "/items/3/x".into(),
                value: json!(1),
            }],
        );
        assert_eq!(skipped, vec!["/items/3/x".to_string()]);
        assert_eq!(current, json!({"items": []}));
    }

    #[test]
    fn overlapping_paths() {
        assert!(overlaps("/a/b", "/a/b"));
        assert!(overlaps("/a", "/a/b"));
        assert!(overlaps("/a/b", "/a"));
        assert!(!overlaps("/a/b", "/a/bc"));
        assert!(!overlaps("/a/b", "/a/c"));
    }
}

/// Applies a JSON Merge Patch (RFC 7386) to `target`: objects merge key by key, `null` removes a
/// key, anything else replaces. How people and the API change a task's data.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.shift_remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod merge_patch_tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn follows_rfc_7386() {
        let mut data = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut data, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(data, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut data, &json!({"c": [1]}));
        assert_eq!(data, json!({"a": "z", "c": [1]}));
        merge_patch(&mut data, &json!({"n": {"deep": true}}));
        assert_eq!(data["n"], json!({"deep": true}));
    }
}
