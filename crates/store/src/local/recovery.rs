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
//!
//! Journal lines that do not read back but are followed by an intact
//! record are damage, not a torn tail: [`bridge`] makes a `damaged` record
//! for the range between the records around them, and [`mark_damaged`]
//! writes it in their place, so that one damaged record costs its own
//! commit and nothing after it.
//!
//! [`recover`] reads as its steps: [`replay_journal`], [`mark_damaged`],
//! then either [`trim_imported`] or [`settle_last_commit`].

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::Path,
};

use tracing::warn;

use super::{
    fsio::write_atomic,
    journal::{self, JournalRecord, LeaseLapse},
    layout::RunDir,
    lines::{line_seq, scan_lines},
    run_files::FileLens,
};
use crate::{
    error::{Result, StoreError},
    model::{PerChannel, WorkerLogChannel},
};

/// What recovery found: the in-memory state of a run's log session.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The sequence number the next entry gets.
    pub(crate) next_seq: u64,
    /// Entries per channel.
    pub(crate) counts: PerChannel<u64>,
    /// The last writer sequence number stored, per writer.
    pub(crate) writers: HashMap<String, u64>,
    /// Where the journal and each channel file end.
    pub(crate) lens: FileLens,
    /// The journal lost what the run's writers had sent (see
    /// [`JournalRecord::writers_lost`]): writer appends are refused.
    pub(crate) writers_lost: bool,
    /// The latest commit time of the records (0 for none): the next
    /// commit's time is never less.
    pub(crate) last_time: u64,
    /// The run failed only because its worker lease expired, and what
    /// came of it since (see [`LeaseLapse`]).
    pub(crate) lease_lapse: Option<LeaseLapse>,
    /// The commits of one lifecycle entry that the store wrote itself
    /// (no writer, no lease mark), as `(seq, offset in worker.log)`: the
    /// checkpoint slot reservations are among them, and are told apart
    /// by reading just those lines (see `run::slots`).
    pub(crate) store_events: Vec<(u64, u64)>,
}

impl Recovered {
    /// An empty log session.
    fn empty() -> Self {
        Self {
            next_seq: 1,
            ..Self::default()
        }
    }

    /// Adds a record's entries.
    fn apply(&mut self, record: &JournalRecord) {
        self.counts.add(&record.counts);
        self.writers_lost |= record.writers_lost;
        self.last_time = self.last_time.max(record.time.unwrap_or(0));
        LeaseLapse::follow(&mut self.lease_lapse, record);
        if record.is_store_event() {
            self.store_events
                .push((record.first_seq, record.offsets[WorkerLogChannel::Worker]));
        }
        if let Some(writer) = &record.writer_id {
            self.writers
                .insert(writer.clone(), record.writer_seq + record.len() - 1);
        }
        self.next_seq = record.last_seq + 1;
    }
}

/// The last record of the journal and where it starts.
type LastRecord = (JournalRecord, u64);

/// What the journal says the files hold, decided before anything is cut.
#[derive(Debug)]
struct Replayed {
    /// The sum of the records kept.
    recovered: Recovered,
    /// The last record kept, and where it starts.
    last: Option<LastRecord>,
    /// Where the last record kept ends: the journal is cut there.
    kept_len: u64,
    /// The records past the kept ones that the journal still holds (their
    /// entries are lost): their first and last sequence numbers.
    lost: Option<(u64, u64)>,
    /// Where a record that does not read back starts, when more of the
    /// journal follows it and it cannot be bridged (see [`bridge`]).
    damaged_at: Option<u64>,
    /// Damaged journal lines between intact records, bridged by markers.
    stretches: Vec<DamagedStretch>,
    /// The journal ends in damaged lines, more than a torn last one.
    damaged_tail: bool,
}

/// Journal lines that do not read back, between two intact records, and
/// the `damaged` record that takes their place.
#[derive(Debug)]
struct DamagedStretch {
    /// Where the damaged bytes start in the journal.
    start: u64,
    /// How many there are, up to the next intact record.
    len: u64,
    /// The record for the sequence numbers and channel bytes between the
    /// records around them; its counts are filled in from the files.
    marker: JournalRecord,
}

/// Recovers the log session of the run in `dir`, repairing its files.
///
/// Recovery first decides, reading only, which commits it keeps: the
/// longest prefix of journal records that read back whole and whose bytes
/// every channel file covers (a power loss can leave a file shorter than
/// the journal says), and of those the last one is checked against its
/// checksums. Only then are the journal and the files cut to match.
pub(crate) fn recover(dir: &RunDir) -> Result<Recovered> {
    let journal_path = dir.journal();
    let journal_len = match std::fs::metadata(&journal_path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
        Err(err) => return Err(io_err(&journal_path, err)),
    };
    if journal_len == 0 {
        return adopt(dir, false);
    }
    let mut journal = open_rw(&journal_path)?;
    let mut logs = open_logs(dir)?;
    let file_lens = PerChannel::try_from_fn(|channel| file_len(&dir.log(channel), &logs[channel]))?;
    let mut replayed = replay_journal(&mut journal, &journal_path, file_lens)?;
    if let Some(at) = replayed.damaged_at {
        // A damaged record with more of the journal after it that cannot be
        // bridged: cutting there would throw away intact commits. Refuse,
        // changing nothing.
        return Err(StoreError::damaged(
            journal_path,
            format!("holds a damaged record at byte {at}, before the end"),
        ));
    }
    let Some((record, record_start)) = replayed.last else {
        // Not one record reads back (a zeroed journal): the files are
        // adopted as they are, and since no one can tell what each writer
        // sent, writers are refused rather than let store lines twice.
        warn!(
            dir = %dir.path().display(),
            "the run's journal holds no record that reads back; adopting its files, \
             readable but closed to writers"
        );
        drop((journal, logs));
        return adopt(dir, true);
    };
    // Numbers the files hold past the records kept, when damaged records
    // end the journal: found before anything is cut.
    let beyond = match replayed.damaged_tail {
        true => numbers_beyond(dir, &mut logs, &record)?,
        false => None,
    };
    if let Some((first, last)) = replayed.lost {
        warn!(
            dir = %dir.path().display(),
            kept = record.last_seq,
            lost_first = first,
            lost_last = last,
            "the run's files end before its journal does (a power loss?); keeping the commits they cover"
        );
    }
    mark_damaged(
        dir,
        &journal,
        &mut logs,
        &replayed.stretches,
        &mut replayed.recovered,
    )?;
    if replayed.kept_len < journal_len {
        journal
            .set_len(replayed.kept_len)
            .map_err(|err| io_err(&journal_path, err))?;
    }
    let mut recovered = replayed.recovered;
    recovered.lens.journal = replayed.kept_len;
    if record.imported {
        trim_imported(dir, &mut logs, &record, &mut recovered)?;
    } else {
        settle_last_commit(
            dir,
            &journal,
            &mut logs,
            (record, record_start),
            &mut recovered,
        )?;
    }
    let lost_last = replayed.lost.map(|(_, last)| last).max(beyond);
    if let Some(lost_last) = lost_last.filter(|last| *last >= recovered.next_seq) {
        if beyond.is_some() {
            warn!(
                dir = %dir.path().display(),
                lost_first = recovered.next_seq,
                lost_last,
                "the journal ends in damaged records; their entries are reported as lost"
            );
        }
        mark_lost(dir, lost_last, &mut recovered)?;
    }
    Ok(recovered)
}

/// The highest sequence number of the lines the channel files hold from
/// where `record`'s commit starts: with damaged records at the journal's
/// end, the commits they described may have been served, and their
/// numbers must not be given again. Reads only.
fn numbers_beyond(
    dir: &RunDir,
    logs: &mut PerChannel<File>,
    record: &JournalRecord,
) -> Result<Option<u64>> {
    let mut highest = None;
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        scan_lines(file, record.offsets[channel], |line, _| {
            match line_seq(line) {
                Some(seq) => {
                    highest = highest.max(Some(seq));
                    true
                }
                None => false,
            }
        })
        .map_err(|err| io_err(&path, err))?;
    }
    Ok(highest)
}

/// Writes a `lost` record for the sequence numbers from the run's next one
/// to `lost_last`: entries the journal knew and the files lost. Readers
/// may have been served them before the loss, so they are not given out
/// again: the next append starts after them, and readers report the range
/// as lost.
fn mark_lost(dir: &RunDir, lost_last: u64, recovered: &mut Recovered) -> Result<()> {
    let marker = JournalRecord {
        first_seq: recovered.next_seq,
        last_seq: lost_last,
        writer_id: None,
        writer_seq: 0,
        counts: PerChannel::default(),
        offsets: recovered.lens.logs,
        imported: false,
        lost: true,
        damaged: false,
        writers_lost: false,
        lease: None,
        time: None,
        closed: None,
        lens: None,
        crc: None,
        check: None,
    }
    .with_bytes(&PerChannel::default());
    let line = marker.to_line();
    append_synced(&dir.journal(), &line)?;
    recovered.lens.journal += line.len() as u64;
    recovered.next_seq = lost_last + 1;
    Ok(())
}

/// Adds up the journal's records while they read back whole, follow each
/// other, and start (and, when they say, end) within the channel files
/// (`file_lens`). Reads only.
fn replay_journal(journal: &mut File, path: &Path, file_lens: PerChannel<u64>) -> Result<Replayed> {
    let mut replayed = Replayed {
        recovered: Recovered::empty(),
        last: None,
        kept_len: 0,
        lost: None,
        damaged_at: None,
        stretches: Vec::new(),
        damaged_tail: false,
    };
    let journal_len = journal.metadata().map_err(|err| io_err(path, err))?.len();
    let mut line_start = 0u64;
    let within =
        |ends: &PerChannel<u64>| ends.iter().all(|(channel, end)| *end <= file_lens[channel]);
    // The first commit whose bytes the files do not hold whole, while no
    // record follows it: the commit a crash cut short (its record is
    // written first), which recovery keeps the complete prefix of, unless
    // a later record proves it was finished and the files lost it.
    let mut unfinished: Option<(JournalRecord, u64, u64)> = None;
    // Where lines that do not read back started, while no intact record
    // has followed them yet.
    let mut damaged_from: Option<u64> = None;
    scan_lines(journal, 0, |line, end| {
        let start = std::mem::replace(&mut line_start, end);
        let Some(record) = JournalRecord::from_line(line) else {
            // Damaged, or torn if it is the last: known once a record
            // follows, or the journal ends (a tail cut like a torn line).
            damaged_from.get_or_insert(start);
            return end < journal_len;
        };
        if let Some(from) = damaged_from.take()
            && replayed.lost.is_none()
        {
            let bridged = unfinished
                .is_none()
                .then(|| bridge(&replayed, &record, (from, start), file_lens))
                .flatten();
            let Some(stretch) = bridged else {
                replayed.damaged_at = Some(from);
                return false;
            };
            replayed.recovered.apply(&stretch.marker);
            replayed.last = Some((stretch.marker.clone(), from));
            replayed.kept_len = start;
            replayed.stretches.push(stretch);
        }
        if let Some((_, last)) = &mut replayed.lost {
            // Past the files' end: lost too.
            *last = record.last_seq;
            return true;
        }
        let next_seq = unfinished
            .as_ref()
            .map_or(replayed.recovered.next_seq, |(record, _, _)| {
                record.last_seq + 1
            });
        if record.first_seq != next_seq || record.last_seq < record.first_seq {
            // Not the next commit: the journal is damaged from here on.
            return false;
        }
        if let Some((cut_short, _, _)) = unfinished.take() {
            // A commit was written after the one the files do not hold:
            // that one was finished, and acknowledged, and then lost.
            replayed.lost = Some((cut_short.first_seq, record.last_seq));
            return true;
        }
        if within(&record.offsets) && record.ends().is_none_or(|ends| within(&ends)) {
            replayed.recovered.apply(&record);
            replayed.last = Some((record, replayed.kept_len));
            replayed.kept_len = end;
        } else if within(&record.offsets) {
            unfinished = Some((record, replayed.kept_len, end));
        } else {
            // Its bytes start past a file's end: lost with what follows.
            replayed.lost = Some((record.first_seq, record.last_seq));
        }
        true
    })
    .map_err(|err| io_err(path, err))?;
    if damaged_from.is_some() && replayed.lost.is_none() {
        // Complete lines that do not read back end the journal (a torn
        // last line has no newline, and is not among them): records whose
        // commits may have been served. Their numbers are found in the
        // files (see `numbers_beyond`), so as not to give them out again.
        replayed.damaged_tail = true;
    }
    if let Some((record, start, end)) = unfinished {
        // The last record: the commit under way when the process stopped.
        replayed.recovered.apply(&record);
        replayed.last = Some((record, start));
        replayed.kept_len = end;
    }
    Ok(replayed)
}

/// The marker for damaged journal lines from `from` to `to`, where
/// `next`, the first intact record after them, starts: it covers the
/// sequence numbers and the channel bytes between the last record kept and
/// `next`. `None` when those cannot be told: the record before has no
/// checksums (so no end), `next` does not come after it, or its bytes
/// start past a file's end (`file_lens`).
fn bridge(
    replayed: &Replayed,
    next: &JournalRecord,
    (from, to): (u64, u64),
    file_lens: PerChannel<u64>,
) -> Option<DamagedStretch> {
    let first_seq = replayed.recovered.next_seq;
    if next.first_seq <= first_seq {
        return None;
    }
    let offsets = match &replayed.last {
        Some((record, _)) => record.ends()?,
        None => PerChannel::default(),
    };
    let lens = PerChannel::try_from_fn(|channel| {
        match next.offsets[channel] <= file_lens[channel] {
            true => next.offsets[channel].checked_sub(offsets[channel]),
            false => None,
        }
        .ok_or(())
    })
    .ok()?;
    let marker = JournalRecord {
        first_seq,
        last_seq: next.first_seq - 1,
        writer_id: None,
        writer_seq: 0,
        counts: PerChannel::default(),
        offsets,
        imported: false,
        lost: false,
        damaged: true,
        writers_lost: false,
        lease: None,
        time: None,
        closed: None,
        lens: Some(lens),
        crc: None,
        check: None,
    };
    Some(DamagedStretch {
        start: from,
        len: to - from,
        marker,
    })
}

/// Writes the marker of each damaged stretch in its place, with its
/// entries counted from the channel files, and adds those counts. Checks
/// that every marker fits before it writes any.
fn mark_damaged(
    dir: &RunDir,
    journal: &File,
    logs: &mut PerChannel<File>,
    stretches: &[DamagedStretch],
    recovered: &mut Recovered,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let journal_path = dir.journal();
    let mut lines = Vec::with_capacity(stretches.len());
    for stretch in stretches {
        let mut marker = stretch.marker.clone();
        let ends = marker.ends().expect("a marker has lengths");
        for (channel, file) in logs.iter_mut() {
            let path = dir.log(channel);
            let bytes = read_range(&path, file, marker.offsets[channel], ends[channel])?;
            marker.counts[channel] = bytes.iter().filter(|byte| **byte == b'\n').count() as u64;
        }
        let line = marker.to_line_of(stretch.len as usize).ok_or_else(|| {
            StoreError::damaged(
                &journal_path,
                format!(
                    "holds damaged records at byte {}, too short to mark in place",
                    stretch.start
                ),
            )
        })?;
        lines.push((stretch.start, line, marker));
    }
    for (start, line, marker) in lines {
        warn!(
            dir = %dir.path().display(),
            first_seq = marker.first_seq,
            last_seq = marker.last_seq,
            journal_offset = start,
            "a journal record is damaged; its entries are reported to readers as damaged"
        );
        journal
            .write_all_at(&line, start)
            .map_err(|err| io_err(&journal_path, err))?;
        recovered.counts.add(&marker.counts);
    }
    if !stretches.is_empty() {
        journal
            .sync_data()
            .map_err(|err| io_err(&journal_path, err))?;
    }
    Ok(())
}

/// Takes adopted entries as they are, cutting only a torn tail off each
/// channel file.
fn trim_imported(
    dir: &RunDir,
    logs: &mut PerChannel<File>,
    record: &JournalRecord,
    recovered: &mut Recovered,
) -> Result<()> {
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        let len = file_len(&path, file)?;
        let mut end = record.offsets[channel];
        scan_lines(file, end, |line, line_end| {
            let ok = line_seq(line).is_some();
            if ok {
                end = line_end;
            }
            ok
        })
        .map_err(|err| io_err(&path, err))?;
        cut(&path, file, len, end)?;
        recovered.lens.logs[channel] = end;
    }
    Ok(())
}

/// Keeps the gap-free prefix of the last commit that reached the channel
/// files, cuts the rest off them, and shortens its journal record to
/// match.
fn settle_last_commit(
    dir: &RunDir,
    journal: &File,
    logs: &mut PerChannel<File>,
    (record, record_start): LastRecord,
    recovered: &mut Recovered,
) -> Result<()> {
    if let Some(ends) = record.ends() {
        if commit_verifies(dir, logs, &record)? {
            for (channel, file) in logs.iter_mut() {
                let path = dir.log(channel);
                let len = file_len(&path, file)?;
                cut(&path, file, len, ends[channel])?;
            }
            recovered.lens.logs = ends;
            return Ok(());
        }
        warn!(
            dir = %dir.path().display(),
            first_seq = record.first_seq,
            last_seq = record.last_seq,
            "the last commit does not match its checksums; keeping its complete prefix"
        );
    }
    let found = last_commit_lines(dir, logs, &record)?;
    let mut present = vec![false; record.len() as usize];
    for (seq, _) in found.values().flatten() {
        present[(seq - record.first_seq) as usize] = true;
    }
    let kept_until = record.first_seq + present.iter().take_while(|here| **here).count() as u64;

    let mut kept_counts = PerChannel::default();
    let mut kept_bytes: PerChannel<Vec<u8>> = PerChannel::default();
    for (channel, file) in logs.iter_mut() {
        let mut end = record.offsets[channel];
        for (seq, line_end) in &found[channel] {
            if *seq >= kept_until {
                break;
            }
            end = *line_end;
            kept_counts[channel] += 1;
        }
        let path = dir.log(channel);
        let len = file_len(&path, file)?;
        if record.lens.is_some() {
            kept_bytes[channel] = read_range(&path, file, record.offsets[channel], end)?;
        }
        cut(&path, file, len, end)?;
        recovered.lens.logs[channel] = end;
    }
    if kept_until <= record.last_seq {
        let kept = Kept {
            until: kept_until,
            counts: kept_counts,
            bytes: record.lens.is_some().then_some(kept_bytes),
        };
        shorten_last_record(dir, journal, (record, record_start), kept, recovered)?;
    }
    Ok(())
}

/// What is kept of a commit cut short: the entries before `until`, their
/// counts, and their bytes (to checksum them) when the record had
/// checksums.
#[derive(Debug)]
struct Kept {
    /// The first sequence number not kept.
    until: u64,
    /// Entries kept per channel.
    counts: PerChannel<u64>,
    /// The bytes kept per channel.
    bytes: Option<PerChannel<Vec<u8>>>,
}

/// Whether every channel's bytes of `record`'s commit match its checksums.
fn commit_verifies(
    dir: &RunDir,
    logs: &mut PerChannel<File>,
    record: &JournalRecord,
) -> Result<bool> {
    let Some(ends) = record.ends() else {
        return Ok(true);
    };
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        if file_len(&path, file)? < ends[channel] {
            // Cut short by the crash.
            return Ok(false);
        }
        let bytes = read_range(&path, file, record.offsets[channel], ends[channel])?;
        if !journal::verify(record, channel, &bytes) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The bytes of `file` from `start` to `end`.
fn read_range(path: &Path, file: &File, start: u64, end: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
    file.read_exact_at(&mut bytes, start)
        .map_err(|err| io_err(path, err))?;
    Ok(bytes)
}

/// The sequence numbers of the last commit found in each channel file,
/// in file order, with where each line ends.
fn last_commit_lines(
    dir: &RunDir,
    logs: &mut PerChannel<File>,
    record: &JournalRecord,
) -> Result<PerChannel<Vec<(u64, u64)>>> {
    let mut found: PerChannel<Vec<(u64, u64)>> = PerChannel::default();
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        let len = file_len(&path, file)?;
        let offset = record.offsets[channel];
        if len < offset {
            return Err(StoreError::damaged(
                path,
                format!("is {len} bytes, shorter than the {offset} its journal records"),
            ));
        }
        let lines = &mut found[channel];
        scan_lines(file, offset, |line, end| match line_seq(line) {
            Some(seq) if (record.first_seq..=record.last_seq).contains(&seq) => {
                lines.push((seq, end));
                true
            }
            _ => false,
        })
        .map_err(|err| io_err(&path, err))?;
    }
    Ok(found)
}

/// Rewrites the last journal record to hold only the entries before
/// `kept_until` (or removes it when none is left), and takes the rest
/// out of `recovered`.
fn shorten_last_record(
    dir: &RunDir,
    journal: &File,
    (record, record_start): LastRecord,
    kept: Kept,
    recovered: &mut Recovered,
) -> Result<()> {
    let (kept_until, kept_counts) = (kept.until, kept.counts);
    warn!(
        dir = %dir.path().display(),
        kept = kept_until - record.first_seq,
        lost = record.last_seq + 1 - kept_until,
        "the last commit was cut short by a crash; keeping its complete prefix"
    );
    for (channel, count) in recovered.counts.iter_mut() {
        *count = *count - record.counts[channel] + kept_counts[channel];
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
    let journal_path = dir.journal();
    journal
        .set_len(record_start)
        .map_err(|err| io_err(&journal_path, err))?;
    recovered.lens.journal = record_start;
    if kept_until > record.first_seq {
        let mut fixed = JournalRecord {
            last_seq: kept_until - 1,
            counts: kept_counts,
            lens: None,
            crc: None,
            check: None,
            ..record
        };
        if let Some(bytes) = &kept.bytes {
            fixed = fixed.with_bytes(bytes);
        }
        let line = fixed.to_line();
        append_synced(&journal_path, &line)?;
        recovered.lens.journal += line.len() as u64;
    }
    Ok(())
}

/// Adopts channel files written without a journal, or whose journal was
/// lost (`journal_lost`: then writers are refused, see [`Recovered`]).
fn adopt(dir: &RunDir, journal_lost: bool) -> Result<Recovered> {
    let mut logs = open_logs(dir)?;
    let mut recovered = Recovered::empty();
    let mut max_seq = 0u64;
    // Where each file's lines stop parsing, and its length: decided for
    // every file before any is cut.
    let mut ends = PerChannel::default();
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        let len = file_len(&path, file)?;
        let mut end = 0u64;
        let count = &mut recovered.counts[channel];
        scan_lines(file, 0, |line, line_end| match line_seq(line) {
            Some(seq) => {
                max_seq = max_seq.max(seq);
                *count += 1;
                end = line_end;
                true
            }
            None => false,
        })
        .map_err(|err| io_err(&path, err))?;
        if journal_lost && end < len && read_range(&path, file, end, len)?.contains(&b'\n') {
            // Complete lines after one that does not parse: damage, not a
            // torn tail, and with no journal to bound it. Refuse, cutting
            // nothing.
            return Err(StoreError::damaged(
                path,
                format!("holds a damaged line at byte {end}, and its run's journal is lost"),
            ));
        }
        ends[channel] = (len, end);
    }
    for (channel, file) in logs.iter_mut() {
        let path = dir.log(channel);
        let (len, end) = ends[channel];
        cut(&path, file, len, end)?;
        recovered.lens.logs[channel] = end;
    }
    // Only the run's own first entry (seq 1) needs no writer.
    recovered.writers_lost = journal_lost && max_seq > 1;
    let mut journal = Vec::new();
    if max_seq > 0 {
        let record = JournalRecord {
            first_seq: 1,
            last_seq: max_seq,
            writer_id: None,
            writer_seq: 0,
            counts: recovered.counts,
            offsets: PerChannel::default(),
            imported: true,
            lost: false,
            damaged: false,
            writers_lost: recovered.writers_lost,
            lease: None,
            time: None,
            closed: None,
            lens: None,
            crc: None,
            check: None,
        };
        journal = record.to_line();
        recovered.next_seq = max_seq + 1;
    }
    // Replaced whole, so that a crash cannot leave an empty journal in
    // place of one that said the writers were lost.
    write_atomic(&dir.journal(), &journal)?;
    recovered.lens.journal = journal.len() as u64;
    Ok(recovered)
}

/// Opens (creating when missing) the three channel files for reading and
/// cutting.
fn open_logs(dir: &RunDir) -> Result<PerChannel<File>> {
    PerChannel::try_from_fn(|channel: WorkerLogChannel| {
        let path = dir.log(channel);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|err| io_err(&path, err))
    })
}

/// Opens a file for reading and cutting.
fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| io_err(path, err))
}

/// Appends `line` to the file at `path` and syncs it.
fn append_synced(path: &Path, line: &[u8]) -> Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| {
            file.write_all(line)?;
            file.sync_data()
        })
        .map_err(|err| io_err(path, err))
}

/// The length of a file.
fn file_len(path: &Path, file: &File) -> Result<u64> {
    file.metadata()
        .map(|meta| meta.len())
        .map_err(|err| io_err(path, err))
}

/// Cuts a file of length `len` down to `end`, when it is longer.
fn cut(path: &Path, file: &File, len: u64, end: u64) -> Result<()> {
    if end < len {
        warn!(path = %path.display(), cut = len - end, "cutting bytes past the last complete entry");
        file.set_len(end).map_err(|err| io_err(path, err))?;
    }
    Ok(())
}

/// An I/O error on a file of the run.
fn io_err(path: &Path, err: io::Error) -> StoreError {
    StoreError::io(format!("cannot recover {}", path.display()), err)
}
