//! Reads of data the step was not given. A step whose manifest lists what it `reads` is given
//! only those paths and the ones its condition tests: any other path reads as absent whatever
//! the task holds, which its author would otherwise not notice (a field "missing" that is there).
//! [`get`](crate::data::get) on the data the content was given reports a read that found nothing
//! here, and the first such read of each path in a run is logged as a warning naming it.

use crate::data::keys;

/// Whether a read that found nothing at the keys `at` (an object on the way lacked the last of
/// them) would have found the same in the whole task data: some path `given` goes through the
/// object that lacked it, or gives one above it whole.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn found_what_the_task_holds(given: &[impl AsRef<str>], at: &[&str]) -> bool {
    given.iter().any(|path| {
        keys(path.as_ref())
            .zip(at)
            .all(|(given_key, read_key)| given_key == *read_key)
    })
}

/// The warning for a read of `path` the step was not given.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn warning(path: &str) -> alloc::string::String {
    alloc::format!(
        "read `{path}`, which this step is not given: it reads as absent whatever the task holds. \
         A step whose manifest lists what it `reads` is given those paths and the ones its \
         condition tests (as the operator's config narrows them); list it, or a path above it"
    )
}

#[cfg(target_arch = "wasm32")]
pub(crate) use run::{ContentReads, absent};

#[cfg(not(target_arch = "wasm32"))]
/// Natively (the steps' unit tests) there is no host to ask what was given: nothing to report.
pub(crate) fn absent(_data: &serde_json::Value, _path: &str, _found: usize) {}

#[cfg(target_arch = "wasm32")]
mod run {
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, Ordering};

    use serde_json::Value;

    use super::{found_what_the_task_holds, warning};
    use crate::bindings::whenever::step::task as host;
    use crate::data::keys;
    use crate::log::{Level, log};

    /// The data the content was given, while it runs: only its address, to tell it from a value
    /// within it (a read relative to an item is not a path of the task data).
    static GIVEN_DATA: AtomicPtr<Value> = AtomicPtr::new(ptr::null_mut());

    /// What the host gave this run (asked at the first read that found nothing) and the paths
    /// warned of so far.
    static SEEN: RunLocal = RunLocal(RefCell::new(None));

    struct Seen {
        given: Option<Vec<String>>,
        warned: Vec<String>,
    }

    struct RunLocal(RefCell<Option<Seen>>);

    // SAFETY: a step's component runs on one thread (wasm32-wasip2 has no threads), so the cell
    // is never reached from two at once.
    unsafe impl Sync for RunLocal {}

    /// Marks the data the content is given for as long as it lives.
    pub(crate) struct ContentReads;

    impl ContentReads {
        pub(crate) fn new(data: &Value) -> ContentReads {
            GIVEN_DATA.store(ptr::from_ref(data).cast_mut(), Ordering::Relaxed);
            ContentReads
        }
    }

    impl Drop for ContentReads {
        fn drop(&mut self) {
            GIVEN_DATA.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// A read of `path` in `data` found nothing: the object reached after its first `found`
    /// keys lacks the next one. Warns when `data` is what the content was given and the host did
    /// not give that part of the task.
    pub(crate) fn absent(data: &Value, path: &str, found: usize) {
        if !ptr::eq(data, GIVEN_DATA.load(Ordering::Relaxed)) {
            return;
        }
        let Ok(mut seen) = SEEN.0.try_borrow_mut() else { return };
        let seen = seen.get_or_insert_with(|| Seen {
            given: host::given_paths(),
            warned: Vec::new(),
        });
        let Some(given) = &seen.given else { return };
        let at: Vec<&str> = keys(path).take(found + 1).collect();
        if found_what_the_task_holds(given, &at) || seen.warned.iter().any(|w| w == path) {
            return;
        }
        seen.warned.push(path.to_string());
        log(Level::Warn, &warning(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_within_or_through_a_given_path_found_what_the_task_holds() {
        let given = ["order.customer.email", "order.total", "seen"];
        // The read's missing key is at the end of `at`.
        assert!(
            found_what_the_task_holds(&given, &["order", "total"]),
            "the path itself"
        );
        assert!(
            found_what_the_task_holds(&given, &["seen", "by"]),
            "below a path given whole"
        );
        assert!(
            found_what_the_task_holds(&given, &["order", "customer"]),
            "on a given path's way"
        );
        assert!(
            !found_what_the_task_holds(&given, &["order", "customer", "tier"]),
            "beside it"
        );
        assert!(!found_what_the_task_holds(&given, &["order", "shipping"]));
        assert!(!found_what_the_task_holds(&given, &["payment"]));
        assert!(!found_what_the_task_holds(&[] as &[&str], &["order"]), "given nothing");
    }

    #[test]
    fn the_warning_names_the_path_and_the_fix() {
        let text = warning("order.customer.tier");
        assert!(text.starts_with("read `order.customer.tier`, which this step is not given"));
        assert!(text.contains("`reads`"));
    }
}
