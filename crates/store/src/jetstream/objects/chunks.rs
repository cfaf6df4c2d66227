//! The bytes of objects: the chunks of one subject per upload in the
//! objects bucket, `$O.<bucket>.C.<nuid>`, as every object store client
//! reads them, and the meta message that names them.
//!
//! Each chunk carries its offset in the object, its index, and the CRC-32C
//! of its bytes in headers. A chunk is published only after the subject's
//! last one (compare-and-set), so a subject's chunks are the upload's
//! bytes in order, whichever nodes wrote them. A chunk that fails its
//! checksum is reported as damaged and never served.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::{
    HeaderMap,
    jetstream::{self, message::StreamMessage, stream::RawMessageErrorKind},
};
use base64::{Engine, engine::general_purpose::URL_SAFE};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::Objects;
use crate::{
    error::{Result, StoreError},
    jetstream::{
        chain::{Published, publish_after, unavailable},
        record::{CRC_HEADER, ObjectMark},
    },
    objects::{ObjectReader, ObjectRef},
};

/// The header with a chunk's offset in its object.
const OFFSET_HEADER: &str = "Baa-Offset";

/// The header with a chunk's index, from 0.
const INDEX_HEADER: &str = "Baa-Chunk";

/// One chunk, as read and checked.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// Its stream sequence.
    pub(crate) seq: u64,
    /// Its offset in the object.
    pub(crate) offset: u64,
    /// Its index, from 0.
    pub(crate) index: u64,
    /// Its bytes.
    pub(crate) data: Bytes,
    /// When it was stored, in seconds since the epoch.
    pub(crate) time: i64,
}

impl Chunk {
    /// The offset after it.
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

/// Where a staged upload ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StagedEnd {
    /// The stream sequence of its last chunk; 0 for none.
    pub(crate) last_seq: u64,
    /// The bytes staged.
    pub(crate) size: u64,
    /// How many chunks hold them.
    pub(crate) chunks: u64,
    /// When its last chunk was stored, in seconds since the epoch; 0 for
    /// none.
    pub(crate) time: i64,
}

/// An object store meta message, as the NATS clients read it.
#[derive(Debug, Serialize)]
struct Meta<'a> {
    /// The object's name in the bucket.
    name: &'a str,
    /// Its chunk size.
    options: MetaOptions,
    /// The bucket.
    bucket: &'a str,
    /// The token of its chunks' subject.
    nuid: &'a str,
    /// Its size.
    size: u64,
    /// How many chunks hold it.
    chunks: u64,
    /// When it was committed, RFC 3339.
    mtime: &'a str,
    /// `SHA-256=` and the digest, base64url.
    digest: String,
}

/// The options of a meta message.
#[derive(Debug, Serialize)]
struct MetaOptions {
    /// The largest chunk.
    max_chunk_size: usize,
}

impl Objects {
    /// The subject of an upload's chunks.
    pub(crate) fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.bucket)
    }

    /// The name of `object` in the bucket: its run, then its path as the
    /// local layout has it.
    pub(crate) fn object_name(object: &ObjectRef) -> String {
        let key = &object.key;
        match object.checkpoint_seq {
            0 => format!("{}/{}/artifacts/{}", key.task_id, key.run_id, object.name),
            slot => format!(
                "{}/{}/checkpoints/{slot}/{}",
                key.task_id, key.run_id, object.name
            ),
        }
    }

    /// The subject of the meta message of the object named `name`.
    fn meta_subject(&self, name: &str) -> String {
        format!("$O.{}.M.{}", self.bucket, URL_SAFE.encode(name))
    }

    /// Publishes `data` as the chunk `index` at `offset` of upload `nuid`,
    /// if the subject's last chunk is still at `expected` (0: none).
    pub(crate) async fn publish_chunk(
        &self,
        nuid: &str,
        expected: u64,
        offset: u64,
        index: u64,
        data: Bytes,
    ) -> Result<Published> {
        let mut headers = HeaderMap::new();
        headers.insert(OFFSET_HEADER, offset.to_string().as_str());
        headers.insert(INDEX_HEADER, index.to_string().as_str());
        headers.insert(
            CRC_HEADER,
            format!("{:08x}", crc32c::crc32c(&data)).as_str(),
        );
        publish_after(
            &self.js,
            self.chunk_subject(nuid),
            data,
            headers,
            expected,
            &format!("a chunk of upload {nuid}"),
        )
        .await
    }

    /// Where upload `nuid` ends, from its last chunk.
    pub(crate) async fn staged_end(&self, nuid: &str) -> Result<StagedEnd> {
        let subject = self.chunk_subject(nuid);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let chunk = decode(nuid, message)?;
                Ok(StagedEnd {
                    last_seq: chunk.seq,
                    size: chunk.end(),
                    chunks: chunk.index + 1,
                    time: chunk.time,
                })
            }
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => {
                Ok(StagedEnd::default())
            }
            Err(err) => Err(unavailable(format!("cannot read upload {nuid}"), err)),
        }
    }

    /// The first chunk of upload `nuid` at or after stream sequence
    /// `seq`; `None` when there is none.
    pub(crate) async fn chunk_from(&self, nuid: &str, seq: u64) -> Result<Option<Chunk>> {
        fetch_from(&self.stream, self.chunk_subject(nuid), nuid, seq).await
    }

    /// The SHA-256 of the `size` bytes upload `nuid` holds, and its first
    /// chunk's stream sequence (0 for none), read from its chunks.
    pub(crate) async fn hash_staged(&self, nuid: &str, size: u64) -> Result<([u8; 32], u64)> {
        let mut hasher = Sha256::new();
        let (mut at, mut seq, mut first) = (0u64, 1u64, 0u64);
        while at < size {
            let chunk = self
                .chunk_from(nuid, seq)
                .await?
                .filter(|chunk| chunk.offset == at)
                .ok_or_else(|| {
                    StoreError::damaged(
                        format!("upload {nuid}"),
                        format!("has no chunk at offset {at} of {size}"),
                    )
                })?;
            if first == 0 {
                first = chunk.seq;
            }
            hasher.update(&chunk.data);
            at = chunk.end();
            seq = chunk.seq + 1;
        }
        Ok((hasher.finalize().into(), first))
    }

    /// Removes every chunk of upload `nuid`.
    pub(crate) async fn purge_chunks(&self, nuid: &str) -> Result<()> {
        self.stream
            .purge()
            .filter(self.chunk_subject(nuid))
            .await
            .map_err(|err| unavailable(format!("cannot purge upload {nuid}"), err))?;
        Ok(())
    }

    /// Writes the meta message of `object`, so that object store clients
    /// find it by name. The run's record is what makes an object exist:
    /// a failure here is logged, and costs only that.
    pub(crate) async fn publish_meta(&self, object: &ObjectRef, mark: &ObjectMark) {
        let name = Self::object_name(object);
        let Ok(sha256) = hex::decode(&mark.sha256) else {
            return;
        };
        let meta = Meta {
            name: &name,
            options: MetaOptions {
                max_chunk_size: self.chunk_bytes,
            },
            bucket: &self.bucket,
            nuid: &mark.nuid,
            size: mark.size,
            chunks: mark.chunks,
            mtime: &mark.committed_at,
            digest: format!("SHA-256={}", URL_SAFE.encode(sha256)),
        };
        let payload = Bytes::from(serde_json::to_vec(&meta).expect("a meta message serializes"));
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        let sent = match self
            .js
            .publish_with_headers(self.meta_subject(&name), headers, payload)
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(cause) = sent {
            tracing::warn!(%object, %cause, "cannot write the object's meta message");
        }
    }

    /// Removes the meta message of `object` if it names the chunks of
    /// `nuid`: a run of the same ids prepared again since may have put
    /// another object under the name.
    pub(crate) async fn purge_meta(&self, object: &ObjectRef, nuid: &str) -> Result<()> {
        let subject = self.meta_subject(&Self::object_name(object));
        let names_it = match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => serde_json::from_slice::<serde_json::Value>(&message.payload)
                .is_ok_and(|meta| meta["nuid"] == nuid),
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => false,
            Err(err) => return Err(unavailable(format!("cannot read {object}"), err)),
        };
        if names_it {
            self.stream
                .purge()
                .filter(subject)
                .await
                .map_err(|err| unavailable(format!("cannot purge {object}"), err))?;
        }
        Ok(())
    }
}

/// The first chunk of upload `nuid`, on `subject` of `stream`, at or
/// after stream sequence `seq`; `None` when there is none.
async fn fetch_from(
    stream: &jetstream::stream::Stream,
    subject: String,
    nuid: &str,
    seq: u64,
) -> Result<Option<Chunk>> {
    let found = stream
        .raw_message_builder()
        .sequence(seq.max(1))
        .next_by_subject(subject)
        .send()
        .await;
    match found {
        Ok(message) => decode(nuid, message).map(Some),
        Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(err) => Err(unavailable(format!("cannot read upload {nuid}"), err)),
    }
}

/// A chunk message of upload `nuid`, checked.
fn decode(nuid: &str, message: StreamMessage) -> Result<Chunk> {
    let damaged = |problem: String| {
        StoreError::damaged(
            format!("jetstream message {} of upload {nuid}", message.sequence),
            problem,
        )
    };
    let header = |name: &str| -> Result<u64> {
        message
            .headers
            .get(name)
            .and_then(|value| value.as_str().parse().ok())
            .ok_or_else(|| damaged(format!("has no valid {name} header")))
    };
    let offset = header(OFFSET_HEADER)?;
    let index = header(INDEX_HEADER)?;
    let crc = message
        .headers
        .get(CRC_HEADER)
        .ok_or_else(|| damaged(format!("has no {CRC_HEADER} header")))?;
    let expected = format!("{:08x}", crc32c::crc32c(&message.payload));
    if crc.as_str() != expected {
        return Err(damaged(format!(
            "fails its checksum (CRC-32C {expected}, header {})",
            crc.as_str()
        )));
    }
    Ok(Chunk {
        seq: message.sequence,
        offset,
        index,
        time: message.time.unix_timestamp(),
        data: message.payload,
    })
}

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// An object on the JetStream backend, open for reading: its chunks,
/// found by offset.
#[derive(Debug)]
pub struct JetStreamObjectReader {
    /// The bucket.
    objects: Objects,
    /// The object.
    object: ObjectRef,
    /// What its record says of it.
    mark: ObjectMark,
    /// The chunk read last.
    current: Option<Chunk>,
    /// The chunk after it, being fetched while this one is sent: the
    /// stream sequence it is fetched from, and the fetch.
    ahead: Option<(u64, JoinHandle<Result<Option<Chunk>>>)>,
}

impl JetStreamObjectReader {
    /// A reader of the object `mark` names.
    pub(crate) fn new(objects: Objects, object: ObjectRef, mark: ObjectMark) -> Self {
        Self {
            objects,
            object,
            mark,
            current: None,
            ahead: None,
        }
    }

    /// The chunk that holds byte `at`.
    async fn chunk_holding(&mut self, at: u64) -> Result<Chunk> {
        if let Some(current) = &self.current {
            if (current.offset..current.end()).contains(&at) {
                return Ok(current.clone());
            }
            if current.end() == at {
                let from = current.seq + 1;
                let next = match self.ahead.take() {
                    Some((seq, fetch)) if seq == from => fetch
                        .await
                        .map_err(|err| StoreError::TaskFailed(err.to_string()))??,
                    _ => self.objects.chunk_from(&self.mark.nuid, from).await?,
                };
                let next = self.checked(next, at)?;
                self.fetch_after(&next);
                self.current = Some(next.clone());
                return Ok(next);
            }
        }
        let found = self.locate(at).await?;
        self.fetch_after(&found);
        self.current = Some(found.clone());
        Ok(found)
    }

    /// Starts fetching the chunk after `chunk`, unless it is the last.
    fn fetch_after(&mut self, chunk: &Chunk) {
        if let Some((_, earlier)) = self.ahead.take() {
            earlier.abort();
        }
        if chunk.seq >= self.mark.last_chunk {
            return;
        }
        let from = chunk.seq + 1;
        let stream = self.objects.stream.clone();
        let subject = self.objects.chunk_subject(&self.mark.nuid);
        let nuid = self.mark.nuid.clone();
        let fetch = tokio::spawn(async move { fetch_from(&stream, subject, &nuid, from).await });
        self.ahead = Some((from, fetch));
    }

    /// `found`, if it is a chunk of the object that holds byte `at`.
    fn checked(&self, found: Option<Chunk>, at: u64) -> Result<Chunk> {
        found
            .filter(|chunk| chunk.seq <= self.mark.last_chunk && chunk.offset <= at)
            .filter(|chunk| chunk.end() > at)
            .ok_or_else(|| self.missing(at))
    }

    /// The chunk at or after `seq`, which must hold byte `at`.
    async fn chunk_after(&self, seq: u64, at: u64) -> Result<Chunk> {
        let found = self.objects.chunk_from(&self.mark.nuid, seq).await?;
        self.checked(found, at)
    }

    /// Finds the chunk that holds byte `at` by a binary search over the
    /// stream sequences of the object's chunks, which start at increasing
    /// offsets.
    async fn locate(&self, at: u64) -> Result<Chunk> {
        let (mut low, mut high) = (self.mark.first_chunk, self.mark.last_chunk);
        if low == 0 {
            return Err(self.missing(at));
        }
        let mut best: Option<Chunk> = None;
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            let probe = self
                .objects
                .chunk_from(&self.mark.nuid, middle)
                .await?
                .filter(|chunk| chunk.seq <= self.mark.last_chunk)
                .ok_or_else(|| self.missing(at))?;
            if probe.offset <= at {
                low = probe.seq;
                best = Some(probe);
            } else {
                high = middle - 1;
            }
        }
        let chunk = match best.filter(|chunk| chunk.seq == low) {
            Some(chunk) => chunk,
            None => self.chunk_after(low, at).await?,
        };
        match (chunk.offset..chunk.end()).contains(&at) {
            true => Ok(chunk),
            false => Err(self.missing(at)),
        }
    }

    /// `err`, or [`StoreError::ObjectNotFound`] when none of the object's
    /// chunks is left: retention deleted its run while it was read.
    async fn gone_or(&self, err: StoreError) -> StoreError {
        if !matches!(err, StoreError::Damaged { .. }) {
            return err;
        }
        match self.objects.chunk_from(&self.mark.nuid, 1).await {
            Ok(None) => StoreError::ObjectNotFound(self.object.to_string()),
            _ => err,
        }
    }

    /// The error for a byte no chunk holds.
    fn missing(&self, at: u64) -> StoreError {
        StoreError::damaged(
            format!("object {}", self.object),
            format!("has no chunk that holds byte {at}"),
        )
    }
}

impl Drop for JetStreamObjectReader {
    fn drop(&mut self) {
        if let Some((_, fetch)) = self.ahead.take() {
            fetch.abort();
        }
    }
}

impl ObjectReader for JetStreamObjectReader {
    async fn read_at(&mut self, offset: u64, want: usize) -> Result<Bytes> {
        if offset + want as u64 > self.mark.size {
            return Err(StoreError::io(
                format!("cannot read {}", self.object),
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let mut out = BytesMut::with_capacity(want);
        let mut at = offset;
        while out.len() < want {
            let chunk = match self.chunk_holding(at).await {
                Ok(chunk) => chunk,
                Err(err) => return Err(self.gone_or(err).await),
            };
            let start = (at - chunk.offset) as usize;
            let take = (chunk.data.len() - start).min(want - out.len());
            out.extend_from_slice(&chunk.data[start..start + take]);
            at += take as u64;
        }
        Ok(out.freeze())
    }
}
