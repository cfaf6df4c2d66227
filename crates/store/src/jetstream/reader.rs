//! Reading a run from JetStream: the records of its subject in order,
//! through an ordered consumer that starts at the record holding the
//! reader's first `seq`, then goes on live.
//!
//! The consumer runs in a task of its own and hands decoded records over
//! a bounded channel, so a reader that is not read holds at most that
//! many records. An ordered consumer is recreated by the client when a
//! NATS server dies or a message goes missing, from the last stream
//! sequence it delivered, so a reader survives the loss of a server.
//!
//! Where the reader starts and stops (`from_seq`, a tail, time bounds) is
//! resolved when it opens, by binary searches over the subject's records
//! (see `locate`): each record's head carries the run's counts after it,
//! and its commit time.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use async_nats::jetstream::consumer::{
    DeliverPolicy,
    pull::{Ordered, OrderedConfig},
};
use futures::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Shared, UseGuard,
    chain::{Chains, Tip},
    feeds::{FeedRecord, Feeds, Joined, forget_consumer},
    locate::{self, SeqRange},
    record::{Record, RecordKind},
};
use crate::{
    error::{Result, StoreError},
    local::concurrency::lock,
    model::{ChannelSet, LogEntry, ReadBatch, RunKey, RunStateSnapshot},
    run_store::{ReadFrom, RunReader},
};

/// How many records the consumer task may hold for a reader that does not
/// read.
const RECORDS_AHEAD: usize = 32;

/// How long a reader waits for records known to exist before it asks
/// whether its run is still there: retention on another node may have
/// purged them.
const SILENCE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// A record as the consumer task hands it over.
type Delivered = Result<FeedRecord>;

/// A reader of one run on JetStream.
#[derive(Debug)]
pub struct JetStreamReader {
    /// The run.
    key: RunKey,
    /// The channels it returns.
    channels: ChannelSet,
    /// The next `seq` to consider.
    next_seq: u64,
    /// The last `seq` to return, when bounded.
    to_seq: Option<u64>,
    /// Entries received and not yet returned.
    pending: VecDeque<LogEntry>,
    /// About how many bytes they take.
    pending_bytes: usize,
    /// Records from the consumer task: stream sequence, record, and how
    /// many records of the run followed it when it was delivered.
    records: mpsc::Receiver<Delivered>,
    /// The task.
    pump: JoinHandle<()>,
    /// The last stream sequence received.
    delivered: u64,
    /// The last `seq` of the records received.
    last_taken: u64,
    /// The stream sequence of the run's last record known to exist.
    latest: u64,
    /// The run's last `seq`, as the last record received says.
    committed_seq: u64,
    /// The state the last record received holds.
    state: RunStateSnapshot,
    /// Whether `state` was returned yet.
    state_told: bool,
    /// The stream sequence of the record `state` and `committed_seq` come
    /// from.
    state_seq: u64,
    /// The stream sequence of the run's `Prepared` record: records of
    /// another run of the same ids are not this run's.
    origin: u64,
    /// Where the run's records are, to ask whether it is still there.
    chains: Chains,
    /// The name of the consumer of the reader's own, while it has one:
    /// deleted when the reader is dropped, rather than left to idle out.
    own: OwnConsumer,
    /// The run was deleted while being read.
    deleted: bool,
    /// A record that `changed` received and could not read.
    failed: Option<StoreError>,
    /// Keeps the run from this node's retention while the reader lives.
    _use: UseGuard,
}

impl Drop for JetStreamReader {
    fn drop(&mut self) {
        self.pump.abort();
        if let Some(name) = lock(&self.own).take() {
            forget_consumer(&self.chains, name);
        }
    }
}

/// The name of a reader's own consumer, shared by the reader and the task
/// that reads through it.
type OwnConsumer = Arc<Mutex<Option<String>>>;

impl JetStreamReader {
    /// Opens a reader of `key` from `from`.
    pub(crate) async fn open(
        shared: &Shared,
        key: &RunKey,
        tip: Tip,
        from: ReadFrom,
        guard: UseGuard,
    ) -> Result<Self> {
        let SeqRange { from_seq, to_seq } =
            locate::resolve(&shared.chains, key, &tip, &from).await?;
        let start = locate::record_holding(&shared.chains, key, &tip, from_seq).await?;
        let (sender, records) = mpsc::channel(RECORDS_AHEAD);
        let own = OwnConsumer::default();
        let pump = tokio::spawn(pump(
            Pump {
                chains: shared.clone_chains(),
                feeds: shared.feeds.clone(),
                key: key.clone(),
                own: own.clone(),
                sender,
            },
            (start, tip.stream_seq),
        ));
        Ok(Self {
            key: key.clone(),
            channels: from.channels,
            next_seq: from_seq,
            to_seq,
            pending: VecDeque::new(),
            pending_bytes: 0,
            records,
            pump,
            delivered: start.saturating_sub(1),
            last_taken: 0,
            latest: tip.stream_seq,
            committed_seq: tip.head.run.next_seq - 1,
            state: tip.head.run.state.clone(),
            state_told: false,
            state_seq: tip.stream_seq,
            origin: tip.origin(),
            chains: shared.clone_chains(),
            own,
            deleted: false,
            failed: None,
            _use: guard,
        })
    }

    /// Takes a delivered record: its entries past the cursor.
    fn take(&mut self, delivered: Delivered) -> Result<()> {
        let delivered = delivered?;
        let (stream_seq, record, pending) = (delivered.0, &delivered.1, delivered.2);
        if stream_seq < self.origin {
            // Of an earlier run of these ids, sent again by a consumer
            // that was recreated: not this run's, nor news of it.
            return Ok(());
        }
        self.delivered = stream_seq;
        self.latest = self.latest.max(stream_seq + pending);
        self.last_taken = self.last_taken.max(record.head.last_seq());
        let origin = match record.head.kind {
            RecordKind::Prepared => stream_seq,
            _ => record.head.run.origin,
        };
        if record.head.kind == RecordKind::Deleted && origin == self.origin {
            self.deleted = true;
            return Ok(());
        }
        if origin != self.origin {
            // A run prepared again after this one was deleted, with its
            // `Deleted` record purged already.
            self.deleted = true;
            return Ok(());
        }
        let run = &record.head.run;
        // History older than the state the reader opened on does not
        // bring that state back.
        if stream_seq > self.state_seq {
            self.state_seq = stream_seq;
            self.committed_seq = run.next_seq - 1;
            if run.state != self.state {
                self.state = run.state.clone();
                self.state_told = false;
            }
        }
        if record.head.last_seq() >= self.next_seq && record.head.len() > 0 {
            for entry in record.entries(&self.key)? {
                let wanted = entry.seq() >= self.next_seq
                    && self.to_seq.is_none_or(|to_seq| entry.seq() <= to_seq);
                if wanted {
                    self.pending_bytes += entry_bytes(&entry);
                    self.pending.push_back(entry);
                }
            }
        }
        Ok(())
    }

    /// Whether the run is gone: deleted, or deleted and prepared again.
    /// A chain that cannot be read now counts as there.
    async fn run_gone(&self) -> bool {
        match self.chains.tip(&self.key).await {
            Ok(Some(tip)) => !tip.exists() || tip.origin() != self.origin,
            Ok(None) => true,
            Err(cause) => {
                tracing::debug!(run = %self.key, %cause, "cannot ask whether a run is there");
                false
            }
        }
    }

    /// Whether every record known to exist was received.
    fn at_end(&self) -> bool {
        self.delivered >= self.latest
    }
}

impl RunReader for JetStreamReader {
    async fn read(&mut self, max_bytes: usize) -> Result<ReadBatch> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        // Records known to exist are waited for, up to about `max_bytes`:
        // a reader returns the history it opened on, and only waits in
        // `changed` for more.
        while !self.deleted
            && !self.at_end()
            && self.pending_bytes < max_bytes
            && self
                .to_seq
                .is_none_or(|to| self.next_seq <= to && self.last_taken < to)
        {
            let delivered = match tokio::time::timeout(SILENCE_CHECK, self.records.recv()).await {
                Ok(Some(delivered)) => delivered,
                Ok(None) => break,
                Err(_) => {
                    self.deleted = self.run_gone().await;
                    continue;
                }
            };
            self.take(delivered)?;
        }
        if self.deleted {
            return Err(StoreError::RunNotFound(self.key.clone()));
        }
        let limit = self
            .to_seq
            .map_or(self.committed_seq, |to| to.min(self.committed_seq));
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        while let Some(entry) = self.pending.front() {
            if entry.seq() > limit || (bytes >= max_bytes && !entries.is_empty()) {
                break;
            }
            let entry = self.pending.pop_front().expect("a front entry");
            self.pending_bytes -= entry_bytes(&entry);
            self.next_seq = entry.seq() + 1;
            if self.channels.contains(entry.channel()) {
                bytes += entry_bytes(&entry);
                entries.push(entry);
            }
        }
        // Past `to_seq` nothing more is returned, whatever the run does.
        let past_end = self.to_seq.is_some_and(|to| self.next_seq > to);
        let caught_up = past_end
            || (self.at_end() && self.pending.front().is_none_or(|entry| entry.seq() > limit));
        if caught_up {
            self.next_seq = self.next_seq.max(limit + 1);
        }
        let state = (!self.state_told).then(|| {
            self.state_told = true;
            self.state.clone()
        });
        let finished = caught_up
            && (self.state.status.is_terminal()
                || self
                    .to_seq
                    .is_some_and(|to| self.next_seq > to || limit >= to));
        Ok(ReadBatch {
            entries,
            shared: Vec::new(),
            next_seq: self.next_seq,
            committed_seq: self.committed_seq,
            state,
            caught_up,
            finished,
        })
    }

    async fn changed(&mut self) {
        if !self.pending.is_empty() || !self.state_told || !self.at_end() || self.failed.is_some() {
            return;
        }
        match self.records.recv().await {
            Some(delivered) => {
                if let Err(err) = self.take(delivered) {
                    // The next read returns it.
                    self.failed = Some(err);
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// About how many bytes an entry takes, for pacing.
fn entry_bytes(entry: &LogEntry) -> usize {
    120 + match entry {
        LogEntry::Lifecycle(event) => event.rendered_line.len() + event.message.len(),
        LogEntry::Chunk(chunk) => chunk.text.len(),
    }
}

/// Delivers the records of `key`'s subject from stream sequence `start`
/// until the reader is dropped: through a consumer of its own, and
/// through the run's feed on this node while the reader is live. A
/// reader that starts past `known_end`, the run's last record when it
/// opened, joins the feed at once.
async fn pump(pump: Pump, (start, known_end): (u64, u64)) {
    // The stream sequence of the last record handed over.
    let mut last = start.max(1) - 1;
    let mut joined = match last >= known_end {
        true => pump.feeds.join(&pump.chains, &pump.key, last),
        false => None,
    };
    loop {
        if let Some(feed) = joined.take() {
            match follow_feed(feed, last, &pump.sender).await {
                Some(through) => last = through,
                None => return,
            }
        }
        match pump.own_consumer(last).await {
            Some((feed, through)) => (joined, last) = (Some(feed), through),
            None => return,
        }
    }
}

/// What the task that reads for a reader works with.
struct Pump {
    /// The stream.
    chains: Chains,
    /// The feeds of this node.
    feeds: Arc<Feeds>,
    /// The run.
    key: RunKey,
    /// The name of its own consumer, while it has one.
    own: OwnConsumer,
    /// Hands records to the reader.
    sender: mpsc::Sender<Delivered>,
}

/// Hands over the records of `joined` past stream sequence `last`; the
/// last one handed over when the reader falls behind what the feed keeps
/// or the feed ends, `None` once the reader is gone.
async fn follow_feed(
    mut joined: Joined,
    mut last: u64,
    sender: &mpsc::Sender<Delivered>,
) -> Option<u64> {
    while let Some(records) = joined.after(last).await {
        for record in records {
            last = record.0;
            sender.send(Ok(record)).await.ok()?;
        }
    }
    Some(last)
}

impl Pump {
    /// Hands over the records of the run past stream sequence `last`
    /// through a consumer of the reader's own, until the reader is live
    /// and joins the run's feed: then the feed and the last record handed
    /// over. `None` once the reader is gone, or its consumer gave up (the
    /// reader was told).
    async fn own_consumer(&self, mut last: u64) -> Option<(Joined, u64)> {
        let (chains, feeds, key, sender) = (&self.chains, &*self.feeds, &self.key, &self.sender);
        'consumer: loop {
            let (name, mut messages) = open_consumer(chains, key, last + 1, sender).await?;
            *lock(&self.own) = Some(name.clone());
            while let Some(message) = messages.next().await {
                let delivered = match message {
                    Ok(message) => match message.info() {
                        Ok(info) if info.stream_sequence <= last => {
                            // A consumer the client recreated before its first
                            // message starts again from the subject's first
                            // record: a new one starts where this one was.
                            drop(messages);
                            lock(&self.own).take();
                            forget_consumer(chains, name);
                            continue 'consumer;
                        }
                        Ok(info) => {
                            let (stream_seq, pending) = (info.stream_sequence, info.pending);
                            Record::decode(
                                key,
                                stream_seq,
                                message.headers.as_ref(),
                                message.payload.clone(),
                            )
                            .map(|record| Arc::new((stream_seq, record, pending)))
                        }
                        // Not skipped: the reader ends, and its follower resumes.
                        Err(err) => Err(super::chain::unavailable(
                            format!("a record of run `{key}` came without its place"),
                            err,
                        )),
                    },
                    Err(err) => {
                        // The ordered consumer recreates itself; pause a little
                        // rather than spin while it cannot.
                        tracing::debug!(run = %key, cause = %err, "a reader's consumer failed; it resumes");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let live = match &delivered {
                    Ok(record) => {
                        last = record.0;
                        record.2 == 0
                    }
                    Err(_) => false,
                };
                sender.send(delivered).await.ok()?;
                if live {
                    if let Some(joined) = feeds.join(chains, key, last) {
                        drop(messages);
                        lock(&self.own).take();
                        forget_consumer(chains, name);
                        return Some((joined, last));
                    }
                }
            }
            // The consumer gave up: the reader ends with an error its follower
            // resumes from, rather than wait for records that will not come.
            let ended = Err(super::chain::unavailable(
                format!("the reader of run `{key}` lost its consumer"),
                "the NATS connection closed",
            ));
            let _ = sender.send(ended).await;
            return None;
        }
    }
}

/// A consumer of `key`'s subject from stream sequence `from`, created
/// again until the servers take it: its name and its messages. `None`
/// once the reader is gone.
async fn open_consumer(
    chains: &Chains,
    key: &RunKey,
    from: u64,
    sender: &mpsc::Sender<Delivered>,
) -> Option<(String, Ordered)> {
    let config = OrderedConfig {
        filter_subject: chains.subjects.run(key),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: from,
        },
        ..OrderedConfig::default()
    };
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let opened = match chains.stream.create_consumer(config.clone()).await {
            Ok(consumer) => {
                let name = consumer.cached_info().name.clone();
                let messages = consumer.messages().await;
                messages
                    .map(|messages| (name, messages))
                    .map_err(|err| err.to_string())
            }
            Err(err) => Err(err.to_string()),
        };
        match opened {
            Ok(opened) => return Some(opened),
            Err(cause) => {
                tracing::debug!(run = %key, %cause, "opening a reader's consumer again");
                if sender.is_closed() {
                    return None;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}
