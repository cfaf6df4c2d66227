//! Naming runs, and describing a new one.

use std::fmt;

use crate::{ClientError, pb, timestamp::now_iso};

/// A run's name: its task id and run id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The task.
    pub task_id: String,
    /// The run, within the task.
    pub run_id: String,
}

impl RunKey {
    /// The run `run_id` of `task_id`.
    pub fn new(task_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            run_id: run_id.into(),
        }
    }
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.task_id, self.run_id)
    }
}

impl std::str::FromStr for RunKey {
    type Err = ClientError;

    /// Parses `TASK/RUN`, the form the command line uses.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((task, run)) if !task.is_empty() && !run.is_empty() && !run.contains('/') => {
                Ok(Self::new(task, run))
            }
            _ => Err(ClientError::InvalidInput {
                what: "run",
                reason: format!("`{text}` is not of the form TASK/RUN"),
            }),
        }
    }
}

/// A run to prepare: its metadata and first state, with defaults for
/// everything but the ids.
///
/// # Examples
///
/// ```
/// use baa_logging_client::NewRun;
///
/// let run = NewRun::new("nightly-build", "run-42")
///     .step("compile", "Compile the workspace")
///     .worker_kind("shell")
///     .command("cargo build");
/// assert_eq!(run.key().to_string(), "nightly-build/run-42");
/// ```
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The metadata, sent as it is.
    metadata: pb::RunMetadataInput,
    /// The first state, sent as it is.
    state: pb::RunStateSnapshotInput,
}

impl NewRun {
    /// A run `run_id` of `task_id`: step `main`, attempt 1, worker kind
    /// `process`, created and started now.
    pub fn new(task_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        let now = now_iso();
        Self {
            metadata: pb::RunMetadataInput {
                task_id: task_id.into(),
                step_id: "main".into(),
                step_name: "main".into(),
                run_id: run_id.into(),
                worker_kind: "process".into(),
                attempt: 1,
                repo_root: String::new(),
                worktree_path: String::new(),
                created_at: now.clone(),
                checkpoint_mode: "none".into(),
                prompt_summary: None,
                command: None,
            },
            state: pb::RunStateSnapshotInput {
                attempt: 1,
                started_at: now,
                checkpoint_seq: None,
                summary: None,
            },
        }
    }

    /// The run's name.
    pub fn key(&self) -> RunKey {
        RunKey::new(&self.metadata.task_id, &self.metadata.run_id)
    }

    /// Sets the step's id and name.
    pub fn step(mut self, step_id: impl Into<String>, step_name: impl Into<String>) -> Self {
        self.metadata.step_id = step_id.into();
        self.metadata.step_name = step_name.into();
        self
    }

    /// Sets which attempt of the step this run is.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.metadata.attempt = attempt;
        self.state.attempt = attempt;
        self
    }

    /// Sets what kind of worker runs it.
    pub fn worker_kind(mut self, kind: impl Into<String>) -> Self {
        self.metadata.worker_kind = kind.into();
        self
    }

    /// Sets the command the run executes.
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.metadata.command = Some(command.into());
        self
    }

    /// Sets the repository root and the worktree the run works in.
    pub fn paths(mut self, repo_root: impl Into<String>, worktree: impl Into<String>) -> Self {
        self.metadata.repo_root = repo_root.into();
        self.metadata.worktree_path = worktree.into();
        self
    }

    /// Sets a short summary of what the run was asked to do.
    pub fn prompt_summary(mut self, summary: impl Into<String>) -> Self {
        self.metadata.prompt_summary = Some(summary.into());
        self
    }

    /// Sets the checkpoint mode.
    pub fn checkpoint_mode(mut self, mode: impl Into<String>) -> Self {
        self.metadata.checkpoint_mode = mode.into();
        self
    }

    /// Sets the creation and start time (RFC 3339), for a run that began
    /// before it was prepared here.
    pub fn created_at(mut self, time: impl Into<String>) -> Self {
        self.metadata.created_at = time.into();
        self.state.started_at = self.metadata.created_at.clone();
        self
    }

    /// The request that prepares this run.
    pub fn into_request(self) -> pb::PrepareRunRequest {
        pb::PrepareRunRequest {
            metadata: Some(self.metadata),
            state: Some(self.state),
        }
    }
}
