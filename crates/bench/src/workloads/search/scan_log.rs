//! How far a search (or a loop of searches) got, as its responses tell:
//! every `SearchRunsResponse` carries the bytes scanned so far, and the
//! log notes when each came and the total over every search by then.
//!
//! The server sends a response at least once a second, so the log places
//! the scan to within about a second: the rate over a window is taken
//! between the last response before it and the first after it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The responses of searches: when each came, and the bytes scanned by
/// then over all of them.
#[derive(Debug, Default)]
pub(super) struct ScanLog {
    /// `(when, total bytes)`, in the order the responses came.
    marks: Mutex<Vec<(Instant, u64)>>,
}

impl ScanLog {
    /// Notes a response that reported `bytes` more than the one before.
    pub(super) fn add(&self, bytes: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|err| err.into_inner());
        let total = marks.last().map_or(0, |(_, total)| *total) + bytes;
        marks.push((Instant::now(), total));
    }

    /// Whether a response came after `at`.
    pub(super) fn heard_after(&self, at: Instant) -> bool {
        self.marks
            .lock()
            .unwrap_or_else(|err| err.into_inner())
            .last()
            .is_some_and(|(when, _)| *when > at)
    }

    /// The bytes a second scanned over a window that covers `from..to`:
    /// from the last response at or before `from` (or `start`, with
    /// nothing scanned, when there is none) to the first at or after
    /// `to`; `None` when none came after `to`.
    pub(super) fn rate_over(&self, start: Instant, from: Instant, to: Instant) -> Option<f64> {
        let marks = self.marks.lock().unwrap_or_else(|err| err.into_inner());
        let (first_at, first_total) = marks
            .iter()
            .rev()
            .find(|(when, _)| *when <= from)
            .copied()
            .unwrap_or((start, 0));
        let (last_at, last_total) = marks.iter().find(|(when, _)| *when >= to).copied()?;
        let secs = last_at
            .duration_since(first_at)
            .max(Duration::from_micros(1))
            .as_secs_f64();
        Some((last_total - first_total) as f64 / secs)
    }
}
