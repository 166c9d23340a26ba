//! Per-run sandbox limits (defaults, configurable per step within the host's bounds) and the
//! memory limiter.

use serde::{Deserialize, Serialize};

/// The limits a run of a step is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepLimits {
    /// Execution deadline per run (and for reading the condition), in milliseconds of the run's
    /// own time (not in connector calls, nor waiting for a thread).
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

/// The most a step's manifest may ask of a run. A third party's manifest sets its own limits, so
/// the host bounds them: a deploy asking more is refused, naming the ceiling (`[runtime.max_limits]`
/// in the host's config raises or lowers it; memory has its own fixed maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitCeilings {
    /// The longest deadline, in milliseconds.
    pub timeout_ms: u64,
    /// The largest output, in bytes.
    pub max_output_bytes: usize,
    /// The most connector calls per run.
    pub max_connector_calls: u32,
    /// The most log bytes kept per run.
    pub max_log_bytes: usize,
}

impl Default for LimitCeilings {
    fn default() -> Self {
        LimitCeilings {
            timeout_ms: 300_000,
            max_output_bytes: 64 << 20,
            max_connector_calls: 10_000,
            max_log_bytes: 16 << 20,
        }
    }
}

impl LimitCeilings {
    /// Each limit with its ceiling and the default, as (setting, ceiling, default, asked by
    /// `limits`).
    fn each(&self, limits: &StepLimits) -> [(&'static str, u64, u64, u64); 4] {
        let default = StepLimits::default();
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        [
            ("timeout_ms", self.timeout_ms, default.timeout_ms, limits.timeout_ms),
            (
                "max_output_bytes",
                wide(self.max_output_bytes),
                wide(default.max_output_bytes),
                wide(limits.max_output_bytes),
            ),
            (
                "max_connector_calls",
                u64::from(self.max_connector_calls),
                u64::from(default.max_connector_calls),
                u64::from(limits.max_connector_calls),
            ),
            (
                "max_log_bytes",
                wide(self.max_log_bytes),
                wide(default.max_log_bytes),
                wide(limits.max_log_bytes),
            ),
        ]
    }

    /// Refuses ceilings below the default limits, which would refuse every step that sets none.
    pub fn validate(&self) -> Result<(), String> {
        let below = self
            .each(&StepLimits::default())
            .into_iter()
            .find(|(_, ceiling, default, _)| ceiling < default);
        match below {
            Some((setting, ceiling, default, _)) => Err(format!(
                "[runtime.max_limits] {setting} = {ceiling} is below the default limit of {default}, \
                 which every step without [limits] {setting} gets"
            )),
            None => Ok(()),
        }
    }

    /// What of `limits` is above its ceiling, as a refusal names it; `None` when all fit.
    pub fn excess(&self, limits: &StepLimits) -> Option<String> {
        let (setting, ceiling, _, asked) = self
            .each(limits)
            .into_iter()
            .find(|(_, ceiling, _, asked)| asked > ceiling)?;
        Some(format!(
            "limits.{setting} = {asked} is above the host's maximum of {ceiling} (an operator may \
             change it: [runtime.max_limits] {setting} in the host's config)"
        ))
    }

    /// What `limits` asks above the ceilings, each as `setting = asked, held to ceiling`
    /// ([`LimitCeilings::clamp`] holds them there).
    pub fn lowered(&self, limits: &StepLimits) -> Vec<String> {
        self.each(limits)
            .into_iter()
            .filter(|(_, ceiling, _, asked)| asked > ceiling)
            .map(|(setting, ceiling, _, asked)| format!("{setting} = {asked}, held to {ceiling}"))
            .collect()
    }

    /// `limits` held to the ceilings (a version stored before they were lowered runs within them).
    pub fn clamp(&self, limits: StepLimits) -> StepLimits {
        StepLimits {
            timeout_ms: limits.timeout_ms.min(self.timeout_ms),
            max_output_bytes: limits.max_output_bytes.min(self.max_output_bytes),
            max_connector_calls: limits.max_connector_calls.min(self.max_connector_calls),
            max_log_bytes: limits.max_log_bytes.min(self.max_log_bytes),
            ..limits
        }
    }
}

/// A size for people: `4 MiB`, `100.0 MiB`, `512 bytes`.
pub(crate) fn describe_bytes(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    if bytes >= MIB {
        if bytes.is_multiple_of(MIB) {
            format!("{} MiB", bytes / MIB)
        } else {
            format!("{:.1} MiB", bytes as f64 / MIB as f64)
        }
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_above_its_ceiling_is_named_and_clamped() {
        let ceilings = LimitCeilings::default();
        assert_eq!(ceilings.excess(&StepLimits::default()), None);
        let greedy = StepLimits {
            timeout_ms: u64::MAX,
            max_log_bytes: 32 << 20,
            ..StepLimits::default()
        };
        assert_eq!(
            ceilings.excess(&greedy).as_deref(),
            Some(
                "limits.timeout_ms = 18446744073709551615 is above the host's maximum of 300000 (an \
                 operator may change it: [runtime.max_limits] timeout_ms in the host's config)"
            )
        );
        assert_eq!(
            ceilings.lowered(&greedy),
            [
                "timeout_ms = 18446744073709551615, held to 300000",
                "max_log_bytes = 33554432, held to 16777216"
            ]
        );
        assert!(ceilings.lowered(&StepLimits::default()).is_empty());
        let held = ceilings.clamp(greedy);
        assert_eq!((held.timeout_ms, held.max_log_bytes), (300_000, 16 << 20));
        assert_eq!(held.memory_mib, greedy.memory_mib);
    }

    #[test]
    fn ceilings_below_the_defaults_are_refused() {
        assert_eq!(LimitCeilings::default().validate(), Ok(()));
        let low = LimitCeilings {
            max_connector_calls: 10,
            ..LimitCeilings::default()
        };
        assert_eq!(
            low.validate(),
            Err(
                "[runtime.max_limits] max_connector_calls = 10 is below the default limit of 1000, \
                 which every step without [limits] max_connector_calls gets"
                    .to_string()
            )
        );
    }
}
