//! Creating a run on disk: its directory is built whole in the staging area
//! and renamed into place, so that a run exists whole or not at all, with
//! its `run_prepared` event as seq 1.

use std::{fs, io, io::Write, path::Path};

use super::{
    encode::encode_entries,
    fsio::{sync_dir, write_json_atomic},
    journal::{self, JournalRecord},
    layout::{RunDir, StoreDir},
};
use baa_logging_config::DEFAULT_RUN_LAYOUT_VERSION;

use crate::{
    error::{Result, StoreError},
    model::{
        AppendPayload, LogLevel, PerChannel, RunKey, RunMetadata, RunMetadataInput,
        RunStateSnapshot, RunStateSnapshotInput, RunStatus, WorkerLifecycleEventInput,
        WorkerLifecycleEventType, WorkerLogChannel,
    },
    time::{normalize_iso, now_iso},
};

/// The status a run has when its state is first written.
pub(crate) const INITIAL_STATUS: RunStatus = RunStatus::Prepared;

/// The metadata and first state of a new run, from what the client sent;
/// times are checked and put in `toISOString` form.
pub(crate) fn new_run(
    input: RunMetadataInput,
    state: RunStateSnapshotInput,
) -> Result<(RunMetadata, RunStateSnapshot)> {
    let metadata = RunMetadata {
        layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
        created_at: normalize_iso("metadata.created_at", &input.created_at)?,
        task_id: input.task_id,
        step_id: input.step_id,
        step_name: input.step_name,
        run_id: input.run_id,
        worker_kind: input.worker_kind,
        attempt: input.attempt,
        repo_root: input.repo_root,
        worktree_path: input.worktree_path,
        checkpoint_mode: input.checkpoint_mode,
        prompt_summary: input.prompt_summary,
        command: input.command,
    };
    let initial = RunStateSnapshot {
        status: INITIAL_STATUS,
        attempt: state.attempt,
        started_at: normalize_iso("state.started_at", &state.started_at)?,
        updated_at: now_iso(),
        finished_at: None,
        last_event_seq: 1,
        checkpoint_seq: state.checkpoint_seq.unwrap_or(0),
        summary: state.summary,
        exit_code: None,
    };
    Ok((metadata, initial))
}

/// Builds the run directory in the staging area and renames it into
/// place. Returns the lines of `worker.log`: the `run_prepared` entry.
/// Blocking.
pub(super) fn create_run(
    layout: &StoreDir,
    key: &RunKey,
    metadata: &RunMetadata,
    state: &RunStateSnapshot,
) -> Result<Vec<u8>> {
    let staged = layout.new_staged_run();
    let mut encoded = encode_entries(metadata, 1, vec![run_prepared(key, metadata)], &now_iso());
    let record = JournalRecord {
        first_seq: 1,
        last_seq: 1,
        writer_id: None,
        writer_seq: 0,
        counts: encoded.counts,
        offsets: PerChannel::default(),
        imported: false,
        lost: false,
        damaged: false,
        writers_lost: false,
        lease: None,
        time: Some(journal::commit_time(0)),
        closed: Some(encoded.closed),
        lens: None,
        crc: None,
        check: None,
    }
    .with_bytes(&encoded.bytes);
    let fail = |what: &str, err| StoreError::io(format!("cannot prepare run `{key}`: {what}"), err);
    let build = || -> Result<()> {
        write_staged(&staged, metadata, state, &encoded.bytes, &record, &fail)?;
        move_into_place(layout, key, &staged, &fail)
    };
    build().inspect_err(|_| {
        let _ = fs::remove_dir_all(staged.path());
    })?;
    Ok(std::mem::take(&mut encoded.bytes[WorkerLogChannel::Worker]))
}

/// The first entry of every run.
pub(crate) fn run_prepared(key: &RunKey, metadata: &RunMetadata) -> AppendPayload {
    AppendPayload::Event(WorkerLifecycleEventInput {
        event_type: WorkerLifecycleEventType::RunPrepared,
        level: LogLevel::Info,
        message: format!("run {} prepared", key.run_id),
        created_at: None,
        data: [
            ("stepId".to_owned(), metadata.step_id.clone().into()),
            ("attempt".to_owned(), metadata.attempt.into()),
            ("workerKind".to_owned(), metadata.worker_kind.clone().into()),
        ]
        .into_iter()
        .collect(),
    })
}

/// Writes every file of a new run in its staging directory, synced.
fn write_staged(
    staged: &RunDir,
    metadata: &RunMetadata,
    state: &RunStateSnapshot,
    logs: &PerChannel<Vec<u8>>,
    record: &JournalRecord,
    fail: &dyn Fn(&str, io::Error) -> StoreError,
) -> Result<()> {
    for dir in staged.subdirectories() {
        fs::create_dir_all(dir).map_err(|err| fail("cannot create directories", err))?;
    }
    write_json_atomic(&staged.meta(), metadata)?;
    write_json_atomic(&staged.state(), state)?;
    let synced = |path: &Path, bytes: &[u8]| {
        write_synced(path, bytes).map_err(|err| fail(&path.display().to_string(), err))
    };
    for (channel, bytes) in logs.iter() {
        synced(&staged.log(channel), bytes)?;
    }
    synced(&staged.journal(), &record.to_line())?;
    sync_dir(staged.path()).map_err(|err| fail("cannot sync", err))
}

/// Renames a staged run to its place, creating its task directory.
fn move_into_place(
    layout: &StoreDir,
    key: &RunKey,
    staged: &RunDir,
    fail: &dyn Fn(&str, io::Error) -> StoreError,
) -> Result<()> {
    let task_dir = layout.task(&key.task_id);
    let target = layout.run(key);
    // Retention removes a task directory once its last run is gone, under
    // that run's lock, not this one's: when it does so between these two
    // steps, make the directory again.
    let mut attempts = 0;
    loop {
        match fs::create_dir(&task_dir) {
            // A new task directory is an entry of the runs root: without
            // this sync a power loss could take it, and the run in it,
            // away after the prepare was acknowledged.
            Ok(()) => {
                sync_dir(layout.root()).map_err(|err| fail("cannot sync the runs root", err))?
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(fail("cannot create the task directory", err)),
        }
        match fs::rename(staged.path(), target.path()) {
            Ok(()) => break,
            Err(err) if err.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(err) => return Err(fail("cannot move the run into place", err)),
        }
    }
    sync_dir(&task_dir).map_err(|err| fail("cannot sync", err))
}

/// Writes a new file and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
