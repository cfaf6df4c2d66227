//! `baa-log finish`: closes a run by hand, for a run whose worker is gone
//! and will not close it (killed, its machine lost). Needs the `write`
//! scope.

use baa_logging_client::{Client, ClientError, pb};
use clap::{Args, ValueEnum};

use crate::{parse_run, render, run_ref::RunRef};

/// A final status, as `finish` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FinalStatus {
    /// It did what it was for.
    Completed,
    /// It failed.
    Failed,
    /// It cannot go on without something outside it.
    Blocked,
}

impl FinalStatus {
    /// The protocol's status.
    fn to_pb(self) -> pb::RunStatus {
        match self {
            Self::Completed => pb::RunStatus::Completed,
            Self::Failed => pb::RunStatus::Failed,
            Self::Blocked => pb::RunStatus::Blocked,
        }
    }
}

/// Arguments of `baa-log finish`.
#[derive(Debug, Args)]
pub(crate) struct FinishArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// The status it ends with.
    #[arg(long, value_enum)]
    status: FinalStatus,
    /// Why, shown as the run's summary (say what happened to its worker).
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    /// The exit code to record, if one is known.
    #[arg(long)]
    exit_code: Option<i32>,
}

/// Moves the run to its final status; prints the new state's status.
pub(crate) async fn finish(client: &Client, args: FinishArgs) -> Result<u8, ClientError> {
    let key = args.run.resolve(client).await?;
    let patch = pb::RunStatePatch {
        status: Some(args.status.to_pb() as i32),
        summary: args.error,
        exit_code: args.exit_code,
        ..pb::RunStatePatch::default()
    };
    let state = client.update_run_state(&key, patch).await?;
    println!("{key} {}", render::status_name(state.status()));
    Ok(0)
}
