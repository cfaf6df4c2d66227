//! Turning appended payloads into stored entries: the JSON lines of each
//! channel file, and the compact entries that followers read from memory.
//!
//! A chunk's line is written from borrowed fields: the run's ids, escaped
//! once per commit, then the sequence number, the channel, the time and
//! the text. Each piece goes through `serde_json`, so the line is byte for
//! byte what serializing a [`StreamChunkLogEntry`] writes (the tests hold
//! the two together). The payloads' strings are then moved, not copied,
//! into the entries kept for followers.

use crate::{
    model::{
        AppendPayload, CommitEntry, PerChannel, RunMetadata, StreamLogChannel,
        WorkerLifecycleEventInput, WorkerLifecycleLogEntry, WorkerLogChannel,
    },
    render::render_line,
};

/// The entries of a commit, as the lines of each channel file.
#[derive(Debug)]
pub(crate) struct EncodedEntries {
    /// The lines of each channel.
    pub(crate) bytes: PerChannel<Vec<u8>>,
    /// Entries per channel.
    pub(crate) counts: PerChannel<u64>,
    /// Whether every chunk of each channel ends with a newline.
    pub(crate) closed: PerChannel<bool>,
    /// The entries, in sequence order, for followers (see `recent`).
    pub(crate) entries: Vec<CommitEntry>,
}

/// Turns payloads into stored entries from `first_seq` on, as JSON lines.
/// `now` stands in for every unset time.
pub(crate) fn encode_entries(
    metadata: &RunMetadata,
    first_seq: u64,
    payloads: Vec<AppendPayload>,
    now: &str,
) -> EncodedEntries {
    let mut encoded = EncodedEntries {
        bytes: PerChannel::default(),
        counts: PerChannel::default(),
        closed: PerChannel::new(true, true, true),
        entries: Vec::with_capacity(payloads.len()),
    };
    let prefix = line_prefix(&metadata.task_id, &metadata.step_id, &metadata.run_id);
    for (seq, payload) in (first_seq..).zip(payloads) {
        match payload {
            AppendPayload::Event(event) => {
                let entry = lifecycle_entry(metadata, seq, &event, now);
                let out = &mut encoded.bytes[WorkerLogChannel::Worker];
                serde_json::to_writer(&mut *out, &entry).expect("an entry serializes");
                out.push(b'\n');
                encoded.counts[WorkerLogChannel::Worker] += 1;
                encoded
                    .entries
                    .push(CommitEntry::Lifecycle(Box::new(entry)));
            }
            AppendPayload::Chunk(channel, chunk) => {
                let slot = WorkerLogChannel::from(channel);
                // An empty chunk counts as open too: a search that skipped
                // it would count a line that is not there.
                if !chunk.text.ends_with('\n') {
                    encoded.closed[slot] = false;
                }
                let created_at = chunk.created_at.as_deref().unwrap_or(now);
                write_chunk_line(
                    &mut encoded.bytes[slot],
                    &prefix,
                    seq,
                    channel,
                    created_at,
                    &chunk.text,
                );
                encoded.counts[slot] += 1;
                encoded
                    .entries
                    .push(CommitEntry::Chunk(channel, chunk.created_at, chunk.text));
            }
        }
    }
    encoded
}

/// What every chunk line of the run starts with: its ids, escaped, up to
/// the sequence number.
fn line_prefix(task_id: &str, step_id: &str, run_id: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(64 + task_id.len() + step_id.len() + run_id.len());
    prefix.extend_from_slice(b"{\"taskId\":");
    write_str(&mut prefix, task_id);
    prefix.extend_from_slice(b",\"stepId\":");
    write_str(&mut prefix, step_id);
    prefix.extend_from_slice(b",\"runId\":");
    write_str(&mut prefix, run_id);
    prefix.extend_from_slice(b",\"seq\":");
    prefix
}

/// Appends a chunk's JSON line, as serializing its [`StreamChunkLogEntry`]
/// would write it, and a newline.
///
/// [`StreamChunkLogEntry`]: crate::model::StreamChunkLogEntry
fn write_chunk_line(
    out: &mut Vec<u8>,
    prefix: &[u8],
    seq: u64,
    channel: StreamLogChannel,
    created_at: &str,
    text: &str,
) {
    out.reserve(prefix.len() + created_at.len() + text.len() + 64);
    out.extend_from_slice(prefix);
    serde_json::to_writer(&mut *out, &seq).expect("a number serializes");
    out.extend_from_slice(match channel {
        StreamLogChannel::Stdout => b",\"channel\":\"stdout\",\"createdAt\":",
        StreamLogChannel::Stderr => b",\"channel\":\"stderr\",\"createdAt\":",
    });
    write_str(out, created_at);
    out.extend_from_slice(b",\"text\":");
    write_str(out, text);
    out.extend_from_slice(b"}\n");
}

/// Appends `value` as a JSON string, escaped as `serde_json` escapes it:
/// `"` and `\`, and the control characters below U+0020, five of them by
/// their short form and the others as `\u00xx`; everything else as it is.
///
/// Text is mostly plain: eight bytes at a time are checked for anything
/// to escape, and copied in runs.
fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        if let Some(word) = bytes.get(index..index + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !needs_escape(word) {
                index += 8;
                continue;
            }
        }
        let end = (index + 8).min(bytes.len());
        for at in index..end {
            let escaped: &[u8] = match bytes[at] {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                0x0c => b"\\f",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                byte @ 0x00..=0x1f => {
                    out.extend_from_slice(&bytes[start..at]);
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX_DIGITS[usize::from(byte >> 4)]);
                    out.push(HEX_DIGITS[usize::from(byte & 0xf)]);
                    start = at + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..at]);
            out.extend_from_slice(escaped);
            start = at + 1;
        }
        index = end;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The digits of `\u00xx` escapes, lowercase as `serde_json` writes them.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the eight bytes of `word` may need an escape: is below
/// 0x20, `"` or `\`. It may say so of a word that needs none (the bytes
/// are then checked one by one), never the other way round.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH;
    let zero = |word: u64| below(word, 1);
    below(word, 0x20)
        | zero(word ^ (ONES * u64::from(b'"')))
        | zero(word ^ (ONES * u64::from(b'\\')))
        != 0
}

/// The stored form of a lifecycle event.
fn lifecycle_entry(
    metadata: &RunMetadata,
    seq: u64,
    event: &WorkerLifecycleEventInput,
    now: &str,
) -> WorkerLifecycleLogEntry {
    let created_at = event.created_at.clone().unwrap_or_else(|| now.to_owned());
    let rendered_line = render_line(
        &created_at,
        event.level,
        event.event_type,
        &event.message,
        &event.data,
    );
    WorkerLifecycleLogEntry {
        task_id: metadata.task_id.clone(),
        step_id: metadata.step_id.clone(),
        run_id: metadata.run_id.clone(),
        seq,
        channel: WorkerLogChannel::Worker,
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type: event.event_type,
        level: event.level,
        created_at,
        message: event.message.clone(),
        data: event.data.clone(),
        rendered_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StreamChunkLogEntry;

    /// Strings that need every kind of escape, and some that need none.
    const AWKWARD: [&str; 7] = [
        "",
        "plain text\n",
        "quotes \" and \\ backslashes",
        "controls \u{0}\u{1}\u{8}\u{c}\t\r\u{1f}\u{7f}",
        "unicode é ✓ 🦀 \u{2028}\u{2029}",
        "</script> & 'single'",
        "ends without a newline",
    ];

    /// Every character, alone and at every place of a word, is escaped as
    /// `serde_json` escapes it.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut chars: Vec<char> = (0u8..=0x7f).map(char::from).collect();
        chars.extend(['é', '\u{80}', '\u{2028}', '🦀', '\u{ffff}']);
        for c in chars {
            for before in 0..10 {
                for after in [0, 1, 7, 8, 9] {
                    let value = format!("{}{c}{}", "a".repeat(before), "b".repeat(after));
                    let mut escaped = Vec::new();
                    write_str(&mut escaped, &value);
                    assert_eq!(
                        String::from_utf8(escaped).unwrap(),
                        serde_json::to_string(&value).unwrap(),
                        "{value:?}"
                    );
                }
            }
        }
        let mixed: String = (0u8..=0x7f).map(char::from).cycle().take(1000).collect();
        let mut escaped = Vec::new();
        write_str(&mut escaped, &mixed);
        assert_eq!(escaped, serde_json::to_vec(&mixed).unwrap());
    }

    /// A chunk's line is byte for byte what serializing its stored entry
    /// writes, whatever its strings hold.
    #[test]
    fn chunk_lines_match_the_serialized_entry() {
        for (index, text) in AWKWARD.into_iter().enumerate() {
            let ids = AWKWARD[(index + 2) % AWKWARD.len()];
            for channel in [StreamLogChannel::Stdout, StreamLogChannel::Stderr] {
                let entry = StreamChunkLogEntry {
                    task_id: format!("task {ids}"),
                    step_id: ids.to_owned(),
                    run_id: format!("{ids} run"),
                    seq: u64::MAX - index as u64,
                    channel,
                    created_at: AWKWARD[(index + 4) % AWKWARD.len()].to_owned(),
                    text: text.to_owned(),
                };
                let mut expected = serde_json::to_vec(&entry).unwrap();
                expected.push(b'\n');
                let mut line = Vec::new();
                let prefix = line_prefix(&entry.task_id, &entry.step_id, &entry.run_id);
                write_chunk_line(
                    &mut line,
                    &prefix,
                    entry.seq,
                    channel,
                    &entry.created_at,
                    &entry.text,
                );
                assert_eq!(
                    String::from_utf8(line).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }
}
