//! The time stamps the client puts on what it sends: the run's creation
//! and every appended entry.
//!
//! A leaf module, so that `run` and `writer`, which both stamp, do not
//! import each other for it.

use std::{
    cell::RefCell,
    time::{SystemTime, UNIX_EPOCH},
};

thread_local! {
    /// The last stamp this thread made, and its millisecond: a writer
    /// stamps every chunk, many in one millisecond, and formatting a time
    /// cost more than the rest of queueing a chunk.
    static LAST: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// Now, as JavaScript's `toISOString` writes it.
pub(crate) fn now_iso() -> String {
    // The clock as milliseconds is all a stamp made in the same
    // millisecond needs; chrono's calendar is only for a new one.
    let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is chrono's to count.
        Err(_) => chrono::Utc::now().timestamp_millis(),
    };
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != millis {
            let now = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
            *last = (
                millis,
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
        last.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stamp reads as `toISOString` writes it: UTC, milliseconds, `Z`;
    /// stamps in a row never go back.
    #[test]
    fn stamps_read_as_to_iso_string() {
        let first = now_iso();
        assert_eq!(first.len(), "2026-01-02T03:04:05.678Z".len(), "{first}");
        assert!(
            first.ends_with('Z') && first.as_bytes()[10] == b'T',
            "{first}"
        );
        let parsed = chrono::DateTime::parse_from_rfc3339(&first).unwrap();
        assert_eq!(parsed.timestamp_subsec_nanos() % 1_000_000, 0);
        let mut previous = first;
        for _ in 0..10_000 {
            let next = now_iso();
            assert!(next >= previous, "{next} after {previous}");
            previous = next;
        }
    }
}
