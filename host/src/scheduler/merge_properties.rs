//! Property tests (proptest) of diff, apply and merge patch: merging a run's diff into the data it
//! started from gives the run's output exactly; diffs that touch different paths land in either
//! order; JSON merge patch is idempotent and removes with `null`; a step given a view of the data
//! changes it as the reference semantics of views say.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::merge::{Change, apply, child, diff, merge_patch, overlaps};
use super::output_diff::{OutputError, diff_output, diff_output_in_view};
use crate::runtime::DataView;
use whenever_condition::{Condition, Path};

/// Cases per property: a second or two each in a debug build.
const CASES: u32 = 512;

/// Keys from a small set (so two values share structure) plus the JSON Pointer specials.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "c", "0", "1", "", "~", "/", "a/b", "~1", "~0x"]).prop_map(str::to_string),
        1 => "\\PC{0,5}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(Value::from),
        (-2i32..3).prop_map(|n| json!(f64::from(n) / 2.0)),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec!["x", "y", ""]).prop_map(Value::from),
        "\\PC{0,5}".prop_map(Value::from),
    ]
}

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A JSON object (task data is one).
fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..5).prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

/// `before` and an `after` derived from it by a merge patch or by edits inside its arrays, so
/// the two share most of their structure (as a run's input and output do), or an unrelated value.
fn before_and_after() -> impl Strategy<Value = (Value, Value)> {
    prop_oneof![
        (object(), object()).prop_map(|(before, patch)| {
            let mut after = before.clone();
            merge_patch(&mut after, &patch);
            (before, after)
        }),
        (object(), prop::collection::vec(0u8..4, 1..8), object()).prop_map(|(before, edits, patch)| {
            let mut after = before.clone();
            edit_arrays(&mut after, &mut edits.iter().cycle(), &patch);
            (before, after)
        }),
        (json_value(), json_value()),
    ]
}

/// Edits every array inside `value`, one edit each from `edits`: keep it, append `patch`, drop
/// its last element, or merge-patch its first element (after the arrays inside were edited).
fn edit_arrays<'a>(value: &mut Value, edits: &mut impl Iterator<Item = &'a u8>, patch: &Value) {
    match value {
        Value::Array(items) => {
            for item in items.iter_mut() {
                edit_arrays(item, edits, patch);
            }
            match edits.next() {
                Some(1) => items.push(patch.clone()),
                Some(2) => {
                    items.pop();
                }
                Some(3) => {
                    if let Some(first) = items.first_mut() {
                        merge_patch(first, patch);
                    }
                }
                _ => {}
            }
        }
        Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                edit_arrays(item, edits, patch);
            }
        }
        _ => {}
    }
}

/// A value with no `null` inside objects: what a merge patch can produce.
fn without_object_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_object_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The merge patch that turns `before` into `after` (which has no `null` inside objects).
fn merge_patch_between(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut patch = Map::new();
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, new) in a {
                match b.get(key) {
                    Some(old) if old == new => {}
                    Some(old) => {
                        patch.insert(key.clone(), merge_patch_between(old, new));
                    }
                    None => {
                        patch.insert(key.clone(), merge_patch_between(&Value::Null, new));
                    }
                }
            }
            Value::Object(patch)
        }
        // An object replacing a non-object: every key is new.
        (_, Value::Object(a)) => merge_patch_between(&Value::Object(Map::new()), &Value::Object(a.clone())),
        (_, other) => other.clone(),
    }
}

/// A `reads` entry: one to three keys that can be joined with `.`.
fn read_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "0", "~", "/", "a/b"]), 1..4)
        .prop_map(|keys| keys.join("."))
}

/// The reference view: `data` copied along each path, a value that is not an object met on the
/// way copied whole.
fn view_by_copying(paths: &[Path], data: &Value) -> Value {
    fn copy(from: &Map<String, Value>, keys: &[String], into: &mut Map<String, Value>) {
        let Some((key, below)) = keys.split_first() else { return };
        let Some(value) = from.get(key) else { return };
        match value {
            Value::Object(inner) if !below.is_empty() => {
                if let Value::Object(slot) = into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new())) {
                    copy(inner, below, slot);
                }
            }
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
    let Value::Object(from) = data else { return data.clone() };
    let mut view = Map::new();
    for path in paths {
        copy(from, path.keys(), &mut view);
    }
    Value::Object(view)
}

/// The reference semantics of a run given a view: the diff of its output against the view
/// (`given`), except that an object set where the view held nothing is merged, key by key and
/// recursively, into the object `data` holds there (keys already equal give no change), and
/// refused (`None`) where `data` holds a value there that is neither an object nor null.
fn spread_over_unseen(changes: Vec<Change>, given: &Value, data: &Value) -> Option<Vec<Change>> {
    fn spread(
        path: &str,
        unseen: &Map<String, Value>,
        written: Map<String, Value>,
        changes: &mut Vec<Change>,
    ) -> Option<()> {
        for (key, value) in written {
            let at = child(path, &key);
            match (unseen.get(&key), value) {
                (Some(Value::Object(inner)), Value::Object(value)) => spread(&at, inner, value, changes)?,
                (Some(old), Value::Object(_)) if !old.is_null() => return None,
                (Some(old), value) if *old == value => {}
                (_, value) => changes.push(Change::Set { path: at, value }),
            }
        }
        Some(())
    }
    let mut spread_changes = Vec::new();
    for change in changes {
        match change {
            Change::Set {
                path,
                value: Value::Object(written),
            } if given.pointer(&path).is_none() => match data.pointer(&path) {
                Some(Value::Object(unseen)) => spread(&path, unseen, written, &mut spread_changes)?,
                Some(held) if !held.is_null() => return None,
                _ => spread_changes.push(Change::Set {
                    path,
                    value: Value::Object(written),
                }),
            },
            other => spread_changes.push(other),
        }
    }
    Some(spread_changes)
}

fn paths(changes: &[Change]) -> Vec<&str> {
    changes.iter().map(Change::path).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn applying_a_diff_to_its_input_gives_the_output_exactly((before, after) in before_and_after()) {
        let changes = diff(&before, &after);
        let mut merged = before.clone();
        let skipped = apply(&mut merged, &changes);
        prop_assert!(skipped.is_empty(), "skipped {:?} of {:?}", skipped, changes);
        prop_assert_eq!(&merged, &after, "changes {:?}", changes);
        // Exactly: the same text once keys are sorted, so no number or string changed form.
        prop_assert_eq!(sorted(&merged).to_string(), sorted(&after).to_string());
        // And the diff goes through its stored form (task history) unchanged.
        let stored: Vec<Change> = serde_json::from_value(serde_json::to_value(&changes).expect("serializes")).expect("reads");
        prop_assert_eq!(&stored, &changes);
    }

    #[test]
    fn diffing_the_output_text_gives_the_diff_of_the_parsed_output((before, after) in before_and_after(), pretty: bool) {
        let text = if pretty {
            serde_json::to_string_pretty(&after).unwrap_or_default()
        } else {
            after.to_string()
        };
        match diff_output(&before, &text) {
            Ok(changes) => {
                prop_assert!(after.is_object());
                prop_assert_eq!(changes, diff(&before, &after));
            }
            Err(e) => prop_assert!(!after.is_object(), "{e}"),
        }
    }

    #[test]
    fn a_step_given_a_view_changes_the_data_as_the_reference_semantics_say(
        data in object(),
        reads in prop::collection::vec(read_path(), 0..4),
        patch in object(),
        unrelated in object(),
        patched: bool,
    ) {
        let view = DataView::new(&reads, &Condition::parse(&json!({})).expect("the empty condition"));
        let given = view_by_copying(view.paths(), &data);
        let text = view.text(&data);
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        prop_assert_eq!(&parsed, &given, "the view's text");
        let output = if patched {
            let mut output = given.clone();
            merge_patch(&mut output, &patch);
            output
        } else {
            unrelated
        };
        let diffed = diff_output_in_view(&data, &output.to_string(), &view);
        let Some(reference) = spread_over_unseen(diff(&given, &output), &given, &data) else {
            prop_assert!(matches!(diffed, Err(OutputError::ObjectOverUnseen { .. })), "{:?}", diffed);
            return Ok(());
        };
        let changes = diffed.expect("an object");
        let mut merged = data.clone();
        apply(&mut merged, &changes);
        let mut expected = data.clone();
        apply(&mut expected, &reference);
        prop_assert_eq!(&merged, &expected, "changes {:?}, reference {:?}", changes, reference);
    }

    #[test]
    fn a_value_has_no_diff_with_itself(value in json_value()) {
        prop_assert!(diff(&value, &value).is_empty());
    }

    #[test]
    fn diffs_on_different_paths_land_in_either_order(before in object(), p1 in object(), p2 in object()) {
        let mut a1 = before.clone();
        merge_patch(&mut a1, &p1);
        let mut a2 = before.clone();
        merge_patch(&mut a2, &p2);
        let (d1, d2) = (diff(&before, &a1), diff(&before, &a2));
        let disjoint = paths(&d1).iter().all(|x| paths(&d2).iter().all(|y| !overlaps(x, y)));
        if disjoint {
            let mut one = before.clone();
            prop_assert!(apply(&mut one, &d1).is_empty());
            prop_assert!(apply(&mut one, &d2).is_empty());
            let mut other = before.clone();
            prop_assert!(apply(&mut other, &d2).is_empty());
            prop_assert!(apply(&mut other, &d1).is_empty());
            prop_assert_eq!(&one, &other);
            // Each run's own changes are in the result.
            prop_assert!(diff(&one, &a1).iter().all(|c| paths(&d1).iter().all(|p| !overlaps(p, c.path()))));
        }
    }

    #[test]
    fn merge_patch_is_idempotent(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        prop_assert_eq!(&once, &twice);
    }

    #[test]
    fn merge_patch_sets_non_null_members_and_removes_null_ones(target in object(), patch in object()) {
        let mut merged = target.clone();
        merge_patch(&mut merged, &patch);
        let (Value::Object(merged_map), Value::Object(patch_map)) = (&merged, &patch) else {
            return Err(TestCaseError::fail("objects stay objects"));
        };
        for (key, value) in patch_map {
            match value {
                Value::Null => prop_assert!(!merged_map.contains_key(key), "{} removed", key),
                Value::Object(_) => prop_assert!(merged_map.get(key).is_some_and(Value::is_object)),
                other => prop_assert_eq!(merged_map.get(key), Some(&without_object_nulls(other))),
            }
        }
        // Keys the patch does not name are untouched.
        if let Value::Object(target_map) = &target {
            for (key, value) in target_map.iter().filter(|(k, _)| !patch_map.contains_key(*k)) {
                prop_assert_eq!(merged_map.get(key), Some(value));
            }
        }
    }

    #[test]
    fn a_merge_patch_between_two_values_turns_one_into_the_other(before in json_value(), after in json_value()) {
        let after = without_object_nulls(&after);
        let patch = merge_patch_between(&before, &after);
        let mut merged = before.clone();
        merge_patch(&mut merged, &patch);
        prop_assert_eq!(&merged, &after, "patch {}", patch);
    }
}

/// `value` with every object's keys sorted, to compare text.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
