//! Per-run sandbox limits (design.md's defaults, configurable per step) and the memory limiter.

use serde::{Deserialize, Serialize};

/// The limits a run of a step is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepLimits {
    /// Execution deadline per run (and for reading the condition), in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory per instance, in MiB.
    pub memory_mib: u64,
    /// Largest output JSON, in bytes.
    pub max_output_bytes: usize,
    /// Connector calls per run.
    pub max_connector_calls: u32,
    /// Log bytes kept per run (the rest is cut with a marker).
    pub max_log_bytes: usize,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            timeout_ms: 2_000,
            memory_mib: 64,
            max_output_bytes: 4 << 20,
            max_connector_calls: 1_000,
            max_log_bytes: 1 << 20,
        }
    }
}

impl StepLimits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Refuses memory growth past the limit and remembers that it did, to name the cause of the
/// trap that usually follows (the guest aborts when its allocator gets no memory).
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) hit: bool,
    /// The size of the largest memory refused, in bytes (at instantiation: the size a memory
    /// starts at).
    pub(crate) refused_bytes: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            hit: false,
            refused_bytes: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            self.refused_bytes = self.refused_bytes.max(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
