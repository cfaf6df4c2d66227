//! Reading a run's journal forward from any sequence number, for readers
//! that verify each commit's bytes before they serve its entries.
//!
//! The journal is appended to while it is read; a reader only asks for
//! records of committed entries, whose lines are complete, so a line
//! without its newline is simply not there yet.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
};

use super::{journal::JournalRecord, lines::seek_by};

/// How much of the journal is read at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A forward reader of a run's journal records.
#[derive(Debug)]
pub(crate) struct JournalCursor {
    /// The journal; closed by [`JournalCursor::park`], opened again by
    /// the next read.
    file: Option<File>,
    /// Its path, for errors.
    path: PathBuf,
    /// Where the next unread byte is.
    offset: u64,
    /// Bytes read and not yet taken as records.
    buf: Vec<u8>,
    /// Records read ahead, in order, each with where its line starts.
    records: VecDeque<(u64, JournalRecord)>,
}

impl JournalCursor {
    /// A cursor at or before the record that holds `seq`.
    pub(crate) fn open(path: PathBuf, seq: u64) -> io::Result<Self> {
        let mut file = File::open(&path)?;
        let len = file.metadata()?.len();
        let offset = if seq > 1 {
            seek_by(&mut file, len, seq, last_seq)?
        } else {
            0
        };
        Ok(Self {
            file: Some(file),
            path,
            offset,
            buf: Vec::new(),
            records: VecDeque::new(),
        })
    }

    /// The journal's path.
    pub(crate) fn path(&self) -> &PathBuf {
        &self.path
    }

    /// The record of the commit that holds `seq`, reading forward; `None`
    /// when the journal holds no such record (yet), or a line that is not
    /// a record stands before it.
    pub(crate) fn record_for(&mut self, seq: u64) -> io::Result<Option<JournalRecord>> {
        loop {
            while let Some((_, record)) = self.records.front() {
                if record.last_seq >= seq {
                    return Ok(record.holds(seq).then(|| record.clone()));
                }
                self.records.pop_front();
            }
            if !self.read_more()? {
                return Ok(None);
            }
        }
    }

    /// The record after the one that ends at `last_seq`, reading forward,
    /// without passing the records before it: `None` when the journal holds
    /// none (yet).
    pub(crate) fn record_after(&mut self, last_seq: u64) -> io::Result<Option<JournalRecord>> {
        loop {
            if let Some((_, record)) = self
                .records
                .iter()
                .find(|(_, record)| record.first_seq > last_seq)
            {
                return Ok(Some(record.clone()));
            }
            if !self.read_more()? {
                return Ok(None);
            }
        }
    }

    /// Drops what was read ahead, to read it again when asked, and closes
    /// the journal: a reader that may wait long between reads holds no
    /// buffer and no descriptor meanwhile.
    pub(crate) fn park(&mut self) {
        let unread_from = match self.records.front() {
            Some((start, _)) => *start,
            None => self.offset - self.buf.len() as u64,
        };
        self.offset = unread_from;
        self.buf = Vec::new();
        self.records = VecDeque::new();
        self.file = None;
    }

    /// Reads the next complete lines as records; false at the end, or at a
    /// line that is not a record.
    fn read_more(&mut self) -> io::Result<bool> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
        }
        // Into the buffer's spare capacity: `&File` does not zero it first.
        self.buf.reserve(READ_CHUNK);
        let mut file = self.file.as_ref().expect("opened above");
        file.seek(SeekFrom::Start(self.offset))?;
        let kept = self.buf.len();
        let read = match file.take(READ_CHUNK as u64).read_to_end(&mut self.buf) {
            Ok(read) => read,
            Err(err) => {
                // What a failed read appended is not counted in `offset`.
                self.buf.truncate(kept);
                return Err(err);
            }
        };
        self.offset += read as u64;
        let mut taken = 0;
        let buf_start = self.offset - self.buf.len() as u64;
        while let Some(newline) = memchr::memchr(b'\n', &self.buf[taken..]) {
            let line = &self.buf[taken..taken + newline];
            let line_start = buf_start + taken as u64;
            let Some(record) = JournalRecord::from_line(line) else {
                // Damaged after the run was opened (recovery marks a
                // damaged record before the journal's end in place): never skip on.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("holds a damaged record at byte {line_start}"),
                ));
            };
            self.records.push_back((line_start, record));
            taken += newline + 1;
        }
        self.buf.drain(..taken);
        Ok(taken > 0 || (read > 0 && self.records.is_empty() && self.read_more()?))
    }
}

/// The last sequence number of a journal line, for seeking.
fn last_seq(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LastSeq {
        last_seq: u64,
    }
    serde_json::from_slice::<LastSeq>(line)
        .ok()
        .map(|record| record.last_seq)
}
