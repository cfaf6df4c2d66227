//! Checking stored runs for damage: every commit of every run read back
//! and checked against its journal record, as a reader would, with the
//! damaged or lost ranges reported instead of served. Works on any
//! [`RunStore`]; `baa-logd verify` runs it offline over the local store.

use std::time::{Duration, Instant};

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
        checks.push(check_run(store, key, &mut Pace::unbounded()).await?);
    }
    Ok(checks)
}

/// How fast a check reads: at most `bytes_per_sec` (about: entries are
/// counted by their text), so that a background check never competes with
/// the writers and followers it serves.
#[derive(Debug)]
pub struct Pace {
    /// Bytes a second; `None`: as fast as the disk goes.
    bytes_per_sec: Option<u64>,
    /// When the pace started.
    started: Instant,
    /// Bytes read since.
    bytes: u64,
}

impl Pace {
    /// No bound.
    pub fn unbounded() -> Self {
        Self {
            bytes_per_sec: None,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// At most `bytes_per_sec` bytes a second (0: no bound).
    pub fn at(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: (bytes_per_sec > 0).then_some(bytes_per_sec),
            ..Self::unbounded()
        }
    }

    /// Counts `bytes` read, and waits until they fit the pace.
    async fn read(&mut self, bytes: u64) {
        self.bytes += bytes;
        let Some(rate) = self.bytes_per_sec else {
            return;
        };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Checks the run `key`, reading at `pace`; a run deleted meanwhile is
/// `None`.
///
/// # Errors
///
/// As [`verify`].
pub async fn check_run_at<S: RunStore>(
    store: &S,
    key: RunKey,
    pace: &mut Pace,
) -> Result<Option<RunCheck>> {
    match check_run(store, key, pace).await {
        Ok(check) => Ok(Some(check)),
        Err(StoreError::RunNotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Every run of the store, as [`verify`] would check them.
///
/// # Errors
///
/// When the store cannot list its runs.
pub async fn runs_of<S: RunStore>(store: &S) -> Result<Vec<RunKey>> {
    all_runs(store, None).await
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
async fn check_run<S: RunStore>(store: &S, run: RunKey, pace: &mut Pace) -> Result<RunCheck> {
    let from = ReadFrom {
        from_seq: 1,
        channels: ChannelSet::ALL,
        history_only: true,
        ..ReadFrom::default()
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
                let bytes = batch.entries.iter().map(entry_bytes).sum();
                pace.read(bytes).await;
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

/// About how many bytes an entry took on disk: its text and its fields.
fn entry_bytes(entry: &crate::model::LogEntry) -> u64 {
    use crate::model::LogEntry;
    let text = match entry {
        LogEntry::Lifecycle(event) => event.message.len() + event.rendered_line.len(),
        LogEntry::Chunk(chunk) => chunk.text.len(),
    };
    text as u64 + 150
}
