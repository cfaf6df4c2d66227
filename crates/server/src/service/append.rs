//! The writer RPCs: `AppendLogs` and `GetWriterCursor`.
//!
//! An append stream commits as it goes: whatever messages have already
//! arrived are gathered (up to `APPEND_BATCH_BYTES`) into one store call,
//! so a fast writer gets few, large disk writes and a slow one gets its
//! lines stored at once. Whatever was received before an error, a broken
//! stream or a shutdown is stored, but for chunks held for masking (see
//! below); the writer learns how far with `GetWriterCursor` and re-sends
//! the rest.
//!
//! Every item is masked before it is stored (see [`masking`](super::masking)):
//! a chunk that ends in what may be the start of a secret waits, with
//! every item behind it, until the next chunk of its channel, the
//! hold-back time or the end of the stream decides.

use std::sync::Arc;

use baa_logging::{Limits, pb};
use baa_logging_store::{
    RunStore,
    model::{AppendItem, AppendOutcome, RunKey},
};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

use super::masking::{Ingest, RunMaskers};
use crate::{
    convert::{from_append_item, to_append_response, to_writer_cursor},
    leases::WorkerLeases,
    limits::{AppendRates, RateGuard},
    security::{TaskLimit, tasks},
    status::to_status,
};

/// An append stream gathers messages that are already received up to
/// about this many bytes into one commit.
const APPEND_BATCH_BYTES: usize = 1024 * 1024;

/// What an `AppendLogs` stream works with.
#[derive(Debug)]
pub(crate) struct AppendState<'a, S> {
    /// Where the items are stored.
    pub(crate) store: &'a S,
    /// The message, batch and idle limits.
    pub(crate) limits: &'a Limits,
    /// The per-run pacing the stream takes its share of.
    pub(crate) rates: &'a Arc<AppendRates>,
    /// The runs' worker leases: the stream holds its run's while it is
    /// open.
    pub(crate) leases: &'a Arc<WorkerLeases>,
    /// Ends the stream, after storing what came, when the server shuts down.
    pub(crate) shutdown: &'a CancellationToken,
    /// The tasks the calling token may touch; all when `None`.
    pub(crate) tasks: Option<&'a TaskLimit>,
    /// The runs' maskers: the stream masks with its run's.
    pub(crate) maskers: &'a Arc<RunMaskers>,
}

/// `AppendLogs`.
#[tracing::instrument(skip_all, fields(task_id, run_id, writer_id))]
pub(crate) async fn append_logs<S: RunStore>(
    state: AppendState<'_, S>,
    mut stream: Streaming<pb::AppendLogsRequest>,
) -> Result<pb::AppendLogsResponse, Status> {
    let limit = state.limits.max_message_bytes;
    let (open, first) = open_stream(&mut stream, limit).await?;
    let Opened {
        key,
        writer,
        lease_ms,
    } = open;
    tasks::check(state.tasks, &key.task_id)?;
    // Unknown runs and bad ids fail before any item is read. The hold keeps
    // retention off the run until the stream ends; the lease guard holds
    // the run's worker lease as long (any message, heartbeats included,
    // keeps the stream, and so the lease, alive).
    let _hold = state.store.hold(&key).await.map_err(to_status)?;
    let _lease = state.leases.open(&key, &writer, lease_ms);
    let cursor = state
        .store
        .writer_cursor(&key, &writer)
        .await
        .map_err(to_status)?;
    let ingest = Ingest::new(
        state.maskers.open(&key),
        cursor.last_writer_seq,
        state.limits.max_entry_bytes,
    );
    let mut append = AppendStream {
        pace: state.rates.open(&key),
        batch: Batch {
            max_items: state.limits.max_batch_entries,
            ingest,
        },
        totals: Totals {
            last_writer_seq: cursor.last_writer_seq,
            ..Totals::default()
        },
        failure: None,
        ended: false,
        state,
        stream,
        key,
        writer,
    };
    append.failure = append.batch.accept_parts(first).err();
    append.run().await?;
    reply(append.state.store, &append.key, append.totals).await
}

/// What a stream's `open` asks for.
#[derive(Debug)]
struct Opened {
    /// The run written to.
    key: RunKey,
    /// The writer.
    writer: String,
    /// The worker lease the writer asks for, in milliseconds; 0: the
    /// server's.
    lease_ms: u64,
}

/// Reads the stream's first message, which must carry `open`, and names
/// the run and writer in the call's span. Returns what `open` asks for and
/// the message, `open` taken out.
async fn open_stream(
    stream: &mut Streaming<pb::AppendLogsRequest>,
    limit: usize,
) -> Result<(Opened, pb::AppendLogsRequest), Status> {
    let mut first = stream
        .message()
        .await
        .map_err(|status| stream_error(status, limit))?
        .ok_or_else(|| {
            Status::invalid_argument(
                "the stream ended before its first message, which must carry `open`",
            )
        })?;
    let open = first.open.take().ok_or_else(|| {
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
    let opened = Opened {
        key,
        writer: open.writer_id,
        lease_ms: open.worker_lease_ms,
    };
    Ok((opened, first))
}

/// The reply to a stream that ended well: what it stored, and the run's
/// summary (read from the store when the stream stored nothing).
async fn reply<S: RunStore>(
    store: &S,
    key: &RunKey,
    totals: Totals,
) -> Result<pb::AppendLogsResponse, Status> {
    let summary = match totals.summary {
        Some(summary) => summary,
        None => store.get_run(key).await.map_err(to_status)?.summary,
    };
    Ok(to_append_response(
        &summary,
        totals.stored,
        totals.duplicates,
        totals.last_writer_seq,
    ))
}

/// `GetWriterCursor`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn get_writer_cursor<S: RunStore>(
    store: &S,
    request: pb::GetWriterCursorRequest,
) -> Result<pb::GetWriterCursorResponse, Status> {
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let cursor = store
        .writer_cursor(&key, &request.writer_id)
        .await
        .map_err(to_status)?;
    Ok(to_writer_cursor(&cursor))
}

// === impl AppendStream ===

/// One open `AppendLogs` stream, past its first message.
#[derive(Debug)]
struct AppendStream<'a, S> {
    /// What the stream works with.
    state: AppendState<'a, S>,
    /// The writer's messages.
    stream: Streaming<pb::AppendLogsRequest>,
    /// The run written to.
    key: RunKey,
    /// The writer, whose sequence numbers make re-sent items duplicates.
    writer: String,
    /// The stream's share of the run's pacing.
    pace: RateGuard<RunKey>,
    /// Received and not stored yet.
    batch: Batch,
    /// Stored so far.
    totals: Totals,
    /// Why the stream ends in error, once what came before it is stored.
    failure: Option<Status>,
    /// The writer closed the stream.
    ended: bool,
}

impl<S: RunStore> AppendStream<'_, S> {
    /// Gathers and commits until the writer closes the stream, or until an
    /// error, a shutdown or the idle timeout ends it (after storing what
    /// came before).
    async fn run(&mut self) -> Result<(), Status> {
        loop {
            self.gather();
            // When the writer ends the stream, every held tail is stored
            // as it is; before, only those that waited their hold-back
            // time. A stream that breaks (an error, a shutdown) leaves its
            // held chains unstored and unacknowledged: the writer re-sends
            // them whole, where storing their start would store the start
            // of a secret whose rest comes on the next stream.
            let now = (!self.ended).then(tokio::time::Instant::now);
            if self.failure.is_none() {
                self.batch.ingest.release(now);
            }
            let items = self.batch.ingest.take_ready();
            if !items.is_empty() {
                self.commit(items).await?;
            }
            if let Some(status) = self.failure.take() {
                return Err(status);
            }
            if self.ended {
                return Ok(());
            }
            self.wait().await;
        }
    }

    /// Takes into the batch what has already arrived, up to
    /// [`APPEND_BATCH_BYTES`], without waiting.
    fn gather(&mut self) {
        let limit = self.state.limits.max_message_bytes;
        while self.failure.is_none()
            && !self.ended
            && self.batch.ingest.bytes() < APPEND_BATCH_BYTES
        {
            match self.stream.message().now_or_never() {
                None => break,
                Some(Ok(Some(message))) => self.failure = self.batch.accept(message).err(),
                Some(Ok(None)) => self.ended = true,
                Some(Err(status)) => self.failure = Some(stream_error(status, limit)),
            }
        }
    }

    /// Stores `items` in one store call, at the run's pace (or at once
    /// when the server shuts down).
    async fn commit(&mut self, items: Vec<AppendItem>) -> Result<(), Status> {
        tokio::select! {
            () = self.pace.take(items.len()) => {}
            // Store what came, then end.
            () = self.state.shutdown.cancelled() => {}
        }
        let outcome = self
            .state
            .store
            .append(&self.key, &self.writer, items)
            .await
            .map_err(to_status)?;
        self.totals.add(outcome);
        Ok(())
    }

    /// Waits for the next message, or until a held tail is due; ends the
    /// stream (after storing what came) on shutdown or after
    /// `append_idle_timeout` without a message.
    async fn wait(&mut self) {
        let limit = self.state.limits.max_message_bytes;
        let idle = self.state.limits.append_idle_timeout;
        let deadline = self.batch.ingest.deadline();
        let due = deadline.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            message = self.stream.message() => match message {
                Ok(Some(message)) => self.failure = self.batch.accept(message).err(),
                Ok(None) => self.ended = true,
                Err(status) => self.failure = Some(stream_error(status, limit)),
            },
            // A held tail is due: the loop releases it.
            () = tokio::time::sleep_until(due), if deadline.is_some() => {}
            () = self.state.shutdown.cancelled() => {
                self.failure = Some(Status::unavailable(
                    "the server is shutting down; the items received were stored but for \
                     those held for masking: ask GetWriterCursor and re-send the rest",
                ));
            }
            () = tokio::time::sleep(idle) => {
                self.failure = Some(Status::deadline_exceeded(format!(
                    "no message for {} (append_idle_timeout); every item received was \
                     stored: open a new stream to go on",
                    humantime::format_duration(idle)
                )));
            }
        }
    }
}

/// Items received and not stored yet.
#[derive(Debug)]
struct Batch {
    /// The masking of the items, which keeps them until they can be stored.
    ingest: Ingest,
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
        self.accept_parts(message)
    }

    /// Registers the message's mask values, then takes its items; nothing
    /// of a message with a bad value is taken.
    fn accept_parts(&mut self, message: pb::AppendLogsRequest) -> Result<(), Status> {
        self.ingest.register(&message.mask_values)?;
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
            self.ingest.take(from_append_item(item)?);
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
