//! Checking stored runs for damage: every commit of every run read back
//! and checked against its journal record, as a reader would, with the
//! damaged or lost ranges reported instead of served. Works on any
//! [`RunStore`]; `baa-logd verify` runs it offline over the local store.

use crate::{
    error::{Result, StoreError},
    model::{ChannelSet, RunKey, RunQuery},
    run_store::{ReadFrom, RunReader, RunStore},
};

/// What a check of one run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCheck {
    /// The run.
    pub run: RunKey,
    /// Entries read back intact.
    pub entries: u64,
    /// Damaged or lost ranges of sequence numbers, first and last, in order.
    pub damaged: Vec<(u64, u64)>,
}

/// Which runs to check: all of them, one task's, or one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Only this task's runs, when set.
    pub task_id: Option<String>,
    /// Only this run (of `task_id`), when set.
    pub run_id: Option<String>,
}

/// Checks every run `target` names, one after the other, and returns what
/// each held.
///
/// # Errors
///
/// A run that cannot be opened or read for another reason than damage to
/// its entries ([`StoreError::RunNotFound`] for a named run that does not
/// exist).
pub async fn verify<S: RunStore>(store: &S, target: &Target) -> Result<Vec<RunCheck>> {
    let keys = match (&target.task_id, &target.run_id) {
        (Some(task_id), Some(run_id)) => vec![RunKey {
            task_id: task_id.clone(),
            run_id: run_id.clone(),
        }],
        _ => all_runs(store, target.task_id.clone()).await?,
    };
    let mut checks = Vec::with_capacity(keys.len());
    for key in keys {
        checks.push(check_run(store, key).await?);
    }
    Ok(checks)
}

/// Every run of the store, or of one task.
async fn all_runs<S: RunStore>(store: &S, task_id: Option<String>) -> Result<Vec<RunKey>> {
    let mut keys = Vec::new();
    let mut page_token = None;
    loop {
        let page = store
            .list_runs(RunQuery {
                task_id: task_id.clone(),
                statuses: Vec::new(),
                page_size: 500,
                page_token,
            })
            .await?;
        keys.extend(page.runs.into_iter().map(|run| run.metadata.key()));
        match page.next_page_token {
            Some(next) => page_token = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Reads one run from its first entry to its last, reading on after each
/// damaged range.
async fn check_run<S: RunStore>(store: &S, run: RunKey) -> Result<RunCheck> {
    let from = ReadFrom {
        from_seq: 1,
        channels: ChannelSet::ALL,
        history_only: true,
    };
    let mut reader = store.open_reader(&run, from).await?;
    let mut check = RunCheck {
        run,
        entries: 0,
        damaged: Vec::new(),
    };
    loop {
        match reader.read(1024 * 1024).await {
            Ok(batch) => {
                check.entries += batch.entries.len() as u64;
                if batch.finished {
                    return Ok(check);
                }
            }
            Err(StoreError::DataLoss {
                first_seq,
                last_seq,
                ..
            }) => check.damaged.push((first_seq, last_seq)),
            Err(err) => return Err(err),
        }
    }
}
