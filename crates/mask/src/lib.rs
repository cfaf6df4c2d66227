//! Secret masking for baa-logging: the engine that replaces registered
//! values and well-known token formats with [`MASK`] before log output
//! reaches the disk or a follower.
//!
//! It runs in two places: the worker's client masks before its spool file
//! and the network, and the server masks for writers in other languages
//! that register their values on the append stream. Both hold one
//! [`Masker`] per run (its [`Secrets`] plus the server-wide [`Rules`]) and
//! one [`StreamMasker`] per writer and channel.
//!
//! # Layout
//!
//! - [`secrets`]: [`Secrets`], the registered values, and the checks a
//!   value passes to be registered ([`MIN_SECRET_BYTES`]).
//! - [`forms`]: the encoded forms a value is also masked in (base64 at
//!   every alignment, URL encoding, JSON escaping).
//! - [`rules`]: [`Rules`], regular expressions for token formats that are
//!   masked without being registered.
//! - [`masker`]: [`Masker`], whole-text and JSON masking.
//! - [`stream`]: [`StreamMasker`], masking of text that arrives in chunks.
//! - `matcher` and `spans`: the compiled Aho–Corasick automaton over all
//!   forms and the merging of matched byte ranges, both internal.
//!
//! # Guarantees
//!
//! Whole-text masking replaces every occurrence of every form of every
//! registered value, and every match of every rule; overlapping matches
//! become one [`MASK`]. A [`StreamMasker`] releases the same text as
//! whole-text masking of everything pushed, as long as nothing is flushed
//! in the middle of a secret and no rule match is longer than
//! [`MAX_RULE_HOLD`] (see [`stream`] for the exact terms).

pub mod forms;
pub mod masker;
mod matcher;
pub mod rules;
pub mod secrets;
mod spans;
pub mod stream;

pub use masker::Masker;
pub use rules::{Rule, Rules};
pub use secrets::{Added, MAX_SECRET_BYTES, MIN_SECRET_BYTES, SecretError, Secrets};
pub use stream::{MAX_RULE_HOLD, Masked, StreamMasker};

/// The text that replaces a secret.
///
/// `[MASKED]` rather than `***`: it says what happened, and it cannot be
/// taken for output of its own, as `***` can (Markdown bold, a C pointer
/// to a pointer, a shell glob). GitLab masks with the same text. It is a
/// contract: readers may search logs for it, so it never changes.
pub const MASK: &str = "[MASKED]";
