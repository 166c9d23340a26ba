//! Projections: the values of the task data at the leaf paths a condition
//! names. The host stores one per task and step and re-runs the step only
//! when it changes, so changes elsewhere in the data do not re-run it.

use serde_json::{Map, Value};

use crate::path::Path;
use crate::pattern::Node;
use crate::value::{normalise, normalise_number};

/// The values of some data at a condition's leaf paths, in path order, each
/// `None` when absent (absent and a present `null` differ).
///
/// Values are normalised (integral floats become integers, object keys are
/// sorted), so `1` and `1.0` project equally and the stored JSON is canonical.
/// The paths are part of the projection, so projections taken under two
/// different conditions never compare equal by accident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Projection(Vec<(Path, Option<Value>)>);

impl Projection {
    /// Projects `data` onto `paths`.
    pub(crate) fn of(paths: &[Path], data: &Value) -> Projection {
        Projection(
            paths
                .iter()
                .map(|p| (p.clone(), p.lookup(data).map(normalise)))
                .collect(),
        )
    }

    /// The leaf paths and the value found at each (`None` = absent).
    pub fn entries(&self) -> &[(Path, Option<Value>)] {
        &self.0
    }

    /// The projection as JSON, for the host to store:
    /// `[{"path": ["order", "total"], "value": 12}, {"path": ["order", "note"]}]`,
    /// an entry without `"value"` meaning absent.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|(path, value)| {
                    let mut entry = Map::new();
                    entry.insert(
                        "path".to_owned(),
                        Value::Array(path.0.iter().cloned().map(Value::String).collect()),
                    );
                    if let Some(v) = value {
                        entry.insert("value".to_owned(), v.clone());
                    }
                    Value::Object(entry)
                })
                .collect(),
        )
    }

    /// A fixed-size fingerprint of the projection (128 bits of SHA-256 over its canonical
    /// form, as 32 hex digits): equal projections give equal digests, and different ones
    /// differ but with negligible chance. The host stores this instead of the values, so what
    /// it rewrites at every save stays small however large the watched values are.
    pub fn digest(&self) -> String {
        digest_entries(self.0.iter().map(|(path, value)| (path, value.as_ref())), false)
    }

    /// The [`Projection::digest`] of `data` projected onto `paths`, computed without building
    /// the projection: each value is hashed in its canonical form as it is read, with no copy
    /// (the host takes one per eligible step after every change).
    pub(crate) fn digest_of(paths: &[Path], data: &Value) -> String {
        digest_entries(paths.iter().map(|p| (p, p.lookup(data))), true)
    }

    /// Reads back what [`Projection::to_json`] wrote; `None` if `json` is not
    /// of that shape. Values are normalised again, so equality still holds.
    pub fn from_json(json: &Value) -> Option<Projection> {
        json.as_array()?
            .iter()
            .map(|entry| {
                let entry = entry.as_object()?;
                if entry.keys().any(|k| k != "path" && k != "value") {
                    return None;
                }
                let keys = entry
                    .get("path")?
                    .as_array()?
                    .iter()
                    .map(|k| k.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Some((Path(keys), entry.get("value").map(normalise)))
            })
            .collect::<Option<Vec<_>>>()
            .map(Projection)
    }
}

/// 128 bits of SHA-256, as hex, over entries written one after the other: the path (segment
/// count, then each segment length-prefixed), then the value's canonical JSON (or a marker for
/// absent that no JSON text starts with), closed by a byte that JSON text never holds raw.
/// `canonicalise` is false for values already normalised (a built [`Projection`]).
fn digest_entries<'a>(entries: impl Iterator<Item = (&'a Path, Option<&'a Value>)>, canonicalise: bool) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = HashWriter(Sha256::new());
    for (path, value) in entries {
        hasher.0.update((path.0.len() as u64).to_le_bytes());
        for key in &path.0 {
            hasher.0.update((key.len() as u64).to_le_bytes());
            hasher.0.update(key.as_bytes());
        }
        // Writing JSON into a hasher cannot fail.
        match value {
            Some(v) if canonicalise => {
                let _ = serde_json::to_writer(&mut hasher, &Canonical(v));
            }
            Some(v) => {
                let _ = serde_json::to_writer(&mut hasher, v);
            }
            None => hasher.0.update([0x00]),
        }
        hasher.0.update([0x1e]);
    }
    hex::encode(&hasher.0.finalize()[..16])
}

/// A value serialized as its [`normalise`]d copy would be (integral floats as integers, object
/// keys sorted), without making the copy.
struct Canonical<'a>(&'a Value);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Number(n) => normalise_number(n).serialize(serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Canonical)),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Canonical(v))))
            }
            other => other.serialize(serializer),
        }
    }
}

/// Feeds what `serde_json` writes into a SHA-256.
struct HashWriter(sha2::Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The leaf paths of a parsed root pattern, sorted so that reordering keys in
/// the pattern text does not change projections.
///
/// An object pattern recurses into its keys; any other pattern is a leaf. An
/// empty object pattern below the top level (`{"a": {}}`) is a leaf too, since
/// the condition depends on what is at `a`; the top-level `{}` names nothing.
/// A top-level operator object is one leaf: the empty path, the whole data.
pub(crate) fn leaf_paths(root: &Node) -> Vec<Path> {
    let mut out = Vec::new();
    match root {
        Node::Object(fields) => {
            let mut prefix = Vec::new();
            collect_fields(fields, &mut prefix, &mut out);
        }
        _ => out.push(Path::default()),
    }
    out.sort();
    out.dedup();
    out
}

fn collect_fields(fields: &[(String, Node)], prefix: &mut Vec<String>, out: &mut Vec<Path>) {
    for (key, node) in fields {
        prefix.push(key.clone());
        match node {
            Node::Object(sub) if !sub.is_empty() => collect_fields(sub, prefix, out),
            _ => out.push(Path(prefix.clone())),
        }
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Condition;
    use serde_json::json;

    fn cond(p: Value) -> Condition {
        match Condition::parse(&p) {
            Ok(c) => c,
            Err(e) => panic!("pattern {p} refused: {e}"),
        }
    }

    #[test]
    fn leaf_paths_follow_object_patterns_and_are_sorted() {
        let c = cond(json!({
            "order": {"total": {"$gt": 1}, "payment": {"method": "$string", "token": "$string"}, "fraudChecked": null},
            "tags": ["a"],
            "$via": "webhook",
            "meta": {}
        }));
        let shown: Vec<String> = c.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "$via",
                "meta",
                "order.fraudChecked",
                "order.payment.method",
                "order.payment.token",
                "order.total",
                "tags"
            ]
        );
        assert!(cond(json!({})).paths().is_empty());
        assert_eq!(cond(json!({"$not": {"a": 1}})).paths(), &[Path::default()]);
    }

    #[test]
    fn projection_changes_only_with_named_paths() {
        let c = cond(json!({"order": {"total": "$number", "status": "paid"}}));
        let base = json!({"order": {"total": 10, "status": "paid", "note": "hi"}, "other": 1});
        let p0 = c.projection(&base);
        // Changes elsewhere are ignored.
        let elsewhere = json!({"order": {"total": 10, "status": "paid", "note": "changed"}, "other": 2, "new": []});
        assert_eq!(c.projection(&elsewhere), p0);
        // 1 and 1.0 project equally.
        let floated = json!({"order": {"total": 10.0, "status": "paid"}});
        assert_eq!(c.projection(&floated), p0);
        // A changed value on a named path changes it.
        let changed = json!({"order": {"total": 11, "status": "paid"}});
        assert_ne!(c.projection(&changed), p0);
        // Absent differs from null and from a value.
        let absent = json!({"order": {"status": "paid"}});
        let null = json!({"order": {"total": null, "status": "paid"}});
        assert_ne!(c.projection(&absent), c.projection(&null));
        assert_ne!(c.projection(&absent), p0);
        assert_eq!(
            c.projection(&absent),
            c.projection(&json!({"order": {"status": "paid", "x": 1}}))
        );
        // A missing intermediate makes every leaf below it absent.
        let none = c.projection(&json!({}));
        assert!(none.entries().iter().all(|(_, v)| v.is_none()));
        assert_eq!(none, c.projection(&json!({"order": 3})));
    }

    #[test]
    fn digests_are_equal_exactly_when_projections_are() {
        let c = cond(json!({"order": {"total": "$number", "status": "paid", "meta": {}}}));
        let datas = [
            json!({"order": {"total": 10, "status": "paid", "meta": {"a": 1, "b": [1, 2]}}}),
            json!({"order": {"total": 10.0, "status": "paid", "meta": {"b": [1.0, 2], "a": 1}, "note": "x"}}),
            json!({"order": {"total": 11, "status": "paid", "meta": {"a": 1, "b": [1, 2]}}}),
            json!({"order": {"total": 10, "status": "paid", "meta": {"a": 1, "b": [2, 1]}}}),
            json!({"order": {"status": "paid"}}),
            json!({"order": {"total": null, "status": "paid"}}),
            json!({"order": {"total": "10", "status": "paid"}}),
            json!({}),
        ];
        for a in &datas {
            for b in &datas {
                let (pa, pb) = (c.projection(a), c.projection(b));
                assert_eq!(pa == pb, pa.digest() == pb.digest(), "{a} vs {b}");
            }
            // The stored JSON form reads back to the same digest.
            let p = c.projection(a);
            let back = Projection::from_json(&p.to_json()).map(|p| p.digest());
            assert_eq!(back, Some(p.digest()));
            assert_eq!(p.digest().len(), 32);
        }
        // A key that looks like a path separator or a value does not collide with a real path.
        let tricky = cond(json!({"a\u{1f}b": "$any"}));
        let plain = cond(json!({"a": {"b": "$any"}}));
        let data = json!({"a\u{1f}b": 1, "a": {"b": 1}});
        assert_ne!(tricky.projection(&data).digest(), plain.projection(&data).digest());
    }

    #[test]
    fn projection_of_leaf_objects_and_arrays_compares_deeply() {
        let c = cond(json!({"items": [{"sku": "$string"}], "meta": {}}));
        let a = c.projection(&json!({"items": [{"sku": "A", "n": 1}], "meta": {"x": 1, "y": 2.0}}));
        let b = c.projection(&json!({"items": [{"n": 1.0, "sku": "A"}], "meta": {"y": 2, "x": 1}}));
        assert_eq!(a, b);
        let d = c.projection(&json!({"items": [{"sku": "A", "n": 2}], "meta": {"x": 1, "y": 2}}));
        assert_ne!(a, d);
    }

    #[test]
    fn projections_under_different_conditions_differ() {
        let data = json!({"a": 1, "b": 1});
        assert_ne!(
            cond(json!({"a": 1})).projection(&data),
            cond(json!({"b": 1})).projection(&data)
        );
    }

    #[test]
    fn json_round_trip() {
        let c = cond(json!({"order": {"total": "$number", "note": null, "lines": []}}));
        let p = c.projection(&json!({"order": {"total": 12.0, "lines": [{"b": 1, "a": 2}]}}));
        let stored = p.to_json();
        assert_eq!(
            stored,
            json!([
                {"path": ["order", "lines"], "value": [{"a": 2, "b": 1}]},
                {"path": ["order", "note"]},
                {"path": ["order", "total"], "value": 12}
            ])
        );
        let text = stored.to_string();
        let reread: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(Projection::from_json(&reread), Some(p.clone()));
        // A stored projection with 1.0 still equals a fresh one with 1.
        let with_float = json!([
            {"path": ["order", "lines"], "value": [{"a": 2.0, "b": 1}]},
            {"path": ["order", "note"]},
            {"path": ["order", "total"], "value": 12.0}
        ]);
        assert_eq!(Projection::from_json(&with_float), Some(p));
        // Null stays distinct from absent.
        let null = json!([{"path": ["x"], "value": null}]);
        let absent = json!([{"path": ["x"]}]);
        assert_ne!(Projection::from_json(&null), Projection::from_json(&absent));
        assert_eq!(Projection::from_json(&json!([])), Some(Projection::default()));
    }

    #[test]
    fn from_json_refuses_other_shapes() {
        for bad in [
            json!(null),
            json!({}),
            json!([1]),
            json!([{"value": 1}]),
            json!([{"path": "a.b"}]),
            json!([{"path": ["a", 1]}]),
            json!([{"path": ["a"], "extra": 1}]),
        ] {
            assert_eq!(Projection::from_json(&bad), None, "{bad}");
        }
    }
}
