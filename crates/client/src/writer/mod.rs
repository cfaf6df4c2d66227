//! The worker's handle on a run: appends lifecycle events and output,
//! batched, bounded, and carried across reconnections.
//!
//! A [`RunWriter`] hands items to a background task (see `session`)
//! through a bounded list that the task takes whole (see `inbox`). The task gives each item the writer's next sequence
//! number, sends items in batches on one Append stream, and keeps every
//! item until the server is known to hold it. When the stream breaks, it
//! asks the server what it holds from this writer and sends the rest again,
//! so an entry is never lost and never stored twice. The queue and the
//! kept items are bounded, so when the server is slow or away, calls wait.
//!
//! A spooled writer's handles write each item, numbered, to a spool file
//! instead (the child module `spool`), and never wait: the task reads the
//! file behind them and sends it the same way.
//!
//! The output writers, which turn a byte stream into chunks, are the child
//! module `output`; they use this module's queue and limits, and this
//! module only re-exports their names.

mod inbox;
mod masking;
mod output;
mod session;
mod spool;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
    time::Duration,
};

use baa_logging::config::limits::{
    DEFAULT_MAX_BATCH_ENTRIES, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_MESSAGE_BYTES,
};

use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::masking::SharedMasker;
pub use self::output::{AsyncOutputWriter, OutputWriter, Utf8Decoder};
pub use self::spool::SpoolOptions;
use self::{
    inbox::Inbox,
    masking::ItemMasker,
    session::{Command, Progress, Session, Spooled},
    spool::{Spool, SpoolHeader},
};
use crate::{
    ClientError, LoggingClient, NewRun, RetryPolicy, RunKey,
    backoff::Backoff,
    error::is_retryable_status,
    failover::Link,
    pb::{self, append_item::Payload},
    timestamp::now_iso,
};

/// How a [`RunWriter`] batches and buffers.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The writer's name, kept across reconnections and, to resume after a
    /// restart of the worker itself, across processes. `None`: a fresh
    /// name of host, process id and a random part.
    pub writer_id: Option<String>,
    /// How long an item may wait for others to share its message.
    pub linger: Duration,
    /// A message is sent once its items reach this many bytes.
    pub batch_bytes: usize,
    /// The most bytes of items held before the server confirms it stored
    /// them; appends wait beyond it.
    pub buffer_bytes: usize,
    /// How to wait between reconnection attempts.
    pub retry: RetryPolicy,
    /// A worker lease longer than the server's, for a worker that may be
    /// cut off from the server for a while (the server caps it with its
    /// `max_worker_lease`); `None`: the server's.
    pub lease: Option<Duration>,
    /// Values to mask: every later item is masked before it leaves the
    /// worker's memory (before the spool and the network), in the forms
    /// [`baa_logging_mask::Secrets`] lists. More can be added with
    /// [`RunWriter::add_secret`].
    pub secrets: baa_logging_mask::Secrets,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            writer_id: None,
            linger: Duration::from_millis(5),
            batch_bytes: 256 * 1024,
            buffer_bytes: 8 * 1024 * 1024,
            retry: RetryPolicy::default(),
            lease: None,
            secrets: baa_logging_mask::Secrets::new(),
        }
    }
}

/// What a finished run ended with.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The run's log summary, with everything this writer sent.
    pub summary: pb::LocalRunLogSummary,
    /// The run's final state.
    pub state: pb::RunStateSnapshot,
}

/// A worker's handle on one run. Cloning it is cheap; clones share one
/// writer id, one order and one connection.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), baa_logging_client::ClientError> {
/// use baa_logging_client::{Client, NewRun, WriterOptions, pb};
/// use serde_json::json;
///
/// let client = Client::connect("http://127.0.0.1:50051").await?;
/// let writer = client
///     .prepare_writer(NewRun::new("build", "run-1"), WriterOptions::default())
///     .await?;
/// writer.set_status(pb::RunStatus::Running).await?;
/// writer
///     .event(
///         pb::WorkerLifecycleEventType::WorkerStarted,
///         pb::LogLevel::Info,
///         "compiling",
///         json!({ "pid": 4242, "args": ["--release"] }),
///     )
///     .await?;
/// writer.stdout("Compiling baa-logging v0.1.0\n").await?;
/// let finished = writer.finish(pb::RunStatus::Completed, Some(0), None).await?;
/// println!("{} entries", finished.summary.total_entries);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RunWriter {
    /// Shared by all clones.
    inner: Arc<Inner>,
}

/// The shared part of a [`RunWriter`].
#[derive(Debug)]
struct Inner {
    /// The run.
    key: RunKey,
    /// This writer's name.
    writer_id: String,
    /// The connection, for unary calls, shared with the session and
    /// moved by either to the next server when its server fails.
    link: Link,
    /// Flushes and the end of the lease, to the session task.
    commands: mpsc::Sender<Command>,
    /// Items, to the session task of a writer that is not spooled.
    inbox: Arc<Inbox>,
    /// Why the session stopped, once it did.
    failure: Arc<Mutex<Option<tonic::Status>>>,
    /// The largest text or message of one entry the server takes.
    max_entry_bytes: usize,
    /// The largest event data, as JSON, the server takes.
    max_data_bytes: usize,
    /// How to retry state updates.
    retry: RetryPolicy,
    /// The spool, for a spooled writer, and what its session did.
    spool: Option<(Arc<Spool>, Arc<Progress>)>,
    /// The secrets the writer masks.
    masker: SharedMasker,
}

/// What a spooled writer delivered when it was closed: see
/// [`RunWriter::close_within`].
#[derive(Debug, Clone)]
pub struct SpoolReport {
    /// Whether the server holds everything and answered every state
    /// change, applying it or refusing it (see `refused`); the spool file
    /// is removed then.
    pub delivered: bool,
    /// The spool file, which is kept when not everything was delivered.
    pub path: PathBuf,
    /// Items written to the spool that the server is not known to hold.
    pub undelivered_entries: u64,
    /// Items dropped because the spool was full or its disk refused them,
    /// and their bytes; the run marks the place.
    pub dropped: (u64, u64),
    /// Why the disk refused a write, if it did.
    pub write_error: Option<String>,
    /// State changes the server refused, in words.
    pub refused: Vec<String>,
    /// Why the writer stopped, if it stopped for good.
    pub failure: Option<String>,
}

impl RunWriter {
    /// Attaches to `key`, which must exist; items go on after the last one
    /// the run holds from this writer id.
    pub(crate) async fn attach(
        link: Link,
        key: RunKey,
        options: WriterOptions,
    ) -> Result<Self, ClientError> {
        let writer_id = options.writer_id.clone().unwrap_or_else(default_writer_id);
        let info = retrying(options.retry, &link, |mut unary| async move {
            unary.get_server_info(pb::GetServerInfoRequest {}).await
        })
        .await?;
        let cursor = retrying(options.retry, &link, |mut unary| {
            let request = pb::GetWriterCursorRequest {
                task_id: key.task_id.clone(),
                run_id: key.run_id.clone(),
                writer_id: writer_id.clone(),
            };
            async move { unary.get_writer_cursor(request).await }
        })
        .await?;
        let limit = |value: u64, default: usize| match usize::try_from(value) {
            // A server that does not report a limit has the default.
            Ok(0) => default,
            Ok(value) => value,
            Err(_) => usize::MAX,
        };
        let max_message = limit(info.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        let max_entry_bytes = limit(info.max_entry_bytes, DEFAULT_MAX_ENTRY_BYTES);
        // Servers from before the data limit enforced only the entry limit
        // on event data.
        let max_data_bytes = limit(info.max_data_bytes, max_entry_bytes);
        let max_batch_entries = limit(info.max_batch_entries, DEFAULT_MAX_BATCH_ENTRIES);
        let batch_bytes = options.batch_bytes.clamp(1, (max_message / 2).max(1));
        let failure = Arc::new(Mutex::new(None));
        let masker = SharedMasker::new(options.secrets.clone());
        let (commands, receiver) = mpsc::channel(32);
        // A batch's worth of items waits here, on top of the session's
        // buffer: the handles fill the next batch while the session sends
        // the last.
        let inbox = Arc::new(Inbox::new(batch_bytes, batch_bytes, max_batch_entries));
        let session = Session::new(
            link.clone(),
            key.clone(),
            writer_id.clone(),
            cursor.last_writer_seq,
            session::Limits {
                linger: options.linger,
                batch_bytes,
                batch_items: max_batch_entries,
                buffer_bytes: options.buffer_bytes.max(batch_bytes),
                retry: options.retry,
                heartbeat: session::Limits::heartbeat_for(info.worker_lease_ms),
                lease_ms: lease_ms(options.lease),
            },
            receiver,
            inbox.clone(),
            failure.clone(),
            None,
            Some(ItemMasker::new(masker.clone(), max_entry_bytes)),
            Some(masker.clone()),
        );
        tokio::spawn(session.run());
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                writer_id,
                link,
                commands,
                inbox,
                failure,
                max_entry_bytes,
                max_data_bytes,
                retry: options.retry,
                spool: None,
                masker,
            }),
        })
    }

    /// A spooled writer on a new spool at `spool.path`, which never waits
    /// for the server: with `prepare`, the run is prepared once the server
    /// answers; without, `key` must exist by then. Its items are numbered
    /// after `after`, the last the run holds from this writer. Contacts
    /// nobody.
    pub(crate) fn spooled(
        link: Link,
        key: RunKey,
        prepare: Option<NewRun>,
        options: WriterOptions,
        spool: &SpoolOptions,
        after: u64,
    ) -> Result<Self, ClientError> {
        let masker = SharedMasker::new(options.secrets.clone());
        let header = SpoolHeader {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
            writer_id: options.writer_id.clone().unwrap_or_else(default_writer_id),
            prepare: prepare.map(|run| mask_prepare(&masker, run.into_request())),
            first_after: after,
        };
        let spool = Spool::create(
            spool,
            &header,
            ItemMasker::new(masker.clone(), DEFAULT_MAX_ENTRY_BYTES),
        )
        .map_err(|err| ClientError::InvalidInput {
            what: "spool",
            reason: format!("cannot create {}: {err}", spool.path.display()),
        })?;
        Self::over_spool(link, header, spool, &options, masker)
    }

    /// A spooled writer over the spool at `path`, written earlier by
    /// another process, to deliver what it holds.
    pub(crate) fn resume(
        link: Link,
        path: &Path,
        options: WriterOptions,
    ) -> Result<Self, ClientError> {
        let masker = SharedMasker::new(options.secrets.clone());
        let (spool, header) = Spool::open(
            path,
            u64::MAX,
            ItemMasker::new(masker.clone(), DEFAULT_MAX_ENTRY_BYTES),
        )
        .map_err(|err| ClientError::InvalidInput {
            what: "spool",
            reason: err.to_string(),
        })?;
        Self::over_spool(link, header, spool, &options, masker)
    }

    /// Starts the session of a spooled writer.
    fn over_spool(
        link: Link,
        header: SpoolHeader,
        spool: Spool,
        options: &WriterOptions,
        masker: SharedMasker,
    ) -> Result<Self, ClientError> {
        let key = header.key();
        let spool = Arc::new(spool);
        let progress = Arc::new(Progress::default());
        let failure = Arc::new(Mutex::new(None));
        let (commands, receiver) = mpsc::channel(32);
        // The handles of a spooled writer put items in its spool instead.
        let inbox = Arc::new(Inbox::new(1, 1, 1));
        let reader = spool.reader().map_err(|err| ClientError::InvalidInput {
            what: "spool",
            reason: format!("cannot read {}: {err}", spool.path().display()),
        })?;
        let session = Session::new(
            link.clone(),
            key.clone(),
            header.writer_id.clone(),
            header.first_after,
            session::Limits {
                linger: options.linger,
                batch_bytes: options.batch_bytes.clamp(1, DEFAULT_MAX_MESSAGE_BYTES / 2),
                batch_items: DEFAULT_MAX_BATCH_ENTRIES,
                buffer_bytes: options.buffer_bytes.max(options.batch_bytes),
                retry: options.retry,
                heartbeat: None,
                lease_ms: lease_ms(options.lease),
            },
            receiver,
            inbox.clone(),
            failure.clone(),
            Some(Spooled::new(
                spool.clone(),
                reader,
                header.prepare.clone(),
                progress.clone(),
            )),
            // A spooled writer masks under its spool's lock.
            None,
            Some(masker.clone()),
        );
        tokio::spawn(session.run());
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                writer_id: header.writer_id,
                link,
                commands,
                inbox,
                failure,
                // Until the server says otherwise, its limits are the
                // defaults it starts with.
                max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
                max_data_bytes: DEFAULT_MAX_ENTRY_BYTES,
                retry: options.retry,
                spool: Some((spool, progress)),
                masker,
            }),
        })
    }

    /// Registers one more value to mask in every later item; see
    /// [`baa_logging_mask::Secrets::add`] for the rules (at least 8 bytes;
    /// empty values ignored; each line of a multi-line value on its own).
    ///
    /// # Errors
    ///
    /// A value too short or too long; the message never holds the value.
    pub fn add_secret(
        &self,
        value: &str,
    ) -> Result<baa_logging_mask::Added, baa_logging_mask::SecretError> {
        self.inner.masker.add(value)
    }

    /// The spool, for a spooled writer.
    pub(crate) fn spool(&self) -> Option<&Spool> {
        self.inner.spool.as_ref().map(|(spool, _)| spool.as_ref())
    }

    /// The spool file of a spooled writer.
    pub fn spool_path(&self) -> Option<&Path> {
        self.spool().map(Spool::path)
    }

    /// Whether a spooled writer is waiting for the server to come back.
    pub fn server_away(&self) -> bool {
        self.inner
            .spool
            .as_ref()
            .is_some_and(|(_, progress)| progress.away.load(Ordering::Relaxed))
    }

    /// Queues a state change behind everything appended so far, without
    /// waiting: a spooled writer applies it once the items before it are
    /// stored. A writer that is not spooled applies it now, as
    /// [`RunWriter::update_state`] does.
    ///
    /// # Errors
    ///
    /// As for [`RunWriter::update_state`], for a writer that is not
    /// spooled.
    pub async fn queue_state(&self, patch: pb::RunStatePatch) -> Result<(), ClientError> {
        match self.spool() {
            Some(spool) => {
                spool.push_patch(patch);
                Ok(())
            }
            None => self.update_state(patch).await.map(drop),
        }
    }

    /// Waits at most `limit` for a spooled writer's server to hold
    /// everything written and to apply every state change, and says what
    /// it delivered. The spool file is removed when everything was; it is
    /// kept, and made durable, when not, for
    /// [`Client::resume_spool`](crate::Client::resume_spool).
    ///
    /// # Panics
    ///
    /// For a writer that is not spooled.
    pub async fn close_within(self, limit: Duration) -> SpoolReport {
        let (spool, progress) = self
            .inner
            .spool
            .clone()
            .expect("close_within is for spooled writers");
        let flushed = tokio::time::timeout(limit, self.flush()).await;
        let failure = match flushed {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!("the server did not take it within {limit:?}")),
        };
        let refused = progress
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (dropped_entries, dropped_bytes, write_error) = spool.losses();
        let acked = progress.acked.load(Ordering::Relaxed);
        let delivered = failure.is_none();
        if delivered {
            let _ = spool.remove();
        } else {
            let _ = spool.sync();
        }
        SpoolReport {
            delivered,
            path: spool.path().to_owned(),
            undelivered_entries: if delivered {
                0
            } else {
                spool.last_seq().saturating_sub(acked)
            },
            dropped: (dropped_entries, dropped_bytes),
            write_error,
            refused,
            failure,
        }
    }

    /// The run this writer appends to.
    pub fn key(&self) -> &RunKey {
        &self.inner.key
    }

    /// This writer's name, which the server keys its cursor by.
    pub fn writer_id(&self) -> &str {
        &self.inner.writer_id
    }

    /// Appends a lifecycle event, stamped with the current time. `data` is
    /// a JSON object (a `json!({...})` literal) or `null` for none.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] for data that is not an object or an
    /// entry over the server's limit, or the error that stopped the writer.
    pub async fn event(
        &self,
        event_type: pb::WorkerLifecycleEventType,
        level: pb::LogLevel,
        message: impl Into<String>,
        data: Json,
    ) -> Result<(), ClientError> {
        let data = match data {
            Json::Null => None,
            Json::Object(object) => {
                let size = serde_json::to_vec(&object).map_or(0, |json| json.len());
                if size > self.inner.max_data_bytes {
                    return Err(ClientError::InvalidInput {
                        what: "event data",
                        reason: format!(
                            "it is {size} bytes as JSON, over the server's max_data_bytes ({})",
                            self.inner.max_data_bytes
                        ),
                    });
                }
                Some(baa_logging::json::to_struct(&object))
            }
            other => {
                return Err(ClientError::InvalidInput {
                    what: "event data",
                    reason: format!("it must be a JSON object or null, not {other}"),
                });
            }
        };
        let message = message.into();
        self.check_size("event message", message.len())?;
        self.send(Payload::Event(pb::WorkerLifecycleEventInput {
            r#type: event_type as i32,
            level: level as i32,
            message,
            created_at: Some(now_iso()),
            data,
        }))
        .await
    }

    /// Appends a chunk of standard output, stamped with the current time.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] for text over the server's limit, or
    /// the error that stopped the writer.
    pub async fn stdout(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.chunk(pb::StreamLogChannel::Stdout, text.into()).await
    }

    /// Appends a chunk of standard error, stamped with the current time.
    ///
    /// # Errors
    ///
    /// As for [`RunWriter::stdout`].
    pub async fn stderr(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.chunk(pb::StreamLogChannel::Stderr, text.into()).await
    }

    /// Waits until the server holds everything appended so far, and
    /// returns the run's log summary.
    ///
    /// # Errors
    ///
    /// The error that stopped the writer.
    pub async fn flush(&self) -> Result<pb::LocalRunLogSummary, ClientError> {
        let (reply, response) = oneshot::channel();
        let command = match self.spool() {
            Some(spool) => {
                // What the masking holds back goes in before the end is
                // taken.
                spool.release_held();
                Command::FlushTo(spool.end(), reply)
            }
            None => Command::Flush(reply),
        };
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| self.stopped())?;
        match response.await {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(status)) => Err(ClientError::Status(status)),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Applies `patch` to the run's state once everything appended before
    /// is stored, and returns the new state. A change that broke off in
    /// transit is retried; one the server already applied is not an error.
    ///
    /// # Errors
    ///
    /// The server's refusal (a move the status rules forbid is
    /// `FAILED_PRECONDITION`), or the error that stopped the writer.
    pub async fn update_state(
        &self,
        patch: pb::RunStatePatch,
    ) -> Result<pb::RunStateSnapshot, ClientError> {
        if let Some(spool) = self.spool() {
            let refused = self.refusals();
            spool.push_patch(patch);
            self.flush().await?;
            self.refused_since(refused)?;
            return self.current_state().await;
        }
        self.flush().await?;
        let patch = self.inner.masker.mask_patch(patch);
        let ends = is_final(&patch);
        let state = update_state_retrying(
            &self.inner.link,
            &self.inner.key,
            &self.inner.writer_id,
            patch,
            self.inner.retry,
        )
        .await?;
        if ends {
            let _ = self.inner.commands.send(Command::Ended).await;
        }
        Ok(state)
    }

    /// How many state changes of a spooled writer the server refused.
    fn refusals(&self) -> usize {
        self.inner.spool.as_ref().map_or(0, |(_, progress)| {
            progress
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        })
    }

    /// The refusal of a state change after the first `before`, as an
    /// error, if there is one.
    fn refused_since(&self, before: usize) -> Result<(), ClientError> {
        let Some((_, progress)) = &self.inner.spool else {
            return Ok(());
        };
        let refused = progress
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match refused.get(before..).and_then(<[String]>::last) {
            Some(message) => Err(tonic::Status::failed_precondition(message.clone()).into()),
            None => Ok(()),
        }
    }

    /// The run's state as the server holds it.
    async fn current_state(&self) -> Result<pb::RunStateSnapshot, ClientError> {
        run_state(&self.inner.link, &self.inner.key)
            .await?
            .ok_or_else(|| tonic::Status::internal("the reply holds no state").into())
    }

    /// Moves the run to `status`; see [`RunWriter::update_state`].
    ///
    /// # Errors
    ///
    /// As for [`RunWriter::update_state`].
    pub async fn set_status(
        &self,
        status: pb::RunStatus,
    ) -> Result<pb::RunStateSnapshot, ClientError> {
        self.update_state(pb::RunStatePatch {
            status: Some(status as i32),
            ..Default::default()
        })
        .await
    }

    /// Stores everything appended, then records the run's final `status`
    /// (with the process's exit code and a summary, if given), and returns
    /// the final log summary and state. A run still `prepared` passes
    /// through `running` first.
    ///
    /// # Errors
    ///
    /// As for [`RunWriter::update_state`].
    pub async fn finish(
        self,
        status: pb::RunStatus,
        exit_code: Option<i32>,
        summary: Option<String>,
    ) -> Result<Finished, ClientError> {
        let patch = pb::RunStatePatch {
            status: Some(status as i32),
            exit_code,
            summary,
            ..Default::default()
        };
        if let Some(spool) = self.spool() {
            let refused = self.refusals();
            spool.push_patch(patch);
            let log_summary = self.flush().await?;
            self.refused_since(refused)?;
            let state = self.current_state().await?;
            return Ok(Finished {
                summary: log_summary,
                state,
            });
        }
        let log_summary = self.flush().await?;
        let patch = self.inner.masker.mask_patch(patch);
        let state = update_state_via_running(
            &self.inner.link,
            &self.inner.key,
            &self.inner.writer_id,
            patch,
            self.inner.retry,
        )
        .await?;
        let _ = self.inner.commands.send(Command::Ended).await;
        Ok(Finished {
            summary: log_summary,
            state,
        })
    }

    /// Appends an output chunk.
    async fn chunk(&self, channel: pb::StreamLogChannel, text: String) -> Result<(), ClientError> {
        self.check_size("output chunk", text.len())?;
        self.send(chunk_payload(channel, text)).await
    }

    /// Refuses an entry the server would refuse, before it is queued, so
    /// that one bad call does not stop the writer.
    fn check_size(&self, what: &'static str, len: usize) -> Result<(), ClientError> {
        if len > self.inner.max_entry_bytes {
            return Err(ClientError::InvalidInput {
                what,
                reason: format!(
                    "it is {len} bytes, over the server's max_entry_bytes ({})",
                    self.inner.max_entry_bytes
                ),
            });
        }
        Ok(())
    }

    /// Queues an item, waiting while the queue is full; a spooled writer
    /// writes it to its spool and never waits.
    async fn send(&self, payload: Payload) -> Result<(), ClientError> {
        if let Some(spool) = self.spool() {
            spool.push_item(payload);
            return Ok(());
        }
        self.inner
            .inbox
            .push(payload)
            .await
            .map_err(|_| self.stopped())
    }

    /// Queues an item from a thread outside the runtime.
    fn send_blocking(&self, payload: Payload) -> Result<(), ClientError> {
        if let Some(spool) = self.spool() {
            spool.push_item(payload);
            return Ok(());
        }
        futures::executor::block_on(self.inner.inbox.push(payload)).map_err(|_| self.stopped())
    }

    /// The largest output chunk the server takes, for the output writers.
    fn max_entry_bytes(&self) -> usize {
        self.inner.max_entry_bytes
    }

    /// The queue, for the async output writer.
    fn inbox(&self) -> &Arc<Inbox> {
        &self.inner.inbox
    }

    /// The error that stopped the session.
    fn stopped(&self) -> ClientError {
        // A poisoned slot is whole; see the crate's `# Locking` section.
        let failure = self
            .inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match failure {
            Some(status) => ClientError::Status(status),
            None => ClientError::WriterClosed("the writer's task has ended".into()),
        }
    }
}

/// A run to prepare with the metadata a reader sees as text (its command
/// and prompt summary) masked.
pub(crate) fn mask_prepare(
    masker: &SharedMasker,
    mut request: pb::PrepareRunRequest,
) -> pb::PrepareRunRequest {
    if let Some(metadata) = &mut request.metadata {
        for field in [&mut metadata.command, &mut metadata.prompt_summary] {
            *field = field.as_ref().map(|text| masker.mask_text(text));
        }
    }
    request
}

/// A lease asked for, in the protocol's milliseconds (0: the server's).
fn lease_ms(lease: Option<Duration>) -> u64 {
    lease.map_or(0, |lease| {
        u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Whether `patch` gives the run its final status.
pub(crate) fn is_final(patch: &pb::RunStatePatch) -> bool {
    patch
        .status
        .and_then(|status| pb::RunStatus::try_from(status).ok())
        .is_some_and(|status| {
            matches!(
                status,
                pb::RunStatus::Completed | pb::RunStatus::Failed | pb::RunStatus::Blocked
            )
        })
}

/// An output chunk stamped with the current time.
fn chunk_payload(channel: pb::StreamLogChannel, text: String) -> Payload {
    let chunk = pb::StreamChunkInput {
        text,
        created_at: Some(now_iso()),
    };
    match channel {
        pb::StreamLogChannel::Stderr => Payload::Stderr(chunk),
        _ => Payload::Stdout(chunk),
    }
}

/// Applies a state patch, retrying while the server is away (on the next
/// server, when the link has several and its server failed). When an
/// earlier attempt went through but its answer was lost, the retry finds
/// the run already in the wanted status, which is success: the server
/// refuses a second final status with `FAILED_PRECONDITION`, so such a
/// refusal of a retry is checked against the run's state.
pub(crate) async fn update_state_retrying(
    link: &Link,
    key: &RunKey,
    writer_id: &str,
    patch: pb::RunStatePatch,
    retry: RetryPolicy,
) -> Result<pb::RunStateSnapshot, ClientError> {
    let mut backoff = Backoff::new(retry);
    let mut retried = false;
    let mut current = link.current();
    loop {
        let request = pb::UpdateRunStateRequest {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
            writer_id: writer_id.to_owned(),
            patch: Some(patch.clone()),
        };
        let status = match current.stub.clone().update_run_state(request).await {
            Ok(response) => {
                return response
                    .into_inner()
                    .state
                    .ok_or_else(|| tonic::Status::internal("the reply holds no state").into());
            }
            Err(status) => status,
        };
        if retried && status.code() == tonic::Code::FailedPrecondition {
            if let Some(state) = run_state(link, key).await? {
                if patch.status.is_none_or(|wanted| wanted == state.status) {
                    return Ok(state);
                }
            }
        }
        if !is_retryable_status(&status) || !backoff.wait().await {
            return Err(status.into());
        }
        current = link.fail_over(&current, &status).await;
        retried = true;
    }
}

/// Applies `patch` as [`update_state_retrying`] does; a run that was never
/// marked running ran all the same, so when the move is refused it passes
/// through `running` on the way (and the first refusal stands if that is
/// refused too).
pub(crate) async fn update_state_via_running(
    link: &Link,
    key: &RunKey,
    writer_id: &str,
    patch: pb::RunStatePatch,
    retry: RetryPolicy,
) -> Result<pb::RunStateSnapshot, ClientError> {
    match update_state_retrying(link, key, writer_id, patch.clone(), retry).await {
        Err(err) if err.code() == Some(tonic::Code::FailedPrecondition) => {
            let running = pb::RunStatePatch {
                status: Some(pb::RunStatus::Running as i32),
                ..Default::default()
            };
            if update_state_retrying(link, key, writer_id, running, retry)
                .await
                .is_err()
            {
                return Err(err);
            }
            update_state_retrying(link, key, writer_id, patch, retry).await
        }
        result => result,
    }
}

/// The run's state as the server holds it, if the reply has one.
pub(crate) async fn run_state(
    link: &Link,
    key: &RunKey,
) -> Result<Option<pb::RunStateSnapshot>, tonic::Status> {
    let run = link
        .stub()
        .get_run(pb::GetRunRequest {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
        })
        .await?
        .into_inner();
    Ok(run.run.and_then(|run| run.state))
}

/// Calls `call` until it succeeds, fails for good, or the policy gives up;
/// after a failure of the server, on the next one.
async fn retrying<T, F, Fut>(retry: RetryPolicy, link: &Link, mut call: F) -> Result<T, ClientError>
where
    F: FnMut(LoggingClient) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut backoff = Backoff::new(retry);
    let mut current = link.current();
    loop {
        match call(current.stub.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if is_retryable_status(&status) && backoff.wait().await => {
                current = link.fail_over(&current, &status).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// A writer name unlikely to be shared: host, process id, random part.
fn default_writer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| {
            host.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(48)
                .collect::<String>()
        })
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}
