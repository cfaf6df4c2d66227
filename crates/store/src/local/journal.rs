//! The append journal, `journal.jsonl` in the run directory: one line per
//! commit, written before the commit's entries.
//!
//! The journal is what lets a run be recovered without reading its logs: the
//! sum of its records gives the next sequence number, the per-channel counts
//! and every writer's cursor, and its last record says where in each channel
//! file the last commit started. Since a record is written before its
//! entries and the next record only after them, only the last commit can be
//! incomplete after a crash, and recovery checks just that one (see
//! [`super::recovery`]).
//!
//! # Checksums
//!
//! A record names the bytes its commit wrote to each channel file
//! (`offsets` and `lens`) with their CRC32C (`crc`), and checksums itself
//! (`check`, over the record's JSON without it). The channel files stay
//! plain JSON lines in the contracts' shape; the checksums live here only.
//! Readers verify a commit's bytes before they serve any of its entries,
//! and recovery verifies the commits it keeps at the end of the files.
//! Records written before checksums existed have none of the three fields
//! and are taken on trust, as they always were.

use serde::{Deserialize, Serialize};

use crate::model::{PerChannel, WorkerLogChannel};

/// One commit: a run of consecutive sequence numbers from at most one
/// writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalRecord {
    /// The first sequence number of the commit.
    pub(crate) first_seq: u64,
    /// The last sequence number of the commit.
    pub(crate) last_seq: u64,
    /// The writer; unset for entries the store writes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) writer_id: Option<String>,
    /// The writer sequence number of the first entry; the rest follow it one
    /// by one.
    #[serde(default)]
    pub(crate) writer_seq: u64,
    /// Entries per channel, stored as `[worker, stdout, stderr]`.
    pub(crate) counts: PerChannel<u64>,
    /// The length of each channel file when the commit started: where its
    /// entries begin; stored as `[worker, stdout, stderr]`.
    pub(crate) offsets: PerChannel<u64>,
    /// True for the record that adopts channel files written without a
    /// journal (an existing run found on disk). Its entries are taken as
    /// they are, gaps included, and never cut by recovery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) imported: bool,
    /// True for a record that recovery writes for commits the journal
    /// knew but the files had lost (a power loss): it holds no entries,
    /// keeps their sequence numbers from being given out again, and
    /// readers report its range as lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) lost: bool,
    /// True for a record that recovery wrote in place of journal lines it
    /// found damaged between two intact records: it covers the sequence
    /// numbers and channel bytes between them, which can no longer be
    /// checked, so readers report its range as damaged and skip its bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) damaged: bool,
    /// True for an `imported` record that recovery wrote when the journal
    /// held no record it could read, while the files held writers'
    /// entries: which items each writer sent is unknown, so the run takes
    /// no more writer appends (a re-send could store lines twice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) writers_lost: bool,
    /// Set on the commits of the lifecycle entries a store writes about a
    /// worker lease (see [`crate::lease`]): this is where a run keeps, across
    /// restarts, that it failed only because its lease expired, since
    /// `state.json` holds the contract's fields alone. Unset on every other
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease: Option<LeaseMark>,
    /// When the store committed it: milliseconds since the Unix epoch,
    /// never less than the record before (see [`commit_time`]). Unset in
    /// records written before commit times were kept, and in the records
    /// recovery writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time: Option<u64>,
    /// Whether every chunk the commit wrote to each channel ends with a
    /// newline, so that no line of it goes on in a later commit (a search
    /// skips such commits whole when their bytes hold no match). Unset in
    /// records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) closed: Option<PerChannel<bool>>,
    /// The bytes the commit wrote to each channel file, from `offsets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lens: Option<PerChannel<u64>>,
    /// The CRC32C of those bytes, per channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crc: Option<PerChannel<u32>>,
    /// The CRC32C of this record's JSON line without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) check: Option<u32>,
}

/// Which step of a worker lease a commit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LeaseMark {
    /// The lease expired and the run failed.
    Expired,
    /// A writer came back and delivers late from the next commit on.
    Returned,
    /// A returning writer set the run's final status: the lapse is over.
    Settled,
}

/// A run failed only because its worker lease expired, as the journal
/// tells it: it still takes its earlier writers' late entries and one
/// final status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LeaseLapse {
    /// A writer came back: the `worker_execution_deferred` entry is stored.
    pub(crate) returned: bool,
    /// How many entries writers delivered since the lease expired.
    pub(crate) late_entries: u64,
}

impl LeaseLapse {
    /// The lapse after `record`, given the one before it: the one place
    /// that reads lease marks, for recovery and for each commit alike.
    pub(crate) fn follow(lapse: &mut Option<Self>, record: &JournalRecord) {
        match (record.lease, lapse.as_mut()) {
            (Some(LeaseMark::Expired), _) => *lapse = Some(Self::default()),
            (Some(LeaseMark::Returned), Some(lapse)) => lapse.returned = true,
            (Some(LeaseMark::Settled), _) => *lapse = None,
            (None, Some(lapse)) if record.writer_id.is_some() => {
                lapse.late_entries += record.len();
            }
            _ => {}
        }
    }
}

impl JournalRecord {
    /// The number of entries of the commit.
    pub(crate) fn len(&self) -> u64 {
        self.last_seq + 1 - self.first_seq
    }

    /// Whether the commit is one lifecycle entry the store wrote itself,
    /// apart from the lease's: a `run_prepared` entry or a checkpoint
    /// slot's reservation. A writer's entries always name their writer,
    /// so no worker can make one.
    pub(crate) fn is_store_event(&self) -> bool {
        self.writer_id.is_none()
            && self.lease.is_none()
            && !(self.imported || self.lost || self.damaged)
            && self.len() == 1
            && self.counts[WorkerLogChannel::Worker] == 1
    }

    /// Whether the commit holds `seq`.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        (self.first_seq..=self.last_seq).contains(&seq)
    }

    /// Records the bytes the commit writes to each channel, with their
    /// checksums.
    pub(crate) fn with_bytes(mut self, bytes: &PerChannel<Vec<u8>>) -> Self {
        self.lens = Some(bytes.each_ref().map(|_, bytes| bytes.len() as u64));
        self.crc = Some(bytes.each_ref().map(|_, bytes| crc32c::crc32c(bytes)));
        self
    }

    /// Where the commit's bytes end in each channel file, when the record
    /// says.
    pub(crate) fn ends(&self) -> Option<PerChannel<u64>> {
        let lens = self.lens?;
        Some(self.offsets.map(|channel, offset| offset + lens[channel]))
    }

    /// The record as one journal line, checksummed.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let unchecked = Self {
            check: None,
            ..self.clone()
        };
        let mut line = serde_json::to_vec(&unchecked).expect("a journal record serializes");
        let check = crc32c::crc32c(&line);
        // `check` is the last field: the checked record is the unchecked
        // one with it added before the closing brace, as serde writes it.
        line.pop();
        line.extend_from_slice(format!(",\"check\":{check}}}\n").as_bytes());
        line
    }

    /// The record as a journal line of exactly `len` bytes, newline
    /// included, padded with spaces before the newline (JSON allows them):
    /// to be written in place of `len` damaged bytes. `None` when it does
    /// not fit.
    pub(crate) fn to_line_of(&self, len: usize) -> Option<Vec<u8>> {
        let mut line = self.to_line();
        if line.len() > len {
            return None;
        }
        line.pop();
        line.resize(len - 1, b' ');
        line.push(b'\n');
        Some(line)
    }

    /// Reads a journal line back: `None` when it is not a record, or its
    /// checksum says it was altered.
    ///
    /// The check covers the line's own bytes before `,"check":`, so a
    /// record with fields a later version adds still checks; a line whose
    /// fields were reordered checks as the record they make.
    pub(crate) fn from_line(line: &[u8]) -> Option<Self> {
        let record: Self = serde_json::from_slice(line).ok()?;
        let Some(check) = record.check else {
            return Some(record);
        };
        const FIELD: &[u8] = b",\"check\":";
        let as_written = line
            .windows(FIELD.len())
            .rposition(|window| window == FIELD)
            .is_some_and(|at| {
                let crc = crc32c::crc32c(&line[..at]);
                crc32c::crc32c_append(crc, b"}") == check
            });
        // The same fields in another order (a line rewritten by a tool)
        // check as the record this version writes for them.
        let as_known = || {
            let unchecked = Self {
                check: None,
                ..record.clone()
            };
            serde_json::to_vec(&unchecked).is_ok_and(|bytes| crc32c::crc32c(&bytes) == check)
        };
        (as_written || as_known()).then_some(record)
    }
}

/// The commit time of a commit after one committed at `last` (0 for
/// none): now, in milliseconds since the Unix epoch, but never less than
/// `last`, so that commit times only move forward within a run even when
/// the clock steps back.
pub(crate) fn commit_time(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    now.max(last)
}

/// Whether `bytes`, the bytes of one channel of a commit, are what the
/// commit wrote, when its record says.
pub(crate) fn verify(
    record: &JournalRecord,
    channel: crate::model::WorkerLogChannel,
    bytes: &[u8],
) -> bool {
    match (record.lens, record.crc) {
        (Some(lens), Some(crc)) => {
            bytes.len() as u64 == lens[channel] && crc32c::crc32c(bytes) == crc[channel]
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> JournalRecord {
        JournalRecord {
            first_seq: 2,
            last_seq: 4,
            writer_id: Some("w".into()),
            writer_seq: 1,
            counts: PerChannel::new(1, 2, 0),
            offsets: PerChannel::new(10, 20, 0),
            imported: false,
            lost: false,
            damaged: false,
            writers_lost: false,
            lease: None,
            time: Some(1_700_000_000_000),
            closed: None,
            lens: None,
            crc: None,
            check: None,
        }
        .with_bytes(&PerChannel::new(
            b"a\n".to_vec(),
            b"bb\n".to_vec(),
            Vec::new(),
        ))
    }

    /// A record padded to a longer line reads back the same, with its
    /// check intact; a line too short for it is refused.
    #[test]
    fn a_padded_record_reads_back() {
        let line = record().to_line();
        let padded = record().to_line_of(line.len() + 40).unwrap();
        assert_eq!(padded.len(), line.len() + 40);
        assert_eq!(padded.last(), Some(&b'\n'));
        let read = JournalRecord::from_line(&padded[..padded.len() - 1]).unwrap();
        assert_eq!(
            read,
            JournalRecord::from_line(&line[..line.len() - 1]).unwrap()
        );
        assert!(record().to_line_of(line.len() - 1).is_none());
    }

    /// A record reads back as written; one altered byte anywhere in its
    /// line makes it unreadable; a record without a check (written before
    /// checksums) is taken as it is.
    #[test]
    fn a_record_checks_itself() {
        let line = record().to_line();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("\"check\":"), "{text}");
        let body = &line[..line.len() - 1];
        let read = JournalRecord::from_line(body).unwrap();
        assert_eq!(
            read,
            JournalRecord {
                check: read.check,
                ..record()
            }
        );
        let original = JournalRecord::from_line(body).unwrap();
        for at in 0..body.len() {
            let mut altered = body.to_vec();
            altered[at] ^= 0x01;
            if let Some(read) = JournalRecord::from_line(&altered) {
                // Only the name of `check` itself can be altered into an
                // unknown key: the record then reads as one from before
                // checksums, with the very same content.
                assert_eq!(
                    read,
                    JournalRecord {
                        check: None,
                        ..original.clone()
                    },
                    "byte {at} altered and read as another record"
                );
            }
        }
        let old = br#"{"firstSeq":1,"lastSeq":1,"counts":[1,0,0],"offsets":[0,0,0]}"#;
        assert_eq!(JournalRecord::from_line(old).unwrap().lens, None);
    }

    /// A record from a later version, with a field this one does not know,
    /// still checks: the check covers the line as written.
    #[test]
    fn a_record_with_an_unknown_field_checks() {
        let line = record().to_line();
        let text = String::from_utf8(line).unwrap();
        let at = text.find(",\"check\":").unwrap();
        let body = format!("{},\"later\":[1,2]}}", &text[..at]);
        let check = crc32c::crc32c(body.as_bytes());
        let later = format!("{},\"check\":{check}}}", &body[..body.len() - 1]);
        let read = JournalRecord::from_line(later.as_bytes()).expect("it checks");
        assert_eq!(read.first_seq, 2);
        let altered = later.replace("[1,2]", "[1,3]");
        assert!(JournalRecord::from_line(altered.as_bytes()).is_none());
    }

    /// A commit's bytes verify against their record, and altered or cut
    /// bytes do not.
    #[test]
    fn bytes_verify_against_their_record() {
        use crate::model::WorkerLogChannel::{Stdout, Worker};
        let record = record();
        assert!(verify(&record, Worker, b"a\n"));
        assert!(verify(&record, Stdout, b"bb\n"));
        assert!(!verify(&record, Stdout, b"bc\n"));
        assert!(!verify(&record, Stdout, b"bb"));
        assert_eq!(record.ends(), Some(PerChannel::new(12, 23, 0)));
    }
}
