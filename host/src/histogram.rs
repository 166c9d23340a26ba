//! A latency histogram in the Prometheus text format: cumulative bucket counts, their sum and
//! count. Shared by the service's metrics and the store's commit statistics.

use std::fmt::Write as _;

/// Upper bounds (seconds) of the buckets: from 0.1 ms, where a step run or an fsync on a fast
/// disk lands, to 5 s.
pub const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Observations counted in [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    /// Counts one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        self.sum_seconds += seconds;
        self.count += 1;
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }

    /// How many observations were counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the histogram's lines for metric `name` with `labels` (`key="value"`, escaped;
    /// empty for none).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labels_may_be_none() {
        let mut histogram = Histogram::default();
        histogram.observe(0.00005);
        histogram.observe(0.0003);
        histogram.observe(9.0);
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds", "");
        for line in [
            "x_seconds_bucket{le=\"0.0001\"} 1\n",
            "x_seconds_bucket{le=\"0.00025\"} 1\n",
            "x_seconds_bucket{le=\"0.0005\"} 2\n",
            "x_seconds_bucket{le=\"5\"} 2\n",
            "x_seconds_bucket{le=\"+Inf\"} 3\n",
            "x_seconds_count 3\n",
        ] {
            assert!(out.contains(line), "{line}in {out}");
        }
        assert_eq!(histogram.count(), 3);
    }
}
