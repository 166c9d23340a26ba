//! The wasmtime side of the host: one engine, compiled steps, and one fresh sandbox per run.
//!
//! Only this module touches wasmtime's configuration. A step is compiled once per version
//! (cached on disk by content hash), linked once into an `InstancePre`, and every run gets a
//! fresh `Store` with the step's limits, thrown away after the run.

mod bindings;
mod cache;
mod call_record;
mod engine;
mod error;
mod grants;
mod json_text;
mod limits;
mod log;
mod manifest;
mod run;
mod run_clock;
mod state;
mod step;
mod view;

pub(crate) use cache::digest;
pub(crate) use engine::version_of;
pub use engine::{CompileStats, Runtime, RuntimeConfig, is_step_name, version_id};
pub use error::{LoadError, RuntimeError};
pub use grants::{
    BASE_URL_SETTING, Capabilities, HTTP_KIND, OperatorGrants, Withheld, host_matches, host_pattern_problem, url_host,
};
pub use json_text::JsonText;
pub use limits::{LimitCeilings, StepLimits};
pub use log::{LogLevel, LogLine, RunLog, TRUNCATED_MARKER};
pub use manifest::{HttpGrants, ManifestError, StepManifest};
pub use run::{
    CallError, CallJournal, ConnectorCallRecord, RunError, RunErrorKind, RunInput, RunOutput, RunReport, TaskRequests,
};
pub use step::LoadedStep;
pub use view::{DataView, Holds, data_path_problem};
