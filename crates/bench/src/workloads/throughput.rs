//! W1 throughput: `writers` writers each stream `lines` stdout lines as
//! fast as the system acknowledges them, each into its own run, and then
//! all into one shared run. Measured: lines per second from the first send
//! to the last acknowledgement, MB/s of line bytes, the server's CPU
//! seconds per million lines and its peak RSS. baa-logd runs both once
//! more with [`MASKED_VALUES`] values registered for it to mask, in the
//! same run of the harness, for the cost of masking on ingest. A last
//! variant sends one line per message (small commits), where what a
//! system does per commit shows. Durable systems (`baa-logd --sync`,
//! NATS with `sync_interval: always`, Redis with `appendfsync always`)
//! send fewer lines, each costing far more. On a system of several nodes
//! (baa-logd on JetStream, a NATS cluster) the writers are split between
//! two of them, and the server CPU and RSS are the sums over all its
//! processes.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{prepare_runs, run_name, writer_connections};
use crate::{
    error::{BenchError, Context, Result},
    payload,
    procfs::GroupMeter,
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
    /// Lines each writer sends to a durable system.
    pub(crate) durable_lines: u64,
    /// Lines each writer sends with one line per message.
    pub(crate) small_lines: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Lines per batch (an `AppendLogs` message, a Redis pipeline).
    pub(crate) batch_lines: usize,
}

/// How many values each writer registers in the masking variants.
pub(crate) const MASKED_VALUES: usize = 100;

/// Where the writers write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Variant {
    /// Each writer into a run of its own.
    OwnRuns,
    /// Every writer into one run.
    SharedRun,
    /// Own runs, each writer registering [`MASKED_VALUES`] values.
    OwnRunsMasked,
    /// The shared run, each writer registering [`MASKED_VALUES`] values.
    SharedRunMasked,
    /// Own runs, one line per message: every line its own commit.
    OwnRunsSmallCommits,
}

impl Variant {
    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::OwnRuns => "own runs",
            Self::SharedRun => "shared run",
            Self::OwnRunsMasked => "own runs, 100 values masked",
            Self::SharedRunMasked => "shared run, 100 values masked",
            Self::OwnRunsSmallCommits => "own runs, one line per message",
        }
    }

    /// Whether its writers register values to mask.
    fn masks(self) -> bool {
        matches!(self, Self::OwnRunsMasked | Self::SharedRunMasked)
    }

    /// Whether each writer has a run of its own.
    fn own_runs(self) -> bool {
        matches!(
            self,
            Self::OwnRuns | Self::OwnRunsMasked | Self::OwnRunsSmallCommits
        )
    }

    /// The lines each writer sends to `kind`, and how many go in one
    /// message.
    fn shape(self, kind: SystemKind, params: &ThroughputParams) -> (u64, usize) {
        match self {
            Self::OwnRunsSmallCommits => (params.small_lines, 1),
            _ if kind.durable() => (params.durable_lines, params.batch_lines),
            _ => (params.lines, params.batch_lines),
        }
    }
}

/// The values a masking writer registers: random, 24 characters each,
/// never in the lines W1 writes (which hold digits and one letter).
fn mask_values() -> Vec<String> {
    (0..MASKED_VALUES)
        .map(|_| {
            (0..24)
                .map(|_| fastrand::alphanumeric())
                .collect::<String>()
                + "-secret"
        })
        .collect()
}

/// Runs W1 on `systems`, both variants.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &ThroughputParams,
    systems: &[SystemKind],
) -> Vec<ThroughputRow> {
    let mut rows = Vec::new();
    let variants = [
        Variant::OwnRuns,
        Variant::SharedRun,
        Variant::OwnRunsMasked,
        Variant::SharedRunMasked,
        Variant::OwnRunsSmallCommits,
    ];
    for variant in variants {
        for &kind in systems {
            if variant.masks() && kind != SystemKind::BaaLogd {
                continue;
            }
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
    let masked = if variant.masks() { "-masked" } else { "" };
    let runs: Vec<String> = if variant.own_runs() {
        (0..params.writers)
            .map(|i| run_name(&format!("{prefix}-own{masked}"), i))
            .collect()
    } else {
        vec![format!("{prefix}-shared{masked}")]
    };
    let setup = system.connect().await?;
    prepare_runs(system, &setup, &runs).await?;
    // One connection per writer: each stands for a worker machine.
    let conns = writer_connections(system, params.writers).await?;
    let mut writers = Vec::with_capacity(params.writers);
    // The same values for every writer: a run masks what its writers
    // registered, so a shared run holds MASKED_VALUES of them, not more.
    let values = mask_values();
    for (index, conn) in conns.iter().enumerate() {
        let run = &runs[index % runs.len()];
        let writer_id = format!("writer-{index}");
        writers.push(if variant.masks() {
            system
                .masking_writer(conn, run, &writer_id, values.clone())
                .await?
        } else {
            system.writer(conn, run, &writer_id).await?
        });
    }
    let (lines, batch_lines) = variant.shape(kind, params);
    let params = ThroughputParams {
        lines,
        batch_lines,
        ..params.clone()
    };
    let total = params.writers as u64 * params.lines;
    let progress = Progress::start(format!("{kind}"), total, "lines");
    let meter = GroupMeter::start(&system.pids());
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
