//! Each run's chain of records on its subject, extended by
//! compare-and-set.
//!
//! A record is published with `Nats-Expected-Last-Subject-Sequence` set to
//! the stream sequence of the run's last record as this node knows it (0
//! for a run with none). JetStream takes it only if nothing was added to
//! the subject since, so every change of a run, from any node, is built on
//! the one before it: two writers of one run appending through two nodes
//! get one gap-free `seq`, and a terminal run takes no more entries. A
//! node that loses the race reads the new last record and builds again.
//!
//! Each publish carries a `Nats-Msg-Id` of its own, kept across retries:
//! when an acknowledgement is lost (a server died, the leader moved), the
//! same message is sent again, and JetStream answers that it holds it
//! already instead of storing it twice.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    context::PublishErrorKind,
    message::{PublishMessage, StreamMessage},
    stream::{RawMessageErrorKind, Stream},
};
use tokio::time::{Instant, sleep};

use super::{
    record::{NewRecord, Record, RecordHead, RecordKind},
    subject::Subjects,
};
use crate::{
    error::{Result, StoreError},
    model::{RunKey, RunMetadata},
};

/// How long a publish is retried while the engine does not answer (a
/// leader election takes a few seconds).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);

/// The run's last record and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Tip {
    /// Its stream sequence.
    pub(crate) stream_seq: u64,
    /// The record's head.
    pub(crate) head: RecordHead,
}

impl Tip {
    /// Whether the run exists: it has a record and was not deleted.
    pub(crate) fn exists(&self) -> bool {
        self.head.kind != RecordKind::Deleted
    }

    /// The stream sequence of the run's `Prepared` record: it tells one
    /// run from another of the same ids, prepared after a deletion.
    pub(crate) fn origin(&self) -> u64 {
        match self.head.kind {
            RecordKind::Prepared => self.stream_seq,
            _ => self.head.run.origin,
        }
    }
}

/// What a compare-and-set publish came to.
#[derive(Debug)]
pub(crate) enum Published {
    /// Stored at this stream sequence.
    Stored(u64),
    /// Another record came first: read the tip again and build anew.
    Conflict,
}

/// The stream of runs, as the chains of its subjects.
#[derive(Debug, Clone)]
pub(crate) struct Chains {
    /// The JetStream context.
    pub(crate) js: jetstream::Context,
    /// The stream.
    pub(crate) stream: Stream,
    /// Its subjects.
    pub(crate) subjects: Subjects,
}

impl Chains {
    /// The last record of `key`'s subject; `None` when it has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Damaged`] for a record
    /// that fails its checks.
    pub(crate) async fn tip(&self, key: &RunKey) -> Result<Option<Tip>> {
        let subject = self.subjects.run(key);
        let deadline = Instant::now() + PUBLISH_PATIENCE;
        loop {
            match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    let (stream_seq, record) = decode(key, message)?;
                    return Ok(Some(Tip {
                        stream_seq,
                        head: record.head,
                    }));
                }
                Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => {
                    return Ok(None);
                }
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(run = %key, cause = %err, "reading a run's last record again");
                    sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(unavailable(format!("cannot read run `{key}`"), err)),
            }
        }
    }

    /// The record at `stream_seq`, which must be `key`'s.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`] when it is gone (the run was deleted),
    /// [`StoreError::Unavailable`], [`StoreError::Damaged`].
    pub(crate) async fn record_at(&self, key: &RunKey, stream_seq: u64) -> Result<Record> {
        let message = self
            .stream
            .get_raw_message(stream_seq)
            .await
            .map_err(|err| match err.kind() {
                RawMessageErrorKind::NoMessageFound => StoreError::RunNotFound(key.clone()),
                _ => unavailable(format!("cannot read run `{key}`"), err),
            })?;
        if message.subject.as_str() != self.subjects.run(key) {
            return Err(StoreError::RunNotFound(key.clone()));
        }
        decode(key, message).map(|(_, record)| record)
    }

    /// The first record of `key`'s subject at or after `stream_seq`;
    /// `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Damaged`].
    pub(crate) async fn next_record(
        &self,
        key: &RunKey,
        stream_seq: u64,
    ) -> Result<Option<(u64, Record)>> {
        let found = self
            .stream
            .raw_message_builder()
            .sequence(stream_seq.max(1))
            .next_by_subject(self.subjects.run(key))
            .send()
            .await;
        match found {
            Ok(message) => decode(key, message).map(Some),
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(err) => Err(unavailable(format!("cannot read run `{key}`"), err)),
        }
    }

    /// The metadata of the run whose tip is `tip`.
    ///
    /// # Errors
    ///
    /// As [`Chains::record_at`]; [`StoreError::Damaged`] when the origin
    /// holds no metadata.
    pub(crate) async fn metadata(&self, key: &RunKey, tip: &Tip) -> Result<RunMetadata> {
        let head = &tip.head;
        let origin = match &head.metadata {
            Some(metadata) => return Ok(metadata.clone()),
            None => self.record_at(key, head.run.origin).await?,
        };
        origin.head.metadata.ok_or_else(|| {
            StoreError::damaged(
                format!("jetstream message {} of run {key}", head.run.origin),
                "is the run's origin but holds no metadata",
            )
        })
    }

    /// Publishes `record` on `key`'s subject if the subject's last record
    /// is still at `expected` (0: the subject has none). Retries what may
    /// pass for a while, with the same message id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] once the engine did not take it in
    /// time; [`StoreError::ObjectTooLarge`] for a record over the servers'
    /// `max_payload`.
    pub(crate) async fn publish(
        &self,
        key: &RunKey,
        expected: u64,
        record: &NewRecord,
    ) -> Result<Published> {
        let (payload, headers) = record.encode();
        publish_after(
            &self.js,
            self.subjects.run(key),
            payload,
            headers,
            expected,
            &format!("a commit of run `{key}`"),
        )
        .await
    }
}

/// Publishes `payload` on `subject` if the subject's last message is
/// still at stream sequence `expected` (0: the subject has none). Retries
/// what may pass for a while, with the same message id, so that a retry
/// of a message stored already is answered as stored.
///
/// # Errors
///
/// [`StoreError::Unavailable`] once the engine did not take it in time;
/// [`StoreError::ObjectTooLarge`] for a message over the servers'
/// `max_payload`.
pub(crate) async fn publish_after(
    js: &jetstream::Context,
    subject: String,
    payload: bytes::Bytes,
    headers: async_nats::HeaderMap,
    expected: u64,
    what: &str,
) -> Result<Published> {
    let message_id = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + PUBLISH_PATIENCE;
    let mut pause = Duration::from_millis(50);
    loop {
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers.clone())
            .message_id(&message_id)
            .expected_last_subject_sequence(expected);
        let sent = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        let err = match sent {
            Ok(ack) => return Ok(Published::Stored(ack.sequence)),
            Err(err) => err,
        };
        match err.kind() {
            PublishErrorKind::WrongLastSequence => return Ok(Published::Conflict),
            PublishErrorKind::MaxPayloadExceeded => {
                // Not worth a retry: it would never fit.
                return Err(StoreError::ObjectTooLarge {
                    what: what.to_owned(),
                    size: payload.len() as u64,
                    limit: "the NATS servers' max_payload",
                    max: js.client().server_info().max_payload as u64,
                });
            }
            _ if Instant::now() < deadline => {
                tracing::debug!(%subject, cause = %err, "publishing again");
                sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            _ => return Err(unavailable(format!("cannot store {what}"), err)),
        }
    }
}

/// A message of `key`'s subject, read from the stream, as a checked
/// record with its stream sequence.
fn decode(key: &RunKey, message: StreamMessage) -> Result<(u64, Record)> {
    let record = Record::decode(
        key,
        message.sequence,
        Some(&message.headers),
        message.payload,
    )?;
    Ok((message.sequence, record))
}

/// An engine error as [`StoreError::Unavailable`].
pub(crate) fn unavailable(context: String, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        context,
        cause: err.to_string(),
    }
}

/// A cached tip per run, behind a lock per run, so that this node's
/// writes of one run go one at a time (other nodes' are ordered by the
/// compare-and-set).
pub(crate) type TipCell = Arc<tokio::sync::Mutex<Option<Tip>>>;
