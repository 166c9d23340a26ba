//! The few JavaScript semantics the RetailMax seed's steps rely on, so that their Rust ports
//! compute what the original `content` functions compute:
//!
//! - `undefined` is not `null`: [`lookup`] answers `None` where JavaScript reads `undefined`,
//!   [`read`] fails where JavaScript throws a `TypeError` (reading a property of `undefined`),
//!   [`object`] and [`assign`] leave out `undefined` values as `JSON.stringify` does;
//! - coercions: [`truthy`] (`if (x)`, `x || y`), [`number`] (`Number(x)`, arithmetic and
//!   comparisons: `undefined` is `NaN`, which no threshold passes), [`string`] (`${x}`);
//! - numbers: [`round`] is `Math.round`, [`to_json`] writes a number as `JSON.stringify` does
//!   (`20`, not `20.0`; `NaN` as `null`), [`number_string`] as a template literal does;
//! - dates: [`date`] is `new Date(x)`, [`iso_string`] is `toISOString()`,
//!   [`locale_date_string`] is `toLocaleDateString()` (en-US, UTC), [`add_days`] is
//!   `setDate(getDate() + n)`.
//!
//! `#![no_std]`, as the RetailMax steps are (the SDK's `no_std_support!` says why).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};
use whenever_step_sdk::data::{index, keys, remove, set};
use whenever_step_sdk::serde_json::{Map, Value};

/// A JavaScript `Date` (UTC).
pub type Date = DateTime<Utc>;

/// The value at a dotted path (`"order.customer.email"`, `"order.items.0.sku"`), or `None` where
/// JavaScript would read `undefined` (optional chaining: `data.order?.customer?.email`).
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = data;
    for key in keys(path) {
        here = match here {
            Value::Object(map) => map.get(key)?,
            Value::Array(items) => items.get(index(key)?)?,
            _ => return None,
        };
    }
    Some(here)
}

/// Reads `data.<path>` as plain JavaScript does: `None` for `undefined`, and the `TypeError`
/// message when a step on the way is `undefined` or `null` (`data.order.shipping.method` without
/// a `shipping` throws "Cannot read properties of undefined (reading 'method')").
pub fn read<'a>(data: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let mut here = Some(data);
    for key in keys(path) {
        here = match here {
            None => {
                return Err(format!("Cannot read properties of undefined (reading '{key}')"));
            }
            Some(Value::Null) => {
                return Err(format!("Cannot read properties of null (reading '{key}')"));
            }
            Some(Value::Object(map)) => map.get(key),
            Some(Value::Array(items)) => index(key).and_then(|i| items.get(i)),
            Some(_) => None,
        };
    }
    Ok(here)
}

/// The array at `path` on which the seed calls `method` (`data.order.items.some(...)`), or the
/// `TypeError` JavaScript throws when it is missing or not an array.
pub fn array<'a>(data: &'a Value, path: &str, method: &str) -> Result<&'a [Value], String> {
    match read(data, path)? {
        Some(Value::Array(items)) => Ok(items),
        None => Err(format!("Cannot read properties of undefined (reading '{method}')")),
        Some(Value::Null) => Err(format!("Cannot read properties of null (reading '{method}')")),
        Some(_) => Err(format!("data.{path}.{method} is not a function")),
    }
}

/// Whether JavaScript treats the value as true (`if (x)`): not `undefined`, `null`, `false`,
/// `0`, `NaN` or `""`.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

/// `x || fallback`: the value when it is truthy, else the fallback.
pub fn or(value: Option<&Value>, fallback: impl Into<Value>) -> Value {
    match value {
        Some(v) if truthy(Some(v)) => v.clone(),
        _ => fallback.into(),
    }
}

/// `Number(x)`, as arithmetic and comparisons coerce: `undefined` is `NaN`, `null` is 0,
/// booleans are 0 or 1, numeric strings their number.
pub fn number(value: Option<&Value>) -> f64 {
    match value {
        None => f64::NAN,
        Some(Value::Null) => 0.0,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => {
            let s = s.trim();
            match s {
                "" => 0.0,
                "Infinity" | "+Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => s.parse::<f64>().ok().filter(|f| f.is_finite()).unwrap_or(f64::NAN),
            }
        }
        Some(Value::Array(items)) if items.is_empty() => 0.0,
        Some(Value::Array(items)) if items.len() == 1 => number(Some(&Value::String(join(items, ",")))),
        Some(_) => f64::NAN,
    }
}

/// A number as a template literal shows it: `1247.99`, `1000`, `NaN`, `1e+21`.
pub fn number_string(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else if n == 0.0 {
        "0".into()
    } else if n.abs() >= 1e21 || n.abs() < 1e-6 {
        // JavaScript switches to exponent notation here and always signs the exponent.
        let text = format!("{n:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        }
    } else {
        // Rust prints the shortest text that reads back as the same number, as JavaScript does.
        format!("{n}")
    }
}

/// `${x}` in a template literal (or `String(x)`): `undefined`, `null`, numbers as JavaScript
/// prints them, arrays joined with commas, objects as `[object Object]`.
pub fn string(value: Option<&Value>) -> String {
    match value {
        None => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) if i.unsigned_abs() <= 1 << 53 => i.to_string(),
            (_, Some(u)) if u <= 1 << 53 => u.to_string(),
            _ => number_string(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => join(items, ","),
        Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// `array.join(separator)`: `undefined` and `null` elements become empty text.
pub fn join(items: &[Value], separator: &str) -> String {
    items
        .iter()
        .map(|item| match item {
            Value::Null => String::new(),
            other => string(Some(other)),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// `${data.<path>}` where the seed is sure the path exists (or only logs it): [`string`] of
/// [`lookup`].
pub fn text(data: &Value, path: &str) -> String {
    string(lookup(data, path))
}

/// `data.<path>` used as a number: [`number`] of [`lookup`].
pub fn num(data: &Value, path: &str) -> f64 {
    number(lookup(data, path))
}

/// `Math.round(n)`: halves round up (towards +∞), unlike Rust's `f64::round`.
pub fn round(n: f64) -> f64 {
    let floor = floor(n);
    if n - floor >= 0.5 { floor + 1.0 } else { floor }
}

/// `Math.floor(n)`.
pub fn floor(n: f64) -> f64 {
    libm::floor(n)
}

/// `Math.ceil(n)`.
pub fn ceil(n: f64) -> f64 {
    libm::ceil(n)
}

/// `Math.trunc(n)`.
pub fn trunc(n: f64) -> f64 {
    libm::trunc(n)
}

/// A computed number as `JSON.stringify` writes it: integral values as integers (`20`, not
/// `20.0`), `NaN` and infinities as `null`.
pub fn to_json(n: f64) -> Value {
    if !n.is_finite() {
        Value::Null
    } else if trunc(n) == n && n.abs() <= 9_007_199_254_740_992.0 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

/// An object literal whose `undefined` members (`None`) are left out, as `JSON.stringify` and
/// the connectors' JSON arguments leave them out.
pub fn object<'a>(members: impl IntoIterator<Item = (&'a str, Option<Value>)>) -> Value {
    let mut map = Map::new();
    for (key, value) in members {
        if let Some(value) = value {
            map.insert(key.to_string(), value);
        }
    }
    Value::Object(map)
}

/// `data.<path> = value` where `value` may be `undefined` (`None`): the key then disappears
/// from the JSON, as it does when JavaScript serializes the data.
pub fn assign(data: &mut Value, path: &str, value: Option<Value>) {
    match value {
        Some(value) => set(data, path, value),
        None => {
            remove(data, path);
        }
    }
}

/// `new Date(x)`: a string in the ISO formats JavaScript reads (date-time with `Z` or an offset,
/// date-time without one, read as UTC here, or a date alone, which JavaScript reads as UTC), a
/// number of milliseconds, or `null` (the epoch). `None` is an invalid date.
pub fn date(value: Option<&Value>) -> Option<Date> {
    match value? {
        Value::Null => DateTime::from_timestamp_millis(0),
        Value::Number(n) => DateTime::from_timestamp_millis(trunc(n.as_f64()?) as i64),
        Value::String(s) => parse_date(s),
        _ => None,
    }
}

/// Parses a date string as [`date`] does.
pub fn parse_date(text: &str) -> Option<Date> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

/// `date.toISOString()`: `2025-08-20T16:45:35.000Z`.
pub fn iso_string(date: &Date) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year(),
        date.month(),
        date.day(),
        date.hour(),
        date.minute(),
        date.second(),
        date.timestamp_subsec_millis(),
    )
}

/// `date.toLocaleDateString()` as an en-US runtime in UTC shows it: `8/20/2025`.
pub fn locale_date_string(date: &Date) -> String {
    format!("{}/{}/{}", date.month(), date.day(), date.year())
}

/// `date.setDate(date.getDate() + days)`; `None` (an invalid date) when `days` is not a finite
/// number.
pub fn add_days(date: &Date, days: f64) -> Option<Date> {
    if !days.is_finite() || days.abs() > 100_000_000.0 {
        return None;
    }
    date.checked_add_signed(TimeDelta::days(trunc(days) as i64))
}

/// `end - start` for two dates, in milliseconds (`NaN` when either is invalid).
pub fn millis_between(start: Option<Date>, end: Option<Date>) -> f64 {
    match (start, end) {
        (Some(start), Some(end)) => (end - start).num_milliseconds() as f64,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whenever_step_sdk::json;

    #[test]
    fn undefined_null_and_type_errors() {
        let data = json!({"order": {"customer": null, "items": [{"sku": "A"}], "total": 5}});
        assert_eq!(lookup(&data, "order.items.0.sku"), Some(&json!("A")));
        assert_eq!(lookup(&data, "order.shipping.method"), None);
        assert_eq!(read(&data, "order.total"), Ok(Some(&json!(5))));
        assert_eq!(read(&data, "order.fraud"), Ok(None));
        assert_eq!(
            read(&data, "order.shipping.method"),
            Err("Cannot read properties of undefined (reading 'method')".to_string())
        );
        assert_eq!(
            read(&data, "order.customer.email"),
            Err("Cannot read properties of null (reading 'email')".to_string())
        );
        assert_eq!(read(&data, "order.total.x"), Ok(None));
        assert!(array(&data, "order.items", "some").is_ok());
        assert_eq!(
            array(&data, "order.lines", "some"),
            Err("Cannot read properties of undefined (reading 'some')".to_string())
        );
    }

    #[test]
    fn coercions() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(0))));
        assert!(!truthy(Some(&json!(""))));
        assert!(truthy(Some(&json!("0"))));
        assert!(truthy(Some(&json!([]))));
        assert_eq!(or(Some(&json!(0)), 0), json!(0));
        assert_eq!(or(Some(&json!(36.49)), 0), json!(36.49));
        assert_eq!(or(None, "Payment failed"), json!("Payment failed"));
        assert!(number(None).is_nan());
        assert_eq!(number(Some(&json!(null))), 0.0);
        assert_eq!(number(Some(&json!(" 12 "))), 12.0);
        assert!(number(Some(&json!("abc"))).is_nan());
        // `undefined < 3` is false in JavaScript, as `NaN < 3` is in Rust.
        assert!(!(number(None) < 3.0));
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(string(Some(&json!(1247.99))), "1247.99");
        assert_eq!(string(Some(&json!(1000.0))), "1000");
        assert_eq!(string(Some(&json!(124))), "124");
        assert_eq!(string(None), "undefined");
        assert_eq!(string(Some(&json!(["a", null, 1]))), "a,,1");
        assert_eq!(number_string(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number_string(1e21), "1e+21");
        assert_eq!(number_string(1.5e-7), "1.5e-7");
        assert_eq!(number_string(f64::NAN), "NaN");
        assert_eq!(to_json(20.0), json!(20));
        assert_eq!(to_json(36.49), json!(36.49));
        assert_eq!(to_json(f64::NAN), json!(null));
    }

    #[test]
    fn math_round_rounds_halves_up() {
        assert_eq!(round(1247.99 * 100.0), 124799.0);
        assert_eq!(round(2.5), 3.0);
        assert_eq!(round(-2.5), -2.0);
        assert_eq!(round(-2.6), -3.0);
        assert_eq!(round(0.49999999999999994), 0.0);
    }

    #[test]
    fn objects_leave_out_undefined() {
        let value = object([("a", Some(json!(1))), ("b", None), ("c", Some(json!(null)))]);
        assert_eq!(value, json!({"a": 1, "c": null}));
        let mut data = json!({"item": {"x": 1}});
        assign(&mut data, "item.x", None);
        assign(&mut data, "item.y", Some(json!(2)));
        assert_eq!(data, json!({"item": {"y": 2}}));
    }

    #[test]
    fn dates() {
        let start = date(Some(&json!("2025-08-18T16:45:00Z"))).expect("valid");
        let end = parse_date("2025-08-18T16:45:45.500Z").expect("valid");
        assert_eq!(millis_between(Some(start), Some(end)), 45500.0);
        assert!(millis_between(date(None), Some(end)).is_nan());
        let later = add_days(&end, (4.0_f64 / 24.0 + 2.0).ceil()).expect("valid");
        assert_eq!(iso_string(&later), "2025-08-21T16:45:45.500Z");
        assert_eq!(locale_date_string(&later), "8/21/2025");
        assert_eq!(add_days(&end, f64::NAN), None);
        assert_eq!(
            iso_string(&parse_date("2025-08-18").expect("date")),
            "2025-08-18T00:00:00.000Z"
        );
        assert_eq!(
            iso_string(&date(Some(&json!(null))).expect("epoch")),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
