//! The page's JSON: runs, states and entries in the contracts' camelCase
//! shapes (as `meta.json`, `state.json` and the channel files hold them),
//! built from the Protobuf messages the RPCs return.
//!
//! Entries leave out what the page already knows (`taskId`, `stepId`,
//! `runId`): a page of 5,000 entries would repeat them 5,000 times.

use baa_logging::{json::from_struct, pb};
use serde_json::{Map, Value as Json, json};

/// A run: its metadata, with its state and log summary nested.
pub(super) fn run(run: &pb::Run) -> Json {
    let mut object = match &run.metadata {
        Some(metadata) => self::metadata(metadata),
        None => Map::new(),
    };
    object.insert(
        "state".to_owned(),
        run.state.as_ref().map_or(Json::Null, state),
    );
    object.insert(
        "summary".to_owned(),
        run.summary.as_ref().map_or(Json::Null, |summary| {
            json!({
                "totalEntries": summary.total_entries,
                "lastSeq": summary.last_seq,
                "lifecycleEventCount": summary.lifecycle_event_count,
                "stdoutChunkCount": summary.stdout_chunk_count,
                "stderrChunkCount": summary.stderr_chunk_count,
            })
        }),
    );
    Json::Object(object)
}

/// A run's metadata, as `meta.json` holds it.
fn metadata(metadata: &pb::RunMetadata) -> Map<String, Json> {
    let mut object = Map::new();
    let mut put = |key: &str, value: Json| {
        object.insert(key.to_owned(), value);
    };
    put("layoutVersion", json!(metadata.layout_version));
    put("taskId", json!(metadata.task_id));
    put("stepId", json!(metadata.step_id));
    put("stepName", json!(metadata.step_name));
    put("runId", json!(metadata.run_id));
    put("workerKind", json!(metadata.worker_kind));
    put("attempt", json!(metadata.attempt));
    put("repoRoot", json!(metadata.repo_root));
    put("worktreePath", json!(metadata.worktree_path));
    put("createdAt", json!(metadata.created_at));
    put("checkpointMode", json!(metadata.checkpoint_mode));
    if let Some(summary) = &metadata.prompt_summary {
        put("promptSummary", json!(summary));
    }
    if let Some(command) = &metadata.command {
        put("command", json!(command));
    }
    object
}

/// A run's state, as `state.json` holds it.
pub(super) fn state(state: &pb::RunStateSnapshot) -> Json {
    let mut object = Map::new();
    let mut put = |key: &str, value: Json| {
        object.insert(key.to_owned(), value);
    };
    put("status", json!(status_name(state.status())));
    put("attempt", json!(state.attempt));
    put("startedAt", json!(state.started_at));
    put("updatedAt", json!(state.updated_at));
    if let Some(finished_at) = &state.finished_at {
        put("finishedAt", json!(finished_at));
    }
    put("lastEventSeq", json!(state.last_event_seq));
    put("checkpointSeq", json!(state.checkpoint_seq));
    if let Some(summary) = &state.summary {
        put("summary", json!(summary));
    }
    if let Some(code) = state.exit_code {
        put("exitCode", json!(code));
    }
    Json::Object(object)
}

/// An entry of any channel; `None` for an empty message.
pub(super) fn entry(entry: &pb::LogEntry) -> Option<Json> {
    Some(match entry.entry.as_ref()? {
        pb::log_entry::Entry::Chunk(chunk) => json!({
            "seq": chunk.seq,
            "channel": match chunk.channel() {
                pb::StreamLogChannel::Stderr => "stderr",
                _ => "stdout",
            },
            "createdAt": chunk.created_at,
            "text": chunk.text,
        }),
        pb::log_entry::Entry::Lifecycle(event) => json!({
            "seq": event.seq,
            "channel": "worker",
            "createdAt": event.created_at,
            "type": event
                .r#type()
                .as_str_name()
                .trim_start_matches("WORKER_LIFECYCLE_EVENT_TYPE_")
                .to_ascii_lowercase(),
            "level": match event.level() {
                pb::LogLevel::Debug => "debug",
                pb::LogLevel::Warn => "warn",
                pb::LogLevel::Error => "error",
                _ => "info",
            },
            "message": event.message,
            "renderedLine": event.rendered_line,
            "data": event
                .data
                .clone()
                .and_then(|data| from_struct(data).ok())
                .map_or(json!({}), Json::Object),
        }),
    })
}

/// The sequence number of an entry of any channel.
pub(super) fn seq_of(entry: &pb::LogEntry) -> Option<u64> {
    match entry.entry.as_ref()? {
        pb::log_entry::Entry::Chunk(chunk) => Some(chunk.seq),
        pb::log_entry::Entry::Lifecycle(event) => Some(event.seq),
    }
}

/// A run status as the contracts write it.
pub(super) fn status_name(status: pb::RunStatus) -> &'static str {
    match status {
        pb::RunStatus::Unspecified => "unspecified",
        pb::RunStatus::Prepared => "prepared",
        pb::RunStatus::Running => "running",
        pb::RunStatus::Completed => "completed",
        pb::RunStatus::Failed => "failed",
        pb::RunStatus::Blocked => "blocked",
    }
}

/// A run status by its contract name.
pub(super) fn status_by_name(name: &str) -> Option<pb::RunStatus> {
    Some(match name {
        "prepared" => pb::RunStatus::Prepared,
        "running" => pb::RunStatus::Running,
        "completed" => pb::RunStatus::Completed,
        "failed" => pb::RunStatus::Failed,
        "blocked" => pb::RunStatus::Blocked,
        _ => return None,
    })
}

/// A channel by its contract name.
pub(super) fn channel_by_name(name: &str) -> Option<pb::WorkerLogChannel> {
    Some(match name {
        "worker" => pb::WorkerLogChannel::Worker,
        "stdout" => pb::WorkerLogChannel::Stdout,
        "stderr" => pb::WorkerLogChannel::Stderr,
        _ => return None,
    })
}

/// A channel's contract name.
pub(super) fn channel_name(channel: pb::WorkerLogChannel) -> &'static str {
    match channel {
        pb::WorkerLogChannel::Worker => "worker",
        pb::WorkerLogChannel::Stderr => "stderr",
        _ => "stdout",
    }
}

/// `spans`, UTF-8 byte offsets into `text`, as UTF-16 code unit offsets
/// (JavaScript string indices). An offset inside a character is moved to
/// the character's start.
pub(super) fn utf16_spans(text: &str, spans: &[pb::SearchSpan]) -> Vec<[usize; 2]> {
    let utf16_at = |byte: usize| {
        let mut byte = byte.min(text.len());
        while !text.is_char_boundary(byte) {
            byte -= 1;
        }
        text[..byte].encode_utf16().count()
    };
    spans
        .iter()
        .map(|span| [utf16_at(span.start as usize), utf16_at(span.end as usize)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_utf16_code_units() {
        // "é" is two bytes and one code unit; "😀" four bytes and two units.
        let text = "é😀ab";
        let spans = [pb::SearchSpan { start: 6, end: 8 }];
        assert_eq!(utf16_spans(text, &spans), vec![[3, 5]]);
        let inside = [pb::SearchSpan { start: 1, end: 3 }];
        assert_eq!(utf16_spans(text, &inside), vec![[0, 1]]);
    }
}
