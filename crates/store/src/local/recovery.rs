//! Opening a run's log session after a stop, clean or not.
//!
//! The journal (see [`super::journal`]) gives the counts, the next sequence
//! number and the writer cursors without reading the channel files. Only
//! the last commit may be incomplete: its record was written, then a crash
//! came before all its entries were. Recovery reads the channel files from
//! where that commit started, keeps the longest run of its sequence numbers
//! that is there without a gap, and cuts everything after it, torn lines
//! included. So what is served after a crash is always a gap-free prefix of
//! what was sent, and a writer's cursor says exactly which of its items
//! that prefix holds.
//!
//! A run directory with channel files but no journal (written by another
//! program in the same layout) is adopted: its files are read once, a torn
//! last line is cut, and one `imported` record is written for them.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::Path,
};

use tracing::warn;

use super::{
    JOURNAL_FILE,
    journal::JournalRecord,
    lines::{line_seq, scan_lines},
};
use crate::{
    error::{Result, StoreError},
    model::WorkerLogChannel,
};

/// What recovery found: the in-memory state of a run's log session.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The sequence number the next entry gets.
    pub(crate) next_seq: u64,
    /// Entries per channel.
    pub(crate) counts: [u64; 3],
    /// The last writer sequence number stored, per writer.
    pub(crate) writers: HashMap<String, u64>,
    /// The length of each channel file.
    pub(crate) lens: [u64; 3],
    /// The length of the journal.
    pub(crate) journal_len: u64,
}

impl Recovered {
    /// Adds a record's entries.
    fn apply(&mut self, record: &JournalRecord) {
        for (count, added) in self.counts.iter_mut().zip(record.counts) {
            *count += added;
        }
        if let Some(writer) = &record.writer_id {
            self.writers
                .insert(writer.clone(), record.writer_seq + record.len() - 1);
        }
        self.next_seq = record.last_seq + 1;
    }
}

/// Recovers the log session of the run in `dir`, repairing its files.
pub(crate) fn recover(dir: &Path) -> Result<Recovered> {
    let journal_path = dir.join(JOURNAL_FILE);
    let journal_len = match std::fs::metadata(&journal_path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
        Err(err) => return Err(io_err(&journal_path, err)),
    };
    if journal_len == 0 {
        return adopt(dir);
    }
    let mut journal = open_rw(&journal_path)?;
    let mut recovered = Recovered {
        next_seq: 1,
        ..Recovered::default()
    };
    let mut last: Option<(JournalRecord, u64)> = None;
    let mut good_len = 0u64;
    let mut broken = None;
    scan_lines(&mut journal, 0, |line, end| {
        match serde_json::from_slice::<JournalRecord>(line) {
            Ok(record)
                if record.first_seq == recovered.next_seq
                    && record.last_seq >= record.first_seq =>
            {
                recovered.apply(&record);
                last = Some((record, good_len));
                good_len = end;
                true
            }
            _ => {
                broken = Some(end);
                false
            }
        }
    })
    .map_err(|err| io_err(&journal_path, err))?;
    if let Some(end) = broken {
        if end < journal_len {
            return Err(StoreError::Corrupt(format!(
                "{} has an invalid record at byte {good_len}",
                journal_path.display()
            )));
        }
    }
    if good_len < journal_len {
        warn!(path = %journal_path.display(), cut = journal_len - good_len, "cutting a torn journal record");
        journal
            .set_len(good_len)
            .map_err(|err| io_err(&journal_path, err))?;
    }
    recovered.journal_len = good_len;

    let mut files = open_logs(dir)?;
    let Some((record, record_start)) = last else {
        return Err(StoreError::Corrupt(format!(
            "{} holds no record",
            journal_path.display()
        )));
    };
    if record.imported {
        // Adopted entries are taken as they are; only a torn tail is cut.
        for (channel, file) in WorkerLogChannel::ALL.iter().zip(files.iter_mut()) {
            let len = file_len(dir, *channel, file)?;
            let mut end = record.offsets[channel.index()];
            scan_lines(file, end, |line, line_end| {
                let ok = line_seq(line).is_some();
                if ok {
                    end = line_end;
                }
                ok
            })
            .map_err(|err| io_err(&dir.join(channel.file_name()), err))?;
            cut(dir, *channel, file, len, end)?;
            recovered.lens[channel.index()] = end;
        }
        return Ok(recovered);
    }

    // Which of the last commit's entries made it to the channel files.
    let mut found: [Vec<(u64, u64)>; 3] = Default::default();
    let mut lens = [0u64; 3];
    for (channel, file) in WorkerLogChannel::ALL.iter().zip(files.iter_mut()) {
        let index = channel.index();
        lens[index] = file_len(dir, *channel, file)?;
        if lens[index] < record.offsets[index] {
            return Err(StoreError::Corrupt(format!(
                "{} is {} bytes, shorter than the {} its journal records",
                dir.join(channel.file_name()).display(),
                lens[index],
                record.offsets[index]
            )));
        }
        scan_lines(file, record.offsets[index], |line, end| {
            match line_seq(line) {
                Some(seq) if (record.first_seq..=record.last_seq).contains(&seq) => {
                    found[index].push((seq, end));
                    true
                }
                _ => false,
            }
        })
        .map_err(|err| io_err(&dir.join(channel.file_name()), err))?;
    }
    let mut present = vec![false; record.len() as usize];
    for (seq, _) in found.iter().flatten() {
        present[(seq - record.first_seq) as usize] = true;
    }
    let kept_until = record.first_seq + present.iter().take_while(|here| **here).count() as u64;

    let mut kept_counts = [0u64; 3];
    for (channel, file) in WorkerLogChannel::ALL.iter().zip(files.iter_mut()) {
        let index = channel.index();
        let mut end = record.offsets[index];
        for (seq, line_end) in &found[index] {
            if *seq >= kept_until {
                break;
            }
            end = *line_end;
            kept_counts[index] += 1;
        }
        cut(dir, *channel, file, lens[index], end)?;
        recovered.lens[index] = end;
    }

    if kept_until <= record.last_seq {
        warn!(
            dir = %dir.display(),
            kept = kept_until - record.first_seq,
            lost = record.last_seq + 1 - kept_until,
            "the last commit was cut short by a crash; keeping its complete prefix"
        );
        for (count, (added, kept)) in recovered
            .counts
            .iter_mut()
            .zip(record.counts.iter().zip(kept_counts))
        {
            *count = *count - added + kept;
        }
        recovered.next_seq = kept_until;
        if let Some(writer) = &record.writer_id {
            let last = record.writer_seq + (kept_until - record.first_seq) - 1;
            if last == 0 {
                recovered.writers.remove(writer);
            } else {
                recovered.writers.insert(writer.clone(), last);
            }
        }
        journal
            .set_len(record_start)
            .map_err(|err| io_err(&journal_path, err))?;
        recovered.journal_len = record_start;
        if kept_until > record.first_seq {
            let fixed = JournalRecord {
                last_seq: kept_until - 1,
                counts: kept_counts,
                ..record
            };
            let line = fixed.to_line();
            let mut append = OpenOptions::new()
                .append(true)
                .open(&journal_path)
                .map_err(|err| io_err(&journal_path, err))?;
            append
                .write_all(&line)
                .and_then(|()| append.sync_data())
                .map_err(|err| io_err(&journal_path, err))?;
            recovered.journal_len += line.len() as u64;
        }
    }
    Ok(recovered)
}

/// Adopts channel files written without a journal.
fn adopt(dir: &Path) -> Result<Recovered> {
    let mut files = open_logs(dir)?;
    let mut recovered = Recovered {
        next_seq: 1,
        ..Recovered::default()
    };
    let mut max_seq = 0u64;
    for (channel, file) in WorkerLogChannel::ALL.iter().zip(files.iter_mut()) {
        let index = channel.index();
        let len = file_len(dir, *channel, file)?;
        let mut end = 0u64;
        scan_lines(file, 0, |line, line_end| match line_seq(line) {
            Some(seq) => {
                max_seq = max_seq.max(seq);
                recovered.counts[index] += 1;
                end = line_end;
                true
            }
            None => false,
        })
        .map_err(|err| io_err(&dir.join(channel.file_name()), err))?;
        cut(dir, *channel, file, len, end)?;
        recovered.lens[index] = end;
    }
    let journal_path = dir.join(JOURNAL_FILE);
    let mut journal = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&journal_path)
        .map_err(|err| io_err(&journal_path, err))?;
    if max_seq > 0 {
        let record = JournalRecord {
            first_seq: 1,
            last_seq: max_seq,
            writer_id: None,
            writer_seq: 0,
            counts: recovered.counts,
            offsets: [0; 3],
            imported: true,
        };
        let line = record.to_line();
        journal
            .write_all(&line)
            .and_then(|()| journal.sync_data())
            .map_err(|err| io_err(&journal_path, err))?;
        recovered.journal_len = line.len() as u64;
        recovered.next_seq = max_seq + 1;
    }
    Ok(recovered)
}

/// Opens (creating when missing) the three channel files for reading and
/// cutting.
fn open_logs(dir: &Path) -> Result<[File; 3]> {
    let open = |channel: WorkerLogChannel| {
        let path = dir.join(channel.file_name());
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|err| io_err(&path, err))
    };
    Ok([
        open(WorkerLogChannel::Worker)?,
        open(WorkerLogChannel::Stdout)?,
        open(WorkerLogChannel::Stderr)?,
    ])
}

/// Opens a file for reading and cutting.
fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| io_err(path, err))
}

/// The length of a channel file.
fn file_len(dir: &Path, channel: WorkerLogChannel, file: &File) -> Result<u64> {
    file.metadata()
        .map(|meta| meta.len())
        .map_err(|err| io_err(&dir.join(channel.file_name()), err))
}

/// Cuts a channel file of length `len` down to `end`, when it is longer.
fn cut(dir: &Path, channel: WorkerLogChannel, file: &File, len: u64, end: u64) -> Result<()> {
    if end < len {
        let path = dir.join(channel.file_name());
        warn!(path = %path.display(), cut = len - end, "cutting bytes past the last complete entry");
        file.set_len(end).map_err(|err| io_err(&path, err))?;
    }
    Ok(())
}

/// An I/O error on a file of the run.
fn io_err(path: &Path, err: io::Error) -> StoreError {
    StoreError::io(format!("cannot recover {}", path.display()), err)
}
