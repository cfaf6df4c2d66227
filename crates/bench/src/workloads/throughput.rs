//! W1 throughput: `writers` writers each stream `lines` stdout lines as
//! fast as the system acknowledges them, each into its own run, and then
//! all into one shared run. Measured: lines per second from the first send
//! to the last acknowledgement, MB/s of line bytes, the server's CPU
//! seconds per million lines and its peak RSS.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{connections, prepare_runs, run_name};
use crate::{
    error::{BenchError, Context, Result},
    payload,
    procfs::PhaseMeter,
    progress::{self, Progress},
    report::{ThroughputRow, mib},
    systems::{Launcher, System, SystemKind},
};

/// W1's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThroughputParams {
    /// Concurrent writers.
    pub(crate) writers: usize,
    /// Lines each writer sends.
    pub(crate) lines: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Lines per batch (an `AppendLogs` message, a Redis pipeline).
    pub(crate) batch_lines: usize,
}

/// Where the writers write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Variant {
    /// Each writer into a run of its own.
    OwnRuns,
    /// Every writer into one run.
    SharedRun,
}

impl Variant {
    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::OwnRuns => "own runs",
            Self::SharedRun => "shared run",
        }
    }
}

/// Runs W1 on `systems`, both variants.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &ThroughputParams,
    systems: &[SystemKind],
) -> Vec<ThroughputRow> {
    let mut rows = Vec::new();
    for variant in [Variant::OwnRuns, Variant::SharedRun] {
        for &kind in systems {
            progress::phase(&format!("W1 {} · {kind}", variant.label()));
            let row = match launcher.start(kind, 16).await {
                Err(reason) => empty_row(variant, kind, reason),
                Ok(system) => {
                    let measured = measure(&system, kind, variant, params, "w1").await;
                    if let Err(err) = system.stop().await {
                        eprintln!("  stopping {kind}: {err}");
                    }
                    measured
                        .unwrap_or_else(|err| empty_row(variant, kind, format!("failed: {err}")))
                }
            };
            rows.push(row);
        }
    }
    rows
}

/// A row with no figures.
fn empty_row(variant: Variant, system: SystemKind, note: String) -> ThroughputRow {
    ThroughputRow {
        variant: variant.label(),
        system,
        entries: 0,
        secs: 0.0,
        entries_per_sec: 0.0,
        mb_per_sec: 0.0,
        cpu_secs_per_million: None,
        peak_rss_mib: None,
        note: Some(note),
    }
}

/// One phase: one system, one variant, into runs named after `prefix`
/// (a phase over a data directory that earlier phases wrote to needs runs
/// of its own).
pub(crate) async fn measure(
    system: &System,
    kind: SystemKind,
    variant: Variant,
    params: &ThroughputParams,
    prefix: &str,
) -> Result<ThroughputRow> {
    let runs: Vec<String> = match variant {
        Variant::OwnRuns => (0..params.writers)
            .map(|i| run_name(&format!("{prefix}-own"), i))
            .collect(),
        Variant::SharedRun => vec![format!("{prefix}-shared")],
    };
    let setup = system.connect().await?;
    prepare_runs(system, &setup, &runs).await?;
    // One connection per writer: each stands for a worker machine.
    let conns = connections(system, params.writers).await?;
    let mut writers = Vec::with_capacity(params.writers);
    for (index, conn) in conns.iter().enumerate() {
        let run = &runs[index % runs.len()];
        writers.push(system.writer(conn, run, &format!("writer-{index}")).await?);
    }
    let total = params.writers as u64 * params.lines;
    let progress = Progress::start(format!("{kind}"), total, "lines");
    let meter = system.pid().map(PhaseMeter::start);
    let start = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            let counter = progress.counter();
            let params = params.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while sent < params.lines {
                    let take = (params.batch_lines as u64).min(params.lines - sent);
                    let now = payload::now_micros();
                    let lines = (sent..sent + take)
                        .map(|index| payload::line(params.line_bytes, now, index))
                        .collect();
                    writer.send(lines).await?;
                    sent += take;
                    counter.fetch_add(take, Ordering::Relaxed);
                }
                writer.finish().await
            })
        })
        .collect();
    let mut acked = 0u64;
    for task in tasks {
        acked += task.await.context("a writer task failed")??;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let usage = meter.map(|meter| meter.stop());
    drop(progress);
    drop(conns);
    if acked != total {
        return Err(BenchError::Failed(format!(
            "{acked} of {total} lines acknowledged"
        )));
    }
    // Lets the server finish what it does after the last reply.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(ThroughputRow {
        variant: variant.label(),
        system: kind,
        entries: acked,
        secs,
        entries_per_sec: acked as f64 / secs,
        mb_per_sec: (acked * params.line_bytes as u64) as f64 / secs / 1e6,
        cpu_secs_per_million: usage.map(|usage| usage.cpu_secs / (acked as f64 / 1e6)),
        peak_rss_mib: usage.map(|usage| mib(usage.peak_rss_bytes)),
        note: None,
    })
}
