//! What a run's log holds: lifecycle events and output chunks as writers
//! send them, as they are stored, and as readers return them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    CommitEntries, LocalRunLogSummary, RunStateSnapshot, StreamLogChannel, WorkerLogChannel,
};

/// Structured details: a JSON object (the contract's `StructuredData`).
pub type StructuredData = serde_json::Map<String, serde_json::Value>;

/// The severity of a lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Detail for whoever debugs the worker.
    Debug,
    /// The normal course of a run.
    Info,
    /// Something unexpected that the run survived.
    Warn,
    /// Something that made a step or the run fail.
    Error,
}

impl LogLevel {
    /// The contract's name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What a lifecycle event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLifecycleEventType {
    /// The run directory and its files were created.
    RunPrepared,
    /// A checkpoint slot was reserved.
    CheckpointSlotReserved,
    /// The worker's process started.
    WorkerStarted,
    /// The worker put off its execution.
    WorkerExecutionDeferred,
    /// The worker's process exited.
    WorkerExited,
    /// A step was prepared.
    StepPrepared,
    /// A step completed.
    StepCompleted,
    /// A step failed.
    StepFailed,
    /// A step is blocked.
    StepBlocked,
}

impl WorkerLifecycleEventType {
    /// The contract's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunPrepared => "run_prepared",
            Self::CheckpointSlotReserved => "checkpoint_slot_reserved",
            Self::WorkerStarted => "worker_started",
            Self::WorkerExecutionDeferred => "worker_execution_deferred",
            Self::WorkerExited => "worker_exited",
            Self::StepPrepared => "step_prepared",
            Self::StepCompleted => "step_completed",
            Self::StepFailed => "step_failed",
            Self::StepBlocked => "step_blocked",
        }
    }
}

/// What every entry carries about where it belongs (contract
/// `LocalRunLogContext`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LocalRunLogContext {
    pub task_id: String,
    pub step_id: String,
    pub run_id: String,
}

/// A lifecycle event as a writer sends it (contract
/// `WorkerLifecycleEventInput`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerLifecycleEventInput {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: WorkerLifecycleEventType,
    /// How severe it is.
    pub level: LogLevel,
    /// A human-readable message.
    pub message: String,
    /// When it happened; the store's clock when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Structured details.
    #[serde(default)]
    pub data: StructuredData,
}

/// A stored lifecycle event (contract `WorkerLifecycleLogEntry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WorkerLifecycleLogEntry {
    pub task_id: String,
    pub step_id: String,
    pub run_id: String,
    pub seq: u64,
    /// Always [`WorkerLogChannel::Worker`].
    pub channel: WorkerLogChannel,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: WorkerLifecycleEventType,
    pub level: LogLevel,
    pub created_at: String,
    pub message: String,
    #[serde(default)]
    pub data: StructuredData,
    pub rendered_line: String,
}

/// A piece of process output as a writer sends it (contract
/// `StreamChunkInput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamChunkInput {
    /// The text as the process wrote it.
    pub text: String,
    /// When it was written; the store's clock when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// A stored piece of process output (contract `StreamChunkLogEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct StreamChunkLogEntry {
    pub task_id: String,
    pub step_id: String,
    pub run_id: String,
    pub seq: u64,
    pub channel: StreamLogChannel,
    pub created_at: String,
    pub text: String,
}

/// A stored entry of any channel.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// A lifecycle event.
    Lifecycle(WorkerLifecycleLogEntry),
    /// A chunk of stdout or stderr.
    Chunk(StreamChunkLogEntry),
}

impl LogEntry {
    /// The entry's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Lifecycle(entry) => entry.seq,
            Self::Chunk(entry) => entry.seq,
        }
    }

    /// The entry's channel.
    pub fn channel(&self) -> WorkerLogChannel {
        match self {
            Self::Lifecycle(_) => WorkerLogChannel::Worker,
            Self::Chunk(entry) => entry.channel.into(),
        }
    }
}

/// What one appended item carries.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendPayload {
    /// A lifecycle event.
    Event(WorkerLifecycleEventInput),
    /// A chunk of stdout or stderr.
    Chunk(StreamLogChannel, StreamChunkInput),
}

/// One item a writer appends, with its own sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendItem {
    /// The writer's sequence number: one more than the previous item's.
    pub writer_seq: u64,
    /// What to append.
    pub payload: AppendPayload,
}

impl AppendItem {
    /// The bytes of text the item carries, for limits and batching.
    pub fn text_len(&self) -> usize {
        match &self.payload {
            AppendPayload::Event(event) => event.message.len(),
            AppendPayload::Chunk(_, chunk) => chunk.text.len(),
        }
    }
}

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    /// Items stored.
    pub stored: u64,
    /// Items the run held already, skipped.
    pub duplicates: u64,
    /// The last writer sequence number the run holds from the writer.
    pub last_writer_seq: u64,
    /// The run's log after the append.
    pub summary: LocalRunLogSummary,
}

/// A batch a reader returns: entries in sequence order, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch {
    /// Entries in sequence order.
    pub entries: Vec<LogEntry>,
    /// Whole commits, shared with other readers, whose entries follow
    /// `entries` in sequence order. Only for a reader asked to share them
    /// (see [`RunReader::share_commits`]); empty otherwise.
    ///
    /// [`RunReader::share_commits`]: crate::RunReader::share_commits
    pub shared: Vec<Arc<CommitEntries>>,
    /// The resume cursor: every selected entry before it was returned.
    pub next_seq: u64,
    /// The last sequence number the run had stored when the batch was
    /// read: how far behind the reader is, with `next_seq`.
    pub committed_seq: u64,
    /// The run's state, when it changed since the previous batch (always in
    /// the first).
    pub state: Option<RunStateSnapshot>,
    /// True when the reader returned everything stored (or everything up to
    /// its end, for a history-only reader).
    pub caught_up: bool,
    /// True when no entry will ever follow: the reader is caught up and the
    /// run is terminal, or a history-only reader reached its end.
    pub finished: bool,
}
