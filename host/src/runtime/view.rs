//! Data views: the part of the task data a step is given when its manifest lists what it
//! `reads`. A third-party step then sees only what it needs, and a run parses and serializes a
//! fraction of a large task's data.
//!
//! The view holds the listed paths and the paths the step's condition tests. Along each of
//! them it answers as the data does: the value at the path is given whole, and where the walk
//! meets a value that is not an object before the path ends (an array, `null`, a string), that
//! value is given whole. Objects on the way hold only the keys some path goes through.
//!
//! The step's output is diffed against the data within the view
//! ([`crate::scheduler::output_diff::diff_output_in_view`]): it may write anywhere and remove only
//! what it was given; an object it writes where it was given nothing is merged into whatever
//! object the data holds there, not put in its place.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use whenever_condition::{Condition, Path};

/// The paths of the task data one step is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataView {
    /// Sorted, none below another.
    paths: Vec<Path>,
    /// The same paths as a tree of keys.
    holds: Holds,
}

/// What a view holds at one point of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// Everything there.
    Everything,
    /// When the data there is an object, only these keys, each with what the view holds below
    /// it; any other value is held whole.
    Keys(Vec<(String, Holds)>),
}

impl DataView {
    /// The view of a step that reads `reads` (dot-separated paths, as the manifest lists them)
    /// and whose condition tests `condition`'s paths.
    pub fn new(reads: &[String], condition: &Condition) -> DataView {
        let listed = reads.iter().map(|r| data_path(r));
        DataView::of_paths(listed.chain(condition.paths().iter().cloned()).collect())
    }

    /// This view narrowed to what `allowed` (dot-separated paths: the operator's `reads` for the
    /// step) also gives: the condition's paths too, so a step cannot see a value by testing it.
    pub fn within(&self, allowed: &[String]) -> DataView {
        let allowed: Vec<Path> = allowed.iter().map(|a| data_path(a)).collect();
        DataView::of_paths(common_paths(&self.paths, &allowed))
    }

    fn of_paths(mut paths: Vec<Path>) -> DataView {
        paths.sort();
        // A path below one already kept is covered by it (sorted order puts a prefix first).
        let mut kept: Vec<Path> = Vec::with_capacity(paths.len());
        for path in paths {
            if !kept.last().is_some_and(|above| path.keys().starts_with(above.keys())) {
                kept.push(path);
            }
        }
        let mut holds = Holds::Keys(Vec::new());
        for path in &kept {
            holds.add(path.keys());
        }
        DataView { paths: kept, holds }
    }

    /// The paths the step is given, sorted; the empty path means the whole data.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// Whether a read of `dotted` (keys joined by `.`) that found nothing, the object reached
    /// after its first `found` keys lacking the next, found what the task holds: the view holds
    /// a path above that key whole, or one of its paths goes through it. A step's
    /// `absent-reads` are warned of where not.
    pub fn gives_read(&self, dotted: &str, found: usize) -> bool {
        let mut holds = &self.holds;
        for key in dotted.split('.').take(found + 1) {
            match holds {
                Holds::Everything => return true,
                Holds::Keys(keys) => match keys.iter().find(|(k, _)| k == key) {
                    Some((_, below)) => holds = below,
                    None => return false,
                },
            }
        }
        true
    }

    /// The paths as a tree of keys.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// `data` as the step sees it, as JSON text (written straight from the data, nothing copied).
    pub fn text(&self, data: &Value) -> String {
        let view = Within {
            data,
            holds: &self.holds,
        };
        // Writing JSON values into a String cannot fail (their keys are strings).
        serde_json::to_string(&view).unwrap_or_default()
    }

    /// `data` as the step sees it, as a value (the reference the text is tested against).
    #[cfg(test)]
    pub(crate) fn of(&self, data: &Value) -> Value {
        serde_json::from_str(&self.text(data)).unwrap_or(Value::Null)
    }
}

/// A `reads` entry as a path (`order.total` → `["order", "total"]`).
fn data_path(dotted: &str) -> Path {
    Path(dotted.split('.').map(str::to_string).collect())
}

/// Why `dotted` cannot be a `reads` entry (manifest or config), or `None` when it is a path.
pub fn data_path_problem(dotted: &str) -> Option<String> {
    if dotted.split('.').any(str::is_empty) {
        return Some(format!(
            "{dotted:?} is not a data path (object keys joined by '.', none empty)"
        ));
    }
    let keys = dotted.split('.').count();
    (keys > crate::task::MAX_NESTING).then(|| {
        let start = &dotted[..dotted.floor_char_boundary(40)];
        format!(
            "the data path {start:?}… joins {keys} keys, past the {} levels a task's data may nest",
            crate::task::MAX_NESTING
        )
    })
}

/// Whether one of the paths `by` gives all of `path` (it is the same path or one above it).
fn covered(path: &Path, by: &[Path]) -> bool {
    by.iter().any(|above| path.keys().starts_with(above.keys()))
}

/// [`covered`] over dot-separated paths, as manifests and the config list them.
pub(crate) fn read_covered(dotted: &str, by: &[String]) -> bool {
    let by: Vec<Path> = by.iter().map(|p| data_path(p)).collect();
    covered(&data_path(dotted), &by)
}

/// What two sets of paths both give: each path of one set that a path of the other covers
/// (the same path or one above it). Either set may hold paths below others.
pub(crate) fn common_paths(a: &[Path], b: &[Path]) -> Vec<Path> {
    let mut common: Vec<Path> = a.iter().filter(|p| covered(p, b)).cloned().collect();
    common.extend(b.iter().filter(|p| covered(p, a)).cloned());
    common.sort();
    common.dedup();
    common
}

/// [`common_paths`] over dot-separated paths, as manifests and the config list them.
pub(crate) fn common_reads(a: &[String], b: &[String]) -> Vec<String> {
    let paths = |list: &[String]| list.iter().map(|p| data_path(p)).collect::<Vec<_>>();
    common_paths(&paths(a), &paths(b)).iter().map(Path::to_string).collect()
}

impl Holds {
    /// Adds the path `keys` (none of the paths added so far is a prefix of it).
    fn add(&mut self, keys: &[String]) {
        let Some((key, below)) = keys.split_first() else {
            *self = Holds::Everything;
            return;
        };
        let Holds::Keys(children) = self else {
            return;
        };
        let at = match children.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                children.push((key.clone(), Holds::Keys(Vec::new())));
                children.len() - 1
            }
        };
        children[at].1.add(below);
    }
}

/// The data within a view, serialized without copying it.
struct Within<'a> {
    data: &'a Value,
    holds: &'a Holds,
}

impl Serialize for Within<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.holds, self.data) {
            (Holds::Keys(keys), Value::Object(map)) => {
                let mut object = serializer.serialize_map(None)?;
                for (key, holds) in keys {
                    if let Some(data) = whenever_condition::field(map, key) {
                        object.serialize_entry(key, &Within { data, holds })?;
                    }
                }
                object.end()
            }
            _ => self.data.serialize(serializer),
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
    fn a_read_that_found_nothing_within_or_through_a_given_path_found_what_the_task_holds() {
        let view = view(&["order.customer.email", "order.total"], json!({"seen": null}));
        // (the path read, how many of its keys were found)
        assert!(view.gives_read("order.total", 1), "the path itself");
        assert!(
            view.gives_read("seen.by.whom", 1),
            "below a path given whole (the condition's)"
        );
        assert!(
            view.gives_read("order.customer.email", 1),
            "no customer: on a given path's way"
        );
        assert!(!view.gives_read("order.customer.tier", 2), "beside a given path");
        assert!(!view.gives_read("order.shipping.country", 1));
        assert!(!view.gives_read("payment", 0));
        let whole = DataView::of_paths(vec![Path(Vec::new())]);
        assert!(
            whole.gives_read("anything.at.all", 0),
            "the empty path is the whole data"
        );
    }

    #[test]
    fn within_keeps_what_the_operator_allows_condition_paths_included() {
        let full = view(
            &["order.total", "customer"],
            json!({"order": {"id": "$string"}, "seen": null}),
        );
        let narrowed = full.within(&["order".to_string(), "customer.email".to_string()]);
        let shown: Vec<String> = narrowed.paths().iter().map(|p| p.keys().join(".")).collect();
        assert_eq!(shown, ["customer.email", "order.id", "order.total"]);
        let data = json!({"order": {"id": "O-1", "total": 3, "card": "4242"}, "customer": {"email": "e", "name": "n"}, "seen": 1});
        assert_eq!(
            narrowed.of(&data),
            json!({"order": {"id": "O-1", "total": 3}, "customer": {"email": "e"}})
        );
        // Nothing in common: the step is given an empty object.
        assert_eq!(full.within(&["payment".to_string()]).of(&data), json!({}));
    }

    #[test]
    fn holds_the_listed_and_the_condition_paths_and_nothing_else() {
        let v = view(
            &["order.id", "order.customer.email"],
            json!({"order": {"fraud": {"score": "$number"}}}),
        );
        assert_eq!(
            v.of(&order()),
            json!({"order": {"id": "ORD-1", "customer": {"email": "a@b.test"}, "fraud": {"score": 10}}})
        );
        assert_eq!(
            v.text(&order()),
            r#"{"order":{"customer":{"email":"a@b.test"},"fraud":{"score":10},"id":"ORD-1"}}"#
        );
    }

    #[test]
    fn gives_a_listed_object_whole_and_drops_the_paths_below_it() {
        let v = view(
            &["order.customer.email", "order.customer"],
            json!({"order": {"id": "$string"}}),
        );
        let paths: Vec<String> = v.paths().iter().map(ToString::to_string).collect();
        assert_eq!(paths, vec!["order.customer", "order.id"]);
        assert_eq!(
            v.holds(),
            &Holds::Keys(vec![(
                "order".into(),
                Holds::Keys(vec![
                    ("customer".into(), Holds::Everything),
                    ("id".into(), Holds::Everything)
                ])
            )])
        );
        assert_eq!(
            v.of(&order()),
            json!({"order": {"customer": {"email": "a@b.test", "tier": "gold", "address": {"city": "Austin"}}, "id": "ORD-1"}})
        );
    }

    #[test]
    fn answers_as_the_data_does_where_a_path_meets_an_array_or_null() {
        let v = view(&["order.items.0.sku", "order.shipping.method"], json!({}));
        // The array and the null are given whole, so `order.items.0.sku` reads "A" and reading
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
    fn the_empty_path_gives_the_whole_data() {
        let v = view(&[], json!({}));
        assert!(v.paths().is_empty());
        assert_eq!(v.of(&order()), json!({}));
        let whole = DataView {
            paths: vec![Path::default()],
            holds: Holds::Everything,
        };
        assert_eq!(whole.of(&order()), order());
    }
}
