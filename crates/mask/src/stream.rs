//! [`StreamMasker`]: masking of a text stream that arrives in chunks cut
//! anywhere, so that a secret split across chunks is still caught.
//!
//! # What is held back
//!
//! Each push masks what was held plus the new chunk and releases all of it
//! except a tail that could still turn out to be (part of) a secret:
//!
//! - for secrets, the longest suffix that is a prefix of some form. Text
//!   that cannot start a form is never held, and the hold is shorter than
//!   [`Secrets::max_form_len`](crate::Secrets::max_form_len) (or equal,
//!   when the text ends with a whole form that may still grow into a
//!   longer, overlapping one);
//! - for rules (only when there are any), the trailing run of token
//!   characters `A-Z a-z 0-9 _ - . + / =`, at most [`MAX_RULE_HOLD`] bytes:
//!   a word at the end of a chunk may be the start of a token;
//! - and if a masked range of the text crosses where the hold would start,
//!   the hold starts where that range starts instead, so that one mask is
//!   never cut in two.
//!
//! No form contains a newline (values are registered line by line, and
//! their encodings escape it), so a chunk that ends with `\n` leaves
//! nothing held. Interactive output that ends in the middle of a line is
//! held until the next chunk or until the caller's hold-back timer calls
//! [`StreamMasker::flush`]; [`StreamMasker::held_len`] says whether there
//! is something to time.
//!
//! # What is caught
//!
//! The concatenation of everything released equals whole-text masking
//! ([`Masker::mask`]) of everything pushed, provided that
//!
//! - no flush falls inside a secret (a flush releases the tail as it is:
//!   masked as far as it matches on its own, the rest in clear);
//! - every rule match consists of token characters and lies within the
//!   last [`MAX_RULE_HOLD`] bytes of a token run when a chunk ends in it:
//!   a token longer than that, split across chunks, is caught only when
//!   its start is within the held tail; a configured rule whose matches
//!   contain other characters (a space in `Bearer <token>`) is caught only
//!   when the match arrives within one push;
//! - the secrets do not change while a part of one is held (a value
//!   registered mid-stream applies from the next push on, to the held tail
//!   too).
//!
//! # Cost
//!
//! A push is O(chunk + held): one overlapping automaton pass and one pass
//! of the rules' literal prefilter over held + chunk (and one pass per
//! rule only when the prefilter finds a literal some rule's match starts
//! with), plus a pass over at most the longest form's length at the end. A
//! chunk that passes, pushed with [`StreamMasker::push_owned`], is not
//! copied. The held tail is bounded by the longest form, by
//! [`MAX_RULE_HOLD`], or by a chain of overlapping matches at the end
//! (which needs secrets overlapping each other end to end).

use std::fmt;

use crate::masker::Masker;
use crate::spans;

/// The longest trailing run of token characters held back for rules, in
/// bytes.
///
/// The built-in token formats are at most a few hundred characters; JSON
/// web tokens vary most and are usually under a kilobyte. A longer run
/// (a base64 blob) is not held in full: its last `MAX_RULE_HOLD` bytes are.
pub const MAX_RULE_HOLD: usize = 1024;

/// Text that is safe to release, and how many masks it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masked {
    /// The masked text; empty when everything was held back.
    pub text: String,
    /// How many [`MASK`](crate::MASK)s were put into `text`, for metrics
    /// and for telling a writer that its output contained secrets.
    pub occurrences: usize,
}

/// Masks one text stream (one writer's stdout, stderr or event messages)
/// that arrives in chunks.
///
/// It holds the tail that could still be a secret; the [`Masker`] is
/// passed to each call so that several streams share one and a value
/// registered meanwhile applies. Its `Debug` output shows only how much is
/// held, never the text.
#[derive(Default)]
pub struct StreamMasker {
    /// Pushed text not released yet: the tail that could still be (part
    /// of) a secret or a token. It starts at a char boundary of the stream.
    held: String,
}

impl StreamMasker {
    /// A stream with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks `chunk` after what was held and returns what can be released
    /// now; the rest is held for the next push or [`flush`](Self::flush).
    pub fn push(&mut self, masker: &Masker, chunk: &str) -> Masked {
        if self.held.is_empty() && Self::passes(masker, chunk) {
            return Masked {
                text: chunk.to_owned(),
                occurrences: 0,
            };
        }
        self.push_after_held(masker, chunk)
    }

    /// As [`push`](Self::push), for a chunk the caller owns: a chunk that
    /// goes out as it is (the common case) is returned without a copy.
    pub fn push_owned(&mut self, masker: &Masker, chunk: String) -> Masked {
        if self.held.is_empty() && Self::passes(masker, &chunk) {
            return Masked {
                text: chunk,
                occurrences: 0,
            };
        }
        self.push_after_held(masker, &chunk)
    }

    /// Masks `chunk` after what was held, releasing what is safe and
    /// holding the rest.
    fn push_after_held(&mut self, masker: &Masker, chunk: &str) -> Masked {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(chunk);
        let found = masker.spans(&text);
        let mut release = text.len() - self.hold_len(masker, &text);
        if let Some(crossing) = found
            .iter()
            .find(|span| span.start < release && span.end > release)
        {
            release = crossing.start;
        }
        let done = found.partition_point(|span| span.end <= release);
        let mut out = String::with_capacity(release);
        spans::replace_into(&text[..release], &found[..done], &mut out);
        self.held = text.split_off(release);
        Masked {
            text: out,
            occurrences: done,
        }
    }

    /// Releases what is held, masked as far as it matches on its own.
    /// Called when the caller's hold-back timer fires and when the stream
    /// ends.
    pub fn flush(&mut self, masker: &Masker) -> Masked {
        let held = std::mem::take(&mut self.held);
        let (text, occurrences) = masker.mask(&held);
        Masked {
            text: text.into_owned(),
            occurrences,
        }
    }

    /// How many bytes are held: when not zero, the caller runs its
    /// hold-back timer.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Whether `chunk`, with nothing held before it, goes out as it is:
    /// no form occurs in it, no rule matches it, and no end of it could
    /// start either. One pass of the automaton over the chunk answers for
    /// the forms, which is what most chunks need.
    fn passes(masker: &Masker, chunk: &str) -> bool {
        if masker.is_empty() {
            return true;
        }
        let (found, open) = masker
            .matcher()
            .map_or((false, 0), |matcher| matcher.scan(chunk));
        if found || open > 0 {
            return false;
        }
        let rules = masker.rules();
        rules.is_empty()
            || (!chunk.bytes().next_back().is_some_and(is_token_byte) && !rules.is_match(chunk))
    }

    /// How many bytes at the end of `text` to hold: the longer of the open
    /// prefix of a form and the trailing token run (if there are rules).
    fn hold_len(&self, masker: &Masker, text: &str) -> usize {
        let secret = masker
            .matcher()
            .map_or(0, |matcher| matcher.open_prefix_len(text));
        let rule = if masker.rules().is_empty() {
            0
        } else {
            text.bytes()
                .rev()
                .take(MAX_RULE_HOLD)
                .take_while(|&byte| is_token_byte(byte))
                .count()
        };
        secret.max(rule)
    }
}

/// Whether `byte` can be part of a token a rule matches.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'+' | b'/' | b'=')
}

impl fmt::Debug for StreamMasker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("held_len", &self.held.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
