//! The task the step runs on: its id, the time, its name and tags, completion and redo.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::bindings::whenever::step::task as host;

/// The task's id.
pub fn id() -> String {
    host::id()
}

/// The current time as RFC 3339 UTC text (`new Date().toISOString()` in the seed).
pub fn now() -> String {
    host::now()
}

/// Renames the task (a blank name, or one over 256 characters, is not set: the host warns in
/// the run's log).
pub fn set_name(name: &str) {
    host::set_name(name);
}

/// Adds tags to the task (a blank one, one over 128 characters, or one beyond the task's 64 is
/// not added: the host warns in the run's log).
pub fn add_tags(tags: &[&str]) {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    host::add_tags(&tags);
}

/// Completes the task once this run's changes are applied.
pub fn complete() {
    host::complete();
}

/// Runs this step again after this run, even if its matched data does not change.
pub fn redo() {
    host::redo();
}
