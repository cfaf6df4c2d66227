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
//!
//! With `--sync`, a commit is written under the lock but synced after it,
//! by a group sync (see `group_sync`) that covers every commit written
//! meanwhile: the writer, and anyone else who is told it is stored (a
//! writer's cursor, a new state), waits for that sync, and the doorbell
//! rings only once it is done, so that followers, too, see only what a
//! power loss cannot take back. A failed sync breaks the run.
//!
//! Who uses the run (for retention) is in `life`; the limits on what an
//! item may carry are checked in `crate::admit`; a worker lease that expires, and
//! a writer that comes back after it did, are in `lease`.

mod checkpoint;
mod lease;
mod life;
mod slots;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Instant,
};

use tokio::sync::watch;
use tracing::error;

pub(crate) use self::life::Busy;
use self::life::RunLife;
use super::{
    concurrency::lock,
    disk::Disk,
    encode::encode_entries,
    file_cache::{CachedRunFiles, CommitFiles, FileCache},
    fsio::{read_json, write_json_atomic},
    group_sync::{GroupSync, SyncFailed, Ticket},
    journal::{self, JournalRecord, LeaseLapse, LeaseMark},
    layout::RunDir,
    options::LocalStoreOptions,
    recent::{RecentCommits, RecentRead},
    recovery,
    run_files::{FileLens, Unsynced},
};
use crate::{
    error::{Refused, Result, StoreError},
    model::{
        AppendItem, AppendOutcome, AppendPayload, ChannelSet, CommitEntries, LocalRunLogContext,
        LocalRunLogSummary, LocalRunPaths, PerChannel, RunKey, RunMetadata, RunStatePatch,
        RunStateSnapshot, WriterCursor,
    },
    observe::{CommitStats, DiskWrite},
    time::now_iso,
};

/// A commit stops taking entries at about this many bytes, so that one
/// large append becomes several writes of a bounded size.
const MAX_COMMIT_BYTES: usize = 1024 * 1024;

/// What the doorbell of a run announces to its followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunSignal {
    /// Every entry up to this sequence number is complete in the files.
    pub(crate) committed_seq: u64,
    /// The length of each channel file once those entries were written:
    /// readers read no further, so bytes of a commit under way or failed
    /// never reach them.
    pub(crate) committed_lens: PerChannel<u64>,
    /// Goes up by one with each state change.
    pub(crate) state_version: u64,
    /// The run is terminal: `committed_seq` is final.
    pub(crate) terminal: bool,
    /// Goes up by one when a failed commit was cut off the files, so that
    /// readers drop what they read ahead.
    pub(crate) epoch: u64,
}

/// What a run has committed, as the doorbell last announced it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    /// The last committed `seq`.
    pub(crate) seq: u64,
    /// Each channel file's committed length.
    pub(crate) lens: PerChannel<u64>,
}

/// What the next group sync of a run covers (with `--sync` only).
#[derive(Debug, Default)]
struct PendingSync {
    /// The files written since the last sync.
    files: Unsynced,
    /// The commits written since the last sync.
    commits: u64,
    /// What the last of them committed: the doorbell announces it once
    /// the sync is done.
    committed: Option<Committed>,
}

/// A run whose log session is open.
#[derive(Debug)]
pub(crate) struct Run {
    /// The run.
    pub(crate) key: RunKey,
    /// Its directory.
    pub(crate) dir: RunDir,
    /// Its paths, as served.
    pub(crate) paths: LocalRunPaths,
    /// Its metadata, which never changes.
    pub(crate) metadata: RunMetadata,
    /// Its ids, as the entries kept for followers share them.
    ids: Arc<LocalRunLogContext>,
    /// How the store was opened: its limits and whether commits are synced.
    options: Arc<LocalStoreOptions>,
    /// Where writes are timed and failures reported.
    disk: Arc<Disk>,
    /// The journal and the channel files, open for appending while the
    /// store's descriptor cache keeps them (see `file_cache`).
    files: CachedRunFiles,
    /// Everything that changes (see `concurrency` for the lock order).
    inner: Mutex<RunInner>,
    /// The last commits, decoded, for followers that keep up. A lock of its
    /// own, so that followers reading it do not wait for a commit's writes.
    recent: Mutex<RecentCommits>,
    /// The doorbell.
    signal: watch::Sender<RunSignal>,
    /// With `--sync`, the commits written and not yet synced, and the
    /// sync under way. A lock of its own, taken alone or under `inner`
    /// and never held while syncing, so that commits are written while
    /// the disk syncs the ones before.
    syncer: GroupSync<PendingSync>,
    /// Who uses the run, for retention. A lock of its own, apart from
    /// `inner`, so that streams come and go without waiting for a commit.
    life: Mutex<RunLife>,
    /// The run's objects: staged uploads and the bytes they all take (see
    /// `objects`). A lock of its own, so that uploads never wait for a
    /// commit of the log.
    pub(crate) objects: Mutex<super::objects::RunObjects>,
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
    counts: PerChannel<u64>,
    /// The last writer sequence number stored, per writer.
    writers: HashMap<String, u64>,
    /// Where the files end: the next commit starts there.
    lens: FileLens,
    /// Set when a failed commit could not be cut off the files: the run
    /// takes no more writes until it is opened again.
    broken: Option<String>,
    /// The journal lost what the writers had sent: writer appends are
    /// refused for good.
    writers_lost: bool,
    /// The last commit's time (see `journal::commit_time`).
    last_time: u64,
    /// Set while the run is failed only because its worker lease expired,
    /// as its journal tells it: its earlier writers may still append and
    /// set its final status once (see `lease`).
    lease_lapse: Option<LeaseLapse>,
    /// The checkpoint slots reserved through the store, as the run's log
    /// records them (see `slots`); objects go into no other slot.
    reserved_slots: BTreeSet<u64>,
}

impl Run {
    /// The disk under the run, for the object uploads' headroom check.
    pub(crate) fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Opens the run in `dir` from its `meta.json` and `state.json`,
    /// recovering its log session. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`] when `dir` holds no run,
    /// [`StoreError::Damaged`] when its files contradict each other.
    pub(crate) fn load(
        key: RunKey,
        dir: RunDir,
        paths: LocalRunPaths,
        options: Arc<LocalStoreOptions>,
        disk: Arc<Disk>,
        files: &Arc<FileCache>,
    ) -> Result<Self> {
        let Some(metadata) = read_json::<RunMetadata>(&dir.meta())? else {
            return Err(StoreError::RunNotFound(key));
        };
        if metadata.task_id != key.task_id || metadata.run_id != key.run_id {
            return Err(StoreError::damaged(
                dir.meta(),
                format!("names run `{}/{}`", metadata.task_id, metadata.run_id),
            ));
        }
        let mut state = read_json::<RunStateSnapshot>(&dir.state())?
            .ok_or_else(|| StoreError::damaged(dir.state(), "is missing"))?;
        let recovered = recovery::recover(&dir)?;
        let reserved_slots = slots::reserved(&dir, &recovered.store_events).map_err(|err| {
            StoreError::io(
                format!("cannot read the checkpoint reservations of {key}"),
                err,
            )
        })?;
        lease::roll_forward(&dir, &mut state, recovered.lease_lapse)?;
        let persisted_last_seq = state.last_event_seq;
        state.last_event_seq = recovered.next_seq - 1;
        let signal = RunSignal {
            committed_seq: recovered.next_seq - 1,
            committed_lens: recovered.lens.logs,
            state_version: 1,
            terminal: state.status.is_terminal(),
            epoch: 0,
        };
        Ok(Self {
            key,
            dir,
            paths,
            ids: Arc::new(LocalRunLogContext {
                task_id: metadata.task_id.clone(),
                step_id: metadata.step_id.clone(),
                run_id: metadata.run_id.clone(),
            }),
            metadata,
            options,
            disk,
            files: files.register(),
            inner: Mutex::new(RunInner {
                state,
                persisted_last_seq,
                next_seq: recovered.next_seq,
                counts: recovered.counts,
                writers: recovered.writers,
                lens: recovered.lens,
                broken: None,
                writers_lost: recovered.writers_lost,
                last_time: recovered.last_time,
                lease_lapse: recovered.lease_lapse,
                reserved_slots,
            }),
            recent: Mutex::new(RecentCommits::default()),
            signal: watch::Sender::new(signal),
            syncer: GroupSync::new(),
            life: Mutex::new(RunLife::default()),
            objects: Mutex::default(),
        })
    }

    /// What is committed now: the last `seq` and each channel file's
    /// committed length.
    pub(crate) fn committed(&self) -> Committed {
        let signal = self.signal.borrow();
        Committed {
            seq: signal.committed_seq,
            lens: signal.committed_lens,
        }
    }

    /// A new receiver of the doorbell.
    pub(crate) fn subscribe(&self) -> watch::Receiver<RunSignal> {
        self.signal.subscribe()
    }

    /// Committed entries of `channels` from `from` up to `limit` (about
    /// `max_bytes` of them) from memory, and the last sequence number they
    /// cover; `None` when `from` is older than what memory keeps.
    /// With `share`, whole commits come shared (see `recent`).
    pub(crate) fn recent_entries(
        &self,
        from: u64,
        limit: u64,
        channels: ChannelSet,
        max_bytes: usize,
        share: bool,
    ) -> Option<RecentRead> {
        lock(&self.recent).read(from, limit, channels, max_bytes, share)
    }

    /// Each writer and the last writer sequence number stored from it.
    pub(crate) fn writers(&self) -> Vec<(String, u64)> {
        let inner = self.inner();
        let mut writers: Vec<(String, u64)> = inner
            .writers
            .iter()
            .map(|(id, seq)| (id.clone(), *seq))
            .collect();
        writers.sort();
        writers
    }

    /// The current state.
    pub(crate) fn state(&self) -> RunStateSnapshot {
        self.inner().state.clone()
    }

    /// The current state and log summary.
    pub(crate) fn snapshot(&self) -> (RunStateSnapshot, LocalRunLogSummary) {
        let inner = self.inner();
        (inner.state.clone(), inner.summary())
    }

    /// What the run holds from one writer. With `--sync`, once it is
    /// synced: a writer takes its cursor for an acknowledgement, and does
    /// not send again what it says is stored. Blocking with `--sync`.
    ///
    /// # Errors
    ///
    /// With `--sync`, a failed sync.
    pub(crate) fn writer_cursor(&self, writer_id: &str) -> Result<WriterCursor> {
        let inner = self.inner();
        let cursor = WriterCursor {
            last_writer_seq: inner.writer_seq(writer_id),
            last_seq: inner.next_seq - 1,
        };
        let written = self.sync_mark();
        drop(inner);
        self.wait_synced(written)?;
        Ok(cursor)
    }

    /// Appends a writer's items: the ones past its cursor that pass the
    /// checks, in commits of a bounded size. With `--sync`, returns once
    /// they are synced, waiting without the lock. Blocking.
    ///
    /// # Errors
    ///
    /// The first item that cannot be stored (a gap, an item over a limit)
    /// after the items before it were stored; a terminal or broken run; a
    /// failed write or sync.
    pub(crate) fn append(&self, writer_id: &str, items: Vec<AppendItem>) -> Result<AppendOutcome> {
        let mut inner = self.inner();
        let before = self.sync_mark();
        let appended = self.append_locked(&mut inner, writer_id, items);
        let written = self.sync_mark();
        drop(inner);
        // Whatever this call wrote is synced (and announced) before it
        // answers, even when it failed part way.
        if written != before {
            self.wait_synced(written)?;
        }
        appended
    }

    /// [`Run::append`] under the lock: writes the commits, and syncs
    /// nothing.
    fn append_locked(
        &self,
        inner: &mut RunInner,
        writer_id: &str,
        items: Vec<AppendItem>,
    ) -> Result<AppendOutcome> {
        let late = inner.admits(&self.key, writer_id)?;
        if inner.writers_lost {
            return Err(StoreError::WritersLost {
                key: self.key.clone(),
            });
        }
        let first_writer_seq = inner.writer_seq(writer_id) + 1;
        let admitted = crate::admit::admit(
            &self.key,
            &self.options.limits,
            writer_id,
            first_writer_seq,
            items,
        );
        if late && !admitted.payloads.is_empty() {
            self.note_return(inner, writer_id)?;
        }
        let mut outcome = AppendOutcome {
            duplicates: admitted.duplicates,
            ..AppendOutcome::default()
        };
        let mut writer_seq = first_writer_seq;
        let mut rest = admitted.payloads.into_iter();
        while rest.len() > 0 {
            let take = commit_size(rest.as_slice());
            let payloads: Vec<_> = rest.by_ref().take(take).collect();
            self.commit(inner, Some((writer_id, writer_seq)), payloads, None)?;
            writer_seq += take as u64;
            outcome.stored += take as u64;
        }
        outcome.last_writer_seq = inner.writer_seq(writer_id);
        outcome.summary = inner.summary();
        match admitted.refused {
            Some(err) => Err(err),
            None => Ok(outcome),
        }
    }

    /// Applies a state patch, from `writer_id` when the caller names one,
    /// and writes `state.json`. Blocking.
    ///
    /// A run failed only because its worker lease expired takes one final
    /// status from a writer that had appended to it (see `lease`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Terminal`], [`StoreError::LeaseLapsed`],
    /// [`StoreError::BadTransition`],
    /// [`StoreError::FinishedAtWithoutTerminalStatus`], a bad time, or a
    /// failed write (the state is then unchanged).
    pub(crate) fn update_state(
        &self,
        writer_id: Option<&str>,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        let mut inner = self.inner();
        if let Some(writer_id) = writer_id
            && inner.late_writer(writer_id)
        {
            return self.settle(&mut inner, writer_id, patch);
        }
        let mut next = self.patched(&inner, writer_id, patch)?;
        next.last_event_seq = inner.next_seq - 1;
        self.set_state(&mut inner, next)
    }

    /// Writes `next` to `state.json`, then makes it the run's state and
    /// rings the doorbell. On failure the state is unchanged.
    ///
    /// With `--sync`, the commits written so far are synced first, under
    /// the lock: a state on disk never runs ahead of the entries, and a
    /// run is announced terminal only after its last entries were.
    fn set_state(&self, inner: &mut RunInner, next: RunStateSnapshot) -> Result<RunStateSnapshot> {
        self.sync_written(inner)?;
        let path = self.dir.state();
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

    /// The state `patch` makes of the current one, checked.
    fn patched(
        &self,
        inner: &RunInner,
        writer_id: Option<&str>,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        crate::transition::patched(
            &self.key,
            &inner.state,
            inner.lease_lapsed(),
            writer_id,
            patch,
            |checkpoint_seq| self.check_checkpoint_patch(inner, checkpoint_seq),
        )
    }

    /// Writes `state.json` when its `last_event_seq` is behind. Blocking.
    pub(crate) fn persist_state(&self) -> Result<()> {
        if self.is_deleted() {
            return Ok(());
        }
        let mut inner = self.inner();
        if inner.persisted_last_seq != inner.state.last_event_seq {
            self.sync_written(&mut inner)?;
            let path = self.dir.state();
            self.disk
                .write(DiskWrite::State, || write_json_atomic(&path, &inner.state))?;
            inner.persisted_last_seq = inner.state.last_event_seq;
        }
        Ok(())
    }

    /// Stores one commit: the journal record, then the entries. On failure
    /// the files are cut back to where they were. `lease` marks the
    /// store's own entries about a worker lease.
    ///
    /// Without `--sync` the doorbell rings at once. With it, the commit is
    /// left to the group sync, which rings it: the caller must wait for
    /// [`Run::sync_mark`] before it tells anyone the commit is stored.
    fn commit(
        &self,
        inner: &mut RunInner,
        writer: Option<(&str, u64)>,
        payloads: Vec<AppendPayload>,
        lease: Option<LeaseMark>,
    ) -> Result<()> {
        let first_seq = inner.next_seq;
        let last_seq = first_seq + payloads.len() as u64 - 1;
        let time = journal::commit_time(inner.last_time);
        let now = now_iso();
        let mut encoded = encode_entries(&self.metadata, first_seq, payloads, &now);
        let record = JournalRecord {
            first_seq,
            last_seq,
            writer_id: writer.map(|(id, _)| id.to_owned()),
            writer_seq: writer.map_or(0, |(_, seq)| seq),
            counts: encoded.counts,
            offsets: inner.lens.logs,
            imported: false,
            lost: false,
            damaged: false,
            writers_lost: false,
            lease,
            time: Some(time),
            closed: Some(encoded.closed),
            lens: None,
            crc: None,
            check: None,
        }
        .with_bytes(&encoded.bytes);
        let line = record.to_line();
        let mut held = None;
        let written = self.disk.write(DiskWrite::Commit, || {
            held.insert(self.files.for_commit(&self.dir, &encoded.bytes)?)
                .write_commit(&self.dir, &line, &encoded.bytes)
        });
        let files = match (written, held) {
            (Ok(()), Some(files)) => files,
            (Err(err), held) => {
                self.roll_back(inner, held.as_ref());
                return Err(err);
            }
            (Ok(()), None) => unreachable!("a commit written holds its files"),
        };
        inner.lens.journal += line.len() as u64;
        for (channel, bytes) in encoded.bytes.iter() {
            inner.lens.logs[channel] += bytes.len() as u64;
        }
        inner.counts.add(&encoded.counts);
        inner.next_seq = record.last_seq + 1;
        inner.last_time = time;
        inner.state.last_event_seq = record.last_seq;
        LeaseLapse::follow(&mut inner.lease_lapse, &record);
        if let Some((writer_id, writer_seq)) = writer {
            inner
                .writers
                .insert(writer_id.to_owned(), writer_seq + record.len() - 1);
        }
        self.keep_recent(CommitEntries {
            ids: self.ids.clone(),
            first_seq,
            now,
            entries: std::mem::take(&mut encoded.entries),
            counts: encoded.counts,
            cache: OnceLock::new(),
        });
        let committed = Committed {
            seq: record.last_seq,
            lens: inner.lens.logs,
        };
        if self.options.sync_commits {
            // Waited for through `sync_mark`, by the caller.
            let _: Ticket = self.syncer.wrote(|pending| {
                pending.files.add(&files, &encoded.bytes);
                pending.commits += 1;
                pending.committed = Some(committed);
            });
        } else {
            self.announce(committed);
        }
        self.disk.committed(&CommitStats {
            entries: encoded.counts,
            bytes: encoded.bytes.each_ref().map(|_, bytes| bytes.len() as u64),
        });
        Ok(())
    }

    /// Rings the doorbell for what is committed.
    fn announce(&self, committed: Committed) {
        self.signal.send_modify(|signal| {
            signal.committed_seq = committed.seq;
            signal.committed_lens = committed.lens;
        });
    }

    /// With `--sync`, the ticket of the last commit written: waiting for
    /// it waits for every commit so far. `None` without `--sync`, where
    /// nothing waits (and no lock is taken).
    fn sync_mark(&self) -> Option<Ticket> {
        self.options.sync_commits.then(|| self.syncer.last())
    }

    /// Waits until the commits up to `mark` are synced, leading the sync
    /// when none is under way; nothing for `None`. Called without the
    /// run's lock, so that commits go on being written meanwhile.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// A failed sync, which breaks the run.
    fn wait_synced(&self, mark: Option<Ticket>) -> Result<()> {
        let Some(ticket) = mark else {
            return Ok(());
        };
        self.syncer
            .wait(ticket, |pending| self.sync_pending(pending))
            .map_err(|failed| self.break_on(&mut self.inner(), &failed))
    }

    /// With `--sync`, waits under the run's lock until every commit
    /// written is synced, for the rare writes that must follow them on
    /// disk (`state.json`) or that tell of an entry the store wrote
    /// itself. Blocking.
    ///
    /// # Errors
    ///
    /// A failed sync, which breaks the run.
    fn sync_written(&self, inner: &mut RunInner) -> Result<()> {
        let Some(ticket) = self.sync_mark() else {
            return Ok(());
        };
        self.syncer
            .wait(ticket, |pending| self.sync_pending(pending))
            .map_err(|failed| self.break_on(inner, &failed))
    }

    /// A group sync, as its leader runs it: syncs the files written, then
    /// rings the doorbell for the commits it covers.
    fn sync_pending(&self, pending: PendingSync) -> std::result::Result<(), SyncFailed> {
        self.disk
            .write(DiskWrite::Sync, || pending.files.sync(&self.dir))
            .map_err(SyncFailed::new)?;
        if let Some(committed) = pending.committed {
            self.announce(committed);
        }
        self.disk.synced(pending.commits);
        Ok(())
    }

    /// Marks the run broken after a failed sync, and returns the error for
    /// the caller. The kernel may have dropped the pages it could not
    /// write back, and a later sync that succeeds would not say so: the run
    /// takes no more writes rather than acknowledge entries that may be
    /// gone.
    fn break_on(&self, inner: &mut RunInner, failed: &SyncFailed) -> StoreError {
        let err = failed.to_error();
        if inner.broken.is_none() {
            error!(run = %self.key, cause = %err, "a sync of the run's files failed; the run takes no more writes");
            inner.broken = Some(format!(
                "{err}; what the disk holds of the commits since the last sync is unknown"
            ));
        }
        err
    }

    /// Keeps a commit's entries in memory for followers, while there are
    /// any: they hold the doorbell's receivers.
    fn keep_recent(&self, commit: CommitEntries) {
        let mut recent = lock(&self.recent);
        if self.signal.receiver_count() > 0 {
            recent.push(commit, Instant::now());
        } else {
            recent.clear();
        }
    }

    /// Cuts a failed commit off the files it `held` (none when they could
    /// not be opened), and closes the run's files, to be opened again by
    /// the next commit. When the cut fails too, the run is marked broken.
    fn roll_back(&self, inner: &mut RunInner, held: Option<&CommitFiles>) {
        let result = match held {
            Some(files) => files.truncate(&inner.lens),
            None => Ok(()),
        };
        if let Err(err) = result {
            error!(run = %self.key, cause = %err, "cannot cut a failed commit off the files");
            inner.broken = Some(err.to_string());
        }
        self.files.forget();
        lock(&self.recent).clear();
        self.signal.send_modify(|signal| signal.epoch += 1);
    }

    /// Locks the mutable part.
    fn inner(&self) -> MutexGuard<'_, RunInner> {
        lock(&self.inner)
    }
}

/// How many of `payloads` go in the next commit: at least one, and no
/// more than about [`MAX_COMMIT_BYTES`].
pub(crate) fn commit_size(payloads: &[AppendPayload]) -> usize {
    let mut bytes = 0usize;
    for (index, payload) in payloads.iter().enumerate() {
        bytes += 256
            + match payload {
                AppendPayload::Event(event) => event.message.len() * 2 + 64 * event.data.len(),
                AppendPayload::Chunk(_, chunk) => chunk.text.len(),
            };
        if bytes > MAX_COMMIT_BYTES && index > 0 {
            return index;
        }
    }
    payloads.len()
}

impl RunInner {
    /// Checks that the run takes entries from `writer_id`; true when they
    /// are delivered late, after the run's worker lease expired.
    fn admits(&self, key: &RunKey, writer_id: &str) -> Result<bool> {
        if self.late_writer(writer_id) {
            self.writable(key, false)?;
            return Ok(true);
        }
        if self.lease_lapsed() {
            return Err(StoreError::LeaseLapsed {
                key: key.clone(),
                writer_id: Some(writer_id.to_owned()),
                refused: Refused::Entries,
            });
        }
        self.writable(key, true)?;
        Ok(false)
    }

    /// Checks that the run takes writes: it is not broken, and with
    /// `live`, not terminal either.
    fn writable(&self, key: &RunKey, live: bool) -> Result<()> {
        if let Some(cause) = &self.broken {
            return Err(StoreError::Broken {
                key: key.clone(),
                cause: cause.clone(),
            });
        }
        if live && self.state.status.is_terminal() {
            return Err(StoreError::Terminal {
                key: key.clone(),
                status: self.state.status,
                refused: Refused::Entries,
            });
        }
        Ok(())
    }

    /// The last writer sequence number stored from `writer_id`; 0 for none.
    fn writer_seq(&self, writer_id: &str) -> u64 {
        self.writers.get(writer_id).copied().unwrap_or(0)
    }

    /// The log summary.
    fn summary(&self) -> LocalRunLogSummary {
        LocalRunLogSummary::from_counts(self.counts, self.next_seq - 1)
    }
}
