//! Conversions between the generated Protobuf types and the store's domain
//! types: `to_*` functions out, `from_*` functions in. Incoming values are
//! checked here, at the edge, and a bad one is an `INVALID_ARGUMENT` that
//! names the field.

use std::time::Duration;

use baa_logging::json::{self, to_struct};
use baa_logging::{
    DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME, EncodedFollowRunResponse, Limits, pb,
};
use baa_logging_store::{
    CollectReason, CollectedRun, Collection,
    model::{
        self, AppendItem, AppendPayload, CommitEntries, LogEntry, LogLevel, ReadBatch, RunKey,
        RunStatus, StreamLogChannel, WorkerLifecycleEventType, WorkerLogChannel,
    },
    objects::{ObjectInfo, ObjectKind, ObjectRef},
    time::format_iso,
};
use prost::{Message, bytes::Bytes};
use prost_types::Struct;
use tonic::Status;

// === incoming ===

/// A required message field.
pub(crate) fn required<T>(field: &str, value: Option<T>) -> Result<T, Status> {
    value.ok_or_else(|| Status::invalid_argument(format!("{field} is required")))
}

/// A `LogLevel` that must be set.
pub(crate) fn from_level(field: &str, value: i32) -> Result<LogLevel, Status> {
    match pb::LogLevel::try_from(value) {
        Ok(pb::LogLevel::Debug) => Ok(LogLevel::Debug),
        Ok(pb::LogLevel::Info) => Ok(LogLevel::Info),
        Ok(pb::LogLevel::Warn) => Ok(LogLevel::Warn),
        Ok(pb::LogLevel::Error) => Ok(LogLevel::Error),
        Ok(pb::LogLevel::Unspecified) | Err(_) => Err(unset_enum(field, value)),
    }
}

/// A `WorkerLifecycleEventType` that must be set.
pub(crate) fn from_event_type(field: &str, value: i32) -> Result<WorkerLifecycleEventType, Status> {
    use WorkerLifecycleEventType as M;
    use pb::WorkerLifecycleEventType as P;
    Ok(match P::try_from(value) {
        Ok(P::RunPrepared) => M::RunPrepared,
        Ok(P::CheckpointSlotReserved) => M::CheckpointSlotReserved,
        Ok(P::WorkerStarted) => M::WorkerStarted,
        Ok(P::WorkerExecutionDeferred) => M::WorkerExecutionDeferred,
        Ok(P::WorkerExited) => M::WorkerExited,
        Ok(P::StepPrepared) => M::StepPrepared,
        Ok(P::StepCompleted) => M::StepCompleted,
        Ok(P::StepFailed) => M::StepFailed,
        Ok(P::StepBlocked) => M::StepBlocked,
        Ok(P::Unspecified) | Err(_) => return Err(unset_enum(field, value)),
    })
}

/// A `RunStatus` that must be set.
pub(crate) fn from_status(field: &str, value: i32) -> Result<RunStatus, Status> {
    Ok(match pb::RunStatus::try_from(value) {
        Ok(pb::RunStatus::Prepared) => RunStatus::Prepared,
        Ok(pb::RunStatus::Running) => RunStatus::Running,
        Ok(pb::RunStatus::Completed) => RunStatus::Completed,
        Ok(pb::RunStatus::Failed) => RunStatus::Failed,
        Ok(pb::RunStatus::Blocked) => RunStatus::Blocked,
        Ok(pb::RunStatus::Unspecified) | Err(_) => return Err(unset_enum(field, value)),
    })
}

/// A `WorkerLogChannel` that must be set.
pub(crate) fn from_channel(field: &str, value: i32) -> Result<WorkerLogChannel, Status> {
    Ok(match pb::WorkerLogChannel::try_from(value) {
        Ok(pb::WorkerLogChannel::Worker) => WorkerLogChannel::Worker,
        Ok(pb::WorkerLogChannel::Stdout) => WorkerLogChannel::Stdout,
        Ok(pb::WorkerLogChannel::Stderr) => WorkerLogChannel::Stderr,
        Ok(pb::WorkerLogChannel::Unspecified) | Err(_) => return Err(unset_enum(field, value)),
    })
}

/// The error for an enum field that is unspecified or unknown.
fn unset_enum(field: &str, value: i32) -> Status {
    if value == 0 {
        Status::invalid_argument(format!("{field} is required: *_UNSPECIFIED is not a value"))
    } else {
        Status::invalid_argument(format!("{field} has the unknown value {value}"))
    }
}

/// Run metadata as a client sends it.
pub(crate) fn from_metadata_input(input: pb::RunMetadataInput) -> model::RunMetadataInput {
    model::RunMetadataInput {
        task_id: input.task_id,
        step_id: input.step_id,
        step_name: input.step_name,
        run_id: input.run_id,
        worker_kind: input.worker_kind,
        attempt: input.attempt,
        repo_root: input.repo_root,
        worktree_path: input.worktree_path,
        created_at: input.created_at,
        checkpoint_mode: input.checkpoint_mode,
        prompt_summary: input.prompt_summary,
        command: input.command,
    }
}

/// A run's first state as a client sends it.
pub(crate) fn from_state_input(input: pb::RunStateSnapshotInput) -> model::RunStateSnapshotInput {
    model::RunStateSnapshotInput {
        attempt: input.attempt,
        started_at: input.started_at,
        checkpoint_seq: input.checkpoint_seq,
        summary: input.summary,
    }
}

/// A state patch as a client sends it.
pub(crate) fn from_patch(patch: pb::RunStatePatch) -> Result<model::RunStatePatch, Status> {
    Ok(model::RunStatePatch {
        status: patch
            .status
            .map(|status| from_status("patch.status", status))
            .transpose()?,
        updated_at: patch.updated_at,
        finished_at: patch.finished_at,
        last_event_seq: patch.last_event_seq,
        checkpoint_seq: patch.checkpoint_seq,
        summary: patch.summary,
        exit_code: patch.exit_code,
    })
}

/// One appended item.
pub(crate) fn from_append_item(item: pb::AppendItem) -> Result<AppendItem, Status> {
    use pb::append_item::Payload;
    let field = |name: &str| format!("item {}: {name}", item.writer_seq);
    let payload = match item.payload {
        Some(Payload::Event(event)) => AppendPayload::Event(model::WorkerLifecycleEventInput {
            event_type: from_event_type(&field("event.type"), event.r#type)?,
            level: from_level(&field("event.level"), event.level)?,
            message: event.message,
            created_at: event.created_at,
            data: match event.data {
                Some(data) => from_struct(&field("event.data"), data)?,
                None => model::StructuredData::new(),
            },
        }),
        Some(Payload::Stdout(chunk)) => {
            AppendPayload::Chunk(StreamLogChannel::Stdout, from_chunk(chunk))
        }
        Some(Payload::Stderr(chunk)) => {
            AppendPayload::Chunk(StreamLogChannel::Stderr, from_chunk(chunk))
        }
        None => {
            return Err(Status::invalid_argument(format!(
                "{} is required: one of event, stdout or stderr",
                field("payload")
            )));
        }
    };
    Ok(AppendItem {
        writer_seq: item.writer_seq,
        payload,
    })
}

/// A chunk of output.
fn from_chunk(chunk: pb::StreamChunkInput) -> model::StreamChunkInput {
    model::StreamChunkInput {
        text: chunk.text,
        created_at: chunk.created_at,
    }
}

/// A `google.protobuf.Struct` as a JSON object.
pub(crate) fn from_struct(field: &str, value: Struct) -> Result<model::StructuredData, Status> {
    json::from_struct(value).map_err(|err| Status::invalid_argument(format!("{field}: {err}")))
}

/// A duration that must not be negative.
pub(crate) fn from_duration(field: &str, value: prost_types::Duration) -> Result<Duration, Status> {
    if value.seconds < 0 || value.nanos < 0 {
        return Err(Status::invalid_argument(format!(
            "{field} must not be negative"
        )));
    }
    Ok(Duration::new(value.seconds as u64, 0) + Duration::from_nanos(value.nanos as u64))
}

/// A point in time, at or after the Unix epoch.
pub(crate) fn from_timestamp(
    field: &str,
    value: prost_types::Timestamp,
) -> Result<std::time::SystemTime, Status> {
    let invalid = || {
        Status::invalid_argument(format!(
            "{field} must be a valid time at or after 1970-01-01T00:00:00Z"
        ))
    };
    if value.seconds < 0 || !(0..1_000_000_000).contains(&value.nanos) {
        return Err(invalid());
    }
    std::time::SystemTime::try_from(value).map_err(|_| invalid())
}

// === outgoing ===

/// A level as Protobuf.
fn to_level(level: LogLevel) -> pb::LogLevel {
    match level {
        LogLevel::Debug => pb::LogLevel::Debug,
        LogLevel::Info => pb::LogLevel::Info,
        LogLevel::Warn => pb::LogLevel::Warn,
        LogLevel::Error => pb::LogLevel::Error,
    }
}

/// An event type as Protobuf.
fn to_event_type(event_type: WorkerLifecycleEventType) -> pb::WorkerLifecycleEventType {
    use WorkerLifecycleEventType as M;
    use pb::WorkerLifecycleEventType as P;
    match event_type {
        M::RunPrepared => P::RunPrepared,
        M::CheckpointSlotReserved => P::CheckpointSlotReserved,
        M::WorkerStarted => P::WorkerStarted,
        M::WorkerExecutionDeferred => P::WorkerExecutionDeferred,
        M::WorkerExited => P::WorkerExited,
        M::StepPrepared => P::StepPrepared,
        M::StepCompleted => P::StepCompleted,
        M::StepFailed => P::StepFailed,
        M::StepBlocked => P::StepBlocked,
    }
}

/// A status as Protobuf.
pub(crate) fn to_status_enum(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Prepared => pb::RunStatus::Prepared,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Completed => pb::RunStatus::Completed,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Blocked => pb::RunStatus::Blocked,
    }
}

/// A channel as Protobuf.
pub(crate) fn to_channel(channel: WorkerLogChannel) -> pb::WorkerLogChannel {
    match channel {
        WorkerLogChannel::Worker => pb::WorkerLogChannel::Worker,
        WorkerLogChannel::Stdout => pb::WorkerLogChannel::Stdout,
        WorkerLogChannel::Stderr => pb::WorkerLogChannel::Stderr,
    }
}

/// An output channel as Protobuf.
fn to_stream_channel(channel: StreamLogChannel) -> pb::StreamLogChannel {
    match channel {
        StreamLogChannel::Stdout => pb::StreamLogChannel::Stdout,
        StreamLogChannel::Stderr => pb::StreamLogChannel::Stderr,
    }
}

/// Metadata as Protobuf.
pub(crate) fn to_metadata(metadata: &model::RunMetadata) -> pb::RunMetadata {
    pb::RunMetadata {
        layout_version: metadata.layout_version.clone(),
        task_id: metadata.task_id.clone(),
        step_id: metadata.step_id.clone(),
        step_name: metadata.step_name.clone(),
        run_id: metadata.run_id.clone(),
        worker_kind: metadata.worker_kind.clone(),
        attempt: metadata.attempt,
        repo_root: metadata.repo_root.clone(),
        worktree_path: metadata.worktree_path.clone(),
        created_at: metadata.created_at.clone(),
        checkpoint_mode: metadata.checkpoint_mode.clone(),
        prompt_summary: metadata.prompt_summary.clone(),
        command: metadata.command.clone(),
    }
}

/// A state as Protobuf.
pub(crate) fn to_state(state: &model::RunStateSnapshot) -> pb::RunStateSnapshot {
    pb::RunStateSnapshot {
        status: to_status_enum(state.status).into(),
        attempt: state.attempt,
        started_at: state.started_at.clone(),
        updated_at: state.updated_at.clone(),
        finished_at: state.finished_at.clone(),
        last_event_seq: state.last_event_seq,
        checkpoint_seq: state.checkpoint_seq,
        summary: state.summary.clone(),
        exit_code: state.exit_code,
    }
}

/// A summary as Protobuf.
pub(crate) fn to_summary(summary: &model::LocalRunLogSummary) -> pb::LocalRunLogSummary {
    pb::LocalRunLogSummary {
        total_entries: summary.total_entries,
        last_seq: summary.last_seq,
        lifecycle_event_count: summary.lifecycle_event_count,
        stdout_chunk_count: summary.stdout_chunk_count,
        stderr_chunk_count: summary.stderr_chunk_count,
    }
}

/// Paths as Protobuf.
pub(crate) fn to_paths(paths: &model::LocalRunPaths) -> pb::LocalRunPaths {
    pb::LocalRunPaths {
        layout_version: paths.layout_version.clone(),
        repo_root: paths.repo_root.clone(),
        runs_root_dir: paths.runs_root_dir.clone(),
        task_runs_dir: paths.task_runs_dir.clone(),
        run_dir: paths.run_dir.clone(),
        checkpoints_dir: paths.checkpoints_dir.clone(),
        artifacts_dir: paths.artifacts_dir.clone(),
        meta_path: paths.meta_path.clone(),
        state_path: paths.state_path.clone(),
        worker_log_path: paths.worker_log_path.clone(),
        stdout_log_path: paths.stdout_log_path.clone(),
        stderr_log_path: paths.stderr_log_path.clone(),
    }
}

/// The channel files of a run as Protobuf targets.
pub(crate) fn to_targets(paths: &model::LocalRunPaths) -> pb::LocalRunLogTargets {
    let target = |channel: WorkerLogChannel| pb::LocalRunLogTarget {
        channel: to_channel(channel).into(),
        file_path: paths.log_path(channel).to_owned(),
    };
    pb::LocalRunLogTargets {
        worker: Some(target(WorkerLogChannel::Worker)),
        stdout: Some(target(WorkerLogChannel::Stdout)),
        stderr: Some(target(WorkerLogChannel::Stderr)),
    }
}

/// A run view as Protobuf.
pub(crate) fn to_run(view: &model::RunView) -> pb::Run {
    pb::Run {
        metadata: Some(to_metadata(&view.metadata)),
        state: Some(to_state(&view.state)),
        summary: Some(to_summary(&view.summary)),
        paths: Some(to_paths(&view.paths)),
        targets: Some(to_targets(&view.paths)),
    }
}

/// A lifecycle entry as Protobuf.
pub(crate) fn to_lifecycle_entry(
    entry: &model::WorkerLifecycleLogEntry,
) -> pb::WorkerLifecycleLogEntry {
    pb::WorkerLifecycleLogEntry {
        task_id: entry.task_id.clone(),
        step_id: entry.step_id.clone(),
        run_id: entry.run_id.clone(),
        seq: entry.seq,
        channel: pb::WorkerLogChannel::Worker.into(),
        event_id: entry.event_id.clone(),
        r#type: to_event_type(entry.event_type).into(),
        level: to_level(entry.level).into(),
        created_at: entry.created_at.clone(),
        message: entry.message.clone(),
        data: Some(to_struct(&entry.data)),
        rendered_line: entry.rendered_line.clone(),
    }
}

/// An entry of any channel as Protobuf.
pub(crate) fn to_log_entry(entry: LogEntry) -> pb::LogEntry {
    let entry = match entry {
        LogEntry::Lifecycle(entry) => pb::log_entry::Entry::Lifecycle(to_lifecycle_entry(&entry)),
        LogEntry::Chunk(entry) => pb::log_entry::Entry::Chunk(pb::StreamChunkLogEntry {
            channel: to_stream_channel(entry.channel).into(),
            task_id: entry.task_id,
            step_id: entry.step_id,
            run_id: entry.run_id,
            seq: entry.seq,
            created_at: entry.created_at,
            text: entry.text,
        }),
    };
    pb::LogEntry { entry: Some(entry) }
}

/// A prepared run's session: context, paths, next seq, and the entries the
/// preparation stored.
pub(crate) fn to_session(prepared: &model::PreparedRun) -> pb::LocalRunLogSession {
    let view = &prepared.run;
    let paths = &view.paths;
    pb::LocalRunLogSession {
        context: Some(pb::LocalRunLogContext {
            task_id: view.metadata.task_id.clone(),
            step_id: view.metadata.step_id.clone(),
            run_id: view.metadata.run_id.clone(),
        }),
        paths: Some(to_paths(paths)),
        next_seq: view.summary.last_seq + 1,
        worker: Some(pb::WorkerLifecycleLogStream {
            channel: pb::WorkerLogChannel::Worker.into(),
            file_path: paths.worker_log_path.clone(),
            entries: prepared.entries.iter().map(to_lifecycle_entry).collect(),
        }),
        stdout: Some(pb::StreamChunkLogStream {
            channel: pb::StreamLogChannel::Stdout.into(),
            file_path: paths.stdout_log_path.clone(),
            entries: Vec::new(),
        }),
        stderr: Some(pb::StreamChunkLogStream {
            channel: pb::StreamLogChannel::Stderr.into(),
            file_path: paths.stderr_log_path.clone(),
            entries: Vec::new(),
        }),
    }
}

// === responses ===

/// `GetServerInfo`'s answer: the layout this server writes and its limits.
pub(crate) fn to_server_info(limits: &Limits, worker_lease: Duration) -> pb::GetServerInfoResponse {
    pb::GetServerInfoResponse {
        runs_directory_name: DEFAULT_RUNS_DIRECTORY_NAME.to_owned(),
        run_layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        max_message_bytes: limits.max_message_bytes as u64,
        max_entry_bytes: limits.max_entry_bytes as u64,
        max_data_bytes: limits.max_data_bytes as u64,
        max_batch_entries: limits.max_batch_entries as u64,
        worker_lease_ms: baa_logging_store::lease::millis(worker_lease),
    }
}

/// `PrepareRun`'s answer.
pub(crate) fn to_prepare_response(prepared: &model::PreparedRun) -> pb::PrepareRunResponse {
    pb::PrepareRunResponse {
        metadata: Some(to_metadata(&prepared.run.metadata)),
        state: Some(to_state(&prepared.run.state)),
        session: Some(to_session(prepared)),
        created: prepared.created,
    }
}

/// A run as `GetRun`'s answer.
pub(crate) fn to_run_response(view: &model::RunView) -> pb::GetRunResponse {
    pb::GetRunResponse {
        run: Some(to_run(view)),
    }
}

/// A run's new state as `UpdateRunState`'s answer.
pub(crate) fn to_state_response(state: &model::RunStateSnapshot) -> pb::UpdateRunStateResponse {
    pb::UpdateRunStateResponse {
        state: Some(to_state(state)),
    }
}

/// A page of runs as `ListRuns`' answer.
pub(crate) fn to_run_page(page: model::RunPage) -> pb::ListRunsResponse {
    pb::ListRunsResponse {
        runs: page.runs.iter().map(to_run).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

/// What an `AppendLogs` stream stored, as its answer: items stored and
/// found duplicate, the writer's last sequence number, the run's summary.
pub(crate) fn to_append_response(
    summary: &model::LocalRunLogSummary,
    stored: u64,
    duplicates: u64,
    last_writer_seq: u64,
) -> pb::AppendLogsResponse {
    pb::AppendLogsResponse {
        summary: Some(to_summary(summary)),
        stored_count: stored,
        duplicate_count: duplicates,
        last_writer_seq,
    }
}

/// A writer's cursor as `GetWriterCursor`'s answer.
pub(crate) fn to_writer_cursor(cursor: &model::WriterCursor) -> pb::GetWriterCursorResponse {
    pb::GetWriterCursorResponse {
        last_writer_seq: cursor.last_writer_seq,
        last_seq: cursor.last_seq,
    }
}

/// A read batch as one `FollowRun` response.
pub(crate) fn to_follow_response(batch: ReadBatch) -> pb::FollowRunResponse {
    let shared = batch.shared.iter().flat_map(|commit| commit.to_entries());
    pb::FollowRunResponse {
        entries: batch
            .entries
            .into_iter()
            .chain(shared)
            .map(to_log_entry)
            .collect(),
        state: batch.state.as_ref().map(to_state),
        next_seq: batch.next_seq,
    }
}

/// A batch as `FollowRun` sends it, encoded: the batch's own entries,
/// then each shared commit's entries as the first follower to send it
/// encoded them, then the state and the cursor. The bytes are those of
/// [`to_follow_response`]'s message: a repeated field is its values
/// one after the other.
pub(crate) fn to_encoded_follow_response(batch: ReadBatch) -> EncodedFollowRunResponse {
    let mut response = EncodedFollowRunResponse::default();
    if !batch.entries.is_empty() {
        response.push_message(&pb::FollowRunResponse {
            entries: batch.entries.into_iter().map(to_log_entry).collect(),
            ..Default::default()
        });
    }
    for commit in &batch.shared {
        match commit.cached(encode_commit) {
            Some(encoded) => response.push_encoded(encoded.clone()),
            None => response.push_encoded(encode_commit(commit)),
        }
    }
    response.push_message(&pb::FollowRunResponse {
        entries: Vec::new(),
        state: batch.state.as_ref().map(to_state),
        next_seq: batch.next_seq,
    });
    response
}

/// A commit's entries as a `FollowRunResponse`'s `entries`, encoded.
fn encode_commit(commit: &CommitEntries) -> Bytes {
    let entries = commit.to_entries().into_iter().map(to_log_entry).collect();
    pb::FollowRunResponse {
        entries,
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

/// A retention pass as `CollectRuns`' answer, with what retention deleted
/// since the server started (runs, bytes).
pub(crate) fn to_collect_response(
    collection: Collection,
    (deleted_runs, deleted_bytes): (u64, u64),
) -> pb::CollectRunsResponse {
    pb::CollectRunsResponse {
        dry_run: collection.dry_run,
        deleted_bytes: collection.deleted_bytes(),
        total_bytes_before: collection.bytes_before,
        total_bytes_after: collection.bytes_after,
        kept_open_count: collection.kept_open,
        runs: collection.runs.into_iter().map(to_collected_run).collect(),
        deleted_runs_since_start: deleted_runs,
        deleted_bytes_since_start: deleted_bytes,
    }
}

/// A run retention deleted (or would have) as Protobuf.
fn to_collected_run(run: CollectedRun) -> pb::CollectedRun {
    pb::CollectedRun {
        task_id: run.key.task_id,
        run_id: run.key.run_id,
        status: to_status_enum(run.status).into(),
        finished_at: format_iso(run.finished_at),
        bytes: run.bytes,
        reason: to_reason(run.reason).into(),
    }
}

/// A reason as the protocol names it.
fn to_reason(reason: CollectReason) -> pb::CollectReason {
    match reason {
        CollectReason::MaxAge => pb::CollectReason::MaxAge,
        CollectReason::MaxBytes => pb::CollectReason::MaxBytes,
    }
}

/// An object kind from the wire; `UNSPECIFIED` is refused.
pub(crate) fn from_object_kind(field: &str, value: i32) -> Result<ObjectKind, Status> {
    match pb::ObjectKind::try_from(value) {
        Ok(pb::ObjectKind::Artifact) => Ok(ObjectKind::Artifact),
        Ok(pb::ObjectKind::Checkpoint) => Ok(ObjectKind::Checkpoint),
        _ => Err(unset_enum(field, value)),
    }
}

/// An object kind to filter by: `UNSPECIFIED` is both.
pub(crate) fn from_object_kind_filter(value: i32) -> Result<Option<ObjectKind>, Status> {
    match pb::ObjectKind::try_from(value) {
        Ok(pb::ObjectKind::Unspecified) => Ok(None),
        _ => from_object_kind("kind", value).map(Some),
    }
}

/// An object reference from the wire, its fields named under `field`.
pub(crate) fn from_object_ref(
    field: &str,
    value: Option<pb::ObjectRef>,
) -> Result<ObjectRef, Status> {
    let value = required(field, value)?;
    Ok(ObjectRef {
        kind: from_object_kind(&format!("{field}.kind"), value.kind)?,
        key: RunKey {
            task_id: value.task_id,
            run_id: value.run_id,
        },
        name: value.name,
        checkpoint_seq: value.checkpoint_seq,
    })
}

/// A SHA-256 from the wire: exactly 32 bytes.
pub(crate) fn from_sha256(field: &str, value: &[u8]) -> Result<[u8; 32], Status> {
    value.try_into().map_err(|_| {
        Status::invalid_argument(format!("{field} is {} bytes; a SHA-256 is 32", value.len()))
    })
}

/// An object kind to the wire.
pub(crate) fn to_object_kind(kind: ObjectKind) -> pb::ObjectKind {
    match kind {
        ObjectKind::Artifact => pb::ObjectKind::Artifact,
        ObjectKind::Checkpoint => pb::ObjectKind::Checkpoint,
    }
}

/// A stored object to the wire.
pub(crate) fn to_object_info(info: &ObjectInfo) -> pb::ObjectInfo {
    pb::ObjectInfo {
        kind: to_object_kind(info.kind).into(),
        name: info.name.clone(),
        checkpoint_seq: info.checkpoint_seq,
        size: info.size,
        sha256: info.sha256.to_vec(),
        modified_at: info.modified_at.clone(),
    }
}
