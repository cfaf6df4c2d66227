//! The narrow interface between the gRPC layer and a storage backend.
//!
//! The embedded default is [`crate::LocalStore`] (files in the
//! `local-run-v1` layout); a replicated backend implements the same two
//! traits and the RPC layer does not change.
//!
//! Retention needs to know which runs have a stream open on them. The
//! backend counts them itself: a reader keeps its run for as long as it
//! lives, and so does the guard [`RunStore::hold`] returns, which the RPC
//! layer keeps for the life of each append stream.

use std::{
    future::Future,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use crate::{
    error::Result,
    lease::LeaseExpiry,
    model::{
        AppendItem, AppendOutcome, ChannelSet, PreparedRun, ReadBatch, RunKey, RunMetadataInput,
        RunPage, RunQuery, RunStatePatch, RunStateSnapshot, RunStateSnapshotInput, RunStatus,
        RunView, WriterCursor,
    },
    observe::WriteHealth,
    retention::{Collection, RetentionPolicy},
    search::{LineScanner, SearchBatch},
};

/// Where a reader starts and where it stops. The bounds narrow each
/// other; all of them are resolved to sequence numbers when the reader
/// opens, without reading the run from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFrom {
    /// The first sequence number to return (1 for the start).
    pub from_seq: u64,
    /// The channels to return.
    pub channels: ChannelSet,
    /// Stop after the entries stored when the reader opened, instead of
    /// waiting for new ones.
    pub history_only: bool,
    /// The last sequence number to return: the reader is finished once it
    /// returned every selected entry up to it (or the run ended first).
    pub to_seq: Option<u64>,
    /// Only the last this many selected entries of the range, counted
    /// when the reader opens; then live entries, unless a bound ends the
    /// range. `Some(0)`: only entries committed later.
    pub tail: Option<u64>,
    /// Only entries committed at or after this time (commit times only
    /// move forward within a run).
    pub since: Option<SystemTime>,
    /// Only entries committed at or before this time, as committed when
    /// the reader opens.
    pub until: Option<SystemTime>,
}

impl Default for ReadFrom {
    /// Every entry of every channel, then live ones.
    fn default() -> Self {
        Self {
            from_seq: 1,
            channels: ChannelSet::ALL,
            history_only: false,
            to_seq: None,
            tail: None,
            since: None,
            until: None,
        }
    }
}

/// A storage backend for runs and their log sessions, and (through its
/// supertrait [`crate::ObjectStore`]) their objects.
///
/// Every method checks its ids before it touches storage. The store is the
/// source of truth for followers: entries are returned by readers from
/// storage, never handed from writer to follower in memory, so a follower
/// can always catch up from its cursor.
pub trait RunStore: crate::objects::ObjectStore + Send + Sync + 'static {
    /// The reader [`RunStore::open_reader`] returns.
    type Reader: RunReader;

    /// The guard [`RunStore::hold`] returns.
    type Hold: Send + Sync + 'static;

    /// The search [`RunStore::search`] returns.
    type Searcher: RunSearcher;

    /// Creates a run, or returns it when it exists with the same metadata.
    fn prepare_run(
        &self,
        metadata: RunMetadataInput,
        state: RunStateSnapshotInput,
    ) -> impl Future<Output = Result<PreparedRun>> + Send;

    /// Returns a run.
    fn get_run(&self, key: &RunKey) -> impl Future<Output = Result<RunView>> + Send;

    /// Lists runs, newest first.
    fn list_runs(&self, query: RunQuery) -> impl Future<Output = Result<RunPage>> + Send;

    /// Applies a patch to a run's state and returns the new state.
    fn update_state(
        &self,
        key: &RunKey,
        patch: RunStatePatch,
    ) -> impl Future<Output = Result<RunStateSnapshot>> + Send;

    /// Applies a patch to a run's state on behalf of `writer_id`, a writer
    /// of the run, and returns the new state. The same as
    /// [`RunStore::update_state`], but that a run failed only because its
    /// worker lease expired takes one final status (`completed`, `failed`
    /// or `blocked`) from a writer that had appended to it before: the
    /// store records a lifecycle entry saying so, and the new state
    /// replaces the lease failure (see [`crate::lease`]).
    ///
    /// # Errors
    ///
    /// Those of [`RunStore::update_state`]; [`crate::StoreError::LeaseLapsed`]
    /// for any other change of a lease-failed run.
    fn update_state_by(
        &self,
        key: &RunKey,
        writer_id: &str,
        patch: RunStatePatch,
    ) -> impl Future<Output = Result<RunStateSnapshot>> + Send;

    /// Fails a `running` run because its worker lease expired: one
    /// lifecycle entry on the worker channel ([`LeaseExpiry::event`]), then
    /// the state `failed` with [`LeaseExpiry::summary`], under the same
    /// rules as any other write, so followers see the entry and then end.
    /// Returns the new state, or `None` when the run is not `running` (it
    /// finished meanwhile): then nothing changes, so an expiry racing a
    /// normal finish is safe, and happens at most once.
    fn expire_lease(
        &self,
        key: &RunKey,
        expiry: LeaseExpiry,
    ) -> impl Future<Output = Result<Option<RunStateSnapshot>>> + Send;

    /// Appends a writer's items to a run. Items the run holds already are
    /// skipped; the rest are stored in order, each with the run's next
    /// sequence number. When an item cannot be stored (a writer sequence
    /// gap), the items before it are stored and the error is returned.
    ///
    /// A terminal run takes no items, but for one failed only because its
    /// worker lease expired: a writer that had appended to it before may
    /// deliver late, after a `worker_execution_deferred` entry the store
    /// records first; other writers get
    /// [`crate::StoreError::LeaseLapsed`].
    fn append(
        &self,
        key: &RunKey,
        writer_id: &str,
        items: Vec<AppendItem>,
    ) -> impl Future<Output = Result<AppendOutcome>> + Send;

    /// Tells what a run holds from one writer.
    fn writer_cursor(
        &self,
        key: &RunKey,
        writer_id: &str,
    ) -> impl Future<Output = Result<WriterCursor>> + Send;

    /// Opens a reader of a run's entries. While the reader lives, retention
    /// never deletes the run.
    fn open_reader(
        &self,
        key: &RunKey,
        from: ReadFrom,
    ) -> impl Future<Output = Result<Self::Reader>> + Send;

    /// Starts searching a run's stored entries with `scanner`, within its
    /// query's time window. While the search lives, retention never
    /// deletes the run. A backend without a faster way wraps a history
    /// reader in [`crate::search::ReaderSearch`].
    fn search(
        &self,
        key: &RunKey,
        scanner: LineScanner,
    ) -> impl Future<Output = Result<Self::Searcher>> + Send;

    /// Keeps a run from retention for as long as the returned guard lives:
    /// the RPC layer holds one for the life of each append stream.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError::RunNotFound`] for a run that does not exist, or
    /// was deleted.
    fn hold(&self, key: &RunKey) -> impl Future<Output = Result<Self::Hold>> + Send;

    /// Deletes the runs `policy` makes due, oldest first, and returns them;
    /// with `dry_run`, deletes nothing and returns the runs it would delete.
    ///
    /// Only terminal runs are ever deleted, and never one with a reader or
    /// a [`RunStore::hold`] guard alive; the check and the deletion are one
    /// step for each run, so a stream that opens meanwhile either keeps the
    /// run or finds it gone (`RunNotFound`). Once deleted, a run is gone from
    /// every method, and preparing it again creates a new one. Passes do not
    /// overlap.
    fn collect(
        &self,
        policy: RetentionPolicy,
        dry_run: bool,
    ) -> impl Future<Output = Result<Collection>> + Send;

    /// Writes what is kept in memory to storage, before the process exits.
    fn flush(&self) -> impl Future<Output = Result<()>> + Send;

    /// Whether the store can write, now and as it changes. The default,
    /// for a backend that cannot tell, is always writable.
    fn write_health(&self) -> watch::Receiver<WriteHealth> {
        watch::channel(WriteHealth::Writable).1
    }

    /// Whether several nodes serve this store at once, so that each must
    /// tell the others which worker leases it holds
    /// ([`RunStore::hold_leases`]). The default: one node alone.
    fn shared_by_nodes(&self) -> bool {
        false
    }

    /// Tells the other nodes that serve this store that this node holds
    /// the worker lease of each run of `holds` for the time given with it
    /// (runs with an append stream open here, or closed less than a lease
    /// ago). The default, for a store that one node serves alone, does
    /// nothing.
    fn hold_leases(&self, holds: Vec<(RunKey, Duration)>) -> impl Future<Output = ()> + Send {
        let _ = holds;
        std::future::ready(())
    }

    /// Whether another node holds `key`'s worker lease now (see
    /// [`RunStore::hold_leases`]), so that this node must not expire it.
    /// The default, for a store that one node serves alone, is never.
    fn lease_held_elsewhere(&self, key: &RunKey) -> impl Future<Output = bool> + Send {
        let _ = key;
        std::future::ready(false)
    }

    /// How many runs the store holds in each status, for metrics. The
    /// default, for a backend that cannot count cheaply, is none.
    fn count_runs(&self) -> impl Future<Output = Result<Vec<(RunStatus, u64)>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

/// Reads a run's entries in sequence order, from storage.
pub trait RunReader: Send + 'static {
    /// Returns the next entries, up to about `max_bytes` of them, and the
    /// state when it changed. Returns an empty, `caught_up` batch when
    /// nothing new is stored.
    fn read(&mut self, max_bytes: usize) -> impl Future<Output = Result<ReadBatch>> + Send;

    /// Asks for whole commits, where the reader can, as records shared
    /// with the other readers of the run ([`ReadBatch::shared`]) rather
    /// than as entries of its own, so that what a caller makes of a commit
    /// (its encoding) is made once for all of them. A reader that cannot
    /// leaves `shared` empty.
    fn share_commits(&mut self) {}

    /// Waits until something was stored or the state changed since the last
    /// read.
    fn changed(&mut self) -> impl Future<Output = ()> + Send;
}

/// Searches one run, a step at a time, so that the caller can pace it,
/// stop it, and send what it found as it goes.
pub trait RunSearcher: Send + 'static {
    /// Scans about `max_bytes` more of the run and returns the matches
    /// whose context is complete; `done` once the run is searched.
    fn next(&mut self, max_bytes: usize) -> impl Future<Output = Result<SearchBatch>> + Send;
}
