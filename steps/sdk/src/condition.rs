//! The `condition!` macro, which reads like the seed's JavaScript conditions, and the operators.
//!
//! `condition!({ order: { total: Number, payment: { method: "bitcoin" }, fraudChecked: null } })`
//! gives the JSON pattern `{"order":{"total":"$number","payment":{"method":"bitcoin"},"fraudChecked":null}}`.
//! Types: `String`, `Number`, `Boolean`, `Array`, `Object`, `Any`; `null` means absent or null;
//! literals match equal values; keys are identifiers or string literals (`"$via"`); any other
//! value is a Rust expression, such as the operators below (`gt(500)`, `one_of(["a", "b"])`).

use alloc::string::ToString;
use alloc::vec::Vec;

use serde_json::{Value, json};

/// A number greater than `n` (`$gt`).
pub fn gt(n: impl Into<Value>) -> Value {
    json!({ "$gt": n.into() })
}

/// A number greater than or equal to `n` (`$gte`).
pub fn gte(n: impl Into<Value>) -> Value {
    json!({ "$gte": n.into() })
}

/// A number less than `n` (`$lt`).
pub fn lt(n: impl Into<Value>) -> Value {
    json!({ "$lt": n.into() })
}

/// A number less than or equal to `n` (`$lte`).
pub fn lte(n: impl Into<Value>) -> Value {
    json!({ "$lte": n.into() })
}

/// Exactly `v`, even a string starting with `$` (`$eq`).
pub fn eq(v: impl Into<Value>) -> Value {
    json!({ "$eq": v.into() })
}

/// Anything but `v`; a missing field counts as null (`$ne`).
pub fn ne(v: impl Into<Value>) -> Value {
    json!({ "$ne": v.into() })
}

/// Present and not null (`$any`).
pub fn any() -> Value {
    Value::String("$any".to_string())
}

/// A string containing a match of the regular expression (`$regex`).
pub fn regex(re: &str) -> Value {
    json!({ "$regex": re })
}

/// One of the listed values (`$in`).
pub fn one_of<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> Value {
    json!({ "$in": values.into_iter().map(Into::into).collect::<Vec<Value>>() })
}

/// None of the listed values (`$nin`).
pub fn none_of<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> Value {
    json!({ "$nin": values.into_iter().map(Into::into).collect::<Vec<Value>>() })
}

/// Anything the pattern does not match, a missing field included (`$not`).
pub fn not(pattern: Value) -> Value {
    json!({ "$not": pattern })
}

/// Builds a condition pattern from JavaScript-like syntax; see the module docs.
#[macro_export]
macro_rules! condition {
    // Objects: munch `key: value-tokens,` pairs.
    (@object $map:ident ()) => {};
    (@object $map:ident ($key:tt : $($rest:tt)*)) => {
        $crate::condition!(@value $map [$key] () ($($rest)*))
    };
    (@value $map:ident [$key:tt] ($($value:tt)+) (, $($rest:tt)*)) => {
        $map.insert($crate::condition!(@key $key), $crate::condition!($($value)+));
        $crate::condition!(@object $map ($($rest)*))
    };
    (@value $map:ident [$key:tt] ($($value:tt)+) ()) => {
        $map.insert($crate::condition!(@key $key), $crate::condition!($($value)+));
    };
    (@value $map:ident [$key:tt] ($($value:tt)*) ($next:tt $($rest:tt)*)) => {
        $crate::condition!(@value $map [$key] ($($value)* $next) ($($rest)*))
    };
    // A raw identifier (`r#type`) is the key without its `r#`.
    (@key $key:ident) => {
        $crate::__private::String::from({
            let key: &str = stringify!($key);
            key.strip_prefix("r#").unwrap_or(key)
        })
    };
    (@key $key:literal) => { $crate::__private::String::from($key) };
    // Arrays: munch comma-separated values.
    (@array $items:ident () ()) => {};
    (@array $items:ident ($($value:tt)+) ()) => {
        $items.push($crate::condition!($($value)+));
    };
    (@array $items:ident ($($value:tt)+) (, $($rest:tt)*)) => {
        $items.push($crate::condition!($($value)+));
        $crate::condition!(@array $items () ($($rest)*))
    };
    (@array $items:ident ($($value:tt)*) ($next:tt $($rest:tt)*)) => {
        $crate::condition!(@array $items ($($value)* $next) ($($rest)*))
    };
    (null) => { $crate::serde_json::Value::Null };
    (String) => { $crate::serde_json::Value::String("$string".into()) };
    (Number) => { $crate::serde_json::Value::String("$number".into()) };
    (Boolean) => { $crate::serde_json::Value::String("$boolean".into()) };
    (Array) => { $crate::serde_json::Value::String("$array".into()) };
    (Object) => { $crate::serde_json::Value::String("$object".into()) };
    (Any) => { $crate::serde_json::Value::String("$any".into()) };
    ({ $($body:tt)* }) => {{
        #[allow(unused_mut)]
        let mut map = $crate::serde_json::Map::new();
        $crate::condition!(@object map ($($body)*));
        $crate::serde_json::Value::Object(map)
    }};
    ([ $($body:tt)* ]) => {{
        #[allow(unused_mut)]
        let mut items: $crate::__private::Vec<$crate::serde_json::Value> = $crate::__private::Vec::new();
        $crate::condition!(@array items () ($($body)*));
        $crate::serde_json::Value::Array(items)
    }};
    ($value:expr) => { $crate::serde_json::Value::from($value) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_like_the_seed() {
        let pattern = crate::condition!({
            order: {
                total: Number,
                payment: { method: String, token: String },
                items: [{ category: "electronics" }],
                fraudChecked: null,
                score: gt(500),
                "$via": { kind: one_of(["webhook", "api"]) },
                negative: -5,
                approved: true,
            }
        });
        assert_eq!(
            pattern,
            json!({"order": {
                "total": "$number",
                "payment": {"method": "$string", "token": "$string"},
                "items": [{"category": "electronics"}],
                "fraudChecked": null,
                "score": {"$gt": 500},
                "$via": {"kind": {"$in": ["webhook", "api"]}},
                "negative": -5,
                "approved": true
            }})
        );
    }

    #[test]
    fn a_raw_identifier_is_the_key_without_its_prefix() {
        let pattern = crate::condition!({ r#type: "refund", r#match: { r#in: true } });
        assert_eq!(pattern, json!({"type": "refund", "match": {"in": true}}));
    }
}
