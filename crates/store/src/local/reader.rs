//! Following a run from its files: a three-way merge of the channel files
//! by sequence number, up to what the run's doorbell says is committed.
//!
//! Every entry up to the committed sequence number is complete in its
//! file before the doorbell rings, so when a channel file has no further
//! complete line, that channel has nothing more up to that number, and the
//! merge can go on with the others. A channel file is read no further than
//! its committed length, so the lines of a commit that is being written,
//! or that failed half-way and is being cut off, are never even read. A reader holds one read buffer per
//! channel and nothing else: a slow follower costs the server no more
//! memory than a fast one, and falls behind onto the disk.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::FileExt,
    sync::Arc,
};

use tokio::sync::watch;

use super::{
    concurrency::blocking,
    lines::seek_seq,
    retention::LocalHold,
    run::{Run, RunSignal},
};
use crate::{
    error::{Result, StoreError},
    model::{
        ChannelSet, LogEntry, ReadBatch, RunStateSnapshot, StreamChunkLogEntry,
        WorkerLifecycleLogEntry, WorkerLogChannel,
    },
    run_store::{ReadFrom, RunReader},
};

/// How much a channel reader reads from its file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A reader of one run's entries: from memory while it keeps up with the
/// run's last commits (see `recent`), from the channel files otherwise.
#[derive(Debug)]
pub struct LocalReader {
    /// The run.
    run: Arc<Run>,
    /// The doorbell.
    signal: watch::Receiver<RunSignal>,
    /// The channels it returns.
    selected: ChannelSet,
    /// One reader per selected channel; `None` while a read is under way.
    channels: Option<Vec<ChannelReader>>,
    /// The channel readers are behind `next_seq` or gone (entries came
    /// from memory), or hold read-ahead of a cut commit: reopen them at
    /// `next_seq` before the next file read.
    reposition: bool,
    /// The next sequence number to return.
    next_seq: u64,
    /// The last sequence number a history-only reader returns.
    until: Option<u64>,
    /// The state version last returned; 0 before the first read.
    state_version: u64,
    /// The epoch the read-ahead buffers belong to.
    epoch: u64,
    /// Keeps the run from retention while the reader lives.
    _hold: LocalHold,
}

impl LocalReader {
    /// Opens a reader of `run` from `from`, which `hold` keeps from
    /// retention.
    pub(crate) fn open(run: Arc<Run>, hold: LocalHold, from: ReadFrom) -> Result<Self> {
        let signal = run.subscribe();
        let current = *signal.borrow();
        let next_seq = from.from_seq.max(1);
        let channels = open_channels(&run, from.channels, next_seq)?;
        Ok(Self {
            run,
            signal,
            selected: from.channels,
            channels: Some(channels),
            reposition: false,
            next_seq,
            until: from.history_only.then_some(current.committed_seq),
            state_version: 0,
            epoch: current.epoch,
            _hold: hold,
        })
    }
}

/// A reader of each selected channel file, at or before `from_seq`.
fn open_channels(run: &Run, selected: ChannelSet, from_seq: u64) -> Result<Vec<ChannelReader>> {
    selected
        .iter()
        .map(|channel| ChannelReader::open(run, channel, from_seq))
        .collect()
}

/// What one read is about: where the reader stands against the doorbell.
#[derive(Debug, Clone, Copy)]
struct ReadPlan {
    /// The doorbell as the read found it.
    signal: RunSignal,
    /// The first sequence number to return.
    from: u64,
    /// The last sequence number this read may return.
    limit: u64,
    /// No entry follows once the reader is caught up to `limit`.
    finished: bool,
}

impl ReadPlan {
    /// A batch of `entries` that got to `covered`, or to `limit` when
    /// `caught_up`.
    fn batch(
        &self,
        entries: Vec<LogEntry>,
        next_seq: u64,
        state: Option<RunStateSnapshot>,
        caught_up: bool,
    ) -> ReadBatch {
        ReadBatch {
            entries,
            next_seq,
            committed_seq: self.signal.committed_seq,
            state,
            caught_up,
            finished: caught_up && self.finished,
        }
    }
}

impl RunReader for LocalReader {
    async fn read(&mut self, max_bytes: usize) -> Result<ReadBatch> {
        let plan = self.plan();
        let state = (plan.signal.state_version != self.state_version).then(|| {
            self.state_version = plan.signal.state_version;
            self.run.state()
        });
        if plan.from > plan.limit {
            return Ok(plan.batch(Vec::new(), plan.from, state, true));
        }
        if let Some((entries, covered)) =
            self.run
                .recent_entries(plan.from, plan.limit, self.selected, max_bytes)
        {
            // The channel readers are behind now; they are reopened at the
            // cursor if the follower ever needs the files again. Until then
            // they hold neither buffers nor descriptors.
            self.reposition = true;
            self.channels = Some(Vec::new());
            self.next_seq = covered + 1;
            return Ok(plan.batch(entries, self.next_seq, state, covered >= plan.limit));
        }
        let (entries, caught_up) = self.read_files(&plan, max_bytes).await?;
        if caught_up {
            self.next_seq = self.next_seq.max(plan.limit + 1);
        } else if let Some(last) = entries.last() {
            self.next_seq = last.seq() + 1;
        }
        Ok(plan.batch(entries, self.next_seq, state, caught_up))
    }

    async fn changed(&mut self) {
        if self.signal.changed().await.is_err() {
            // The run is gone from memory; nothing will ring again.
            std::future::pending::<()>().await;
        }
    }
}

impl LocalReader {
    /// Takes the doorbell's news: where this read starts and ends, and
    /// whether read-ahead must be dropped.
    fn plan(&mut self) -> ReadPlan {
        let signal = *self.signal.borrow_and_update();
        if signal.epoch != self.epoch {
            // A commit was cut off the files: what was read ahead may be gone.
            self.reposition = true;
            self.epoch = signal.epoch;
        }
        ReadPlan {
            signal,
            from: self.next_seq,
            limit: self.until.map_or(signal.committed_seq, |until| {
                until.min(signal.committed_seq)
            }),
            finished: signal.terminal || self.until.is_some(),
        }
    }

    /// Merges the channel files from `plan.from` to `plan.limit`, on the
    /// blocking pool, reopening them first when they are out of place.
    /// Returns the entries and whether they got to the limit.
    async fn read_files(
        &mut self,
        plan: &ReadPlan,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)> {
        let mut channels = self.channels.take().expect("reads do not overlap");
        let reopen = std::mem::take(&mut self.reposition).then(|| self.run.clone());
        let (selected, from, limit) = (self.selected, plan.from, plan.limit);
        let lens = plan.signal.committed_lens;
        let read = blocking(move || {
            if let Some(run) = reopen {
                match open_channels(&run, selected, from) {
                    Ok(reopened) => channels = reopened,
                    Err(err) => return Ok((channels, Err(err), true)),
                }
            }
            for channel in &mut channels {
                channel.readable_len = lens[channel.channel];
            }
            let merged = merge(&mut channels, from, limit, max_bytes);
            Ok((channels, merged, false))
        })
        .await;
        let (mut channels, merged, failed_reopen) = match read {
            Ok(read) => read,
            Err(err) => {
                // The task died with the readers: reopen them next time.
                self.channels = Some(Vec::new());
                self.reposition = true;
                return Err(err);
            }
        };
        self.reposition |= failed_reopen;
        if let Ok((_, true)) = &merged {
            // A follower that is caught up waits, maybe for a long time:
            // it keeps no read buffer while it does.
            for channel in &mut channels {
                channel.release_if_drained();
            }
        }
        self.channels = Some(channels);
        merged
    }
}

/// Returns the entries from `from` to `limit` in sequence order, stopping
/// after about `max_bytes`, and whether it got to `limit`.
fn merge(
    channels: &mut [ChannelReader],
    from: u64,
    limit: u64,
    max_bytes: usize,
) -> Result<(Vec<LogEntry>, bool)> {
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for channel in channels.iter_mut() {
        channel.at_end = false;
    }
    loop {
        let mut next: Option<(usize, u64)> = None;
        for (index, channel) in channels.iter_mut().enumerate() {
            while let Some(seq) = channel.peek_seq()? {
                if seq >= from {
                    if seq <= limit && next.is_none_or(|(_, best)| seq < best) {
                        next = Some((index, seq));
                    }
                    break;
                }
                channel.pop()?;
            }
        }
        let Some((index, _)) = next else {
            return Ok((entries, true));
        };
        let (entry, len) = channels[index].pop()?;
        bytes += len;
        entries.push(entry);
        if bytes >= max_bytes {
            return Ok((entries, false));
        }
    }
}

/// Reads one channel file line by line, with a read-ahead buffer.
#[derive(Debug)]
struct ChannelReader {
    channel: WorkerLogChannel,
    path: std::path::PathBuf,
    file: File,
    /// The file offset of `buf[0]`.
    buf_offset: u64,
    /// Bytes read ahead; `buf[pos..]` is not returned yet.
    buf: Vec<u8>,
    pos: usize,
    /// The next line, parsed: its entry and its length with the newline.
    peeked: Option<(LogEntry, usize)>,
    /// The file had nothing more when last read in this merge; everything
    /// up to the merge's limit was complete before it started, so the
    /// channel is not read again until the next merge.
    at_end: bool,
    /// How far the file may be read: its committed length.
    readable_len: u64,
}

impl ChannelReader {
    /// Opens the channel file of `run`, at or before the first line whose
    /// sequence number is `from_seq` or more.
    fn open(run: &Run, channel: WorkerLogChannel, from_seq: u64) -> Result<Self> {
        let path = run.dir.log(channel);
        let fail = |err| StoreError::io(format!("cannot read {}", path.display()), err);
        let mut file = File::open(&path).map_err(fail)?;
        let offset = if from_seq > 1 {
            let len = file.metadata().map_err(fail)?.len();
            seek_seq(&mut file, len, from_seq).map_err(fail)?
        } else {
            0
        };
        Ok(Self {
            channel,
            path: path.clone(),
            file,
            buf_offset: offset,
            buf: Vec::new(),
            pos: 0,
            peeked: None,
            at_end: false,
            readable_len: 0,
        })
    }

    /// Frees the read buffer when everything in it was returned.
    fn release_if_drained(&mut self) {
        if self.peeked.is_none() && self.pos == self.buf.len() {
            self.buf_offset += self.pos as u64;
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// The sequence number of the next complete line, if there is one.
    fn peek_seq(&mut self) -> Result<Option<u64>> {
        if self.peeked.is_none() {
            self.peeked = self.parse_next()?;
        }
        Ok(self.peeked.as_ref().map(|(entry, _)| entry.seq()))
    }

    /// Takes the peeked line.
    fn pop(&mut self) -> Result<(LogEntry, usize)> {
        self.peek_seq()?;
        let (entry, len) = self.peeked.take().expect("pop follows a successful peek");
        self.pos += len;
        Ok((entry, len))
    }

    /// Parses the next complete line, reading more of the file when needed.
    fn parse_next(&mut self) -> Result<Option<(LogEntry, usize)>> {
        loop {
            if let Some(newline) = self.buf[self.pos..].iter().position(|byte| *byte == b'\n') {
                let line = &self.buf[self.pos..self.pos + newline];
                let entry = self.decode(line)?;
                return Ok(Some((entry, newline + 1)));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads more of the file; false when nothing more is there.
    fn fill(&mut self) -> Result<bool> {
        if self.at_end {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.buf_offset += self.pos as u64;
            self.pos = 0;
        }
        let start = self.buf.len();
        let read_offset = self.buf_offset + start as u64;
        let room = self.readable_len.saturating_sub(read_offset);
        if room == 0 {
            self.at_end = true;
            return Ok(false);
        }
        // Reads into the buffer's spare capacity, which is not zeroed first.
        let mut window = FileWindow {
            file: &self.file,
            offset: read_offset,
        }
        .take(room.min(READ_CHUNK as u64));
        self.buf.reserve(READ_CHUNK);
        match window.read_to_end(&mut self.buf) {
            Ok(read) => {
                self.at_end = read == 0;
                Ok(read > 0)
            }
            Err(err) => {
                self.buf.truncate(start);
                Err(StoreError::io(
                    format!("cannot read {}", self.path.display()),
                    err,
                ))
            }
        }
    }

    /// Decodes one stored line of this channel.
    fn decode(&self, line: &[u8]) -> Result<LogEntry> {
        let corrupt = |err: serde_json::Error| {
            StoreError::damaged(&self.path, format!("holds an invalid entry: {err}"))
        };
        Ok(match self.channel {
            WorkerLogChannel::Worker => LogEntry::Lifecycle(
                serde_json::from_slice::<WorkerLifecycleLogEntry>(line).map_err(corrupt)?,
            ),
            WorkerLogChannel::Stdout | WorkerLogChannel::Stderr => LogEntry::Chunk(
                serde_json::from_slice::<StreamChunkLogEntry>(line).map_err(corrupt)?,
            ),
        })
    }
}

/// A `Read` over a file from an offset, with positioned reads that leave
/// the file's own cursor alone.
struct FileWindow<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for FileWindow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}
