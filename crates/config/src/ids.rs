//! The rule every id that becomes a path component follows (task, run,
//! step and writer ids), defined once: the store refuses ids that break it
//! before they touch the disk (`baa_logging_store::ids::check_id`), and a
//! client that makes up an id (`baa-log exec --retry-of` derives one)
//! checks it here before it prints or sends it. The contract states the
//! same rule in words on `RunMetadataInput.task_id`.

/// The longest id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Which part of the rule `value` breaks, in words that follow "the id",
/// or `None` for a usable id: 1 to [`MAX_ID_BYTES`] bytes, not `.` or
/// `..`, no `/`, `\`, NUL or other control character, no invisible or
/// bidirectional-control character, and not starting with `.` (names
/// starting with a dot are the store's own).
pub fn id_problem(value: &str) -> Option<String> {
    if value.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Usable ids pass; each broken part of the rule is named.
    #[test]
    fn names_what_an_id_breaks() {
        for good in [
            "nightly",
            "run-7",
            "20261126T041502Z-3fa2.2",
            "@latest",
            "ü",
        ] {
            assert_eq!(id_problem(good), None, "{good}");
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for (bad, needle) in [
            ("", "empty"),
            (long.as_str(), "over the limit"),
            (".hidden", "start with `.`"),
            ("a/b", "`/`"),
            ("a\\b", "`/`"),
            ("a\u{0}b", "control"),
            ("run\u{202E}7", "U+202E"),
        ] {
            let problem = id_problem(bad).expect(needle);
            assert!(problem.contains(needle), "{bad:?}: {problem}");
        }
        assert_eq!(id_problem(&"x".repeat(MAX_ID_BYTES)), None);
    }
}
