//! [`Secrets`]: the values registered for masking, and the rules a value
//! follows to be registered.
//!
//! A value is trimmed of surrounding whitespace (its trimmed core is a
//! substring of it, so every occurrence of the untrimmed value is still
//! masked, and a value read from a file with its trailing newline still
//! matches the output). A value of several lines registers each line on
//! its own, as GitHub Actions does for multi-line secrets: output is
//! masked line by line, and a private key printed with different line
//! endings or indentation is still caught. A line shorter than
//! [`MIN_SECRET_BYTES`] is skipped rather than refused, because a key
//! block's short last line (or a PEM's `=`) must not make the whole value
//! fail; [`Added::New`] says how many were skipped.

use std::collections::HashSet;
use std::fmt;

use crate::forms::forms_of;

/// The shortest value that is registered, in bytes.
///
/// A shorter value would mask ordinary output (`password`, `12345`,
/// `true`), which both destroys logs and tells a reader where the secret
/// was and what it was not. GitHub Actions masks any length; GitLab asks
/// for 8 characters, as here.
pub const MIN_SECRET_BYTES: usize = 8;

/// The longest line that is registered, in bytes.
///
/// A [`StreamMasker`](crate::StreamMasker) holds back up to the longest
/// form of a value, so this bounds what it holds per channel. Tokens and
/// key lines are far shorter; a longer value is nearly always a whole file
/// that belongs elsewhere.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Why a value was not registered. The messages never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The value (or, for a multi-line value, its longest line) is shorter
    /// than [`MIN_SECRET_BYTES`]; masking it would mask ordinary output.
    #[error("secret is {len} bytes long, shorter than the minimum of {MIN_SECRET_BYTES} bytes")]
    TooShort {
        /// The length of the trimmed value (or longest line) in bytes.
        len: usize,
    },
    /// A line of the value is longer than [`MAX_SECRET_BYTES`]; nothing of
    /// the value was registered.
    #[error(
        "secret has a line of {len} bytes, longer than the maximum of {MAX_SECRET_BYTES} bytes"
    )]
    TooLong {
        /// The length of the longest line in bytes.
        len: usize,
    },
}

/// What [`Secrets::add`] did with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// At least one line was registered and is masked from now on.
    New {
        /// Lines of a multi-line value left out for being shorter than
        /// [`MIN_SECRET_BYTES`]; always 0 for a single-line value.
        skipped_lines: usize,
    },
    /// Every line long enough to register was registered before.
    Known,
    /// The value is empty or only whitespace; there is nothing to mask.
    Ignored,
}

/// The set of registered values and every form they are masked in.
///
/// Its `Debug` output shows only counts, never a value, so it is safe to
/// log a struct that holds it.
#[derive(Default, Clone)]
pub struct Secrets {
    /// The registered lines, to tell a new value from a known one.
    values: HashSet<String>,
    /// Every form of every value, each once: what the automaton searches.
    forms: HashSet<String>,
    /// The length of the longest form: a stream holds back at most one
    /// byte less than this for secrets.
    max_form_len: usize,
}

impl Secrets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `value` (see the module documentation for trimming and
    /// multi-line values).
    ///
    /// # Errors
    ///
    /// [`SecretError::TooShort`] when the value (or every line of it) is
    /// shorter than [`MIN_SECRET_BYTES`], [`SecretError::TooLong`] when a
    /// line is longer than [`MAX_SECRET_BYTES`]. Nothing is registered
    /// then.
    pub fn add(&mut self, value: &str) -> Result<Added, SecretError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Added::Ignored);
        }
        let lines: Vec<&str> = value
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        let longest = lines.iter().map(|line| line.len()).max().unwrap_or(0);
        if longest > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong { len: longest });
        }
        if longest < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { len: longest });
        }
        let mut skipped_lines = 0;
        let mut new_lines = 0;
        for line in lines {
            if line.len() < MIN_SECRET_BYTES {
                skipped_lines += 1;
            } else if self.values.insert(line.to_owned()) {
                new_lines += 1;
                for form in forms_of(line) {
                    self.max_form_len = self.max_form_len.max(form.len());
                    self.forms.insert(form);
                }
            }
        }
        Ok(if new_lines == 0 {
            Added::Known
        } else {
            Added::New { skipped_lines }
        })
    }

    /// The registered values (lines), in no particular order: what a
    /// writer hands on to a server that masks them too.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    /// How many values (lines) are registered.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is registered: masking then only applies rules.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The length of the longest form in bytes, 0 when empty. A stream
    /// holds back less than this for secrets.
    pub fn max_form_len(&self) -> usize {
        self.max_form_len
    }

    /// Every form of every value, in no particular order.
    pub(crate) fn forms(&self) -> impl Iterator<Item = &str> + Clone {
        self.forms.iter().map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("values", &self.values.len())
            .field("forms", &self.forms.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty and whitespace-only values are ignored, not refused.
    #[test]
    fn empty_values_are_ignored() {
        let mut secrets = Secrets::new();
        assert_eq!(secrets.add(""), Ok(Added::Ignored));
        assert_eq!(secrets.add(" \t\r\n "), Ok(Added::Ignored));
        assert!(secrets.is_empty());
    }

    /// A short value is refused with its length, and the message does not
    /// contain it.
    #[test]
    fn short_value_is_refused_without_showing_it() {
        let mut secrets = Secrets::new();
        let err = secrets.add(" hunter2 ").unwrap_err();
        assert_eq!(err, SecretError::TooShort { len: 7 });
        let message = err.to_string();
        assert_eq!(
            message,
            "secret is 7 bytes long, shorter than the minimum of 8 bytes"
        );
        assert!(!message.contains("hunter2"));
        assert!(secrets.is_empty());
    }

    /// A too long line refuses the whole value.
    #[test]
    fn long_value_is_refused() {
        let mut secrets = Secrets::new();
        let long = "x".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(
            secrets.add(&format!("abcdefghij\n{long}")),
            Err(SecretError::TooLong {
                len: MAX_SECRET_BYTES + 1
            })
        );
        assert!(secrets.is_empty());
    }

    /// The same value twice (even with other whitespace around) counts once.
    #[test]
    fn duplicate_value_is_known() {
        let mut secrets = Secrets::new();
        assert_eq!(
            secrets.add("s3cr3t-token"),
            Ok(Added::New { skipped_lines: 0 })
        );
        let forms = secrets.forms().count();
        assert_eq!(secrets.add("s3cr3t-token\n"), Ok(Added::Known));
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets.forms().count(), forms);
    }

    /// Each line of a multi-line value is registered on its own; `\r` is
    /// trimmed, empty lines and short lines skipped.
    #[test]
    fn multi_line_value_registers_each_line() {
        let mut secrets = Secrets::new();
        let added = secrets
            .add("-----BEGIN KEY-----\r\nMIIEowIBAAKCAQEA\r\n\r\nab==\r\n-----END KEY-----\r\n");
        assert_eq!(added, Ok(Added::New { skipped_lines: 1 }));
        assert_eq!(secrets.len(), 3);
        for line in [
            "-----BEGIN KEY-----",
            "MIIEowIBAAKCAQEA",
            "-----END KEY-----",
        ] {
            assert!(secrets.forms().any(|form| form == line), "{line}");
        }
        assert!(
            !secrets
                .forms()
                .any(|form| form.contains('\r') || form.contains('\n') || form == "ab==")
        );
        assert_eq!(secrets.add("MIIEowIBAAKCAQEA\nab"), Ok(Added::Known));
        assert_eq!(
            secrets.add("ab\ncd\n"),
            Err(SecretError::TooShort { len: 2 })
        );
    }

    /// `Debug` shows counts only.
    #[test]
    fn debug_does_not_show_values() {
        let mut secrets = Secrets::new();
        secrets.add("very-secret-value").unwrap();
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(debug.starts_with("Secrets { values: 1, forms: "), "{debug}");
    }
}
