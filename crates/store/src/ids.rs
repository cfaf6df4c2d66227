//! Checks on the ids that become path components (task, run, step and
//! writer ids), before any of them touches the disk.

use crate::error::{Result, StoreError};

/// The longest id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Checks that `value` is a usable id: 1 to [`MAX_ID_BYTES`] bytes, not `.`
/// or `..`, no `/`, `\`, NUL or other control character, no invisible or
/// bidirectional-control character, and not starting with `.` (names
/// starting with a dot are the store's own).
///
/// # Errors
///
/// [`StoreError::InvalidId`] naming the field and the rule it breaks.
pub fn check_id(field: &str, value: &str) -> Result<()> {
    let problem = if value.is_empty() {
        Some("must not be empty".to_owned())
    } else if value.len() > MAX_ID_BYTES {
        Some(format!(
            "is {} bytes, over the limit of {MAX_ID_BYTES}",
            value.len()
        ))
    } else if value.starts_with('.') {
        Some("must not start with `.`".to_owned())
    } else if value.contains(['/', '\\']) {
        Some("must not contain `/` or `\\`".to_owned())
    } else if value.chars().any(char::is_control) {
        Some("must not contain NUL or other control characters".to_owned())
    } else {
        value.chars().find(|c| is_invisible(*c)).map(|hidden| {
            format!(
                "must not contain invisible or bidirectional-control characters (U+{:04X})",
                u32::from(hidden)
            )
        })
    };
    match problem {
        Some(problem) => Err(StoreError::InvalidId {
            field: field.to_owned(),
            value: truncate(value),
            problem,
        }),
        None => Ok(()),
    }
}

/// Whether `c` changes how an id looks without showing itself: zero-width
/// characters, and the bidirectional controls that can make `run-7` and
/// `7-nur` look alike in a terminal or a page (CVE-2021-42574).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'                 // Arabic letter mark
            | '\u{180E}'           // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space, (non-)joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // isolates
            | '\u{FEFF}'           // zero-width no-break space
    )
}

/// The first characters of a value, for an error message.
fn truncate(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id that could escape the run directory or hide in it is refused.
    #[test]
    fn refuses_ids_that_are_not_plain_names() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "\u{7f}",
            &long,
            "run\u{202E}7",
            "a\u{200B}b",
            "\u{FEFF}task",
            "x\u{2066}y",
        ] {
            assert!(
                matches!(check_id("task_id", bad), Err(StoreError::InvalidId { .. })),
                "{bad:?} accepted"
            );
        }
        for good in [
            "task-1",
            "T_2.run",
            "é-ü",
            "a..b",
            &"x".repeat(MAX_ID_BYTES),
        ] {
            check_id("task_id", good).unwrap();
        }
    }
}
