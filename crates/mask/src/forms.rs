//! The forms a registered value is masked in: the value itself and the
//! encodings a program commonly puts it through before printing it.
//!
//! A secret rarely leaks verbatim only. A client prints an `Authorization:
//! Basic` header (base64 of `user:secret`), a URL with the secret as a
//! query parameter (percent-encoded), or a JSON document (escaped). Each
//! form is a plain string the automaton searches for, so adding a form
//! costs nothing per byte of log.
//!
//! # Base64 at three alignments
//!
//! Base64 turns each 3 bytes into 4 characters of 6 bits. A secret inside
//! a larger byte string starts at byte offset 0, 1 or 2 of a 3-byte group
//! (its *alignment* `a`), and its bits occupy bits `8a .. 8(a + n)` of the
//! encoded stream, `n` being its length in bytes. Output character `i`
//! covers bits `6i .. 6i + 6`; it depends on the secret alone when
//! `6i >= 8a` and `6i + 6 <= 8(a + n)`. So for each alignment the form is
//! characters `ceil(8a / 6) .. floor(8(a + n) / 6)` of the encoding of `a`
//! arbitrary bytes followed by the secret: the leading characters mixed
//! with the unknown preceding bytes and the trailing ones mixed with the
//! following bytes (or padding) are dropped. That is `0`, `2` or `3`
//! characters dropped in front; at most 4 bits of the secret stay visible
//! on each side, too few to decode anything. Both the standard and the
//! URL-safe alphabet are covered; they differ only in `+/` versus `-_`.
//!
//! An 8-byte value (the shortest accepted) gives 10 characters at every
//! alignment, so base64 forms are never shorter than the plain minimum;
//! [`MIN_FORM_BYTES`] is a floor that does not bite for accepted values and
//! only keeps a degenerate form out of the automaton should the minimum
//! ever be lowered.
//!
//! # URL encoding
//!
//! Percent-encoding as JavaScript's `encodeURIComponent` does (everything
//! but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`), as RFC 3986 strict encoders do
//! (also `! * ' ( )`), and as HTML forms do (a space becomes `+`), each
//! with upper- and lower-case hex digits where that makes a difference.
//!
//! # JSON escaping
//!
//! The value as it appears between the quotes of a JSON string: `"`, `\`
//! and control characters escaped (as `serde_json`, JavaScript and most
//! encoders do), plus the variants with `/` escaped as `\/` (PHP), with
//! every non-ASCII character as `\uXXXX` (Python's default), and with
//! `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026` (Go's default).
//!
//! Only forms that differ from the plain value are added, and each form
//! once.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The shortest form that is searched for, in bytes.
///
/// Equal to [`MIN_SECRET_BYTES`](crate::MIN_SECRET_BYTES): a shorter string
/// matches ordinary output too often to be worth masking. Every form of an
/// accepted value is at least this long (see the module documentation), so
/// the floor is a guard rather than a filter.
pub const MIN_FORM_BYTES: usize = crate::MIN_SECRET_BYTES;

/// Every form `value` is masked in, the plain value first, each once and
/// none shorter than [`MIN_FORM_BYTES`].
///
/// The caller has checked `value` (one line, trimmed, long enough); this
/// function only derives.
pub fn forms_of(value: &str) -> Vec<String> {
    let mut forms: Vec<String> = Vec::with_capacity(16);
    let mut push = |form: String| {
        if form.len() >= MIN_FORM_BYTES && !forms.contains(&form) {
            forms.push(form);
        }
    };
    push(value.to_owned());
    for alignment in 0..3 {
        push(base64_aligned(
            value.as_bytes(),
            alignment,
            &STANDARD_NO_PAD,
        ));
        push(base64_aligned(
            value.as_bytes(),
            alignment,
            &URL_SAFE_NO_PAD,
        ));
    }
    for lower in [false, true] {
        push(percent_encoded(
            value,
            is_uri_component_unreserved,
            false,
            lower,
        ));
        push(percent_encoded(value, is_rfc3986_unreserved, false, lower));
        push(percent_encoded(value, is_form_unreserved, true, lower));
    }
    let json = json_escaped(value);
    push(json.replace('/', "\\/"));
    push(json_escaped_non_ascii(&json));
    push(json_escaped_html(&json));
    push(json);
    forms
}

/// The base64 characters that encode `value` alone when it starts at byte
/// `alignment` (0, 1 or 2) of a 3-byte group; see the module documentation.
fn base64_aligned(value: &[u8], alignment: usize, engine: &impl base64::Engine) -> String {
    let mut bytes = vec![0u8; alignment];
    bytes.extend_from_slice(value);
    let encoded = engine.encode(&bytes);
    let first = (8 * alignment).div_ceil(6);
    let end = 8 * (alignment + value.len()) / 6;
    encoded[first..end].to_owned()
}

/// `value` percent-encoded: bytes for which `unreserved` holds are kept,
/// a space becomes `+` when `space_as_plus`, every other byte becomes `%XX`.
fn percent_encoded(
    value: &str,
    unreserved: fn(u8) -> bool,
    space_as_plus: bool,
    lower: bool,
) -> String {
    let digits: &[u8; 16] = if lower {
        b"0123456789abcdef"
    } else {
        b"0123456789ABCDEF"
    };
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if unreserved(byte) {
            out.push(char::from(byte));
        } else if space_as_plus && byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(digits[usize::from(byte >> 4)]));
            out.push(char::from(digits[usize::from(byte & 0xf)]));
        }
    }
    out
}

/// What `encodeURIComponent` leaves as it is.
fn is_uri_component_unreserved(byte: u8) -> bool {
    is_rfc3986_unreserved(byte) || matches!(byte, b'!' | b'*' | b'\'' | b'(' | b')')
}

/// RFC 3986's unreserved characters.
fn is_rfc3986_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// What `application/x-www-form-urlencoded` leaves as it is.
fn is_form_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'*')
}

/// `value` as it appears between the quotes of a JSON string written by
/// `serde_json` (and, for all but rare control characters, by JavaScript).
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::from(value).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `json` (already escaped) with every non-ASCII character as `\uXXXX`,
/// astral ones as a surrogate pair, as Python's `json.dumps` writes them.
fn json_escaped_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `json` (already escaped) with `<`, `>`, `&` and the two line separators
/// escaped, as Go's `encoding/json` writes strings by default.
fn json_escaped_html(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain alphanumeric value has its base64 forms only, and those
    /// are exactly the aligned slices of real encodings.
    #[test]
    fn alphanumeric_value_has_plain_and_base64_forms() {
        let forms = forms_of("abcdefgh");
        // "abcdefgh" -> "YWJjZGVmZ2g"; at alignment 1 "\0abcdefgh" ->
        // "AGFiY2RlZmdo" minus 2 leading; at 2 "\0\0abcdefgh" ->
        // "AABhYmNkZWZnaA" minus 3 leading and the last (mixed with padding).
        assert_eq!(
            forms,
            ["abcdefgh", "YWJjZGVmZ2", "FiY2RlZmdo", "hYmNkZWZna"]
        );
    }

    /// A value with reserved characters gets URL and JSON forms, each once.
    #[test]
    fn special_characters_get_url_and_json_forms() {
        let forms = forms_of("p/ss\"w<rd é");
        for expected in [
            "p%2Fss%22w%3Crd%20%C3%A9",
            "p%2fss%22w%3crd%20%c3%a9",
            "p%2Fss%22w%3Crd+%C3%A9",
            "p/ss\\\"w<rd é",
            "p\\/ss\\\"w<rd é",
            "p/ss\\\"w<rd \\u00e9",
            "p/ss\\\"w\\u003crd é",
        ] {
            assert!(
                forms.iter().any(|form| form == expected),
                "missing {expected}"
            );
        }
        let mut unique = forms.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), forms.len());
    }

    /// Every base64 alignment of the shortest accepted value keeps 10
    /// characters, so the form floor never drops one.
    #[test]
    fn base64_forms_of_an_accepted_value_are_not_short() {
        for value in ["abcdefgh", "a+/=?&%x", "\u{1f600}\u{1f600}"] {
            for alignment in 0..3 {
                assert_eq!(
                    base64_aligned(value.as_bytes(), alignment, &STANDARD_NO_PAD).len(),
                    10
                );
            }
            assert!(
                forms_of(value)
                    .iter()
                    .all(|form| form.len() >= MIN_FORM_BYTES)
            );
        }
    }
}
