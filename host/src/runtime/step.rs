//! A step loaded into the runtime: one compiled, linked version with its parsed condition.

use std::sync::Arc;

use whenever_condition::Condition;

use super::bindings::StepPre;
use super::grants::Withheld;
use super::manifest::StepManifest;
use super::state::RunState;
use super::view::DataView;

/// One version of a step, ready to run: compiled, linked, its condition read once and parsed.
#[derive(Clone)]
pub struct LoadedStep {
    /// The step's name.
    pub name: String,
    /// The version: 12 hex digits of a SHA-256 over the component and its manifest as deployed
    /// ([`super::version_id`]), or the id a store kept with it.
    pub version: String,
    /// The full SHA-256 of the component.
    pub digest: String,
    /// Grants and limits: the manifest's, narrowed by the operator's config.
    pub manifest: Arc<StepManifest>,
    /// What the manifest asks for that the operator's config withholds.
    pub withheld: Withheld,
    /// The parsed condition.
    pub condition: Arc<Condition>,
    /// The part of the task data the step is given, when its manifest lists what it `reads`;
    /// `None`: the whole data.
    pub view: Option<Arc<DataView>>,
    /// Size of the component in bytes.
    pub size: usize,
    pub(crate) pre: StepPre<RunState>,
}

impl std::fmt::Debug for LoadedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedStep")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("condition", &self.condition.pattern().to_string())
            .finish_non_exhaustive()
    }
}
