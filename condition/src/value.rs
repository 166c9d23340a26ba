//! JSON value helpers shared by the matcher and the projection: exact numeric
//! comparison (so `1` equals `1.0`), deep equality, number normalisation and
//! short descriptions of values for messages.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// The JSON `null` used when a missing field "counts as null".
pub(crate) static NULL: Value = Value::Null;

/// Longest value description (in characters) put into a message.
const DESCRIBE_MAX: usize = 80;

/// Objects with at most this many keys are searched key by key rather than through their hash
/// index: a key of another length is passed over with one comparison, which costs less than
/// hashing the key looked up (SipHash, the default of serde_json's ordered maps). Counted with
/// the `instructions` bench: 8 keys took 1.8% off the instructions of a store-less RetailMax
/// order, 16 took 2.0% and 32 took 3.0% (its `order` object holds about 30 keys).
const SCANNED_UP_TO: usize = 32;

/// The value of `key` in `map`, as `map.get(key)` gives it.
#[inline]
pub fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= SCANNED_UP_TO {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
    }
}

/// The value of `key` in `map`, to change, as `map.get_mut(key)` gives it (searched as
/// [`field`] searches).
#[inline]
pub fn field_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    if map.len() <= SCANNED_UP_TO {
        map.iter_mut().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get_mut(key)
    }
}

/// Compares two JSON numbers by their mathematical value, exactly: integers
/// beyond 2^53 are not rounded through `f64`.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => cmp_int_float(x, as_float(b)),
        (None, Some(y)) => cmp_int_float(y, as_float(a)).reverse(),
        // JSON numbers are never NaN, so the fallback is unreachable.
        (None, None) => as_float(a).partial_cmp(&as_float(b)).unwrap_or(Ordering::Equal),
    }
}

fn as_int(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

fn as_float(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// Exact comparison of an integer (|i| < 2^64) with a finite float.
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // Rounding to nearest is monotone, so a strict order between the rounded
    // integer and `f` is the true order. When they are equal `f` is an
    // integer of magnitude at most 2^64, exactly representable in i128.
    match (i as f64).partial_cmp(&f) {
        Some(Ordering::Equal) => i.cmp(&(f as i128)),
        Some(order) => order,
        None => Ordering::Equal,
    }
}

/// Deep equality of JSON values where numbers compare numerically and object
/// key order does not matter.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => false,
    }
}

/// A canonical copy of `v`: integral floats become integers (so `1.0` and
/// `1` are the same value) and object keys are sorted, so derived equality
/// and the stored JSON text agree with [`json_eq`].
pub(crate) fn normalise(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::Number(normalise_number(n)),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries {
                out.insert(k.clone(), normalise(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// An integral float as an integer; any other number as it is.
pub(crate) fn normalise_number(n: &Number) -> Number {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    const MINUS_TWO_POW_63: f64 = -9_223_372_036_854_775_808.0;
    if n.is_f64() {
        let f = as_float(n);
        if f.fract() == 0.0 {
            if (0.0..TWO_POW_64).contains(&f) {
                return Number::from(f as u64);
            }
            if (MINUS_TWO_POW_63..0.0).contains(&f) {
                return Number::from(f as i64);
            }
        }
    }
    n.clone()
}

/// A short JSON rendering of `v` for messages, cut at a readable length.
pub(crate) fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= DESCRIBE_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(DESCRIBE_MAX).collect();
    cut.push('…');
    cut
}

/// `describe` for a possibly missing value.
pub(crate) fn describe_found(v: Option<&Value>) -> String {
    match v {
        Some(v) => describe(v),
        None => "missing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_finds_what_get_finds() {
        // Around the size where the search changes, keys of one length and of several.
        for len in [
            0,
            1,
            SCANNED_UP_TO - 1,
            SCANNED_UP_TO,
            SCANNED_UP_TO + 1,
            3 * SCANNED_UP_TO,
        ] {
            let map: Map<String, Value> = (0..len).map(|i| (format!("k{i:03}"), json!(i))).collect();
            let mixed: Map<String, Value> = (0..len).map(|i| ("x".repeat(i + 1), json!(i))).collect();
            for key in (0..len + 2)
                .map(|i| format!("k{i:03}"))
                .chain(["".into(), "k".into(), "xx".into()])
            {
                assert_eq!(field(&map, &key), map.get(&key), "{len} keys, {key}");
                let mut changed = map.clone();
                if let Some(value) = field_mut(&mut changed, &key) {
                    *value = json!("changed");
                }
                let mut expected = map.clone();
                if let Some(value) = expected.get_mut(&key) {
                    *value = json!("changed");
                }
                assert_eq!(changed, expected, "{len} keys, {key}");
                assert_eq!(field(&mixed, &key), mixed.get(&key), "{len} keys, {key}");
            }
            for i in 0..len + 2 {
                let key = "x".repeat(i + 1);
                assert_eq!(field(&mixed, &key), mixed.get(&key), "{len} keys, {key}");
            }
        }
    }

    fn num(v: Value) -> Number {
        match v {
            Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn one_equals_one_point_zero() {
        assert_eq!(cmp_numbers(&num(json!(1)), &num(json!(1.0))), Ordering::Equal);
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!(-0.0), &json!(0)));
        assert!(!json_eq(&json!(1), &json!(1.5)));
    }

    #[test]
    fn big_integers_compare_exactly() {
        let a = num(json!(9_007_199_254_740_993_u64)); // 2^53 + 1
        let b = num(json!(9_007_199_254_740_992.0_f64)); // 2^53
        assert_eq!(cmp_numbers(&a, &b), Ordering::Greater);
        assert_eq!(cmp_numbers(&b, &a), Ordering::Less);
        let max = num(json!(u64::MAX));
        let two64 = num(json!(18_446_744_073_709_551_616.0_f64));
        assert_eq!(cmp_numbers(&max, &two64), Ordering::Less);
        let neg = num(json!(i64::MIN));
        assert_eq!(cmp_numbers(&neg, &max), Ordering::Less);
        assert_eq!(cmp_numbers(&num(json!(-1)), &num(json!(-1.0))), Ordering::Equal);
        assert_eq!(cmp_numbers(&num(json!(2.5)), &num(json!(2))), Ordering::Greater);
    }

    #[test]
    fn deep_equality_ignores_key_order_and_number_form() {
        let mut a = Map::new();
        a.insert("x".into(), json!(1));
        a.insert("y".into(), json!([1.0, {"z": 2}]));
        let mut b = Map::new();
        b.insert("y".into(), json!([1, {"z": 2.0}]));
        b.insert("x".into(), json!(1.0));
        assert!(json_eq(&Value::Object(a), &Value::Object(b)));
        assert!(!json_eq(&json!({"x": 1}), &json!({"x": 1, "y": 2})));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_eq(&json!(null), &json!(false)));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }

    #[test]
    fn normalise_makes_equal_values_identical() {
        assert_eq!(
            normalise(&json!({"b": 1.0, "a": [2.0, -3.0]})),
            json!({"a": [2, -3], "b": 1})
        );
        assert_eq!(normalise(&json!(1.5)), json!(1.5));
        assert_eq!(normalise(&json!(-0.0)), json!(0));
        assert_eq!(normalise(&json!(1e300)), json!(1e300));
        let text = normalise(&json!({"b": 1, "a": 2})).to_string();
        assert_eq!(text, r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn describe_cuts_long_values() {
        assert_eq!(describe(&json!("abc")), "\"abc\"");
        let long = describe(&json!("x".repeat(200)));
        assert_eq!(long.chars().count(), DESCRIBE_MAX + 1);
        assert!(long.ends_with('…'));
        assert_eq!(describe_found(None), "missing");
    }
}
