//! Turning appended payloads into stored entries: the JSON lines of each
//! channel file, and the decoded entries that followers read from memory.

use crate::{
    model::{
        AppendPayload, LogEntry, PerChannel, RunMetadata, StreamChunkLogEntry,
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
    pub(crate) entries: Vec<LogEntry>,
}

/// Turns payloads into stored entries from `first_seq` on, as JSON lines.
/// `now` stands in for every unset time.
pub(crate) fn encode_entries(
    metadata: &RunMetadata,
    first_seq: u64,
    payloads: &[AppendPayload],
    now: &str,
) -> EncodedEntries {
    let mut encoded = EncodedEntries {
        bytes: PerChannel::default(),
        counts: PerChannel::default(),
        closed: PerChannel::new(true, true, true),
        entries: Vec::with_capacity(payloads.len()),
    };
    for (seq, payload) in (first_seq..).zip(payloads) {
        let entry = match payload {
            AppendPayload::Event(event) => {
                LogEntry::Lifecycle(lifecycle_entry(metadata, seq, event, now))
            }
            AppendPayload::Chunk(channel, chunk) => {
                // An empty chunk counts as open too: a search that skipped
                // it would count a line that is not there.
                if !chunk.text.ends_with('\n') {
                    encoded.closed[WorkerLogChannel::from(*channel)] = false;
                }
                LogEntry::Chunk(StreamChunkLogEntry {
                    task_id: metadata.task_id.clone(),
                    step_id: metadata.step_id.clone(),
                    run_id: metadata.run_id.clone(),
                    seq,
                    channel: *channel,
                    created_at: chunk.created_at.clone().unwrap_or_else(|| now.to_owned()),
                    text: chunk.text.clone(),
                })
            }
        };
        let channel = entry.channel();
        let out = &mut encoded.bytes[channel];
        match &entry {
            LogEntry::Lifecycle(entry) => serde_json::to_writer(&mut *out, entry),
            LogEntry::Chunk(entry) => serde_json::to_writer(&mut *out, entry),
        }
        .expect("an entry serializes");
        out.push(b'\n');
        encoded.counts[channel] += 1;
        encoded.entries.push(entry);
    }
    encoded
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
