//! W7 search, over the W4 data set (W4's sizes) with a literal planted in
//! one line in `every`, so that the number of matching lines is known
//! before anything is searched:
//!
//! - [`versus_grep`]: `SearchRuns` for the literal over every run, and
//!   over the large run alone, the server started with `--search-rate 0`
//!   (no pacing), against `grep -F -c` over the same runs' channel files,
//!   alternating, the page cache warm for both. Both counts must equal the
//!   planted count.
//! - [`under_writes`]: W1 (own runs) on servers over the same data
//!   directory at the default search rate, without and with one search of
//!   the large run going on for the whole phase, alternating.
//!
//! `grep` runs the system's `grep`; `drain` reads a search to its end,
//! noting its progress in a `scan_log`.

mod grep;
mod scan_log;
mod under_writes;
mod versus_grep;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;
use tonic::{Streaming, transport::Channel};

use baa_logging::pb;

use self::scan_log::ScanLog;
use super::{
    data_set::{self, DataSetParams, PlannedRun},
    throughput::ThroughputParams,
};
use crate::{
    error::{BenchError, Context, Result},
    payload::Plant,
    progress,
    report::{SearchLoadRow, SearchScanRow},
    systems::{
        System,
        grpc::{GrpcSystem, channel_files, client, connect, get_run_request},
    },
};

/// The literal planted in the lines and searched for.
pub(crate) const LITERAL: &str = "W7NEEDLE";

/// The most matches one search may ask for (the server's cap).
const MAX_MATCHES: u64 = 100_000;

/// W7's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SearchParams {
    /// The runs searched: W4's data set, with [`LITERAL`] planted.
    pub(crate) data_set: DataSetParams,
    /// Timed searches, and as many timed greps, after one of each that
    /// warms the page cache.
    pub(crate) repeats: usize,
    /// Rounds of W1 without and with a search.
    pub(crate) rounds: usize,
    /// Seconds the search runs before W1 starts beside it.
    pub(crate) lead_secs: f64,
    /// The W1 of those rounds.
    pub(crate) w1: ThroughputParams,
}

/// What W7 reports.
#[derive(Debug, Default)]
pub(crate) struct SearchRows {
    /// The search against grep.
    pub(crate) scan: Vec<SearchScanRow>,
    /// W1 without and with a search.
    pub(crate) writes: Vec<SearchLoadRow>,
}

/// A run of the data set once written.
#[derive(Debug)]
struct WrittenRun {
    /// The run's id.
    run: String,
    /// Its stdout lines.
    lines: u64,
    /// Its lines that carry the literal.
    planted: u64,
    /// Its three channel files.
    files: Vec<PathBuf>,
}

/// Totals over some runs of the data set.
trait Totals {
    /// Lines that carry the literal.
    fn planted(&self) -> u64;
    /// Stdout lines.
    fn lines(&self) -> u64;
    /// Their channel files.
    fn files(&self) -> Vec<PathBuf>;
}

impl Totals for [WrittenRun] {
    fn planted(&self) -> u64 {
        self.iter().map(|run| run.planted).sum()
    }

    fn lines(&self) -> u64 {
        self.iter().map(|run| run.lines).sum()
    }

    fn files(&self) -> Vec<PathBuf> {
        self.iter().flat_map(|run| run.files.clone()).collect()
    }
}

/// Runs W7 on baa-logd.
pub(crate) async fn run(baa_logd: &Path, params: &SearchParams) -> SearchRows {
    progress::phase(&format!(
        "W7 search · {} runs, {} entries, {LITERAL} in one line in {}",
        params.data_set.runs,
        params.data_set.entries,
        params.data_set.shape.plant.map_or(0, |plant| plant.every)
    ));
    let data_dir = match tempfile::Builder::new().prefix("baa-bench-w7-").tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            return SearchRows::failed(&BenchError::io("cannot create a data directory", err));
        }
    };
    let written = match write(baa_logd, data_dir.path(), params).await {
        Ok(written) => written,
        Err(err) => return SearchRows::failed(&err),
    };
    let scan = versus_grep::run(baa_logd, data_dir.path(), params, &written).await;
    let writes = under_writes::run(baa_logd, data_dir.path(), params, &written).await;
    SearchRows {
        scan,
        writes: vec![writes],
    }
}

impl SearchRows {
    /// Both rows empty, saying why.
    fn failed(err: &BenchError) -> Self {
        Self {
            scan: vec![versus_grep::empty_row("every run", err)],
            writes: vec![under_writes::empty_row(err)],
        }
    }
}

/// Fills the data directory through a server of its own, and lists the
/// files that hold it; the large run comes first.
async fn write(baa_logd: &Path, data_dir: &Path, params: &SearchParams) -> Result<Vec<WrittenRun>> {
    let plant = params
        .data_set
        .shape
        .plant
        .ok_or_else(|| BenchError::Failed("W7 needs a planted literal".into()))?;
    if params.data_set.shape.bytes < plant.min_line_bytes() {
        return Err(BenchError::Failed(format!(
            "W7 needs --line-bytes of at least {} to plant {LITERAL}",
            plant.min_line_bytes()
        )));
    }
    let plan = data_set::plan(&params.data_set);
    let planted: u64 = plan.iter().map(|planned| plant.count(planned.lines)).sum();
    if planted == 0 || planted >= MAX_MATCHES {
        return Err(BenchError::Failed(format!(
            "{planted} planted lines: W7 needs between 1 and {} (change --w7-every)",
            MAX_MATCHES - 1
        )));
    }
    let server = GrpcSystem::start_baa_logd_in(baa_logd, data_dir, &[]).await?;
    let url = server.url();
    let written = match data_set::fill(&url, &params.data_set, &plan).await {
        Ok(()) => list_files(&url, &plan, plant).await,
        Err(err) => Err(err),
    };
    server.stop().await?;
    written
}

/// The runs of `plan` with their channel files, as the server names them.
async fn list_files(url: &str, plan: &[PlannedRun], plant: Plant) -> Result<Vec<WrittenRun>> {
    let mut client = client(connect(url).await?);
    let mut written = Vec::with_capacity(plan.len());
    for planned in plan {
        let run = client
            .get_run(get_run_request(&planned.run))
            .await
            .context(format!("GetRun {}", planned.run))?
            .into_inner()
            .run;
        let files = channel_files(run.as_ref().and_then(|run| run.targets.as_ref()));
        if files.len() != 3 {
            return Err(BenchError::Failed(format!(
                "GetRun {} named {} channel files, not 3",
                planned.run,
                files.len()
            )));
        }
        written.push(WrittenRun {
            run: planned.run.clone(),
            lines: planned.lines,
            planted: plant.count(planned.lines),
            files,
        });
    }
    Ok(written)
}

/// What one search found.
#[derive(Debug, Default)]
struct SearchOutcome {
    /// Matching lines.
    matches: u64,
    /// Matching lines whose text does not hold the literal.
    bad_matches: u64,
    /// The server's `bytes_scanned` at the end.
    bytes_scanned: u64,
    /// The server's `runs_searched` at the end.
    runs_searched: u64,
    /// Ranges the server could not search.
    skipped: usize,
    /// The search stopped at `max_matches`.
    limit_reached: bool,
    /// From the request to the end of the stream.
    secs: f64,
}

/// Sends `request` on `channel` and reads its responses to the end,
/// noting in `log` how far it got as they come.
async fn drain(
    channel: &Channel,
    request: pb::SearchRunsRequest,
    log: &ScanLog,
) -> Result<SearchOutcome> {
    let start = Instant::now();
    let stream = open_search(channel, request).await?;
    read_search(stream, start, log).await
}

/// Sends `request`: the server has taken the search when this returns.
async fn open_search(
    channel: &Channel,
    request: pb::SearchRunsRequest,
) -> Result<Streaming<pb::SearchRunsResponse>> {
    Ok(client(channel.clone())
        .search_runs(request)
        .await
        .context("SearchRuns")?
        .into_inner())
}

/// Reads a search's responses to the end, noting in `log` how far it got
/// as they come; its time runs from `start`.
async fn read_search(
    mut stream: Streaming<pb::SearchRunsResponse>,
    start: Instant,
    log: &ScanLog,
) -> Result<SearchOutcome> {
    let mut outcome = SearchOutcome::default();
    while let Some(response) = stream.message().await.context("SearchRuns failed")? {
        outcome.matches += response.matches.len() as u64;
        outcome.bad_matches += response
            .matches
            .iter()
            .filter(|found| !found.text.contains(LITERAL))
            .count() as u64;
        log.add(response.bytes_scanned.saturating_sub(outcome.bytes_scanned));
        outcome.bytes_scanned = outcome.bytes_scanned.max(response.bytes_scanned);
        outcome.runs_searched = response.runs_searched;
        outcome.skipped += response.skipped.len();
        outcome.limit_reached |= response.limit_reached;
    }
    outcome.secs = start.elapsed().as_secs_f64();
    Ok(outcome)
}

impl SearchOutcome {
    /// Checks that the search found `expected` lines, each holding the
    /// literal, over `runs` runs, and skipped nothing.
    fn check(&self, expected: u64, runs: u64) -> Result<()> {
        let wrong = |what: String| Err(BenchError::WrongAnswer(what));
        if self.matches != expected {
            return wrong(format!(
                "SearchRuns found {} lines with {LITERAL}, not the {expected} planted",
                self.matches
            ));
        }
        if self.bad_matches > 0 {
            return wrong(format!(
                "SearchRuns returned {} lines without {LITERAL}",
                self.bad_matches
            ));
        }
        if self.runs_searched != runs {
            return wrong(format!(
                "SearchRuns searched {} runs, not {runs}",
                self.runs_searched
            ));
        }
        if self.skipped > 0 || self.limit_reached {
            return wrong(format!(
                "SearchRuns skipped {} ranges of undamaged runs, or stopped at its cap ({})",
                self.skipped, self.limit_reached
            ));
        }
        Ok(())
    }
}

/// The `max_matches` of a search that expects `expected`: one more, so
/// that a search that finds too many says so.
fn max_matches(expected: u64) -> u32 {
    u32::try_from((expected + 1).min(MAX_MATCHES)).unwrap_or(u32::MAX)
}

/// baa-logd as a [`System`], over the data directory, with `extra` flags.
async fn start(baa_logd: &Path, data_dir: &Path, extra: &[&str]) -> Result<System> {
    GrpcSystem::start_baa_logd_in(baa_logd, data_dir, extra)
        .await
        .map(System::Grpc)
}
