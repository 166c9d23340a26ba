//! A connector call's record as JSON: the arguments, then `returned` with what the connector
//! answered or `error` with why it did not, as a reader of a run's history expects them (rather
//! than serde's form of a Rust `Result`, `{"Ok": …}` / `{"Err": …}`, which records written
//! before 2026-12-06 hold under `result`; they are read as ever).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::json_text::JsonText;
use super::run::{CallError, ConnectorCallRecord};

/// The record as it is written, borrowing it (the hot path writes every call twice: to the
/// journal and in its run's record).
#[derive(Serialize)]
struct CallRecordJsonRef<'a> {
    connector: &'a str,
    method: &'a str,
    args: &'a JsonText,
    #[serde(skip_serializing_if = "Option::is_none")]
    returned: Option<&'a JsonText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a CallError>,
    idempotency_key: &'a str,
    duration_us: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

impl Serialize for ConnectorCallRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CallRecordJsonRef {
            connector: &self.connector,
            method: &self.method,
            args: &self.args,
            returned: self.result.as_ref().ok(),
            error: self.result.as_ref().err(),
            idempotency_key: &self.idempotency_key,
            duration_us: self.duration_us,
            replayed: self.replayed,
        }
        .serialize(serializer)
    }
}

/// The record as it is read: either form of the result.
#[derive(Deserialize)]
pub(super) struct CallRecordJson {
    connector: String,
    method: String,
    args: JsonText,
    /// Present (`null` too, for a connector that answered `null`) when the call succeeded.
    #[serde(default, deserialize_with = "present")]
    returned: Option<JsonText>,
    #[serde(default)]
    error: Option<CallError>,
    /// The form written before `returned` and `error`.
    #[serde(default)]
    result: Option<Result<JsonText, CallError>>,
    idempotency_key: String,
    duration_us: u64,
    #[serde(default)]
    replayed: bool,
}

/// A field that is there, whatever its value: `Some` even for `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl TryFrom<CallRecordJson> for ConnectorCallRecord {
    type Error = &'static str;

    fn try_from(json: CallRecordJson) -> Result<Self, Self::Error> {
        let result = match (json.returned, json.error, json.result) {
            (Some(returned), None, None) => Ok(returned),
            (None, Some(error), None) => Err(error),
            (None, None, Some(result)) => result,
            (None, None, None) => return Err("a connector call holds neither `returned` nor `error`"),
            _ => return Err("a connector call holds more than one of `returned`, `error` and `result`"),
        };
        Ok(ConnectorCallRecord {
            connector: json.connector,
            method: json.method,
            args: json.args,
            result,
            idempotency_key: json.idempotency_key,
            duration_us: json.duration_us,
            replayed: json.replayed,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use whenever_connectors::ErrorKind;

    use super::*;

    fn record(result: Result<JsonText, CallError>) -> ConnectorCallRecord {
        ConnectorCallRecord {
            connector: "payment".into(),
            method: "charge".into(),
            args: JsonText::of(&json!({"amount": 120})),
            result,
            idempotency_key: "t_1:payment-processing:3:0".into(),
            duration_us: 41,
            replayed: false,
        }
    }

    fn read(text: &str) -> Result<ConnectorCallRecord, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn a_call_is_written_with_what_it_returned_or_its_error_and_read_back() {
        let ok = record(Ok(JsonText::of(&json!({"chargeId": "ch_1"}))));
        let text = serde_json::to_string(&ok).expect("written");
        assert_eq!(
            text,
            r#"{"connector":"payment","method":"charge","args":{"amount":120},"returned":{"chargeId":"ch_1"},"idempotency_key":"t_1:payment-processing:3:0","duration_us":41}"#
        );
        assert_eq!(read(&text).expect("read"), ok);

        let mut failed = record(Err(CallError {
            kind: ErrorKind::Failed,
            message: "card declined".into(),
        }));
        failed.replayed = true;
        let value: Value = serde_json::to_value(&failed).expect("written");
        assert_eq!(value["error"], json!({"kind": "failed", "message": "card declined"}));
        assert_eq!(value["replayed"], json!(true));
        assert!(
            value.get("returned").is_none() && value.get("result").is_none(),
            "{value}"
        );
        assert_eq!(read(&value.to_string()).expect("read"), failed);
    }

    #[test]
    fn a_connector_that_returned_null_is_read_back_as_having_returned_null() {
        let null = record(Ok(JsonText::of(&Value::Null)));
        let text = serde_json::to_string(&null).expect("written");
        assert!(text.contains(r#""returned":null"#), "{text}");
        assert_eq!(read(&text).expect("read"), null);
    }

    #[test]
    fn records_written_before_are_read_as_they_were_meant() {
        let head = r#"{"connector":"payment","method":"charge","args":{"amount":120},"#;
        let tail = r#","idempotency_key":"t_1:payment-processing:3:0","duration_us":41}"#;
        let ok = read(&format!(r#"{head}"result":{{"Ok":{{"chargeId":"ch_1"}}}}{tail}"#)).expect("read");
        assert_eq!(ok, record(Ok(JsonText::of(&json!({"chargeId": "ch_1"})))));
        let failed = read(&format!(
            r#"{head}"result":{{"Err":{{"kind":"timeout","message":"no answer in 5 s"}}}}{tail}"#
        ))
        .expect("read");
        assert_eq!(
            failed.result,
            Err(CallError {
                kind: ErrorKind::Timeout,
                message: "no answer in 5 s".into()
            })
        );
    }

    #[test]
    fn a_record_with_no_result_or_two_is_refused_by_name() {
        let head = r#"{"connector":"payment","method":"charge","args":{},"idempotency_key":"k","duration_us":1"#;
        let none = read(&format!("{head}}}")).expect_err("no result");
        assert!(none.to_string().contains("neither `returned` nor `error`"), "{none}");
        let two = read(&format!(
            r#"{head},"returned":1,"error":{{"kind":"failed","message":"m"}}}}"#
        ))
        .expect_err("two results");
        assert!(two.to_string().contains("more than one of"), "{two}");
    }
}
