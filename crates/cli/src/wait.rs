//! `follow --wait`: waiting until a run that is not prepared yet is, so that
//! a follower can be started before its worker.
//!
//! The API has no call that reports a run's creation: `GetRun` and
//! `FollowRun` answer `NOT_FOUND` at once, and `ListRuns` is a snapshot. So
//! this polls, often at first (a worker usually follows within a second)
//! and then less often, so that a follower left waiting for hours costs the
//! server one small call every [`MAX_INTERVAL`].

use std::{io::IsTerminal, time::Duration};

use baa_logging_client::{Client, ClientError, RunKey};
use tonic::Code;

use crate::run_ref::{Lookup, RunRef};

/// The first wait between two polls.
const FIRST_INTERVAL: Duration = Duration::from_millis(200);

/// The longest wait between two polls; each wait doubles up to it.
const MAX_INTERVAL: Duration = Duration::from_secs(2);

/// Waits until `run` names a prepared run, and returns it. A place
/// (`TASK/@latest~N`) waits until the task has enough runs.
///
/// Nothing is printed while waiting, except one line on stderr when it is
/// a terminal, so that a person knows the command is not stuck and a
/// program reading the output sees only the run's.
///
/// # Errors
///
/// The server's errors other than `NOT_FOUND`; errors that retrying cures
/// (the server restarting) are waited out like a missing run.
pub(crate) async fn until_prepared(client: &Client, run: &RunRef) -> Result<RunKey, ClientError> {
    let mut interval = FIRST_INTERVAL;
    let mut told = false;
    loop {
        if let Some(key) = prepared(client, run).await? {
            return Ok(key);
        }
        if !told {
            told = true;
            if std::io::stderr().is_terminal() {
                eprintln!("waiting for {run} to be prepared…");
            }
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// The run `run` names, if it is prepared now; `None` also while the
/// server cannot be asked.
async fn prepared(client: &Client, run: &RunRef) -> Result<Option<RunKey>, ClientError> {
    match ask(client, run).await {
        Err(err) if err.code() == Some(Code::NotFound) || err.is_retryable() => Ok(None),
        other => other,
    }
}

/// The run `run` names, if the server has it now.
async fn ask(client: &Client, run: &RunRef) -> Result<Option<RunKey>, ClientError> {
    let Lookup::Run(key) = run.lookup(client).await? else {
        return Ok(None);
    };
    client.get_run(&key).await?;
    Ok(Some(key))
}
