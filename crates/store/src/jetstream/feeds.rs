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
//! A feed keeps its last records (those of the last 2 s, at most 1,024
//! records and 8 MiB), and each reader that joined reads them from its
//! own place. So a reader that catches up a little after another joins
//! without a gap, and a reader that is slow for a moment catches up from
//! what the feed kept. A reader joins only when no record between its
//! last one and the feed's can be missed; otherwise it goes on with its
//! own consumer, and tries again when it is live next. A reader that falls
//! behind what the feed keeps (its follower does not read) goes back to a
//! consumer of its own, so it never holds the other readers back, nor
//! makes the feed keep more; so does every reader when the feed's consumer
//! ends.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use super::{chain::Chains, record::Record};
use crate::{local::concurrency::lock, model::RunKey};

/// How long a feed keeps a record for readers that join late or read
/// slowly (it keeps at least the last one).
const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// How many records a feed keeps, at most.
const KEPT: usize = 1024;

/// How many bytes of records a feed keeps, at most.
const KEPT_BYTES: usize = 8 << 20;

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
    feed: Arc<Feed>,
    /// Says when the feed kept another record.
    changes: watch::Receiver<u64>,
}

impl Joined {
    /// The records the feed kept past stream sequence `after`, waiting
    /// for one when there is none; `None` when the feed no longer keeps
    /// the record after `after` (the reader fell behind), or it ended.
    pub(crate) async fn after(&mut self, after: u64) -> Option<Vec<FeedRecord>> {
        loop {
            {
                let state = lock(&self.feed.state);
                if state.closed || state.dropped_through > after {
                    return None;
                }
                let from = state.kept.partition_point(|(_, record)| record.0 <= after);
                if from < state.kept.len() {
                    let records = state.kept.range(from..).map(|(_, record)| record.clone());
                    return Some(records.collect());
                }
                // Seen under the lock that a new record is kept under:
                // one kept from now on wakes the wait below.
                self.changes.borrow_and_update();
            }
            self.changes.changed().await.ok()?;
        }
    }
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
        let changes = state.changes.as_ref()?.subscribe();
        if after + 1 < feed.start || state.dropped_through > after {
            return None;
        }
        drop(state);
        Some(Joined { feed, changes })
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

/// What a feed kept, and whether it goes on.
#[derive(Debug)]
struct FeedState {
    /// Tells the readers that joined of each record kept (its stream
    /// sequence); `None` once the feed's consumer ended.
    changes: Option<watch::Sender<u64>>,
    /// Its last records, in order, with when each was kept.
    kept: VecDeque<(Instant, FeedRecord)>,
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
        let state = Arc::new(Mutex::new(FeedState {
            changes: Some(watch::Sender::new(0)),
            kept: VecDeque::new(),
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
    state.changes = None;
    state.kept.clear();
}

impl FeedState {
    /// Keeps `record`, drops the records past the bounds, and tells the
    /// readers that joined.
    fn keep_and_send(&mut self, record: FeedRecord) {
        let now = Instant::now();
        let seq = record.0;
        self.kept_bytes += record.1.payload_len();
        self.kept.push_back((now, record));
        while self.kept.len() > 1 {
            let (kept_at, oldest) = &self.kept[0];
            let over = self.kept.len() > KEPT
                || self.kept_bytes > KEPT_BYTES
                || now.duration_since(*kept_at) > KEPT_FOR;
            if !over {
                break;
            }
            self.kept_bytes -= oldest.1.payload_len();
            self.dropped_through = oldest.0;
            self.kept.pop_front();
        }
        if let Some(changes) = &self.changes {
            changes.send_replace(seq);
        }
    }
}
