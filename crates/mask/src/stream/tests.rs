//! Tests of stream masking.

use std::time::Instant;

use super::*;
use crate::{MASK, Rules};

/// A masker with `values` registered and `rules`.
fn masker(values: &[&str], rules: Rules) -> Masker {
    let mut masker = Masker::new(rules);
    for value in values {
        masker.add_secret(value).unwrap();
    }
    masker
}

/// Pushes `chunks` one after the other, then flushes; returns the
/// concatenated output and the total occurrences.
fn run(masker: &Masker, chunks: &[&str]) -> (String, usize) {
    let mut stream = StreamMasker::new();
    let mut out = String::new();
    let mut occurrences = 0;
    for chunk in chunks {
        let masked = stream.push(masker, chunk);
        out.push_str(&masked.text);
        occurrences += masked.occurrences;
    }
    let masked = stream.flush(masker);
    out.push_str(&masked.text);
    (out, occurrences + masked.occurrences)
}

/// The char boundaries of `text` strictly inside it.
fn inner_boundaries(text: &str) -> Vec<usize> {
    (1..text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect()
}

/// `text` cut at fewer than `max_cuts` random char boundaries inside it.
fn random_chunks<'a>(rng: &mut fastrand::Rng, text: &'a str, max_cuts: usize) -> Vec<&'a str> {
    let boundaries = inner_boundaries(text);
    let mut cuts: Vec<usize> = (0..rng.usize(0..max_cuts))
        .filter(|_| !boundaries.is_empty())
        .map(|_| boundaries[rng.usize(..boundaries.len())])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut at = 0;
    for cut in cuts {
        chunks.push(&text[at..cut]);
        at = cut;
    }
    chunks.push(&text[at..]);
    chunks
}

/// A whole secret in one chunk ending in a newline is released masked at
/// once, nothing held.
#[test]
fn whole_secret_in_one_chunk() {
    let m = masker(&["hunter2-is-my-password"], Rules::none());
    let mut stream = StreamMasker::new();
    let masked = stream.push(&m, "pw=hunter2-is-my-password\n");
    assert_eq!(
        masked,
        Masked {
            text: "pw=[MASKED]\n".into(),
            occurrences: 1
        }
    );
    assert_eq!(stream.held_len(), 0);
}

/// A secret split across two chunks at every point, and across three
/// chunks at every pair of points, comes out masked exactly as whole.
#[test]
fn secret_split_at_every_point() {
    let m = masker(
        &["pässwörd-ünïcode", "hunter2-is-my-password"],
        Rules::none(),
    );
    for text in [
        "a pässwörd-ünïcode b\n",
        "x hunter2-is-my-password",
        "hunter2-is-my-passwor",
    ] {
        let (whole, n) = m.mask(text);
        let points = inner_boundaries(text);
        for &i in &points {
            assert_eq!(
                run(&m, &[&text[..i], &text[i..]]),
                (whole.to_string(), n),
                "{text:?} at {i}"
            );
            for &j in points.iter().filter(|&&j| j > i) {
                let chunks = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(
                    run(&m, &chunks),
                    (whole.to_string(), n),
                    "{text:?} at {i}, {j}"
                );
            }
        }
    }
    assert_eq!(m.mask("x hunter2-is-my-password").0, "x [MASKED]");
}

/// The released part of a push never contains a part of the secret: the
/// start of a possible secret is held until it is decided.
#[test]
fn prefix_of_a_secret_is_held_until_decided() {
    let m = masker(&["s3cr3t-value"], Rules::none());
    let mut stream = StreamMasker::new();
    assert_eq!(stream.push(&m, "abc s3cr").text, "abc ");
    assert_eq!(stream.held_len(), 4);
    assert_eq!(stream.push(&m, "3t-val").text, "");
    assert_eq!(stream.held_len(), 10);
    assert_eq!(
        stream.push(&m, "ue, done"),
        Masked {
            text: "[MASKED], done".into(),
            occurrences: 1
        }
    );
    assert_eq!(stream.held_len(), 0);
}

/// A held prefix that turns out not to be a secret is released unchanged,
/// by the next push or by a flush.
#[test]
fn prefix_that_is_no_secret_is_released_unchanged() {
    let m = masker(&["s3cr3t-value"], Rules::none());
    let mut stream = StreamMasker::new();
    assert_eq!(stream.push(&m, "abc s3cr").text, "abc ");
    assert_eq!(stream.push(&m, "apple").text, "s3crapple");
    assert_eq!(stream.held_len(), 0);
    assert_eq!(stream.push(&m, "abc s3cr3t-").text, "abc ");
    assert_eq!(
        stream.flush(&m),
        Masked {
            text: "s3cr3t-".into(),
            occurrences: 0
        }
    );
    assert_eq!(stream.held_len(), 0);
}

/// Text that cannot start a secret is released at once.
#[test]
fn text_that_cannot_start_a_secret_is_not_held() {
    let m = masker(&["s3cr3t-value"], Rules::none());
    let mut stream = StreamMasker::new();
    assert_eq!(stream.push(&m, "hello world").text, "hello world");
    assert_eq!(stream.held_len(), 0);
}

/// A newline at the end of a chunk ends every hold, rules included.
#[test]
fn newline_ends_the_hold() {
    let m = masker(&["s3cr3t-value"], Rules::default_rules());
    let mut stream = StreamMasker::new();
    assert_eq!(stream.push(&m, "hello wor").text, "hello ");
    assert_eq!(stream.held_len(), 3);
    assert_eq!(stream.push(&m, "ld s3cr\n").text, "world s3cr\n");
    assert_eq!(stream.held_len(), 0);
}

/// Rule matches split across two pushes at every point are masked.
#[test]
fn rule_match_split_at_every_point() {
    let m = masker(&[], Rules::default_rules());
    let text = "a ghp_0123456789abcdefghijABCDEFGHIJ012345 b AKIAIOSFODNN7EXAMPLE \
                c eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let (whole, n) = m.mask(text);
    assert_eq!(whole, "a [MASKED] b [MASKED] c [MASKED]");
    for i in inner_boundaries(text) {
        assert_eq!(
            run(&m, &[&text[..i], &text[i..]]),
            (whole.to_string(), n),
            "at {i}"
        );
    }
}

/// Two secrets that overlap, split anywhere, are one mask, as in whole
/// text; a chain of them is held as long as it may grow.
#[test]
fn overlapping_secrets_split_at_every_point() {
    let m = masker(&["abcdefgh12", "gh12345678"], Rules::none());
    let text = "x abcdefgh12345678 y";
    for i in inner_boundaries(text) {
        assert_eq!(
            run(&m, &[&text[..i], &text[i..]]),
            ("x [MASKED] y".into(), 1),
            "at {i}"
        );
    }
    let mut stream = StreamMasker::new();
    assert_eq!(stream.push(&m, "x abcdefgh12").text, "x ");
    assert_eq!(stream.push(&m, "345678").text, "");
    assert_eq!(stream.push(&m, " y").text, "[MASKED] y");
}

/// Random chunkings of a text with several secrets, their encodings,
/// near misses and tokens give what whole-text masking gives, and never
/// a secret.
#[test]
fn random_chunkings_equal_whole_text_masking() {
    let secrets = [
        "correct-horse-battery",
        "hunter2-is-my-password",
        "pässwörd-ünïcode",
        "abcdefgh12",
        "gh12345678",
    ];
    let m = masker(&secrets, Rules::default_rules());
    let mut rng = fastrand::Rng::with_seed(0x6d61736b);
    let pieces = [
        "correct-horse-battery",
        "hunter2-is-my-password",
        "pässwörd-ünïcode",
        "abcdefgh12345678",
        "correct-horse-",
        "hunter2-is-my",
        "p%C3%A4ssw%C3%B6rd-%C3%BCn%C3%AFcode",
        "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "AKIAIOSFODNN7EXAMPLE",
        " ",
        "\n",
        "ok",
        "é",
        "=",
        "/",
        "word",
        "battery",
        "-password",
    ];
    for round in 0..300 {
        let text: String = (0..rng.usize(20..80))
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect();
        let (whole, n) = m.mask(&text);
        for secret in secrets {
            assert!(!whole.contains(secret), "{whole}");
        }
        for _ in 0..20 {
            let chunks = random_chunks(&mut rng, &text, 12);
            assert_eq!(
                run(&m, &chunks),
                (whole.to_string(), n),
                "round {round}: {chunks:?}"
            );
        }
    }
}

/// Every match of every rule, searched one rule after the other without
/// the rules' literal prefilter, merged: what masking gave before the
/// prefilter, and what it must still give.
fn rule_spans_unfiltered(rules: &Rules, text: &str) -> Vec<std::ops::Range<usize>> {
    let mut found: Vec<_> = rules
        .iter()
        .flat_map(|rule| rule.regex().find_iter(text).map(|m| m.range()))
        .collect();
    crate::spans::merge(&mut found);
    found
}

/// Random text with a token of every default rule's kind, near misses of
/// each and matches of configured rules (one case-insensitive, one whose
/// matches may start with anything, which turns the prefilter off) planted
/// at random places: the prefiltered rules find what every rule searched
/// on its own finds, in whole texts and in every chunk of random cuts, and
/// streaming those chunks (with and without a copy) gives the unfiltered
/// whole-text result.
#[test]
fn prefiltered_rules_equal_every_rule_searched() {
    let default = Rules::default_rules();
    let mut configured = Rules::default_rules();
    configured.extend(Rules::new([("case-insensitive", "(?i)tok_[a-z]{8}")]).unwrap());
    let mut open = configured.clone();
    open.extend(Rules::new([("no-prefix", r"[a-z]+=secret")]).unwrap());
    let pieces = [
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "gho_0123456789abcdefghijABCDEFGHIJ0123456789",
        "ghu_0123456789",
        "ghr_",
        "github_pat_AAAAAAAAAAAAAAAAAAAAAA_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "github_pat_short",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AKIA1234",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "eyJhbGciOiJIUzI1NiJ9.",
        "eyJ",
        "xoxb-1234567890-abcdefghij",
        "xoxp-12",
        "xox",
        "TOK_abcdefgh",
        "tok_AbCdEfGh",
        "tok_abc",
        "key=secret",
        "=secret",
        "gh",
        "AKI",
        " ",
        " ",
        "\n",
        "ok",
        "é",
        "=",
        "-",
        "_",
        "word",
        "Compiling crate",
    ];
    let mut rng = fastrand::Rng::with_seed(0x7275_6c65);
    for rules in [default, configured, open] {
        let m = masker(&[], rules.clone());
        for round in 0..400 {
            let text: String = (0..rng.usize(1..60))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let expected_spans = rule_spans_unfiltered(&rules, &text);
            let mut expected = String::new();
            crate::spans::replace_into(&text, &expected_spans, &mut expected);
            assert_eq!(m.spans(&text), expected_spans, "round {round}: {text:?}");
            assert_eq!(
                m.mask(&text),
                (expected.as_str().into(), expected_spans.len()),
                "round {round}: {text:?}"
            );
            for _ in 0..10 {
                let chunks = random_chunks(&mut rng, &text, 10);
                for chunk in &chunks {
                    let unfiltered = rule_spans_unfiltered(&rules, chunk);
                    assert_eq!(m.spans(chunk), unfiltered, "{chunk:?}");
                    assert_eq!(rules.is_match(chunk), !unfiltered.is_empty(), "{chunk:?}");
                }
                assert_eq!(
                    run(&m, &chunks),
                    (expected.clone(), expected_spans.len()),
                    "round {round}: {chunks:?}"
                );
                let mut stream = StreamMasker::new();
                let mut out = String::new();
                for chunk in &chunks {
                    out.push_str(&stream.push_owned(&m, (*chunk).to_owned()).text);
                }
                out.push_str(&stream.flush(&m).text);
                assert_eq!(out, expected, "round {round}: {chunks:?}");
            }
        }
    }
}

/// `Debug` shows how much is held, not what.
#[test]
fn debug_does_not_show_held_text() {
    let m = masker(&["s3cr3t-value"], Rules::none());
    let mut stream = StreamMasker::new();
    stream.push(&m, "s3cr3t-va");
    assert_eq!(format!("{stream:?}"), "StreamMasker { held_len: 9 }");
}

/// Throughput: 100 MB of log lines with 100 registered secrets (and the
/// default rules), streamed in 64 KiB chunks and masked as whole texts of
/// 1 MiB. Run with `cargo test --release -p baa-logging-mask -- --ignored
/// --nocapture throughput`.
#[test]
#[ignore = "a measurement, run in release"]
fn throughput_100_mb_100_secrets() {
    let mut rng = fastrand::Rng::with_seed(7);
    let secrets: Vec<String> = (0..100)
        .map(|_| (0..rng.usize(16..40)).map(|_| rng.alphanumeric()).collect())
        .collect();
    let m = masker(
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
        Rules::default_rules(),
    );
    let words = [
        "compiling",
        "crate",
        "warning:",
        "test",
        "ok",
        "finished",
        "in",
        "0.42s",
        "src/lib.rs:12:5",
        "=>",
    ];
    let mut block = String::new();
    while block.len() < 1 << 20 {
        for _ in 0..rng.usize(3..15) {
            block.push_str(words[rng.usize(..words.len())]);
            block.push(' ');
        }
        if rng.usize(..50) == 0 {
            block.push_str(&secrets[rng.usize(..secrets.len())]);
        }
        block.push('\n');
    }
    let total = 100 * 1_000_000;
    let rounds = total / block.len() + 1;

    let started = Instant::now();
    let mut stream = StreamMasker::new();
    let mut out = 0;
    for _ in 0..rounds {
        for chunk in block.as_bytes().chunks(64 * 1024) {
            out += stream
                .push(&m, std::str::from_utf8(chunk).unwrap())
                .text
                .len();
        }
    }
    out += stream.flush(&m).text.len();
    let streamed = started.elapsed();

    let started = Instant::now();
    let mut whole = 0;
    for _ in 0..rounds {
        whole += m.mask(&block).0.len();
    }
    let masked = started.elapsed();
    assert_eq!(out, whole);
    assert!(out < rounds * block.len());
    let mb = (rounds * block.len()) as f64 / 1e6;
    println!(
        "{mb:.0} MB, 100 secrets + default rules: stream {:.2}s ({:.0} MB/s), whole text {:.2}s ({:.0} MB/s); {MASK}",
        streamed.as_secs_f64(),
        mb / streamed.as_secs_f64(),
        masked.as_secs_f64(),
        mb / masked.as_secs_f64(),
    );
}
