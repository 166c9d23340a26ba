//! JSON text kept as text: a connector call's arguments and result, written to the journal and
//! then in the run's record by copying the text instead of serializing a value twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// One JSON value as text, written verbatim wherever it is serialized. Two are equal when their
/// texts are: a text read back from the store is the text that was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// The text of `value`.
    pub fn of(value: &Value) -> JsonText {
        // Serializing a `Value` cannot fail (its keys are strings).
        let text = serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
        // SAFETY: serde_json's own serializer wrote `text`: one well-formed JSON value with no
        // whitespace around it, which is all `RawValue` asks.
        JsonText(unsafe { RawValue::from_string_unchecked(text) })
    }

    /// `text` parsed, and kept as it was written (without the whitespace around it, which a
    /// `RawValue` may not hold); the text back with the error when it is not JSON.
    pub fn parse(text: String) -> Result<(Value, JsonText), (String, serde_json::Error)> {
        let value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => return Err((text, e)),
        };
        let json_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
        let text = if text.starts_with(json_space) || text.ends_with(json_space) {
            text.trim_matches(json_space).to_owned()
        } else {
            text
        };
        // SAFETY: `serde_json::from_str` took `text` as exactly one JSON value with only JSON
        // whitespace around it, and that whitespace is trimmed above.
        Ok((value, JsonText(unsafe { RawValue::from_string_unchecked(text) })))
    }

    /// `text` as a JSON string value (arguments that did not parse are kept so).
    pub fn string(text: &str) -> JsonText {
        JsonText::of(&Value::String(text.to_owned()))
    }

    /// The text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value the text holds (`Null` for a text that is not JSON, which is never written).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_is_written_as_serde_json_writes_it_and_read_back_the_same() {
        let value = json!({"amount": 100, "note": "a \"quoted\" word", "items": [1.5, null]});
        let text = JsonText::of(&value);
        assert_eq!(text.get(), serde_json::to_string(&value).expect("text"));
        assert_eq!(text.value(), value);
        let embedded = serde_json::to_string(&vec![&text, &text]).expect("embedded");
        assert_eq!(embedded, format!("[{0},{0}]", text.get()));
        let back: Vec<JsonText> = serde_json::from_str(&embedded).expect("read back");
        assert_eq!(back, vec![text.clone(), text]);
    }

    #[test]
    fn parsed_text_keeps_its_own_form_without_the_whitespace_around_it() {
        let (value, text) = JsonText::parse(" \n{\"b\": 1,  \"a\": [ 2 ]}\t ".to_owned()).expect("JSON");
        assert_eq!(text.get(), "{\"b\": 1,  \"a\": [ 2 ]}");
        assert_eq!(value, json!({"b": 1, "a": [2]}));
        assert_eq!(text.value(), value);
        assert_eq!(JsonText::parse("7".to_owned()).expect("JSON").1.get(), "7");
    }

    #[test]
    fn a_text_that_is_not_json_comes_back_with_the_error() {
        let (text, error) = JsonText::parse("{\"a\": 1} trailing".to_owned()).expect_err("not JSON");
        assert_eq!(text, "{\"a\": 1} trailing");
        assert!(error.to_string().contains("trailing characters"), "{error}");
    }

    #[test]
    fn a_text_that_did_not_parse_is_kept_as_a_string() {
        let text = JsonText::string("not \"json\"");
        assert_eq!(text.value(), json!("not \"json\""));
        assert_ne!(JsonText::string("1"), JsonText::parse("1".to_owned()).expect("JSON").1);
    }
}
