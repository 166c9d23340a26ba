//! Reading and writing task data by dotted path (`"order.customer.tier"`), JavaScript-style:
//! a missing value reads as null, and writing creates the objects on the way.

use serde_json::{Map, Value};

use crate::text::owned;

static NULL: Value = Value::Null;

/// The keys of a dotted path, as `path.split('.')` gives them. A plain scan for the dot: in wasm
/// `str::split`'s searcher costs a `memchr` call per key of a few bytes.
pub fn keys(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    core::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b'.') {
            Some(dot) => {
                rest = Some(&text[dot + 1..]);
                Some(&text[..dot])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// An array index as JavaScript reads a key: digits, without a sign or a leading zero (`0`,
/// `12`; not `+1` or `01`, which are keys of no element).
pub fn index(key: &str) -> Option<usize> {
    let canonical = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) && (key == "0" || !key.starts_with('0'));
    if canonical { key.parse().ok() } else { None }
}

/// The value at `path`, or null when any part is missing. A path of the data the content was
/// given that the step's manifest does not let it read is logged as a warning (it reads as
/// absent whatever the task holds; README.md, "The manifest").
pub fn get<'a>(data: &'a Value, path: &str) -> &'a Value {
    let mut here = data;
    for (found, key) in keys(path).enumerate() {
        here = match here {
            Value::Object(map) => match map.get(key) {
                Some(value) => value,
                None => {
                    crate::reads::absent(data, path, found);
                    return &NULL;
                }
            },
            Value::Array(items) => match index(key) {
                Some(index) => items.get(index).unwrap_or(&NULL),
                None => &NULL,
            },
            _ => &NULL,
        };
    }
    here
}

/// The number at `path`, or 0 when it is missing or not a number.
pub fn get_f64(data: &Value, path: &str) -> f64 {
    get(data, path).as_f64().unwrap_or(0.0)
}

/// The string at `path`, or "" when it is missing or not a string.
pub fn get_str<'a>(data: &'a Value, path: &str) -> &'a str {
    get(data, path).as_str().unwrap_or("")
}

/// Whether the value at `path` is `true`.
pub fn get_bool(data: &Value, path: &str) -> bool {
    get(data, path).as_bool().unwrap_or(false)
}

/// The most nulls [`set`] pads an array with, to reach an index past its end (4 MiB of them
/// would pass a step's default output limit).
pub const MAX_PADDING: usize = 1 << 20;

/// Sets `path` to `value`. An array on the way is indexed by a key that is a number, as [`get`]
/// reads it (`order.items.0.reserved`; the index one past its end appends, a further one pads with
/// nulls, at most [`MAX_PADDING`]: a further one panics naming the path); anything else on the way that is not an object is replaced by an object, and missing
/// objects are created.
pub fn set(data: &mut Value, path: &str, value: impl Into<Value>) {
    let mut here = data;
    let mut keys = keys(path).peekable();
    while let Some(key) = keys.next() {
        let last = keys.peek().is_none();
        let index = here.as_array().and_then(|_| index(key));
        if let Some(index) = index {
            let Value::Array(items) = here else { return };
            if index >= items.len() {
                // A far index is most often a mistake: told as one, not as an allocation failure.
                let padding = index - items.len();
                assert!(
                    padding <= MAX_PADDING,
                    "set({path:?}): index {index} is {padding} past the end of an array of {} (at most \
                     {MAX_PADDING} nulls are padded)",
                    items.len()
                );
                items.resize(index + 1, Value::Null);
            }
            let Some(slot) = items.get_mut(index) else { return };
            if last {
                *slot = value.into();
                return;
            }
            here = slot;
            continue;
        }
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(map) = here else { return };
        if last {
            match map.get_mut(key) {
                Some(old) => *old = value.into(),
                None => {
                    map.insert(owned(key), value.into());
                }
            }
            return;
        }
        // A key is copied only when it is new.
        if !map.contains_key(key) {
            map.insert(owned(key), Value::Null);
        }
        let Some(next) = map.get_mut(key) else { return };
        here = next;
    }
}

/// Removes the value at `path`, if any, and returns it; an array on the way is indexed as by
/// [`get`], and an element removed from an array shifts the ones after it down.
pub fn remove(data: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (Some(parent), last),
        None => (None, path),
    };
    let mut here = data;
    if let Some(parent) = parent {
        for key in keys(parent) {
            here = match here {
                Value::Object(map) => map.get_mut(key)?,
                Value::Array(items) => items.get_mut(index(key)?)?,
                _ => return None,
            };
        }
    }
    match here {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let index = index(last).filter(|index| *index < items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_reads_missing_as_null() {
        let data = json!({"order": {"items": [{"sku": "A"}]}});
        assert_eq!(get(&data, "order.items.0.sku"), &json!("A"));
        assert!(get(&data, "order.customer.tier").is_null());
        assert_eq!(get_f64(&data, "order.total"), 0.0);
    }

    #[test]
    fn an_index_is_digits_as_javascript_reads_it() {
        let data = json!({"items": ["a", "b"]});
        assert_eq!(get(&data, "items.1"), &json!("b"));
        for key in ["+1", "01", "1.0", " 1", "-0", ""] {
            assert!(index(key).is_none(), "{key:?}");
        }
        assert!(get(&data, "items.+1").is_null());
        assert!(get(&data, "items.01").is_null());
    }

    #[test]
    fn keys_are_what_split_gives() {
        for path in ["", ".", "a", "a.b", "order.items.0.sku", "a..b", ".a", "a.", "é.ü.😀"] {
            assert_eq!(
                keys(path).collect::<Vec<_>>(),
                path.split('.').collect::<Vec<_>>(),
                "{path}"
            );
        }
    }

    #[test]
    fn set_replaces_and_adds() {
        let mut data = json!({"order": {"id": 1, "total": 5, "note": "x"}});
        set(&mut data, "order.total", 7);
        set(&mut data, "order.note.text", "replaced by an object");
        set(&mut data, "tags", json!(["a"]));
        assert_eq!(
            data,
            json!({"order": {"id": 1, "total": 7, "note": {"text": "replaced by an object"}}, "tags": ["a"]})
        );
    }

    #[test]
    fn set_creates_objects_on_the_way() {
        let mut data = json!({"order": {"id": 1}});
        set(&mut data, "order.fulfillment.priority", "high");
        assert_eq!(data, json!({"order": {"id": 1, "fulfillment": {"priority": "high"}}}));
        assert_eq!(remove(&mut data, "order.fulfillment.priority"), Some(json!("high")));
    }

    #[test]
    #[should_panic(expected = "set(\"arr.100000000\"): index 100000000 is 100000000 past the end of an array of 0")]
    fn set_far_past_an_array_s_end_panics_naming_the_path() {
        let mut data = json!({"arr": []});
        set(&mut data, "arr.100000000", 1);
    }

    #[test]
    fn set_writes_into_an_array_as_get_reads_it() {
        let mut data = json!({"order": {"items": [{"sku": "A"}, {"sku": "B"}]}});
        set(&mut data, "order.items.1.reserved", true);
        set(&mut data, "order.items.0", json!({"sku": "A2"}));
        assert_eq!(
            data,
            json!({"order": {"items": [{"sku": "A2"}, {"sku": "B", "reserved": true}]}})
        );
        assert_eq!(get(&data, "order.items.1.reserved"), &json!(true));

        // One past the end appends; further pads with nulls, as JavaScript's `items[4] = …` does.
        set(&mut data, "order.items.2.sku", "C");
        set(&mut data, "order.items.4", "E");
        assert_eq!(
            get(&data, "order.items"),
            &json!([{"sku": "A2"}, {"sku": "B", "reserved": true}, {"sku": "C"}, null, "E"])
        );

        // A key that is not an index replaces the array by an object, as any other non-object.
        let mut data = json!({"tags": ["a"]});
        set(&mut data, "tags.first", "a");
        assert_eq!(data, json!({"tags": {"first": "a"}}));
        // A number key where nothing is creates an object, not an array of nulls.
        let mut data = json!({});
        set(&mut data, "byYear.2024", 7);
        assert_eq!(data, json!({"byYear": {"2024": 7}}));
    }

    #[test]
    fn remove_takes_from_an_array_as_get_reads_it() {
        let mut data = json!({"order": {"items": [{"sku": "A", "note": "x"}, {"sku": "B"}, {"sku": "C"}]}});
        assert_eq!(remove(&mut data, "order.items.0.note"), Some(json!("x")));
        assert_eq!(remove(&mut data, "order.items.1"), Some(json!({"sku": "B"})));
        assert_eq!(data, json!({"order": {"items": [{"sku": "A"}, {"sku": "C"}]}}));
        assert_eq!(remove(&mut data, "order.items.2"), None);
        assert_eq!(remove(&mut data, "order.items.x"), None);
        assert_eq!(remove(&mut data, "order.items.0.sku.deeper"), None);
        assert_eq!(remove(&mut data, "order.missing.0"), None);
        assert_eq!(data, json!({"order": {"items": [{"sku": "A"}, {"sku": "C"}]}}));
    }
}
