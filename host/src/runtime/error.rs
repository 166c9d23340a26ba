//! Errors of the runtime: setting up the engine and loading (deploying) a step.

use thiserror::Error;

/// The engine could not be set up.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    /// The host's own interfaces could not be linked.
    #[error("cannot link the host interfaces: {0}")]
    Link(String),
}

/// A component could not be loaded as a step; nothing about the previous version changes.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (or not a valid one).
    #[error("step {step}: not a valid WebAssembly component: {message}")]
    NotAComponent {
        /// The step's name.
        step: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component imports or exports something that does not fit the step world.
    #[error("step {step}: the component does not fit the whenever:step world: {message}")]
    WrongWorld {
        /// The step's name.
        step: String,
        /// What is missing or not offered, as wasmtime names it.
        message: String,
    },
    /// `condition()` trapped, looped or returned something that is not a valid pattern.
    #[error("step {step}: invalid condition: {message}")]
    InvalidCondition {
        /// The step's name.
        step: String,
        /// What is wrong with it.
        message: String,
    },
    /// The manifest could not be read.
    #[error("step {step}: {message}")]
    Manifest {
        /// The step's name.
        step: String,
        /// What is wrong with it.
        message: String,
    },
    /// The step name is not usable.
    #[error("invalid step name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
}
