//! One message of a run's subject: a record of what one commit did.
//!
//! The payload is one line of JSON, the [`RecordHead`], then the entries
//! the commit stored, as the lines of each channel file of the local
//! layout, channel after channel (worker, stdout, stderr; their byte
//! lengths are in the head). So a commit is one message: a follower never
//! sees part of one, and what `baa-logd import` moves from a data
//! directory is the same lines.
//!
//! Every head carries the whole [`RunHead`] after the commit: the state,
//! the next `seq`, each writer's cursor, the lease marks. A node that has
//! never seen the run reads its last message alone and knows all it needs
//! to append, and a writer's cursor comes from the same message as the
//! entries it counts, never from a separate write.
//!
//! The payload's CRC-32C travels in a header and is checked on every read:
//! a message that does not match is reported as damaged and not served.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Result, StoreError},
    local::{channel_reader::decode_line, encode::EncodedEntries},
    model::{
        LocalRunLogSummary, LogEntry, PerChannel, RunKey, RunMetadata, RunStateSnapshot, RunStatus,
        WorkerLogChannel,
    },
    objects::ObjectKind,
};

/// The version of the record format this build writes and reads.
const VERSION: u32 = 1;

/// The header with the payload's CRC-32C, in lower-case hex.
pub(crate) const CRC_HEADER: &str = "Baa-Crc32c";

/// The header with the first `seq` the record stores.
pub(crate) const FIRST_SEQ_HEADER: &str = "Baa-First-Seq";

/// The header with the commit time, in milliseconds since the epoch.
pub(crate) const TIME_HEADER: &str = "Baa-Time";

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecordKind {
    /// The run was prepared: the first record of the run, with its
    /// metadata and its `run_prepared` entry.
    Prepared,
    /// Entries, and maybe a new state.
    Commit,
    /// The run was deleted by retention. Nothing before it is kept.
    Deleted,
}

/// A writer's part in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WriterMark {
    /// The writer.
    pub(crate) id: String,
    /// The writer sequence number of the commit's last entry.
    pub(crate) last_writer_seq: u64,
}

/// A run failed only because its worker lease expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Lapse {
    /// A writer of the run came back and delivers late.
    pub(crate) returned: bool,
    /// The entries delivered late so far.
    pub(crate) late_entries: u64,
}

/// A committed object, as the record that committed it names it: its
/// bytes are the chunks of `nuid` in the objects bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectMark {
    /// The directory.
    pub(crate) kind: ObjectKind,
    /// The checkpoint slot; 0 for an artifact.
    pub(crate) checkpoint_seq: u64,
    /// The path under the directory.
    pub(crate) name: String,
    /// The size in bytes.
    pub(crate) size: u64,
    /// The SHA-256, in lower-case hex.
    pub(crate) sha256: String,
    /// The token of its chunks' subject in the objects bucket.
    pub(crate) nuid: String,
    /// How many chunks hold it.
    pub(crate) chunks: u64,
    /// The stream sequences of its first and last chunk (0 for none).
    pub(crate) first_chunk: u64,
    /// See `first_chunk`.
    pub(crate) last_chunk: u64,
    /// When it was committed, in `toISOString` form.
    pub(crate) committed_at: String,
}

/// A run's objects, as a record leaves them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectsHead {
    /// The stream sequence of the last record before this one that
    /// committed an object (0 for none); each such record names the one
    /// before it the same way, so the run's objects are a list from its
    /// tip back.
    pub(crate) last: u64,
    /// How many objects the run has.
    pub(crate) count: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
}

impl ObjectsHead {
    /// Whether the run has never had an object.
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Everything about a run that the next commit needs, as it stands after
/// a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunHead {
    /// The state.
    pub(crate) state: RunStateSnapshot,
    /// The `seq` of the next entry.
    pub(crate) next_seq: u64,
    /// Entries per channel, in all.
    pub(crate) counts: PerChannel<u64>,
    /// The last writer sequence number stored, per writer.
    pub(crate) writers: BTreeMap<String, u64>,
    /// Set while the run is failed only because its worker lease expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease_lapse: Option<Lapse>,
    /// Checkpoint slots reserved.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) reserved_slots: BTreeSet<u64>,
    /// The stream sequence of the run's `Prepared` record, where its
    /// metadata is (0 in that record itself).
    pub(crate) origin: u64,
    /// The bytes of the run's entries, as their lines, for retention.
    #[serde(default)]
    pub(crate) bytes: u64,
    /// The run is being imported (`baa-logd import`) and takes no writes
    /// until its last record is in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) importing: bool,
    /// The run's objects.
    #[serde(default, skip_serializing_if = "ObjectsHead::is_empty")]
    pub(crate) objects: ObjectsHead,
}

impl RunHead {
    /// The last writer sequence number stored from `writer_id`.
    pub(crate) fn writer_seq(&self, writer_id: &str) -> u64 {
        self.writers.get(writer_id).copied().unwrap_or(0)
    }

    /// The log summary.
    pub(crate) fn summary(&self) -> LocalRunLogSummary {
        LocalRunLogSummary::from_counts(self.counts, self.next_seq - 1)
    }

    /// Whether the run is failed only because its worker lease expired.
    pub(crate) fn lease_lapsed(&self) -> bool {
        self.state.status == RunStatus::Failed && self.lease_lapse.is_some()
    }

    /// Whether `writer_id` may deliver late to a lease-failed run.
    pub(crate) fn late_writer(&self, writer_id: &str) -> bool {
        self.lease_lapsed() && self.writer_seq(writer_id) > 0
    }
}

/// The first line of a record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordHead {
    /// The format's version.
    pub(crate) v: u32,
    /// What the record is.
    pub(crate) kind: RecordKind,
    /// The `seq` of the record's first entry (the run's next one when it
    /// stores none).
    pub(crate) first_seq: u64,
    /// The commit time, in milliseconds since the epoch; it never goes
    /// back within a run.
    pub(crate) time: u64,
    /// The byte length of each channel's lines in the payload.
    pub(crate) lens: PerChannel<u64>,
    /// The entries of each channel in the record.
    pub(crate) counts: PerChannel<u64>,
    /// The writer whose items the record stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) writer: Option<WriterMark>,
    /// The run after the record.
    pub(crate) run: RunHead,
    /// The run's metadata, in its `Prepared` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<RunMetadata>,
    /// The object the record commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) object: Option<ObjectMark>,
}

impl RecordHead {
    /// How many entries the record stores.
    pub(crate) fn len(&self) -> u64 {
        self.counts.total()
    }

    /// The `seq` of the record's last entry; `first_seq - 1` for none.
    pub(crate) fn last_seq(&self) -> u64 {
        self.first_seq + self.len() - 1
    }
}

/// A record to publish: its head, and the entries' lines.
#[derive(Debug)]
pub(crate) struct NewRecord {
    /// The head.
    pub(crate) head: RecordHead,
    /// Each channel's lines.
    pub(crate) lines: PerChannel<Vec<u8>>,
}

impl NewRecord {
    /// A record of `kind` storing `encoded` (none for `None`).
    pub(crate) fn new(
        kind: RecordKind,
        first_seq: u64,
        time: u64,
        encoded: Option<EncodedEntries>,
        run: RunHead,
    ) -> Self {
        let (lines, counts) = match encoded {
            Some(encoded) => (encoded.bytes, encoded.counts),
            None => (PerChannel::default(), PerChannel::default()),
        };
        Self {
            head: RecordHead {
                v: VERSION,
                kind,
                first_seq,
                time,
                lens: lines.each_ref().map(|_, bytes| bytes.len() as u64),
                counts,
                writer: None,
                run,
                metadata: None,
                object: None,
            },
            lines,
        }
    }

    /// The payload and its headers.
    pub(crate) fn encode(&self) -> (Bytes, HeaderMap) {
        let mut payload = serde_json::to_vec(&self.head).expect("a record head serializes");
        payload.push(b'\n');
        for bytes in self.lines.values() {
            payload.extend_from_slice(bytes);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CRC_HEADER,
            format!("{:08x}", crc32c::crc32c(&payload)).as_str(),
        );
        headers.insert(FIRST_SEQ_HEADER, self.head.first_seq.to_string().as_str());
        headers.insert(TIME_HEADER, self.head.time.to_string().as_str());
        (Bytes::from(payload), headers)
    }
}

/// A record as read: its head and where its lines are in the payload.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The head.
    pub(crate) head: RecordHead,
    /// The payload.
    payload: Bytes,
    /// Where the lines start in it.
    body: usize,
}

impl Record {
    /// The bytes of its message's payload.
    pub(crate) fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// Decodes and checks the message at stream sequence `stream_seq` of
    /// `key`'s subject.
    ///
    /// # Errors
    ///
    /// [`StoreError::Damaged`] for a payload that fails its checksum or
    /// does not parse.
    pub(crate) fn decode(
        key: &RunKey,
        stream_seq: u64,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<Self> {
        let damaged = |problem: String| {
            StoreError::damaged(
                format!("jetstream message {stream_seq} of run {key}"),
                problem,
            )
        };
        let crc = headers
            .and_then(|headers| headers.get(CRC_HEADER))
            .ok_or_else(|| damaged(format!("has no {CRC_HEADER} header")))?;
        let expected = format!("{:08x}", crc32c::crc32c(&payload));
        if crc.as_str() != expected {
            return Err(damaged(format!(
                "fails its checksum (CRC-32C {expected}, header {})",
                crc.as_str()
            )));
        }
        let end = memchr::memchr(b'\n', &payload)
            .ok_or_else(|| damaged("has no head line".to_owned()))?;
        let head: RecordHead = serde_json::from_slice(&payload[..end])
            .map_err(|err| damaged(format!("has an invalid head: {err}")))?;
        if head.v != VERSION {
            return Err(damaged(format!(
                "is in record format {}, this server reads {VERSION}",
                head.v
            )));
        }
        let body_len: u64 = head.lens.values().sum();
        if (payload.len() - end - 1) as u64 != body_len {
            return Err(damaged("is cut short or too long".to_owned()));
        }
        Ok(Self {
            head,
            payload,
            body: end + 1,
        })
    }

    /// The record's entries, in `seq` order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Damaged`] for a line that does not parse.
    pub(crate) fn entries(&self, key: &RunKey) -> Result<Vec<LogEntry>> {
        let mut entries = Vec::with_capacity(self.head.len() as usize);
        let mut at = self.body;
        for channel in WorkerLogChannel::ALL {
            let len = self.head.lens[channel] as usize;
            let block = &self.payload[at..at + len];
            at += len;
            for line in block.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()) {
                let entry = decode_line(channel, line).map_err(|err| {
                    StoreError::damaged(
                        format!(
                            "jetstream record of run {key} at seq {}",
                            self.head.first_seq
                        ),
                        format!("holds an invalid entry: {err}"),
                    )
                })?;
                entries.push(entry);
            }
        }
        entries.sort_by_key(LogEntry::seq);
        Ok(entries)
    }
}
