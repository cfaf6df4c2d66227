//! What any [`RunStore`] must do, written once against the traits: the
//! store's behaviour is defined here, and every backend runs these checks
//! unchanged (the local store in `tests/conformance.rs`).
//!
//! Each check takes a [`Backend`] that opens a fresh, empty store, works
//! through the trait alone, and panics with what it found when the store
//! breaks the rule it names. The checks are grouped by concern:
//!
//! - `sequence`: one gap-free `seq` per run across its three channels,
//!   exactly-once re-send by writer sequence number, the limits on items.
//! - `reading`: following from any cursor, with a channel filter, history
//!   then live, ending when the run is terminal.
//! - `ranges`: tails, sequence and time bounds, and searching a run.
//! - `runs`: preparing (idempotent, refusing other metadata and bad ids),
//!   listing newest first with filters and pages, state transitions.
//! - `retention`: terminal runs only, never one in use, gone whole.
//! - `leases`: an expired worker lease fails a running run once; the
//!   writer that comes back delivers late and sets the final status once.
//! - `objects`: uploads whole and verified or not at all, resumed from
//!   what the store holds; checkpoint slots; downloads by range.
//!
//! A new backend runs them with one test per check:
//!
//! ```no_run
//! # use baa_logging_store::{conformance::{self, Backend}, Limits, LocalStore, LocalStoreOptions};
//! struct Local(tempfile::TempDir);
//! impl Backend for Local {
//!     type Store = LocalStore;
//!     async fn open(&self, limits: Limits) -> LocalStore {
//!         LocalStore::open(LocalStoreOptions { limits, ..LocalStoreOptions::new(self.0.path()) }).unwrap()
//!     }
//! }
//! # async fn example() {
//! conformance::one_gap_free_seq_across_channels(&Local(tempfile::tempdir().unwrap())).await;
//! # }
//! ```

mod leases;
mod objects;
mod ranges;
mod reading;
mod retention;
mod runs;
mod sequence;

use std::future::Future;

use baa_logging_config::Limits;

pub use self::{
    leases::{
        a_returning_writer_delivers_late_and_finishes_once,
        an_expired_lease_fails_a_running_run_once,
    },
    objects::{
        a_name_keeps_the_bytes_it_was_committed_with, an_upload_resumes_from_what_the_store_holds,
        checkpoint_slots_are_reserved_then_committed_forward, objects_round_trip_by_any_range,
    },
    ranges::{reads_tails_and_bounds, searches_lines_with_context},
    reading::{follow_goes_live_and_ends_with_the_run, reads_from_any_cursor_and_channel},
    retention::retention_takes_only_terminal_runs_nobody_uses,
    runs::{
        bad_ids_are_refused_before_anything_is_stored, prepare_is_idempotent,
        runs_are_listed_newest_first_by_page, state_moves_only_forward,
    },
    sequence::{
        a_writer_cannot_append_run_prepared, items_over_a_limit_are_refused_after_the_ones_before,
        one_gap_free_seq_across_channels, resending_stores_each_item_once,
    },
};
use crate::{
    RunStore,
    model::{
        AppendItem, AppendPayload, LogEntry, LogLevel, RunKey, RunMetadataInput, RunStatePatch,
        RunStateSnapshotInput, RunStatus, StreamChunkInput, StreamLogChannel,
        WorkerLifecycleEventInput, WorkerLifecycleEventType,
    },
    run_store::{ReadFrom, RunReader},
};

/// A storage backend under test: opens a fresh, empty store.
pub trait Backend {
    /// The store it opens.
    type Store: RunStore;

    /// A new store with nothing in it, enforcing `limits`.
    fn open(&self, limits: Limits) -> impl Future<Output = Self::Store>;
}

/// The run `task/run`.
fn key(task: &str, run: &str) -> RunKey {
    RunKey {
        task_id: task.into(),
        run_id: run.into(),
    }
}

/// Prepares `task/run`, created at `created_at`.
async fn prepare_at<S: RunStore>(store: &S, task: &str, run: &str, created_at: &str) {
    let metadata = metadata(task, run, created_at);
    let state = RunStateSnapshotInput {
        attempt: 1,
        started_at: created_at.into(),
        checkpoint_seq: None,
        summary: None,
    };
    let prepared = store.prepare_run(metadata, state).await;
    assert!(prepared.expect("a new run is prepared").created);
}

/// Prepares `task/run`.
async fn prepare<S: RunStore>(store: &S, task: &str, run: &str) {
    prepare_at(store, task, run, "2026-01-02T03:04:05.000Z").await;
}

/// The metadata of a test run.
fn metadata(task: &str, run: &str, created_at: &str) -> RunMetadataInput {
    RunMetadataInput {
        task_id: task.into(),
        step_id: "step-1".into(),
        step_name: "Build".into(),
        run_id: run.into(),
        worker_kind: "shell".into(),
        attempt: 1,
        repo_root: "/repo".into(),
        worktree_path: "/repo".into(),
        created_at: created_at.into(),
        checkpoint_mode: "none".into(),
        prompt_summary: None,
        command: None,
    }
}

/// An output chunk item.
fn chunk(writer_seq: u64, channel: StreamLogChannel, text: &str) -> AppendItem {
    AppendItem {
        writer_seq,
        payload: AppendPayload::Chunk(
            channel,
            StreamChunkInput {
                text: text.into(),
                created_at: None,
            },
        ),
    }
}

/// A lifecycle event item.
fn event(writer_seq: u64, message: &str) -> AppendItem {
    AppendItem {
        writer_seq,
        payload: AppendPayload::Event(WorkerLifecycleEventInput {
            event_type: WorkerLifecycleEventType::WorkerStarted,
            level: LogLevel::Info,
            message: message.into(),
            created_at: None,
            data: Default::default(),
        }),
    }
}

/// Moves a run to `status`.
async fn set_status<S: RunStore>(store: &S, key: &RunKey, status: RunStatus) {
    let patch = RunStatePatch {
        status: Some(status),
        ..RunStatePatch::default()
    };
    store
        .update_state(key, patch)
        .await
        .expect("a status change");
}

/// Everything stored in a run from `from`, read to its current end.
async fn read_all<S: RunStore>(store: &S, key: &RunKey, from: ReadFrom) -> Vec<LogEntry> {
    let mut reader = store.open_reader(key, from).await.expect("a reader opens");
    let mut entries = Vec::new();
    loop {
        let batch = reader.read(64 * 1024).await.expect("a read");
        entries.extend(batch.entries);
        if batch.caught_up {
            return entries;
        }
    }
}

/// The text of an entry: a chunk's text or an event's message.
fn text(entry: &LogEntry) -> &str {
    match entry {
        LogEntry::Lifecycle(event) => &event.message,
        LogEntry::Chunk(chunk) => &chunk.text,
    }
}
