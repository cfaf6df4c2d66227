//! The task behind a [`RunWriter`](super::RunWriter): numbers items, sends
//! them in batches on an Append stream, keeps them until the server holds
//! them, and after a broken stream reconnects and sends what is missing.
//!
//! Acknowledgement comes from two places: the reply of an Append stream
//! when the task closes it (on a flush), and the writer cursor, which the
//! task asks for whenever the items it keeps pass half of their budget.
//! The server's cursor is also what a reconnection starts from, and the
//! server skips any item it already holds, so a stale answer can only
//! cause a re-send that is skipped, never a duplicate or a gap.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use prost::Message;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::{
    LoggingClient, RetryPolicy, RunKey,
    backoff::Backoff,
    error::is_retryable_status,
    pb::{self, append_item::Payload},
};

/// What a handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Append an item.
    Item(Payload),
    /// Reply once everything queued before is stored.
    Flush(oneshot::Sender<Result<pb::LocalRunLogSummary, tonic::Status>>),
}

/// The session's batching and buffering limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long an item may wait for company.
    pub(crate) linger: Duration,
    /// Send once unsent items reach this many bytes.
    pub(crate) batch_bytes: usize,
    /// The most items in one message, as the server allows.
    pub(crate) batch_items: usize,
    /// Stop taking items while those not known stored pass this.
    pub(crate) buffer_bytes: usize,
    /// How to wait between reconnection attempts.
    pub(crate) retry: RetryPolicy,
}

/// How long the task first waits before asking again what the server
/// holds, while its buffer is full; the wait doubles while nothing moves,
/// up to [`FULL_BUFFER_POLL_MAX`].
const FULL_BUFFER_POLL: Duration = Duration::from_millis(5);

/// The longest wait between two such questions.
const FULL_BUFFER_POLL_MAX: Duration = Duration::from_millis(200);

/// An open Append stream.
#[derive(Debug)]
struct Stream {
    /// Its request messages.
    requests: mpsc::Sender<pb::AppendLogsRequest>,
    /// The call, which ends with the reply once `requests` is dropped.
    call: JoinHandle<Result<pb::AppendLogsResponse, tonic::Status>>,
}

/// One writer's session with the server.
#[derive(Debug)]
pub(crate) struct Session {
    /// The generated client.
    stub: LoggingClient,
    /// The run.
    key: RunKey,
    /// This writer's name.
    writer_id: String,
    /// Limits.
    limits: Limits,
    /// Commands from the handles.
    commands: mpsc::Receiver<Command>,
    /// Why the session stopped, for the handles to report.
    failure: Arc<Mutex<Option<tonic::Status>>>,
    /// Items the server is not known to hold, in order, with their sizes.
    kept: VecDeque<(pb::AppendItem, usize)>,
    /// The bytes of `kept`.
    kept_bytes: usize,
    /// The writer sequence number of the last item taken.
    last_taken: u64,
    /// The last writer sequence number the server confirmed it holds.
    acked: u64,
    /// How long to wait before asking again while the buffer is full.
    full_poll: Duration,
    /// The last writer sequence number the current stream was given.
    last_sent: u64,
    /// The bytes of kept items not sent yet.
    unsent_bytes: usize,
    /// When the oldest unsent item must go.
    send_by: Option<Instant>,
    /// The current Append stream, if one is open.
    stream: Option<Stream>,
}

impl Session {
    /// A session that goes on after `last_writer_seq`, the last item the
    /// run holds from this writer.
    pub(crate) fn new(
        stub: LoggingClient,
        key: RunKey,
        writer_id: String,
        last_writer_seq: u64,
        limits: Limits,
        commands: mpsc::Receiver<Command>,
        failure: Arc<Mutex<Option<tonic::Status>>>,
    ) -> Self {
        Self {
            stub,
            key,
            writer_id,
            limits,
            commands,
            failure,
            kept: VecDeque::new(),
            kept_bytes: 0,
            last_taken: last_writer_seq,
            acked: last_writer_seq,
            full_poll: FULL_BUFFER_POLL,
            last_sent: last_writer_seq,
            unsent_bytes: 0,
            send_by: None,
            stream: None,
        }
    }

    /// Runs until every handle is gone (after a last flush) or an error
    /// that retrying cannot cure.
    pub(crate) async fn run(mut self) {
        if let Err(status) = self.serve().await {
            warn!(run = %self.key, writer = %self.writer_id, cause = %status, "the writer stopped");
            // A poisoned slot is whole; see the crate's `# Locking` section.
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
            // Tell waiting flushes, and refuse what is still queued.
            self.commands.close();
            while let Some(command) = self.commands.recv().await {
                if let Command::Flush(reply) = command {
                    let _ = reply.send(Err(status.clone()));
                }
            }
        }
    }

    /// The command loop.
    async fn serve(&mut self) -> Result<(), tonic::Status> {
        loop {
            let full = self.kept_bytes >= self.limits.buffer_bytes;
            let send_by = self.send_by;
            let call = self.stream.as_mut().map(|stream| &mut stream.call);
            tokio::select! {
                command = self.commands.recv(), if !full => match command {
                    Some(Command::Item(payload)) => {
                        self.take(payload);
                        if self.unsent_bytes >= self.limits.batch_bytes {
                            self.send_unsent().await?;
                        }
                    }
                    Some(Command::Flush(reply)) => {
                        let result = self.flush().await;
                        let stop = result.as_ref().err().cloned();
                        let _ = reply.send(result);
                        if let Some(status) = stop {
                            return Err(status);
                        }
                    }
                    None => {
                        self.flush().await?;
                        return Ok(());
                    }
                },
                () = sleep_until(send_by), if send_by.is_some() => self.send_unsent().await?,
                () = tokio::time::sleep(self.full_poll), if full => {
                    let before = self.kept_bytes;
                    self.trim().await?;
                    self.full_poll = if self.kept_bytes < before {
                        FULL_BUFFER_POLL
                    } else {
                        (self.full_poll * 2).min(FULL_BUFFER_POLL_MAX)
                    };
                }
                ended = wait_call(call) => {
                    // The server ended the stream before we closed it.
                    self.stream = None;
                    let status = match ended {
                        Ok(_) => tonic::Status::unavailable("the append stream ended early"),
                        Err(status) => status,
                    };
                    self.reconnect(status).await?;
                    self.send_unsent().await?;
                }
            }
        }
    }

    /// Numbers an item and keeps it until the server holds it.
    fn take(&mut self, payload: Payload) {
        self.last_taken += 1;
        let item = pb::AppendItem {
            writer_seq: self.last_taken,
            payload: Some(payload),
        };
        let size = item.encoded_len();
        self.kept.push_back((item, size));
        self.kept_bytes += size;
        self.unsent_bytes += size;
        if self.send_by.is_none() {
            self.send_by = Some(Instant::now() + self.limits.linger);
        }
    }

    /// Sends every unsent item, reconnecting as long as that takes.
    async fn send_unsent(&mut self) -> Result<(), tonic::Status> {
        while let Err(status) = self.try_send_unsent().await {
            self.reconnect(status).await?;
        }
        self.send_by = None;
        if self.kept_bytes >= self.limits.buffer_bytes / 2 {
            self.trim().await?;
        }
        Ok(())
    }

    /// Sends every unsent item on the current stream, opening one if none
    /// is open. An error means the stream broke.
    async fn try_send_unsent(&mut self) -> Result<(), tonic::Status> {
        let mut index = self
            .kept
            .partition_point(|(item, _)| item.writer_seq <= self.last_sent);
        if index == self.kept.len() {
            // Nothing to send; a stream is opened once there is.
            return Ok(());
        }
        if self.stream.is_none() {
            self.open();
        }
        while index < self.kept.len() {
            let mut items = Vec::new();
            let mut bytes = 0;
            while let Some((item, size)) = self.kept.get(index) {
                if !items.is_empty()
                    && (bytes + size > self.limits.batch_bytes
                        || items.len() >= self.limits.batch_items)
                {
                    break;
                }
                items.push(item.clone());
                bytes += size;
                index += 1;
            }
            let last = items.last().map_or(self.last_sent, |item| item.writer_seq);
            self.send_request(pb::AppendLogsRequest { open: None, items })
                .await?;
            self.last_sent = last;
            self.unsent_bytes -= bytes;
        }
        Ok(())
    }

    /// Opens an Append stream; its first message only opens the session.
    fn open(&mut self) {
        let (requests, receiver) = mpsc::channel(4);
        let open = pb::AppendLogsRequest {
            open: Some(pb::AppendOpen {
                worker_lease_ms: 0,
                task_id: self.key.task_id.clone(),
                run_id: self.key.run_id.clone(),
                writer_id: self.writer_id.clone(),
            }),
            items: Vec::new(),
        };
        requests
            .try_send(open)
            .expect("a new channel has room for one message");
        let mut stub = self.stub.clone();
        let call = tokio::spawn(async move {
            stub.append_logs(ReceiverStream::new(receiver))
                .await
                .map(tonic::Response::into_inner)
        });
        self.stream = Some(Stream { requests, call });
    }

    /// Sends one message; when the stream is gone, returns why.
    async fn send_request(&mut self, request: pb::AppendLogsRequest) -> Result<(), tonic::Status> {
        let stream = self.stream.as_mut().expect("a stream is open");
        if stream.requests.send(request).await.is_ok() {
            return Ok(());
        }
        let stream = self.stream.take().expect("a stream is open");
        Err(match stream.call.await {
            Ok(Err(status)) => status,
            Ok(Ok(_)) => tonic::Status::unavailable("the append stream ended early"),
            Err(err) => tonic::Status::unavailable(format!("the append call failed: {err}")),
        })
    }

    /// Sends everything, closes the stream and returns its reply, which
    /// says the server holds every item.
    async fn flush(&mut self) -> Result<pb::LocalRunLogSummary, tonic::Status> {
        loop {
            self.send_unsent().await?;
            if self.stream.is_none() {
                // Nothing was sent since the last flush: an empty stream
                // still brings back the summary.
                self.open();
            }
            let stream = self.stream.take().expect("a stream is open");
            drop(stream.requests);
            let status = match stream.call.await {
                Ok(Ok(reply)) => {
                    self.acknowledge(reply.last_writer_seq)?;
                    return Ok(reply.summary.unwrap_or_default());
                }
                Ok(Err(status)) => status,
                Err(err) => tonic::Status::unavailable(format!("the append call failed: {err}")),
            };
            self.reconnect(status).await?;
        }
    }

    /// Asks the server what it holds from this writer and forgets that.
    async fn trim(&mut self) -> Result<(), tonic::Status> {
        match self.cursor().await {
            Ok(last) => self.acknowledge(last),
            // The stream will break too, and reconnect.
            Err(status) if is_retryable_status(&status) => Ok(()),
            Err(status) => Err(status),
        }
    }

    /// After the stream broke with `status`: waits for the server, learns
    /// what it holds, and arranges for the rest to be sent again.
    async fn reconnect(&mut self, status: tonic::Status) -> Result<(), tonic::Status> {
        self.stream = None;
        if !is_retryable_status(&status) {
            return Err(status);
        }
        debug!(run = %self.key, writer = %self.writer_id, cause = %status, "append stream broke; reconnecting");
        let mut backoff = Backoff::new(self.limits.retry);
        loop {
            if !backoff.wait().await {
                return Err(tonic::Status::unavailable(format!(
                    "gave up reconnecting to the server: {}",
                    status.message()
                )));
            }
            match self.cursor().await {
                Ok(last) => {
                    self.acknowledge(last)?;
                    self.last_sent = last;
                    self.unsent_bytes = self.kept_bytes;
                    return Ok(());
                }
                Err(status) if is_retryable_status(&status) => {}
                Err(status) => return Err(status),
            }
        }
    }

    /// The last writer sequence number the run holds from this writer.
    async fn cursor(&mut self) -> Result<u64, tonic::Status> {
        let request = pb::GetWriterCursorRequest {
            task_id: self.key.task_id.clone(),
            run_id: self.key.run_id.clone(),
            writer_id: self.writer_id.clone(),
        };
        Ok(self
            .stub
            .get_writer_cursor(request)
            .await?
            .into_inner()
            .last_writer_seq)
    }

    /// Forgets the items up to `last`, which the server holds.
    ///
    /// A server that holds less than it acknowledged before lost entries
    /// (a machine crash without `--sync`); one that holds more than this
    /// writer sent has another writer with the same id. Both are errors
    /// that re-sending cannot mend, and saying so beats a gap error later.
    fn acknowledge(&mut self, last: u64) -> Result<(), tonic::Status> {
        if last < self.acked {
            return Err(tonic::Status::data_loss(format!(
                "the server holds the items of writer `{}` only up to {last}, but it had \
                 acknowledged up to {}: acknowledged entries were lost (a machine crash \
                 without --sync?)",
                self.writer_id, self.acked
            )));
        }
        if last > self.last_taken {
            return Err(tonic::Status::failed_precondition(format!(
                "the server holds items up to {last} from writer `{}`, more than it sent \
                 ({}): another writer uses the same writer id",
                self.writer_id, self.last_taken
            )));
        }
        self.acked = last;
        while let Some((item, size)) = self.kept.front() {
            if item.writer_seq > last {
                break;
            }
            self.kept_bytes -= size;
            if item.writer_seq > self.last_sent {
                self.unsent_bytes -= size;
            }
            self.kept.pop_front();
        }
        self.last_sent = self.last_sent.max(last);
        Ok(())
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits for the current call to end, or forever without one.
async fn wait_call(
    call: Option<&mut JoinHandle<Result<pb::AppendLogsResponse, tonic::Status>>>,
) -> Result<pb::AppendLogsResponse, tonic::Status> {
    match call {
        Some(call) => match call.await {
            Ok(result) => result,
            Err(err) => Err(tonic::Status::unavailable(format!(
                "the append call failed: {err}"
            ))),
        },
        None => std::future::pending().await,
    }
}
