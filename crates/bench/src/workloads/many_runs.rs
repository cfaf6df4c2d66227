//! W3 many runs: `runs` runs, each with an open append stream and a
//! follower, each writer trickling one line a second (spread over the
//! second, so the load is even). Measured over a steady window: the
//! server's CPU and resident memory, and that the lines still arrive.
//!
//! Writers and followers share one connection per `runs_per_connection`
//! runs, as the runs of one worker machine would; Redis followers each need
//! a connection of their own, since a blocked `XREAD` holds it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::watch;

use super::{connections, fan_out::follow, prepare_runs, run_name};
use crate::{
    error::{Context, Result},
    latency::Latencies,
    payload,
    procfs::{self, PhaseMeter},
    progress::{self, Progress},
    report::{ManyRunsRow, mib},
    systems::{Launcher, System, SystemKind},
};

/// W3's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ManyRunsParams {
    /// Runs, each with one writer and one follower.
    pub(crate) runs: usize,
    /// Seconds of steady state measured.
    pub(crate) secs: u64,
    /// Seconds of steady state before measuring.
    pub(crate) warmup_secs: u64,
    /// Runs whose streams share one client connection.
    pub(crate) runs_per_connection: usize,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
}

/// Runs W3 on `systems`.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &ManyRunsParams,
    systems: &[SystemKind],
) -> Vec<ManyRunsRow> {
    let mut rows = Vec::new();
    for &kind in systems {
        progress::phase(&format!("W3 {} runs · {kind}", params.runs));
        let row = match launcher.start(kind, 16).await {
            Err(reason) => empty_row(kind, params.runs, reason),
            Ok(system) => {
                let measured = measure(&system, kind, params).await;
                progress::phase("  stopping the server");
                if let Err(err) = system.stop().await {
                    eprintln!("  stopping {kind}: {err}");
                }
                measured
                    .unwrap_or_else(|err| empty_row(kind, params.runs, format!("failed: {err}")))
            }
        };
        rows.push(row);
    }
    rows
}

/// A row with no figures.
fn empty_row(system: SystemKind, runs: usize, note: String) -> ManyRunsRow {
    ManyRunsRow {
        system,
        runs,
        streams_open: 0,
        setup_secs: 0.0,
        measured_secs: 0.0,
        delivered: 0,
        latency: None,
        cpu_percent: None,
        rss_mib: None,
        peak_rss_mib: None,
        note: Some(note),
    }
}

/// One phase: one system.
async fn measure(
    system: &System,
    kind: SystemKind,
    params: &ManyRunsParams,
) -> Result<ManyRunsRow> {
    let peak = system.pid().map(PhaseMeter::start);
    let setup_start = Instant::now();
    let runs: Vec<String> = (0..params.runs).map(|i| run_name("w3", i)).collect();
    let per = params.runs_per_connection.max(1);
    let conns = connections(system, params.runs.div_ceil(per)).await?;
    {
        let _progress = Progress::start("preparing".to_owned(), 0, "s");
        prepare_runs(system, &conns[0], &runs).await?;
    }
    let opened = Progress::start("opening".to_owned(), params.runs as u64 * 2, "streams");
    let counter = opened.counter();
    let streams: Vec<_> = futures::stream::iter(runs.iter().enumerate())
        .map(|(index, run)| {
            let conn = &conns[index / per];
            let counter = counter.clone();
            async move {
                let follower = system.follower(conn, run).await?;
                counter.fetch_add(1, Ordering::Relaxed);
                let writer = system.writer(conn, run, "writer").await?;
                counter.fetch_add(1, Ordering::Relaxed);
                Result::Ok((writer, follower))
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    drop(opened);
    let setup_secs = setup_start.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let steady = Progress::start(format!("{kind} steady"), 0, "lines delivered");
    let delivered = steady.counter();
    let open_streams = Arc::new(AtomicU64::new(0));
    let window = Duration::from_secs(params.warmup_secs + params.secs);
    let deadline = tokio::time::Instant::now() + window + Duration::from_secs(2);
    let spread = Duration::from_secs(1).as_secs_f64() / params.runs as f64;
    let mut writer_tasks = Vec::with_capacity(params.runs);
    let mut follower_tasks = Vec::with_capacity(params.runs);
    for (index, (mut writer, follower)) in streams.into_iter().enumerate() {
        let mut stop = stop_rx.clone();
        let line_bytes = params.line_bytes;
        let open = open_streams.clone();
        writer_tasks.push(tokio::spawn(async move {
            open.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs_f64(spread * index as f64)).await;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            let mut line = 0u64;
            let result = loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.changed() => break Ok(()),
                }
                let text = payload::line(line_bytes, payload::now_micros(), line);
                line += 1;
                if let Err(err) = writer.send(vec![text]).await {
                    break Err(err);
                }
            };
            open.fetch_sub(1, Ordering::Relaxed);
            result?;
            writer.finish().await
        }));
        let delivered = delivered.clone();
        let open = open_streams.clone();
        follower_tasks.push(tokio::spawn(async move {
            open.fetch_add(1, Ordering::Relaxed);
            let followed = follow(follower, None, deadline, || {
                delivered.fetch_add(1, Ordering::Relaxed);
            })
            .await;
            open.fetch_sub(1, Ordering::Relaxed);
            followed
        }));
    }
    tokio::time::sleep(Duration::from_secs(params.warmup_secs)).await;
    let pid = system.pid();
    let cpu_start = pid.and_then(procfs::read);
    let delivered_start = delivered.load(Ordering::Relaxed);
    let measure_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(params.secs)).await;
    let measured_secs = measure_start.elapsed().as_secs_f64();
    let cpu_end = pid.and_then(procfs::read);
    let streams_open = open_streams.load(Ordering::Relaxed);
    let delivered_in_window = delivered.load(Ordering::Relaxed) - delivered_start;
    let usage = peak.map(|meter| meter.stop());
    drop(steady);
    let _ = stop_tx.send(true);
    progress::phase("  closing the streams");
    let mut errors = Vec::new();
    for task in writer_tasks {
        if let Err(err) = task.await.context("a writer task failed")? {
            errors.push(err.to_string());
        }
    }
    let mut latencies = Latencies::new();
    for task in follower_tasks {
        let followed = task.await.context("a follower task failed")?;
        latencies.merge(&followed.latencies);
        errors.extend(followed.error);
    }
    let cpu_percent = cpu_start
        .zip(cpu_end)
        .map(|(start, end)| (end.cpu_secs - start.cpu_secs) / measured_secs * 100.0);
    let expected = params.runs as f64 * measured_secs;
    let mut notes = Vec::new();
    if (delivered_in_window as f64) < expected * 0.9 {
        notes.push(format!(
            "only {delivered_in_window} of about {expected:.0} lines delivered in the window"
        ));
    }
    if let Some(err) = errors.first() {
        notes.push(format!("{} stream errors, first: {err}", errors.len()));
    }
    Ok(ManyRunsRow {
        system: kind,
        runs: params.runs,
        streams_open,
        setup_secs,
        measured_secs,
        delivered: delivered_in_window,
        latency: Some(latencies.summary()),
        cpu_percent,
        rss_mib: cpu_end.map(|reading| mib(reading.rss_bytes)),
        peak_rss_mib: usage.map(|usage| mib(usage.peak_rss_bytes)),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}
