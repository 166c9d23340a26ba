//! The steps under `steps/`, compiled to `wasm32-wasip2` components by this crate's build script.
//!
//! The host bundles [`RETAILMAX`] so that `whenever run order.json` and `whenever demo` need no
//! set-up; tests use the components in [`testing`] by path.
#![deny(missing_docs)]

/// A step compiled into the host binary.
#[derive(Debug, Clone, Copy)]
pub struct BundledStep {
    /// The step's name (its crate's folder).
    pub name: &'static str,
    /// The component (a `wasm32-wasip2` component binary).
    pub component: &'static [u8],
    /// The step's manifest (`step.toml`): the connectors it is granted, its limits.
    pub manifest: &'static str,
}

/// A step on disk: its component and its manifest.
#[derive(Debug, Clone, Copy)]
pub struct StepFiles {
    /// The step's name (its crate's folder).
    pub name: &'static str,
    /// Path of the compiled component.
    pub component: &'static str,
    /// Path of its manifest (`step.toml`).
    pub manifest: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
