//! The Whenever step SDK: everything a step author needs to write a step as a page of plain Rust.
//!
//! ```ignore
//! use whenever_step_sdk::prelude::*;
//!
//! struct TierAnalysis;
//!
//! impl Step for TierAnalysis {
//!     fn condition() -> Value {
//!         condition!({ order: { customer: { tier: String }, tierAnalyzed: null } })
//!     }
//!     fn content(data: &mut Value) -> Result<(), StepError> {
//!         set(data, "order.tierAnalyzed", true);
//!         Ok(())
//!     }
//! }
//!
//! export_step!(TierAnalysis);
//! ```
#![deny(missing_docs)]

pub mod condition;
pub mod connectors;
pub mod data;
pub mod log;
pub mod task;

#[cfg_attr(not(all(target_arch = "wasm32", feature = "allocator")), allow(dead_code))]
mod allocator;
mod error;
mod text;

/// The step's allocator (`allocator.rs`): cheaper per block than wasi-libc's dlmalloc, for
/// instances that live one call. A step with an allocator of its own turns the SDK's
/// `allocator` feature off.
#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: allocator::StepAllocator = allocator::StepAllocator::new();

pub use error::StepError;
pub use serde_json::{self, Value, json};

/// The generated bindings of the `whenever:step` world (`wit/step.wit`).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "whenever_step_sdk::bindings",
    });
}

/// What a step is: a condition over the task data and the content that changes it.
pub trait Step {
    /// The JSON pattern that must match the task data for the content to run (use `condition!`).
    fn condition() -> Value;
    /// Reads and changes the task data (all of it, or, when the step's manifest lists what it
    /// `reads`, those paths and the condition's); an error leaves the task data untouched.
    fn content(data: &mut Value) -> Result<(), StepError>;
}

/// Everything a step usually needs, in one `use`.
pub mod prelude {
    pub use crate::condition::{any, eq, gt, gte, lt, lte, ne, none_of, not, one_of, regex};
    pub use crate::connectors::{self, ConnectorError, ErrorKind};
    pub use crate::data::{get, get_bool, get_f64, get_str, remove, set};
    pub use crate::task;
    pub use crate::{Step, StepError, condition, export_step, json, log_error, log_info, log_warn};
    pub use serde_json::{Map, Value};
}

#[doc(hidden)]
pub fn __condition_text<S: Step>() -> String {
    S::condition().to_string()
}

#[doc(hidden)]
pub fn __run_content<S: Step>(input: String) -> Result<String, String> {
    let mut data = text::parse(&input).map_err(|e| format!("task data is not JSON: {e}"))?;
    S::content(&mut data).map_err(|e| e.to_string())?;
    // The output is the input and what the step added: room for both, so it is not regrown.
    let output = text::write(&data, input.len() + input.len() / 2 + 64)
        .map_err(|e| format!("cannot serialize the new data: {e}"));
    // A step runs in a fresh instance that is thrown away after this one call, memory and all:
    // freeing the data's tree node by node first would be wasted work (about 8% of the guest's
    // time on the RetailMax steps, measured with perf).
    #[cfg(target_arch = "wasm32")]
    std::mem::forget((data, input));
    output
}

/// Exports a type implementing [`Step`] as this component's step.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        struct __WheneverStepExport;

        impl $crate::bindings::Guest for __WheneverStepExport {
            fn condition() -> ::std::string::String {
                $crate::__condition_text::<$step>()
            }
            fn content(
                data: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                $crate::__run_content::<$step>(data)
            }
        }

        $crate::bindings::__export_step_world!(__WheneverStepExport);
    };
}
