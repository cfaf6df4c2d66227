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
    if is_iso_form(value) {
        return Ok(value.to_owned());
    }
    parse_and_format(field, value)
}

/// Puts `value`, an RFC 3339 time, in `toISOString` form where it is,
/// as [`normalize_iso`] does; a time already in that form (the client
/// crate stamps every entry so) is left alone, with no parse and no copy.
///
/// # Errors
///
/// As for [`normalize_iso`]; `value` is left as it was.
pub fn normalize_iso_in_place(field: &str, value: &mut String) -> Result<()> {
    if !is_iso_form(value) {
        *value = parse_and_format(field, value)?;
    }
    Ok(())
}

/// Whether `value` is a time in `toISOString` form that exists
/// (`2026-01-02T03:04:05.678Z`): four-digit year from 0001, a day that
/// its month has, no leap second. [`normalize_iso`] gives such a value
/// back as it is, so it need not be parsed; anything else, valid or
/// not, is left to chrono's parser.
fn is_iso_form(value: &str) -> bool {
    /// Where `YYYY-MM-DDTHH:MM:SS.mmmZ` has its digits.
    const DIGITS: [usize; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 24
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'.'
        && bytes[23] == b'Z'
        && DIGITS.iter().all(|&at| bytes[at].is_ascii_digit());
    if !shaped {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1
        && (1..=days).contains(&day)
        && number(11..13) < 24
        && number(14..16) < 60
        && number(17..19) < 60
}

/// [`normalize_iso`] through chrono's parser.
fn parse_and_format(field: &str, value: &str) -> Result<String> {
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

    /// A time already in `toISOString` form is taken as it is only when
    /// chrono's parser would take it and give it back unchanged: the fast
    /// path accepts nothing the parser refuses, and changes nothing.
    #[test]
    fn the_fast_path_agrees_with_the_parser() {
        let mut cases = vec![
            "2026-01-02T03:04:05.678Z".to_owned(),
            "2024-02-29T23:59:59.999Z".to_owned(),
            "2023-02-29T00:00:00.000Z".to_owned(),
            "2100-02-29T00:00:00.000Z".to_owned(),
            "2000-02-29T00:00:00.000Z".to_owned(),
            "2026-04-31T00:00:00.000Z".to_owned(),
            "2026-13-01T00:00:00.000Z".to_owned(),
            "2026-00-01T00:00:00.000Z".to_owned(),
            "2026-01-00T00:00:00.000Z".to_owned(),
            "2026-01-01T24:00:00.000Z".to_owned(),
            "2026-01-01T00:60:00.000Z".to_owned(),
            "2016-12-31T23:59:60.000Z".to_owned(),
            "2026-01-01t00:00:00.000z".to_owned(),
            "2026-01-01 00:00:00.000Z".to_owned(),
            "2026-01-01T00:00:00.000+".to_owned(),
            "0000-01-01T00:00:00.000Z".to_owned(),
            "0001-01-01T00:00:00.000Z".to_owned(),
            "9999-12-31T23:59:59.999Z".to_owned(),
            "2026-01-01T00:00:00,000Z".to_owned(),
            "+026-01-01T00:00:00.000Z".to_owned(),
        ];
        // Every month's last days, in a leap year and not, and centuries.
        for year in [1900, 1970, 2023, 2024, 2400] {
            for month in 1..=12 {
                for day in 27..=32 {
                    cases.push(format!("{year:04}-{month:02}-{day:02}T12:34:56.789Z"));
                }
            }
        }
        for case in &cases {
            let slow = parse_and_format("t", case).ok();
            if is_iso_form(case) {
                assert_eq!(slow.as_deref(), Some(case.as_str()), "{case}");
            }
            let mut in_place = case.clone();
            let fast = normalize_iso_in_place("t", &mut in_place).map(|()| in_place);
            assert_eq!(fast.ok(), slow, "{case}");
        }
        assert!(is_iso_form("2024-02-29T23:59:59.999Z"));
        assert!(!is_iso_form("2023-02-29T00:00:00.000Z"));
        assert!(!is_iso_form("2016-12-31T23:59:60.000Z"));
    }
}
