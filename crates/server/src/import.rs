//! `baa-logd import`: copies runs from a local data directory into the
//! JetStream store, for moving a single-node deployment into a cluster.

use std::{path::Path, process::ExitCode};

use baa_logd::{Settings, StoreKind};
use baa_logging_store::{
    JetStreamStore, LocalStore, LocalStoreOptions, ReadFrom, RunReader, RunStore, StoreError,
    jetstream::Imported,
    model::{RunKey, RunQuery},
};

/// How many runs a page of the local listing holds.
const PAGE: usize = 500;

/// Copies the runs `target` names (TASK or TASK/RUN; all when none) from
/// `from` into the configured JetStream store, printing a line a run.
pub(crate) fn run(settings: &Settings, from: &Path, target: Option<&str>) -> ExitCode {
    if settings.store != StoreKind::Jetstream {
        eprintln!(
            "baa-logd: import copies into the JetStream store: give --store jetstream and --nats-url"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("baa-logd: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(copy(settings, from, target)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("baa-logd: {err}");
            match err {
                StoreError::Locked { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Copies the runs; returns how many could not be copied.
async fn copy(settings: &Settings, from: &Path, target: Option<&str>) -> Result<usize, StoreError> {
    let local = LocalStore::open(LocalStoreOptions {
        limits: settings.limits.clone(),
        ..LocalStoreOptions::new(from)
    })?;
    let cluster = JetStreamStore::open(settings.jetstream_options()).await?;
    let (task, run) = match target.map(|target| target.split_once('/')) {
        Some(Some((task, run))) => (Some(task.to_owned()), Some(run.to_owned())),
        Some(None) => (target.map(str::to_owned), None),
        None => (None, None),
    };
    let keys = match (&task, &run) {
        (Some(task), Some(run)) => vec![RunKey {
            task_id: task.clone(),
            run_id: run.clone(),
        }],
        _ => list(&local, task).await?,
    };
    let (mut copied, mut failed) = (0usize, 0usize);
    for key in &keys {
        match copy_run(&local, &cluster, key).await {
            Ok(Imported::Copied { entries, objects }) => {
                copied += 1;
                println!("{key}: copied, {entries} entries, {objects} objects");
            }
            Ok(Imported::AlreadyThere) => println!("{key}: in the stream already, left as it is"),
            Err(err) => {
                failed += 1;
                println!("{key}: not copied: {err}");
            }
        }
    }
    println!("{} runs: {copied} copied, {failed} not copied", keys.len());
    Ok(failed)
}

/// Every run of the local store, of `task` when given.
async fn list(local: &LocalStore, task: Option<String>) -> Result<Vec<RunKey>, StoreError> {
    let mut keys = Vec::new();
    let mut page_token = None;
    loop {
        let page = local
            .list_runs(RunQuery {
                task_id: task.clone(),
                statuses: Vec::new(),
                page_size: PAGE,
                page_token,
            })
            .await?;
        keys.extend(page.runs.iter().map(|run| run.metadata.key()));
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return Ok(keys),
        }
    }
}

/// Copies one run: its metadata, state, writers, every entry and every
/// object.
async fn copy_run(
    local: &LocalStore,
    cluster: &JetStreamStore,
    key: &RunKey,
) -> Result<Imported, StoreError> {
    let view = local.get_run(key).await?;
    let writers = local.writer_cursors(key).await?;
    let mut reader = local
        .open_reader(
            key,
            ReadFrom {
                history_only: true,
                ..ReadFrom::default()
            },
        )
        .await?;
    let mut entries = Vec::new();
    loop {
        let batch = reader.read(4 * 1024 * 1024).await?;
        entries.extend(batch.entries);
        if batch.caught_up {
            break;
        }
    }
    cluster
        .import_run(view.metadata, view.state, writers, entries, local)
        .await
}
