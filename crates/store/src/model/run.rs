//! A run: its key, metadata, state and the changes to it, where its files
//! are, what its log holds, and the queries and views over runs.

use serde::{Deserialize, Serialize};

use super::{PerChannel, WorkerLifecycleLogEntry, WorkerLogChannel};

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
    /// The summary of a log with these per-channel counts whose last
    /// sequence number is `last_seq`.
    pub fn from_counts(counts: PerChannel<u64>, last_seq: u64) -> Self {
        Self {
            total_entries: counts.total(),
            last_seq,
            lifecycle_event_count: counts[WorkerLogChannel::Worker],
            stdout_chunk_count: counts[WorkerLogChannel::Stdout],
            stderr_chunk_count: counts[WorkerLogChannel::Stderr],
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
