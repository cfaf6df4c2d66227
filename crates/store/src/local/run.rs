//! One run's log session in memory: its state, its next sequence number,
//! its writers' cursors and its open files, behind one lock.
//!
//! Every write happens in a commit: the journal record first, then the
//! entries of each channel, each channel in one `write` call, then the
//! in-memory counters, and last the doorbell that wakes followers. A
//! follower only reads the channel files up to the lengths the doorbell
//! announced, so it never sees part of a commit, not even one that is
//! being written or failed. A commit that fails (a full disk, say, after
//! half of a channel's lines were written) is cut back off the files
//! before the lock is released.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use tokio::sync::watch;
use tracing::error;

use super::{
    JOURNAL_FILE, STATE_FILE, disk::Disk, fsio::write_json_atomic, journal::JournalRecord,
    recent::RecentCommits, recovery,
};
use crate::{
    error::{Result, StoreError},
    model::{
        AppendItem, AppendOutcome, AppendPayload, ChannelSet, LocalRunLogSummary, LocalRunPaths,
        LogEntry, RunKey, RunMetadata, RunStatePatch, RunStateSnapshot, RunStatus,
        StreamChunkLogEntry, WorkerLifecycleEventInput, WorkerLifecycleLogEntry, WorkerLogChannel,
        WriterCursor,
    },
    observe::{CommitStats, DiskWrite},
    render::render_line,
    time::{normalize_iso, now_iso},
};

/// What the doorbell of a run announces to its followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunSignal {
    /// Every entry up to this sequence number is complete in the files.
    pub(crate) committed_seq: u64,
    /// The length of each channel file (worker, stdout, stderr) once
    /// those entries were written: readers read no further, so bytes of a
    /// commit under way or failed never reach them.
    pub(crate) committed_lens: [u64; 3],
    /// Goes up by one with each state change.
    pub(crate) state_version: u64,
    /// The run is terminal: `committed_seq` is final.
    pub(crate) terminal: bool,
    /// Goes up by one when a failed commit was cut off the files, so that
    /// readers drop what they read ahead.
    pub(crate) epoch: u64,
}

/// Limits a run applies to what it stores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunLimits {
    /// The largest text or message of one entry.
    pub(crate) max_entry_bytes: usize,
    /// The largest structured data of one event, as JSON.
    pub(crate) max_data_bytes: usize,
    /// A commit stops taking entries at about this many bytes.
    pub(crate) max_commit_bytes: usize,
    /// fsync each commit before it is acknowledged.
    pub(crate) sync_commits: bool,
}

/// A run whose log session is open.
#[derive(Debug)]
pub(crate) struct Run {
    /// The run.
    pub(crate) key: RunKey,
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// Its paths, as served.
    pub(crate) paths: LocalRunPaths,
    /// Its metadata, which never changes.
    pub(crate) metadata: RunMetadata,
    /// What the store's limits say.
    limits: RunLimits,
    /// Where writes are timed and failures reported.
    disk: Arc<Disk>,
    /// Everything that changes. A std mutex: it is only held by blocking
    /// code, never across an `.await`.
    inner: Mutex<RunInner>,
    /// The last commits, decoded, for followers that keep up. A lock of its
    /// own, so that followers reading it do not wait for a commit's writes.
    recent: Mutex<RecentCommits>,
    /// The doorbell.
    signal: watch::Sender<RunSignal>,
    /// Who uses the run, for retention. A lock of its own, apart from
    /// `inner`, so that streams come and go without waiting for a commit.
    life: Mutex<RunLife>,
}

/// Who uses a run, and whether retention took it.
#[derive(Debug, Default)]
struct RunLife {
    /// Streams open on the run (readers and append streams), each holding
    /// a [`super::LocalHold`].
    users: usize,
    /// Retention took the run: its directory is gone or going, and it must
    /// look as if it never existed.
    deleted: bool,
}

/// Why retention cannot take a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The run is not terminal.
    NotTerminal,
    /// A stream is open on it.
    InUse,
    /// Retention took it already.
    Deleted,
}

/// The mutable part of a run.
#[derive(Debug)]
struct RunInner {
    /// The current state; `last_event_seq` follows every commit.
    state: RunStateSnapshot,
    /// The `last_event_seq` that `state.json` holds.
    persisted_last_seq: u64,
    /// The sequence number of the next entry.
    next_seq: u64,
    /// Entries per channel.
    counts: [u64; 3],
    /// The last writer sequence number stored, per writer.
    writers: HashMap<String, u64>,
    /// The length of each channel file.
    lens: [u64; 3],
    /// The length of the journal.
    journal_len: u64,
    /// The journal and the channel files, opened at the first commit.
    files: Option<RunFiles>,
    /// Set when a failed commit could not be cut off the files: the run
    /// takes no more writes until it is opened again.
    broken: Option<String>,
}

/// The files a commit writes.
#[derive(Debug)]
struct RunFiles {
    journal: File,
    logs: [File; 3],
}

impl Run {
    /// Opens the run in `dir`, recovering its log session.
    pub(crate) fn open(
        key: RunKey,
        dir: PathBuf,
        paths: LocalRunPaths,
        metadata: RunMetadata,
        mut state: RunStateSnapshot,
        limits: RunLimits,
        disk: Arc<Disk>,
    ) -> Result<Self> {
        let recovered = recovery::recover(&dir)?;
        let persisted_last_seq = state.last_event_seq;
        state.last_event_seq = recovered.next_seq - 1;
        let signal = RunSignal {
            committed_seq: recovered.next_seq - 1,
            committed_lens: recovered.lens,
            state_version: 1,
            terminal: state.status.is_terminal(),
            epoch: 0,
        };
        Ok(Self {
            key,
            dir,
            paths,
            metadata,
            limits,
            disk,
            inner: Mutex::new(RunInner {
                state,
                persisted_last_seq,
                next_seq: recovered.next_seq,
                counts: recovered.counts,
                writers: recovered.writers,
                lens: recovered.lens,
                journal_len: recovered.journal_len,
                files: None,
                broken: None,
            }),
            recent: Mutex::new(RecentCommits::default()),
            signal: watch::Sender::new(signal),
            life: Mutex::new(RunLife::default()),
        })
    }

    /// Counts one more user, unless retention took the run.
    pub(crate) fn enter(&self) -> Result<()> {
        let mut life = self.life();
        if life.deleted {
            return Err(StoreError::RunNotFound(self.key.to_string()));
        }
        life.users += 1;
        Ok(())
    }

    /// Counts one user less.
    pub(crate) fn leave(&self) {
        let mut life = self.life();
        life.users = life.users.saturating_sub(1);
    }

    /// Whether a stream is open on the run.
    pub(crate) fn in_use(&self) -> bool {
        self.life().users > 0
    }

    /// Whether retention took the run.
    pub(crate) fn is_deleted(&self) -> bool {
        self.life().deleted
    }

    /// Marks the run deleted, when it is terminal and no stream is open on
    /// it, and closes its files. From here on no stream can open on it.
    pub(crate) fn retire(&self) -> Result<(), Busy> {
        let mut inner = self.lock();
        if !inner.state.status.is_terminal() {
            return Err(Busy::NotTerminal);
        }
        let mut life = self.life();
        if life.deleted {
            return Err(Busy::Deleted);
        }
        if life.users > 0 {
            return Err(Busy::InUse);
        }
        life.deleted = true;
        inner.files = None;
        Ok(())
    }

    /// Undoes [`Run::retire`], when the directory could not be removed.
    pub(crate) fn unretire(&self) {
        self.life().deleted = false;
    }

    /// A new receiver of the doorbell.
    pub(crate) fn subscribe(&self) -> watch::Receiver<RunSignal> {
        self.signal.subscribe()
    }

    /// Committed entries of `channels` from `from` up to `limit` (about
    /// `max_bytes` of them) from memory, and the last sequence number they
    /// cover; `None` when `from` is older than what memory keeps.
    pub(crate) fn recent_entries(
        &self,
        from: u64,
        limit: u64,
        channels: ChannelSet,
        max_bytes: usize,
    ) -> Option<(Vec<LogEntry>, u64)> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .read(from, limit, channels, max_bytes)
    }

    /// The current state.
    pub(crate) fn state(&self) -> RunStateSnapshot {
        self.lock().state.clone()
    }

    /// The current state and log summary.
    pub(crate) fn snapshot(&self) -> (RunStateSnapshot, LocalRunLogSummary) {
        let inner = self.lock();
        (inner.state.clone(), inner.summary())
    }

    /// What the run holds from one writer.
    pub(crate) fn writer_cursor(&self, writer_id: &str) -> WriterCursor {
        let inner = self.lock();
        WriterCursor {
            last_writer_seq: inner.writers.get(writer_id).copied().unwrap_or(0),
            last_seq: inner.next_seq - 1,
        }
    }

    /// Appends a writer's items. Blocking.
    pub(crate) fn append(&self, writer_id: &str, items: Vec<AppendItem>) -> Result<AppendOutcome> {
        let mut inner = self.lock();
        inner.writable(&self.key)?;
        let mut cursor = inner.writers.get(writer_id).copied().unwrap_or(0);
        let first_writer_seq = cursor + 1;
        let mut outcome = AppendOutcome::default();
        let mut accepted = Vec::with_capacity(items.len());
        let mut refused = None;
        for mut item in items {
            if item.writer_seq == 0 {
                refused = Some(StoreError::InvalidArgument(
                    "writer_seq must be 1 or more".to_owned(),
                ));
                break;
            }
            if item.writer_seq <= cursor {
                outcome.duplicates += 1;
                continue;
            }
            if item.writer_seq != cursor + 1 {
                refused = Some(StoreError::FailedPrecondition(format!(
                    "writer `{writer_id}` sent writer_seq {}, but run `{}` holds its items up to {cursor}: \
                     re-send from {}",
                    item.writer_seq,
                    self.key,
                    cursor + 1
                )));
                break;
            }
            if let Err(err) = self.check_item(&mut item) {
                refused = Some(err);
                break;
            }
            cursor += 1;
            accepted.push(item.payload);
        }
        let mut writer_seq = first_writer_seq;
        let mut rest = accepted.as_slice();
        while !rest.is_empty() {
            let take = self.commit_size(rest);
            self.commit(&mut inner, Some((writer_id, writer_seq)), &rest[..take])?;
            writer_seq += take as u64;
            outcome.stored += take as u64;
            rest = &rest[take..];
        }
        outcome.last_writer_seq = inner.writers.get(writer_id).copied().unwrap_or(0);
        outcome.summary = inner.summary();
        match refused {
            Some(err) => Err(err),
            None => Ok(outcome),
        }
    }

    /// Applies a state patch and writes `state.json`. Blocking.
    pub(crate) fn update_state(&self, patch: RunStatePatch) -> Result<RunStateSnapshot> {
        let mut inner = self.lock();
        let current = inner.state.status;
        if current.is_terminal() {
            return Err(StoreError::FailedPrecondition(format!(
                "run `{}` is {}, a terminal status: its state cannot change",
                self.key,
                current.as_str()
            )));
        }
        let mut next = inner.state.clone();
        if let Some(status) = patch.status {
            if !current.can_move_to(status) {
                return Err(StoreError::FailedPrecondition(format!(
                    "run `{}` cannot move from {} to {}",
                    self.key,
                    current.as_str(),
                    status.as_str()
                )));
            }
            next.status = status;
        }
        if let Some(checkpoint_seq) = patch.checkpoint_seq {
            next.checkpoint_seq = checkpoint_seq;
        }
        if let Some(summary) = patch.summary {
            next.summary = Some(summary);
        }
        if let Some(exit_code) = patch.exit_code {
            next.exit_code = Some(exit_code);
        }
        let now = now_iso();
        if next.status.is_terminal() {
            next.finished_at = Some(match patch.finished_at {
                Some(finished_at) => normalize_iso("patch.finished_at", &finished_at)?,
                None => now.clone(),
            });
        } else if patch.finished_at.is_some() {
            return Err(StoreError::InvalidArgument(
                "patch.finished_at is only taken with a terminal status".to_owned(),
            ));
        }
        next.updated_at = now;
        next.last_event_seq = inner.next_seq - 1;
        let path = self.dir.join(STATE_FILE);
        self.disk
            .write(DiskWrite::State, || write_json_atomic(&path, &next))?;
        inner.persisted_last_seq = next.last_event_seq;
        inner.state = next.clone();
        let terminal = next.status.is_terminal();
        self.signal.send_modify(|signal| {
            signal.state_version += 1;
            signal.terminal = terminal;
        });
        Ok(next)
    }

    /// Writes `state.json` when its `last_event_seq` is behind. Blocking.
    pub(crate) fn persist_state(&self) -> Result<()> {
        if self.is_deleted() {
            return Ok(());
        }
        let mut inner = self.lock();
        if inner.persisted_last_seq != inner.state.last_event_seq {
            let path = self.dir.join(STATE_FILE);
            self.disk
                .write(DiskWrite::State, || write_json_atomic(&path, &inner.state))?;
            inner.persisted_last_seq = inner.state.last_event_seq;
        }
        Ok(())
    }

    /// Checks an item against the limits and puts its time in
    /// `toISOString` form.
    fn check_item(&self, item: &mut AppendItem) -> Result<()> {
        let max = self.limits.max_entry_bytes;
        let max_data = self.limits.max_data_bytes;
        let too_big = |what: &str, len: usize| {
            StoreError::ResourceExhausted(format!(
                "{what} of item {} is {len} bytes, over max_entry_bytes ({max})",
                item.writer_seq
            ))
        };
        let created_at = match &mut item.payload {
            AppendPayload::Event(event) => {
                if event.message.len() > max {
                    return Err(too_big("the message", event.message.len()));
                }
                if !event.data.is_empty() {
                    let data_len = serde_json::to_vec(&event.data).map_or(0, |data| data.len());
                    if data_len > max_data {
                        return Err(StoreError::ResourceExhausted(format!(
                            "the data of item {} is {data_len} bytes as JSON, over max_data_bytes ({max_data})",
                            item.writer_seq
                        )));
                    }
                }
                &mut event.created_at
            }
            AppendPayload::Chunk(_, chunk) => {
                if chunk.text.len() > max {
                    return Err(too_big("the text", chunk.text.len()));
                }
                &mut chunk.created_at
            }
        };
        if let Some(time) = created_at {
            *time = normalize_iso("created_at", time)?;
        }
        Ok(())
    }

    /// How many of `payloads` go in the next commit: at least one, and no
    /// more than about `max_commit_bytes`.
    fn commit_size(&self, payloads: &[AppendPayload]) -> usize {
        let mut bytes = 0usize;
        for (index, payload) in payloads.iter().enumerate() {
            bytes += 256
                + match payload {
                    AppendPayload::Event(event) => event.message.len() * 2 + 64 * event.data.len(),
                    AppendPayload::Chunk(_, chunk) => chunk.text.len(),
                };
            if bytes > self.limits.max_commit_bytes && index > 0 {
                return index;
            }
        }
        payloads.len()
    }

    /// Stores one commit: the journal record, then the entries. On failure
    /// the files are cut back to where they were.
    fn commit(
        &self,
        inner: &mut RunInner,
        writer: Option<(&str, u64)>,
        payloads: &[AppendPayload],
    ) -> Result<()> {
        let first_seq = inner.next_seq;
        let mut encoded = encode_entries(&self.metadata, first_seq, payloads, &now_iso());
        let record = JournalRecord {
            first_seq,
            last_seq: first_seq + payloads.len() as u64 - 1,
            writer_id: writer.map(|(id, _)| id.to_owned()),
            writer_seq: writer.map_or(0, |(_, seq)| seq),
            counts: encoded.counts,
            offsets: inner.lens,
            imported: false,
        };
        let line = record.to_line();
        let written = self.disk.write(DiskWrite::Commit, || {
            inner.write_commit(&self.dir, &line, &encoded.bytes, self.limits.sync_commits)
        });
        if let Err(err) = written {
            self.roll_back(inner);
            return Err(err);
        }
        inner.journal_len += line.len() as u64;
        for (index, bytes) in encoded.bytes.iter().enumerate() {
            inner.lens[index] += bytes.len() as u64;
            inner.counts[index] += encoded.counts[index];
        }
        inner.next_seq = record.last_seq + 1;
        inner.state.last_event_seq = record.last_seq;
        if let Some((writer_id, writer_seq)) = writer {
            inner
                .writers
                .insert(writer_id.to_owned(), writer_seq + record.len() - 1);
        }
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Followers hold the doorbell's receivers: without any, nobody
            // would read what is kept.
            if self.signal.receiver_count() > 0 {
                recent.push(
                    first_seq,
                    std::mem::take(&mut encoded.entries),
                    Instant::now(),
                );
            } else {
                recent.clear();
            }
        }
        let committed_lens = inner.lens;
        self.signal.send_modify(|signal| {
            signal.committed_seq = record.last_seq;
            signal.committed_lens = committed_lens;
        });
        self.disk.committed(&CommitStats {
            entries: encoded.counts,
            bytes: encoded.bytes.each_ref().map(|bytes| bytes.len() as u64),
        });
        Ok(())
    }

    /// Cuts a failed commit off the files. When that fails too, the run is
    /// marked broken.
    fn roll_back(&self, inner: &mut RunInner) {
        let result = match &inner.files {
            Some(files) => files.journal.set_len(inner.journal_len).and_then(|()| {
                files
                    .logs
                    .iter()
                    .zip(inner.lens)
                    .try_for_each(|(file, len)| file.set_len(len))
            }),
            None => Ok(()),
        };
        if let Err(err) = result {
            error!(run = %self.key, cause = %err, "cannot cut a failed commit off the files");
            inner.broken = Some(format!(
                "run `{}` could not undo a failed write ({err}); it takes no writes until the server restarts",
                self.key
            ));
        }
        inner.files = None;
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.signal.send_modify(|signal| signal.epoch += 1);
    }

    /// Locks the mutable part. A panic while it was held leaves it
    /// consistent (every change is made after the writes), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, RunInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks who uses the run. Taken after `inner` when both are, never
    /// before it.
    fn life(&self) -> MutexGuard<'_, RunLife> {
        self.life
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RunInner {
    /// Checks that the run takes entries.
    fn writable(&self, key: &RunKey) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(StoreError::io(
                reason.clone(),
                std::io::Error::other("broken run"),
            ));
        }
        if self.state.status.is_terminal() {
            return Err(StoreError::FailedPrecondition(format!(
                "run `{key}` is {}, a terminal status: it takes no more entries",
                self.state.status.as_str()
            )));
        }
        Ok(())
    }

    /// The log summary.
    fn summary(&self) -> LocalRunLogSummary {
        LocalRunLogSummary::from_counts(self.counts, self.next_seq - 1)
    }

    /// Writes a commit's journal line and entries.
    fn write_commit(
        &mut self,
        dir: &Path,
        line: &[u8],
        entries: &[Vec<u8>; 3],
        sync: bool,
    ) -> Result<()> {
        if self.files.is_none() {
            self.files = Some(RunFiles::open(dir)?);
        }
        let files = self.files.as_mut().expect("opened above");
        let fail = |name: &str, err| {
            StoreError::io(
                format!("cannot append to {}", dir.join(name).display()),
                err,
            )
        };
        files
            .journal
            .write_all(line)
            .map_err(|err| fail(JOURNAL_FILE, err))?;
        for (channel, bytes) in WorkerLogChannel::ALL.iter().zip(entries) {
            if !bytes.is_empty() {
                let file = &mut files.logs[channel.index()];
                file.write_all(bytes)
                    .map_err(|err| fail(channel.file_name(), err))?;
                if sync {
                    file.sync_data()
                        .map_err(|err| fail(channel.file_name(), err))?;
                }
            }
        }
        if sync {
            files
                .journal
                .sync_data()
                .map_err(|err| fail(JOURNAL_FILE, err))?;
        }
        Ok(())
    }
}

impl RunFiles {
    /// Opens the journal and channel files for appending.
    fn open(dir: &Path) -> Result<Self> {
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|err| StoreError::io(format!("cannot open {}", path.display()), err))
        };
        Ok(Self {
            journal: open(JOURNAL_FILE)?,
            logs: [
                open(WorkerLogChannel::Worker.file_name())?,
                open(WorkerLogChannel::Stdout.file_name())?,
                open(WorkerLogChannel::Stderr.file_name())?,
            ],
        })
    }
}

/// The entries of a commit, as the lines of each channel file.
#[derive(Debug)]
pub(crate) struct EncodedEntries {
    /// The lines of each channel (worker, stdout, stderr).
    pub(crate) bytes: [Vec<u8>; 3],
    /// Entries per channel.
    pub(crate) counts: [u64; 3],
    /// The entries, in sequence order, for followers (see `recent`).
    pub(crate) entries: Vec<LogEntry>,
}

/// Turns payloads into stored entries from `first_seq` on, as JSON lines.
/// `now` stands in for every unset time.
pub(crate) fn encode_entries(
    metadata: &RunMetadata,
    first_seq: u64,
    payloads: &[AppendPayload],
    now: &str,
) -> EncodedEntries {
    let mut encoded = EncodedEntries {
        bytes: Default::default(),
        counts: [0; 3],
        entries: Vec::with_capacity(payloads.len()),
    };
    for (seq, payload) in (first_seq..).zip(payloads) {
        match payload {
            AppendPayload::Event(event) => {
                let entry = lifecycle_entry(metadata, seq, event, now);
                let out = &mut encoded.bytes[WorkerLogChannel::Worker.index()];
                serde_json::to_writer(&mut *out, &entry).expect("an entry serializes");
                out.push(b'\n');
                encoded.counts[WorkerLogChannel::Worker.index()] += 1;
                encoded.entries.push(LogEntry::Lifecycle(entry));
            }
            AppendPayload::Chunk(channel, chunk) => {
                let entry = StreamChunkLogEntry {
                    task_id: metadata.task_id.clone(),
                    step_id: metadata.step_id.clone(),
                    run_id: metadata.run_id.clone(),
                    seq,
                    channel: *channel,
                    created_at: chunk.created_at.clone().unwrap_or_else(|| now.to_owned()),
                    text: chunk.text.clone(),
                };
                let index = WorkerLogChannel::from(*channel).index();
                let out = &mut encoded.bytes[index];
                serde_json::to_writer(&mut *out, &entry).expect("an entry serializes");
                out.push(b'\n');
                encoded.counts[index] += 1;
                encoded.entries.push(LogEntry::Chunk(entry));
            }
        }
    }
    encoded
}

/// The stored form of a lifecycle event.
fn lifecycle_entry(
    metadata: &RunMetadata,
    seq: u64,
    event: &WorkerLifecycleEventInput,
    now: &str,
) -> WorkerLifecycleLogEntry {
    let created_at = event.created_at.clone().unwrap_or_else(|| now.to_owned());
    let rendered_line = render_line(
        &created_at,
        event.level,
        event.event_type,
        &event.message,
        &event.data,
    );
    WorkerLifecycleLogEntry {
        task_id: metadata.task_id.clone(),
        step_id: metadata.step_id.clone(),
        run_id: metadata.run_id.clone(),
        seq,
        channel: WorkerLogChannel::Worker,
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type: event.event_type,
        level: event.level,
        created_at,
        message: event.message.clone(),
        data: event.data.clone(),
        rendered_line,
    }
}

/// The status a run has when its state is first written.
pub(crate) const INITIAL_STATUS: RunStatus = RunStatus::Prepared;
