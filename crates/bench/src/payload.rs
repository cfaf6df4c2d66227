//! The lines the writers send: fixed-size stdout lines that carry the time
//! they were sent and their index, so that a follower measures latency and
//! checks order from the text alone, whatever system carried it.
//!
//! A line reads `t=<micros, 16 digits> i=<index, 12 digits> xxx…\n`, padded
//! to the requested size. Times are microseconds since the harness started,
//! from one monotonic clock, which the writer and the followers share
//! because they run in the same process.

use std::{sync::OnceLock, time::Instant};

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
