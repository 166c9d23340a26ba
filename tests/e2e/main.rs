//! End-to-end tests with real `wasm32-wasip2` components, one file per behaviour.

mod compile_cache;
mod retailmax;
mod sandbox;
mod scheduling;
mod service;
