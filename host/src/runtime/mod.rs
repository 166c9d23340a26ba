//! The wasmtime side of the host: one engine, compiled steps, and one fresh sandbox per run.
//!
//! Only this module touches wasmtime's configuration. A step is compiled once per version
//! (cached on disk by content hash), linked once into an `InstancePre`, and every run gets a
//! fresh `Store` with the step's limits, thrown away after the run.

mod bindings;
mod cache;
mod engine;
mod error;
mod limits;
mod log;
mod manifest;
mod run;
mod state;
mod step;

pub use engine::{CompileStats, Runtime, RuntimeConfig};
pub use error::{LoadError, RuntimeError};
pub use limits::StepLimits;
pub use log::{LogLevel, LogLine, RunLog};
pub use manifest::{ManifestError, StepManifest};
pub use run::{CallError, CallJournal, ConnectorCallRecord, RunError, RunErrorKind, RunInput, RunOutput, RunReport, TaskRequests};
pub use step::LoadedStep;
