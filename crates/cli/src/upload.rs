//! `baa-log upload SPOOL`: sends what a spool holds that the server does
//! not, as the writer that wrote it, exactly once, and applies the state
//! changes it holds (the run's final status among them).

use std::{path::PathBuf, time::Duration};

use baa_logging_client::{Client, ClientError, WriterOptions};
use clap::Args;

use crate::{Failure, spool};

/// Arguments of `baa-log upload`.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The spool file, as `exec` named it.
    spool: PathBuf,
    /// How long to wait for the server to take it all (30s, 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Sends the spool; exits 0 once the server holds all of it (the file is
/// removed then), 1 otherwise (the file is kept).
pub(crate) async fn upload(
    client: &Client,
    args: UploadArgs,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<u8, Failure> {
    let writer = client
        .resume_spool(&args.spool, WriterOptions::default())
        .map_err(explain)?;
    let key = writer.key().clone();
    let report = writer.close_within(args.timeout).await;
    if spool::report(&key, &report) {
        eprintln!("baa-log: run {key} holds everything in the spool; removed it");
        Ok(0)
    } else if report.delivered {
        Ok(0)
    } else {
        Ok(1)
    }
}
