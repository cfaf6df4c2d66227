//! Moving a run from another store into the stream (`baa-logd import`):
//! its metadata, its entries as they are (same `seq`, same times), its
//! state and its writers' cursors, so that a writer still running goes on
//! from where it was and re-sends nothing twice.
//!
//! The run is written as a chain like any other: a `Prepared` record
//! with the metadata and the first entries, then records of at most about
//! a message's worth of entries, each published by compare-and-set, so a
//! run is imported once even when two imports race. Every record carries
//! the final state; import runs while nothing else writes the run.

use std::collections::BTreeMap;

use super::{
    JetStreamStore,
    chain::{Published, Tip},
    record::{NewRecord, RecordKind, RunHead},
};
use crate::{
    error::{Result, StoreError},
    local::{encode::EncodedEntries, journal::commit_time},
    model::{LogEntry, PerChannel, RunMetadata, RunStateSnapshot},
};

/// What importing a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The run is in the stream now, with this many entries.
    Entries(u64),
    /// The stream holds the run already, with the same metadata; nothing
    /// was written.
    AlreadyThere,
}

impl JetStreamStore {
    /// Imports a run: `entries` must be its whole log, `seq` 1 on without
    /// a gap, and `writers` each writer's cursor.
    ///
    /// # Errors
    ///
    /// [`StoreError::MetadataMismatch`] when the stream holds another run
    /// of that name; [`StoreError::DataLoss`] when `entries` has a gap;
    /// those of publishing.
    pub async fn import_run(
        &self,
        metadata: RunMetadata,
        state: RunStateSnapshot,
        writers: Vec<(String, u64)>,
        entries: Vec<LogEntry>,
    ) -> Result<Imported> {
        let key = metadata.key();
        let shared = &self.shared;
        if let Some(tip) = shared.chains.tip(&key).await?.filter(Tip::exists) {
            let existing = shared.chains.metadata(&key, &tip).await?;
            return match existing == metadata {
                true => Ok(Imported::AlreadyThere),
                false => Err(StoreError::MetadataMismatch(key)),
            };
        }
        if let Some((at, entry)) = entries
            .iter()
            .enumerate()
            .find(|(index, entry)| entry.seq() != *index as u64 + 1)
        {
            return Err(StoreError::DataLoss {
                key,
                first_seq: at as u64 + 1,
                last_seq: entry.seq().saturating_sub(1).max(at as u64 + 1),
            });
        }
        let total = entries.len() as u64;
        let mut head = RunHead {
            state,
            next_seq: 1,
            counts: PerChannel::default(),
            writers: writers.into_iter().collect::<BTreeMap<_, _>>(),
            lease_lapse: None,
            reserved_slots: Default::default(),
            origin: 0,
            bytes: 0,
        };
        let mut expected = 0u64;
        let mut time = 0u64;
        let mut rest = entries.into_iter().peekable();
        loop {
            let batch = take_batch(&mut rest, shared.max_payload / 2);
            let encoded = encode(batch);
            let first_seq = head.next_seq;
            let len = encoded.counts.total();
            head.counts.add(&encoded.counts);
            head.next_seq += len;
            head.bytes += encoded.bytes.values().map(|b| b.len() as u64).sum::<u64>();
            time = commit_time(time);
            let kind = match expected {
                0 => RecordKind::Prepared,
                _ => RecordKind::Commit,
            };
            let mut record = NewRecord::new(kind, first_seq, time, Some(encoded), head.clone());
            if kind == RecordKind::Prepared {
                record.head.metadata = Some(metadata.clone());
            }
            match shared.chains.publish(&key, expected, &record).await? {
                Published::Stored(stream_seq) => {
                    if kind == RecordKind::Prepared {
                        head.origin = stream_seq;
                    }
                    expected = stream_seq;
                }
                Published::Conflict if kind == RecordKind::Prepared => {
                    // Another import (or a prepare) came first.
                    return Box::pin(self.import_run(
                        metadata,
                        record.head.run.state,
                        record.head.run.writers.into_iter().collect(),
                        Vec::new(),
                    ))
                    .await;
                }
                Published::Conflict => {
                    return Err(StoreError::Unavailable {
                        context: format!("importing run `{key}`"),
                        cause: "another node wrote the run while it was imported".to_owned(),
                    });
                }
            }
            if rest.peek().is_none() {
                break;
            }
        }
        shared.index.put(&key, &metadata, &head, expected).await;
        Ok(Imported::Entries(total))
    }
}

/// The next entries, up to about `max_bytes` of them (at least one).
fn take_batch(
    rest: &mut std::iter::Peekable<impl Iterator<Item = LogEntry>>,
    max_bytes: usize,
) -> Vec<LogEntry> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(entry) = rest.peek() {
        let size = 512
            + match entry {
                LogEntry::Lifecycle(event) => event.message.len() * 3 + event.rendered_line.len(),
                LogEntry::Chunk(chunk) => chunk.text.len() * 2,
            };
        if bytes + size > max_bytes && !batch.is_empty() {
            break;
        }
        bytes += size;
        batch.extend(rest.next());
    }
    batch
}

/// Entries as the lines of their channels.
fn encode(entries: Vec<LogEntry>) -> EncodedEntries {
    let mut encoded = EncodedEntries {
        bytes: PerChannel::default(),
        counts: PerChannel::default(),
        closed: PerChannel::new(true, true, true),
        entries: Vec::new(),
    };
    for entry in entries {
        let channel = entry.channel();
        let out = &mut encoded.bytes[channel];
        match &entry {
            LogEntry::Lifecycle(event) => serde_json::to_writer(&mut *out, event),
            LogEntry::Chunk(chunk) => serde_json::to_writer(&mut *out, chunk),
        }
        .expect("an entry serializes");
        out.push(b'\n');
        encoded.counts[channel] += 1;
    }
    encoded
}
