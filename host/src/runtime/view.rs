//! Data views: the part of the task data a step is given when its manifest lists what it
//! `reads`. A third-party step then sees only what it needs, and a run parses, serializes and
//! diffs a fraction of a large task's data.
//!
//! The view holds the listed paths and the paths the step's condition tests. Along each of
//! them it answers as the data does: the value at the path is copied whole, and where the walk
//! meets a value that is not an object before the path ends (an array, `null`, a string), that
//! value is copied whole. Objects on the way hold only the keys some path goes through. The
//! step's output is diffed against its view, so it may write anywhere and remove only what it
//! was given; an object it writes where its view held nothing is merged into whatever object the
//! data holds there ([`crate::scheduler::merge::spread_over_unseen`]), not put in its place.

use serde_json::{Map, Value};
use whenever_condition::{Condition, Path};

/// The paths of the task data one step is given: sorted, none below another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataView {
    paths: Vec<Path>,
}

impl DataView {
    /// The view of a step that reads `reads` (dot-separated paths, as the manifest lists them)
    /// and whose condition tests `condition`'s paths.
    pub fn new(reads: &[String], condition: &Condition) -> DataView {
        let listed = reads.iter().map(|r| Path(r.split('.').map(str::to_string).collect()));
        let mut paths: Vec<Path> = listed.chain(condition.paths().iter().cloned()).collect();
        paths.sort();
        // A path below one already kept is covered by it (sorted order puts a prefix first).
        let mut kept: Vec<Path> = Vec::with_capacity(paths.len());
        for path in paths {
            if !kept.last().is_some_and(|above| path.keys().starts_with(above.keys())) {
                kept.push(path);
            }
        }
        DataView { paths: kept }
    }

    /// The paths the step is given, sorted; the empty path means the whole data.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// `data` as the step sees it.
    pub fn of(&self, data: &Value) -> Value {
        let Value::Object(from) = data else {
            return data.clone();
        };
        let mut view = Map::new();
        for path in &self.paths {
            if path.keys().is_empty() {
                return data.clone();
            }
            copy_path(from, path.keys(), &mut view);
        }
        Value::Object(view)
    }
}

/// Copies what `from` holds along `keys` into `into`.
fn copy_path(from: &Map<String, Value>, keys: &[String], into: &mut Map<String, Value>) {
    let Some((key, below)) = keys.split_first() else {
        return;
    };
    let Some(value) = from.get(key) else {
        return;
    };
    match value {
        Value::Object(inner) if !below.is_empty() => {
            let slot = into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(slot) = slot {
                copy_path(inner, below, slot);
            }
        }
        _ => {
            into.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(reads: &[&str], condition: Value) -> DataView {
        let reads: Vec<String> = reads.iter().map(|r| r.to_string()).collect();
        DataView::new(&reads, &Condition::parse(&condition).expect("condition"))
    }

    fn order() -> Value {
        json!({
            "order": {
                "id": "ORD-1",
                "total": 12.5,
                "customer": {"email": "a@b.test", "tier": "gold", "address": {"city": "Austin"}},
                "items": [{"sku": "A", "quantity": 1}],
                "shipping": null,
                "fraud": {"score": 10}
            },
            "$via": {"id": "hook-1"}
        })
    }

    #[test]
    fn holds_the_listed_and_the_condition_paths_and_nothing_else() {
        let v = view(&["order.id", "order.customer.email"], json!({"order": {"fraud": {"score": "$number"}}}));
        assert_eq!(
            v.of(&order()),
            json!({"order": {"id": "ORD-1", "customer": {"email": "a@b.test"}, "fraud": {"score": 10}}})
        );
    }

    #[test]
    fn copies_a_listed_object_whole_and_drops_the_paths_below_it() {
        let v = view(&["order.customer.email", "order.customer"], json!({"order": {"id": "$string"}}));
        let paths: Vec<String> = v.paths().iter().map(ToString::to_string).collect();
        assert_eq!(paths, vec!["order.customer", "order.id"]);
        assert_eq!(
            v.of(&order()),
            json!({"order": {"customer": {"email": "a@b.test", "tier": "gold", "address": {"city": "Austin"}}, "id": "ORD-1"}})
        );
    }

    #[test]
    fn answers_as_the_data_does_where_a_path_meets_an_array_or_null() {
        let v = view(&["order.items.0.sku", "order.shipping.method"], json!({}));
        // The array and the null are copied whole, so `order.items.0.sku` reads "A" and reading
        // `order.shipping.method` meets the same null as in the data.
        assert_eq!(
            v.of(&order()),
            json!({"order": {"items": [{"sku": "A", "quantity": 1}], "shipping": null}})
        );
    }

    #[test]
    fn a_path_the_data_lacks_leaves_only_the_objects_on_its_way() {
        // `order` exists, so reading `order.payment.token` meets an absent `payment`, as in the
        // data; `customer` is absent altogether.
        let v = view(&["order.payment.token", "customer"], json!({}));
        assert_eq!(v.of(&order()), json!({"order": {}}));
    }

    #[test]
    fn a_condition_on_the_whole_data_gives_the_whole_data() {
        let v = view(&[], json!({}));
        assert!(v.paths().is_empty());
        assert_eq!(v.of(&order()), json!({}));
        let whole = DataView { paths: vec![Path::default()] };
        assert_eq!(whole.of(&order()), order());
    }
}
