//! W7 (a): `SearchRuns` for the planted literal, baa-logd started with
//! `--search-rate 0`, against `grep -F -c` over the same runs' channel
//! files (`worker.log`, `stdout.log`, `stderr.log`), in two scopes: every
//! run of the data set, and its large run alone. The second shows what
//! the search costs per byte without the cost of opening a thousand
//! small runs.
//!
//! In each scope one search and one grep go first, untimed: they bring the
//! files into the page cache (the data set was just written, so they
//! mostly are) and open the runs in the server. Then `repeats` of each,
//! alternating. Both rates are over the same bytes, the files' total, so
//! their ratio is the ratio of the times; the server's own
//! `bytes_scanned` (the committed bytes of the searched channels) is
//! reported beside it. Every count is checked against the planted one.

use std::path::Path;

use super::{LITERAL, ScanLog, SearchParams, Totals, WrittenRun, drain, grep, max_matches, start};
use crate::{
    error::{BenchError, Result},
    procfs, progress,
    report::{SearchScanRow, mib},
    samples::Samples,
    systems::{System, grpc::search_request},
    workloads::{data_set::files_size, grpc_channel},
};

/// What one comparison covers.
#[derive(Debug)]
struct Scope<'a> {
    /// Its name in the table.
    label: &'static str,
    /// The run the search names; every run of the task when `None`.
    run: Option<&'a str>,
    /// The runs it covers.
    runs: &'a [WrittenRun],
}

/// The name of the scope over every run.
const EVERY_RUN: &str = "every run";

/// Runs phase (a) on a server of its own over `data_dir`: a row per
/// scope.
pub(super) async fn run(
    baa_logd: &Path,
    data_dir: &Path,
    params: &SearchParams,
    written: &[WrittenRun],
) -> Vec<SearchScanRow> {
    progress::phase("  SearchRuns (--search-rate 0) against grep -F -c");
    let system = match start(baa_logd, data_dir, &["--search-rate", "0"]).await {
        Ok(system) => system,
        Err(err) => return vec![empty_row(EVERY_RUN, &err)],
    };
    let mut scopes = vec![Scope {
        label: EVERY_RUN,
        run: None,
        runs: written,
    }];
    if let Some(large) = written.first().filter(|large| large.planted > 0) {
        scopes.push(Scope {
            label: "the large run",
            run: Some(&large.run),
            runs: &written[..1],
        });
    }
    let mut rows = Vec::new();
    for scope in &scopes {
        progress::phase(&format!("    {}", scope.label));
        let row = measure(&system, params, scope)
            .await
            .unwrap_or_else(|err| empty_row(scope.label, &err));
        rows.push(row);
    }
    if let Err(err) = system.stop().await {
        eprintln!("  stopping baa-logd: {err}");
    }
    rows
}

/// A row with no figures, saying why.
pub(super) fn empty_row(scope: &'static str, err: &BenchError) -> SearchScanRow {
    SearchScanRow {
        scope,
        runs: 0,
        entries: 0,
        files: 0,
        file_mib: 0.0,
        matches: 0,
        bytes_scanned: 0,
        grep_secs: Samples::default(),
        search_secs: Samples::default(),
        search_cpu_secs: Samples::default(),
        grep_mb_per_sec: None,
        search_mb_per_sec: None,
        search_scanned_mb_per_sec: None,
        ratio: None,
        note: Some(format!("failed: {err}")),
        wrong_answer: matches!(err, BenchError::WrongAnswer(_)).then(|| err.to_string()),
    }
}

/// One scope: the warm-up and the timed repeats.
async fn measure(
    system: &System,
    params: &SearchParams,
    scope: &Scope<'_>,
) -> Result<SearchScanRow> {
    let pid = system
        .pid()
        .ok_or_else(|| BenchError::Failed("baa-logd has no pid".into()))?;
    let channel = grpc_channel(system).await?;
    let files = scope.runs.files();
    let file_bytes = files_size(&files);
    let planted = scope.runs.planted();
    let runs = scope.runs.len() as u64;
    let request = search_request(LITERAL, scope.run, max_matches(planted));
    let log = ScanLog::default();
    let grep_once = || async {
        let counted = grep::count(LITERAL, &files).await?;
        if counted.lines != planted {
            return Err(BenchError::WrongAnswer(format!(
                "grep counted {} lines with {LITERAL} in {}, not the {planted} planted",
                counted.lines, scope.label
            )));
        }
        Ok(counted.secs)
    };
    let search_once = || async {
        let before = procfs::read(pid);
        let outcome = drain(&channel, request.clone(), &log).await?;
        let cpu = procfs::read(pid)
            .zip(before)
            .map(|(after, before)| after.cpu_secs - before.cpu_secs);
        outcome.check(planted, runs)?;
        Ok::<_, BenchError>((outcome, cpu))
    };

    progress::phase("      one of each, untimed, to warm the page cache");
    grep_once().await?;
    let (warm, _) = search_once().await?;
    let mut grep_secs = Samples::default();
    let mut search_secs = Samples::default();
    let mut search_cpu_secs = Samples::default();
    for repeat in 1..=params.repeats {
        progress::phase(&format!("      repeat {repeat}/{}", params.repeats));
        grep_secs.push(grep_once().await?);
        let (outcome, cpu) = search_once().await?;
        search_secs.push(outcome.secs);
        if let Some(cpu) = cpu {
            search_cpu_secs.push(cpu);
        }
    }
    let rate = |bytes: u64, secs: Option<f64>| secs.map(|secs| bytes as f64 / secs / 1e6);
    Ok(SearchScanRow {
        scope: scope.label,
        runs: scope.runs.len(),
        entries: scope.runs.lines(),
        files: files.len(),
        file_mib: mib(file_bytes),
        matches: planted,
        bytes_scanned: warm.bytes_scanned,
        grep_mb_per_sec: rate(file_bytes, grep_secs.median()),
        search_mb_per_sec: rate(file_bytes, search_secs.median()),
        search_scanned_mb_per_sec: rate(warm.bytes_scanned, search_secs.median()),
        ratio: grep_secs
            .median()
            .zip(search_secs.median())
            .map(|(grep, search)| grep / search),
        grep_secs,
        search_secs,
        search_cpu_secs,
        note: None,
        wrong_answer: None,
    })
}
