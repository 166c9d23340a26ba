//! Data paths: the keys from the top of the task data down to a value.

use std::fmt;

/// A path into the task data: the object keys from the top level down.
///
/// Array positions never appear, since array patterns are leaves. Displayed
/// as the keys joined by `.` (e.g. `order.payment.method`); the empty path
/// is the whole data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<String>);

impl Path {
    /// The keys of this path, top level first.
    pub fn keys(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `data`, or `None` when a key is absent or an
    /// intermediate value is not an object.
    pub fn lookup<'a>(&self, data: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        self.0
            .iter()
            .try_fold(data, |v, key| v.as_object().and_then(|m| crate::value::field(m, key)))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_joins_with_dots() {
        let p = Path(vec!["order".into(), "payment".into(), "method".into()]);
        assert_eq!(p.to_string(), "order.payment.method");
        assert_eq!(Path::default().to_string(), "");
    }

    #[test]
    fn lookup_walks_objects_only() {
        let data = json!({"a": {"b": 1}, "c": [1]});
        let ab = Path(vec!["a".into(), "b".into()]);
        assert_eq!(ab.lookup(&data), Some(&json!(1)));
        let cx = Path(vec!["c".into(), "0".into()]);
        assert_eq!(cx.lookup(&data), None);
        assert_eq!(Path::default().lookup(&data), Some(&data));
    }
}
