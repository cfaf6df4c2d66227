//! The lines the writers send: fixed-size stdout lines that carry the time
//! they were sent and their index, so that a follower measures latency and
//! checks order from the text alone, whatever system carried it.
//!
//! A line reads `t=<micros, 16 digits> i=<index, 12 digits> xxx…\n`, padded
//! to the requested size. Times are microseconds since the harness started,
//! from one monotonic clock, which the writer and the followers share
//! because they run in the same process.
//!
//! A [`Plant`] writes a literal at the start of the padding of one line in
//! so many, so that a search over the lines (W7) has a count known in
//! advance; the header, and so [`parse`], are unchanged.

use std::{sync::OnceLock, time::Instant};

use serde::Serialize;

/// The start of the harness's clock.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Bytes before the padding: `t=` + 16 digits + ` i=` + 12 digits + ` `.
const HEADER_LEN: usize = 2 + 16 + 3 + 12 + 1;

/// The smallest line the format allows (the header and a newline).
pub(crate) const MIN_LINE_BYTES: usize = HEADER_LEN + 1;

/// Microseconds since the harness started.
pub(crate) fn now_micros() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A line of `len` bytes (newline included) sent at `micros`, the
/// `index`-th of its writer.
pub(crate) fn line(len: usize, micros: u64, index: u64) -> String {
    let mut text = format!("t={micros:016} i={index:012} ");
    let len = len.max(MIN_LINE_BYTES);
    text.extend(std::iter::repeat_n('x', len - HEADER_LEN - 1));
    text.push('\n');
    text
}

/// How the lines of a batch writer look: their size, how many go in one
/// request, and what some of them carry.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LineShape {
    /// Bytes per line, newline included.
    pub(crate) bytes: usize,
    /// Lines per request.
    pub(crate) per_batch: usize,
    /// A literal some lines carry.
    pub(crate) plant: Option<Plant>,
}

impl LineShape {
    /// The `index`-th line of a writer, sent at `micros`.
    pub(crate) fn line(&self, micros: u64, index: u64) -> String {
        let mut text = line(self.bytes, micros, index);
        if let Some(plant) = self.plant.filter(|plant| plant.marks(index)) {
            text.replace_range(HEADER_LEN..HEADER_LEN + plant.literal.len(), plant.literal);
        }
        text
    }
}

/// A literal planted in one line in `every`, so that both a search and
/// `grep` over the stored files have a count known in advance.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Plant {
    /// The literal: ASCII letters and digits only, so that the stored JSON
    /// holds it as written, and nothing else in a stored line (field
    /// names, ids, times, the `x` padding) contains it.
    pub(crate) literal: &'static str,
    /// One line in this many carries it: the writer's lines whose index
    /// plus one is a multiple of it.
    pub(crate) every: u64,
}

impl Plant {
    /// Whether a writer's `index`-th line (from 0) carries the literal.
    fn marks(self, index: u64) -> bool {
        (index + 1).is_multiple_of(self.every.max(1))
    }

    /// How many of a writer's first `lines` lines carry it.
    pub(crate) fn count(self, lines: u64) -> u64 {
        lines / self.every.max(1)
    }

    /// The smallest line that has room for the literal in its padding.
    pub(crate) fn min_line_bytes(self) -> usize {
        MIN_LINE_BYTES + self.literal.len()
    }
}

/// The send time and index a line carries, if it is one of ours.
pub(crate) fn parse(text: &[u8]) -> Option<(u64, u64)> {
    let number = |bytes: &[u8]| -> Option<u64> {
        bytes.iter().try_fold(0u64, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u64::from(byte - b'0'))
        })
    };
    if text.len() < HEADER_LEN || !text.starts_with(b"t=") || &text[18..21] != b" i=" {
        return None;
    }
    Some((number(&text[2..18])?, number(&text[21..33])?))
}
