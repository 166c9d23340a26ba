//! A step's output diffed against the data it started from while it is parsed.
//!
//! A step hands back the whole task data as JSON text, and most of it is what it was given. Parsing
//! it into a tree and then diffing the tree walked and allocated all of it twice; here each value is
//! compared with its counterpart in the data as it is read, and only what differs is built:
//! objects are followed key by key, a string equal to the old one is never copied, and arrays
//! (diffed index by index only when their lengths match) and changed values are built whole. The
//! changes are exactly those of [`merge::diff`] on the parsed output.
//!
//! A step given a view of the data ([`DataView`]) is diffed against the data within its view
//! ([`diff_output_in_view`]): what it was not given is not removed, and an object it writes where
//! it was given nothing is merged into the one the data holds there.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use smallvec::SmallVec;

use super::merge::{self, Change, PATH_ROOM, child, diff_into, push_index, push_segment};
use crate::runtime::{DataView, Holds};
use crate::task::VIA;

/// Why a step's output was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The text is not JSON.
    #[error("the step returned invalid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// The JSON is not an object (task data always is).
    #[error("the step returned JSON that is not an object")]
    NotAnObject,
    /// The step wrote an object (a path below it, say with the SDK's `set`) where the task holds
    /// a value that is not an object and that the step was not given: merged it cannot be, and
    /// replacing it would lose what the step never saw (an order's items, say).
    #[error(
        "the step wrote an object at {path}, where the task holds {held} that the step was not \
         given: it cannot be merged into it, and replacing it would lose it (list `{reads}` in the \
         manifest's `reads`, so that the step sees it)"
    )]
    ObjectOverUnseen {
        /// Where, as a JSON Pointer.
        path: String,
        /// What the task holds there (`an array`, `a string`, ...).
        held: &'static str,
        /// The same path as a manifest's `reads` lists it.
        reads: String,
    },
    /// The step changed `$via`, the host's record of how the task arrived (which webhook, which
    /// delivery): a step that could rewrite it could pass a task off as another's.
    #[error(
        "the step changed {path}: `$via` is the host's record of how the task arrived, which steps \
         read and do not change"
    )]
    HostRecord {
        /// The change's path, as a JSON Pointer.
        path: String,
    },
    /// What the step wrote nests the task's data past [`crate::task::MAX_NESTING`]: kept, the
    /// data (and every answer and history entry holding it) could no longer be read back.
    #[error("{0}")]
    TooDeep(String),
}

/// The changes that turn `before` into the JSON object `output`.
pub fn diff_output(before: &Value, output: &str) -> Result<Vec<Change>, OutputError> {
    diff_in_scope(before, output, Scope::Given)
}

/// The changes a step given `view` of `before` made, its `output` being that view as it left it:
/// what the view held and the output lacks is removed, what the output holds is set, and where
/// the view held nothing (a key it did not give) objects are merged key by key rather than
/// replaced and nothing is removed.
pub fn diff_output_in_view(before: &Value, output: &str, view: &DataView) -> Result<Vec<Change>, OutputError> {
    let scope = match view.holds() {
        Holds::Everything => Scope::Given,
        Holds::Keys(keys) => Scope::Partly(keys),
    };
    diff_in_scope(before, output, scope)
}

fn diff_in_scope(before: &Value, output: &str, scope: Scope<'_>) -> Result<Vec<Change>, OutputError> {
    let mut reader = serde_json::Deserializer::from_str(output);
    let mut path = String::with_capacity(PATH_ROOM);
    let mut changes = Vec::new();
    let mut refused = None;
    let read = DiffSeed {
        before,
        scope,
        path: &mut path,
        changes: &mut changes,
        refused: &mut refused,
    }
    .deserialize(&mut reader);
    if let Some(refused) = refused {
        return Err(refused);
    }
    let shape = read.map_err(OutputError::InvalidJson)?;
    reader.end().map_err(OutputError::InvalidJson)?;
    match shape {
        Shape::Object => {
            if let Some(change) = changes.iter().find(|c| under_via(c.path())) {
                return Err(OutputError::HostRecord {
                    path: change.path().to_string(),
                });
            }
            match changes.iter().find_map(too_deep) {
                Some(why) => Err(OutputError::TooDeep(why)),
                None => Ok(changes),
            }
        }
        Shape::Other => Err(OutputError::NotAnObject),
    }
}

/// Why `change` would nest the data past [`crate::task::MAX_NESTING`], or `None`: the data is
/// as deep as the objects its path passes through and the value set there. Only changed values
/// are walked, and a run's changes are usually a few scalars.
fn too_deep(change: &Change) -> Option<String> {
    let levels = change.path().matches('/').count() + crate::task::nesting(change.value()?);
    crate::task::too_deep(
        &format!("the task's data, with what the step wrote at {},", change.path()),
        levels,
    )
}

/// Whether the JSON Pointer `path` is `/$via` or below it.
fn under_via(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(VIA))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What kind of value was read (the top level must be an object).
enum Shape {
    Object,
    Other,
}

/// How much of `before` the step was given, at one point of the data.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// All of it.
    Given,
    /// These keys of the object `before` (each with what was given below it).
    Partly(&'a [(String, Holds)]),
    /// Nothing: the step writes here without having seen what is there.
    Unseen,
}

impl<'a> Scope<'a> {
    /// What was given at `key` of the object `before` (whose value there is `value`).
    fn at(self, key: &str, value: &Value) -> Scope<'a> {
        match self {
            Scope::Given | Scope::Unseen => self,
            Scope::Partly(keys) => match keys.iter().find(|(k, _)| k == key) {
                Some((_, Holds::Keys(below))) if value.is_object() => Scope::Partly(below),
                // Held whole, or not an object: given whole.
                Some(_) => Scope::Given,
                None => Scope::Unseen,
            },
        }
    }

    /// Whether the step was given `key` of the object `before`, so that its absence from the
    /// output removes it.
    fn gave(self, key: &str) -> bool {
        match self {
            Scope::Given => true,
            Scope::Partly(keys) => keys.iter().any(|(k, _)| k == key),
            Scope::Unseen => false,
        }
    }
}

/// Reads one value, diffing it against `before` at `path` into `changes`.
struct DiffSeed<'a> {
    before: &'a Value,
    scope: Scope<'a>,
    path: &'a mut String,
    changes: &'a mut Vec<Change>,
    /// Why the output was refused midway (the read then ends with an error of its own).
    refused: &'a mut Option<OutputError>,
}

impl DiffSeed<'_> {
    /// A value read whole: a change when it differs (where nothing was given, replacing it
    /// whole rather than diffing into what the step did not see).
    fn whole(self, after: Value) -> Shape {
        match self.scope {
            Scope::Unseen => {
                if *self.before != after {
                    self.changes.push(Change::Set {
                        path: self.path.clone(),
                        value: after,
                    });
                }
            }
            Scope::Given | Scope::Partly(_) => diff_into(self.before, &after, self.path, self.changes),
        }
        Shape::Other
    }

    /// An array read against the array `before`, element by element: while the output's
    /// elements pair with `before`'s, each is diffed against its counterpart (only what differs
    /// is built); when the lengths turn out to differ, the array is one change, set whole, and
    /// is rebuilt from `before` with those element changes and the elements past its end.
    fn array_against<'de, A: SeqAccess<'de>>(self, before: &[Value], mut seq: A) -> Result<Shape, A::Error> {
        let mut inside = Vec::new();
        let mut past_end = Vec::new();
        let mut count = 0;
        let base = self.path.len();
        loop {
            let read = match before.get(count) {
                Some(old) => {
                    push_index(self.path, count);
                    let read = seq.next_element_seed(DiffSeed {
                        before: old,
                        scope: Scope::Given,
                        path: self.path,
                        changes: &mut inside,
                        refused: self.refused,
                    })?;
                    self.path.truncate(base);
                    read.is_some()
                }
                None => match seq.next_element::<Value>()? {
                    Some(item) => {
                        past_end.push(item);
                        true
                    }
                    None => false,
                },
            };
            if !read {
                break;
            }
            count += 1;
        }
        if count == before.len() {
            self.changes.extend(inside);
            return Ok(Shape::Other);
        }
        let mut rebuilt = Value::Array(before[..count.min(before.len())].to_vec());
        let relative: Vec<Change> = inside.into_iter().map(|c| c.below(base)).collect();
        merge::apply(&mut rebuilt, &relative);
        if let Value::Array(items) = &mut rebuilt {
            items.extend(past_end);
        }
        self.changes.push(Change::Set {
            path: self.path.clone(),
            value: rebuilt,
        });
        Ok(Shape::Other)
    }
}

impl<'de> DeserializeSeed<'de> for DiffSeed<'_> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DiffSeed<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Shape, E> {
        Ok(self.whole(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Shape, E> {
        Ok(self.whole(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Shape, E> {
        Ok(self.whole(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Shape, E> {
        Ok(self.whole(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Shape, E> {
        if self.before.as_str() == Some(v) {
            return Ok(Shape::Other);
        }
        Ok(self.whole(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Shape, E> {
        if self.before.as_str() == Some(v.as_str()) {
            return Ok(Shape::Other);
        }
        Ok(self.whole(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(self.whole(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        if let (Value::Array(before), Scope::Given | Scope::Partly(_)) = (self.before, self.scope) {
            return self.array_against(before, seq);
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(self.whole(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let Value::Object(before) = self.before else {
            if let (Scope::Unseen, Some(held)) = (self.scope, held_apart(self.before)) {
                *self.refused = Some(OutputError::ObjectOverUnseen {
                    path: self.path.clone(),
                    held,
                    reads: dotted(self.path),
                });
                return Err(de::Error::custom("an object over a value the step was not given"));
            }
            let mut after = Map::new();
            while let Some((key, value)) = map.next_entry::<String, Value>()? {
                after.insert(key, value);
            }
            self.whole(Value::Object(after));
            return Ok(Shape::Object);
        };
        let entries: SmallVec<[(&String, &Value); KEYS_IN_PLACE]> = before.iter().collect();
        let mut seen: SmallVec<[bool; KEYS_IN_PLACE]> = SmallVec::from_elem(false, entries.len());
        // Changes inside the kept keys, by position in `before`; keys `before` lacks, in order.
        let mut inside: Vec<(usize, Vec<Change>)> = Vec::new();
        let mut added: Vec<(String, Value)> = Vec::new();
        // Past a few keys, both are looked up by hash: a step writing 300,000 keys, or all of a
        // large object's keys in another order, would otherwise cost their count squared.
        let mut where_before: Option<HashMap<&str, usize>> = None;
        let mut where_added: Option<HashMap<String, usize>> = None;
        // Where each kept key's entry is in `inside`, once a key is repeated.
        let mut inside_at: Option<HashMap<usize, usize>> = None;
        let mut next = 0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // A step usually keeps the keys in the order it got them: look there first.
            let at = match entries.get(next) {
                Some((k, _)) if k.as_str() == key => Some(next),
                _ if entries.len() <= KEYS_IN_PLACE => entries.iter().position(|(k, _)| k.as_str() == key),
                _ => where_before
                    .get_or_insert_with(|| entries.iter().enumerate().map(|(i, (k, _))| (k.as_str(), i)).collect())
                    .get(key.as_ref())
                    .copied(),
            };
            let Some(at) = at else {
                let value: Value = map.next_value()?;
                let slot = if added.len() <= KEYS_IN_PLACE {
                    added.iter().position(|(k, _)| *k == key)
                } else {
                    where_added
                        .get_or_insert_with(|| added.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect())
                        .get(key.as_ref())
                        .copied()
                };
                match slot {
                    Some(slot) => added[slot].1 = value,
                    None => {
                        if let Some(index) = where_added.as_mut() {
                            index.insert(key.to_string(), added.len());
                        }
                        added.push((key.into_owned(), value));
                    }
                }
                continue;
            };
            next = at + 1;
            let mut changes = Vec::new();
            let len = self.path.len();
            push_segment(self.path, &key);
            map.next_value_seed(DiffSeed {
                before: entries[at].1,
                scope: self.scope.at(&key, entries[at].1),
                path: self.path,
                changes: &mut changes,
                refused: self.refused,
            })?;
            self.path.truncate(len);
            if seen[at] {
                // A repeated key: the last one counts, as when the text is parsed. Its entry is
                // replaced where it stands (found by hash: a step may repeat keys by the million).
                let index =
                    inside_at.get_or_insert_with(|| inside.iter().enumerate().map(|(n, (i, _))| (*i, n)).collect());
                match index.get(&at) {
                    Some(&n) => inside[n].1 = changes,
                    None if changes.is_empty() => {}
                    None => {
                        index.insert(at, inside.len());
                        inside.push((at, changes));
                    }
                }
            } else if !changes.is_empty() {
                if let Some(index) = inside_at.as_mut() {
                    index.insert(at, inside.len());
                }
                inside.push((at, changes));
            }
            seen[at] = true;
        }
        inside.sort_by_key(|(i, _)| *i);
        let mut inside = inside.into_iter().peekable();
        for (at, (key, _)) in entries.iter().enumerate() {
            if !seen[at] && self.scope.gave(key) {
                self.changes.push(Change::Remove {
                    path: child(self.path, key),
                });
            } else if let Some((_, changes)) = inside.next_if(|(i, _)| *i == at) {
                self.changes.extend(changes);
            }
        }
        for (key, value) in added {
            self.changes.push(Change::Set {
                path: child(self.path, &key),
                value,
            });
        }
        Ok(Shape::Object)
    }
}

/// What `held` is, for a refusal, when an object written over it by a step that did not see it
/// cannot be merged into it: anything but an object or `null`.
fn held_apart(held: &Value) -> Option<&'static str> {
    match held {
        Value::Object(_) | Value::Null => None,
        Value::Array(_) => Some("an array"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
    }
}

/// A JSON Pointer as a manifest's `reads` writes the path (keys joined by `.`), and as a
/// condition's mismatch names it.
pub(super) fn dotted(pointer: &str) -> String {
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|key| key.replace("~1", "/").replace("~0", "~"))
        .collect();
    keys.join(".")
}

/// Keys of an object `before` that [`DiffSeed::visit_map`] lists on the stack rather than in a
/// vector of its own (the seed's `order` holds about 30 by the end): the diff visits every object
/// of every run's output. Up to as many keys, old and new, are searched one by one; past them,
/// by hash.
const KEYS_IN_PLACE: usize = 32;

/// Reads an object key, borrowed from the text when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::merge::diff;

    /// `[[…[]…]]` nested `levels` deep.
    fn arrays_nested(levels: usize) -> Value {
        (1..levels).fold(json!([]), |inner, _| json!([inner]))
    }

    #[test]
    fn a_write_that_nests_the_data_past_its_limit_is_refused_and_one_within_it_taken() {
        let before = json!({"order": {"id": "A1"}});
        // At /order/deep: two levels of objects, then the arrays.
        let within = json!({"order": {"id": "A1", "deep": arrays_nested(118)}});
        let changes = diff_output(&before, &within.to_string()).expect("120 levels are taken");
        assert_eq!(changes.iter().map(Change::path).collect::<Vec<_>>(), ["/order/deep"]);
        let past = json!({"order": {"id": "A1", "deep": arrays_nested(119)}});
        match diff_output(&before, &past.to_string()) {
            Err(OutputError::TooDeep(why)) => assert!(
                why.starts_with(
                    "the task's data, with what the step wrote at /order/deep, nests arrays and \
                     objects 121 levels deep, past the 120"
                ),
                "{why}"
            ),
            other => panic!("refused as too deep, not {other:?}"),
        }
        // A removal deep in data already that deep (kept before the limit) is taken.
        let legacy = json!({"old": arrays_nested(125)});
        let mut trimmed = legacy.clone();
        trimmed.as_object_mut().expect("object").remove("old");
        assert!(diff_output(&legacy, &trimmed.to_string()).is_ok());
    }

    /// Past [`KEYS_IN_PLACE`], keys old and new are looked up by hash; the changes are those of
    /// a parse and a diff all the same: keys in another order, thousands of new ones, and a
    /// new key given twice (the last value counts, at its first place).
    #[test]
    fn many_keys_reordered_or_new_diff_as_a_parse_does() {
        let before: Map<String, Value> = (0..100).map(|n| (format!("old{n}"), json!(n))).collect();
        let before = json!({"o": before});
        let mut text = String::from("{\"o\": {");
        for n in (0..100).rev().filter(|n| n % 10 != 0) {
            let value = if n % 7 == 0 { n + 1 } else { n };
            text.push_str(&format!("\"old{n}\": {value}, "));
        }
        for n in 0..5000 {
            text.push_str(&format!("\"new{n}\": {n}, "));
        }
        text.push_str("\"new40\": \"again\"}}");
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        let changes = diff_output(&before, &text).expect("diffed");
        assert_eq!(changes, diff(&before, &parsed));
        let mut applied = before.clone();
        assert!(merge::apply(&mut applied, &changes).is_empty());
        assert_eq!(applied["o"].as_object().map(Map::len), Some(90 + 5000));
        assert_eq!(applied["o"]["new40"], json!("again"));
    }

    #[test]
    fn only_what_differs_is_a_change() {
        let before = json!({"order": {"id": "A1", "total": 10, "items": [1, 2]}, "gone": true});
        let after = r#"{"order": {"id": "A1", "total": 12, "items": [1, 2, 3], "paid": {"ok": true}}}"#;
        let changes = diff_output(&before, after).expect("diffed");
        let parsed: Value = serde_json::from_str(after).expect("JSON");
        assert_eq!(changes, diff(&before, &parsed));
        assert_eq!(
            changes.iter().map(Change::path).collect::<Vec<_>>(),
            ["/order/total", "/order/items", "/order/paid", "/gone"]
        );
    }

    #[test]
    fn arrays_are_diffed_by_index_when_lengths_match_and_rebuilt_whole_when_not() {
        let before = json!({"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}], "tags": [[1], [2, 3]]});
        let cases = [
            // The same length: one change inside an element, one inside a nested array.
            r#"{"items": [{"sku": "a", "n": 5}, {"sku": "b", "n": 2}], "tags": [[1], [2, 4]]}"#,
            // Longer: an element changed before the end, one added.
            r#"{"items": [{"sku": "a", "n": 5}, {"sku": "b", "n": 2}, {"sku": "c"}], "tags": [[1], [2, 3]]}"#,
            // Shorter: the first element changed, the second gone; a nested array shortened.
            r#"{"items": [{"sku": "z", "n": 1}], "tags": [[], [2, 3]]}"#,
            // Emptied, and an array where there was none.
            r#"{"items": [], "tags": {"0": [1]}}"#,
        ];
        for after in cases {
            let changes = diff_output(&before, after).expect("diffed");
            let parsed: Value = serde_json::from_str(after).expect("JSON");
            assert_eq!(changes, diff(&before, &parsed), "{after}");
            let mut merged = before.clone();
            merge::apply(&mut merged, &changes);
            assert_eq!(merged, parsed, "{after}");
        }
        let changes = diff_output(&before, cases[1]).expect("diffed");
        assert_eq!(
            changes,
            vec![Change::Set {
                path: "/items".into(),
                value: json!([{"sku": "a", "n": 5}, {"sku": "b", "n": 2}, {"sku": "c"}])
            }]
        );
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let before = json!({"a": 1, "b": 2});
        let after = r#"{"a": 5, "c": 1, "a": 1, "c": 2}"#;
        let parsed: Value = serde_json::from_str(after).expect("JSON");
        assert_eq!(diff_output(&before, after).expect("diffed"), diff(&before, &parsed));
    }

    #[test]
    fn escaped_keys_and_strings_compare_by_their_value() {
        let before = json!({"a\"b": "x\ny", "c/d": "é"});
        let after = r#"{"a\"b": "x\ny", "c/d": "\u00e9"}"#;
        assert_eq!(diff_output(&before, after).expect("diffed"), Vec::<Change>::new());
    }

    #[test]
    fn in_a_view_only_given_keys_are_removed_and_objects_where_nothing_was_given_are_merged() {
        let reads = [
            "order.total".to_string(),
            "order.note".to_string(),
            "order.items".to_string(),
        ];
        let view = DataView::new(
            &reads,
            &whenever_condition::Condition::parse(&json!({})).expect("condition"),
        );
        let before = json!({
            "order": {"id": "A1", "total": 10, "note": "x", "items": [{"sku": "a", "n": 1}], "fraud": {"score": 3}},
            "other": true
        });
        assert_eq!(
            view.text(&before),
            r#"{"order":{"items":[{"sku":"a","n":1}],"note":"x","total":10}}"#
        );
        // `note` removed, `total` changed, the array replaced by index; `fraud` (not given)
        // gets a key merged in; a repeated key counts once, with its last value.
        let after = r#"{"order": {"total": 11, "items": [{"sku": "a"}], "fraud": {"checked": true},
            "paid": 1, "paid": 2}}"#;
        let changes = diff_output_in_view(&before, after, &view).expect("diffed");
        assert_eq!(
            changes,
            vec![
                Change::Set {
                    path: "/order/total".into(),
                    value: json!(11)
                },
                Change::Remove {
                    path: "/order/note".into()
                },
                Change::Remove {
                    path: "/order/items/0/n".into()
                },
                Change::Set {
                    path: "/order/fraud/checked".into(),
                    value: json!(true)
                },
                Change::Set {
                    path: "/order/paid".into(),
                    value: json!(2)
                },
            ]
        );
    }

    #[test]
    fn in_a_view_an_object_over_a_value_not_given_that_is_no_object_is_refused() {
        let view = DataView::new(
            &["order.id".to_string()],
            &whenever_condition::Condition::parse(&json!({})).expect("condition"),
        );
        let before = json!({"order": {"id": "A1", "items": [{"sku": "a"}], "a/b": "x", "gone": null}});
        // `set(data, "order.items.0.reserved", true)` on a view without the items.
        let refused = diff_output_in_view(
            &before,
            r#"{"order": {"id": "A1", "items": {"0": {"reserved": true}}}}"#,
            &view,
        );
        match refused {
            Err(OutputError::ObjectOverUnseen { path, held, reads }) => {
                assert_eq!(
                    (path.as_str(), held, reads.as_str()),
                    ("/order/items", "an array", "order.items")
                );
            }
            other => panic!("{other:?}"),
        }
        let message = diff_output_in_view(&before, r#"{"order": {"a/b": {"c": 1}}}"#, &view)
            .expect_err("refused")
            .to_string();
        assert!(
            message.starts_with("the step wrote an object at /order/a~1b, where the task holds a string")
                && message.contains("list `order.a/b` in the manifest's `reads`"),
            "{message}"
        );
        // Over null (nothing held), or as a whole value (an array for the array), it is written.
        let changes = diff_output_in_view(
            &before,
            r#"{"order": {"id": "A1", "gone": {"x": 1}, "items": []}}"#,
            &view,
        )
        .expect("diffed");
        assert_eq!(
            changes,
            vec![
                Change::Set {
                    path: "/order/items".into(),
                    value: json!([])
                },
                Change::Set {
                    path: "/order/gone".into(),
                    value: json!({"x": 1})
                },
            ]
        );
    }

    #[test]
    fn a_change_to_the_hosts_record_of_arrival_is_refused() {
        let before = json!({"$via": {"name": "shop", "id": "d_1"}, "$viable": 1, "a": 1});
        for output in [
            r#"{"$via": {"name": "shop", "id": "forged"}, "$viable": 1, "a": 1}"#,
            r#"{"$viable": 1, "a": 1}"#,
            r#"{"$via": 7, "$viable": 1, "a": 1}"#,
        ] {
            let refused = diff_output(&before, output).expect_err("refused");
            assert!(
                matches!(&refused, OutputError::HostRecord { path } if path.starts_with("/$via")),
                "{refused}"
            );
        }
        let fine = diff_output(
            &before,
            r#"{"$via": {"name": "shop", "id": "d_1"}, "$viable": 2, "a": 2}"#,
        );
        assert_eq!(fine.expect("other keys change").len(), 2);
        let created = diff_output(&json!({"a": 1}), r#"{"a": 1, "$via": {"name": "made up"}}"#);
        assert!(
            matches!(created, Err(OutputError::HostRecord { .. })),
            "a step does not make one either"
        );
    }

    #[test]
    fn output_that_is_not_a_json_object_is_refused() {
        let before = json!({"a": 1});
        assert!(matches!(
            diff_output(&before, r#"{"a": "#),
            Err(OutputError::InvalidJson(_))
        ));
        assert!(matches!(
            diff_output(&before, r#"{"a": 1} x"#),
            Err(OutputError::InvalidJson(_))
        ));
        assert!(matches!(diff_output(&before, "[1]"), Err(OutputError::NotAnObject)));
        assert!(matches!(diff_output(&before, "7"), Err(OutputError::NotAnObject)));
    }
}
