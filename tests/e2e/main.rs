//! End-to-end tests with real `wasm32-wasip2` components, one file per behaviour.

mod sandbox;
mod scheduling;
