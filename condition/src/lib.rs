//! The condition language of Whenever.
//!
//! A step runs when the task data (always a JSON object) matches the step's
//! condition, a JSON pattern. This crate parses and validates patterns once
//! ([`Condition::parse`]), matches data fast ([`Condition::matches`]), says
//! why data does not match ([`Condition::explain`]), and projects data onto
//! the paths a condition names ([`Condition::projection`]) so the host can
//! re-run a step only when something it looks at changes.
//!
//! | pattern | matches |
//! |---|---|
//! | `"$string"` `"$number"` `"$boolean"` `"$array"` `"$object"` | a value of that JSON type |
//! | `null` | the field is absent or null |
//! | `{"$ne": null}` or `"$any"` | the field is present and not null |
//! | a string not starting with `$`, a number, `true`/`false` | an equal value (`1` equals `1.0`) |
//! | `{"$eq": V}` | exactly V, deeply (escape for literal `$`-strings) |
//! | `{ "key": P, ... }` | an object whose listed keys match; other keys are ignored |
//! | `[P1, P2, ...]` | an array where every `Pi` matches at least one element; `[]` matches any array |
//! | `{"$regex": "re"}` | a string containing a match of `re` |
//! | `{"$gt": n}` `$gte` `$lt` `$lte` | a number in range; several operators all apply |
//! | `{"$in": [..]}` `{"$nin": [..]}` | equal / not equal to one of the list (missing counts as null) |
//! | `{"$not": P}` | anything P does not match, a missing field included |
//! | `{"$ne": V}` | not equal to V (missing counts as null) |
//!
//! An object is an operator object when every key is an operator; otherwise
//! `$`-keys such as `$via` are ordinary data keys. Mixing operators with
//! other keys is refused, and so is a `$`-key one edit from an operator
//! (`$gtt`, `$GT`): a typo that, read as a data key, would never match.

#![deny(missing_docs)]

mod error;
mod matcher;
mod path;
mod pattern;
mod projection;
mod value;

use serde_json::Value;

pub use error::{Mismatch, PatternError};
pub use path::Path;
pub use pattern::one_edit_apart;
pub use projection::Projection;
pub use value::{field, field_mut};

/// A parsed, validated condition: the typed pattern tree (regexes compiled),
/// its leaf paths, and the original JSON.
#[derive(Debug, Clone)]
pub struct Condition {
    pattern: Value,
    root: pattern::Node,
    paths: Vec<Path>,
}

impl Condition {
    /// Parses and validates `pattern`, refusing an invalid one with the path
    /// and the problem, so bad conditions fail when a step is loaded rather
    /// than silently never matching.
    pub fn parse(pattern: &Value) -> Result<Condition, PatternError> {
        let root = pattern::parse_root(pattern)?;
        let paths = projection::leaf_paths(&root);
        Ok(Condition {
            pattern: pattern.clone(),
            root,
            paths,
        })
    }

    /// Parses a condition from JSON text; a JSON syntax error becomes a
    /// [`PatternError`] at the top level carrying `serde_json`'s message.
    pub fn from_json_text(text: &str) -> Result<Condition, PatternError> {
        let pattern: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: String::new(),
            message: e.to_string(),
        })?;
        Condition::parse(&pattern)
    }

    /// Whether `data` matches: the fast path, run on every data change for
    /// every step, which allocates nothing.
    pub fn matches(&self, data: &Value) -> bool {
        self.root.matches(Some(data))
    }

    /// `Ok(())` when `data` matches, else the first failing path (in pattern
    /// order) and why, for telling a user why a step did not run.
    pub fn explain(&self, data: &Value) -> Result<(), Mismatch> {
        let mut path = Vec::new();
        self.root.explain(Some(data), &mut path)
    }

    /// The leaf paths the condition names, sorted: the paths a projection
    /// looks at.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// The values of `data` at [`Condition::paths`] (or absent); the host
    /// re-runs a step only when this changes.
    pub fn projection(&self, data: &Value) -> Projection {
        Projection::of(&self.paths, data)
    }

    /// `self.projection(data).digest()`, without building the projection.
    pub fn projection_digest(&self, data: &Value) -> String {
        Projection::digest_of(&self.paths, data)
    }

    /// The original JSON pattern, as given.
    pub fn pattern(&self) -> &Value {
        &self.pattern
    }
}

impl std::str::FromStr for Condition {
    type Err = PatternError;

    /// Same as [`Condition::from_json_text`].
    fn from_str(text: &str) -> Result<Condition, PatternError> {
        Condition::from_json_text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER_CONDITION: &str =
        r#"{"order":{"total":"$number","payment":{"method":"$string","token":"$string"},"fraudChecked":null}}"#;

    fn realistic_order() -> Value {
        json!({
            "order": {
                "id": "ord-2024-000187",
                "createdAt": "2024-05-14T09:31:07Z",
                "customer": {"id": "cus_81f2", "email": "ada@example.com", "tier": "gold"},
                "lines": [
                    {"sku": "BOOK-001", "qty": 2, "unitPrice": 12.5},
                    {"sku": "PEN-014", "qty": 1, "unitPrice": 3.0}
                ],
                "total": 28.0,
                "currency": "EUR",
                "payment": {"method": "card", "token": "tok_9a8b7c", "last4": "4242"}
            },
            "$via": "webhook"
        })
    }

    fn order_condition() -> Condition {
        match Condition::from_json_text(ORDER_CONDITION) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn realistic_condition_on_realistic_order() {
        let c = order_condition();
        let mut order = realistic_order();
        assert!(c.matches(&order));
        assert_eq!(c.explain(&order), Ok(()));
        let shown: Vec<String> = c.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "order.fraudChecked",
                "order.payment.method",
                "order.payment.token",
                "order.total"
            ]
        );
        let before = c.projection(&order);

        // Fraud check done: no longer matches.
        order["order"]["fraudChecked"] = json!(true);
        assert!(!c.matches(&order));
        assert_eq!(
            c.explain(&order).map_err(|m| m.to_string()),
            Err("order.fraudChecked: expected absent or null, found true".to_owned())
        );
        // An explicit null still matches.
        order["order"]["fraudChecked"] = Value::Null;
        assert!(c.matches(&order));
        assert_ne!(c.projection(&order), before, "null differs from absent");

        // Unrelated edits do not change the projection.
        let mut order = realistic_order();
        order["order"]["customer"]["tier"] = json!("platinum");
        order["order"]["lines"][0]["qty"] = json!(3);
        assert_eq!(c.projection(&order), before);
        // The total as an integer is the same number.
        order["order"]["total"] = json!(28);
        assert_eq!(c.projection(&order), before);
        // A new token does.
        order["order"]["payment"]["token"] = json!("tok_new");
        assert_ne!(c.projection(&order), before);

        // Payment not yet tokenised.
        let mut order = realistic_order();
        if let Some(p) = order["order"]["payment"].as_object_mut() {
            p.remove("token");
        }
        assert!(!c.matches(&order));
        assert_eq!(
            c.explain(&order).map_err(|m| (m.path, m.reason)),
            Err(("order.payment.token".to_owned(), "missing".to_owned()))
        );
        // Payment method mistyped.
        let mut order = realistic_order();
        order["order"]["payment"]["method"] = json!(12);
        assert_eq!(
            c.explain(&order).map_err(|m| m.to_string()),
            Err("order.payment.method: expected a string, found 12".to_owned())
        );
        // No payment at all.
        let mut order = realistic_order();
        if let Some(o) = order["order"].as_object_mut() {
            o.remove("payment");
        }
        assert_eq!(
            c.explain(&order).map_err(|m| m.to_string()),
            Err("order.payment: missing".to_owned())
        );
    }

    #[test]
    fn from_json_text_reports_syntax_errors_at_top_level() {
        let e = match Condition::from_json_text("{\"a\": ") {
            Ok(_) => panic!("accepted broken JSON"),
            Err(e) => e,
        };
        assert_eq!(e.path, "");
        assert!(
            e.to_string()
                .starts_with("invalid condition at the top level: EOF while parsing"),
            "{e}"
        );
        let e = "[1]".parse::<Condition>().map(|_| ()).map_err(|e| e.path);
        assert_eq!(e, Err(String::new()));
    }

    #[test]
    fn pattern_returns_the_original_json() {
        let c = order_condition();
        let original: Value = serde_json::from_str(ORDER_CONDITION).unwrap_or(Value::Null);
        assert_eq!(c.pattern(), &original);
        assert_eq!(c.pattern().to_string(), ORDER_CONDITION, "key order preserved");
    }

    #[test]
    fn condition_is_clone_and_debug() {
        let c = order_condition();
        let d = c.clone();
        assert!(d.matches(&realistic_order()));
        assert!(format!("{d:?}").contains("Condition"));
    }
}
