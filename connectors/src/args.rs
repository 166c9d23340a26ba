//! Reading a call's JSON arguments with messages that name the call and the field.

use serde_json::{Map, Value};

use crate::ConnectorError;

/// The largest integer a JSON number written as a float represents exactly (2^53).
const MAX_EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// A call's arguments: a JSON object, read field by field; `null` counts as absent.
pub(crate) struct Args<'a> {
    call: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// The arguments of `call` (e.g. `"stripe.charge"`); they must be a JSON object.
    pub(crate) fn new(call: &'a str, args: &'a Value) -> Result<Self, ConnectorError> {
        match args {
            Value::Object(map) => Ok(Args { call, map }),
            _ => Err(ConnectorError::invalid_args(format!(
                "{call}: arguments must be a JSON object"
            ))),
        }
    }

    /// An invalid-args error about this call.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::invalid_args(format!("{}: {message}", self.call))
    }

    /// The field, if present and not `null`.
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A required, non-empty string.
    pub(crate) fn str(&self, field: &str) -> Result<&'a str, ConnectorError> {
        match self.opt_str(field)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.error(format!("`{field}` must not be empty"))),
            None => Err(self.error(format!("`{field}` is required"))),
        }
    }

    /// An optional string (any other type is an error).
    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<&'a str>, ConnectorError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(format!("`{field}` must be a string"))),
        }
    }

    /// A required integer greater than zero; `12.0` counts as 12, `12.5` does not.
    pub(crate) fn positive_int(&self, field: &str) -> Result<u64, ConnectorError> {
        match self.opt_positive_int(field)? {
            Some(n) => Ok(n),
            None => Err(self.error(format!("`{field}` is required"))),
        }
    }

    /// An optional integer greater than zero.
    pub(crate) fn opt_positive_int(&self, field: &str) -> Result<Option<u64>, ConnectorError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let n = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_EXACT_FLOAT_INT)
                .map(|f| f as u64)
        });
        match n {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(self.error(format!("`{field}` must be a positive integer"))),
        }
    }

    /// A required number.
    pub(crate) fn number(&self, field: &str) -> Result<f64, ConnectorError> {
        match self.get(field) {
            None => Err(self.error(format!("`{field}` is required"))),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.error(format!("`{field}` must be a number"))),
        }
    }

    /// An optional JSON object.
    pub(crate) fn opt_object(&self, field: &str) -> Result<Option<&'a Map<String, Value>>, ConnectorError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.error(format!("`{field}` must be an object"))),
        }
    }

    /// An optional list of strings.
    pub(crate) fn opt_str_list(&self, field: &str) -> Result<Vec<&'a str>, ConnectorError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| self.error(format!("`{field}` must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(self.error(format!("`{field}` must be a list of strings"))),
        }
    }
}

/// The error for a method a connector does not have.
pub(crate) fn unknown_method(connector: &str, method: &str) -> ConnectorError {
    ConnectorError::unknown(format!("unknown method `{connector}.{method}`"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn reads_fields_and_names_the_call_in_errors() {
        let v = json!({"s": "x", "n": 12, "f": 12.0, "h": 12.5, "z": 0, "neg": -1, "e": "", "nul": null,
                       "l": ["a", "b"], "bad": [1], "o": {"a": 1}});
        let a = Args::new("c.m", &v).expect("object");
        assert_eq!(a.str("s").ok(), Some("x"));
        assert_eq!(a.positive_int("n").ok(), Some(12));
        assert_eq!(a.positive_int("f").ok(), Some(12));
        for bad in ["h", "z", "neg", "s", "missing", "nul"] {
            let e = a.positive_int(bad).err().map(|e| e.kind);
            assert_eq!(e, Some(ErrorKind::InvalidArgs), "{bad}");
        }
        assert!(a.str("e").is_err());
        assert!(a.str("n").is_err());
        assert_eq!(a.opt_str("nul").ok(), Some(None));
        assert_eq!(a.opt_str_list("l").ok(), Some(vec!["a", "b"]));
        assert!(a.opt_str_list("bad").is_err());
        assert!(a.opt_object("o").ok().flatten().is_some());
        assert!(a.opt_object("s").is_err());
        assert_eq!(a.number("h").ok(), Some(12.5));
        let msg = a.str("missing").err().map(|e| e.message);
        assert_eq!(msg.as_deref(), Some("c.m: `missing` is required"));
        assert!(Args::new("c.m", &json!([1])).is_err());
    }
}
