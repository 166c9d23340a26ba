//! Whenever: a host for data-triggered automation.
//!
//! A task is a JSON document; a step is a sandboxed WebAssembly component with a condition (a
//! JSON pattern over the task data) and a content function. Whenever the data matches a step's
//! condition, the host runs the step; what it writes may make other steps' conditions match.
//!
//! - [`condition`]: the pattern language (its own crate, re-exported).
//! - [`runtime`]: wasmtime: engine, limits, linker, one fresh sandbox per run.
//! - [`scheduler`]: when steps run, diff and merge, conflicts, states.
//! - [`catalog`]: the deployed steps.
//! - [`task`]: the task and its history.
//! - [`request_key`]: idempotent task creation: one task per request key, however often sent.
//! - [`config`]: the host's configuration file.
//! - [`Host`]: all of the above assembled from options and a config file.
//! - [`demo`]: the RetailMax scenarios behind `whenever demo`.
//! - [`store`]: durable storage (SQLite) of tasks, history, the connector journal and steps.
//! - [`service`]: the long-running service: durable tasks driven by workers, deploys, recovery.
//! - [`api`]: the HTTP API of `whenever serve`.
//! - [`cli`]: the `whenever` command line.
//! - [`histogram`]: latency histograms in the Prometheus text format.
//! - [`rfc3339`]: times as RFC 3339 text, written fast (records carry many).
//! - [`allocator`]: mimalloc's settings for a long-running process.
#![deny(missing_docs)]

pub mod allocator;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod demo;
mod file_stamp;
pub mod histogram;
mod host;
pub mod request_key;
pub mod rfc3339;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod task;
pub mod wide_integer;

pub use host::{Host, HostOptions, SetupError};
pub use whenever_condition as condition;
pub use whenever_connectors as connectors;
