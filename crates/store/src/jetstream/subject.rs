//! Run ids as NATS subject tokens, and back.
//!
//! A task or run id may hold characters that a subject forbids (`.`, `*`,
//! `>`, whitespace) or that a key-value key does not take. Each id is
//! therefore written with ASCII letters, digits, `-` and `_` as they are,
//! and every other byte of its UTF-8 as `=` and two upper-case hex digits
//! (`=` itself included), so the mapping is one to one and reversible.
//! Both subjects and keys take every character of the result.

use crate::model::RunKey;

/// The escape byte.
const ESCAPE: u8 = b'=';

/// Whether `byte` stands for itself in a token.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// The token of an id.
pub(crate) fn token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for &byte in id.as_bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push(char::from(ESCAPE));
            out.push_str(&format!("{byte:02X}"));
        }
    }
    out
}

/// The id of a token; `None` for a string [`token`] never writes.
pub(crate) fn id_of(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if is_plain(byte) {
            out.push(byte);
            at += 1;
        } else if byte == ESCAPE && at + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).ok()?;
            let decoded = u8::from_str_radix(hex, 16).ok()?;
            if is_plain(decoded) || hex.chars().any(|c| c.is_ascii_lowercase()) {
                return None;
            }
            out.push(decoded);
            at += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The subjects and keys of one stream's runs.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    /// What every run subject starts with: `<stream>.run`.
    prefix: String,
}

impl Subjects {
    /// The subjects of the stream named `stream`.
    pub(crate) fn new(stream: &str) -> Self {
        Self {
            prefix: format!("{stream}.run"),
        }
    }

    /// The subjects the stream takes.
    pub(crate) fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The subject of a run's commits.
    pub(crate) fn run(&self, key: &RunKey) -> String {
        format!("{}.{}", self.prefix, index_key(key))
    }
}

/// A run's key in the index bucket: `<task token>.<run token>`.
pub(crate) fn index_key(key: &RunKey) -> String {
    format!("{}.{}", token(&key.task_id), token(&key.run_id))
}

/// The run of an index key.
pub(crate) fn key_of_index(index_key: &str) -> Option<RunKey> {
    let (task, run) = index_key.split_once('.')?;
    Some(RunKey {
        task_id: id_of(task)?,
        run_id: id_of(run)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id comes back from its token, and tokens hold only what
    /// subjects and keys take.
    #[test]
    fn tokens_are_reversible_and_safe() {
        for id in [
            "nightly",
            "run-7",
            "a.b",
            "*",
            ">",
            "with space",
            "tab\there",
            "=3D",
            "ü",
            "@latest",
            "20261126T041502Z-3fa2.2",
        ] {
            let token = token(id);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{token}"
            );
            assert_eq!(id_of(&token).as_deref(), Some(id), "{token}");
        }
        assert_ne!(token("a.b"), token("a=2Eb"));
    }

    /// Tokens that no id maps to are refused, so no two tokens name one id.
    #[test]
    fn refuses_tokens_it_never_writes() {
        for bad in ["=2", "=zz", "=2e", "=41", "a.b", "=", "x y"] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
    }

    /// A subject names its run, and its index key maps back to it.
    #[test]
    fn subjects_name_their_run() {
        let subjects = Subjects::new("BAA_RUNS");
        let key = RunKey {
            task_id: "t.1".into(),
            run_id: "r>2".into(),
        };
        let subject = subjects.run(&key);
        assert_eq!(subject, "BAA_RUNS.run.t=2E1.r=3E2");
        let index_key = subject.strip_prefix("BAA_RUNS.run.").unwrap();
        assert_eq!(key_of_index(index_key), Some(key));
    }
}
