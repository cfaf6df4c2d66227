//! The list of runs on disk, newest first, for `list_runs`: built once by
//! reading every run's `meta.json` and `state.json`, then kept up to date
//! by the store.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
    fs,
    ops::Bound,
};

use tracing::warn;

use super::{
    fsio::read_json,
    layout::{RunDir, StoreDir, is_store_name},
};
use crate::{
    error::{Result, StoreError},
    model::{RunKey, RunMetadata, RunStateSnapshot, RunStatus},
};

/// Where a run stands in the listing order: newest `created_at` first, then
/// task and run id.
type SortKey = (Reverse<String>, String, String);

/// Every run on disk, in listing order, with its status.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    order: BTreeSet<SortKey>,
    status: HashMap<RunKey, RunStatus>,
}

impl Catalog {
    /// Reads the runs under `root`. Directories that are not runs are
    /// skipped with a warning.
    pub(crate) fn scan(layout: &StoreDir) -> Result<Self> {
        let root = layout.root();
        let mut catalog = Self::default();
        let tasks = fs::read_dir(root)
            .map_err(|err| StoreError::io(format!("cannot list {}", root.display()), err))?;
        for task in tasks.flatten() {
            if is_store_name(&task.file_name().to_string_lossy()) || !task.path().is_dir() {
                continue;
            }
            let Ok(runs) = fs::read_dir(task.path()) else {
                continue;
            };
            for run in runs.flatten() {
                let dir = run.path();
                if !dir.is_dir() {
                    continue;
                }
                match read_run(&RunDir::new(dir.clone())) {
                    Ok((metadata, status)) => catalog.insert(&metadata, status),
                    Err(err) => {
                        warn!(dir = %dir.display(), cause = %err, "skipping a directory that is not a run")
                    }
                }
            }
        }
        Ok(catalog)
    }

    /// Adds a run, or updates its status.
    pub(crate) fn insert(&mut self, metadata: &RunMetadata, status: RunStatus) {
        self.order.insert(sort_key(metadata));
        self.status.insert(metadata.key(), status);
    }

    /// How many runs are in each status, every status named.
    pub(crate) fn count_by_status(&self) -> Vec<(RunStatus, u64)> {
        let mut counts: Vec<(RunStatus, u64)> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for status in self.status.values() {
            if let Some((_, count)) = counts.iter_mut().find(|(known, _)| known == status) {
                *count += 1;
            }
        }
        counts
    }

    /// Removes a run.
    pub(crate) fn remove(&mut self, metadata: &RunMetadata) {
        self.order.remove(&sort_key(metadata));
        self.status.remove(&metadata.key());
    }

    /// Updates a run's status.
    pub(crate) fn set_status(&mut self, key: &RunKey, status: RunStatus) {
        if let Some(current) = self.status.get_mut(key) {
            *current = status;
        }
    }

    /// The keys of one page, and the token of the next page.
    pub(crate) fn page(
        &self,
        task_id: Option<&str>,
        statuses: &[RunStatus],
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<RunKey>, Option<String>)> {
        let start = match page_token {
            Some(token) => Bound::Excluded(decode_token(token)?),
            None => Bound::Unbounded,
        };
        let mut keys = Vec::new();
        let mut last = None;
        for sort_key in self.order.range((start, Bound::Unbounded)) {
            let (_, task, run) = sort_key;
            if task_id.is_some_and(|wanted| wanted != task) {
                continue;
            }
            let key = RunKey {
                task_id: task.clone(),
                run_id: run.clone(),
            };
            let status = self.status.get(&key).copied();
            if !statuses.is_empty() && !status.is_some_and(|status| statuses.contains(&status)) {
                continue;
            }
            if keys.len() == page_size {
                return Ok((keys, last.map(encode_token)));
            }
            keys.push(key);
            last = Some(sort_key);
        }
        Ok((keys, None))
    }
}

/// Reads a run's metadata and status.
fn read_run(dir: &RunDir) -> Result<(RunMetadata, RunStatus)> {
    let missing = |path: std::path::PathBuf| StoreError::damaged(path, "is missing");
    let metadata: RunMetadata = read_json(&dir.meta())?.ok_or_else(|| missing(dir.meta()))?;
    let state: RunStateSnapshot = read_json(&dir.state())?.ok_or_else(|| missing(dir.state()))?;
    Ok((metadata, state.status))
}

/// The listing position of a run.
fn sort_key(metadata: &RunMetadata) -> SortKey {
    (
        Reverse(metadata.created_at.clone()),
        metadata.task_id.clone(),
        metadata.run_id.clone(),
    )
}

/// A page token: the position of the last run of a page, as hex of JSON,
/// so that clients treat it as opaque.
fn encode_token(key: &SortKey) -> String {
    let json = serde_json::to_vec(&(&key.0.0, &key.1, &key.2)).expect("strings serialize");
    json.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads a page token back.
fn decode_token(token: &str) -> Result<SortKey> {
    let invalid = || StoreError::InvalidPageToken {
        token: token.to_owned(),
    };
    if token.len() % 2 != 0 || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let (created_at, task, run): (String, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok((Reverse(created_at), task, run))
}
