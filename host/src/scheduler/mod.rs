//! When steps run, and what happens to their results.
//!
//! The rule for "when does a step run again" lives in [`rules`]; the async loop that starts runs,
//! waits for them and merges their output is [`driver`]; diff and merge are in [`merge`], and a
//! step's output is diffed as it is parsed in [`output_diff`]; [`data_size`] holds a task's data
//! to its limit.

pub mod data_size;
pub mod driver;
pub mod merge;
#[cfg(test)]
mod merge_properties;
pub mod output_diff;
pub mod rules;

pub use driver::{Checkpoint, CheckpointError, Commit, Event, Resumed, Scheduler, SchedulerSettings};
