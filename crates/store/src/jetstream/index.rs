//! The index of runs, for `ListRuns`, counts and retention: a key-value
//! bucket with one key per run (see `subject::index_key`).
//!
//! The index is not the source of truth. It is written after the run's
//! record (prepare, a state change), so a node that dies between the two
//! leaves it behind: every listing reads each run of its page from its
//! chain (what it shows is current) and drops entries of runs that are
//! gone, and a prepare sent again writes the run's entry again. An entry names
//! the stream sequence of the record it was made from, and a write never
//! replaces a newer entry (compare-and-set on the key's revision), so two
//! nodes writing one run's entry leave the later one.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{
        DeliverPolicy,
        pull::{Ordered, OrderedConfig},
    },
    kv,
    stream::RawMessageErrorKind,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{chain::unavailable, record::RunHead, subject};
use crate::{
    error::Result,
    model::{RunKey, RunMetadata, RunStateSnapshot},
};

/// How long a read of a bucket waits for its next message before it asks
/// the bucket's leader whether any is left.
const QUIET_WAIT: Duration = Duration::from_secs(2);

/// How long a read of a bucket waits, in all, without a message while the
/// bucket holds one it has not delivered (a leader election takes a few
/// seconds) before it gives up.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How many times a write of an entry tries again when another node wrote
/// it meanwhile.
const WRITE_TRIES: usize = 8;

/// One run in the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexEntry {
    /// The run's metadata.
    pub(crate) metadata: RunMetadata,
    /// Its state.
    pub(crate) state: RunStateSnapshot,
    /// The bytes of its entries and objects.
    pub(crate) bytes: u64,
    /// The stream sequence of the record the entry was made from.
    pub(crate) stream_seq: u64,
}

/// The index bucket.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// The bucket.
    pub(crate) kv: kv::Store,
}

impl Index {
    /// Writes `key`'s entry from the run as the record at `stream_seq`
    /// left it, unless the index holds a newer one. A failure is logged:
    /// the next listing mends it.
    pub(crate) async fn put(
        &self,
        key: &RunKey,
        metadata: &RunMetadata,
        run: &RunHead,
        stream_seq: u64,
    ) {
        let entry = IndexEntry {
            metadata: metadata.clone(),
            state: run.state.clone(),
            // Retention's byte limit counts a run's objects too, as the
            // local store counts its whole directory.
            bytes: run.bytes + run.objects.bytes,
            stream_seq,
        };
        if let Err(cause) = self.write(key, &entry).await {
            warn!(run = %key, %cause, "cannot write the run's index entry; a listing mends it");
        }
    }

    /// [`Index::put`], with its error.
    async fn write(&self, key: &RunKey, entry: &IndexEntry) -> Result<(), String> {
        let name = subject::index_key(key);
        let value = bytes::Bytes::from(serde_json::to_vec(entry).expect("an entry serializes"));
        for _ in 0..WRITE_TRIES {
            let current = self
                .kv
                .entry(name.clone())
                .await
                .map_err(|e| e.to_string())?;
            let written = match current {
                Some(current) if current.operation == kv::Operation::Put => {
                    let newer = serde_json::from_slice::<IndexEntry>(&current.value)
                        .is_ok_and(|known| known.stream_seq >= entry.stream_seq);
                    if newer {
                        return Ok(());
                    }
                    self.kv
                        .update(&name, value.clone(), current.revision)
                        .await
                        .is_ok()
                }
                Some(current) => self
                    .kv
                    .update(&name, value.clone(), current.revision)
                    .await
                    .is_ok(),
                None => self.kv.create(&name, value.clone()).await.is_ok(),
            };
            if written {
                return Ok(());
            }
        }
        Err("other nodes kept writing it".to_owned())
    }

    /// Removes `key`'s entry if it was made from a record at or before
    /// `stream_seq` (a deleted run's `Deleted` record): an entry of the
    /// run prepared again since under the same ids stays.
    pub(crate) async fn remove_through(&self, key: &RunKey, stream_seq: u64) {
        let name = subject::index_key(key);
        let revision = match self.kv.entry(name.clone()).await {
            Ok(Some(entry)) => {
                let older = serde_json::from_slice::<IndexEntry>(&entry.value)
                    .map_or(true, |known| known.stream_seq <= stream_seq);
                if !older {
                    return;
                }
                entry.revision
            }
            Ok(None) => return,
            Err(cause) => {
                warn!(run = %key, %cause, "cannot read the run's index entry to remove it");
                return;
            }
        };
        let subject = format!("{}{name}", self.kv.prefix);
        if let Err(cause) = self
            .kv
            .stream
            .purge()
            .filter(subject)
            .sequence(revision + 1)
            .await
        {
            warn!(run = %key, %cause, "cannot remove the run's index entry");
        }
    }

    /// Removes `key`'s entry.
    pub(crate) async fn remove(&self, key: &RunKey) {
        // A purge of the key's subject, not a delete marker: the bucket
        // keeps nothing of a deleted run.
        let subject = format!("{}{}", self.kv.prefix, subject::index_key(key));
        if let Err(cause) = self.kv.stream.purge().filter(subject).await {
            warn!(run = %key, %cause, "cannot remove the run's index entry");
        }
    }

    /// Every run in the index, read in one pass over the bucket's stream.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError::Unavailable`].
    pub(crate) async fn all(&self) -> Result<Vec<(RunKey, IndexEntry)>> {
        self.matching(">").await
    }

    /// The runs of task `task_id` in the index: only their keys are read.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError::Unavailable`].
    pub(crate) async fn of_task(&self, task_id: &str) -> Result<Vec<(RunKey, IndexEntry)>> {
        self.matching(&format!("{}.>", subject::token(task_id)))
            .await
    }

    /// The runs whose keys match `filter`, a subject pattern over keys.
    async fn matching(&self, filter: &str) -> Result<Vec<(RunKey, IndexEntry)>> {
        let mut entries = Vec::new();
        for (name, value, _) in latest_values(&self.kv, filter, "the index of runs").await? {
            let Some(key) = subject::key_of_index(&name) else {
                continue;
            };
            match serde_json::from_slice::<IndexEntry>(&value) {
                Ok(entry) => entries.push((key, entry)),
                Err(err) => {
                    warn!(run = %key, cause = %err, "skipping an index entry that does not parse")
                }
            }
        }
        Ok(entries)
    }
}

/// The value and revision of each key of `kv` that matches `filter` (a
/// subject pattern over keys: `>` for all), read in one pass over the
/// bucket's stream; deleted keys are left out.
///
/// # Errors
///
/// [`crate::StoreError::Unavailable`], saying it was reading `what`; also
/// when the read stalls with keys left to read, rather than a short answer.
pub(crate) async fn latest_values(
    kv: &kv::Store,
    filter: &str,
    what: &str,
) -> Result<Vec<(String, bytes::Bytes, u64)>> {
    read_latest(kv, filter, what, QUIET_WAIT).await
}

/// [`latest_values`], asking whether messages are left after `quiet`
/// without one.
async fn read_latest(
    kv: &kv::Store,
    filter: &str,
    what: &str,
    quiet: Duration,
) -> Result<Vec<(String, bytes::Bytes, u64)>> {
    let read = async { BucketRead::start(kv, filter).await?.finish(quiet).await };
    read.await
        .map_err(|err| unavailable(format!("cannot read {what}"), err))
}

/// A key's value and revision, as a bucket read gives it.
type Latest = (String, bytes::Bytes, u64);

/// A read of the latest value of each key of a bucket that matches a
/// filter, through an ordered consumer.
struct BucketRead<'a> {
    /// The bucket.
    kv: &'a kv::Store,
    /// The filter, as a subject of the bucket's stream.
    subject: String,
    /// The consumer's messages; `None` once the read is complete.
    messages: Option<Ordered>,
    /// The stream sequence of the last message read.
    last: u64,
    /// When it came (or when the read started).
    last_at: tokio::time::Instant,
}

impl<'a> BucketRead<'a> {
    /// Starts reading the keys of `kv` that match `filter`.
    async fn start(kv: &'a kv::Store, filter: &str) -> Result<Self, String> {
        let subject = format!("{}{filter}", kv.prefix);
        let config = OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..OrderedConfig::default()
        };
        let consumer = kv
            .stream
            .create_consumer(config)
            .await
            .map_err(|err| err.to_string())?;
        let messages = match consumer.cached_info().num_pending {
            0 => None,
            _ => Some(consumer.messages().await.map_err(|err| err.to_string())?),
        };
        Ok(Self {
            kv,
            subject,
            messages,
            last: 0,
            last_at: tokio::time::Instant::now(),
        })
    }

    /// Reads every value left, asking whether any is left after `quiet`
    /// without one.
    async fn finish(mut self, quiet: Duration) -> Result<Vec<Latest>, String> {
        let mut values = Vec::new();
        while let Some(value) = self.next(quiet).await? {
            values.extend(value);
        }
        Ok(values)
    }

    /// The next message's key and value: `Some(None)` for a deleted key,
    /// `None` once the read is complete.
    async fn next(&mut self, quiet: Duration) -> Result<Option<Option<Latest>>, String> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                return Ok(None);
            };
            // Messages come in order, each saying how many are left; when
            // the last ones are purged meanwhile (a key dropped), the count
            // never reaches 0. So a pause asks the leader for a message past
            // the last one read: none means the read is complete.
            let message = match tokio::time::timeout(quiet, messages.next()).await {
                Ok(Some(message)) => message.map_err(|err| err.to_string())?,
                pause => {
                    // A leader that cannot answer now (an election) may
                    // have keys left: the read waits on, up to its limit.
                    let left = any_after(self.kv, &self.subject, self.last)
                        .await
                        .unwrap_or(true);
                    if !left {
                        self.messages = None;
                        return Ok(None);
                    }
                    if pause.is_ok() {
                        return Err("the read ended with keys left".to_owned());
                    }
                    if self.last_at.elapsed() >= STALL_LIMIT {
                        let secs = STALL_LIMIT.as_secs();
                        return Err(format!("no message for {secs}s with keys left"));
                    }
                    continue;
                }
            };
            let info = message.info().map_err(|err| err.to_string())?;
            let (pending, revision) = (info.pending, info.stream_sequence);
            (self.last, self.last_at) = (revision, tokio::time::Instant::now());
            if pending == 0 {
                self.messages = None;
            }
            let deleted = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .is_some();
            let name = message
                .subject
                .as_str()
                .strip_prefix(self.kv.prefix.as_str());
            return Ok(Some(match (deleted, name) {
                (false, Some(name)) => Some((name.to_owned(), message.payload.clone(), revision)),
                _ => None,
            }));
        }
    }
}

/// Whether the bucket's stream holds a message on `subject` (a pattern)
/// past stream sequence `last`, as its leader answers.
async fn any_after(kv: &kv::Store, subject: &str, last: u64) -> Result<bool, String> {
    let request = kv
        .stream
        .raw_message_builder()
        .sequence(last + 1)
        .next_by_subject(subject);
    match request.send().await {
        Ok(_) => Ok(true),
        Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => Ok(false),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::jetstream::test_cluster::NatsCluster;

    /// A bucket on `cluster` holding the keys `k0000`, `k0001`... up to
    /// `keys`.
    async fn bucket(cluster: &NatsCluster, keys: usize) -> kv::Store {
        let client = async_nats::connect(cluster.urls()[0].clone())
            .await
            .expect("the client connects");
        let kv = async_nats::jetstream::new(client)
            .create_key_value(kv::Config {
                bucket: "READS".to_owned(),
                ..kv::Config::default()
            })
            .await
            .expect("the bucket is created");
        let puts = (0..keys).map(|i| kv.put(format!("k{i:04}"), bytes::Bytes::from("value")));
        for put in futures::future::join_all(puts).await {
            put.expect("a key is written");
        }
        kv
    }

    #[tokio::test]
    async fn a_read_that_pauses_between_messages_reads_every_key() {
        let cluster = NatsCluster::start(1);
        let kv = bucket(&cluster, 600).await;
        // Every message comes later than this: each pause asks whether
        // more are left, and they are.
        let values = read_latest(&kv, ">", "the bucket", Duration::from_micros(1))
            .await
            .expect("the bucket is read");
        assert_eq!(values.len(), 600, "600 values");
        let names: HashSet<_> = values.into_iter().map(|(name, ..)| name).collect();
        assert_eq!(names.len(), 600, "every key is read once");
    }

    #[tokio::test]
    async fn a_read_ends_when_the_keys_it_was_told_of_are_purged() {
        let cluster = NatsCluster::start(1);
        let kv = bucket(&cluster, 600).await;
        let mut read = BucketRead::start(&kv, ">").await.expect("the read starts");
        let first = read
            .next(Duration::from_secs(5))
            .await
            .expect("a first key")
            .flatten();
        assert!(first.is_some(), "the first key is read");
        // The last 100 keys go while the read runs; it ends, with the
        // keys that stayed.
        for i in 500..600 {
            let subject = format!("{}k{i:04}", kv.prefix);
            kv.stream.purge().filter(subject).await.expect("a purge");
        }
        let values = tokio::time::timeout(
            Duration::from_secs(20),
            read.finish(Duration::from_millis(100)),
        )
        .await
        .expect("the read ends before its stall limit")
        .expect("the bucket is read");
        let names: HashSet<_> = first
            .into_iter()
            .chain(values)
            .map(|(name, ..)| name)
            .collect();
        for i in 0..500 {
            assert!(
                names.contains(&format!("k{i:04}")),
                "key {i} stayed and is read"
            );
        }
    }
}
