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
//!
//! A step may be `#![no_std]` (with `alloc`): the SDK itself uses no `std`, and
//! [`no_std_support!`] gives such a step what `std` would have (see there for why a step would).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};

pub mod condition;
pub mod connectors;
pub mod data;
pub mod log;
pub mod task;

#[cfg(any(target_arch = "wasm32", test))]
#[cfg_attr(not(all(target_arch = "wasm32", feature = "allocator")), allow(dead_code))]
mod allocator;
mod error;
#[cfg(target_arch = "wasm32")]
mod malloc;
#[cfg(any(target_arch = "wasm32", test))]
mod memcmp;
#[cfg(target_arch = "wasm32")]
mod no_std_support;
mod reads;
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

/// What the SDK's macros name, so that they work in `#![no_std]` steps too.
#[doc(hidden)]
pub mod __private {
    pub use alloc::format;
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use no_std_support::{cabi_realloc as __cabi_realloc, panicked as __panicked};

#[doc(hidden)]
pub fn __condition_text<S: Step>() -> String {
    S::condition().to_string()
}

#[doc(hidden)]
pub fn __run_content<S: Step>(input: String) -> Result<String, String> {
    let mut data = text::parse(&input).map_err(|e| format!("task data is not JSON: {e}"))?;
    {
        #[cfg(target_arch = "wasm32")]
        let _reads = reads::ContentReads::new(&data);
        S::content(&mut data).map_err(|e| e.to_string())?;
    }
    // The output is the input and what the step added: room for both, so it is not regrown.
    let output = text::write(&data, input.len() + input.len() / 2 + 64);
    // A step runs in a fresh instance that is thrown away after this one call, memory and all:
    // freeing the data's tree node by node first would be wasted work (about 8% of the guest's
    // time on the RetailMax steps, measured with perf).
    #[cfg(target_arch = "wasm32")]
    core::mem::forget((data, input));
    Ok(output)
}

/// Exports a type implementing [`Step`] as this component's step.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        struct __WheneverStepExport;

        impl $crate::bindings::Guest for __WheneverStepExport {
            fn condition() -> $crate::__private::String {
                $crate::__condition_text::<$step>()
            }
            fn content(
                data: $crate::__private::String,
            ) -> ::core::result::Result<$crate::__private::String, $crate::__private::String> {
                $crate::__run_content::<$step>(data)
            }
        }

        $crate::bindings::__export_step_world!(__WheneverStepExport);
    };
}

/// What `std` would give a `#![no_std]` step, for its component: a panic handler, which logs the
/// panic's message to the run's log at error level and then traps (the host records the run as
/// failed, as it does any trap), and the canonical ABI's `cabi_realloc`, through which the host
/// hands the step its input. Invoke it once, at the crate's root, next to [`export_step!`].
///
/// Why a step would be `#![no_std]`: Rust's `std` for `wasm32-wasip2` brings WASI imports
/// (stdio, environment, exit: 19 functions of 13 interfaces) into every component, whether the
/// step uses them or not, and the host links each import at each run's instantiation. Without
/// them each run is cheaper and the component smaller (`steps/README.md`, "Steps without
/// `std`"). A step that uses `std` needs neither this macro nor any change.
#[macro_export]
macro_rules! no_std_support {
    () => {
        #[cfg(all(target_arch = "wasm32", not(test)))]
        #[panic_handler]
        fn __whenever_step_panicked(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::__panicked(info)
        }

        /// The canonical ABI's allocation function (the host writes the step's input with it).
        ///
        /// # Safety
        /// As the canonical ABI calls it: `old` null with `old_len` 0, or a block this function
        /// returned with that length and `align`.
        #[cfg(all(target_arch = "wasm32", not(test)))]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
            // SAFETY: the caller's promise, passed on.
            unsafe { $crate::__cabi_realloc(old, old_len, align, new_len) }
        }
    };
}
