//! Warming the data a run's view reads after the task waited for a commit.
//!
//! A durable drive commits before every wave of runs and waits for the commit; meanwhile other
//! tasks' runs evict this task's data from the CPU's caches. Walking a `serde_json::Value` tree
//! that has gone cold is a chain of dependent cache misses (a map's entries, then each key's
//! bytes, then the value below): writing a run's view took 12–17 µs there against 2 µs on warm
//! data. So the addresses a view reads are listed while the data is still warm, before the wait,
//! and prefetched all at once after it: the misses then overlap instead of following one
//! another (a view then took a third less; docs/performance.md, "Cold data after every
//! commit").

use serde_json::Value;

use crate::runtime::Holds;

/// At most this many addresses in one list: a very large data is not worth listing whole (the
/// first part is warmed, the rest is read as before).
const MAX_LINES: usize = 1024;

/// The addresses of what a run given `holds` of `data` reads: the values within the view, and
/// every entry and key of the objects on the way to them. Writing the view looks keys up through
/// the map's hash index and needs only some of those entries; the run's diff later scans them
/// all. Listing them all is what was measured; whether they are still cached when the diff runs
/// was not.
pub fn lines(data: &Value, holds: Option<&Holds>, out: &mut Vec<usize>) {
    match holds {
        Some(holds) => within(data, holds, out),
        None => whole(data, out),
    }
}

fn within(data: &Value, holds: &Holds, out: &mut Vec<usize>) {
    match (holds, data) {
        (Holds::Keys(keys), Value::Object(map)) => {
            push(out, data);
            for (key, value) in map {
                push(out, key.as_ptr());
                push(out, value);
            }
            for (key, holds) in keys {
                if let Some(value) = map.get(key) {
                    within(value, holds, out);
                }
            }
        }
        _ => whole(data, out),
    }
}

fn whole(data: &Value, out: &mut Vec<usize>) {
    if out.len() >= MAX_LINES {
        return;
    }
    push(out, data);
    match data {
        Value::String(text) => push(out, text.as_ptr()),
        Value::Array(items) => items.iter().for_each(|item| whole(item, out)),
        Value::Object(map) => {
            for (key, value) in map {
                push(out, key.as_ptr());
                whole(value, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn push<T>(out: &mut Vec<usize>, at: *const T) {
    if out.len() < MAX_LINES {
        out.push(at as usize);
    }
}

/// Asks the CPU to bring these addresses into its caches, without waiting for them. A hint
/// only: an address that is no longer in use (the data changed since it was listed) costs a
/// useless fetch, never a fault.
pub fn prefetch(lines: &[usize]) {
    #[cfg(target_arch = "x86_64")]
    for &at in lines {
        // SAFETY: a prefetch never faults and reads nothing into the program, whatever the
        // address; `at` is only a number here, not dereferenced.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lines;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_the_view_and_the_keys_on_its_way_and_stops_at_the_cap() {
        let data = json!({"order": {"id": "A-1", "total": 3, "card": "4242"}, "other": {"big": [1, 2, 3]}});
        let holds = Holds::Keys(vec![(
            "order".into(),
            Holds::Keys(vec![("id".into(), Holds::Everything)]),
        )]);
        let mut listed = Vec::new();
        lines(&data, Some(&holds), &mut listed);
        let (order, other) = (&data["order"], &data["other"]);
        let id = order["id"].as_str().expect("a string");
        assert!(listed.contains(&(order as *const Value as usize)));
        assert!(listed.contains(&(id.as_ptr() as usize)), "the value within the view");
        assert!(
            !listed.contains(&(other["big"].as_array().expect("an array").as_ptr() as usize)),
            "nothing below a key the view does not hold"
        );

        let mut all = Vec::new();
        lines(&data, None, &mut all);
        assert!(all.len() > listed.len());

        let huge = Value::Array((0..5_000).map(Value::from).collect());
        let mut capped = Vec::new();
        lines(&huge, None, &mut capped);
        assert_eq!(capped.len(), MAX_LINES);
        prefetch(&capped);
    }
}
