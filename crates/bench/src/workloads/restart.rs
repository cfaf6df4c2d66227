//! W4 restart: fills a data directory with `runs` runs and `entries`
//! entries (a share of them in one large run), stops baa-logd, starts it
//! again over the same directory and measures, from the spawn: the
//! `listening on` line, health `SERVING`, and a follower of the large run
//! getting its first and its last entry.
//!
//! Optionally the page cache is dropped before the restart, so the follow
//! reads from the disk rather than from memory (root only).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::{
    error::{BenchError, Context, Result},
    process::{ServerProcess, wait_serving},
    procfs,
    progress::{self, Progress},
    report::{RestartRow, mib},
    systems::{
        SystemKind,
        grpc::{baa_logd_args, client, connect, follow_request, prepare_request, state_request},
    },
};

/// W4's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RestartParams {
    /// Runs in the data directory.
    pub(crate) runs: usize,
    /// Entries over all runs.
    pub(crate) entries: u64,
    /// The share of the entries that go to the one large run.
    pub(crate) large_share: f64,
    /// Concurrent writers while filling.
    pub(crate) writers: usize,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Lines per `AppendLogs` message while filling.
    pub(crate) batch_lines: usize,
    /// Drop the page cache before the restart.
    pub(crate) drop_caches: bool,
}

/// The large run.
const LARGE_RUN: &str = "w4-large";

/// Runs W4 on baa-logd.
pub(crate) async fn run(baa_logd: &Path, params: &RestartParams) -> Vec<RestartRow> {
    progress::phase(&format!(
        "W4 restart · {} runs, {} entries",
        params.runs, params.entries
    ));
    let row = measure(baa_logd, params)
        .await
        .unwrap_or_else(|err| RestartRow {
            system: SystemKind::BaaLogd,
            runs: params.runs,
            entries: params.entries,
            large_run_entries: 0,
            data_mib: 0.0,
            fill_secs: 0.0,
            listening_ms: 0.0,
            serving_ms: 0.0,
            first_entry_ms: 0.0,
            last_entry_ms: 0.0,
            rss_mib: None,
            note: Some(format!("failed: {err}")),
        });
    vec![row]
}

/// Fills, restarts, measures.
async fn measure(baa_logd: &Path, params: &RestartParams) -> Result<RestartRow> {
    let data_dir = tempfile::Builder::new()
        .prefix("baa-bench-w4-")
        .tempdir()
        .map_err(|err| BenchError::io("cannot create a data directory", err))?;
    let fill_start = Instant::now();
    let server = ServerProcess::start(baa_logd, baa_logd_args(data_dir.path())).await?;
    let large_lines = fill(&server.url(), params).await?;
    server.terminate().await?;
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let data_bytes = dir_size(data_dir.path());
    let mut notes = Vec::new();
    if params.drop_caches {
        let dropped = std::process::Command::new("sync")
            .status()
            .is_ok_and(|status| status.success())
            && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
        if !dropped {
            notes.push("the page cache could not be dropped".to_owned());
        }
    } else {
        notes.push("page cache warm".to_owned());
    }

    progress::phase("  restarting");
    let server = ServerProcess::start(baa_logd, baa_logd_args(data_dir.path())).await?;
    let (spawned, listening) = (server.spawned_at, server.listening_at);
    let serving = wait_serving(&server.url(), Duration::from_secs(60)).await?;
    let channel = connect(&server.url()).await?;
    let mut stream = client(channel)
        .follow_run(follow_request(LARGE_RUN))
        .await
        .context("FollowRun of the large run")?
        .into_inner();
    let mut first = None;
    let mut entries = 0u64;
    while let Some(response) = stream.message().await.context("FollowRun failed")? {
        if first.is_none() && !response.entries.is_empty() {
            first = Some(Instant::now());
        }
        entries += response.entries.len() as u64;
    }
    let last = Instant::now();
    let rss = procfs::read(server.pid()).map(|reading| mib(reading.rss_bytes));
    server.terminate().await?;
    // The run holds its `run_prepared` event and the lines.
    if entries != large_lines + 1 {
        notes.push(format!(
            "the follower got {entries} entries, not {}",
            large_lines + 1
        ));
    }
    let ms = |at: Instant| at.duration_since(spawned).as_secs_f64() * 1000.0;
    Ok(RestartRow {
        system: SystemKind::BaaLogd,
        runs: params.runs,
        entries: params.entries,
        large_run_entries: entries,
        data_mib: mib(data_bytes),
        fill_secs,
        listening_ms: ms(listening),
        serving_ms: ms(serving),
        first_entry_ms: first.map_or(0.0, ms),
        last_entry_ms: ms(last),
        rss_mib: rss,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// Prepares the runs, writes the entries, completes the runs. Returns the
/// lines of the large run.
async fn fill(url: &str, params: &RestartParams) -> Result<u64> {
    let runs = params.runs.max(1);
    let large = ((params.entries as f64 * params.large_share) as u64).min(params.entries);
    let small_runs = runs - 1;
    let per_small = if small_runs > 0 {
        (params.entries - large) / small_runs as u64
    } else {
        0
    };
    let mut plan: Vec<(String, u64)> = vec![(LARGE_RUN.to_owned(), large)];
    plan.extend((0..small_runs).map(|i| (format!("w4-{i}"), per_small)));
    let channel = connect(url).await?;
    futures::stream::iter(plan.iter().map(Ok))
        .try_for_each_concurrent(16, |(run, _)| {
            let mut client = client(channel.clone());
            async move {
                client
                    .prepare_run(prepare_request(run))
                    .await
                    .context(format!("PrepareRun {run}"))?;
                client
                    .update_run_state(state_request(run, baa_logging::pb::RunStatus::Running))
                    .await
                    .context("UpdateRunState")?;
                Result::Ok(())
            }
        })
        .await?;
    let total: u64 = plan.iter().map(|(_, lines)| lines).sum();
    let progress = Progress::start("  filling".to_owned(), total, "lines");
    let counter = progress.counter();
    let conns: Vec<_> = futures::stream::iter(0..params.writers.max(1))
        .map(|_| connect(url))
        .buffered(8)
        .try_collect()
        .await?;
    let conns = &conns;
    futures::stream::iter(plan.iter().enumerate())
        .map(|(index, (run, lines))| {
            let channel = conns[index % conns.len()].clone();
            let counter = counter.clone();
            async move {
                let mut writer =
                    crate::systems::grpc::StubsWriter::open(channel.clone(), run, "writer").await?;
                writer
                    .send_lines(*lines, (params.line_bytes, params.batch_lines), &counter)
                    .await?;
                writer.finish().await?;
                client(channel)
                    .update_run_state(state_request(run, baa_logging::pb::RunStatus::Completed))
                    .await
                    .context("UpdateRunState")?;
                Result::Ok(())
            }
        })
        .buffer_unordered(params.writers.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(large)
}

/// The bytes of every file under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
