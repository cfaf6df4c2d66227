//! A worker: prepares a run, records its start, streams some output and
//! finishes it. Run a server first (`cargo run -p baa-logd`), then
//!
//! ```sh
//! cargo run -p baa-logging-client --example worker -- [SERVER] [TASK] [RUN]
//! ```
//!
//! and watch it with the `follower` example or `baa-log follow TASK/RUN`.

use std::time::Duration;

use baa_logging_client::{Client, ClientError, NewRun, WriterOptions, pb};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let task = args.next().unwrap_or_else(|| "example".into());
    let run = args.next().unwrap_or_else(|| "worker-1".into());

    let client = Client::connect(server).await?;
    let writer = client
        .prepare_writer(
            NewRun::new(&task, &run).step("count", "Count to ten"),
            WriterOptions::default(),
        )
        .await?;
    writer.set_status(pb::RunStatus::Running).await?;
    writer
        .event(
            pb::WorkerLifecycleEventType::WorkerStarted,
            pb::LogLevel::Info,
            "counting",
            json!({ "to": 10 }),
        )
        .await?;
    for n in 1..=10 {
        writer.stdout(format!("{n}\n")).await?;
        if n % 5 == 0 {
            writer.stderr(format!("halfway mark: {n}\n")).await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer
        .event(
            pb::WorkerLifecycleEventType::WorkerExited,
            pb::LogLevel::Info,
            "done",
            json!({ "exitCode": 0 }),
        )
        .await?;
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), Some("counted".into()))
        .await?;
    println!(
        "{task}/{run}: {} entries stored",
        finished.summary.total_entries
    );
    Ok(())
}
