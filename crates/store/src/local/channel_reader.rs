//! Reading a run's channel files: a three-way merge by sequence number of
//! one [`ChannelReader`] per selected channel, each checking every commit's
//! bytes against the journal before it parses a line of them.
//!
//! A channel reader walks the journal's records in order beside its file:
//! for each commit that wrote to its channel it reads the commit's bytes
//! whole, checks their length and CRC32C against the record, and only
//! then parses them. Bytes that do not match (a flipped bit, a zeroed
//! block, a line whose `seq` was altered) are never parsed, let alone
//! served: the channel holds a [`Front::Damaged`] marker in their place,
//! which the merge reports, in sequence order, as
//! [`StoreError::DataLoss`] naming the commit's first and last `seq`;
//! the commits after it read on. A commit is read only once the doorbell
//! says it is committed (its bytes end within the committed length), so a
//! commit being written or cut off is never read either.
//!
//! A commit whose record has no checksums (written before they existed,
//! or the record of adopted files) is read unchecked, a window at a time,
//! from its record's offsets to where the next record's start; the
//! commits after it are checked again. A run with no journal record at
//! all for the position asked is read unchecked, in windows up to the
//! committed length.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
};

use super::{
    chunk_line,
    journal::{self, JournalRecord},
    journal_cursor::JournalCursor,
    lines::seek_seq,
    run::Run,
};
use crate::{
    error::{Result, StoreError},
    model::{ChannelSet, LogEntry, StreamChunkLogEntry, WorkerLifecycleLogEntry, WorkerLogChannel},
};

/// How far ahead of a reader the kernel is asked to read a channel file.
const READ_AHEAD: u64 = 8 * 1024 * 1024;

/// How much a reader of unchecked bytes reads at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What a merge returns: the entries in sequence order, whether it got to
/// its limit, and the damaged commit that stopped it, if one did.
#[derive(Debug)]
pub(crate) struct Merged {
    /// The entries.
    pub(crate) entries: Vec<LogEntry>,
    /// Every selected entry up to the limit was returned.
    pub(crate) caught_up: bool,
    /// A damaged commit right after `entries`: its first and last `seq`.
    pub(crate) damaged: Option<(u64, u64)>,
}

/// A reader of each selected channel file of `run`, positioned for
/// `from_seq`.
pub(crate) fn open_channels(
    run: &Run,
    selected: ChannelSet,
    from_seq: u64,
) -> Result<Vec<ChannelReader>> {
    selected
        .iter()
        .map(|channel| ChannelReader::open(run, channel, from_seq))
        .collect()
}

/// Returns the entries from `from` to `limit` in sequence order, stopping
/// after about `max_bytes`, or at a damaged commit (in
/// [`Merged::damaged`], after the entries before it).
pub(crate) fn merge(
    channels: &mut [ChannelReader],
    from: u64,
    limit: u64,
    max_bytes: usize,
) -> Result<Merged> {
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for channel in channels.iter_mut() {
        channel.at_end = false;
    }
    loop {
        // The channel with the lowest next `seq`; on a tie, damage first,
        // so that no entry of a damaged commit is served.
        let mut next: Option<(usize, u64, bool)> = None;
        for (index, channel) in channels.iter_mut().enumerate() {
            let (seq, damaged) = loop {
                match channel.front()? {
                    Front::End => break (u64::MAX, false),
                    Front::Damaged(_, last) if last < from => drop(channel.skip_damage()),
                    Front::Damaged(first, _) => break (first.max(from), true),
                    Front::Entry(seq) if seq < from => drop(channel.pop()?),
                    Front::Entry(seq) => break (seq, false),
                }
            };
            let better = next.is_none_or(|(_, best, best_damaged)| {
                seq < best || (seq == best && damaged && !best_damaged)
            });
            if seq <= limit && better {
                next = Some((index, seq, damaged));
            }
        }
        let Some((index, _, damaged)) = next else {
            return Ok(Merged {
                entries,
                caught_up: true,
                damaged: None,
            });
        };
        if damaged {
            let range = channels[index].skip_damage();
            return Ok(Merged {
                entries,
                caught_up: false,
                damaged: Some(range),
            });
        }
        let (entry, len) = channels[index].pop()?;
        bytes += len;
        entries.push(entry);
        if bytes >= max_bytes {
            return Ok(Merged {
                entries,
                caught_up: false,
                damaged: None,
            });
        }
    }
}

/// What a channel has next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// An entry with this `seq`.
    Entry(u64),
    /// A damaged commit, with its first and last `seq`.
    Damaged(u64, u64),
    /// Nothing more, up to the committed length.
    End,
}

/// Reads one channel file line by line, checking each commit first.
#[derive(Debug)]
pub(crate) struct ChannelReader {
    /// The channel.
    pub(crate) channel: WorkerLogChannel,
    /// The file's path, for errors.
    path: PathBuf,
    /// The file; closed by [`ChannelReader::park`], opened again by the
    /// next read, so that followers waiting between reads hold no
    /// descriptor.
    file: Option<File>,
    /// The file offset of `buf[0]`.
    buf_offset: u64,
    /// Bytes read ahead; `buf[pos..]` is not returned yet. With checksums,
    /// it holds only checked bytes.
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    pos: usize,
    /// The next line, parsed: its entry and its length with the newline.
    peeked: Option<(LogEntry, usize)>,
    /// A damaged commit where the next bytes would be.
    damaged: Option<(u64, u64)>,
    /// The file had nothing more when last read in this merge; everything
    /// up to the merge's limit was complete before it started, so the
    /// channel is not read again until the next merge.
    pub(crate) at_end: bool,
    /// How far the file may be read: its committed length.
    pub(crate) readable_len: u64,
    /// The journal, and the `seq` of the next commit to look for in it;
    /// `None` for a run whose records carry no checksums.
    journal: Option<(JournalCursor, u64)>,
    /// The commit whose bytes `buf` holds (checked readers).
    held: Option<Held>,
    /// A commit partly returned before the reader was parked, and the file
    /// offset to go on from once it is read (and checked) again.
    resume: Option<(Held, u64)>,
    /// How far the kernel was asked to read ahead (see `ready_to_read`).
    advised_to: u64,
}

/// The commit a checked reader's buffer holds.
#[derive(Debug)]
enum Held {
    /// One with checksums: its record, to check it again.
    Checked(JournalRecord),
    /// One from before checksums (or adopted), read unchecked: where its
    /// bytes end.
    Unchecked(u64),
}

impl ChannelReader {
    /// Opens the channel file of `run` for a reader from `from_seq`: at
    /// the start of that commit's bytes when the journal checksums it, at
    /// or before the first line of `from_seq` otherwise.
    fn open(run: &Run, channel: WorkerLogChannel, from_seq: u64) -> Result<Self> {
        let path = run.dir.log(channel);
        let fail = |err| StoreError::io(format!("cannot read {}", path.display()), err);
        let mut file = File::open(&path).map_err(fail)?;
        let committed = run.committed();
        let journal_path = run.dir.journal();
        let io_journal =
            |err| StoreError::io(format!("cannot read {}", journal_path.display()), err);
        // A reader from past the end starts its walk at the next commit.
        let mut cursor = JournalCursor::open(journal_path.clone(), from_seq.min(committed.seq + 1))
            .map_err(io_journal)?;
        let (offset, journal) = if from_seq > committed.seq {
            // Past what is stored: every commit to come is checked.
            (committed.lens[channel], Some((cursor, committed.seq + 1)))
        } else {
            match cursor.record_for(from_seq).map_err(io_journal)? {
                Some(record) if record.lens.is_some() => {
                    (record.offsets[channel], Some((cursor, record.first_seq)))
                }
                // A commit read unchecked: from the line of `from_seq`, or
                // before it.
                Some(record) => {
                    let len = file.metadata().map_err(fail)?.len();
                    let at = match from_seq > record.first_seq {
                        true => seek_seq(&mut file, len, from_seq).map_err(fail)?,
                        false => record.offsets[channel],
                    };
                    (
                        at.max(record.offsets[channel]),
                        Some((cursor, record.first_seq)),
                    )
                }
                _ if from_seq > 1 => {
                    let len = file.metadata().map_err(fail)?.len();
                    (seek_seq(&mut file, len, from_seq).map_err(fail)?, None)
                }
                _ => (0, None),
            }
        };
        Ok(Self {
            channel,
            path,
            file: Some(file),
            buf_offset: offset,
            buf: Vec::new(),
            pos: 0,
            peeked: None,
            damaged: None,
            at_end: false,
            readable_len: 0,
            journal,
            held: None,
            resume: None,
            advised_to: 0,
        })
    }

    /// Frees the read buffers and closes the files between two reads,
    /// keeping only where to go on: a follower that stops reading then
    /// costs no buffer and no descriptor at all. The
    /// rest of a checked commit is read and checked again when needed (a
    /// read from the page cache and a CRC32C, cheap next to parsing).
    pub(crate) fn park(&mut self) {
        self.peeked = None;
        let unread = self.buf_offset + self.pos as u64;
        match self.held.take() {
            Some(Held::Checked(record)) if self.pos < self.buf.len() => {
                self.resume = Some((Held::Checked(record), unread));
            }
            Some(Held::Unchecked(end)) if unread < end => {
                self.resume = Some((Held::Unchecked(end), unread));
            }
            _ => {}
        }
        self.buf_offset = unread;
        self.buf = Vec::new();
        self.pos = 0;
        self.file = None;
        if let Some((cursor, _)) = &mut self.journal {
            cursor.park();
        }
    }

    /// The file, opened again when a park closed it.
    fn open_file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let file = File::open(&self.path).map_err(|err| {
                StoreError::io(format!("cannot read {}", self.path.display()), err)
            })?;
            self.file = Some(file);
        }
        Ok(self.file.as_ref().expect("opened above"))
    }

    /// Opens the file if it is not, and asks the kernel to read ahead
    /// from `offset` (asynchronously, into the page cache) when the last
    /// request's window is half used: a history read from a cold cache
    /// then waits for the disk far less often than the kernel's own
    /// read-ahead, which starts anew with every open, would have it wait.
    fn ready_to_read(&mut self, offset: u64) -> Result<()> {
        self.open_file()?;
        if offset + READ_AHEAD / 2 >= self.advised_to && offset < self.readable_len {
            let len = READ_AHEAD.min(self.readable_len - offset);
            let file = self.file.as_ref().expect("opened above");
            // Only advice: a refusal changes nothing but the speed.
            #[cfg(target_os = "linux")]
            let _ = nix::fcntl::posix_fadvise(
                file,
                offset as nix::libc::off_t,
                len as nix::libc::off_t,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
            #[cfg(not(target_os = "linux"))]
            let _ = (file, len);
            self.advised_to = offset + len;
        }
        Ok(())
    }

    /// What comes next.
    fn front(&mut self) -> Result<Front> {
        if self.peeked.is_none() && self.damaged.is_none() {
            self.peeked = self.parse_next()?;
        }
        Ok(match (&self.damaged, &self.peeked) {
            (Some((first, last)), _) => Front::Damaged(*first, *last),
            (None, Some((entry, _))) => Front::Entry(entry.seq()),
            (None, None) => Front::End,
        })
    }

    /// Takes the damaged commit in front, to go on after it.
    fn skip_damage(&mut self) -> (u64, u64) {
        self.damaged.take().expect("a damaged commit is in front")
    }

    /// Takes the entry in front.
    fn pop(&mut self) -> Result<(LogEntry, usize)> {
        self.front()?;
        let (entry, len) = self.peeked.take().expect("pop follows an entry in front");
        self.pos += len;
        Ok((entry, len))
    }

    /// Parses the next complete line, reading more of the file when
    /// needed; stops at a damaged commit.
    fn parse_next(&mut self) -> Result<Option<(LogEntry, usize)>> {
        loop {
            if let Some(newline) = memchr::memchr(b'\n', &self.buf[self.pos..]) {
                let line = &self.buf[self.pos..self.pos + newline];
                let entry = self.decode(line)?;
                return Ok(Some((entry, newline + 1)));
            }
            let more = match self.journal.is_some() {
                true => self.fill_checked()?,
                false => self.fill()?,
            };
            if !more || self.damaged.is_some() {
                return Ok(None);
            }
        }
    }

    /// Drops the bytes already returned from the buffer.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.buf_offset += self.pos as u64;
            self.pos = 0;
        }
    }

    /// Reads the next committed commit of this channel whole and checks it
    /// against its record: appended to the buffer when it matches, held as
    /// a damaged commit (and skipped in the file) when it does not. False
    /// when no further commit of this channel is committed yet.
    fn fill_checked(&mut self) -> Result<bool> {
        if self.at_end {
            return Ok(false);
        }
        self.compact();
        match self.resume.take() {
            Some((Held::Checked(record), unread)) => return self.read_commit(record, Some(unread)),
            Some((Held::Unchecked(end), unread)) => return self.read_unchecked(unread, end),
            None => {}
        }
        if let Some(Held::Unchecked(end)) = self.held {
            // The rest of an unchecked commit, a window at a time.
            let tail = self.buf_offset + self.buf.len() as u64;
            if tail < end {
                return self.read_unchecked(tail, end);
            }
        }
        let (cursor, next_seq) = self.journal.as_mut().expect("a checked reader");
        loop {
            let Some(record) = cursor
                .record_for(*next_seq)
                .map_err(|err| journal_error(cursor, err))?
            else {
                self.at_end = true;
                return Ok(false);
            };
            let (Some(lens), Some(ends)) = (record.lens, record.ends()) else {
                // A record from before checksums, or the one of adopted
                // files: its bytes end where the next record's start, or
                // at the committed length when it is the last, and are
                // read unchecked; the commits after it are checked again.
                let following = cursor
                    .record_after(record.last_seq)
                    .map_err(|err| journal_error(cursor, err))?;
                let end = following.map_or(self.readable_len, |next| next.offsets[self.channel]);
                if end > self.readable_len {
                    self.at_end = true;
                    return Ok(false);
                }
                *next_seq = record.last_seq + 1;
                return self.read_unchecked(record.offsets[self.channel], end);
            };
            let end = ends[self.channel];
            if end > self.readable_len {
                // Not committed yet.
                self.at_end = true;
                return Ok(false);
            }
            *next_seq = record.last_seq + 1;
            if record.lost || record.damaged {
                // Entries a power loss took, or whose journal record was
                // damaged: reported, never given (again).
                self.damaged = Some((record.first_seq, record.last_seq));
                self.buf.clear();
                self.pos = 0;
                self.buf_offset = end;
                return Ok(true);
            }
            if lens[self.channel] == 0 {
                continue;
            }
            return self.read_commit(record, None);
        }
    }

    /// Reads the bytes `record` wrote to this channel whole and checks
    /// them: into the buffer (from `unread` when given, a commit read
    /// before) when they match, as a damaged commit when they do not.
    fn read_commit(&mut self, record: JournalRecord, unread: Option<u64>) -> Result<bool> {
        let start = record.offsets[self.channel];
        let end = record.ends().expect("a checked record")[self.channel];
        let tail = self.buf_offset + self.buf.len() as u64;
        self.ready_to_read(start)?;
        let in_place = unread.is_some_and(|at| (start..end).contains(&at)) || start == tail;
        if unread.is_some() {
            self.buf.clear();
        }
        // The commit is read after the bytes the buffer holds, into its
        // spare capacity (not zeroed first), and checked there.
        let kept = self.buf.len();
        let file = self.file.as_ref().expect("opened above");
        let read = read_exact_into(file, &mut self.buf, start, end - start);
        if in_place && read.is_ok() && journal::verify(&record, self.channel, &self.buf[kept..]) {
            if let Some(at) = unread {
                self.buf_offset = start;
                self.pos = (at - start) as usize;
            }
            self.held = Some(Held::Checked(record));
            return Ok(true);
        }
        if let Err(err) = read
            && err.kind() != io::ErrorKind::UnexpectedEof
        {
            // Nothing of the commit stays behind in the buffer.
            self.buf.truncate(kept);
            return Err(StoreError::io(
                format!("cannot read {}", self.path.display()),
                err,
            ));
        }
        // Whatever the buffer held before is whole lines; the damaged
        // commit's bytes are not kept.
        self.buf.clear();
        self.pos = 0;
        self.buf_offset = end;
        self.damaged = Some((record.first_seq, record.last_seq));
        Ok(true)
    }

    /// Appends the next window (up to [`READ_CHUNK`]) of an unchecked
    /// commit's bytes, which run from `start` to `end`, to the buffer: from
    /// its tail, when a reader that seeked into the commit is past `start`.
    fn read_unchecked(&mut self, start: u64, end: u64) -> Result<bool> {
        let tail = self.buf_offset + self.buf.len() as u64;
        let from = tail.max(start);
        self.held = Some(Held::Unchecked(end));
        if from >= end {
            return Ok(true);
        }
        let window = (end - from).min(READ_CHUNK as u64);
        self.ready_to_read(from)?;
        if self.buf.is_empty() {
            self.buf_offset = from;
            self.pos = 0;
        }
        let kept = self.buf.len();
        read_exact_into(
            self.file.as_ref().expect("opened above"),
            &mut self.buf,
            from,
            window,
        )
        .map_err(|err| {
            self.buf.truncate(kept);
            StoreError::io(format!("cannot read {}", self.path.display()), err)
        })?;
        Ok(true)
    }

    /// Reads more of an unchecked file; false when nothing more is there.
    fn fill(&mut self) -> Result<bool> {
        if self.at_end {
            return Ok(false);
        }
        self.compact();
        let start = self.buf.len();
        let read_offset = self.buf_offset + start as u64;
        let room = self.readable_len.saturating_sub(read_offset);
        if room == 0 {
            self.at_end = true;
            return Ok(false);
        }
        self.ready_to_read(read_offset)?;
        // Reads into the buffer's spare capacity, which is not zeroed first.
        self.buf.reserve(READ_CHUNK);
        match read_into(
            self.file.as_ref().expect("opened above"),
            &mut self.buf,
            read_offset,
            room.min(READ_CHUNK as u64),
        ) {
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
        decode_line(self.channel, line).map_err(|err| {
            StoreError::damaged(&self.path, format!("holds an invalid entry: {err}"))
        })
    }
}

/// Decodes one stored line of `channel`: a lifecycle entry, or a chunk
/// (through the fast parser where the line has the stored shape).
pub(crate) fn decode_line(channel: WorkerLogChannel, line: &[u8]) -> serde_json::Result<LogEntry> {
    Ok(match channel {
        WorkerLogChannel::Worker => {
            LogEntry::Lifecycle(serde_json::from_slice::<WorkerLifecycleLogEntry>(line)?)
        }
        WorkerLogChannel::Stdout | WorkerLogChannel::Stderr => {
            LogEntry::Chunk(match chunk_line::parse(line) {
                Some(entry) => entry,
                None => serde_json::from_slice::<StreamChunkLogEntry>(line)?,
            })
        }
    })
}

/// Appends exactly `len` bytes of `file` from `offset` to `buf`. On an
/// error `buf` may hold part of them.
fn read_exact_into(file: &File, buf: &mut Vec<u8>, offset: u64, len: u64) -> io::Result<()> {
    let want = usize::try_from(len).map_err(io::Error::other)?;
    buf.reserve(want);
    if read_into(file, buf, offset, len)? < want {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Appends up to `len` bytes of `file` from `offset` to `buf`, read into
/// its spare capacity: `&File` reads into memory that is not initialised,
/// where a `Read` with only `read` would have it zeroed first. Moves the
/// file's cursor, which only this reader uses.
fn read_into(file: &File, buf: &mut Vec<u8>, offset: u64, len: u64) -> io::Result<usize> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.take(len).read_to_end(buf)
}

/// The error for a journal that cannot be read on.
fn journal_error(cursor: &JournalCursor, err: io::Error) -> StoreError {
    if err.kind() == io::ErrorKind::InvalidData {
        StoreError::damaged(cursor.path().clone(), err.to_string())
    } else {
        StoreError::io(format!("cannot read {}", cursor.path().display()), err)
    }
}
