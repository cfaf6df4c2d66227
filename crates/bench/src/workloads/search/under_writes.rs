//! W7 (b): W1 (own runs) on baa-logd at its default search rate (no
//! `--search-rate`), without and with one search going on for the whole
//! phase: `SearchRuns` for the planted literal in the data set's large
//! run, started again whenever it ends, each pass checked against the
//! planted count.
//!
//! Every phase gets a fresh server over the same data directory, and W1
//! runs of its own (named after the round and the phase). The rounds
//! alternate which phase goes first, so that a machine that slows down or
//! speeds up over the rounds favours neither. Figures are medians over
//! the rounds; the ratio is the median of each round's with ÷ without,
//! two phases run back to back, which other load on the machine moves
//! less than the ratio of two medians.
//!
//! A new search may scan a second's worth of its rate at once (its token
//! bucket starts full), so W1 starts `lead_secs` (2 s by default) after
//! the search: it then runs beside a search at its steady pace. The rate
//! reported is the search's over a window around W1, from the server's
//! progress responses (see `scan_log`).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{sync::oneshot, task::JoinHandle};

use super::{
    LITERAL, ScanLog, SearchOutcome, SearchParams, WrittenRun, drain, max_matches, open_search,
    read_search, start,
};
use crate::{
    error::{BenchError, Result},
    progress,
    report::{MIB, SearchLoadRow, ThroughputRow},
    samples::Samples,
    systems::{System, SystemKind, grpc::search_request},
    workloads::{
        grpc_channel,
        throughput::{self, Variant},
    },
};

/// The longest wait, after W1, for the search's next progress response.
const PROGRESS_WAIT: Duration = Duration::from_secs(3);

/// Runs phase (b): `rounds` rounds of W1 without and with a search.
pub(super) async fn run(
    baa_logd: &Path,
    data_dir: &Path,
    params: &SearchParams,
    written: &[WrittenRun],
) -> SearchLoadRow {
    progress::phase("  W1 own runs without and with a search (default search rate)");
    measure(baa_logd, data_dir, params, written)
        .await
        .unwrap_or_else(|err| empty_row(&err))
}

/// A row with no figures, saying why.
pub(super) fn empty_row(err: &BenchError) -> SearchLoadRow {
    SearchLoadRow {
        note: Some(format!("failed: {err}")),
        wrong_answer: matches!(err, BenchError::WrongAnswer(_)).then(|| err.to_string()),
        ..blank_row(0)
    }
}

/// A row of `rounds` rounds, before any was measured.
fn blank_row(rounds: usize) -> SearchLoadRow {
    SearchLoadRow {
        variant: Variant::OwnRuns.label(),
        rounds,
        quiet_entries_per_sec: Samples::default(),
        search_entries_per_sec: Samples::default(),
        quiet_cpu_secs_per_million: Samples::default(),
        search_cpu_secs_per_million: Samples::default(),
        search_mib_per_sec: Samples::default(),
        search_passes: 0,
        paired_ratios: Samples::default(),
        ratio: None,
        note: None,
        wrong_answer: None,
    }
}

/// The rounds.
async fn measure(
    baa_logd: &Path,
    data_dir: &Path,
    params: &SearchParams,
    written: &[WrittenRun],
) -> Result<SearchLoadRow> {
    let large = written
        .first()
        .ok_or_else(|| BenchError::Failed("the data set has no runs".into()))?;
    let target = SearchTarget {
        run: large.run.clone(),
        expected: large.planted,
    };
    let mut row = blank_row(params.rounds);
    let mut paired = Samples::default();
    for round in 0..params.rounds {
        let order = match round % 2 {
            0 => [false, true],
            _ => [true, false],
        };
        let mut rates = [0.0; 2];
        for with_search in order {
            progress::phase(&format!(
                "    round {}/{}: {}",
                round + 1,
                params.rounds,
                if with_search {
                    "with a search"
                } else {
                    "without"
                }
            ));
            let system = start(baa_logd, data_dir, &[]).await?;
            let measured = phase(&system, params, round, with_search.then_some(&target)).await;
            if let Err(err) = system.stop().await {
                eprintln!("  stopping baa-logd: {err}");
            }
            let (w1, load) = measured?;
            rates[usize::from(with_search)] = w1.entries_per_sec;
            let cpu = w1.cpu_secs_per_million;
            match load {
                None => {
                    row.quiet_entries_per_sec.push(w1.entries_per_sec);
                    if let Some(cpu) = cpu {
                        row.quiet_cpu_secs_per_million.push(cpu);
                    }
                }
                Some(load) => {
                    row.search_entries_per_sec.push(w1.entries_per_sec);
                    if let Some(cpu) = cpu {
                        row.search_cpu_secs_per_million.push(cpu);
                    }
                    if let Some(rate) = load.mib_per_sec {
                        row.search_mib_per_sec.push(rate);
                    }
                    row.search_passes += load.passes;
                }
            }
        }
        paired.push(rates[1] / rates[0]);
    }
    row.ratio = paired.median();
    row.paired_ratios = paired;
    if row
        .search_mib_per_sec
        .median()
        .is_none_or(|rate| rate <= 0.0)
    {
        row.note = Some("the search's pace around W1 is unknown or nil".to_owned());
    }
    Ok(row)
}

/// The run a search goes over, and the matches each pass must find.
#[derive(Debug)]
struct SearchTarget {
    /// The run.
    run: String,
    /// Its planted lines.
    expected: u64,
}

/// One phase: W1 into runs of its own, with a search of `search` going on
/// when there is one.
async fn phase(
    system: &System,
    params: &SearchParams,
    round: usize,
    search: Option<&SearchTarget>,
) -> Result<(ThroughputRow, Option<SearchLoad>)> {
    let prefix = format!(
        "w7-r{round}-{}",
        if search.is_some() { "search" } else { "quiet" }
    );
    let search = match search {
        Some(target) => {
            let search = SearchLoop::start(system, target).await?;
            tokio::time::sleep(Duration::from_secs_f64(params.lead_secs.max(0.0))).await;
            Some(search)
        }
        None => None,
    };
    let w1_start = Instant::now();
    let measured = throughput::measure(
        system,
        SystemKind::BaaLogd,
        Variant::OwnRuns,
        &params.w1,
        &prefix,
    )
    .await;
    let w1_end = Instant::now();
    let load = match search {
        Some(search) => Some(search.stop(w1_start, w1_end).await?),
        None => None,
    };
    Ok((measured?, load))
}

/// What the search did while W1 ran.
#[derive(Debug, Clone, Copy)]
struct SearchLoad {
    /// The bytes it scanned a second, MiB, over a window around W1;
    /// `None` when no progress came after W1.
    mib_per_sec: Option<f64>,
    /// Passes over the run that ended.
    passes: u64,
}

/// A search of one run, started again each time it ends, in a task of its
/// own until stopped.
#[derive(Debug)]
struct SearchLoop {
    /// The searches; they only end by failing.
    task: JoinHandle<Result<()>>,
    /// How far they got.
    log: Arc<ScanLog>,
    /// Passes that ended.
    passes: Arc<AtomicU64>,
    /// When the first search was sent.
    started: Instant,
}

impl SearchLoop {
    /// Starts the searches on a connection of their own; returns once the
    /// server has taken the first one.
    async fn start(system: &System, target: &SearchTarget) -> Result<Self> {
        let channel = grpc_channel(system).await?;
        let request = search_request(LITERAL, Some(&target.run), max_matches(target.expected));
        let expected = target.expected;
        let log = Arc::new(ScanLog::default());
        let passes = Arc::new(AtomicU64::new(0));
        let (taken, is_taken) = oneshot::channel();
        let started = Instant::now();
        let task = {
            let (log, passes) = (log.clone(), passes.clone());
            tokio::spawn(async move {
                let check = |outcome: SearchOutcome| outcome.check(expected, 1);
                let first = open_search(&channel, request.clone()).await?;
                let _ = taken.send(());
                check(read_search(first, started, &log).await?)?;
                passes.fetch_add(1, Ordering::Relaxed);
                loop {
                    check(drain(&channel, request.clone(), &log).await?)?;
                    passes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        if is_taken.await.is_err() {
            // The task ended before the server took the search: its error
            // says why.
            return Err(match task.await {
                Ok(Err(err)) => err,
                _ => BenchError::Failed("the search task ended early".into()),
            });
        }
        Ok(Self {
            task,
            log,
            passes,
            started,
        })
    }

    /// Waits for the search's first progress after `to`, then stops it;
    /// fails if a search failed. The rate is over a window that covers
    /// `from..to`.
    async fn stop(self, from: Instant, to: Instant) -> Result<SearchLoad> {
        let deadline = Instant::now() + PROGRESS_WAIT;
        while !self.log.heard_after(to) && !self.task.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.task.is_finished() {
            return Err(match self.task.await {
                Ok(Err(err)) => err,
                _ => BenchError::Failed("the search task ended early".into()),
            });
        }
        self.task.abort();
        let _ = self.task.await;
        Ok(SearchLoad {
            mib_per_sec: self
                .log
                .rate_over(self.started, from, to)
                .map(|rate| rate / MIB),
            passes: self.passes.load(Ordering::Relaxed),
        })
    }
}
