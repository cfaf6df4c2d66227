//! W5 slow followers: one large completed run, then `followers` follow
//! streams on one connection that never read a message. Measured: the
//! server's RSS before they open, once it is steady while they are open,
//! and after they are cancelled, so the memory a follower that stops
//! reading holds, and whether it is given back, show as figures.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use baa_logging::pb;
use tonic::transport::Channel;

use super::grpc_channel;
use crate::{
    error::{BenchError, Context, Result},
    payload::LineShape,
    procfs,
    progress::{self, Progress},
    report::{SlowFollowersRow, mib},
    systems::{
        Connection, Launcher, System, SystemKind,
        grpc::{StubsWriter, client, follow_request, state_request},
    },
};

/// W5's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SlowFollowersParams {
    /// Followers that never read, all on one connection.
    pub(crate) followers: usize,
    /// The size of the followed run's lines, MiB.
    pub(crate) run_mib: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Lines per `AppendLogs` message while filling.
    pub(crate) batch_lines: usize,
}

/// The followed run.
const RUN: &str = "w5-large";

/// How long the RSS must stay within [`STEADY_MIB`] to count as steady.
const STEADY_FOR: Duration = Duration::from_secs(3);

/// How far the RSS may move and still be steady, MiB.
const STEADY_MIB: f64 = 2.0;

/// The longest wait for a steady RSS.
const STEADY_WAIT: Duration = Duration::from_secs(60);

/// Runs W5 on baa-logd.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &SlowFollowersParams,
) -> Vec<SlowFollowersRow> {
    progress::phase(&format!(
        "W5 {} slow followers · a {} MiB run",
        params.followers, params.run_mib
    ));
    let row = match launcher.start(SystemKind::BaaLogd, 16).await {
        Err(reason) => empty_row(params, reason),
        Ok(system) => {
            let measured = measure(&system, params).await;
            if let Err(err) = system.stop().await {
                eprintln!("  stopping baa-logd: {err}");
            }
            measured.unwrap_or_else(|err| empty_row(params, format!("failed: {err}")))
        }
    };
    vec![row]
}

/// A row with no figures.
fn empty_row(params: &SlowFollowersParams, note: String) -> SlowFollowersRow {
    SlowFollowersRow {
        followers: params.followers,
        run_mib: params.run_mib,
        opened: 0,
        baseline_mib: None,
        open_mib: None,
        after_mib: None,
        per_follower_kib: None,
        note: Some(note),
    }
}

/// Fills the run, opens the followers, reads the RSS three times.
async fn measure(system: &System, params: &SlowFollowersParams) -> Result<SlowFollowersRow> {
    let pid = system
        .pid()
        .ok_or_else(|| BenchError::Failed("baa-logd has no pid".into()))?;
    let rss = || procfs::read(pid).map(|reading| mib(reading.rss_bytes));
    let writer = grpc_channel(system).await?;
    system
        .prepare_run(&Connection::Grpc(writer.clone()), RUN)
        .await?;
    fill(writer, params).await?;
    let baseline = steady_rss(&rss).await;

    let channel = grpc_channel(system).await?;
    let opening = Progress::start("  opening".to_owned(), params.followers as u64, "followers");
    let counter = opening.counter();
    let streams: Vec<_> = futures::stream::iter(0..params.followers)
        .map(|_| {
            let mut client = client(channel.clone());
            let counter = counter.clone();
            async move {
                let stream = client
                    .follow_run(follow_request(RUN))
                    .await
                    .context("FollowRun")?
                    .into_inner();
                counter.fetch_add(1, Ordering::Relaxed);
                Result::Ok(stream)
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    drop(opening);
    let opened = streams.len();
    progress::phase("  waiting for a steady RSS with every follower open");
    let open = steady_rss(&rss).await;
    drop(streams);
    drop(channel);
    progress::phase("  waiting for a steady RSS after they went");
    let after = steady_rss(&rss).await;
    let per_follower_kib = baseline
        .zip(open)
        .map(|(base, open)| (open - base) * 1024.0 / opened.max(1) as f64);
    Ok(SlowFollowersRow {
        followers: params.followers,
        run_mib: params.run_mib,
        opened,
        baseline_mib: baseline,
        open_mib: open,
        after_mib: after,
        per_follower_kib,
        note: None,
    })
}

/// The RSS once it has stayed within [`STEADY_MIB`] for [`STEADY_FOR`],
/// or after [`STEADY_WAIT`].
async fn steady_rss(rss: &impl Fn() -> Option<f64>) -> Option<f64> {
    let started = Instant::now();
    let mut since = (Instant::now(), rss()?);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss()?;
        if (now - since.1).abs() > STEADY_MIB {
            since = (Instant::now(), now);
        } else if since.0.elapsed() >= STEADY_FOR || started.elapsed() >= STEADY_WAIT {
            return Some(now);
        }
    }
}

/// Writes `run_mib` MiB of lines to the run and completes it.
async fn fill(channel: Channel, params: &SlowFollowersParams) -> Result<()> {
    let lines = params.run_mib * 1024 * 1024 / params.line_bytes.max(1) as u64;
    let progress = Progress::start("  filling".to_owned(), lines, "lines");
    let counter = progress.counter();
    let mut writer = StubsWriter::open(channel.clone(), RUN, "writer").await?;
    writer
        .send_lines(
            lines,
            LineShape {
                bytes: params.line_bytes,
                per_batch: params.batch_lines,
                plant: None,
            },
            &counter,
        )
        .await?;
    writer.finish().await?;
    client(channel)
        .update_run_state(state_request(RUN, pb::RunStatus::Completed))
        .await
        .context("UpdateRunState")?;
    Ok(())
}
