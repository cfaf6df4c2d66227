//! `baa-log runs` and `baa-log show`: what runs there are, and one run in
//! full.

use baa_logging_client::{Client, ClientError, RunFilter, RunKey, pb};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{parse_run, render};

/// A status, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusArg {
    /// Prepared, not started.
    Prepared,
    /// Running.
    Running,
    /// Completed.
    Completed,
    /// Failed.
    Failed,
    /// Blocked.
    Blocked,
}

impl StatusArg {
    /// The protocol's status.
    fn to_pb(self) -> pb::RunStatus {
        match self {
            Self::Prepared => pb::RunStatus::Prepared,
            Self::Running => pb::RunStatus::Running,
            Self::Completed => pb::RunStatus::Completed,
            Self::Failed => pb::RunStatus::Failed,
            Self::Blocked => pb::RunStatus::Blocked,
        }
    }
}

/// Arguments of `baa-log runs`.
#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only this task's runs.
    #[arg(long)]
    task: Option<String>,
    /// Only runs in this status; repeat for several.
    #[arg(long = "status", value_enum)]
    statuses: Vec<StatusArg>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// Arguments of `baa-log show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The run, as TASK/RUN.
    #[arg(value_parser = parse_run)]
    run: RunKey,
    /// As JSON.
    #[arg(long)]
    json: bool,
    /// Also the run's directory on the server (a path on the server's
    /// machine, of no use elsewhere).
    #[arg(long, short)]
    verbose: bool,
}

/// Prints a table of runs, newest first.
pub(crate) async fn runs(client: &Client, args: RunsArgs) -> Result<u8, ClientError> {
    let mut rows =
        vec![["TASK", "RUN", "STEP", "STATUS", "ATTEMPT", "ENTRIES", "AGE"].map(String::from)];
    let mut filter = RunFilter {
        task_id: args.task,
        statuses: args.statuses.iter().map(|status| status.to_pb()).collect(),
        page_size: args.limit.min(1000) as u32,
        page_token: String::new(),
    };
    while rows.len() <= args.limit {
        let page = client.list_runs(filter.clone()).await?;
        for run in page.runs {
            let metadata = run.metadata.unwrap_or_default();
            let state = run.state.unwrap_or_default();
            let summary = run.summary.unwrap_or_default();
            rows.push([
                metadata.task_id,
                metadata.run_id,
                metadata.step_id,
                render::status_name(state.status()).to_string(),
                metadata.attempt.to_string(),
                summary.total_entries.to_string(),
                render::age(&metadata.created_at),
            ]);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        filter.page_token = page.next_page_token;
    }
    rows.truncate(args.limit + 1);
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}

/// Prints a run's metadata, state and summary.
pub(crate) async fn show(client: &Client, args: ShowArgs) -> Result<u8, ClientError> {
    let run = client.get_run(&args.run).await?;
    let metadata = run.metadata.unwrap_or_default();
    let state = run.state.unwrap_or_default();
    let summary = run.summary.unwrap_or_default();
    let paths = run.paths.unwrap_or_default();
    if args.json {
        let value = json!({
            "metadata": {
                "layoutVersion": metadata.layout_version,
                "taskId": metadata.task_id,
                "stepId": metadata.step_id,
                "stepName": metadata.step_name,
                "runId": metadata.run_id,
                "workerKind": metadata.worker_kind,
                "attempt": metadata.attempt,
                "repoRoot": metadata.repo_root,
                "worktreePath": metadata.worktree_path,
                "createdAt": metadata.created_at,
                "checkpointMode": metadata.checkpoint_mode,
                "promptSummary": metadata.prompt_summary,
                "command": metadata.command,
            },
            "state": {
                "status": render::status_name(state.status()),
                "attempt": state.attempt,
                "startedAt": state.started_at,
                "updatedAt": state.updated_at,
                "finishedAt": state.finished_at,
                "lastEventSeq": state.last_event_seq,
                "checkpointSeq": state.checkpoint_seq,
                "summary": state.summary,
                "exitCode": state.exit_code,
            },
            "summary": {
                "totalEntries": summary.total_entries,
                "lastSeq": summary.last_seq,
                "lifecycleEventCount": summary.lifecycle_event_count,
                "stdoutChunkCount": summary.stdout_chunk_count,
                "stderrChunkCount": summary.stderr_chunk_count,
            },
        });
        let value = match (args.verbose, value) {
            (true, serde_json::Value::Object(mut object)) => {
                object.insert("runDir".into(), paths.run_dir.into());
                serde_json::Value::Object(object)
            }
            (_, value) => value,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&strip_nulls(value)).unwrap_or_default()
        );
        return Ok(0);
    }
    let optional = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    let mut lines = vec![
        ("run", format!("{}/{}", metadata.task_id, metadata.run_id)),
        (
            "step",
            format!("{} ({})", metadata.step_id, metadata.step_name),
        ),
        ("status", render::status_name(state.status()).to_string()),
        (
            "exit code",
            optional(state.exit_code.map(|code| code.to_string())),
        ),
        ("summary", optional(state.summary)),
        ("attempt", metadata.attempt.to_string()),
        ("worker", metadata.worker_kind),
        ("command", optional(metadata.command)),
        (
            "created",
            format!(
                "{} ({} ago)",
                metadata.created_at,
                render::age(&metadata.created_at)
            ),
        ),
        ("started", state.started_at),
        ("updated", state.updated_at),
        ("finished", optional(state.finished_at)),
        (
            "entries",
            format!(
                "{} (last seq {}; {} worker, {} stdout, {} stderr)",
                summary.total_entries,
                summary.last_seq,
                summary.lifecycle_event_count,
                summary.stdout_chunk_count,
                summary.stderr_chunk_count
            ),
        ),
    ];
    if args.verbose {
        lines.push(("directory", paths.run_dir));
    }
    for (name, value) in lines {
        println!("{name:<10} {value}");
    }
    Ok(0)
}

/// Leaves out unset optional fields, as the contracts do.
fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(object) => serde_json::Value::Object(
            object
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key, strip_nulls(value)))
                .collect(),
        ),
        other => other,
    }
}
