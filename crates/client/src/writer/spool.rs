//! The spool of a spooled [`RunWriter`](super::RunWriter): a local file
//! that everything the writer appends goes through, so that the process
//! whose output it carries never waits for the server.
//!
//! A handle appends each item (numbered) and each state change to the file
//! with one `write`, under a short lock, and returns: the file is the
//! queue. The writer's session reads the file behind the handles and sends
//! what it reads; the server's writer cursor tells it what the run already
//! holds, so a spool that is sent again (after a reconnection, or by
//! `baa-log upload` after the worker itself is gone) delivers each entry
//! exactly once. Once the server holds a long prefix of the file, the
//! session rewrites the file without it, so the file holds what is not
//! delivered, plus what came since the last rewrite.
//!
//! The file is bounded: an item that would take it past its limit (or that
//! the disk refuses) is dropped and counted, and the next item that fits is
//! preceded by a chunk that says how much is missing there.
//!
//! # Format
//!
//! [`MAGIC`], then records: a 4-byte little-endian length, the CRC-32C of
//! the body (4 bytes, little-endian) and the body, a protobuf
//! `SpoolRecord`. The first record is the header (which run, which writer,
//! the run to prepare if the server has not seen it). A record cut short
//! or with a wrong CRC ends the file: it is the last write of a process
//! that died, and it is cut off when the spool is opened again.
//!
//! Offsets given out by this module are logical: they count from the start
//! of the first file and never go back, although rewrites drop a prefix.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use prost::Message;
use tokio::sync::Notify;

use super::masking::ItemMasker;
use crate::{
    RunKey,
    pb::{self, append_item::Payload},
};

/// The first bytes of a spool file.
pub(crate) const MAGIC: &[u8] = b"BAA-SPOOL-1\n";

/// The bytes in front of every record body: its length and CRC.
const RECORD_HEAD: u64 = 8;

/// The largest record body read back; larger lengths mean damage.
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Who writes a spool and where to: its first record.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SpoolHeader {
    /// The run's task.
    #[prost(string, tag = "1")]
    pub(crate) task_id: String,
    /// The run.
    #[prost(string, tag = "2")]
    pub(crate) run_id: String,
    /// The writer's id, which the server keys its cursor by.
    #[prost(string, tag = "3")]
    pub(crate) writer_id: String,
    /// The run to prepare first, when the spool was started without the
    /// server; preparing is idempotent for the same metadata.
    #[prost(message, optional, tag = "4")]
    pub(crate) prepare: Option<pb::PrepareRunRequest>,
    /// The writer sequence number before the first item of the spool.
    #[prost(uint64, tag = "5")]
    pub(crate) first_after: u64,
}

impl SpoolHeader {
    /// The run the spool writes to.
    pub(crate) fn key(&self) -> RunKey {
        RunKey::new(&self.task_id, &self.run_id)
    }
}

/// One record of a spool file.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SpoolRecord {
    /// What it holds.
    #[prost(oneof = "Record", tags = "1, 2, 3")]
    pub(crate) record: Option<Record>,
}

/// What a record holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Record {
    /// The header, first in the file.
    #[prost(message, tag = "1")]
    Header(Box<SpoolHeader>),
    /// An item, numbered.
    #[prost(message, tag = "2")]
    Item(pb::AppendItem),
    /// A state change, applied once the items before it are stored.
    #[prost(message, tag = "3")]
    Patch(pb::RunStatePatch),
}

/// Where a spool goes and how large it may grow.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool file; created (with its directory) when the writer starts.
    pub path: PathBuf,
    /// The most bytes the file may hold; output past it is dropped, and
    /// the place is marked in the run.
    pub max_bytes: u64,
}

/// What a spool dropped since it last said so.
#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    /// Items.
    entries: u64,
    /// Their text, in bytes.
    bytes: u64,
    /// The channel of the first one.
    channel: Option<pb::StreamLogChannel>,
}

/// The writing side of a spool, under the lock.
#[derive(Debug)]
struct Appender {
    /// The file, opened for writing.
    file: File,
    /// The logical end of what is written.
    end: u64,
    /// How many bytes the rewrites removed: physical = logical - removed.
    removed: u64,
    /// The bytes of the magic and the header, which rewrites keep.
    head: u64,
    /// The writer sequence number of the last item written.
    last_seq: u64,
    /// The most bytes the file may hold.
    max_bytes: u64,
    /// What was dropped since the last mark.
    dropped: Dropped,
    /// What was dropped in all, in items and bytes.
    dropped_total: (u64, u64),
    /// The first write error, if the disk refused one.
    error: Option<String>,
    /// The header, which a rewrite writes again.
    header: SpoolHeader,
    /// Whether the file was removed, everything in it delivered.
    gone: bool,
    /// The writer's masking: items are masked before they are written.
    masking: ItemMasker,
}

/// A spool, shared by a writer's handles and its session.
#[derive(Debug)]
pub(crate) struct Spool {
    /// The file's path.
    path: PathBuf,
    /// The writing side.
    appender: Mutex<Appender>,
    /// Woken after each write, for the session.
    pub(crate) written: Notify,
}

impl Spool {
    /// Creates a spool at `options.path` for the writer `header` names.
    pub(crate) fn create(
        options: &SpoolOptions,
        header: &SpoolHeader,
        masking: ItemMasker,
    ) -> io::Result<Self> {
        if let Some(dir) = options.path.parent() {
            // Spools hold a command's output: for their owner's eyes.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&options.path)?;
        let mut head = MAGIC.to_vec();
        head.extend(frame(&Record::Header(Box::new(header.clone()))));
        file.write_all(&head)?;
        let head = head.len() as u64;
        Ok(Self::with(
            options.path.clone(),
            Appender {
                file,
                end: head,
                removed: 0,
                head,
                last_seq: header.first_after,
                max_bytes: options.max_bytes,
                dropped: Dropped::default(),
                dropped_total: (0, 0),
                error: None,
                header: header.clone(),
                gone: false,
                masking,
            },
        ))
    }

    /// Opens the spool at `path` again, to send what it holds: returns it
    /// with its header, after cutting off a last record cut short.
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        masking: ItemMasker,
    ) -> io::Result<(Self, SpoolHeader)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot open spool {}: {err}", path.display()),
                )
            })?;
        let mut magic = vec![0; MAGIC.len()];
        file.read_exact(&mut magic)
            .map_err(|_| invalid(path, "it is not a spool file (too short)"))?;
        if magic != MAGIC {
            return Err(invalid(path, "it is not a spool file"));
        }
        let mut reader = SpoolReader::new(file.try_clone()?, MAGIC.len() as u64, 0);
        let len = file.metadata()?.len();
        let Some((Record::Header(header), head)) = reader.read(len, 1)?.into_iter().next() else {
            return Err(invalid(path, "it has no header"));
        };
        let header = *header;
        let mut last_seq = header.first_after;
        let mut end = head;
        // Records are scanned a few MiB at a time, to find the last item.
        loop {
            let records = reader.read(len, 4 * 1024 * 1024)?;
            if records.is_empty() {
                break;
            }
            for (record, record_end) in records {
                if let Record::Item(item) = record {
                    last_seq = item.writer_seq;
                }
                end = record_end;
            }
        }
        // What follows the last whole record is a write cut short.
        file.set_len(end)?;
        file.seek(SeekFrom::End(0))?;
        let spool = Self::with(
            path.to_owned(),
            Appender {
                file,
                end,
                removed: 0,
                head,
                last_seq,
                max_bytes,
                dropped: Dropped::default(),
                dropped_total: (0, 0),
                error: None,
                header: header.clone(),
                gone: false,
                masking,
            },
        );
        Ok((spool, header))
    }

    /// A spool over an open appender.
    fn with(path: PathBuf, appender: Appender) -> Self {
        Self {
            path,
            appender: Mutex::new(appender),
            written: Notify::new(),
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The appender; see the crate's `# Locking` section.
    fn lock(&self) -> MutexGuard<'_, Appender> {
        self.appender.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers `payload` and writes it; never waits for the server. An
    /// item the file has no room for is dropped and counted.
    pub(crate) fn push_item(&self, payload: Payload) {
        {
            let mut appender = self.lock();
            // A tail held too long goes out here too, not only when the
            // session's timer fires: the session may be waiting for the
            // server meanwhile.
            let mut payloads = appender.masking.release_due(now());
            payloads.extend(appender.masking.mask(payload));
            for payload in payloads {
                appender.push_masked(&self.path, payload);
            }
        }
        self.written.notify_one();
    }

    /// Writes a state change, to apply once the items before it are
    /// stored. State changes are small and always written, past the limit
    /// too; only a disk that refuses them loses them.
    pub(crate) fn push_patch(&self, patch: pb::RunStatePatch) {
        {
            let mut appender = self.lock();
            // What the masking holds back goes before the state change.
            for payload in appender.masking.release_all() {
                appender.push_masked(&self.path, payload);
            }
            // The place of a loss is marked before the run's next state,
            // room or not, so a run that ends with a loss says so.
            appender.mark_losses(&self.path, true);
            let patch = appender.masking.mask_patch(patch);
            let bytes = frame(&Record::Patch(patch));
            appender.write(&bytes);
        }
        self.written.notify_one();
    }

    /// Writes what the masking holds back, whatever it is.
    pub(crate) fn release_held(&self) {
        let mut appender = self.lock();
        for payload in appender.masking.release_all() {
            appender.push_masked(&self.path, payload);
        }
        drop(appender);
        self.written.notify_one();
    }

    /// Writes what the masking has held back for too long.
    pub(crate) fn release_due(&self) {
        let mut appender = self.lock();
        for payload in appender.masking.release_due(now()) {
            appender.push_masked(&self.path, payload);
        }
        drop(appender);
        self.written.notify_one();
    }

    /// When what the masking holds back is due, if it holds something.
    pub(crate) fn next_due(&self) -> Option<std::time::Instant> {
        self.lock().masking.next_due()
    }

    /// The logical end of what is written.
    pub(crate) fn end(&self) -> u64 {
        self.lock().end
    }

    /// The sequence number of the last item written.
    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// What was dropped in all, in items and bytes, and the first write
    /// error.
    pub(crate) fn losses(&self) -> (u64, u64, Option<String>) {
        let appender = self.lock();
        let (entries, bytes) = appender.dropped_total;
        (entries, bytes, appender.error.clone())
    }

    /// Makes what is written durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.lock().file.sync_data()
    }

    /// A reader from the first record after the header.
    pub(crate) fn reader(&self) -> io::Result<SpoolReader> {
        let appender = self.lock();
        Ok(SpoolReader::new(
            appender.file.try_clone()?,
            appender.head + appender.removed,
            appender.removed,
        ))
    }

    /// Rewrites the file without the records before the logical offset
    /// `delivered`, which the server holds, if that pays: the prefix is
    /// large and what follows small. `acked` is the last item the server
    /// holds, which the new header says comes before the file's items.
    /// `reader` is moved to the new file.
    pub(crate) fn compact(
        &self,
        delivered: u64,
        acked: u64,
        reader: &mut SpoolReader,
    ) -> io::Result<bool> {
        /// A prefix shorter than this is not worth a rewrite.
        const MIN_PREFIX: u64 = 16 * 1024 * 1024;
        /// A rest longer than this makes a rewrite too slow to hold the
        /// lock for.
        const MAX_REST: u64 = 8 * 1024 * 1024;
        let mut appender = self.lock();
        // The logical offset of the first record in the file now.
        let first = appender.head + appender.removed;
        let prefix = delivered.saturating_sub(first);
        let rest = appender.end.saturating_sub(delivered);
        if appender.gone || prefix < MIN_PREFIX.min(appender.max_bytes / 4) || rest > MAX_REST {
            return Ok(false);
        }
        appender.header.first_after = appender.header.first_after.max(acked);
        let mut kept = MAGIC.to_vec();
        kept.extend(frame(&Record::Header(Box::new(appender.header.clone()))));
        let head = kept.len();
        kept.resize(head + usize::try_from(rest).unwrap_or(usize::MAX), 0);
        appender
            .file
            .read_exact_at(&mut kept[head..], delivered - appender.removed)?;
        let staged = self.path.with_extension("spool.new");
        // A file left there by a rewrite that died is ours; anything else
        // (a link planted there) is refused by `create_new`.
        let _ = fs::remove_file(&staged);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)?;
        file.write_all(&kept)?;
        fs::rename(&staged, &self.path)?;
        appender.file = file;
        appender.head = head as u64;
        appender.removed = delivered - head as u64;
        *reader = SpoolReader::new(
            appender.file.try_clone()?,
            reader.offset.max(delivered),
            appender.removed,
        );
        Ok(true)
    }

    /// Removes the file, once everything in it is delivered.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut appender = self.lock();
        appender.gone = true;
        fs::remove_file(&self.path)
    }
}

impl Appender {
    /// Writes a masked item, or counts it as dropped while the file is
    /// full, after the mark of what was dropped before, if it fits now.
    fn push_masked(&mut self, path: &Path, payload: Payload) {
        self.mark_losses(path, false);
        if self.dropped.entries == 0 {
            self.write_item(payload, false);
        } else {
            self.drop_item(&payload);
        }
    }

    /// Writes the mark of the output dropped since the last one, if any:
    /// when it fits, or past the limit with `force`.
    fn mark_losses(&mut self, path: &Path, force: bool) {
        if self.dropped.entries == 0 {
            return;
        }
        let mark = self.dropped;
        let text = format!(
            "\n[baa-log: {} bytes of output ({} chunks) are missing here: the worker's spool \
             {} was full or could not be written]\n",
            mark.bytes,
            mark.entries,
            path.display()
        );
        let channel = mark.channel.unwrap_or(pb::StreamLogChannel::Stdout);
        let max_bytes = self.max_bytes;
        if force {
            self.max_bytes = u64::MAX;
        }
        let written = self.write_item(super::chunk_payload(channel, text), true);
        self.max_bytes = max_bytes;
        if written {
            self.dropped = Dropped::default();
        }
    }

    /// Writes an item numbered next; false (and the item counted as
    /// dropped, unless it is a `mark`) when there is no room or the disk
    /// refuses it.
    fn write_item(&mut self, payload: Payload, mark: bool) -> bool {
        let item = pb::AppendItem {
            writer_seq: self.last_seq + 1,
            payload: Some(payload),
        };
        let bytes = frame(&Record::Item(item.clone()));
        let fits = self.end - self.removed + bytes.len() as u64 <= self.max_bytes;
        if fits && self.write(&bytes) {
            self.last_seq += 1;
            return true;
        }
        if !mark {
            if let Some(payload) = &item.payload {
                self.drop_item(payload);
            }
        }
        false
    }

    /// Counts an item as dropped.
    fn drop_item(&mut self, payload: &Payload) {
        let (channel, bytes) = match payload {
            Payload::Stdout(chunk) => (pb::StreamLogChannel::Stdout, chunk.text.len()),
            Payload::Stderr(chunk) => (pb::StreamLogChannel::Stderr, chunk.text.len()),
            Payload::Event(event) => (pb::StreamLogChannel::Stderr, event.message.len()),
        };
        self.dropped.entries += 1;
        self.dropped.bytes += bytes as u64;
        self.dropped.channel.get_or_insert(channel);
        self.dropped_total.0 += 1;
        self.dropped_total.1 += bytes as u64;
    }

    /// Writes `bytes` at the end; false when the disk refuses them (the
    /// file is cut back to its last whole record).
    fn write(&mut self, bytes: &[u8]) -> bool {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.end += bytes.len() as u64;
                true
            }
            Err(err) => {
                let _ = self.file.set_len(self.end - self.removed);
                let _ = self.file.seek(SeekFrom::End(0));
                self.error.get_or_insert_with(|| err.to_string());
                false
            }
        }
    }
}

/// Reads a spool's records in order, behind its writers.
#[derive(Debug)]
pub(crate) struct SpoolReader {
    /// The file.
    file: File,
    /// The logical offset of the next record.
    offset: u64,
    /// Physical = logical - removed.
    removed: u64,
    /// Bytes read but not yet parsed: the start of a record whose rest
    /// was not written yet.
    pending: Vec<u8>,
}

impl SpoolReader {
    /// A reader of `file` from the logical offset `offset`.
    fn new(file: File, offset: u64, removed: u64) -> Self {
        Self {
            file,
            offset,
            removed,
            pending: Vec::new(),
        }
    }

    /// The logical offset of the next record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The whole records up to the logical offset `end`, at most about
    /// `budget` bytes of them (at least one), each with its end offset.
    /// Reading stops at a record cut short or damaged.
    pub(crate) fn read(&mut self, end: u64, budget: usize) -> io::Result<Vec<(Record, u64)>> {
        let mut records = Vec::new();
        let mut taken = 0usize;
        let mut position = self.offset + self.pending.len() as u64;
        loop {
            // Parse what is buffered.
            let mut used = 0;
            while let Some((record, len)) = parse(&self.pending[used..]) {
                used += len;
                self.offset += len as u64;
                taken += len;
                records.push((record, self.offset));
                if taken >= budget {
                    break;
                }
            }
            self.pending.drain(..used);
            if taken >= budget || position >= end {
                return Ok(records);
            }
            let want = usize::try_from((end - position).min(1024 * 1024)).unwrap_or(1024 * 1024);
            let start = self.pending.len();
            self.pending.resize(start + want, 0);
            let read = self
                .file
                .read_at(&mut self.pending[start..], position - self.removed)?;
            self.pending.truncate(start + read);
            if read == 0 {
                return Ok(records);
            }
            position += read as u64;
        }
    }
}

/// The time on tokio's clock, which the session's timers use.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A record framed for the file.
fn frame(record: &Record) -> Vec<u8> {
    let body = SpoolRecord {
        record: Some(record.clone()),
    }
    .encode_to_vec();
    let mut bytes = Vec::with_capacity(body.len() + RECORD_HEAD as usize);
    bytes.extend((body.len() as u32).to_le_bytes());
    bytes.extend(crc32c::crc32c(&body).to_le_bytes());
    bytes.extend(body);
    bytes
}

/// The first record of `bytes` and its framed length, if it is whole and
/// sound.
fn parse(bytes: &[u8]) -> Option<(Record, usize)> {
    let head = bytes.get(..RECORD_HEAD as usize)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(RECORD_HEAD as usize..RECORD_HEAD as usize + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let record = SpoolRecord::decode(body).ok()?.record?;
    Some((record, RECORD_HEAD as usize + len))
}

/// The error for a file that is not a usable spool.
fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot read spool {}: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spool under `dir` for run `t/r`, limited to `max_bytes`.
    fn spool(dir: &Path, max_bytes: u64) -> Spool {
        let options = SpoolOptions {
            path: dir.join("t").join("r.spool"),
            max_bytes,
        };
        let header = SpoolHeader {
            task_id: "t".into(),
            run_id: "r".into(),
            writer_id: "w".into(),
            prepare: None,
            first_after: 0,
        };
        Spool::create(&options, &header, no_masking()).expect("a spool")
    }

    /// A masking with no secrets.
    fn no_masking() -> ItemMasker {
        ItemMasker::new(
            super::super::masking::SharedMasker::new(baa_logging_mask::Secrets::new()),
            1024 * 1024,
        )
    }

    /// Stdout text.
    fn text(text: &str) -> Payload {
        super::super::chunk_payload(pb::StreamLogChannel::Stdout, text.into())
    }

    /// The texts and patches of the records read up to the end.
    fn read_all(spool: &Spool) -> Vec<String> {
        let mut reader = spool.reader().expect("a reader");
        reader
            .read(spool.end(), usize::MAX)
            .expect("readable")
            .into_iter()
            .map(|(record, _)| match record {
                Record::Item(item) => match item.payload {
                    Some(Payload::Stdout(chunk)) => format!("{}:{}", item.writer_seq, chunk.text),
                    other => format!("{other:?}"),
                },
                Record::Patch(patch) => format!("patch {:?}", patch.status),
                Record::Header(_) => "header".into(),
            })
            .collect()
    }

    /// Items are numbered in order, patches keep their place, and a
    /// spool opened again goes on after its last item.
    #[test]
    fn records_come_back_in_order_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let first = spool(dir.path(), u64::MAX);
        first.push_item(text("a"));
        first.push_patch(pb::RunStatePatch {
            status: Some(2),
            ..Default::default()
        });
        first.push_item(text("b"));
        assert_eq!(read_all(&first), ["1:a", "patch Some(2)", "2:b"]);
        let (again, header) = Spool::open(first.path(), u64::MAX, no_masking()).unwrap();
        assert_eq!(header.writer_id, "w");
        again.push_item(text("c"));
        assert_eq!(read_all(&again), ["1:a", "patch Some(2)", "2:b", "3:c"]);
    }

    /// A last record cut short (a process killed mid-write) is cut off
    /// when the spool is opened again; what came before stays.
    #[test]
    fn a_torn_last_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let first = spool(dir.path(), u64::MAX);
        first.push_item(text("whole"));
        first.push_item(text("torn"));
        let path = first.path().to_owned();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (again, _) = Spool::open(&path, u64::MAX, no_masking()).unwrap();
        assert_eq!(read_all(&again), ["1:whole"]);
        again.push_item(text("next"));
        assert_eq!(read_all(&again), ["1:whole", "2:next"]);
    }

    /// Past the limit items are dropped and counted, and the next state
    /// change is preceded by a mark of the loss.
    #[test]
    fn a_full_spool_drops_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path(), 200);
        for _ in 0..10 {
            spool.push_item(text(&"x".repeat(40)));
        }
        let (dropped, bytes, error) = spool.losses();
        assert!(dropped > 0 && bytes == dropped * 40, "{dropped} {bytes}");
        assert!(error.is_none());
        spool.push_patch(pb::RunStatePatch::default());
        let records = read_all(&spool);
        let mark = &records[records.len() - 2];
        assert!(mark.contains(&format!("{bytes} bytes of output")), "{mark}");
        assert_eq!(records.last().unwrap(), "patch None");
    }

    /// A rewrite drops the delivered prefix and keeps offsets logical:
    /// the reader goes on where it was.
    #[test]
    fn compaction_keeps_what_is_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path(), 64 * 1024);
        let mut reader = spool.reader().unwrap();
        for i in 0..200 {
            spool.push_item(text(&format!("{i:0>200}")));
        }
        let read = reader.read(spool.end(), usize::MAX).unwrap();
        let delivered = read[149].1;
        assert!(spool.compact(delivered, 150, &mut reader).unwrap());
        spool.push_item(text("after"));
        let rest = reader.read(spool.end(), usize::MAX).unwrap();
        assert_eq!(rest.len(), 1, "the reader goes on after what it read");
        let texts = read_all(&spool);
        assert_eq!(texts.len(), 51);
        assert!(texts[0].starts_with("151:"), "{}", texts[0]);
        assert_eq!(texts[50], "201:after");
        let (again, header) = Spool::open(spool.path(), u64::MAX, no_masking()).unwrap();
        assert_eq!(header.first_after, 150, "the header says what went before");
        again.push_item(text("reopened"));
        assert_eq!(read_all(&again)[51], "202:reopened");
    }
}
