//! What W8 checks after each `baa-log exec`, untimed: that the server
//! holds a new run of task `bench-w8` that ended `completed` with exit
//! code 0, and that its stdout channel holds every line the command
//! printed, byte for byte in count.
//!
//! `baa-log exec` exits only once the server has stored everything the
//! command wrote and the run's final state (`RunWriter::finish`), so a run
//! found short here, right after the exit, is a wrong answer: exec's wall
//! time is meant to be the time until the run holds everything.

use std::collections::HashSet;

use tonic::transport::Channel;

use baa_logging::pb::{self, log_entry::Entry};

use crate::{
    error::{BenchError, Context, Result},
    systems::grpc::client,
};

/// The task every W8 run belongs to.
pub(super) const TASK: &str = "bench-w8";

/// The ids of the runs of [`TASK`] there are.
pub(super) async fn run_ids(channel: &Channel) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let mut page_token = String::new();
    loop {
        let page = client(channel.clone())
            .list_runs(pb::ListRunsRequest {
                task_id: TASK.into(),
                statuses: Vec::new(),
                page_size: 500,
                page_token,
            })
            .await
            .context("ListRuns")?
            .into_inner();
        ids.extend(
            page.runs
                .iter()
                .filter_map(|run| run.metadata.as_ref())
                .map(|metadata| metadata.run_id.clone()),
        );
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        page_token = page.next_page_token;
    }
}

/// Checks the one run of [`TASK`] that is not in `seen`, and adds it
/// there: it ended `completed` with exit code 0, and its stdout holds
/// `lines` lines of `line_bytes` bytes.
pub(super) async fn new_run(
    channel: &Channel,
    seen: &mut HashSet<String>,
    lines: u64,
    line_bytes: usize,
) -> Result<()> {
    let ids = run_ids(channel).await?;
    let new: Vec<&String> = ids.difference(seen).collect();
    let [run] = new.as_slice() else {
        return Err(BenchError::WrongAnswer(format!(
            "{} new runs of {TASK} after one baa-log exec, not 1",
            new.len()
        )));
    };
    let run = (*run).clone();
    seen.insert(run.clone());
    let state = client(channel.clone())
        .get_run(pb::GetRunRequest {
            task_id: TASK.into(),
            run_id: run.clone(),
        })
        .await
        .context(format!("GetRun {TASK}/{run}"))?
        .into_inner()
        .run
        .and_then(|run| run.state)
        .unwrap_or_default();
    if state.status != pb::RunStatus::Completed as i32 || state.exit_code != Some(0) {
        return Err(BenchError::WrongAnswer(format!(
            "run {TASK}/{run} is {:?} with exit code {:?} after exec exited 0, not completed with 0",
            pb::RunStatus::try_from(state.status).unwrap_or_default(),
            state.exit_code
        )));
    }
    let (stored_lines, stored_bytes) = stdout_of(channel, &run).await?;
    let bytes = lines * line_bytes as u64;
    if stored_lines != lines || stored_bytes != bytes {
        return Err(BenchError::WrongAnswer(format!(
            "run {TASK}/{run} holds {stored_lines} lines and {stored_bytes} bytes of stdout \
             when exec exited, not {lines} and {bytes}"
        )));
    }
    Ok(())
}

/// The newlines and the bytes (`\r` left out, which a terminal may add)
/// of `run`'s stdout channel, read with a history follow.
async fn stdout_of(channel: &Channel, run: &str) -> Result<(u64, u64)> {
    let mut stream = client(channel.clone())
        .follow_run(pb::FollowRunRequest {
            task_id: TASK.into(),
            run_id: run.into(),
            from_seq: 1,
            channels: vec![pb::WorkerLogChannel::Stdout as i32],
            history_only: true,
            ..Default::default()
        })
        .await
        .context(format!("FollowRun {TASK}/{run}"))?
        .into_inner();
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(response) = stream.message().await.context("FollowRun failed")? {
        for entry in response.entries {
            if let Some(Entry::Chunk(chunk)) = entry.entry {
                let text = chunk.text.as_bytes();
                lines += text.iter().filter(|byte| **byte == b'\n').count() as u64;
                bytes += text.iter().filter(|byte| **byte != b'\r').count() as u64;
            }
        }
    }
    Ok((lines, bytes))
}
