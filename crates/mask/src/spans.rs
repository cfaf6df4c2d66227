//! Byte ranges to mask: merging overlapping ones and writing the text with
//! each range replaced by [`MASK`].

use std::ops::Range;

use crate::MASK;

/// Sorts `spans` and merges those that overlap (not those that only
/// touch: two secrets side by side stay two masks).
pub(crate) fn merge(spans: &mut Vec<Range<usize>>) {
    if spans.len() < 2 {
        return;
    }
    spans.sort_unstable_by_key(|span| (span.start, span.end));
    let mut merged = 0;
    for i in 1..spans.len() {
        let next = spans[i].clone();
        let last = &mut spans[merged];
        if next.start < last.end {
            last.end = last.end.max(next.end);
        } else {
            merged += 1;
            spans[merged] = next;
        }
    }
    spans.truncate(merged + 1);
}

/// Appends `text` to `out` with every range of `spans` (sorted, disjoint,
/// within `text`) replaced by [`MASK`].
pub(crate) fn replace_into(text: &str, spans: &[Range<usize>], out: &mut String) {
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str(MASK);
        at = span.end;
    }
    out.push_str(&text[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overlapping and nested ranges merge; touching ones do not.
    #[test]
    fn merge_joins_overlaps_only() {
        let mut spans = vec![10..12, 0..4, 2..6, 6..8, 3..5];
        merge(&mut spans);
        assert_eq!(spans, [0..6, 6..8, 10..12]);
    }

    /// Replacement keeps the text between ranges.
    #[test]
    fn replace_keeps_text_between() {
        let mut out = String::new();
        replace_into("a secret b secret", &[2..8, 11..17], &mut out);
        assert_eq!(out, "a [MASKED] b [MASKED]");
    }
}
