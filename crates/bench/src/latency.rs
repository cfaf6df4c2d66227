//! Append-to-follower latencies in microseconds, in an HDR histogram per
//! follower, merged for the report.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency recorded exactly; longer ones are clamped to it.
const MAX_MICROS: u64 = 120_000_000;

/// A latency histogram in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }

    /// Records one latency.
    pub(crate) fn record(&mut self, micros: u64) {
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds another histogram's counts.
    pub(crate) fn merge(&mut self, other: &Self) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// The summary the report prints.
    pub(crate) fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.5)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct LatencySummary {
    /// How many latencies were recorded.
    pub(crate) count: u64,
    /// The median.
    pub(crate) p50_ms: f64,
    /// The 99th percentile.
    pub(crate) p99_ms: f64,
    /// The largest.
    pub(crate) max_ms: f64,
}
