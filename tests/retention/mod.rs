//! Retention against a real server and real files: which runs `CollectRuns`
//! and the periodic pass delete, in which order, what they never touch, and
//! `baa-log gc` as a user runs it.
//!
//! Runs are made old without waiting: they finish with a `finished_at` in
//! the past (the patch of `UpdateRunState` takes one), which is the time
//! retention measures age from. `policy` holds what is deleted and when,
//! `admin` who may ask for a pass and how; the helpers below serve both.

mod admin;
mod policy;

use std::{path::Path, time::Duration};

use baa_logging::pb;
use baa_logging_client::LoggingClient;
use tonic::Code;

use crate::util::{append, metadata_at, open, prepare_request, set_status, stdout};

/// Thirty days, the age most tests collect at.
const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// Long ago: every run created or finished then is older than [`MONTH`].
const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";

/// Prepares a run created long ago, moves it to `running`, and writes
/// `bytes` bytes of stdout to it.
async fn running_run(client: &mut LoggingClient, task: &str, run: &str, bytes: usize) {
    client
        .prepare_run(prepare_request(metadata_at(task, run, LONG_AGO)))
        .await
        .unwrap();
    set_status(client, task, run, pb::RunStatus::Running)
        .await
        .unwrap();
    if bytes > 0 {
        let items = vec![stdout(1, &"x".repeat(bytes))];
        append(client, vec![open(task, run, "w", items)])
            .await
            .unwrap();
    }
}

/// Makes a run `completed`, finished at `finished_at` (RFC 3339), or now
/// when `None`.
async fn finish(client: &mut LoggingClient, task: &str, run: &str, finished_at: Option<&str>) {
    client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: task.into(),
            run_id: run.into(),
            writer_id: String::new(),
            patch: Some(pb::RunStatePatch {
                status: Some(pb::RunStatus::Completed.into()),
                finished_at: finished_at.map(Into::into),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// A run that finished at `finished_at` with `bytes` bytes of stdout.
async fn finished_run(
    client: &mut LoggingClient,
    task: &str,
    run: &str,
    finished_at: Option<&str>,
    bytes: usize,
) {
    running_run(client, task, run, bytes).await;
    finish(client, task, run, finished_at).await;
}

/// Calls `CollectRuns`.
async fn collect(
    client: &mut LoggingClient,
    dry_run: bool,
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
) -> pb::CollectRunsResponse {
    client
        .collect_runs(pb::CollectRunsRequest {
            dry_run,
            max_age: max_age.map(|age| age.try_into().unwrap()),
            max_bytes,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The runs of a reply, as `task/run`, in its order.
fn names(reply: &pb::CollectRunsResponse) -> Vec<String> {
    reply
        .runs
        .iter()
        .map(|run| format!("{}/{}", run.task_id, run.run_id))
        .collect()
}

/// The sum of the sizes of the files under `dir`, leaving out the store's
/// own entries (names with a leading dot, such as its lock).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        // The store's own files (its lock) are not runs' bytes.
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Whether `GetRun` finds the run.
async fn exists(client: &mut LoggingClient, task: &str, run: &str) -> bool {
    let request = pb::GetRunRequest {
        task_id: task.into(),
        run_id: run.into(),
    };
    match client.get_run(request).await {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("GetRun failed: {status:?}"),
    }
}

/// Every run `ListRuns` returns, as `task/run`, sorted.
async fn listed(client: &mut LoggingClient) -> Vec<String> {
    let page = client
        .list_runs(pb::ListRunsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut runs: Vec<String> = page
        .runs
        .iter()
        .map(|run| {
            let metadata = run.metadata.as_ref().unwrap();
            format!("{}/{}", metadata.task_id, metadata.run_id)
        })
        .collect();
    runs.sort();
    runs
}
