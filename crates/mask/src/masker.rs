//! [`Masker`]: the secrets of a run and the server's rules, and masking of
//! whole texts (metadata, summaries, lifecycle messages) and JSON values.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use crate::matcher::FormMatcher;
use crate::rules::Rules;
use crate::secrets::{Added, SecretError, Secrets};
use crate::spans;

/// Registered [`Secrets`] plus pattern [`Rules`], ready to mask.
///
/// The automaton over the secrets' forms is compiled on the first use
/// after a secret was added, not on every add: a writer that registers
/// twenty values before its first line pays for one compilation. Masking
/// takes `&self`, so a `Masker` can be shared between the channels of a
/// writer (behind an `Arc`, or a lock when secrets are added later).
///
/// # Examples
///
/// ```
/// use baa_logging_mask::{Masker, Rules};
///
/// let mut masker = Masker::new(Rules::default_rules());
/// masker.add_secret("correct-horse-battery").unwrap();
/// let (text, occurrences) = masker.mask("login with correct-horse-battery");
/// assert_eq!(text, "login with [MASKED]");
/// assert_eq!(occurrences, 1);
/// ```
#[derive(Default)]
pub struct Masker {
    /// The registered values and their forms.
    secrets: Secrets,
    /// The patterns masked without registration.
    rules: Rules,
    /// The automaton over `secrets`' forms, compiled lazily; reset by every
    /// add that registers something. Holds `None` when there are no forms.
    matcher: OnceLock<Option<FormMatcher>>,
}

impl Masker {
    /// A masker with `rules` and no secrets yet.
    pub fn new(rules: Rules) -> Self {
        Self {
            secrets: Secrets::new(),
            rules,
            matcher: OnceLock::new(),
        }
    }

    /// A masker with `secrets` already registered and `rules`.
    pub fn with_secrets(secrets: Secrets, rules: Rules) -> Self {
        Self {
            secrets,
            rules,
            matcher: OnceLock::new(),
        }
    }

    /// Registers a value; see [`Secrets::add`].
    ///
    /// # Errors
    ///
    /// As [`Secrets::add`]: the value is too short or too long.
    pub fn add_secret(&mut self, value: &str) -> Result<Added, SecretError> {
        let added = self.secrets.add(value)?;
        if matches!(added, Added::New { .. }) {
            self.matcher = OnceLock::new();
        }
        Ok(added)
    }

    /// The registered values.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The pattern rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether there is nothing to mask: no secrets and no rules.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.rules.is_empty()
    }

    /// `text` with every occurrence of every form of every secret and every
    /// rule match replaced by [`MASK`](crate::MASK), overlapping matches as
    /// one, and how many masks were put in.
    ///
    /// Borrows `text` when nothing matched; with no secrets and no rules it
    /// allocates nothing at all.
    pub fn mask<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        if self.is_empty() {
            return (Cow::Borrowed(text), 0);
        }
        let spans = self.spans(text);
        if spans.is_empty() {
            return (Cow::Borrowed(text), 0);
        }
        let mut out = String::with_capacity(text.len());
        spans::replace_into(text, &spans, &mut out);
        (Cow::Owned(out), spans.len())
    }

    /// Masks every string inside `value` in place: string values, array
    /// items and object keys and values, recursively. Returns how many
    /// masks were put in.
    ///
    /// Two keys of an object that mask to the same text would overwrite
    /// each other; the second and later get ` (2)`, ` (3)`, … appended so
    /// that no value is lost.
    pub fn mask_json(&self, value: &mut serde_json::Value) -> usize {
        use serde_json::Value;
        if self.is_empty() {
            return 0;
        }
        match value {
            Value::String(text) => match self.mask(text) {
                (Cow::Owned(masked), occurrences) => {
                    *text = masked;
                    occurrences
                }
                (Cow::Borrowed(_), _) => 0,
            },
            Value::Array(items) => items.iter_mut().map(|item| self.mask_json(item)).sum(),
            Value::Object(map) => {
                let mut occurrences: usize =
                    map.values_mut().map(|item| self.mask_json(item)).sum();
                if map.keys().any(|key| !self.spans(key).is_empty()) {
                    for (key, item) in std::mem::take(map) {
                        let (masked, found) = self.mask(&key);
                        occurrences += found;
                        let mut unique = masked.into_owned();
                        let mut n = 1;
                        while map.contains_key(&unique) {
                            n += 1;
                            unique = format!("{} ({n})", self.mask(&key).0);
                        }
                        map.insert(unique, item);
                    }
                }
                occurrences
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
    }

    /// The merged, sorted byte ranges of `text` to mask.
    pub(crate) fn spans(&self, text: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        if let Some(matcher) = self.matcher() {
            matcher.find_all(text, &mut found);
        }
        self.rules.find_all(text, &mut found);
        spans::merge(&mut found);
        found
    }

    /// The compiled automaton, compiling it if a secret was added since.
    pub(crate) fn matcher(&self) -> Option<&FormMatcher> {
        self.matcher
            .get_or_init(|| FormMatcher::build(self.secrets.forms()))
            .as_ref()
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets)
            .field("rules", &self.rules.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
