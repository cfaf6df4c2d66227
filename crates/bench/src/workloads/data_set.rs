//! The W4 data set: `runs` completed runs holding `entries` stdout lines
//! between them, a share of them in one large run and the rest spread
//! evenly, written through baa-logd by a few concurrent writers. W4
//! restarts a server over it; W7 searches it, with a literal planted in
//! the lines so that the number of matches is known in advance.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use baa_logging::pb;

use crate::{
    error::{Context, Result},
    payload::LineShape,
    progress::Progress,
    systems::grpc::{StubsWriter, client, connect, prepare_request, state_request},
};

/// The large run.
pub(crate) const LARGE_RUN: &str = "w4-large";

/// What the data set holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DataSetParams {
    /// Runs.
    pub(crate) runs: usize,
    /// Lines over all runs.
    pub(crate) entries: u64,
    /// The share of the lines that go to the one large run.
    pub(crate) large_share: f64,
    /// Concurrent writers while filling, each on a connection of its own.
    pub(crate) writers: usize,
    /// The lines.
    pub(crate) shape: LineShape,
}

/// A run of the data set and the lines written to it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRun {
    /// The run's id.
    pub(crate) run: String,
    /// Its stdout lines (it also holds its `run_prepared` event).
    pub(crate) lines: u64,
}

/// The runs and their lines: the large run first, then `w4-0`, `w4-1`…
/// with an equal share of the rest (the remainder of the division is not
/// written).
pub(crate) fn plan(params: &DataSetParams) -> Vec<PlannedRun> {
    let runs = params.runs.max(1);
    let large = ((params.entries as f64 * params.large_share) as u64).min(params.entries);
    let small_runs = runs - 1;
    let per_small = match small_runs {
        0 => 0,
        small => (params.entries - large) / small as u64,
    };
    let mut plan = vec![PlannedRun {
        run: LARGE_RUN.to_owned(),
        lines: large,
    }];
    plan.extend((0..small_runs).map(|i| PlannedRun {
        run: format!("w4-{i}"),
        lines: per_small,
    }));
    plan
}

/// Prepares the runs of `plan` on the server at `url`, writes their lines
/// and completes them.
pub(crate) async fn fill(url: &str, params: &DataSetParams, plan: &[PlannedRun]) -> Result<()> {
    let channel = connect(url).await?;
    futures::stream::iter(plan.iter().map(Ok))
        .try_for_each_concurrent(16, |planned| {
            let mut client = client(channel.clone());
            async move {
                client
                    .prepare_run(prepare_request(&planned.run))
                    .await
                    .context(format!("PrepareRun {}", planned.run))?;
                client
                    .update_run_state(state_request(&planned.run, pb::RunStatus::Running))
                    .await
                    .context("UpdateRunState")?;
                Result::Ok(())
            }
        })
        .await?;
    let total: u64 = plan.iter().map(|planned| planned.lines).sum();
    let progress = Progress::start("  filling".to_owned(), total, "lines");
    let counter = progress.counter();
    let conns: Vec<_> = futures::stream::iter(0..params.writers.max(1))
        .map(|_| connect(url))
        .buffered(8)
        .try_collect()
        .await?;
    let conns = &conns;
    futures::stream::iter(plan.iter().enumerate())
        .map(|(index, planned)| {
            let channel = conns[index % conns.len()].clone();
            let counter = counter.clone();
            async move {
                let mut writer = StubsWriter::open(channel.clone(), &planned.run, "writer").await?;
                writer
                    .send_lines(planned.lines, params.shape, &counter)
                    .await?;
                writer.finish().await?;
                client(channel)
                    .update_run_state(state_request(&planned.run, pb::RunStatus::Completed))
                    .await
                    .context("UpdateRunState")?;
                Result::Ok(())
            }
        })
        .buffer_unordered(params.writers.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The bytes of every file under `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
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

/// The bytes of `files` together (a file that cannot be read counts 0).
pub(crate) fn files_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
}
