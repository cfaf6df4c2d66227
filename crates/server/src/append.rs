//! The writer RPCs: `AppendLogs` and `GetWriterCursor`.
//!
//! An append stream commits as it goes: whatever messages have already
//! arrived are gathered (up to `append_batch_bytes`) into one store call,
//! so a fast writer gets few, large disk writes and a slow one gets its
//! lines stored at once. Whatever was received before an error, a broken
//! stream or a shutdown is stored; the writer learns how far with
//! `GetWriterCursor` and re-sends the rest.

use baa_logging::pb;
use baa_logging_store::{
    RunStore,
    model::{AppendItem, AppendOutcome, RunKey},
};
use futures::FutureExt;
use tonic::{Code, Status, Streaming};

use crate::{
    convert::{from_append_item, to_summary},
    service::GrpcLoggingService,
    status::to_status,
};

/// An append stream gathers messages that are already received up to
/// about this many bytes into one commit.
const APPEND_BATCH_BYTES: usize = 1024 * 1024;

/// `AppendLogs`.
#[tracing::instrument(skip_all, fields(task_id, run_id, writer_id))]
pub(crate) async fn append_logs<S: RunStore>(
    service: &GrpcLoggingService<S>,
    mut stream: Streaming<pb::AppendLogsRequest>,
) -> Result<pb::AppendLogsResponse, Status> {
    let limit = service.config.limits.max_message_bytes;
    let first = stream
        .message()
        .await
        .map_err(|status| stream_error(status, limit))?
        .ok_or_else(|| {
            Status::invalid_argument(
                "the stream ended before its first message, which must carry `open`",
            )
        })?;
    let open = first.open.ok_or_else(|| {
        Status::invalid_argument("the first message of an AppendLogs stream must carry `open`")
    })?;
    let span = tracing::Span::current();
    span.record("task_id", open.task_id.as_str());
    span.record("run_id", open.run_id.as_str());
    span.record("writer_id", open.writer_id.as_str());
    let key = RunKey {
        task_id: open.task_id,
        run_id: open.run_id,
    };
    let writer = open.writer_id;
    // Unknown runs and bad ids fail before any item is read. The hold keeps
    // retention off the run until the stream ends.
    let _hold = service.store.hold(&key).await.map_err(to_status)?;
    let cursor = service
        .store
        .writer_cursor(&key, &writer)
        .await
        .map_err(to_status)?;

    let pace = service.append_rates.open(&key);
    let idle = service.config.limits.append_idle_timeout;
    let mut batch = Batch {
        max_items: service.config.limits.max_batch_entries,
        ..Batch::default()
    };
    let mut failure = batch.accept_items(first.items).err();
    let mut ended = false;
    let mut totals = Totals {
        last_writer_seq: cursor.last_writer_seq,
        ..Totals::default()
    };
    loop {
        // Gather what has already arrived into one commit.
        while failure.is_none() && !ended && batch.bytes < APPEND_BATCH_BYTES {
            match stream.message().now_or_never() {
                None => break,
                Some(Ok(Some(message))) => failure = batch.accept(message).err(),
                Some(Ok(None)) => ended = true,
                Some(Err(status)) => failure = Some(stream_error(status, limit)),
            }
        }
        if !batch.items.is_empty() {
            tokio::select! {
                () = pace.take(batch.items.len()) => {}
                // Store what came, then end below.
                () = service.shutdown.cancelled() => {}
            }
            let items = std::mem::take(&mut batch.items);
            batch.bytes = 0;
            let outcome = service
                .store
                .append(&key, &writer, items)
                .await
                .map_err(to_status)?;
            totals.add(outcome);
        }
        if let Some(status) = failure {
            return Err(status);
        }
        if ended {
            break;
        }
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(message)) => failure = batch.accept(message).err(),
                Ok(None) => ended = true,
                Err(status) => failure = Some(stream_error(status, limit)),
            },
            () = service.shutdown.cancelled() => {
                return Err(Status::unavailable(
                    "the server is shutting down; every item received was stored: \
                     ask GetWriterCursor and re-send the rest",
                ));
            }
            () = tokio::time::sleep(idle) => {
                return Err(Status::deadline_exceeded(format!(
                    "no message for {} (append_idle_timeout); every item received was \
                     stored: open a new stream to go on",
                    humantime::format_duration(idle)
                )));
            }
        }
    }
    let summary = match totals.summary {
        Some(summary) => summary,
        None => {
            service
                .store
                .get_run(&key)
                .await
                .map_err(to_status)?
                .summary
        }
    };
    Ok(pb::AppendLogsResponse {
        summary: Some(to_summary(&summary)),
        stored_count: totals.stored,
        duplicate_count: totals.duplicates,
        last_writer_seq: totals.last_writer_seq,
    })
}

/// `GetWriterCursor`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn get_writer_cursor<S: RunStore>(
    service: &GrpcLoggingService<S>,
    request: pb::GetWriterCursorRequest,
) -> Result<pb::GetWriterCursorResponse, Status> {
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let cursor = service
        .store
        .writer_cursor(&key, &request.writer_id)
        .await
        .map_err(to_status)?;
    Ok(pb::GetWriterCursorResponse {
        last_writer_seq: cursor.last_writer_seq,
        last_seq: cursor.last_seq,
    })
}

/// Items received and not stored yet.
#[derive(Debug, Default)]
struct Batch {
    items: Vec<AppendItem>,
    /// About how many bytes the items carry.
    bytes: usize,
    /// The most items one message may carry.
    max_items: usize,
}

impl Batch {
    /// Takes a message after the first.
    fn accept(&mut self, message: pb::AppendLogsRequest) -> Result<(), Status> {
        if message.open.is_some() {
            return Err(Status::invalid_argument(
                "only the first message of an AppendLogs stream may carry `open`",
            ));
        }
        self.accept_items(message.items)
    }

    /// Takes items up to the first bad one; the error names it.
    fn accept_items(&mut self, items: Vec<pb::AppendItem>) -> Result<(), Status> {
        if items.len() > self.max_items {
            return Err(Status::resource_exhausted(format!(
                "a message holds {} items, over max_batch_entries ({}); nothing of it was stored",
                items.len(),
                self.max_items
            )));
        }
        for item in items {
            let item = from_append_item(item)?;
            self.bytes += item.text_len() + 64;
            self.items.push(item);
        }
        Ok(())
    }
}

/// What a stream stored, over all its commits.
#[derive(Debug, Default)]
struct Totals {
    stored: u64,
    duplicates: u64,
    last_writer_seq: u64,
    summary: Option<baa_logging_store::model::LocalRunLogSummary>,
}

impl Totals {
    /// Adds a commit's outcome.
    fn add(&mut self, outcome: AppendOutcome) {
        self.stored += outcome.stored;
        self.duplicates += outcome.duplicates;
        self.last_writer_seq = outcome.last_writer_seq;
        self.summary = Some(outcome.summary);
    }
}

/// The status for a stream that failed to deliver a message. A message
/// over the size limit is `RESOURCE_EXHAUSTED`, naming the limit.
fn stream_error(status: Status, limit: usize) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("too large") {
        Status::resource_exhausted(format!(
            "a message of the stream is over max_message_bytes ({limit}): {}",
            status.message()
        ))
    } else {
        status
    }
}
