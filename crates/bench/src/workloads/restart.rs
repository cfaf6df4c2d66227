//! W4 restart: fills a data directory with `runs` runs and `entries`
//! entries (a share of them in one large run), stops baa-logd, starts it
//! again over the same directory and measures, from the spawn: the
//! `listening on` line, health `SERVING`, and a follower of the large run
//! getting its first and its last entry.
//!
//! It restarts twice: with the page cache warm (the files as the fill
//! left them in memory), then cold (the cache dropped first, so the follow
//! reads from the disk; root only, and the row says when it could not).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    error::{BenchError, Context, Result},
    payload::LineShape,
    process::{ServerProcess, wait_serving},
    procfs::{self, PhaseMeter},
    progress,
    report::{RestartRow, mib},
    systems::{
        SystemKind,
        grpc::{baa_logd_args, client, connect, follow_request},
    },
    workloads::data_set::{self, DataSetParams, LARGE_RUN, dir_size},
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
    /// Also restart with the page cache dropped.
    pub(crate) cold: bool,
}

impl RestartParams {
    /// The data set W4 fills (and W7 searches).
    pub(crate) fn data_set(&self) -> DataSetParams {
        DataSetParams {
            runs: self.runs,
            entries: self.entries,
            large_share: self.large_share,
            writers: self.writers,
            shape: LineShape {
                bytes: self.line_bytes,
                per_batch: self.batch_lines,
                plant: None,
            },
        }
    }
}

/// Runs W4 on baa-logd: a row for the warm restart and, when asked, one
/// for the cold one.
pub(crate) async fn run(baa_logd: &Path, params: &RestartParams) -> Vec<RestartRow> {
    progress::phase(&format!(
        "W4 restart · {} runs, {} entries",
        params.runs, params.entries
    ));
    let mut caches = vec![Cache::Warm];
    if params.cold {
        caches.push(Cache::Cold);
    }
    match fill(baa_logd, params).await {
        Ok(filled) => {
            let mut rows = Vec::new();
            for cache in caches {
                let row = restart(baa_logd, params, &filled, cache).await;
                rows.push(row.unwrap_or_else(|err| failed(params, cache, &err)));
            }
            rows
        }
        Err(err) => caches
            .into_iter()
            .map(|cache| failed(params, cache, &err))
            .collect(),
    }
}

/// The page cache at a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    /// As the fill (or the restart before) left it.
    Warm,
    /// Dropped just before the restart.
    Cold,
}

/// A data directory W4 filled.
struct Filled {
    /// The directory, removed when dropped.
    dir: tempfile::TempDir,
    /// Lines in the large run.
    large_lines: u64,
    /// How long the fill took.
    fill_secs: f64,
}

/// The row of a restart that failed.
fn failed(params: &RestartParams, cache: Cache, err: &BenchError) -> RestartRow {
    RestartRow {
        system: SystemKind::BaaLogd,
        cold: cache == Cache::Cold,
        runs: params.runs,
        entries: params.entries,
        large_run_entries: 0,
        data_mib: 0.0,
        fill_secs: 0.0,
        listening_ms: 0.0,
        serving_ms: 0.0,
        first_entry_ms: 0.0,
        last_entry_ms: 0.0,
        follow_entries_per_sec: 0.0,
        follow_cpu_secs: None,
        rss_mib: None,
        note: Some(format!("failed: {err}")),
    }
}

/// Fills a new data directory and stops the server that wrote it.
async fn fill(baa_logd: &Path, params: &RestartParams) -> Result<Filled> {
    let dir = tempfile::Builder::new()
        .prefix("baa-bench-w4-")
        .tempdir()
        .map_err(|err| BenchError::io("cannot create a data directory", err))?;
    let fill_start = Instant::now();
    let server = ServerProcess::start(baa_logd, baa_logd_args(dir.path())).await?;
    let data_set = params.data_set();
    let plan = data_set::plan(&data_set);
    data_set::fill(&server.url(), &data_set, &plan).await?;
    server.terminate().await?;
    Ok(Filled {
        dir,
        large_lines: plan[0].lines,
        fill_secs: fill_start.elapsed().as_secs_f64(),
    })
}

/// Drops the page cache: true when the kernel took it (root only).
fn drop_page_cache() -> bool {
    std::process::Command::new("sync")
        .status()
        .is_ok_and(|status| status.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Restarts over the filled directory and measures.
async fn restart(
    baa_logd: &Path,
    params: &RestartParams,
    filled: &Filled,
    cache: Cache,
) -> Result<RestartRow> {
    let data_bytes = dir_size(filled.dir.path());
    let mut notes = Vec::new();
    match cache {
        Cache::Warm => progress::phase("  restarting, page cache warm"),
        Cache::Cold => {
            progress::phase("  restarting, page cache dropped");
            if !drop_page_cache() {
                notes.push("the page cache could not be dropped (not root?): warm".to_owned());
            }
        }
    }
    let server = ServerProcess::start(baa_logd, baa_logd_args(filled.dir.path())).await?;
    let (spawned, listening) = (server.spawned_at, server.listening_at);
    let serving = wait_serving(&server.url(), Duration::from_secs(60)).await?;
    let channel = connect(&server.url()).await?;
    let meter = PhaseMeter::start(server.pid());
    let asked = Instant::now();
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
    let usage = meter.stop();
    let rss = procfs::read(server.pid()).map(|reading| mib(reading.rss_bytes));
    server.terminate().await?;
    // The run holds its `run_prepared` event and the lines.
    if entries != filled.large_lines + 1 {
        notes.push(format!(
            "the follower got {entries} entries, not {}",
            filled.large_lines + 1
        ));
    }
    let ms = |at: Instant| at.duration_since(spawned).as_secs_f64() * 1000.0;
    Ok(RestartRow {
        system: SystemKind::BaaLogd,
        cold: cache == Cache::Cold,
        runs: params.runs,
        entries: params.entries,
        large_run_entries: entries,
        data_mib: mib(data_bytes),
        fill_secs: filled.fill_secs,
        listening_ms: ms(listening),
        serving_ms: ms(serving),
        first_entry_ms: first.map_or(0.0, ms),
        last_entry_ms: ms(last),
        follow_entries_per_sec: entries as f64 / last.duration_since(asked).as_secs_f64(),
        follow_cpu_secs: Some(usage.cpu_secs),
        rss_mib: rss,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}
