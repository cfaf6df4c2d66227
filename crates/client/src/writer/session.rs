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
//!
//! While the run is not finished, the task keeps a stream open, with a
//! heartbeat message when it is idle: an open stream holds the run's
//! worker lease, so the server knows the worker is alive.
//!
//! A spooled writer's task takes its items from the spool file (see
//! `spool`) instead of the queue, so its handles never wait; state changes
//! are in the spool too, and are applied in their place once the items
//! before them are stored. It waits for the server as long as it takes.
//!
//! A reconnection goes through the writer's link (see `failover`): when
//! the stream broke because its server failed and the client has others,
//! the task asks the next server for the cursor and sends the rest there.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
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

use super::{
    inbox::Inbox,
    masking::{ItemMasker, SharedMasker},
    spool::{Record, Spool, SpoolReader},
};
use crate::{
    RetryPolicy, RunKey,
    backoff::Backoff,
    error::is_retryable_status,
    failover::{Current, Link},
    pb::{self, append_item::Payload},
};

/// What a handle asks of the task, besides items (which come through the
/// [`Inbox`]).
#[derive(Debug)]
pub(crate) enum Command {
    /// Reply once everything queued before is stored.
    Flush(oneshot::Sender<Result<pb::LocalRunLogSummary, tonic::Status>>),
    /// For a spooled writer: reply once everything before this logical
    /// offset of the spool is delivered (items stored, changes applied).
    FlushTo(
        u64,
        oneshot::Sender<Result<pb::LocalRunLogSummary, tonic::Status>>,
    ),
    /// The run reached its final status: stop holding its lease.
    Ended,
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
    /// How often to send a heartbeat on an idle stream, which holds the
    /// run's worker lease; `None` for a server without leases.
    pub(crate) heartbeat: Option<Duration>,
    /// The lease this writer asks for, in milliseconds; 0: the server's.
    pub(crate) lease_ms: u64,
}

impl Limits {
    /// The heartbeat for a server whose lease is `lease_ms`: a third of
    /// it, so that two lost beats do not cost the lease, within bounds.
    pub(crate) fn heartbeat_for(lease_ms: u64) -> Option<Duration> {
        (lease_ms > 0).then(|| {
            (Duration::from_millis(lease_ms) / 3)
                .clamp(Duration::from_millis(100), Duration::from_secs(20))
        })
    }
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

/// An item the server is not known to hold.
#[derive(Debug)]
struct Kept {
    /// The item.
    item: pb::AppendItem,
    /// Its encoded size.
    size: usize,
    /// For a spooled writer, the logical offset of its record.
    start: u64,
}

/// A state change of a spooled writer, waiting for the items before it.
#[derive(Debug)]
struct Barrier {
    /// The change.
    patch: pb::RunStatePatch,
    /// The last item before it.
    after_seq: u64,
    /// The logical offset of its record.
    start: u64,
}

/// What a spooled writer's handles can see of its session.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Whether the server is away: the session is waiting to reconnect.
    pub(crate) away: AtomicBool,
    /// The last writer sequence number the server holds.
    pub(crate) acked: AtomicU64,
    /// State changes the server refused, in words.
    pub(crate) refused: Mutex<Vec<String>>,
}

/// The part of a session that only a spooled writer has.
#[derive(Debug)]
pub(crate) struct Spooled {
    /// The spool, shared with the handles.
    pub(crate) spool: Arc<Spool>,
    /// Reads the spool behind the handles.
    pub(crate) reader: SpoolReader,
    /// The run to prepare before the first append, if any.
    pub(crate) prepare: Option<pb::PrepareRunRequest>,
    /// Whether the server answered since the session started.
    pub(crate) connected: bool,
    /// What the handles see.
    pub(crate) progress: Arc<Progress>,
    /// State changes waiting for the items before them.
    barriers: VecDeque<Barrier>,
    /// Flushes waiting for an offset to be delivered.
    waiters: Vec<(
        u64,
        oneshot::Sender<Result<pb::LocalRunLogSummary, tonic::Status>>,
    )>,
    /// The summary of the last stream closed.
    summary: pb::LocalRunLogSummary,
    /// Whether every handle is gone.
    closing: bool,
}

impl Spooled {
    /// The spooled part of a new session.
    pub(crate) fn new(
        spool: Arc<Spool>,
        reader: SpoolReader,
        prepare: Option<pb::PrepareRunRequest>,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            spool,
            reader,
            prepare,
            connected: false,
            progress,
            barriers: VecDeque::new(),
            waiters: Vec::new(),
            summary: pb::LocalRunLogSummary::default(),
            closing: false,
        }
    }
}

/// One writer's session with the server.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection shared with the writer's handles, and the servers
    /// to move to.
    link: Link,
    /// The connection this task calls through; replaced after its server
    /// failed.
    current: Current,
    /// The run.
    key: RunKey,
    /// This writer's name.
    writer_id: String,
    /// Limits.
    limits: Limits,
    /// Commands from the handles.
    commands: mpsc::Receiver<Command>,
    /// Items from the handles of a writer that is not spooled.
    inbox: Arc<Inbox>,
    /// The items last taken from the inbox; kept for its allocation.
    taken: Vec<Payload>,
    /// Why the session stopped, for the handles to report.
    failure: Arc<Mutex<Option<tonic::Status>>>,
    /// Items the server is not known to hold, in order.
    kept: VecDeque<Kept>,
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
    /// When the current stream last carried a message.
    last_message: Instant,
    /// Whether the run has its final status: the lease is not held then.
    ended: bool,
    /// The spool, for a spooled writer.
    spooled: Option<Spooled>,
    /// The masking of items, for a writer that is not spooled (a spooled
    /// writer masks under its spool's lock).
    masking: Option<ItemMasker>,
    /// The writer's secrets, registered with the server on every stream.
    secrets: Option<SharedMasker>,
}

impl Session {
    /// A session that goes on after `last_writer_seq`, the last item the
    /// run holds from this writer (for a spooled writer, the last item
    /// before its spool, until the server says more).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        link: Link,
        key: RunKey,
        writer_id: String,
        last_writer_seq: u64,
        limits: Limits,
        commands: mpsc::Receiver<Command>,
        inbox: Arc<Inbox>,
        failure: Arc<Mutex<Option<tonic::Status>>>,
        spooled: Option<Spooled>,
        masking: Option<ItemMasker>,
        secrets: Option<SharedMasker>,
    ) -> Self {
        Self {
            current: link.current(),
            link,
            key,
            writer_id,
            limits,
            commands,
            inbox,
            taken: Vec::new(),
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
            last_message: Instant::now(),
            ended: false,
            spooled,
            masking,
            secrets,
        }
    }

    /// Runs until every handle is gone (after a last flush) or an error
    /// that retrying cannot cure.
    pub(crate) async fn run(mut self) {
        let served = if self.spooled.is_some() {
            self.serve_spooled().await
        } else {
            self.serve().await
        };
        if let Err(status) = served {
            warn!(run = %self.key, writer = %self.writer_id, cause = %status, "the writer stopped");
            // A poisoned slot is whole; see the crate's `# Locking` section.
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
            if let Some(spooled) = &mut self.spooled {
                for (_, reply) in spooled.waiters.drain(..) {
                    let _ = reply.send(Err(status.clone()));
                }
            }
            // Tell waiting flushes, and refuse what is still queued.
            self.inbox.close();
            self.commands.close();
            while let Some(command) = self.commands.recv().await {
                if let Command::Flush(reply) | Command::FlushTo(_, reply) = command {
                    let _ = reply.send(Err(status.clone()));
                }
            }
        }
    }

    /// The command loop of a writer whose handles wait for it.
    async fn serve(&mut self) -> Result<(), tonic::Status> {
        loop {
            self.hold_lease();
            let full = self.kept_bytes >= self.limits.buffer_bytes;
            let send_by = self.send_by;
            let beat = self.next_beat();
            let held = self
                .masking
                .as_ref()
                .and_then(ItemMasker::next_due)
                .map(Instant::from_std);
            let inbox_due = if full {
                None
            } else {
                self.inbox.due(self.limits.linger)
            };
            let call = self.stream.as_mut().map(|stream| &mut stream.call);
            tokio::select! {
                command = self.commands.recv(), if !full => match command {
                    Some(Command::Flush(reply) | Command::FlushTo(_, reply)) => {
                        self.take_inbox();
                        self.release_held();
                        let result = self.flush().await;
                        let stop = result.as_ref().err().cloned();
                        let _ = reply.send(result);
                        if let Some(status) = stop {
                            return Err(status);
                        }
                    }
                    Some(Command::Ended) => self.end_lease(),
                    None => {
                        self.take_inbox();
                        self.release_held();
                        self.flush().await?;
                        return Ok(());
                    }
                },
                // A handle put the first item of a batch in, or filled
                // one: the next turn knows when the inbox is due.
                () = self.inbox.rung(), if !full => {}
                () = sleep_until(inbox_due), if inbox_due.is_some() => {
                    let since = self.take_inbox();
                    self.send_batches(since).await?;
                }
                () = sleep_until(send_by), if send_by.is_some() => self.send_unsent().await?,
                () = sleep_until(beat), if beat.is_some() => self.beat().await?,
                () = sleep_until(held), if held.is_some() => {
                    let due = self
                        .masking
                        .as_mut()
                        .map(|masking| masking.release_due(Instant::now().into_std()))
                        .unwrap_or_default();
                    self.number(due);
                }
                () = tokio::time::sleep(self.full_poll), if full => self.poll_full().await?,
                ended = wait_call(call) => self.stream_ended(ended).await?,
            }
        }
    }

    /// Takes every item in the inbox, masks, numbers and keeps them;
    /// returns when the first of them was put in.
    fn take_inbox(&mut self) -> Option<Instant> {
        let mut taken = std::mem::take(&mut self.taken);
        let since = self.inbox.take(&mut taken);
        if let Some(masking) = &mut self.masking {
            masking.mask_all(&mut taken);
        }
        self.number(taken.drain(..));
        self.taken = taken;
        since
    }

    /// After taking the inbox, whose first item came at `since`: sends
    /// every unsent item once that has waited the linger, else only the
    /// full batches among them; the rest, less than a batch, goes at the
    /// end of that item's linger at the latest.
    async fn send_batches(&mut self, since: Option<Instant>) -> Result<(), tonic::Status> {
        let Some(due) = since.map(|since| since + self.limits.linger) else {
            return Ok(());
        };
        let all = due <= Instant::now();
        while let Err(status) = self.try_send(all).await {
            self.reconnect(status).await?;
        }
        self.send_by = match self.send_by {
            _ if self.unsent_bytes == 0 => None,
            Some(send_by) => Some(send_by.min(due)),
            None => Some(due),
        };
        if self.kept_bytes >= self.limits.buffer_bytes / 2 {
            self.trim().await?;
        }
        Ok(())
    }

    /// Numbers `payloads` in order and keeps them.
    fn number(&mut self, payloads: impl IntoIterator<Item = Payload>) {
        for payload in payloads {
            self.last_taken += 1;
            let item = pb::AppendItem {
                writer_seq: self.last_taken,
                payload: Some(payload),
            };
            self.take(item, 0);
        }
    }

    /// Takes what the masking holds back, before a flush or the end.
    fn release_held(&mut self) {
        let held = self
            .masking
            .as_mut()
            .map(ItemMasker::release_all)
            .unwrap_or_default();
        self.number(held);
    }

    /// The loop of a spooled writer: its handles write the spool and never
    /// wait; the session reads the spool behind them and delivers it.
    async fn serve_spooled(&mut self) -> Result<(), tonic::Status> {
        loop {
            self.connect_spooled().await?;
            self.fill()?;
            if self.unsent_bytes >= self.limits.batch_bytes {
                self.send_unsent().await?;
            }
            if self.barrier_due() {
                self.cross_barrier().await?;
                continue;
            }
            if self.answer_waiters().await? {
                continue;
            }
            let spooled = self.spooled.as_ref().expect("a spooled session");
            if spooled.closing && self.delivered() >= spooled.spool.end() {
                self.flush().await?;
                self.end_lease();
                return Ok(());
            }
            self.compact();
            self.hold_lease();
            let spooled = self.spooled.as_mut().expect("a spooled session");
            let closing = spooled.closing;
            let spool = spooled.spool.clone();
            let full = self.kept_bytes >= self.limits.buffer_bytes;
            let send_by = self.send_by;
            let beat = self.next_beat();
            let held = spool.next_due().map(Instant::from_std);
            let call = self.stream.as_mut().map(|stream| &mut stream.call);
            tokio::select! {
                () = spool.written.notified(), if !full => {}
                () = sleep_until(held), if held.is_some() => spool.release_due(),
                command = self.commands.recv(), if !closing => self.spooled_command(command),
                () = sleep_until(send_by), if send_by.is_some() => self.send_unsent().await?,
                () = sleep_until(beat), if beat.is_some() => self.beat().await?,
                () = tokio::time::sleep(self.full_poll), if full => self.poll_full().await?,
                ended = wait_call(call) => self.stream_ended(ended).await?,
            }
        }
    }

    /// Takes a handle's command to a spooled session.
    fn spooled_command(&mut self, command: Option<Command>) {
        let spooled = self.spooled.as_mut().expect("a spooled session");
        match command {
            Some(Command::Flush(reply)) => {
                let end = spooled.spool.end();
                spooled.waiters.push((end, reply));
            }
            Some(Command::FlushTo(offset, reply)) => spooled.waiters.push((offset, reply)),
            Some(Command::Ended) => self.end_lease(),
            None => {
                // The last handle is gone: nothing will join a held tail.
                spooled.spool.release_held();
                spooled.closing = true;
            }
        }
    }

    /// Until the server answers for the first time: prepares the run if
    /// the spool says so, learns the server's limits and what the run
    /// holds from this writer. Waits as long as the server is away.
    async fn connect_spooled(&mut self) -> Result<(), tonic::Status> {
        let spooled = self.spooled.as_ref().expect("a spooled session");
        if spooled.connected {
            return Ok(());
        }
        let progress = spooled.progress.clone();
        let mut backoff = Backoff::new(RetryPolicy {
            give_up_after: None,
            ..self.limits.retry
        });
        loop {
            match self.try_connect().await {
                Ok(()) => break,
                Err(status) if is_retryable_status(&status) => {
                    progress.away.store(true, Ordering::Relaxed);
                    debug!(run = %self.key, cause = %status, "the server is away; spooling");
                    backoff.wait().await;
                    self.fail_over(&status).await;
                }
                Err(status) => return Err(status),
            }
        }
        progress.away.store(false, Ordering::Relaxed);
        self.spooled.as_mut().expect("a spooled session").connected = true;
        Ok(())
    }

    /// One attempt of [`Session::connect_spooled`].
    async fn try_connect(&mut self) -> Result<(), tonic::Status> {
        let spooled = self.spooled.as_mut().expect("a spooled session");
        if let Some(prepare) = spooled.prepare.clone() {
            self.current.stub.clone().prepare_run(prepare).await?;
            self.spooled.as_mut().expect("a spooled session").prepare = None;
        }
        let info = self
            .current
            .stub
            .clone()
            .get_server_info(pb::GetServerInfoRequest {})
            .await?
            .into_inner();
        if info.max_batch_entries > 0 {
            self.limits.batch_items = usize::try_from(info.max_batch_entries).unwrap_or(usize::MAX);
        }
        if info.max_message_bytes > 0 {
            let half = usize::try_from(info.max_message_bytes / 2).unwrap_or(usize::MAX);
            self.limits.batch_bytes = self.limits.batch_bytes.min(half.max(1));
        }
        self.limits.heartbeat = Limits::heartbeat_for(info.worker_lease_ms);
        let last = self.cursor().await?;
        self.acknowledge(last)?;
        self.last_sent = self.last_sent.max(last);
        Ok(())
    }

    /// Reads what the handles wrote to the spool, as far as the buffer
    /// allows: items to keep and send, state changes to apply in order.
    fn fill(&mut self) -> Result<(), tonic::Status> {
        loop {
            let spooled = self.spooled.as_mut().expect("a spooled session");
            let end = spooled.spool.end();
            let room = self.limits.buffer_bytes.saturating_sub(self.kept_bytes);
            if room == 0 || spooled.reader.offset() >= end {
                return Ok(());
            }
            let mut start = spooled.reader.offset();
            let records = spooled.reader.read(end, room).map_err(|err| {
                tonic::Status::internal(format!(
                    "cannot read the spool {}: {err}",
                    spooled.spool.path().display()
                ))
            })?;
            if records.is_empty() {
                return Ok(());
            }
            for (record, record_end) in records {
                match record {
                    Record::Item(item) => {
                        self.last_taken = self.last_taken.max(item.writer_seq);
                        if item.writer_seq > self.acked {
                            self.take(item, start);
                        }
                    }
                    Record::Patch(patch) => {
                        let spooled = self.spooled.as_mut().expect("a spooled session");
                        spooled.barriers.push_back(Barrier {
                            patch,
                            after_seq: self.last_taken,
                            start,
                        });
                    }
                    Record::Header(_) => {}
                }
                start = record_end;
            }
        }
    }

    /// Whether the first waiting state change has every item before it
    /// sent.
    fn barrier_due(&self) -> bool {
        let spooled = self.spooled.as_ref().expect("a spooled session");
        spooled
            .barriers
            .front()
            .is_some_and(|barrier| self.last_sent >= barrier.after_seq)
    }

    /// Makes the items before the first waiting state change stored, then
    /// applies it. A change the server refuses is reported to the handles
    /// and passed over: the items after it are still delivered.
    async fn cross_barrier(&mut self) -> Result<(), tonic::Status> {
        let after = self.spooled.as_ref().expect("spooled").barriers[0].after_seq;
        if self.acked < after {
            self.flush().await?;
        }
        let spooled = self.spooled.as_mut().expect("a spooled session");
        let patch = spooled.barriers[0].patch.clone();
        let progress = spooled.progress.clone();
        let retry = RetryPolicy {
            give_up_after: None,
            ..self.limits.retry
        };
        let terminal = super::is_final(&patch);
        let mut backoff = Backoff::new(retry);
        loop {
            match apply_patch(&self.link, &self.key, &self.writer_id, patch.clone(), retry).await {
                Ok(()) => break,
                Err(status) if is_retryable_status(&status) => {
                    progress.away.store(true, Ordering::Relaxed);
                    backoff.wait().await;
                }
                Err(status) => {
                    let mut refused = progress
                        .refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    refused.push(status.message().to_owned());
                    break;
                }
            }
        }
        progress.away.store(false, Ordering::Relaxed);
        let spooled = self.spooled.as_mut().expect("a spooled session");
        spooled.barriers.pop_front();
        if terminal {
            self.end_lease();
        }
        Ok(())
    }

    /// Answers the flushes whose offset is delivered; when one waits for
    /// items that are all sent, closes the stream to learn what is stored.
    /// True when it did something.
    async fn answer_waiters(&mut self) -> Result<bool, tonic::Status> {
        let delivered = self.delivered();
        let spooled = self.spooled.as_mut().expect("a spooled session");
        let mut answered = false;
        let mut index = 0;
        while index < spooled.waiters.len() {
            if spooled.waiters[index].0 <= delivered {
                let (_, reply) = spooled.waiters.swap_remove(index);
                let _ = reply.send(Ok(spooled.summary));
                answered = true;
            } else {
                index += 1;
            }
        }
        let Some(waiting) = spooled.waiters.iter().map(|(offset, _)| *offset).min() else {
            return Ok(answered);
        };
        // Everything the waiter needs is read and sent, but not known
        // stored: the stream's reply will say.
        let stuck = waiting <= spooled.reader.offset()
            && spooled.barriers.is_empty()
            && self.last_sent >= self.last_taken
            && self.acked < self.last_taken;
        if stuck {
            self.flush().await?;
            return Ok(true);
        }
        Ok(answered)
    }

    /// The logical offset up to which the spool is delivered: the start of
    /// the first item or change not known to be stored or applied.
    fn delivered(&self) -> u64 {
        let spooled = self.spooled.as_ref().expect("a spooled session");
        let item = self.kept.front().map(|kept| kept.start);
        let barrier = spooled.barriers.front().map(|barrier| barrier.start);
        match (item, barrier) {
            (Some(item), Some(barrier)) => item.min(barrier),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => spooled.reader.offset(),
        }
    }

    /// Rewrites the spool without its delivered prefix, when that pays.
    fn compact(&mut self) {
        let delivered = self.delivered();
        let acked = self.acked;
        let spooled = self.spooled.as_mut().expect("a spooled session");
        if let Err(err) = spooled.spool.compact(delivered, acked, &mut spooled.reader) {
            debug!(run = %self.key, cause = %err, "cannot compact the spool");
        }
    }

    /// Keeps a stream open while the run is not finished, so that the
    /// server knows its worker is alive.
    fn hold_lease(&mut self) {
        let connected = self
            .spooled
            .as_ref()
            .is_none_or(|spooled| spooled.connected);
        if self.stream.is_none() && self.limits.heartbeat.is_some() && !self.ended && connected {
            self.open();
        }
    }

    /// When the next heartbeat is due, if one is.
    fn next_beat(&self) -> Option<Instant> {
        let every = self.limits.heartbeat?;
        self.stream.as_ref()?;
        Some(self.last_message + every)
    }

    /// Sends a heartbeat on the open stream.
    async fn beat(&mut self) -> Result<(), tonic::Status> {
        if let Err(status) = self.send_request(pb::AppendLogsRequest::default()).await {
            self.reconnect(status).await?;
        }
        Ok(())
    }

    /// The run has its final status: the lease is let go.
    fn end_lease(&mut self) {
        self.ended = true;
        if self.last_sent == self.last_taken {
            // Dropping the requests ends the stream; its reply is not needed.
            self.stream = None;
        }
    }

    /// While the buffer is full: asks what the server holds.
    async fn poll_full(&mut self) -> Result<(), tonic::Status> {
        let before = self.kept_bytes;
        self.trim().await?;
        self.full_poll = if self.kept_bytes < before {
            FULL_BUFFER_POLL
        } else {
            (self.full_poll * 2).min(FULL_BUFFER_POLL_MAX)
        };
        Ok(())
    }

    /// The server ended the stream before we closed it.
    async fn stream_ended(
        &mut self,
        ended: Result<pb::AppendLogsResponse, tonic::Status>,
    ) -> Result<(), tonic::Status> {
        self.stream = None;
        let status = match ended {
            Ok(_) => tonic::Status::unavailable("the append stream ended early"),
            Err(status) => status,
        };
        self.reconnect(status).await?;
        self.send_unsent().await
    }

    /// Keeps a numbered item until the server holds it.
    fn take(&mut self, item: pb::AppendItem, start: u64) {
        let size = item.encoded_len();
        self.kept.push_back(Kept { item, size, start });
        self.kept_bytes += size;
        self.unsent_bytes += size;
        if self.send_by.is_none() {
            self.send_by = Some(Instant::now() + self.limits.linger);
        }
    }

    /// Sends every unsent item, reconnecting as long as that takes.
    async fn send_unsent(&mut self) -> Result<(), tonic::Status> {
        while let Err(status) = self.try_send(true).await {
            self.reconnect(status).await?;
        }
        // Items behind a state change not applied yet are still unsent:
        // they go at the next tick.
        self.send_by = (self.unsent_bytes > 0).then(|| Instant::now() + self.limits.linger);
        if self.kept_bytes >= self.limits.buffer_bytes / 2 {
            self.trim().await?;
        }
        Ok(())
    }

    /// The last item that may be sent now: a spooled writer's items wait
    /// behind a state change that is not applied yet.
    fn send_limit(&self) -> u64 {
        self.spooled
            .as_ref()
            .and_then(|spooled| spooled.barriers.front())
            .map_or(u64::MAX, |barrier| barrier.after_seq)
    }

    /// Sends the unsent items on the current stream, opening one if none
    /// is open: every one with `all`, else only full batches. An error
    /// means the stream broke.
    async fn try_send(&mut self, all: bool) -> Result<(), tonic::Status> {
        let limit = self.send_limit();
        let mut index = self
            .kept
            .partition_point(|kept| kept.item.writer_seq <= self.last_sent);
        let sendable = |index: usize, kept: &VecDeque<Kept>| {
            kept.get(index)
                .is_some_and(|kept| kept.item.writer_seq <= limit)
        };
        // Nothing to send: a stream is opened once there is.
        while sendable(index, &self.kept) {
            let mut end = index;
            let mut bytes = 0;
            let mut full = false;
            while let Some(kept) = self.kept.get(end) {
                if kept.item.writer_seq > limit {
                    break;
                }
                if end > index
                    && (bytes + kept.size > self.limits.batch_bytes
                        || end - index >= self.limits.batch_items)
                {
                    full = true;
                    break;
                }
                bytes += kept.size;
                end += 1;
            }
            full |= bytes >= self.limits.batch_bytes || end - index >= self.limits.batch_items;
            if !all && !full {
                // Less than a batch: it waits for company.
                break;
            }
            if self.stream.is_none() {
                self.open();
            }
            let items: Vec<_> = self
                .kept
                .range(index..end)
                .map(|kept| kept.item.clone())
                .collect();
            index = end;
            let last = items.last().map_or(self.last_sent, |item| item.writer_seq);
            self.send_request(pb::AppendLogsRequest {
                open: None,
                items,
                mask_values: Vec::new(),
            })
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
                worker_lease_ms: self.limits.lease_ms,
                task_id: self.key.task_id.clone(),
                run_id: self.key.run_id.clone(),
                writer_id: self.writer_id.clone(),
            }),
            items: Vec::new(),
            // The server masks with them what the run's other writers
            // send (this one masked its own already); on every stream, as
            // the server forgets them when it restarts.
            mask_values: self
                .secrets
                .as_ref()
                .map(SharedMasker::values)
                .unwrap_or_default(),
        };
        requests
            .try_send(open)
            .expect("a new channel has room for one message");
        let mut stub = self.current.stub.clone();
        let call = tokio::spawn(async move {
            stub.append_logs(ReceiverStream::new(receiver))
                .await
                .map(tonic::Response::into_inner)
        });
        self.stream = Some(Stream { requests, call });
        self.last_message = Instant::now();
    }

    /// Sends one message; when the stream is gone, returns why.
    async fn send_request(&mut self, request: pb::AppendLogsRequest) -> Result<(), tonic::Status> {
        let stream = self.stream.as_mut().expect("a stream is open");
        if stream.requests.send(request).await.is_ok() {
            self.last_message = Instant::now();
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
                    let summary = reply.summary.unwrap_or_default();
                    if let Some(spooled) = &mut self.spooled {
                        spooled.summary = summary;
                    }
                    return Ok(summary);
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
    /// what it holds, and arranges for the rest to be sent again. A
    /// spooled writer waits as long as it takes.
    async fn reconnect(&mut self, status: tonic::Status) -> Result<(), tonic::Status> {
        self.stream = None;
        if !is_retryable_status(&status) {
            return Err(status);
        }
        debug!(run = %self.key, writer = %self.writer_id, cause = %status, "append stream broke; reconnecting");
        let progress = self
            .spooled
            .as_ref()
            .map(|spooled| spooled.progress.clone());
        let policy = match progress {
            Some(_) => RetryPolicy {
                give_up_after: None,
                ..self.limits.retry
            },
            None => self.limits.retry,
        };
        let mut backoff = Backoff::new(policy);
        let mut failed = status.clone();
        loop {
            if !backoff.wait().await {
                return Err(tonic::Status::unavailable(format!(
                    "gave up reconnecting to the server: {}",
                    status.message()
                )));
            }
            self.fail_over(&failed).await;
            match self.cursor().await {
                Ok(last) => {
                    if let Some(progress) = &progress {
                        progress.away.store(false, Ordering::Relaxed);
                    }
                    self.acknowledge(last)?;
                    self.last_sent = last;
                    self.unsent_bytes = self.kept_bytes;
                    return Ok(());
                }
                Err(status) if is_retryable_status(&status) => {
                    if let Some(progress) = &progress {
                        progress.away.store(true, Ordering::Relaxed);
                    }
                    failed = status;
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// After a call through the current connection failed with `status`:
    /// moves to the next server when that one failed and the link has
    /// others (or takes the connection a handle moved to already).
    async fn fail_over(&mut self, status: &tonic::Status) {
        self.current = self.link.fail_over(&self.current, status).await;
    }

    /// The last writer sequence number the run holds from this writer.
    async fn cursor(&mut self) -> Result<u64, tonic::Status> {
        let request = pb::GetWriterCursorRequest {
            task_id: self.key.task_id.clone(),
            run_id: self.key.run_id.clone(),
            writer_id: self.writer_id.clone(),
        };
        Ok(self
            .current
            .stub
            .clone()
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
    /// A spooled writer's session may not have read all its spool yet, so
    /// for it "sent" is what the spool holds.
    fn acknowledge(&mut self, last: u64) -> Result<(), tonic::Status> {
        if last < self.acked {
            return Err(tonic::Status::data_loss(format!(
                "the server holds the items of writer `{}` only up to {last}, but it had \
                 acknowledged up to {}: acknowledged entries were lost (a machine crash \
                 without --sync?)",
                self.writer_id, self.acked
            )));
        }
        let written = match &self.spooled {
            Some(spooled) => spooled.spool.last_seq().max(self.last_taken),
            None => self.last_taken,
        };
        if last > written {
            return Err(tonic::Status::failed_precondition(format!(
                "the server holds items up to {last} from writer `{}`, more than it sent \
                 ({written}): another writer uses the same writer id",
                self.writer_id
            )));
        }
        self.acked = last;
        if let Some(spooled) = &self.spooled {
            spooled.progress.acked.store(last, Ordering::Relaxed);
        }
        while let Some(kept) = self.kept.front() {
            if kept.item.writer_seq > last {
                break;
            }
            self.kept_bytes -= kept.size;
            if kept.item.writer_seq > self.last_sent {
                self.unsent_bytes -= kept.size;
            }
            self.kept.pop_front();
        }
        self.last_sent = self.last_sent.max(last);
        Ok(())
    }
}

/// Applies a spooled state change, waiting while the server is away. A
/// change already in place (sent again after a reconnection or by a second
/// upload) is not an error; a run still `prepared` passes through
/// `running` on the way to a final status.
async fn apply_patch(
    link: &Link,
    key: &RunKey,
    writer_id: &str,
    patch: pb::RunStatePatch,
    retry: RetryPolicy,
) -> Result<(), tonic::Status> {
    match super::update_state_via_running(link, key, writer_id, patch.clone(), retry).await {
        Ok(_) => Ok(()),
        Err(err) if err.code() == Some(tonic::Code::FailedPrecondition) => {
            let current = super::run_state(link, key).await?.map(|state| state.status);
            if patch.status.is_none_or(|wanted| Some(wanted) == current) {
                return Ok(());
            }
            Err(to_status(err))
        }
        Err(err) => Err(to_status(err)),
    }
}

/// A client error as the status the session stops with.
fn to_status(err: crate::ClientError) -> tonic::Status {
    match err {
        crate::ClientError::Status(status) => status,
        other => tonic::Status::internal(other.to_string()),
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
