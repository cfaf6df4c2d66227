//! `baa-log runs` and `baa-log show`: what runs there are, and one run in
//! full. Both print a run as JSON in one shape ([`run_json`]): `show --json`
//! one run, pretty; `runs --json` one run a line.
//!
//! # Attempts
//!
//! `runs --task T` prints the attempts of a step together
//! ([`attempts_together`]); across tasks, and with `--json`, runs keep the
//! server's order, newest first. Steps belong to a task, so only a task's
//! list has steps to group; and `--json` is for programs, which group by
//! `stepId` as they like and may rely on its first line being the newest
//! run (`| head -1`).

use std::{collections::HashMap, io::Write};

use baa_logging_client::{Client, ClientError, RunFilter, pb};
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};

use crate::{parse_run, render, run_ref::RunRef};

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
    /// Only this task's runs, the attempts of each step together: steps in
    /// the order of their newest run, and a step's runs newest first, so
    /// its latest attempt first.
    #[arg(long)]
    task: Option<String>,
    /// Only runs in this status; repeat for several.
    #[arg(long = "status", value_enum)]
    statuses: Vec<StatusArg>,
    /// At most this many runs. When more exist, a line on stderr says so.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One run a line, as JSON in the shape of `show --json`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `baa-log show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// As JSON.
    #[arg(long)]
    json: bool,
    /// Also the run's directory on the server (a path on the server's
    /// machine, of no use elsewhere).
    #[arg(long, short)]
    verbose: bool,
}

/// Prints runs, newest first: as a table (with `--task`, the attempts of
/// a step together), or one JSON object a line; then, on stderr, whether
/// `--limit` left runs out.
pub(crate) async fn runs(client: &Client, args: RunsArgs) -> Result<u8, ClientError> {
    let (mut runs, more) = list(client, &args).await?;
    if args.task.is_some() && !args.json {
        runs = attempts_together(runs);
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        for run in runs {
            if writeln!(out, "{}", run_json(run, false)).is_err() {
                // The reader went away (`| head`): that is the end.
                return Ok(0);
            }
        }
    } else {
        print_table(runs);
    }
    if more {
        // On stderr, so that `--json` output stays one run a line.
        eprintln!(
            "baa-log: more runs exist than the {} shown; --limit N shows more",
            args.limit
        );
    }
    Ok(0)
}

/// The first `args.limit` runs that match, newest first, and whether more
/// exist.
async fn list(client: &Client, args: &RunsArgs) -> Result<(Vec<pb::Run>, bool), ClientError> {
    let mut filter = RunFilter {
        task_id: args.task.clone(),
        statuses: args.statuses.iter().map(|status| status.to_pb()).collect(),
        page_size: args.limit.min(1000) as u32,
        page_token: String::new(),
    };
    let mut runs = Vec::new();
    // Whether the last page said another follows.
    let mut next_page = false;
    while runs.len() < args.limit {
        let page = client.list_runs(filter.clone()).await?;
        runs.extend(page.runs);
        next_page = !page.next_page_token.is_empty();
        if !next_page {
            break;
        }
        filter.page_token = page.next_page_token;
    }
    let more = next_page || runs.len() > args.limit;
    runs.truncate(args.limit);
    Ok((runs, more))
}

/// Orders one task's runs, given newest first, so that the runs of a step
/// stand together: steps in the order of their newest run, and within a
/// step the server's order, newest first.
///
/// Newest first is the latest attempt first: an attempt is prepared after
/// the run it retries (`exec --retry-of` reads it first). It is also right
/// where sorting by the attempt number is not: a step run again from
/// attempt 1 (a task started over, or plain `exec` runs of step `main`)
/// shows its new chain above the old one, instead of the old chain's
/// attempt 2 above the new attempt 1. The groups hold the runs listed,
/// so with `--limit` a step's oldest attempts may be left out.
fn attempts_together(runs: Vec<pb::Run>) -> Vec<pb::Run> {
    let step = |run: &pb::Run| {
        run.metadata
            .as_ref()
            .map(|metadata| metadata.step_id.clone())
            .unwrap_or_default()
    };
    // Each step's place: where its newest run stands.
    let mut places: HashMap<String, usize> = HashMap::new();
    for run in &runs {
        let next = places.len();
        places.entry(step(run)).or_insert(next);
    }
    let mut runs = runs;
    // A stable sort keeps each step's runs in the server's order.
    runs.sort_by_cached_key(|run| places[&step(run)]);
    runs
}

/// Prints runs as a table with a header, each column as wide as its
/// widest cell.
fn print_table(runs: Vec<pb::Run>) {
    let mut rows =
        vec![["TASK", "RUN", "STEP", "STATUS", "ATTEMPT", "ENTRIES", "AGE"].map(String::from)];
    for run in runs {
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
}

/// Prints a run's metadata, state and summary.
pub(crate) async fn show(client: &Client, args: ShowArgs) -> Result<u8, ClientError> {
    let run = client.get_run(&args.run.resolve(client).await?).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run_json(run, args.verbose)).unwrap_or_default()
        );
        return Ok(0);
    }
    let metadata = run.metadata.unwrap_or_default();
    let state = run.state.unwrap_or_default();
    let summary = run.summary.unwrap_or_default();
    let paths = run.paths.unwrap_or_default();
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

/// A run as JSON: its metadata, state and log summary in the contracts'
/// field names, without unset optional fields; with `run_dir`, also the
/// run's directory on the server (`runDir`), a path of no use elsewhere.
fn run_json(run: pb::Run, run_dir: bool) -> Json {
    let metadata = run.metadata.unwrap_or_default();
    let state = run.state.unwrap_or_default();
    let summary = run.summary.unwrap_or_default();
    let mut value = json!({
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
    if run_dir {
        value["runDir"] = run.paths.unwrap_or_default().run_dir.into();
    }
    strip_nulls(value)
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
