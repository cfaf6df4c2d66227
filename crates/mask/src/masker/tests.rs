//! Tests of whole-text and JSON masking.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::*;
use crate::MASK;

/// A masker with `values` registered and no rules.
fn masker(values: &[&str]) -> Masker {
    let mut masker = Masker::new(Rules::none());
    for value in values {
        masker.add_secret(value).unwrap();
    }
    masker
}

/// A whole secret is replaced, the text around it kept.
#[test]
fn whole_secret_is_masked() {
    let m = masker(&["hunter2-is-my-password"]);
    let (text, n) = m.mask("login hunter2-is-my-password ok; again:hunter2-is-my-password");
    assert_eq!(text, "login [MASKED] ok; again:[MASKED]");
    assert_eq!(n, 2);
}

/// With nothing registered, or nothing found, the text is borrowed.
#[test]
fn nothing_to_mask_borrows() {
    assert!(matches!(
        Masker::default().mask("a secret"),
        (Cow::Borrowed("a secret"), 0)
    ));
    let m = masker(&["hunter2-is-my-password"]);
    assert!(matches!(
        m.mask("nothing here"),
        (Cow::Borrowed("nothing here"), 0)
    ));
}

/// A secret added after masking started is masked from then on (the
/// automaton is recompiled on next use).
#[test]
fn secret_added_later_is_masked() {
    let mut m = masker(&["first-secret-value"]);
    assert_eq!(m.mask("second-secret-value").1, 0);
    m.add_secret("second-secret-value").unwrap();
    assert_eq!(
        m.mask("first-secret-value second-secret-value").0,
        "[MASKED] [MASKED]"
    );
}

/// base64(prefix + secret + suffix), for every alignment of the secret
/// and every way the encoding can end, in both alphabets: exactly the
/// characters that depend on the secret alone are masked, so what is left
/// of it is at most 4 bits at each end.
#[test]
fn base64_is_masked_at_every_alignment() {
    // `>`, `?` and `~` make `+` and `/` likely, so the two alphabets differ.
    let secret = "s3cr3t>>?~~value";
    let m = masker(&[secret]);
    let prefixes = ["", "u", "us", "us:", "user"];
    let suffixes = ["", "!", "!!"];
    let mut alphabets_differed = false;
    for engine in [&STANDARD, &URL_SAFE] {
        for prefix in prefixes {
            for suffix in suffixes {
                let encoded = engine.encode(format!("{prefix}{secret}{suffix}"));
                let first = (8 * prefix.len()).div_ceil(6);
                let end = 8 * (prefix.len() + secret.len()) / 6;
                let expected = format!("{}{MASK}{}", &encoded[..first], &encoded[end..]);
                let (masked, n) = m.mask(&encoded);
                assert_eq!(masked, expected, "{prefix:?} {suffix:?} {encoded}");
                assert_eq!(n, 1);
                // No 4 characters (3 decodable bytes) of the secret's own
                // encoding are left.
                let own = &encoded[first..end];
                for window in 0..own.len() - 3 {
                    assert!(!masked.contains(&own[window..window + 4]), "{masked}");
                }
                alphabets_differed |= encoded.contains(['+', '/', '-', '_']);
            }
        }
    }
    assert!(alphabets_differed);
}

/// A Basic authorization header with `user:secret` is masked.
#[test]
fn basic_auth_header_is_masked() {
    let m = masker(&["correct-horse-battery"]);
    let header = format!(
        "Authorization: Basic {}",
        STANDARD.encode("admin:correct-horse-battery")
    );
    let (masked, _) = m.mask(&header);
    assert!(
        masked.starts_with("Authorization: Basic YWRtaW"),
        "{masked}"
    );
    assert!(masked.contains(MASK), "{masked}");
    assert!(!masked.contains("Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5"), "{masked}");
}

/// The value percent-encoded, with upper- and lower-case hex, is masked.
#[test]
fn url_encoded_secret_is_masked() {
    let m = masker(&["pa ss/wo?rd&x=1"]);
    let (masked, n) =
        m.mask("GET /login?p=pa%20ss%2Fwo%3Frd%26x%3D1&q=2 and p=pa%20ss%2fwo%3frd%26x%3d1");
    assert_eq!(masked, "GET /login?p=[MASKED]&q=2 and p=[MASKED]");
    assert_eq!(n, 2);
    assert_eq!(m.mask("form: pa+ss%2Fwo%3Frd%26x%3D1").0, "form: [MASKED]");
}

/// The value inside a JSON string, with its quote and backslash escaped,
/// and with `/` escaped too, is masked.
#[test]
fn json_escaped_secret_is_masked() {
    let secret = r#"ab"cd\ef/gh-secret"#;
    let m = masker(&[secret]);
    let json =
        serde_json::to_string(&serde_json::json!({ "password": format!("x{secret}y") })).unwrap();
    assert_eq!(json, r#"{"password":"xab\"cd\\ef/gh-secrety"}"#);
    assert_eq!(m.mask(&json).0, r#"{"password":"x[MASKED]y"}"#);
    let php = json.replace('/', "\\/");
    assert_eq!(m.mask(&php).0, r#"{"password":"x[MASKED]y"}"#);
}

/// Two secrets that overlap in the text become one mask; nothing of the
/// second one is left.
#[test]
fn overlapping_secrets_are_one_mask() {
    let m = masker(&["abcdefgh12", "gh12345678"]);
    assert_eq!(
        m.mask("x abcdefgh12345678 y"),
        (Cow::Owned("x [MASKED] y".into()), 1)
    );
}

/// Of two secrets where one is a prefix of the other, the longer one is
/// masked where it occurs, the shorter one elsewhere.
#[test]
fn longest_secret_wins() {
    let m = masker(&["token-abcdefgh", "token-abcdefgh-extended"]);
    let (masked, n) = m.mask("token-abcdefgh-extended and token-abcdefgh-ext");
    assert_eq!(masked, "[MASKED] and [MASKED]-ext");
    assert_eq!(n, 2);
}

/// Each line of a multi-line secret is masked wherever it appears.
#[test]
fn multi_line_secret_is_masked_line_by_line() {
    let m = masker(&["line-one-of-key\nline-two-of-key\n"]);
    assert_eq!(
        m.mask("line-two-of-key\r\nline-one-of-key").0,
        "[MASKED]\r\n[MASKED]"
    );
}

/// The default rules mask their token formats without registration.
#[test]
fn rules_mask_tokens() {
    let m = Masker::new(Rules::default_rules());
    let text = "gh: ghp_0123456789abcdefghijABCDEFGHIJ012345, aws: AKIAIOSFODNN7EXAMPLE, \
                jwt: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk\n";
    let (masked, n) = m.mask(text);
    assert_eq!(masked, "gh: [MASKED], aws: [MASKED], jwt: [MASKED]\n");
    assert_eq!(n, 3);
}

/// Secrets and rules together: a match of each overlapping is one mask.
#[test]
fn rule_and_secret_overlapping_are_one_mask() {
    let mut m = Masker::new(Rules::default_rules());
    m.add_secret("my-prefix-AKIAIOSF").unwrap();
    assert_eq!(m.mask("k=my-prefix-AKIAIOSFODNN7EXAMPLE;").0, "k=[MASKED];");
}

/// Every string of a JSON value is masked: values, array items, nested
/// objects and keys; numbers and the rest are untouched.
#[test]
fn mask_json_masks_every_string() {
    let m = masker(&["hunter2-is-my-password"]);
    let mut value = serde_json::json!({
        "message": "using hunter2-is-my-password",
        "args": ["--password", "hunter2-is-my-password", 3, null],
        "env": { "hunter2-is-my-password": true, "[MASKED]": 1, "depth": { "x": "hunter2-is-my-password!" } },
        "count": 7
    });
    assert_eq!(m.mask_json(&mut value), 4);
    assert_eq!(
        value,
        serde_json::json!({
            "message": "using [MASKED]",
            "args": ["--password", "[MASKED]", 3, null],
            "env": { "[MASKED]": 1, "[MASKED] (2)": true, "depth": { "x": "[MASKED]!" } },
            "count": 7
        })
    );
}

/// `Debug` shows counts, never a value.
#[test]
fn debug_does_not_show_values() {
    let mut m = Masker::new(Rules::default_rules());
    m.add_secret("very-secret-value").unwrap();
    let debug = format!("{m:?}");
    assert!(!debug.contains("very-secret-value"), "{debug}");
    assert!(
        debug.starts_with("Masker { secrets: Secrets { values: 1, "),
        "{debug}"
    );
}
