//! Turning what a reader asks for (a tail, time bounds, sequence bounds)
//! into the sequence numbers it reads between, from the journal alone and
//! without reading the run from its start.
//!
//! - **Time bounds** select by commit time, which the journal records and
//!   which only moves forward within a run: a binary search over the
//!   journal's lines finds the first commit at or after a time, then a
//!   short walk forward. Runs whose first record has no time (written
//!   before commit times were kept, or adopted from files) are scanned
//!   forward instead, by the entries' `createdAt` where a record has no
//!   time.
//! - **A tail** walks the journal backward from the upper bound, adding the
//!   selected channels' counts of each commit, until it has enough; only
//!   the commit it stops in (and one cut by the upper bound) is read, to
//!   find the exact first entry.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    time::{SystemTime, UNIX_EPOCH},
};

use chrono::DateTime;

use super::{
    channel_reader::{merge, open_channels},
    journal::JournalRecord,
    lines::{scan_lines, seek_by},
    run::Run,
};
use crate::{
    error::{Result, StoreError},
    model::{ChannelSet, LogEntry},
    run_store::ReadFrom,
};

/// How much of the journal a backward walk reads at a time.
const BACK_CHUNK: u64 = 64 * 1024;

/// The sequence numbers a reader returns: from `from_seq` up to
/// `to_seq`, when bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqRange {
    /// The first sequence number to return.
    pub(crate) from_seq: u64,
    /// The last one; `None` for no bound.
    pub(crate) to_seq: Option<u64>,
}

/// Resolves `from` against `run`, whose committed entries end at
/// `committed`. Blocking: it reads the journal.
pub(crate) fn resolve(run: &Run, from: &ReadFrom, committed: u64) -> Result<SeqRange> {
    let mut from_seq = from.from_seq.max(1);
    let mut to_seq = from.to_seq.filter(|to_seq| *to_seq > 0);
    if from.history_only {
        to_seq = Some(to_seq.map_or(committed, |to_seq| to_seq.min(committed)));
    }
    let journal = Journal { run };
    if let Some(since) = from.since {
        from_seq = from_seq.max(journal.first_at_or_after(millis(since), committed)?);
    }
    if let Some(until) = from.until {
        let after = journal.first_at_or_after(millis(until).saturating_add(1), committed)?;
        let until_seq = after - 1;
        to_seq = Some(to_seq.map_or(until_seq, |to_seq| to_seq.min(until_seq)));
    }
    if let Some(tail) = from.tail {
        let upper = to_seq.map_or(committed, |to_seq| to_seq.min(committed));
        let start = match tail {
            0 => upper + 1,
            _ if upper < from_seq => upper + 1,
            tail => journal.tail_start(from.channels, tail, upper)?,
        };
        from_seq = from_seq.max(start);
    }
    Ok(SeqRange { from_seq, to_seq })
}

/// Milliseconds since the Unix epoch (0 for earlier times).
fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// A run's journal, read for bounds.
struct Journal<'a> {
    /// The run.
    run: &'a Run,
}

impl Journal<'_> {
    /// The journal file, open.
    fn open(&self) -> Result<(File, u64)> {
        let file = File::open(self.run.dir.journal()).map_err(|err| self.error(err))?;
        let len = file.metadata().map_err(|err| self.error(err))?.len();
        Ok((file, len))
    }

    /// An error reading the journal.
    fn error(&self, err: io::Error) -> StoreError {
        StoreError::io(
            format!("cannot read {}", self.run.dir.journal().display()),
            err,
        )
    }

    /// The first sequence number committed at or after `time` (ms), or
    /// `committed + 1` when none is.
    fn first_at_or_after(&self, time: u64, committed: u64) -> Result<u64> {
        let (mut file, len) = self.open()?;
        let timed = first_record(&mut file)
            .map_err(|err| self.error(err))?
            .is_none_or(|record| record.time.is_some());
        let start = match timed {
            true => seek_by(&mut file, len, time, record_time).map_err(|err| self.error(err))?,
            false => 0,
        };
        let mut found = None;
        let mut failed = None;
        scan_lines(&mut file, start, |line, _| {
            let Some(record) = JournalRecord::from_line(line) else {
                failed = Some(damaged_line());
                return false;
            };
            if record.first_seq > committed {
                return false;
            }
            match record.time {
                Some(at) if at >= time => found = Some(record.first_seq),
                Some(_) => {}
                None if record.lost || record.damaged => {}
                None => match self.scan_created(&record, time, committed) {
                    Ok(seq) => found = seq,
                    Err(err) => failed = Some(err),
                },
            }
            found.is_none() && failed.is_none()
        })
        .map_err(|err| self.error(err))?;
        match failed {
            Some(err) => Err(err),
            None => Ok(found.unwrap_or(committed + 1)),
        }
    }

    /// The first entry of a record without a commit time whose
    /// `createdAt` is at or after `time`: the fallback for runs written
    /// before commit times were kept.
    fn scan_created(
        &self,
        record: &JournalRecord,
        time: u64,
        committed: u64,
    ) -> Result<Option<u64>> {
        let last = record.last_seq.min(committed);
        let mut channels = open_channels(self.run, ChannelSet::ALL, record.first_seq)?;
        let committed_lens = self.run.committed().lens;
        for channel in &mut channels {
            channel.readable_len = committed_lens[channel.channel];
        }
        let mut from = record.first_seq;
        while from <= last {
            let merged = merge(&mut channels, from, last, 1024 * 1024)?;
            if let Some(entry) = merged
                .entries
                .iter()
                .find(|entry| created_millis(entry).is_some_and(|at| at >= time))
            {
                return Ok(Some(entry.seq()));
            }
            match (merged.damaged, merged.entries.last()) {
                (Some((_, last_damaged)), _) => from = last_damaged + 1,
                (None, _) if merged.caught_up => break,
                (None, Some(entry)) => from = entry.seq() + 1,
                (None, None) => break,
            }
        }
        Ok(None)
    }

    /// The first sequence number of the last `tail` entries of `channels`
    /// up to `upper`, walking the journal backward from there.
    fn tail_start(&self, channels: ChannelSet, tail: u64, upper: u64) -> Result<u64> {
        let (mut file, len) = self.open()?;
        let end = self.end_of(&mut file, len, upper)?;
        let mut back = Backward::new(file, end);
        let mut needed = tail;
        while let Some(record) = back.prev().map_err(|err| self.error(err))? {
            if record.first_seq > upper {
                continue;
            }
            let selected: u64 = channels.iter().map(|channel| record.counts[channel]).sum();
            let whole = record.last_seq <= upper;
            if whole && selected < needed {
                needed -= selected;
                continue;
            }
            if selected == 0 {
                // Lost records hold no entries: a tail counts entries that
                // can be read, and passes them.
                continue;
            }
            if record.damaged {
                // Its entries cannot be read: the tail starts with it, and
                // the reader reports it.
                return Ok(record.first_seq);
            }
            // The tail starts in this commit: find the entry.
            let seqs = self.selected_seqs(&record, channels, upper)?;
            let count = seqs.len() as u64;
            if count >= needed {
                return Ok(seqs[(count - needed) as usize]);
            }
            needed -= count;
        }
        Ok(1)
    }

    /// Where the journal's records up to `upper` end: after the last line
    /// whose commit starts at or before it.
    fn end_of(&self, file: &mut File, len: u64, upper: u64) -> Result<u64> {
        let start =
            seek_by(file, len, upper + 1, record_first_seq).map_err(|err| self.error(err))?;
        let mut end = start;
        scan_lines(file, start, |line, line_end| {
            match JournalRecord::from_line(line) {
                Some(record) if record.first_seq <= upper => {
                    end = line_end;
                    true
                }
                // A damaged line stops the walk here; the backward walk
                // reports it when it gets to it.
                Some(_) | None => false,
            }
        })
        .map_err(|err| self.error(err))?;
        Ok(end)
    }

    /// The sequence numbers of a commit's entries of `channels` up to
    /// `upper`, read from the files (one commit: at most about 1 MiB).
    fn selected_seqs(
        &self,
        record: &JournalRecord,
        channels: ChannelSet,
        upper: u64,
    ) -> Result<Vec<u64>> {
        let mut readers = open_channels(self.run, channels, record.first_seq)?;
        let committed_lens = self.run.committed().lens;
        for reader in &mut readers {
            reader.readable_len = committed_lens[reader.channel];
        }
        let last = record.last_seq.min(upper);
        let merged = merge(&mut readers, record.first_seq, last, usize::MAX)?;
        if let Some((first_seq, _)) = merged.damaged {
            // A damaged commit with checksums: start at it.
            return Ok(vec![first_seq]);
        }
        Ok(merged.entries.iter().map(LogEntry::seq).collect())
    }
}

/// The error of a journal line that does not read back after the run was
/// opened (recovery marks damaged records in place when it opens a run).
fn damaged_line() -> StoreError {
    StoreError::io(
        "cannot read the run's journal",
        io::Error::new(io::ErrorKind::InvalidData, "it holds a damaged record"),
    )
}

/// The first record of a journal, if it has one.
fn first_record(file: &mut File) -> io::Result<Option<JournalRecord>> {
    let mut first = None;
    scan_lines(file, 0, |line, _| {
        first = JournalRecord::from_line(line);
        false
    })?;
    Ok(first)
}

/// The commit time of a journal line, for seeking; `None` for a line
/// without one (seeking then stays before it).
fn record_time(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: Option<u64>,
    }
    serde_json::from_slice::<Time>(line).ok()?.time
}

/// The first sequence number of a journal line, for seeking.
fn record_first_seq(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FirstSeq {
        first_seq: u64,
    }
    serde_json::from_slice::<FirstSeq>(line)
        .ok()
        .map(|record| record.first_seq)
}

/// An entry's `createdAt`, in milliseconds since the Unix epoch.
fn created_millis(entry: &LogEntry) -> Option<u64> {
    let created = match entry {
        LogEntry::Lifecycle(entry) => &entry.created_at,
        LogEntry::Chunk(entry) => &entry.created_at,
    };
    let time = DateTime::parse_from_rfc3339(created).ok()?;
    u64::try_from(time.timestamp_millis()).ok()
}

/// Reads a journal's records backward from an offset at which a line
/// starts.
struct Backward {
    /// The journal.
    file: File,
    /// Everything before this offset is still to read.
    pos: u64,
    /// The start of a line cut by the last read, to join with the bytes
    /// before it.
    carry: Vec<u8>,
    /// Records read and not yet returned, in file order.
    records: Vec<JournalRecord>,
}

impl Backward {
    /// A walk back from `end`.
    fn new(file: File, end: u64) -> Self {
        Self {
            file,
            pos: end,
            carry: Vec::new(),
            records: Vec::new(),
        }
    }

    /// The record before the last one returned; `None` at the start.
    fn prev(&mut self) -> io::Result<Option<JournalRecord>> {
        loop {
            if let Some(record) = self.records.pop() {
                return Ok(Some(record));
            }
            if self.pos == 0 && self.carry.is_empty() {
                return Ok(None);
            }
            self.read_back()?;
        }
    }

    /// Reads the chunk before `pos` and takes its complete lines.
    fn read_back(&mut self) -> io::Result<()> {
        let start = self.pos.saturating_sub(BACK_CHUNK);
        let mut chunk = vec![0; (self.pos - start) as usize];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut chunk)?;
        chunk.append(&mut self.carry);
        self.pos = start;
        // The bytes before the first newline may be the end of a line that
        // starts in an earlier chunk, unless this chunk starts the file.
        let first_line = match start {
            0 => 0,
            _ => match chunk.iter().position(|byte| *byte == b'\n') {
                Some(newline) => newline + 1,
                None => {
                    self.carry = chunk;
                    return Ok(());
                }
            },
        };
        self.carry = chunk[..first_line].to_vec();
        for line in chunk[first_line..].split(|byte| *byte == b'\n') {
            if line.is_empty() {
                continue;
            }
            let record = JournalRecord::from_line(line).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "holds a damaged record")
            })?;
            self.records.push(record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::model::PerChannel;

    /// A journal of `n` one-entry records, each line padded differently.
    fn journal(n: u64) -> (tempfile::NamedTempFile, u64) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for seq in 1..=n {
            let record = JournalRecord {
                first_seq: seq,
                last_seq: seq,
                writer_id: Some("w".repeat((seq % 7) as usize + 1)),
                writer_seq: seq,
                counts: PerChannel::new(0, 1, 0),
                offsets: PerChannel::default(),
                imported: false,
                lost: false,
                damaged: false,
                writers_lost: false,
                lease: None,
                time: Some(seq * 10),
                closed: None,
                lens: None,
                crc: None,
                check: None,
            };
            file.write_all(&record.to_line()).unwrap();
        }
        let len = file.as_file().metadata().unwrap().len();
        (file, len)
    }

    /// Walking back returns every record, last first, across chunks.
    #[test]
    fn walking_back_returns_every_record_in_reverse() {
        let (file, len) = journal(3000);
        let mut back = Backward::new(File::open(file.path()).unwrap(), len);
        let mut seqs = Vec::new();
        while let Some(record) = back.prev().unwrap() {
            seqs.push(record.first_seq);
        }
        assert_eq!(seqs, (1..=3000).rev().collect::<Vec<_>>());
    }

    /// Seeking by time lands at or before the first record at that time.
    #[test]
    fn seeking_by_time_lands_before_the_record() {
        let (file, len) = journal(5000);
        let mut handle = File::open(file.path()).unwrap();
        for target in [1, 10, 15, 25_000, 49_990, 60_000] {
            let offset = seek_by(&mut handle, len, target, record_time).unwrap();
            let mut first = None;
            scan_lines(&mut handle, offset, |line, _| {
                let record = JournalRecord::from_line(line).unwrap();
                if record.time.unwrap() >= target {
                    first = Some(record.first_seq);
                    return false;
                }
                true
            })
            .unwrap();
            let expected = (1..=5000u64).find(|seq| seq * 10 >= target);
            assert_eq!(first, expected, "target {target}");
        }
    }
}
