//! Decoding a stored stdout or stderr line the quick way.
//!
//! Every chunk line this store writes has the same shape: the fields of
//! `StreamChunkLogEntry` in their declared order, no spaces, strings with
//! only the escapes JSON requires. [`parse`] reads exactly that shape,
//! finding each string's end with `memchr` and taking a string without
//! escapes as it is, which costs a fraction of a general JSON parse. A
//! string with escapes is handed to `serde_json`; a line of any other
//! shape gets `None`, and the caller parses it with `serde_json` as before
//! (which also gives the error for a line that is not an entry). So what
//! a line decodes to never depends on which path read it.

use crate::model::{StreamChunkLogEntry, StreamLogChannel};

/// The entry of a line in the stored shape; `None` for any other line.
pub(crate) fn parse(line: &[u8]) -> Option<StreamChunkLogEntry> {
    let mut at = Cursor { line, pos: 0 };
    at.literal(b"{\"taskId\":")?;
    let task_id = at.string()?;
    at.literal(b",\"stepId\":")?;
    let step_id = at.string()?;
    at.literal(b",\"runId\":")?;
    let run_id = at.string()?;
    at.literal(b",\"seq\":")?;
    let seq = at.number()?;
    at.literal(b",\"channel\":\"")?;
    let channel = if at.literal(b"stdout\"").is_some() {
        StreamLogChannel::Stdout
    } else {
        at.literal(b"stderr\"")?;
        StreamLogChannel::Stderr
    };
    at.literal(b",\"createdAt\":")?;
    let created_at = at.string()?;
    at.literal(b",\"text\":")?;
    let text = at.string()?;
    at.literal(b"}")?;
    (at.pos == line.len()).then_some(StreamChunkLogEntry {
        task_id,
        step_id,
        run_id,
        seq,
        channel,
        created_at,
        text,
    })
}

/// A position in a line.
struct Cursor<'a> {
    /// The line.
    line: &'a [u8],
    /// The next byte to read.
    pos: usize,
}

impl Cursor<'_> {
    /// Steps over `expected`, if it comes next.
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let rest = &self.line[self.pos..];
        rest.starts_with(expected)
            .then(|| self.pos += expected.len())
    }

    /// A JSON string: its bytes between escapes taken as they are, the
    /// one-letter escapes replaced here, and a string with a `\u` escape
    /// handed to `serde_json` whole.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        self.literal(b"\"")?;
        let mut found = memchr::memchr2(b'"', b'\\', &self.line[self.pos..])?;
        // Most strings have no escape: one copy of exactly their bytes.
        let mut out = Vec::with_capacity(match self.line[self.pos + found] {
            b'"' => found,
            _ => found + 64,
        });
        loop {
            let rest = &self.line[self.pos..];
            out.extend_from_slice(&rest[..found]);
            self.pos += found;
            if rest[found] == b'"' {
                self.pos += 1;
                break;
            }
            let unescaped = match rest.get(found + 1)? {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'u' => return self.string_by_serde(start),
                _ => return None,
            };
            out.push(unescaped);
            self.pos += 2;
            found = memchr::memchr2(b'"', b'\\', &self.line[self.pos..])?;
        }
        // JSON forbids raw control characters in a string; the escapes
        // above put some in, so the check runs on what was read.
        let raw = &self.line[start + 1..self.pos - 1];
        if raw.iter().fold(false, |seen, byte| seen | (*byte < 0x20)) {
            return None;
        }
        String::from_utf8(out).ok()
    }

    /// The string from `start` (its opening quote) on, through
    /// `serde_json`, which knows `\u` escapes and surrogate pairs.
    fn string_by_serde(&mut self, start: usize) -> Option<String> {
        self.pos = start + 1;
        loop {
            let found = memchr::memchr2(b'"', b'\\', &self.line[self.pos..])?;
            self.pos += found;
            if self.line[self.pos] == b'"' {
                break;
            }
            // A backslash and the character after it; `\u` is followed by
            // four hex digits, none of them a quote.
            self.pos += 2;
            if self.pos > self.line.len() {
                return None;
            }
        }
        self.pos += 1;
        serde_json::from_slice(&self.line[start..self.pos]).ok()
    }

    /// A JSON number that is a `u64`, in its only form (no sign, no
    /// leading zero, no fraction or exponent).
    fn number(&mut self) -> Option<u64> {
        let digits = self.line[self.pos..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        let text = &self.line[self.pos..self.pos + digits];
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        self.pos += digits;
        std::str::from_utf8(text).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> StreamChunkLogEntry {
        StreamChunkLogEntry {
            task_id: "task-1".into(),
            step_id: "step".into(),
            run_id: "run.2".into(),
            seq: 1234567,
            channel: StreamLogChannel::Stderr,
            created_at: "2026-11-30T11:00:00.123Z".into(),
            text: text.into(),
        }
    }

    /// Lines as the store writes them decode to what `serde_json` makes
    /// of them, escapes and all.
    #[test]
    fn stored_lines_decode_as_serde_json_decodes_them() {
        let texts = [
            "",
            "plain line\n",
            "a \"quoted\" word and a back\\slash\n",
            "tab\there, nul \u{0}, bell \u{7}, escape \u{1b}[31m\n",
            "ünïcödé ✓ 😀 and \u{7f} and \u{2028}\n",
            "\\",
            "\"",
            "ends with a backslash \\",
            "crlf\r\n, backspace \u{8}, form feed \u{c}, slash /",
        ];
        for text in texts {
            let line = serde_json::to_vec(&entry(text)).unwrap();
            let fast = parse(&line).expect("the stored shape");
            assert_eq!(fast, entry(text), "{}", String::from_utf8_lossy(&line));
            assert_eq!(
                fast,
                serde_json::from_slice::<StreamChunkLogEntry>(&line).unwrap()
            );
        }
    }

    /// Escapes the store never writes but JSON allows decode as
    /// `serde_json` decodes them.
    #[test]
    fn every_json_escape_decodes_as_serde_json_decodes_it() {
        let stored = String::from_utf8(serde_json::to_vec(&entry("x")).unwrap()).unwrap();
        for escaped in [r"\/", r"\u00e9", r"a\ud83d\ude00b", r"\u0000\n"] {
            let line = stored.replace("\"text\":\"x\"", &format!("\"text\":\"{escaped}\""));
            let expected = serde_json::from_str::<StreamChunkLogEntry>(&line).unwrap();
            assert_eq!(parse(line.as_bytes()), Some(expected), "{line}");
        }
    }

    /// Anything else is left to `serde_json`.
    #[test]
    fn other_shapes_are_left_to_serde_json() {
        let stored = String::from_utf8(serde_json::to_vec(&entry("x\n")).unwrap()).unwrap();
        let others = [
            stored.replace("{\"taskId\"", "{ \"taskId\""),
            stored.replace("\"seq\":1234567", "\"seq\":01234567"),
            stored.replace("\"seq\":1234567", "\"seq\":-1"),
            stored.replace("\"seq\":1234567", "\"seq\":1.5"),
            stored.replace("\"seq\":1234567", "\"seq\":99999999999999999999"),
            stored.replace("stderr", "stdin"),
            stored.replace("x\\n", "x\n"),
            stored.replace("x\\n", "x\\q"),
            format!("{stored} "),
            stored[..stored.len() - 1].to_owned(),
            stored.replace(
                ",\"stepId\":\"step\",\"runId\":\"run.2\"",
                ",\"runId\":\"run.2\",\"stepId\":\"step\"",
            ),
        ];
        for other in others {
            assert_eq!(parse(other.as_bytes()), None, "{other}");
        }
        let mut invalid = stored.into_bytes();
        let at = invalid.len() - 5;
        invalid[at] = 0xff;
        assert_eq!(parse(&invalid), None);
    }
}
