//! Moving a run from another store into the stream (`baa-logd import`):
//! its metadata, its entries as they are (same `seq`, same times), its
//! state and its writers' cursors, so that a writer still running goes on
//! from where it was and re-sends nothing twice.
//!
//! The run is written as a chain like any other: a `Prepared` record
//! with the metadata and the first entries, then records of at most about
//! a message's worth of entries, each published by compare-and-set, so a
//! run is imported once even when two imports race. Until the last
//! record, the run is marked as being imported: it takes no writes, and
//! its writers' cursors are not set, so no writer skips what is not in
//! yet; running the import again resumes it. Each record's time is its
//! last entry's, so time bounds find imported entries.
//!
//! The run's objects come after its entries, each copied into the
//! objects bucket and checked against its SHA-256, then committed by a
//! record of its own. The checkpoint slots past the run's checkpoint that
//! hold objects stay open; a slot reserved but empty is not carried over
//! (the worker reserves another).

use std::{collections::BTreeMap, time::UNIX_EPOCH};

use super::{
    JetStreamStore,
    chain::{Published, Tip},
    objects::last_object_record,
    record::{NewRecord, RecordKind, RunHead},
};
use crate::{
    ObjectStore,
    error::{Result, StoreError},
    local::{encode::EncodedEntries, journal::commit_time},
    model::{LogEntry, PerChannel, RunKey, RunMetadata, RunStateSnapshot},
    objects::{ObjectKind, ObjectRef},
    time::parse_iso,
};

/// What importing a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The run is in the stream now.
    Copied {
        /// Its entries.
        entries: u64,
        /// Its objects copied by this import.
        objects: u64,
    },
    /// The stream holds the run already, with the same metadata; nothing
    /// was written.
    AlreadyThere,
}

impl JetStreamStore {
    /// Imports a run: `entries` must be its whole log, `seq` 1 on without
    /// a gap, `writers` each writer's cursor, and `source` the store that
    /// holds its objects.
    ///
    /// The records are written with the run marked as being imported,
    /// which takes no writes and no writer cursor; the last record then
    /// sets the writers' cursors and ends the import. An import that
    /// stopped part way is resumed from the run's last record by running
    /// it again.
    ///
    /// # Errors
    ///
    /// [`StoreError::MetadataMismatch`] when the stream holds another run
    /// of that name; [`StoreError::DataLoss`] when `entries` has a gap;
    /// [`StoreError::Unavailable`] when another node wrote the run
    /// meanwhile, and those of publishing.
    pub async fn import_run(
        &self,
        metadata: RunMetadata,
        state: RunStateSnapshot,
        writers: Vec<(String, u64)>,
        entries: Vec<LogEntry>,
        source: &impl ObjectStore,
    ) -> Result<Imported> {
        let key = metadata.key();
        let shared = &self.shared;
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
        // Where to start: a new run (over a deleted one's tombstone, if
        // any), or the records an import that stopped left.
        let mut head = RunHead {
            state,
            next_seq: 1,
            counts: PerChannel::default(),
            writers: BTreeMap::new(),
            lease_lapse: None,
            reserved_slots: Default::default(),
            origin: 0,
            bytes: 0,
            importing: true,
            objects: Default::default(),
        };
        let (mut expected, mut time) = (0u64, 0u64);
        let mut resumed = None;
        match shared.chains.tip(&key).await? {
            Some(tip) if tip.exists() => {
                let existing = shared.chains.metadata(&key, &tip).await?;
                if existing != metadata {
                    return Err(StoreError::MetadataMismatch(key));
                }
                if !tip.head.run.importing {
                    return Ok(Imported::AlreadyThere);
                }
                head.next_seq = tip.head.run.next_seq;
                head.counts = tip.head.run.counts;
                head.bytes = tip.head.run.bytes;
                head.origin = match tip.head.kind {
                    RecordKind::Prepared => tip.stream_seq,
                    _ => tip.head.run.origin,
                };
                head.objects = tip.head.run.objects;
                head.objects.last = last_object_record(&tip);
                expected = tip.stream_seq;
                time = tip.head.time;
                resumed = Some(tip);
            }
            Some(tombstone) => {
                shared.finish_deletion(&key, &tombstone).await?;
                expected = tombstone.stream_seq;
            }
            None => {}
        }
        let skip = head.next_seq - 1;
        let mut rest = entries.into_iter().skip(skip as usize).peekable();
        let mut prepared = head.origin != 0;
        while rest.peek().is_some() || !prepared {
            let batch = take_batch(&mut rest, shared.max_payload / 2);
            time = batch_time(&batch, time);
            let encoded = encode(batch);
            let first_seq = head.next_seq;
            head.counts.add(&encoded.counts);
            head.next_seq += encoded.counts.total();
            head.bytes += encoded.bytes.values().map(|b| b.len() as u64).sum::<u64>();
            let kind = match prepared {
                false => RecordKind::Prepared,
                true => RecordKind::Commit,
            };
            let mut record = NewRecord::new(kind, first_seq, time, Some(encoded), head.clone());
            if kind == RecordKind::Prepared {
                record.head.metadata = Some(metadata.clone());
            }
            expected = self.publish_import(&key, expected, &record).await?;
            if kind == RecordKind::Prepared {
                head.origin = expected;
                prepared = true;
            }
        }
        let copied = self
            .import_objects(&key, &mut head, &mut expected, time, resumed, source)
            .await?;
        // The last record: the writers' cursors, and the run open.
        head.importing = false;
        head.writers = writers.into_iter().collect();
        let last = NewRecord::new(RecordKind::Commit, head.next_seq, time, None, head.clone());
        let stored = self.publish_import(&key, expected, &last).await?;
        shared.index.put(&key, &metadata, &head, stored).await;
        Ok(Imported::Copied {
            entries: total,
            objects: copied,
        })
    }

    /// Copies the objects of `key` that `source` holds and the stream
    /// does not yet, each committed by a record after `expected`, which
    /// moves on; returns how many were copied.
    async fn import_objects(
        &self,
        key: &RunKey,
        head: &mut RunHead,
        expected: &mut u64,
        time: u64,
        resumed: Option<Tip>,
        source: &impl ObjectStore,
    ) -> Result<u64> {
        let shared = &self.shared;
        let done = match &resumed {
            Some(tip) => shared.objects_at(key, tip).await?,
            None => Vec::new(),
        };
        let listing = source.list_objects(key, None).await?;
        let mut copied = 0;
        for info in listing.objects {
            if info.kind == ObjectKind::Checkpoint
                && info.checkpoint_seq > head.state.checkpoint_seq
            {
                head.reserved_slots.insert(info.checkpoint_seq);
            }
            let object = ObjectRef {
                key: key.clone(),
                kind: info.kind,
                name: info.name.clone(),
                checkpoint_seq: info.checkpoint_seq,
            };
            if done.iter().any(|mark| mark.is(&object)) {
                continue;
            }
            let (_, mut reader) = source.open_object(object).await?;
            let (mark, revision) = shared
                .objects
                .copy_object(key, head.origin, &info, &mut reader)
                .await?;
            head.objects.count += 1;
            head.objects.bytes += info.size;
            let mut record =
                NewRecord::new(RecordKind::Commit, head.next_seq, time, None, head.clone());
            record.head.object = Some(mark.clone());
            *expected = self.publish_import(key, *expected, &record).await?;
            head.objects.last = *expected;
            shared.objects.end_copy(key, &info, &mark, revision).await;
            copied += 1;
        }
        Ok(copied)
    }

    /// Publishes one record of an import after `expected`; returns its
    /// stream sequence.
    async fn publish_import(&self, key: &RunKey, expected: u64, record: &NewRecord) -> Result<u64> {
        match self.shared.chains.publish(key, expected, record).await? {
            Published::Stored(stream_seq) => Ok(stream_seq),
            Published::Conflict => Err(StoreError::Unavailable {
                context: format!("importing run `{key}`"),
                cause: "another node wrote the run meanwhile; run the import again".to_owned(),
            }),
        }
    }
}

/// The commit time of a batch: its last entry's time, never before
/// `before`, so that time bounds find imported entries by their times.
fn batch_time(batch: &[LogEntry], before: u64) -> u64 {
    let last = batch.last().and_then(|entry| {
        let created_at = match entry {
            LogEntry::Lifecycle(event) => &event.created_at,
            LogEntry::Chunk(chunk) => &chunk.created_at,
        };
        let time = parse_iso(created_at)?;
        Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
    });
    last.unwrap_or_else(|| commit_time(before)).max(before)
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
