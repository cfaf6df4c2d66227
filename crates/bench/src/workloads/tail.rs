//! W6 tail: one completed run of `entries` stdout lines, written by a few
//! writers at once as fast as baa-logd takes them; then, on the same
//! server, history follows (`history_only`) of the whole run from seq 1
//! and of its last `tail` entries (`FollowRunRequest.tail`), each timed
//! from the request to the last entry and repeated, the medians compared.
//!
//! A tail is found by walking the journal back from its end, so it should
//! cost about the same whatever the run's size, while the whole run costs
//! in proportion to it. Every answer is checked entry by entry: the full
//! follow must return every seq from 1 to the run's last, the tail exactly
//! the last `tail` of them, in order; anything else is a wrong answer,
//! which fails the run rather than being timed.

use std::{ops::RangeInclusive, sync::atomic::Ordering, time::Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tonic::transport::Channel;

use baa_logging::pb::{self, log_entry::Entry};

use super::{data_set::files_size, grpc_channel};
use crate::{
    error::{BenchError, Context, Result},
    payload::LineShape,
    progress::{self, Progress},
    report::{TailRow, mib},
    samples::Samples,
    systems::{
        Connection, Launcher, System, SystemKind,
        grpc::{StubsWriter, channel_files, client, follow_request, get_run_request},
    },
};

/// W6's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TailParams {
    /// Lines in the run.
    pub(crate) entries: u64,
    /// Concurrent writers while filling, each on a connection of its own.
    pub(crate) writers: usize,
    /// The lines.
    pub(crate) shape: LineShape,
    /// The entries the tail asks for (at least 1).
    pub(crate) tail: u64,
    /// Timed follows of the whole run.
    pub(crate) full_repeats: usize,
    /// Timed follows of the tail.
    pub(crate) tail_repeats: usize,
}

/// The run.
const RUN: &str = "w6-tail";

/// Runs W6 on baa-logd.
pub(crate) async fn run(launcher: &Launcher, params: &TailParams) -> Vec<TailRow> {
    progress::phase(&format!(
        "W6 tail · one run of {} entries, the last {} against all",
        params.entries, params.tail
    ));
    let row = match launcher.start(SystemKind::BaaLogd, 16).await {
        Err(reason) => empty_row(params, reason, None),
        Ok(system) => {
            let measured = measure(&system, params).await;
            if let Err(err) = system.stop().await {
                eprintln!("  stopping baa-logd: {err}");
            }
            measured.unwrap_or_else(|err| {
                let wrong = matches!(err, BenchError::WrongAnswer(_)).then(|| err.to_string());
                empty_row(params, format!("failed: {err}"), wrong)
            })
        }
    };
    vec![row]
}

/// A row with no figures.
fn empty_row(params: &TailParams, note: String, wrong_answer: Option<String>) -> TailRow {
    TailRow {
        entries: 0,
        run_mib: 0.0,
        fill_secs: 0.0,
        tail: params.tail,
        full_ms: Samples::default(),
        tail_ms: Samples::default(),
        full_entries_per_sec: None,
        ratio: None,
        note: Some(note),
        wrong_answer,
    }
}

/// Fills the run, then times the follows.
async fn measure(system: &System, params: &TailParams) -> Result<TailRow> {
    let channel = grpc_channel(system).await?;
    system
        .prepare_run(&Connection::Grpc(channel.clone()), RUN)
        .await?;
    let fill_start = Instant::now();
    fill(system, params).await?;
    system
        .end_run(&Connection::Grpc(channel.clone()), RUN)
        .await?;
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let run = client(channel.clone())
        .get_run(get_run_request(RUN))
        .await
        .context("GetRun")?
        .into_inner()
        .run
        .ok_or_else(|| BenchError::Failed("GetRun returned no run".into()))?;
    let last_seq = run.summary.map_or(0, |summary| summary.last_seq);
    let run_bytes = files_size(&channel_files(run.targets.as_ref()));
    // The run holds its `run_prepared` event and the lines.
    if last_seq != params.entries + 1 {
        return Err(BenchError::WrongAnswer(format!(
            "the run's last seq is {last_seq}, not {} (its lines and `run_prepared`)",
            params.entries + 1
        )));
    }
    let tail = params.tail.clamp(1, last_seq);

    let mut full_ms = Samples::default();
    for repeat in 1..=params.full_repeats {
        progress::phase(&format!(
            "  history follow of all {last_seq} entries ({repeat}/{})",
            params.full_repeats
        ));
        let request = pb::FollowRunRequest {
            history_only: true,
            ..follow_request(RUN)
        };
        full_ms.push(timed_follow(&channel, request, 1..=last_seq).await? * 1000.0);
    }
    let mut tail_ms = Samples::default();
    progress::phase(&format!(
        "  history follow of the last {tail} entries, {} times",
        params.tail_repeats
    ));
    for _ in 0..params.tail_repeats {
        let request = pb::FollowRunRequest {
            history_only: true,
            tail: Some(tail),
            ..follow_request(RUN)
        };
        let expected = last_seq - tail + 1..=last_seq;
        tail_ms.push(timed_follow(&channel, request, expected).await? * 1000.0);
    }
    let full_median = full_ms.median();
    Ok(TailRow {
        entries: last_seq,
        run_mib: mib(run_bytes),
        fill_secs,
        tail,
        full_entries_per_sec: full_median.map(|ms| last_seq as f64 / (ms / 1000.0)),
        ratio: tail_ms
            .median()
            .zip(full_median)
            .map(|(tail, full)| tail / full),
        full_ms,
        tail_ms,
        note: None,
        wrong_answer: None,
    })
}

/// Writes the run's lines, shared out between the writers.
async fn fill(system: &System, params: &TailParams) -> Result<()> {
    let writers = params.writers.max(1) as u64;
    let progress = Progress::start("  filling".to_owned(), params.entries, "lines");
    let counter = progress.counter();
    let conns = super::connections(system, writers as usize).await?;
    let acked: Vec<u64> = futures::stream::iter(conns.into_iter().enumerate())
        .map(|(index, conn)| {
            let counter = counter.clone();
            let index = index as u64;
            // The first writers take one line more when it does not divide.
            let lines = params.entries / writers + u64::from(index < params.entries % writers);
            async move {
                let Connection::Grpc(channel) = conn else {
                    return Err(BenchError::Failed("baa-logd speaks gRPC".into()));
                };
                let mut writer =
                    StubsWriter::open(channel, RUN, &format!("writer-{index}")).await?;
                writer.send_lines(lines, params.shape, &counter).await?;
                writer.finish().await
            }
        })
        .buffer_unordered(writers as usize)
        .try_collect()
        .await?;
    let acked: u64 = acked.iter().sum();
    counter.store(acked, Ordering::Relaxed);
    if acked != params.entries {
        return Err(BenchError::Failed(format!(
            "{acked} of {} lines acknowledged",
            params.entries
        )));
    }
    Ok(())
}

/// Sends `request` and reads its stream to the end, checking that it
/// returns exactly the seqs of `expected`, in order. Returns the seconds
/// from the request to the response that held the last entry.
async fn timed_follow(
    channel: &Channel,
    request: pb::FollowRunRequest,
    expected: RangeInclusive<u64>,
) -> Result<f64> {
    let start = Instant::now();
    let mut stream = client(channel.clone())
        .follow_run(request)
        .await
        .context("FollowRun")?
        .into_inner();
    let mut next = *expected.start();
    let mut last_entry = None;
    while let Some(response) = stream.message().await.context("FollowRun failed")? {
        if response.entries.is_empty() {
            continue;
        }
        last_entry = Some(Instant::now());
        for entry in response.entries {
            let seq = match entry.entry {
                Some(Entry::Chunk(chunk)) => chunk.seq,
                Some(Entry::Lifecycle(event)) => event.seq,
                None => 0,
            };
            if seq != next || seq > *expected.end() {
                return Err(BenchError::WrongAnswer(format!(
                    "FollowRun returned seq {seq} where {next} was due (expected {}..={})",
                    expected.start(),
                    expected.end()
                )));
            }
            next += 1;
        }
    }
    if next != expected.end() + 1 {
        return Err(BenchError::WrongAnswer(format!(
            "FollowRun ended after seq {} instead of {}",
            next - 1,
            expected.end()
        )));
    }
    let last_entry = last_entry.unwrap_or_else(Instant::now);
    Ok(last_entry.duration_since(start).as_secs_f64())
}
