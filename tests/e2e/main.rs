//! End-to-end tests with real `wasm32-wasip2` components, one file per behaviour.

mod capabilities;
mod compile_cache;
mod conditional_requests;
mod data_views;
mod hot_deploy;
mod http2;
mod idempotency;
mod journal_failure;
mod openapi;
mod readme;
mod retailmax;
mod sandbox;
mod scheduling;
mod security;
mod service;
mod step_crates;
mod stopping;
mod task_log;
