//! `baa-log gc`: a retention pass on the server, now. Prints the runs it
//! deleted (or, with `--dry-run`, would delete) and a total.

use std::time::Duration;

use baa_logging_client::{Client, ClientError, CollectOptions, pb};
use clap::Args;

use crate::render;

/// Arguments of `baa-log gc`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Delete nothing: list the runs that would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Delete finished runs older than this, e.g. 30d or 12h [default: the
    /// server's setting].
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<Duration>,
    /// Delete the oldest finished runs while all runs take more than this
    /// many bytes [default: the server's setting].
    #[arg(long)]
    max_bytes: Option<u64>,
}

/// Runs the pass and prints what it did.
pub(crate) async fn gc(client: &Client, args: GcArgs) -> Result<u8, ClientError> {
    let reply = client
        .collect_runs(CollectOptions {
            dry_run: args.dry_run,
            max_age: args.max_age,
            max_bytes: args.max_bytes,
        })
        .await?;
    if !reply.runs.is_empty() {
        let mut rows =
            vec![["TASK", "RUN", "STATUS", "FINISHED", "SIZE", "REASON"].map(String::from)];
        for run in &reply.runs {
            rows.push([
                run.task_id.clone(),
                run.run_id.clone(),
                render::status_name(run.status()).to_owned(),
                format!(
                    "{} ({} ago)",
                    run.finished_at,
                    render::age(&run.finished_at)
                ),
                size(run.bytes),
                reason_name(run.reason()).to_owned(),
            ]);
        }
        print_table(&rows);
    }
    println!("{}", total_line(&reply));
    if reply.kept_open_count > 0 {
        println!(
            "{} due, kept: a stream is open on {}; a later pass deletes {} once {} streams end",
            runs(reply.kept_open_count),
            if reply.kept_open_count == 1 {
                "it"
            } else {
                "them"
            },
            if reply.kept_open_count == 1 {
                "it"
            } else {
                "them"
            },
            if reply.kept_open_count == 1 {
                "its"
            } else {
                "their"
            },
        );
    }
    Ok(0)
}

/// The line after the table: what went, what is left, and in a dry run
/// that nothing did.
fn total_line(reply: &pb::CollectRunsResponse) -> String {
    let count = reply.runs.len() as u64;
    let went = format!("{}, {}", runs(count), size(reply.deleted_bytes));
    let left = format!(
        "all runs take {} ({} before)",
        size(reply.total_bytes_after),
        size(reply.total_bytes_before)
    );
    match (reply.dry_run, count) {
        (true, 0) => format!(
            "dry run: no run is due; nothing was deleted; all runs take {}",
            size(reply.total_bytes_before)
        ),
        (true, _) => {
            format!("dry run: {went} would be deleted; nothing was deleted; after it {left}")
        }
        (false, 0) => format!(
            "no run is due; nothing was deleted; all runs take {}",
            size(reply.total_bytes_before)
        ),
        (false, _) => format!("deleted {went}; {left}"),
    }
}

/// "1 run", "3 runs".
fn runs(count: u64) -> String {
    match count {
        1 => "1 run".to_owned(),
        _ => format!("{count} runs"),
    }
}

/// A size in bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A reason as the server's logs name it.
fn reason_name(reason: pb::CollectReason) -> &'static str {
    match reason {
        pb::CollectReason::Unspecified => "unspecified",
        pb::CollectReason::MaxAge => "max_age",
        pb::CollectReason::MaxBytes => "max_bytes",
    }
}

/// Prints rows in columns, the first row as the header.
fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0usize; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
