//! Searching a run's files: commit by commit from the journal, each
//! commit's bytes checked against its record before any of them is looked
//! at, and, for a literal pattern, only the lines its bytes may match
//! parsed.
//!
//! A stored line is the entry's JSON, text last. JSON writes a literal
//! without quotes, backslashes or control characters as itself, so a
//! line whose bytes do not contain the literal holds no line of text that
//! matches it, and it is skipped unparsed when the scanner allows (no
//! context before matches is kept, no match waits for lines after it, no
//! line of its channel is partial, and the entry's text ends with a
//! newline, so that nothing of it carries into the next). The rest is
//! parsed and matched on its text. Regular expressions parse every line.
//!
//! Runs whose records carry no checksums (written before them, or
//! adopted) are searched through a history reader instead.

use std::{
    borrow::Cow,
    fs::File,
    io::{Read, Seek, SeekFrom},
    sync::Arc,
};

use serde::Deserialize;

use super::{
    concurrency::blocking_read,
    journal::{self, JournalRecord},
    journal_cursor::JournalCursor,
    range,
    reader::LocalReader,
    retention::LocalHold,
    run::Run,
};
use crate::{
    error::{Result, StoreError},
    model::{PerChannel, WorkerLogChannel},
    run_store::RunSearcher,
    search::{LineScanner, ReaderSearch, SearchBatch},
};

/// How much of a channel file is read at a time.
const WINDOW: usize = 1024 * 1024;

/// The most journal records one step handles, whatever their size.
const MAX_STEP_RECORDS: usize = 4096;

/// What one journal record costs a search, for pacing: about the size of
/// its line.
const RECORD_COST: u64 = 256;

/// A search of one run of the local store.
#[derive(Debug)]
pub struct LocalSearch {
    /// How it searches.
    mode: Mode,
}

/// How a run is searched.
#[derive(Debug)]
enum Mode {
    /// Not started: the first step opens the journal, in the same blocking
    /// task as its scan; `None` while it runs.
    Pending(Option<Box<(Arc<Run>, LocalHold, LineScanner)>>),
    /// From the files, commit by commit; `None` while a step runs.
    Files(Option<Box<FileScan>>),
    /// Through a history reader.
    Entries(Box<ReaderSearch<LocalReader>>),
}

impl LocalSearch {
    /// A search of `run`, started by its first step.
    pub(crate) fn new(run: Arc<Run>, hold: LocalHold, scanner: LineScanner) -> Self {
        Self {
            mode: Mode::Pending(Some(Box::new((run, hold, scanner)))),
        }
    }

    /// Starts a search of `run` (blocking: it reads the journal).
    fn open(run: Arc<Run>, hold: LocalHold, scanner: LineScanner) -> Result<Self> {
        let from = scanner.read_from();
        let committed = run.committed();
        let bounds = range::resolve(&run, &from, committed.seq)?;
        let to_seq = bounds.to_seq.unwrap_or(committed.seq).min(committed.seq);
        let journal_path = run.dir.journal();
        let io_journal =
            |err| StoreError::io(format!("cannot read {}", journal_path.display()), err);
        let mut cursor = JournalCursor::open(journal_path.clone(), bounds.from_seq.min(to_seq))
            .map_err(io_journal)?;
        let first = match bounds.from_seq <= to_seq {
            true => cursor.record_for(bounds.from_seq).map_err(io_journal)?,
            false => None,
        };
        if first.as_ref().is_some_and(|record| record.lens.is_none()) {
            let reader = LocalReader::open(run, hold, from)?;
            return Ok(Self {
                mode: Mode::Entries(Box::new(ReaderSearch::new(reader, scanner))),
            });
        }
        let files = PerChannel::default();
        Ok(Self {
            mode: Mode::Files(Some(Box::new(FileScan {
                run,
                _hold: hold,
                scanner,
                cursor,
                next_seq: bounds.from_seq,
                to_seq,
                lens: committed.lens,
                files,
            }))),
        })
    }
}

impl RunSearcher for LocalSearch {
    async fn next(&mut self, max_bytes: usize) -> Result<SearchBatch> {
        if let Mode::Pending(pending) = &mut self.mode {
            let Some(pending) = pending.take() else {
                return Err(stopped());
            };
            let (run, hold, scanner) = *pending;
            let (opened, first) = blocking_read(move || {
                let mut opened = Self::open(run, hold, scanner)?;
                let first = match &mut opened.mode {
                    Mode::Files(Some(scan)) => Some(scan.step(max_bytes)),
                    _ => None,
                };
                Ok((opened, first))
            })
            .await?;
            self.mode = opened.mode;
            match first {
                Some(step) => return self.finish_step(step).await,
                // A run searched through its entries: its reader's turn.
                None => return Ok(SearchBatch::default()),
            }
        }
        let scan = match &mut self.mode {
            Mode::Entries(search) => return search.next(max_bytes).await,
            Mode::Files(scan) => scan.take().ok_or_else(stopped)?,
            Mode::Pending(_) => unreachable!("started above"),
        };
        let (scan, step) = blocking_read(move || {
            let mut scan = scan;
            let step = scan.step(max_bytes);
            Ok((scan, step))
        })
        .await?;
        self.mode = Mode::Files(Some(scan));
        self.finish_step(step).await
    }
}

impl LocalSearch {
    /// What a file step found: its batch, or a switch to the entries for
    /// a commit without checksums.
    async fn finish_step(&mut self, step: Result<Step>) -> Result<SearchBatch> {
        match step? {
            Step::Batch(batch) => Ok(batch),
            Step::Unchecked(from_seq, mut batch) => {
                // A commit without checksums after checked ones: the rest
                // of the run goes through a reader.
                let Mode::Files(Some(scan)) =
                    std::mem::replace(&mut self.mode, Mode::Pending(None))
                else {
                    unreachable!("a file step ran");
                };
                let FileScan {
                    run,
                    _hold: hold,
                    scanner,
                    to_seq,
                    ..
                } = *scan;
                let mut from = scanner.read_from();
                from.from_seq = from_seq;
                from.to_seq = Some(to_seq);
                let reader = blocking_read(move || LocalReader::open(run, hold, from)).await?;
                self.mode = Mode::Entries(Box::new(ReaderSearch::new(reader, scanner)));
                batch.done = false;
                Ok(batch)
            }
        }
    }
}

/// The error of a search asked to go on after a step of it failed.
fn stopped() -> StoreError {
    StoreError::io(
        "cannot go on with the search",
        std::io::Error::other("an earlier step of it failed"),
    )
}

/// What one step of a file scan ended with.
enum Step {
    /// A batch.
    Batch(SearchBatch),
    /// A commit without checksums at this `seq`, and the batch before it.
    Unchecked(u64, SearchBatch),
}

/// The state of a file scan between steps.
#[derive(Debug)]
struct FileScan {
    /// The run.
    run: Arc<Run>,
    /// Keeps the run from retention.
    _hold: LocalHold,
    /// The matching.
    scanner: LineScanner,
    /// The journal, from the first commit searched.
    cursor: JournalCursor,
    /// The next `seq` to search.
    next_seq: u64,
    /// The last `seq` to search.
    to_seq: u64,
    /// How far each channel file was committed when the search began.
    lens: PerChannel<u64>,
    /// Each channel file, read a window at a time; opened when first read.
    files: PerChannel<Option<Window>>,
}

impl FileScan {
    /// Scans commits until about `max_bytes` were scanned, the range
    /// ends, or the scanner wants no more.
    fn step(&mut self, max_bytes: usize) -> Result<Step> {
        let mut batch = SearchBatch::default();
        let journal_path = self.cursor.path().clone();
        let io_journal =
            |err| StoreError::io(format!("cannot read {}", journal_path.display()), err);
        let mut records = 0;
        while batch.scanned_bytes + batch.overhead_bytes < max_bytes as u64
            && records < MAX_STEP_RECORDS
            && !self.scanner.is_finished()
        {
            if self.next_seq > self.to_seq {
                break;
            }
            let Some(record) = self.cursor.record_for(self.next_seq).map_err(io_journal)? else {
                // The journal ends before the range does: nothing more.
                self.next_seq = self.to_seq + 1;
                break;
            };
            records += 1;
            // Every record costs its journal line, even one that names
            // no selected bytes, so that a step's cost is always counted.
            batch.overhead_bytes += RECORD_COST;
            if record.lost || record.damaged {
                batch
                    .skipped
                    .push((self.next_seq, record.last_seq.min(self.to_seq)));
                self.next_seq = record.last_seq + 1;
                continue;
            }
            if record.lens.is_none() {
                batch.hits = self.scanner.take_hits();
                return Ok(Step::Unchecked(self.next_seq, batch));
            }
            self.commit(&record, &mut batch)?;
            self.next_seq = record.last_seq + 1;
        }
        batch.done = self.next_seq > self.to_seq || self.scanner.is_finished();
        if batch.done {
            self.scanner.finish();
        }
        batch.hits = self.scanner.take_hits();
        // A search that waits (for its pace, or for its caller to read)
        // holds no read buffer meanwhile.
        for (_, window) in self.files.iter_mut() {
            if let Some(window) = window {
                window.release();
            }
        }
        self.cursor.park();
        Ok(Step::Batch(batch))
    }

    /// Scans one commit's selected channels, after checking all of them.
    fn commit(&mut self, record: &JournalRecord, batch: &mut SearchBatch) -> Result<()> {
        let lens = record.lens.expect("a checked record");
        let selected = self.scanner.query().channels;
        let channels: Vec<WorkerLogChannel> = selected
            .iter()
            .filter(|channel| record.counts[*channel] > 0)
            .collect();
        // The window of each file serves one channel's bytes at a time, so
        // the channels are checked and scanned one by one; a damaged
        // channel skips the whole commit, as a reader does.
        for channel in &channels {
            let (offset, len) = (record.offsets[*channel], lens[*channel]);
            let bytes = self.read(*channel, offset, len)?;
            if !journal::verify(record, *channel, bytes) {
                batch.skipped.push((
                    record.first_seq.max(self.next_seq),
                    record.last_seq.min(self.to_seq),
                ));
                return Ok(());
            }
        }
        let partial = record.first_seq < self.next_seq || record.last_seq > self.to_seq;
        for channel in channels {
            let (offset, len) = (record.offsets[channel], lens[channel]);
            batch.scanned_bytes += len;
            let (from, to) = (self.next_seq, self.to_seq);
            let path = self.run.dir.log(channel);
            let window = self.files[channel]
                .as_mut()
                .expect("opened when the commit was checked");
            let bytes = window
                .slice(offset, len, self.lens[channel])
                .map_err(|err| StoreError::io(format!("cannot read {}", path.display()), err))?;
            let closed = record.closed.is_some_and(|closed| closed[channel]);
            scan_lines(
                &mut self.scanner,
                Block {
                    channel,
                    bytes,
                    bounds: partial.then_some((from, to)),
                    closed,
                },
            )
            .map_err(|line| {
                StoreError::io(
                    format!("cannot search {}", path.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a checked line is not an entry: {line}"),
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// The bytes of `channel`'s file from `offset`.
    fn read(&mut self, channel: WorkerLogChannel, offset: u64, len: u64) -> Result<&[u8]> {
        let path = self.run.dir.log(channel);
        let fail = |err| StoreError::io(format!("cannot read {}", path.display()), err);
        let window = match &mut self.files[channel] {
            Some(window) => window,
            empty => empty.insert(Window::new(File::open(&path).map_err(fail)?)),
        };
        window.slice(offset, len, self.lens[channel]).map_err(fail)
    }
}

/// Feeds a checked commit's lines of one channel to `scanner`: every line
/// when it has bounds (the commit reaches past the range: lines outside
/// it are left out), otherwise the lines that may matter, or none when no
/// line can match and none goes on past the block.
fn scan_lines(scanner: &mut LineScanner, block: Block<'_>) -> std::result::Result<(), String> {
    let Block {
        channel,
        bytes,
        bounds,
        closed,
    } = block;
    let candidates: Option<Vec<usize>> = match bounds {
        Some(_) => None,
        None => scanner
            .query()
            .pattern
            .raw_prefilter()
            .map(|raw| raw.find_iter(bytes).map(|found| found.start()).collect()),
    };
    let mut next_candidate = 0;
    let mut start = 0;
    while start < bytes.len() {
        if let (Some(candidates), true) = (&candidates, closed) {
            if scanner.may_skip(channel) {
                // Every line up to the next one the literal may be in
                // holds no match and none goes on: jump to that line.
                while next_candidate < candidates.len() && candidates[next_candidate] < start {
                    next_candidate += 1;
                }
                let Some(&at) = candidates.get(next_candidate) else {
                    scanner.skipped(channel);
                    return Ok(());
                };
                let line_start = memchr::memrchr(b'\n', &bytes[start..at])
                    .map_or(start, |newline| start + newline + 1);
                if line_start > start {
                    scanner.skipped(channel);
                    start = line_start;
                }
            }
        }
        let Some(newline) = memchr::memchr(b'\n', &bytes[start..]).map(|at| start + at) else {
            break;
        };
        let line = &bytes[start..newline];
        let line_start = start;
        start = newline + 1;
        if let Some(candidates) = &candidates {
            while next_candidate < candidates.len() && candidates[next_candidate] < line_start {
                next_candidate += 1;
            }
            let found = candidates
                .get(next_candidate)
                .is_some_and(|at| *at < newline);
            let line_closed =
                closed || channel == WorkerLogChannel::Worker || text_ends_with_newline(line);
            if !found && line_closed && scanner.may_skip(channel) {
                scanner.skipped(channel);
                continue;
            }
        }
        feed(scanner, channel, line, bounds)?;
    }
    Ok(())
}

/// One channel's bytes of a checked commit, to scan.
struct Block<'a> {
    /// The channel.
    channel: WorkerLogChannel,
    /// Its lines.
    bytes: &'a [u8],
    /// The range of `seq` to feed when the commit reaches past it.
    bounds: Option<(u64, u64)>,
    /// Every chunk of it ends with a newline (the journal says so).
    closed: bool,
}

/// Parses one stored line and feeds it, if its `seq` is within `bounds`.
fn feed(
    scanner: &mut LineScanner,
    channel: WorkerLogChannel,
    line: &[u8],
    bounds: Option<(u64, u64)>,
) -> std::result::Result<(), String> {
    let within = |seq: u64| bounds.is_none_or(|(from, to)| (from..=to).contains(&seq));
    let invalid = |err: serde_json::Error| err.to_string();
    match channel {
        WorkerLogChannel::Worker => {
            let event: StoredEvent<'_> = serde_json::from_slice(line).map_err(invalid)?;
            if within(event.seq) {
                scanner.event(event.seq, &event.created_at, &event.rendered_line);
            }
        }
        _ => {
            let chunk: StoredChunk<'_> = serde_json::from_slice(line).map_err(invalid)?;
            if within(chunk.seq) {
                scanner.chunk(channel, chunk.seq, &chunk.created_at, &chunk.text);
            }
        }
    }
    Ok(())
}

/// Whether a stored chunk line's text ends with a newline: the line ends
/// with `\n"}`, where the backslash is not itself escaped.
fn text_ends_with_newline(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"n\"}") else {
        return false;
    };
    let backslashes = body.iter().rev().take_while(|byte| **byte == b'\\').count();
    backslashes % 2 == 1
}

/// What a search needs of a stored chunk.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredChunk<'a> {
    /// Its `seq`.
    seq: u64,
    /// When the writer made it.
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    /// Its text.
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// What a search needs of a stored lifecycle event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEvent<'a> {
    /// Its `seq`.
    seq: u64,
    /// When the writer made it.
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    /// Its line.
    #[serde(borrow)]
    rendered_line: Cow<'a, str>,
}

/// A channel file, read a window at a time.
#[derive(Debug)]
struct Window {
    /// The file.
    file: File,
    /// The file offset of `buf[0]`.
    start: u64,
    /// The bytes read.
    buf: Vec<u8>,
}

impl Window {
    /// An empty window on `file`.
    fn new(file: File) -> Self {
        Self {
            file,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Frees the buffer; the next slice reads again.
    fn release(&mut self) {
        self.buf = Vec::new();
    }

    /// The `len` bytes from `offset`, read (with what follows, up to
    /// `limit`) unless the window holds them.
    fn slice(&mut self, offset: u64, len: u64, limit: u64) -> std::io::Result<&[u8]> {
        let end = offset + len;
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            let want = (len as usize).max(WINDOW);
            let available = limit.saturating_sub(offset).max(len) as usize;
            let size = want.min(available);
            // Read into spare capacity: no zeroing of a buffer the read
            // overwrites anyway.
            self.buf.clear();
            self.buf.reserve_exact(size);
            self.start = offset;
            let read = self
                .file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| (&self.file).take(size as u64).read_to_end(&mut self.buf));
            if let Err(err) = read {
                self.buf.clear();
                return Err(err);
            }
            if (self.buf.len() as u64) < len {
                self.buf.clear();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ends before byte {end}"),
                ));
            }
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + len as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jumping between the lines the literal may be in finds what feeding
    /// every line finds, context after matches and groups included.
    #[test]
    fn skipping_lines_finds_what_feeding_them_finds() {
        use crate::{
            model::ChannelSet,
            search::{Pattern, SearchQuery},
        };
        // Closed blocks, and one with empty chunks (which hold no line, so
        // their block is not closed).
        let block = |empty: bool| {
            let mut bytes = Vec::new();
            for seq in 1..=400u64 {
                let text = match seq % 37 {
                    0 => format!("a needle {seq}\nsecond line\n"),
                    1 => format!("after {seq}\n"),
                    2 if empty => String::new(),
                    _ => format!("line {seq}\n"),
                };
                let line = serde_json::json!({ "seq": seq, "createdAt": "t", "text": text });
                bytes.extend_from_slice(line.to_string().as_bytes());
                bytes.push(b'\n');
            }
            (bytes, !empty)
        };
        for ((bytes, closed), after) in [block(false), block(true)]
            .into_iter()
            .flat_map(|block| [0, 1, 3].map(|after| (block.clone(), after)))
        {
            let scanner = || {
                LineScanner::new(
                    SearchQuery {
                        pattern: Pattern::new("needle", false, false).unwrap(),
                        channels: ChannelSet::ALL,
                        since: None,
                        until: None,
                        before: 0,
                        after,
                    },
                    1000,
                )
            };
            let mut skipping = scanner();
            let block = Block {
                channel: WorkerLogChannel::Stdout,
                bytes: &bytes,
                bounds: None,
                closed,
            };
            scan_lines(&mut skipping, block).unwrap();
            skipping.finish();
            let mut feeding = scanner();
            for line in bytes
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
            {
                feed(&mut feeding, WorkerLogChannel::Stdout, line, None).unwrap();
            }
            feeding.finish();
            let (found, expected) = (skipping.take_hits(), feeding.take_hits());
            assert_eq!(found.len(), 10, "after {after}");
            let shape = |hits: &[crate::search::SearchHit]| {
                hits.iter()
                    .map(|hit| (hit.seq, hit.text.clone(), hit.after.clone(), hit.joined))
                    .collect::<Vec<_>>()
            };
            assert_eq!(shape(&found), shape(&expected), "after {after}");
        }
    }

    /// A text ends with a newline when its last escape is `\n`, not when
    /// it ends with an escaped backslash and an `n`.
    #[test]
    fn tells_a_closing_newline() {
        assert!(text_ends_with_newline(br#"{"seq":1,"text":"a\n"}"#));
        assert!(!text_ends_with_newline(br#"{"seq":1,"text":"a"}"#));
        assert!(!text_ends_with_newline(br#"{"seq":1,"text":"a\\n"}"#));
        assert!(text_ends_with_newline(br#"{"seq":1,"text":"a\\\n"}"#));
    }
}
