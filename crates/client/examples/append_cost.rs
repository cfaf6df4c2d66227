//! What a worker's handle costs: appends LINES stdout lines of BYTES bytes
//! through one [`RunWriter`](baa_logging_client::RunWriter), waits until the
//! server holds them all, and prints the rate and this process's CPU time
//! per entry. Linux only (it reads `/proc/self/stat`).
//!
//! ```sh
//! cargo run --release -p baa-logging-client --example append_cost -- [SERVER] [LINES] [BYTES]
//! ```

use std::time::Instant;

use baa_logging_client::{Client, ClientError, NewRun, WriterOptions, pb};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let lines: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let bytes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(120);

    let client = Client::connect(server).await?;
    let run = format!("cost-{}", std::process::id());
    let writer = client
        .prepare_writer(NewRun::new("append-cost", &run), WriterOptions::default())
        .await?;
    let line = format!("{}\n", "x".repeat(bytes.saturating_sub(1)));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for _ in 0..lines {
        writer.stdout(line.clone()).await?;
    }
    let summary = writer.flush().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await?;
    println!(
        "{lines} lines of {bytes} B in {elapsed:.2} s: {:.0} entries/s, {:.1} MB/s; \
         client CPU {cpu:.2} s = {:.2} µs per entry; run holds {} entries",
        lines as f64 / elapsed,
        (lines as f64 * bytes as f64) / elapsed / 1e6,
        cpu * 1e6 / lines as f64,
        summary.total_entries
    );
    Ok(())
}

/// This process's user and system CPU time so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 11 and 12 here.
    let ticks_per_second = 100.0;
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / ticks_per_second
}
