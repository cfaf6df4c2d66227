//! Checks on the ids that become path components (task, run, step and
//! writer ids), before any of them touches the disk. The rule itself is
//! `baa_logging_config::ids`, shared with clients that make up ids.

use crate::error::{Result, StoreError};

pub use baa_logging_config::ids::MAX_ID_BYTES;

/// Checks that `value` is a usable id, as `baa_logging_config::ids`
/// defines it: 1 to [`MAX_ID_BYTES`] bytes, not `.` or `..`, no `/`, `\`,
/// NUL or other control character, no invisible or bidirectional-control
/// character, and not starting with `.` (names starting with a dot are the
/// store's own).
///
/// # Errors
///
/// [`StoreError::InvalidId`] naming the field and the rule it breaks.
pub fn check_id(field: &str, value: &str) -> Result<()> {
    match baa_logging_config::ids::id_problem(value) {
        Some(problem) => Err(StoreError::InvalidId {
            field: field.to_owned(),
            value: truncate(value),
            problem,
        }),
        None => Ok(()),
    }
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
