//! The run id of a step's next attempt, as `exec --retry-of` derives it:
//! the earlier run's id with its attempt suffix replaced, or added.
//!
//! `20261126T041502Z-3fa2` (attempt 1) is followed by
//! `20261126T041502Z-3fa2.2`, that by `20261126T041502Z-3fa2.3`. A suffix
//! is `.N` where N is the run's own attempt number and at least 2, the
//! only suffixes this derivation writes; anything else is part of the
//! base. So `release-1.5` as attempt 1 is followed by `release-1.5.2`,
//! never by `release-1.6`, and every attempt of a chain has the same base
//! ([`base_run_id`]), whatever its id looks like.
//!
//! The derived id is checked against the id rule of
//! [`baa_logging_config::ids`] before anything is printed or sent. The
//! suffix adds only `.` and digits to an id the server already took, so
//! the one part of the rule it can break is the length: an earlier id
//! within a few bytes of [`MAX_ID_BYTES`] leaves no room for it.

use baa_logging_config::ids::{MAX_ID_BYTES, id_problem};

/// The id of attempt `next` of a step whose attempt `attempt` has the id
/// `run_id`.
///
/// # Errors
///
/// Why the derived id is not a usable one, in words that follow the
/// earlier run's name: in practice, that it is too long.
pub(crate) fn derived_run_id(run_id: &str, attempt: u32, next: u32) -> Result<String, String> {
    let derived = format!("{}.{next}", base_run_id(run_id, attempt));
    match id_problem(&derived) {
        None => Ok(derived),
        Some(problem) if derived.len() > MAX_ID_BYTES => Err(format!(
            "has a {}-byte id, so the id of attempt {next}, `…{}`, {problem}",
            run_id.len(),
            tail(&derived)
        )),
        Some(problem) => Err(format!(
            "cannot lend its id to attempt {next}: `{derived}` {problem}"
        )),
    }
}

/// `run_id` without its attempt suffix `.{attempt}`, when it has one and
/// `attempt` is at least 2; otherwise `run_id` itself.
pub(crate) fn base_run_id(run_id: &str, attempt: u32) -> &str {
    if attempt < 2 {
        return run_id;
    }
    match run_id.strip_suffix(&format!(".{attempt}")) {
        Some(base) if !base.is_empty() => base,
        _ => run_id,
    }
}

/// The last characters of a long id, enough to show its end.
fn tail(id: &str) -> &str {
    let start = id
        .char_indices()
        .rev()
        .nth(23)
        .map_or(0, |(index, _)| index);
    &id[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attempt 1 gets `.2` added; a suffix equal to the run's own attempt
    /// is replaced; a suffix that is not the attempt number stays part of
    /// the base.
    #[test]
    fn the_attempt_suffix_is_added_or_replaced() {
        for (run_id, attempt, expected) in [
            ("20261126T041502Z-3fa2", 1, "20261126T041502Z-3fa2.2"),
            ("20261126T041502Z-3fa2.2", 2, "20261126T041502Z-3fa2.3"),
            ("r.9", 9, "r.10"),
            ("release-1.5", 1, "release-1.5.2"),
            ("r.1", 1, "r.1.2"),
            ("r.3", 2, "r.3.3"),
            ("r.02", 2, "r.02.3"),
            ("r", 4, "r.5"),
        ] {
            assert_eq!(
                derived_run_id(run_id, attempt, attempt + 1).unwrap(),
                expected,
                "{run_id} attempt {attempt}"
            );
        }
    }

    /// The suffix never leaves an empty base, so an id is never derived
    /// from nothing.
    #[test]
    fn a_base_is_never_empty() {
        assert_eq!(base_run_id(".2", 2), ".2");
        assert_eq!(base_run_id("x.2", 2), "x");
    }

    /// An id at the length limit leaves no room for a suffix, and the
    /// error says so with the numbers; one shorter by the suffix's length
    /// still fits.
    #[test]
    fn a_derived_id_over_the_limit_is_refused() {
        let full = "x".repeat(MAX_ID_BYTES);
        let err = derived_run_id(&full, 1, 2).unwrap_err();
        assert!(err.contains("128-byte id"), "{err}");
        assert!(err.contains("over the limit of 128"), "{err}");
        let room = "x".repeat(MAX_ID_BYTES - 2);
        let id = derived_run_id(&room, 1, 2).unwrap();
        assert_eq!(id.len(), MAX_ID_BYTES);
        // Replacing `.9` by `.10` grows the id by one byte.
        let nine = format!("{}.9", "x".repeat(MAX_ID_BYTES - 2));
        assert!(derived_run_id(&nine, 9, 10).is_err());
    }
}
