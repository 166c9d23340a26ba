//! Reads of data the step was not given. A step whose manifest lists what it `reads` is given
//! only those paths and the ones its condition tests: any other path reads as absent whatever
//! the task holds, which its author would otherwise not notice (a field "missing" that is there).
//! [`get`](crate::data::get) on the data the content was given notes each read that found nothing,
//! and as the content returns the SDK reports those paths to the host (`absent-reads`), which
//! logs a warning for each one the step was not given: one host call per run at most, and none
//! when every read found something.

#[cfg(target_arch = "wasm32")]
pub(crate) use run::{ContentReads, absent};

#[cfg(not(target_arch = "wasm32"))]
/// Natively (the steps' unit tests) there is no host to tell: nothing to note.
pub(crate) fn absent(_data: &serde_json::Value, _path: &str, _found: usize) {}

#[cfg(target_arch = "wasm32")]
mod run {
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, Ordering};

    use serde_json::Value;

    use crate::bindings::whenever::step::task as host;

    /// The data the content was given, while it runs: only its address, to tell it from a value
    /// within it (a read relative to an item is not a path of the task data).
    static GIVEN_DATA: AtomicPtr<Value> = AtomicPtr::new(ptr::null_mut());

    /// This run's reads of the given data that found nothing, each path once.
    static ABSENT: RunLocal = RunLocal(RefCell::new(Vec::new()));

    struct RunLocal(RefCell<Vec<host::AbsentRead>>);

    // SAFETY: a step's component runs on one thread (wasm32-wasip2 has no threads), so the cell
    // is never reached from two at once.
    unsafe impl Sync for RunLocal {}

    /// Marks the data the content is given for as long as it lives; dropped as the content
    /// returns, it reports where reads found nothing.
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
            let Ok(mut absent) = ABSENT.0.try_borrow_mut() else {
                return;
            };
            if !absent.is_empty() {
                host::absent_reads(&absent);
                absent.clear();
            }
        }
    }

    /// A read of `path` in `data` found nothing: the object reached after its first `found`
    /// keys lacks the next one. Noted when `data` is what the content was given.
    pub(crate) fn absent(data: &Value, path: &str, found: usize) {
        if !ptr::eq(data, GIVEN_DATA.load(Ordering::Relaxed)) {
            return;
        }
        let Ok(mut absent) = ABSENT.0.try_borrow_mut() else {
            return;
        };
        if !absent.iter().any(|noted| noted.path == path) {
            absent.push(host::AbsentRead {
                path: path.to_string(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
    }
}
