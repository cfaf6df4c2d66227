//! The compiled Aho–Corasick automaton over every form of every secret,
//! and what a stream needs from it: the length of the longest suffix of a
//! text that could still grow into a form.
//!
//! The automaton uses standard match semantics and overlapping search,
//! not leftmost-longest: leftmost-longest reports non-overlapping matches,
//! so with secrets `abcdefgh12` and `gh12345678` it would mask the first in
//! `abcdefgh12345678` and leave `345678` of the second. Overlapping search
//! reports every occurrence of every form; the ranges are merged later,
//! which also gives the longest of two secrets where one is a prefix of the
//! other.
//!
//! Standard semantics also keep the classic Aho–Corasick invariant that
//! the state after reading a text is the trie node of the longest suffix
//! of the text that is a prefix of some form. Walking each form from the
//! start state visits exactly the trie nodes of its prefixes, so a map from
//! state to depth built that way answers "how much of the end of this text
//! could start a form" in one pass over at most the longest form's length
//! of bytes.

use std::collections::HashMap;

use aho_corasick::automaton::{Automaton, OverlappingState, StateID};
use aho_corasick::{Anchored, Input, MatchKind, dfa, nfa};

/// Above this many form bytes (about the trie's states), the automaton is
/// a contiguous NFA rather than a DFA: a DFA's table grows with states
/// times byte classes, while the NFA stays compact and is still fast.
const DFA_MAX_FORM_BYTES: usize = 64 * 1024;

/// The automaton in the representation its size calls for.
enum Compiled {
    /// A full transition table: fastest, for modest sets.
    Dfa(dfa::DFA),
    /// Failure transitions in a compact array: for large sets.
    Nfa(nfa::contiguous::NFA),
}

/// Every form compiled for search, with the depth of each trie state.
pub(crate) struct FormMatcher {
    /// The automaton over all forms.
    compiled: Compiled,
    /// The depth (prefix length) of every state a form's prefix reaches.
    depth: HashMap<StateID, u32>,
    /// The longest form, which bounds the suffix worth scanning.
    max_form_len: usize,
}

impl FormMatcher {
    /// Compiles `forms`; `None` when there are none.
    pub(crate) fn build<'a>(forms: impl Iterator<Item = &'a str> + Clone) -> Option<Self> {
        let total: usize = forms.clone().map(str::len).sum();
        if total == 0 {
            return None;
        }
        let compiled = if total <= DFA_MAX_FORM_BYTES {
            Compiled::Dfa(
                dfa::DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .build(forms.clone())
                    .expect("forms within the automaton's limits"),
            )
        } else {
            Compiled::Nfa(
                nfa::contiguous::NFA::builder()
                    .match_kind(MatchKind::Standard)
                    .build(forms.clone())
                    .expect("forms within the automaton's limits"),
            )
        };
        let mut depth = HashMap::with_capacity(total);
        let mut max_form_len = 0;
        for form in forms {
            max_form_len = max_form_len.max(form.len());
            let mut state = compiled.start();
            for (i, &byte) in form.as_bytes().iter().enumerate() {
                state = compiled.next(state, byte);
                let len = u32::try_from(i + 1).expect("forms are far shorter than 4 GiB");
                depth.insert(state, len);
            }
        }
        Some(Self {
            compiled,
            depth,
            max_form_len,
        })
    }

    /// Pushes the byte range of every occurrence of every form in `text`
    /// onto `spans`, overlapping ones included.
    pub(crate) fn find_all(&self, text: &str, spans: &mut Vec<std::ops::Range<usize>>) {
        match &self.compiled {
            Compiled::Dfa(dfa) => find_all(dfa, text, spans),
            Compiled::Nfa(nfa) => find_all(nfa, text, spans),
        }
    }

    /// One pass over `text`: whether any form occurs in it, and the length
    /// of its longest suffix that is a prefix of some form (as
    /// [`FormMatcher::open_prefix_len`]).
    pub(crate) fn scan(&self, text: &str) -> (bool, usize) {
        // One loop per representation, so that the step is inlined.
        let (found, state) = match &self.compiled {
            Compiled::Dfa(dfa) => scan(dfa, text.as_bytes()),
            Compiled::Nfa(nfa) => scan(nfa, text.as_bytes()),
        };
        (found, self.depth.get(&state).map_or(0, |&len| len as usize))
    }

    /// The length in bytes of the longest suffix of `text` that is a prefix
    /// of some form (a whole form included). It starts at a char boundary,
    /// because a form starts with the first byte of a character.
    pub(crate) fn open_prefix_len(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let from = bytes.len().saturating_sub(self.max_form_len);
        let mut state = self.compiled.start();
        for &byte in &bytes[from..] {
            state = self.compiled.next(state, byte);
        }
        self.depth.get(&state).map_or(0, |&len| len as usize)
    }
}

impl Compiled {
    /// The unanchored start state.
    fn start(&self) -> StateID {
        let start = match self {
            Compiled::Dfa(dfa) => dfa.start_state(Anchored::No),
            Compiled::Nfa(nfa) => nfa.start_state(Anchored::No),
        };
        start.expect("unanchored search is supported")
    }

    /// The state after `byte`, following failure transitions.
    fn next(&self, state: StateID, byte: u8) -> StateID {
        match self {
            Compiled::Dfa(dfa) => dfa.next_state(Anchored::No, state, byte),
            Compiled::Nfa(nfa) => nfa.next_state(Anchored::No, state, byte),
        }
    }
}

/// Runs `automaton` over `bytes` from its unanchored start: whether a form
/// ended anywhere, and the state at the end.
fn scan(automaton: &impl Automaton, bytes: &[u8]) -> (bool, StateID) {
    let mut state = automaton
        .start_state(Anchored::No)
        .expect("unanchored search is supported");
    let mut found = false;
    for &byte in bytes {
        state = automaton.next_state(Anchored::No, state, byte);
        found |= automaton.is_match(state);
    }
    (found, state)
}

/// Overlapping search of `text` with `automaton`.
fn find_all(automaton: &impl Automaton, text: &str, spans: &mut Vec<std::ops::Range<usize>>) {
    let input = Input::new(text);
    let mut state = OverlappingState::start();
    loop {
        automaton
            .try_find_overlapping(&input, &mut state)
            .expect("unanchored overlapping search is supported with standard semantics");
        match state.get_match() {
            Some(found) => spans.push(found.range()),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(forms: &[&str]) -> FormMatcher {
        FormMatcher::build(forms.iter().copied()).unwrap()
    }

    /// The open prefix is the longest suffix that starts a form, also when
    /// a shorter candidate ends inside a longer one.
    #[test]
    fn open_prefix_is_longest_suffix_starting_a_form() {
        let m = matcher(&["abcdefgh", "defxyz12", "aaab0000"]);
        assert_eq!(m.open_prefix_len("hello world!"), 0);
        assert_eq!(m.open_prefix_len("hello a"), 1);
        assert_eq!(m.open_prefix_len("xx abcdef"), 6);
        assert_eq!(m.open_prefix_len("xx abcdefx"), 4);
        assert_eq!(m.open_prefix_len("aaaaaa"), 3);
        assert_eq!(m.open_prefix_len("abcdefgh"), 8);
        assert_eq!(m.open_prefix_len("abcdefgh\n"), 0);
    }

    /// Overlapping occurrences are all reported.
    #[test]
    fn overlapping_occurrences_are_all_found() {
        let m = matcher(&["abcdefgh12", "gh12345678", "abcdefgh"]);
        let mut spans = Vec::new();
        m.find_all("abcdefgh12345678", &mut spans);
        spans.sort_by_key(|s| (s.start, s.end));
        assert_eq!(spans, [0..8, 0..10, 6..16]);
    }

    /// The large-set representation answers the same.
    #[test]
    fn nfa_for_large_sets_answers_the_same() {
        let forms: Vec<String> = (0..6000).map(|i| format!("secret-{i:08}")).collect();
        let m = FormMatcher::build(forms.iter().map(String::as_str)).unwrap();
        assert!(matches!(m.compiled, Compiled::Nfa(_)));
        assert_eq!(m.open_prefix_len("x secret-0000"), 11);
        let mut spans = Vec::new();
        m.find_all("a secret-00002999 b", &mut spans);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0], 2..17);
    }
}
