//! [`Rules`]: regular expressions for well-known token formats, masked on
//! the server for every run whether or not anyone registered the value.
//!
//! Rules are the safety net for tokens that reach a log without being
//! registered (read from a file, minted during the job). They look only at
//! shapes, so they are kept to formats with a distinctive prefix that
//! ordinary output practically never has. A rule match should consist of
//! token characters (`A-Z a-z 0-9 _ - . + / =`) and be at most
//! [`MAX_RULE_HOLD`](crate::MAX_RULE_HOLD) bytes long: that is what a
//! [`StreamMasker`](crate::StreamMasker) holds back to catch a match split
//! across chunks. A configured rule with other characters still masks
//! whole texts and matches that arrive in one chunk.

use std::fmt;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// One named pattern.
#[derive(Clone)]
pub struct Rule {
    /// What the pattern finds, for configuration and diagnostics.
    name: String,
    /// The compiled pattern.
    regex: Regex,
}

impl Rule {
    /// What the pattern finds (`github-token`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The compiled pattern.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("pattern", &self.regex.as_str())
            .finish()
    }
}

/// The built-in rules: name and pattern.
///
/// Lengths are lower bounds (`{36,}` rather than `{36}`): GitHub has said
/// its tokens may grow, and masking a few characters too many is harmless
/// where masking too few leaks. There are no word boundaries: `\b` is
/// Unicode-aware and slows the search, and a token glued to other text is
/// still a token.
const DEFAULT_RULES: &[(&str, &str)] = &[
    // Classic and OAuth/user/server/refresh tokens: prefix + 36 base62.
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{36,}"),
    // Fine-grained personal access tokens: 22 + `_` + 59 characters.
    ("github-fine-grained-token", r"github_pat_[A-Za-z0-9_]{82,}"),
    // Long-term (AKIA) and temporary (ASIA) access key ids.
    ("aws-access-key-id", r"(?:AKIA|ASIA)[A-Z0-9]{16}"),
    // A JSON web token: a base64url header starting `{"`, a payload and
    // a signature (empty for `alg: none`), separated by dots.
    (
        "json-web-token",
        r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
    ),
    // Slack bot, user, app-level and refresh tokens.
    ("slack-token", r"xox[abpr]-[A-Za-z0-9-]{10,}"),
];

/// A list of named patterns; every match of any of them is masked.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The rules, searched one after the other (each with its own literal
    /// prefilter, which is faster than one alternation of all of them).
    rules: Vec<Rule>,
    /// One automaton over the literals some rule's match must start with,
    /// for all rules: a text none of them occurs in matches no rule, which
    /// one pass tells, where the rules' own searches take one pass each.
    /// `None` when some rule has no such finite set of literals (its
    /// matches may start with anything), and then every rule is searched.
    prefilter: Option<AhoCorasick>,
}

impl Rules {
    /// Rules from configured `(name, pattern)` pairs.
    ///
    /// # Errors
    ///
    /// The first pattern that does not compile.
    pub fn new<I, N, P>(patterns: I) -> Result<Self, regex::Error>
    where
        I: IntoIterator<Item = (N, P)>,
        N: Into<String>,
        P: AsRef<str>,
    {
        let rules = patterns
            .into_iter()
            .map(|(name, pattern)| {
                Ok(Rule {
                    name: name.into(),
                    regex: Regex::new(pattern.as_ref())?,
                })
            })
            .collect::<Result<Vec<Rule>, regex::Error>>()?;
        let prefilter = build_prefilter(&rules);
        Ok(Self { rules, prefilter })
    }

    /// The built-in rules: GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`,
    /// `ghr_`, `github_pat_`), AWS access key ids (`AKIA`, `ASIA`), JSON
    /// web tokens and Slack tokens (`xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`).
    pub fn default_rules() -> Self {
        Self::new(DEFAULT_RULES.iter().copied()).expect("the built-in rules compile")
    }

    /// No rules: only registered values are masked.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds the rules of `other` after these.
    pub fn extend(&mut self, other: Rules) {
        self.rules.extend(other.rules);
        self.prefilter = build_prefilter(&self.rules);
    }

    /// The rules, in the order they were given.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Pushes the byte range of every match of every rule in `text` onto
    /// `spans` (each rule's matches leftmost-first and non-overlapping, as
    /// its own search reports them).
    pub(crate) fn find_all(&self, text: &str, spans: &mut Vec<Range<usize>>) {
        if !self.may_match(text) {
            return;
        }
        for rule in &self.rules {
            spans.extend(rule.regex.find_iter(text).map(|m| m.range()));
        }
    }

    /// Whether any rule matches somewhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.may_match(text) && self.rules.iter().any(|rule| rule.regex.is_match(text))
    }

    /// Whether `text` contains a literal some rule's match starts with
    /// (always, when there is no prefilter and some rule).
    fn may_match(&self, text: &str) -> bool {
        match &self.prefilter {
            Some(prefilter) => prefilter.is_match(text),
            None => !self.rules.is_empty(),
        }
    }
}

/// The automaton over the literals that every match of some rule starts
/// with; `None` when there are no rules, or some rule's matches may start
/// with anything (an empty literal, or too many to list).
fn build_prefilter(rules: &[Rule]) -> Option<AhoCorasick> {
    if rules.is_empty() {
        return None;
    }
    let mut literals: Vec<Vec<u8>> = Vec::new();
    for rule in rules {
        literals.extend(required_prefixes(rule.regex.as_str())?);
    }
    // Leftmost-first semantics, although only "is there one" is asked:
    // the automaton's SIMD literal searcher (Teddy) serves only leftmost
    // semantics, and without it the search steps byte by byte. The rules
    // may match nothing at all; an automaton over no literals then
    // rightly matches nothing.
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(&literals)
        .ok()
}

/// The literals every match of `pattern` starts with, as the regex crate's
/// own literal extraction finds them (with its limits); `None` when that
/// set is not finite or holds the empty string.
fn required_prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    // The same syntax options as `Regex::new`'s defaults.
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    if literals.iter().any(|literal| literal.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each default rule matches its format and not ordinary text.
    #[test]
    fn default_rules_match_their_formats() {
        let rules = Rules::default_rules();
        let hits = |text: &str| -> Vec<&str> {
            rules
                .iter()
                .filter(|rule| rule.regex().is_match(text))
                .map(Rule::name)
                .collect()
        };
        assert_eq!(
            hits("token ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            ["github-token"]
        );
        assert_eq!(
            hits("ghs_0123456789abcdefghijABCDEFGHIJ01234"),
            Vec::<&str>::new()
        );
        assert_eq!(
            hits(&format!("github_pat_{}_{}", "A".repeat(22), "b".repeat(59))),
            ["github-fine-grained-token"]
        );
        assert_eq!(hits("key=AKIAIOSFODNN7EXAMPLE"), ["aws-access-key-id"]);
        assert_eq!(hits("ASIAY34FZKBOKMUTVV7A,"), ["aws-access-key-id"]);
        assert_eq!(
            hits(
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
            ),
            ["json-web-token"]
        );
        assert_eq!(hits("xoxb-1234567890-abcdefghij"), ["slack-token"]);
        assert_eq!(
            hits("cargo build --release -p baa-logging-mask && echo ok"),
            Vec::<&str>::new()
        );
    }

    /// A configured pattern that does not compile is an error.
    #[test]
    fn bad_pattern_is_an_error() {
        assert!(Rules::new([("ok", "abc"), ("bad", "(")]).is_err());
        assert_eq!(Rules::new([("ok", "abc")]).unwrap().len(), 1);
    }
}
