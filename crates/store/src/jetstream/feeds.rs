//! One live consumer per run and node, shared by every reader of the run
//! on the node that has caught up with it.
//!
//! A reader reads a run's history through an ordered consumer of its own,
//! from the record it starts at. Once that consumer says nothing is left
//! (the reader is live), the reader joins the run's feed: the node's one
//! ordered consumer on the run's subject, whose records are decoded once
//! and handed to every reader that joined. So a run with many followers
//! on one node costs the NATS servers one consumer and one delivery per
//! record, not one per follower.
//!
//! A feed keeps its last records, so a reader that catches up a little
//! after another joins without a gap. A reader joins only when no record
//! between its last one and the feed's can be missed; otherwise it goes
//! on with its own consumer, and tries again when it is live next. A
//! reader that falls behind the feed (it is not read) leaves it and goes
//! back to a consumer of its own, so it never holds the other readers
//! back; so does every reader when the feed's consumer ends.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use tokio::{sync::broadcast, task::JoinHandle};

use super::{chain::Chains, record::Record};
use crate::{local::concurrency::lock, model::RunKey};

/// How many records a feed keeps for readers that join late, at most.
const KEPT: usize = 64;

/// How many bytes of records a feed keeps for them, at most (it keeps one
/// record, whatever its size).
const KEPT_BYTES: usize = 4 << 20;

/// How many records a reader of a feed may fall behind it before it
/// leaves for a consumer of its own (a record holds up to a message's
/// payload: this bounds what a feed holds for its slowest reader).
const BEHIND: usize = 128;

/// A record as a feed hands it out: its stream sequence, the record, and
/// how many records of the run followed it when it was delivered.
pub(crate) type FeedRecord = Arc<(u64, Record, u64)>;

/// The feeds of one node, by run subject.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    /// The feeds that readers hold.
    live: Mutex<HashMap<String, Weak<Feed>>>,
}

/// A reader's place on a feed.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The feed; dropping the last holder stops its consumer.
    pub(crate) feed: Arc<Feed>,
    /// The records the feed kept that the reader has not had.
    pub(crate) kept: Vec<FeedRecord>,
    /// The records from now on.
    pub(crate) records: broadcast::Receiver<FeedRecord>,
}

impl Feeds {
    /// Joins the feed of `key`'s subject for a reader that has every
    /// record up to stream sequence `after`, starting the feed when there
    /// is none. `None` when the feed cannot give the reader every record
    /// past `after`: it started later, or dropped some of them.
    pub(crate) fn join(&self, chains: &Chains, key: &RunKey, after: u64) -> Option<Joined> {
        let subject = chains.subjects.run(key);
        let mut live = lock(&self.live);
        let feed = match live.get(&subject).and_then(Weak::upgrade) {
            Some(feed) if !lock(&feed.state).closed => feed,
            _ => {
                let feed = Feed::start(chains, key, subject.clone(), after + 1);
                live.insert(subject, Arc::downgrade(&feed));
                live.retain(|_, feed| feed.strong_count() > 0);
                feed
            }
        };
        drop(live);
        let state = lock(&feed.state);
        let sender = state.sender.as_ref()?;
        if after + 1 < feed.start || state.dropped_through > after {
            return None;
        }
        let kept = state
            .kept
            .iter()
            .filter(|record| record.0 > after)
            .cloned()
            .collect();
        let records = sender.subscribe();
        drop(state);
        Some(Joined {
            feed,
            kept,
            records,
        })
    }
}

/// One run's feed on this node.
#[derive(Debug)]
pub(crate) struct Feed {
    /// The stream sequence its consumer started at.
    start: u64,
    /// What it kept, and whom it sends to.
    state: Arc<Mutex<FeedState>>,
    /// Its consumer's task.
    task: JoinHandle<()>,
    /// Where its consumer is.
    chains: Chains,
}

/// What a feed kept, and whom it sends to; one lock, so that a reader
/// that joins gets each record once, kept or sent.
#[derive(Debug)]
struct FeedState {
    /// Sends each record to the readers that joined; `None` once the
    /// feed's consumer ended.
    sender: Option<broadcast::Sender<FeedRecord>>,
    /// Its last records.
    kept: VecDeque<FeedRecord>,
    /// The bytes of the records in `kept`.
    kept_bytes: usize,
    /// The stream sequence of the last record it dropped from `kept`.
    dropped_through: u64,
    /// Its consumer ended: readers go back to consumers of their own.
    closed: bool,
    /// Its consumer's name, once it is created.
    consumer: Option<String>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(name) = lock(&self.state).consumer.take() {
            forget_consumer(&self.chains, name);
        }
    }
}

/// Deletes the consumer `name` now rather than when the servers find it
/// idle (ordered consumers go 30 s after their last pull), in a task of
/// its own; a consumer that is gone already is no error. One that the
/// client recreated under another name still idles out.
pub(crate) fn forget_consumer(chains: &Chains, name: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let stream = chains.stream.clone();
    runtime.spawn(async move {
        if let Err(cause) = stream.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, %cause, "cannot delete a consumer; it goes when idle");
        }
    });
}

impl Feed {
    /// Starts the feed of `key`'s subject, `subject`, at stream sequence
    /// `start`.
    fn start(chains: &Chains, key: &RunKey, subject: String, start: u64) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BEHIND);
        let state = Arc::new(Mutex::new(FeedState {
            sender: Some(sender),
            kept: VecDeque::with_capacity(KEPT),
            kept_bytes: 0,
            dropped_through: 0,
            closed: false,
            consumer: None,
        }));
        let task = tokio::spawn(run(
            chains.clone(),
            key.clone(),
            subject,
            start,
            state.clone(),
        ));
        Arc::new(Self {
            start,
            state,
            task,
            chains: chains.clone(),
        })
    }
}

/// A feed's consumer: each record of the subject from `start`, decoded
/// once and sent to the readers that joined, until the feed is dropped or
/// its consumer ends.
async fn run(
    chains: Chains,
    key: RunKey,
    subject: String,
    start: u64,
    state: Arc<Mutex<FeedState>>,
) {
    // The stream sequence of the last record sent.
    let mut last = start.max(1) - 1;
    'consumer: loop {
        let config = OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            ..OrderedConfig::default()
        };
        let Ok(consumer) = chains.stream.create_consumer(config).await else {
            break;
        };
        let name = consumer.cached_info().name.clone();
        lock(&state).consumer = Some(name.clone());
        let Ok(mut messages) = consumer.messages().await else {
            break;
        };
        while let Some(message) = messages.next().await {
            let Ok(message) = message else {
                // The ordered consumer recreates itself; pause a little
                // rather than spin while it cannot.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            // Anything the feed cannot hand on as it came ends it: each
            // reader goes back to a consumer of its own, which reports it.
            let Ok(info) = message.info() else {
                break 'consumer;
            };
            let (stream_seq, pending) = (info.stream_sequence, info.pending);
            if stream_seq <= last {
                // Recreated before its first message, the consumer starts
                // again from the subject's first record: a new one starts
                // where this one was.
                drop(messages);
                forget_consumer(&chains, name);
                continue 'consumer;
            }
            let Ok(record) = Record::decode(
                &key,
                stream_seq,
                message.headers.as_ref(),
                message.payload.clone(),
            ) else {
                break 'consumer;
            };
            last = stream_seq;
            let record: FeedRecord = Arc::new((stream_seq, record, pending));
            lock(&state).keep_and_send(record);
        }
        break;
    }
    let mut state = lock(&state);
    state.closed = true;
    state.sender = None;
    state.kept.clear();
}

impl FeedState {
    /// Keeps `record` for readers that join later, dropping the oldest
    /// records past the bounds, and sends it to those that joined.
    fn keep_and_send(&mut self, record: FeedRecord) {
        self.kept_bytes += record.1.payload_len();
        self.kept.push_back(record.clone());
        while self.kept.len() > KEPT || (self.kept_bytes > KEPT_BYTES && self.kept.len() > 1) {
            let Some(dropped) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= dropped.1.payload_len();
            self.dropped_through = dropped.0;
        }
        if let Some(sender) = &self.sender {
            // No reader now is no error: one may join later.
            let _ = sender.send(record);
        }
    }
}
