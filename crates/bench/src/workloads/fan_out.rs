//! W2 fan-out latency: one writer at a fixed rate into one run, watched by
//! a number of followers that started before it. Each line carries its send
//! time; each follower records now minus that time for every line, checks
//! that it got every line once and in order (and, where the system numbers
//! entries, that the numbers have no gap), and stops when it has them all.
//! On a system of several nodes (baa-logd on JetStream, a NATS cluster)
//! the writer goes through one node and the followers through another;
//! the server CPU and RSS are then the sums over all its processes.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::follower_connections;
use crate::{
    error::{BenchError, Context, Result},
    latency::Latencies,
    payload,
    procfs::{GroupMeter, PhaseMeter},
    progress::{self, Progress},
    report::{FanOutRow, mib},
    systems::{Follower, Launcher, Role, System, SystemKind},
};

/// W2's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FanOutParams {
    /// Lines per second the writer sends.
    pub(crate) rate: u64,
    /// Seconds the writer writes.
    pub(crate) secs: f64,
    /// The numbers of followers to measure, one phase each.
    pub(crate) followers: Vec<usize>,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
}

/// How often the writer sends what is due.
const TICK: Duration = Duration::from_millis(1);

/// How long followers may take after the writer finished.
const DRAIN: Duration = Duration::from_secs(20);

/// Runs W2 on `systems`, for each number of followers.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &FanOutParams,
    systems: &[SystemKind],
) -> Vec<FanOutRow> {
    let mut rows = Vec::new();
    for &followers in &params.followers {
        for &kind in systems {
            progress::phase(&format!("W2 {followers} followers · {kind}"));
            let row = match launcher.start(kind, 4096).await {
                Err(reason) => empty_row(followers, kind, reason),
                Ok(system) => {
                    let measured = measure(&system, kind, followers, params).await;
                    if let Err(err) = system.stop().await {
                        eprintln!("  stopping {kind}: {err}");
                    }
                    measured
                        .unwrap_or_else(|err| empty_row(followers, kind, format!("failed: {err}")))
                }
            };
            rows.push(row);
        }
    }
    rows
}

/// A row with no figures.
fn empty_row(followers: usize, system: SystemKind, note: String) -> FanOutRow {
    FanOutRow {
        followers,
        system,
        latency: None,
        sent: 0,
        sent_per_sec: 0.0,
        complete: None,
        delivered: 0,
        cpu_secs: None,
        client_cpu_secs: None,
        peak_rss_mib: None,
        note: Some(note),
    }
}

/// What one follower saw.
#[derive(Debug)]
pub(crate) struct Followed {
    /// Its latencies.
    pub(crate) latencies: Latencies,
    /// Lines received.
    pub(crate) lines: u64,
    /// Every line came once, in order, and the system's numbers had no gap.
    pub(crate) in_order: bool,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<String>,
}

/// Follows until `expected` lines arrived, the stream ended, or `deadline`.
pub(crate) async fn follow(
    mut follower: Follower,
    expected: Option<u64>,
    deadline: tokio::time::Instant,
    mut on_line: impl FnMut(),
) -> Followed {
    let mut followed = Followed {
        latencies: Latencies::new(),
        lines: 0,
        in_order: true,
        error: None,
    };
    let mut last_seq = 0u64;
    loop {
        if expected.is_some_and(|expected| followed.lines >= expected) {
            break;
        }
        let batch = match tokio::time::timeout_at(deadline, follower.next()).await {
            Err(_) => break,
            Ok(Ok(None)) => break,
            Ok(Ok(Some(batch))) => batch,
            Ok(Err(err)) => {
                followed.error = Some(err.to_string());
                break;
            }
        };
        let now = payload::now_micros();
        for delivered in batch {
            if delivered.seq != 0 {
                if last_seq != 0 && delivered.seq != last_seq + 1 {
                    followed.in_order = false;
                }
                last_seq = delivered.seq;
            }
            if delivered.text.is_empty() {
                continue;
            }
            match payload::parse(&delivered.text) {
                Some((sent_at, index)) => {
                    if index != followed.lines {
                        followed.in_order = false;
                    }
                    followed.latencies.record(now.saturating_sub(sent_at));
                    followed.lines += 1;
                    on_line();
                }
                None => followed.in_order = false,
            }
        }
    }
    followed
}

/// One phase: one system, one number of followers.
async fn measure(
    system: &System,
    kind: SystemKind,
    followers: usize,
    params: &FanOutParams,
) -> Result<FanOutRow> {
    let run = format!("w2-{followers}");
    let setup = system.connect().await?;
    system.prepare_run(&setup, &run).await?;
    let total = (params.rate as f64 * params.secs).round() as u64;
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs_f64(params.secs)
        + DRAIN
        + Duration::from_secs(followers as u64 / 4);
    // One connection per follower: each stands for a person or a service.
    let conns = follower_connections(system, followers).await?;
    let mut tasks = Vec::with_capacity(followers);
    for conn in &conns {
        let follower = system.follower(conn, &run).await?;
        let expected = (!matches!(follower, Follower::Grpc(_))).then_some(total);
        tasks.push(tokio::spawn(follow(follower, expected, deadline, || {})));
    }
    let writer_conn = system.connect_as(Role::Writer(0)).await?;
    let mut writer = system.writer(&writer_conn, &run, "writer").await?;
    let progress = Progress::start(format!("{kind}"), total, "lines sent");
    let counter = progress.counter();
    let meter = GroupMeter::start(&system.pids());
    let client_meter = PhaseMeter::start(std::process::id());
    let start = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while sent < total {
        ticker.tick().await;
        let due = ((start.elapsed().as_secs_f64() * params.rate as f64) as u64).min(total);
        if due > sent {
            let now = payload::now_micros();
            let lines = (sent..due)
                .map(|index| payload::line(params.line_bytes, now, index))
                .collect();
            writer.send(lines).await?;
            counter.store(due, std::sync::atomic::Ordering::Relaxed);
            sent = due;
        }
    }
    let acked = writer.finish().await?;
    let writing_secs = start.elapsed().as_secs_f64();
    system.end_run(&setup, &run).await?;
    drop(progress);
    let mut latencies = Latencies::new();
    let mut complete = acked == total;
    let mut delivered = 0;
    let mut errors = Vec::new();
    for task in tasks {
        let followed = task.await.context("a follower task failed")?;
        latencies.merge(&followed.latencies);
        delivered += followed.lines;
        complete &= followed.in_order && followed.lines == total;
        errors.extend(followed.error);
    }
    let usage = meter.map(|meter| meter.stop());
    let client_usage = client_meter.stop();
    if delivered == 0 {
        return Err(BenchError::Failed(format!(
            "no follower got a line{}",
            errors
                .first()
                .map(|err| format!(": {err}"))
                .unwrap_or_default()
        )));
    }
    Ok(FanOutRow {
        followers,
        system: kind,
        latency: Some(latencies.summary()),
        sent: total,
        sent_per_sec: total as f64 / writing_secs,
        complete: Some(complete),
        delivered,
        cpu_secs: usage.map(|usage| usage.cpu_secs),
        client_cpu_secs: Some(client_usage.cpu_secs),
        peak_rss_mib: usage.map(|usage| mib(usage.peak_rss_bytes)),
        note: (!complete).then(|| {
            format!(
                "{delivered} of {} lines delivered{}",
                total * followers as u64,
                errors
                    .first()
                    .map(|err| format!("; {err}"))
                    .unwrap_or_default()
            )
        }),
    })
}
