//! The domain types of a run's log session, mirroring the run-logging
//! contract. Their serde form is the contract's JSON: camelCase keys, string
//! enums, optional fields absent when unset. That is what `meta.json`,
//! `state.json` and the channel files hold.

use serde::{Deserialize, Serialize};

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

/// One of the three channels of a run's log session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLogChannel {
    /// Lifecycle events, in `worker.log`.
    Worker,
    /// Standard output, in `stdout.log`.
    Stdout,
    /// Standard error, in `stderr.log`.
    Stderr,
}

impl WorkerLogChannel {
    /// The three channels, in the order the store indexes them.
    pub const ALL: [Self; 3] = [Self::Worker, Self::Stdout, Self::Stderr];

    /// The channel's position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Worker => 0,
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }

    /// The contract's name of the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    /// The name of the channel's file in the run directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Worker => "worker.log",
            Self::Stdout => "stdout.log",
            Self::Stderr => "stderr.log",
        }
    }
}

/// The two channels that carry process output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamLogChannel {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl From<StreamLogChannel> for WorkerLogChannel {
    fn from(channel: StreamLogChannel) -> Self {
        match channel {
            StreamLogChannel::Stdout => Self::Stdout,
            StreamLogChannel::Stderr => Self::Stderr,
        }
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The run directory exists; the worker has not started.
    Prepared,
    /// The worker is running.
    Running,
    /// Terminal: the run did what it was asked.
    Completed,
    /// Terminal: the run failed.
    Failed,
    /// Terminal: the run cannot go on without outside help.
    Blocked,
}

impl RunStatus {
    /// Every status, in the order of the contract.
    pub const ALL: [Self; 5] = [
        Self::Prepared,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Blocked,
    ];

    /// Whether the status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Blocked)
    }

    /// Whether a run may move from `self` to `next`: `prepared → running`,
    /// `prepared | running → completed | failed | blocked` (`completed` only
    /// from `running`). Staying in the same non-terminal status is allowed.
    pub fn can_move_to(self, next: Self) -> bool {
        use RunStatus::*;
        matches!(
            (self, next),
            (Prepared, Prepared | Running | Failed | Blocked)
                | (Running, Running | Completed | Failed | Blocked)
        )
    }

    /// The contract's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepared => "prepared",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
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

/// Names a run: its task and its id, both checked by [`crate::ids`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunKey {
    /// The task the run belongs to.
    pub task_id: String,
    /// The run.
    pub run_id: String,
}

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.task_id, self.run_id)
    }
}

/// The absolute paths of a run's directory and files (contract
/// `LocalRunPaths`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LocalRunPaths {
    pub layout_version: String,
    pub repo_root: String,
    pub runs_root_dir: String,
    pub task_runs_dir: String,
    pub run_dir: String,
    pub checkpoints_dir: String,
    pub artifacts_dir: String,
    pub meta_path: String,
    pub state_path: String,
    pub worker_log_path: String,
    pub stdout_log_path: String,
    pub stderr_log_path: String,
}

impl LocalRunPaths {
    /// The file of one channel.
    pub fn log_path(&self, channel: WorkerLogChannel) -> &str {
        match channel {
            WorkerLogChannel::Worker => &self.worker_log_path,
            WorkerLogChannel::Stdout => &self.stdout_log_path,
            WorkerLogChannel::Stderr => &self.stderr_log_path,
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

/// Counts of what a run's log holds (contract `LocalRunLogSummary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct LocalRunLogSummary {
    pub total_entries: u64,
    pub last_seq: u64,
    pub lifecycle_event_count: u64,
    pub stdout_chunk_count: u64,
    pub stderr_chunk_count: u64,
}

impl LocalRunLogSummary {
    /// The summary of a log with these per-channel counts (indexed as
    /// [`WorkerLogChannel::ALL`]) whose last sequence number is `last_seq`.
    pub fn from_counts(counts: [u64; 3], last_seq: u64) -> Self {
        Self {
            total_entries: counts.iter().sum(),
            last_seq,
            lifecycle_event_count: counts[0],
            stdout_chunk_count: counts[1],
            stderr_chunk_count: counts[2],
        }
    }
}

/// What a run is (contract `RunMetadata`), as in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunMetadata {
    pub layout_version: String,
    pub task_id: String,
    pub step_id: String,
    pub step_name: String,
    pub run_id: String,
    pub worker_kind: String,
    pub attempt: u32,
    pub repo_root: String,
    pub worktree_path: String,
    pub created_at: String,
    pub checkpoint_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl RunMetadata {
    /// The run this metadata describes.
    pub fn key(&self) -> RunKey {
        RunKey {
            task_id: self.task_id.clone(),
            run_id: self.run_id.clone(),
        }
    }
}

/// What a client sends to prepare a run (contract `RunMetadataInput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunMetadataInput {
    pub task_id: String,
    pub step_id: String,
    pub step_name: String,
    pub run_id: String,
    pub worker_kind: String,
    pub attempt: u32,
    pub repo_root: String,
    pub worktree_path: String,
    pub created_at: String,
    pub checkpoint_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Where a run stands (contract `RunStateSnapshot`), as in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunStateSnapshot {
    pub status: RunStatus,
    pub attempt: u32,
    pub started_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub last_event_seq: u64,
    pub checkpoint_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// The first state of a run (contract `RunStateSnapshotInput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunStateSnapshotInput {
    pub attempt: u32,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// A change to a run's state (contract `RunStatePatch`). `updated_at` and
/// `last_event_seq` are the store's and are ignored here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RunStatePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A run as the store describes it: what it is, where it stands, what its
/// log holds and where its files are.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// The metadata.
    pub metadata: RunMetadata,
    /// The current state.
    pub state: RunStateSnapshot,
    /// What the log holds.
    pub summary: LocalRunLogSummary,
    /// The paths of the run's directory and files.
    pub paths: LocalRunPaths,
}

/// The result of preparing a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRun {
    /// The run.
    pub run: RunView,
    /// True when the call created the run.
    pub created: bool,
    /// The entries the call stored: the `run_prepared` event when it
    /// created the run, nothing otherwise.
    pub entries: Vec<WorkerLifecycleLogEntry>,
}

/// What a run holds from one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterCursor {
    /// The last writer sequence number stored; 0 when none.
    pub last_writer_seq: u64,
    /// The run's last sequence number.
    pub last_seq: u64,
}

/// Which runs a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this task's runs, when set.
    pub task_id: Option<String>,
    /// Only runs in these statuses; empty means all.
    pub statuses: Vec<RunStatus>,
    /// How many runs at most.
    pub page_size: usize,
    /// Where the previous page ended; from the start when unset.
    pub page_token: Option<String>,
}

/// A page of runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunView>,
    /// The token of the next page; unset on the last page.
    pub next_page_token: Option<String>,
}

/// A set of channels a reader returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSet([bool; 3]);

impl ChannelSet {
    /// All three channels.
    pub const ALL: Self = Self([true; 3]);

    /// The set of the given channels; all of them when `channels` is empty.
    pub fn of(channels: &[WorkerLogChannel]) -> Self {
        if channels.is_empty() {
            return Self::ALL;
        }
        let mut set = [false; 3];
        for channel in channels {
            set[channel.index()] = true;
        }
        Self(set)
    }

    /// Whether the set holds `channel`.
    pub fn contains(self, channel: WorkerLogChannel) -> bool {
        self.0[channel.index()]
    }
}

/// A batch a reader returns: entries in sequence order, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch {
    /// Entries in sequence order.
    pub entries: Vec<LogEntry>,
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
