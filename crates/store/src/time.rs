//! Timestamps in the form JavaScript's `toISOString` writes:
//! `2026-01-02T03:04:05.678Z`.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Result, StoreError};

/// The current time in `toISOString` form.
pub fn now_iso() -> String {
    format_iso(Utc::now())
}

/// A time in `toISOString` form.
pub fn format_iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An RFC 3339 time as a point in time; `None` when it does not parse.
pub fn parse_iso(value: &str) -> Option<std::time::SystemTime> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(std::time::SystemTime::from)
}

/// Parses an RFC 3339 time and writes it in `toISOString` form (UTC,
/// milliseconds).
///
/// # Errors
///
/// [`StoreError::InvalidTime`] naming `field` when `value` is not an
/// RFC 3339 time.
pub fn normalize_iso(field: &str, value: &str) -> Result<String> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| format_iso(time.with_timezone(&Utc)))
        .map_err(|err| StoreError::InvalidTime {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any RFC 3339 time comes out in UTC with milliseconds, as JavaScript writes it.
    #[test]
    fn normalizes_to_to_iso_string_form() {
        assert_eq!(
            normalize_iso("t", "2026-01-02T04:04:05+01:00").unwrap(),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            normalize_iso("t", "2026-01-02T03:04:05.6789Z").unwrap(),
            "2026-01-02T03:04:05.678Z"
        );
        assert!(normalize_iso("t", "yesterday").is_err());
        assert_eq!(now_iso().len(), "2026-01-02T03:04:05.678Z".len());
    }
}
