//! The upload handle: it opens (or resumes) an upload by rewriting its
//! key, writes its bytes as chunks while it still holds the key, and
//! commits it.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    catalog::committed_at,
    chunks::{StagedEnd, now_secs},
    commit::Placed,
    objects_allowed,
    staging::{Staging, StagingState, staging_key},
};
use crate::{
    error::{Result, StoreError},
    jetstream::{
        Shared, UseGuard,
        chain::{Published, Tip},
        record::ObjectMark,
    },
    objects::{ObjectInfo, ObjectRef, ObjectUpload, UploadCommit},
};

/// How many bytes an upload writes between two checks of what the run's
/// other uploads staged meanwhile, through any node.
const RECOUNT_EVERY: u64 = 64 << 20;

/// How long, in seconds, a commit holds its upload against streams that
/// would take it over: from when it last marked the key, just before it
/// puts its record in. A commit that stopped (its node died) is taken
/// over once this has passed.
const COMMIT_GRACE_SECS: i64 = 10;

/// An upload on the JetStream backend: chunks published in order, then
/// the commit.
#[derive(Debug)]
pub struct JetStreamUpload {
    /// The store.
    shared: Arc<Shared>,
    /// The object it becomes.
    object: ObjectRef,
    /// The upload id.
    upload_id: String,
    /// Its key.
    name: String,
    /// What its key holds.
    staging: Staging,
    /// The revision of its key this stream wrote: the stream may write
    /// while the key is at it.
    revision: u64,
    /// Where its chunks end.
    end: StagedEnd,
    /// The SHA-256 of its bytes, when this stream saw them all.
    hasher: Option<Sha256>,
    /// The bytes of the run's objects and its other staged uploads, as
    /// last counted.
    run_bytes: u64,
    /// What this stream wrote since they were counted.
    since_count: u64,
    /// Keeps the run from this node's retention.
    _guard: UseGuard,
}

impl JetStreamUpload {
    /// Opens (or resumes) the upload `upload_id` of `object`, a run whose
    /// tip is `tip`: a later stream takes it over from an earlier one.
    pub(crate) async fn open(
        shared: Arc<Shared>,
        tip: &Tip,
        object: ObjectRef,
        upload_id: &str,
        guard: UseGuard,
    ) -> Result<Self> {
        objects_allowed(tip, &object)?;
        let objects = &shared.objects;
        let marks = shared.objects_at(&object.key, tip).await?;
        let name = staging_key(&object.key, upload_id);
        let origin = tip.origin();
        let (staging, revision) = loop {
            match objects.staging(&object.key, upload_id).await? {
                Some((staging, _)) if staging.origin > origin => {
                    // Of a run prepared again after the tip this open
                    // read: the client tries again, on the new run.
                    return Err(StoreError::Unavailable {
                        context: format!("run `{}` was prepared again meanwhile", object.key),
                        cause: "try again".to_owned(),
                    });
                }
                Some((staging, revision)) if !staging.is_live(origin, &marks) => {
                    // Left by a commit whose record is in, by a drop that
                    // stopped part way, or by an earlier run of these ids:
                    // gone, and the upload starts afresh.
                    match staging.committed_in(&marks) {
                        true => objects.forget_staging(&name, revision).await?,
                        false => {
                            objects.drop_staging(&name, &staging, revision).await?;
                        }
                    }
                }
                Some((staging, revision)) => {
                    staging.check_target(&object, upload_id)?;
                    let since = now_secs() - staging.opened_at;
                    if staging.state == StagingState::Committing && since < COMMIT_GRACE_SECS {
                        // Its record may be going in now: a stream that
                        // took over would write past the object. The
                        // client tries again, and then finds the object
                        // committed, or the commit given up.
                        return Err(StoreError::Unavailable {
                            context: format!("upload `{upload_id}` is being committed"),
                            cause: "try again in a few seconds".to_owned(),
                        });
                    }
                    let opened = staging.with_state(StagingState::Open);
                    let Some(revision) = objects.claim(&name, &opened, revision).await? else {
                        continue;
                    };
                    if staging.state == StagingState::Committing {
                        // Its commit may be putting its record in now: if
                        // it is in, these chunks are the object.
                        let now = shared.chains.tip(&object.key).await?;
                        let now = now.as_ref().filter(|tip| tip.exists()).unwrap_or(tip);
                        if staging.committed_in(&shared.objects_at(&object.key, now).await?) {
                            objects.forget_staging(&name, revision).await?;
                            continue;
                        }
                    }
                    break (opened, revision);
                }
                None => {
                    let live = objects
                        .run_stagings(&object.key)
                        .await?
                        .iter()
                        .filter(|(_, staging, _)| staging.is_live(origin, &marks))
                        .count() as u64;
                    if live >= objects.limits.max_run_uploads {
                        return Err(StoreError::TooManyUploads {
                            key: object.key.clone(),
                            max: objects.limits.max_run_uploads,
                        });
                    }
                    let staging = Staging::new(&object, origin);
                    if let Some(revision) = objects.create_staging(&name, &staging).await? {
                        break (staging, revision);
                    }
                }
            }
        };
        let end = objects.staged_end(&staging.nuid).await?;
        let run_bytes = tip.head.run.objects.bytes
            + objects
                .staged_bytes(&object.key, tip.origin(), &marks, Some(&staging.nuid))
                .await?;
        Ok(Self {
            hasher: (end.size == 0).then(Sha256::new),
            shared,
            object,
            upload_id: upload_id.to_owned(),
            name,
            staging,
            revision,
            end,
            run_bytes,
            since_count: 0,
            _guard: guard,
        })
    }

    /// The error for a stream whose upload another stream opened since,
    /// or that was committed or swept meanwhile.
    fn taken_over(&self) -> StoreError {
        StoreError::UploadTakenOver {
            upload_id: self.upload_id.clone(),
        }
    }

    /// Refuses a write once another stream holds the upload's key.
    async fn check_held(&self) -> Result<()> {
        let current = self
            .shared
            .objects
            .staging(&self.object.key, &self.upload_id)
            .await?;
        match current {
            Some((_, revision)) if revision == self.revision => Ok(()),
            _ => Err(self.taken_over()),
        }
    }

    /// Counts again the bytes of the run's objects and other uploads.
    async fn recount(&mut self) -> Result<()> {
        let key = &self.object.key;
        let shared = &self.shared;
        let tip = shared
            .chains
            .tip(key)
            .await?
            .filter(Tip::exists)
            .ok_or_else(|| StoreError::RunNotFound(key.clone()))?;
        let marks = shared.objects_at(key, &tip).await?;
        let staged = shared
            .objects
            .staged_bytes(key, tip.origin(), &marks, Some(&self.staging.nuid))
            .await?;
        self.run_bytes = tip.head.run.objects.bytes + staged;
        self.since_count = 0;
        Ok(())
    }

    /// Refuses `size` bytes staged past a limit on the run's objects.
    async fn check_limits(&mut self, size: u64) -> Result<()> {
        let limits = self.shared.objects.limits;
        if size > limits.max_object_bytes {
            return Err(StoreError::ObjectTooLarge {
                what: format!("object {}", self.object),
                size,
                limit: "max_object_bytes",
                max: limits.max_object_bytes,
            });
        }
        // Other uploads of the run, through other nodes, are counted
        // again every so often, and whenever the run is past three
        // quarters of its limit.
        let near = (self.run_bytes + size).saturating_mul(4)
            >= limits.max_run_objects_bytes.saturating_mul(3);
        if near || self.since_count >= RECOUNT_EVERY {
            self.recount().await?;
        }
        if self.run_bytes + size > limits.max_run_objects_bytes {
            return Err(StoreError::ObjectTooLarge {
                what: format!("the objects of run `{}`", self.object.key),
                size: self.run_bytes + size,
                limit: "max_run_objects_bytes",
                max: limits.max_run_objects_bytes,
            });
        }
        Ok(())
    }

    /// The SHA-256 of the staged bytes, and the stream sequence of their
    /// first chunk (0 for none).
    async fn digest(&self) -> Result<([u8; 32], u64)> {
        let objects = &self.shared.objects;
        let nuid = &self.staging.nuid;
        match (&self.hasher, self.end.size) {
            (_, 0) => Ok((Sha256::digest([]).into(), 0)),
            (Some(hasher), _) => {
                let first = objects
                    .chunk_from(nuid, 1)
                    .await?
                    .map_or(0, |chunk| chunk.seq);
                Ok((hasher.clone().finalize().into(), first))
            }
            // Resumed: the bytes are read back from the bucket.
            (None, size) => objects.hash_staged(nuid, size).await,
        }
    }
}

impl ObjectUpload for JetStreamUpload {
    fn size(&self) -> u64 {
        self.end.size
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> Result<()> {
        if data.is_empty() && offset == self.end.size {
            return Ok(());
        }
        // As on local disk, a stream taken over hears that first.
        self.check_held().await?;
        if offset != self.end.size {
            return Err(StoreError::UploadOffset {
                upload_id: self.upload_id.clone(),
                expected: self.end.size,
                got: offset,
            });
        }
        self.check_limits(self.end.size + data.len() as u64).await?;
        let chunk_bytes = self.shared.objects.chunk_bytes;
        let mut at = 0;
        while at < data.len() {
            let piece = data.slice(at..(at + chunk_bytes).min(data.len()));
            let published = self
                .shared
                .objects
                .publish_chunk(
                    &self.staging.nuid,
                    self.end.last_seq,
                    self.end.size,
                    self.end.chunks,
                    piece.clone(),
                )
                .await?;
            match published {
                Published::Stored(seq) => {
                    self.end.last_seq = seq;
                    self.end.size += piece.len() as u64;
                    self.end.chunks += 1;
                    self.since_count += piece.len() as u64;
                    if let Some(hasher) = &mut self.hasher {
                        hasher.update(&piece);
                    }
                }
                Published::Conflict => return Err(self.taken_over()),
            }
            at += piece.len();
        }
        Ok(())
    }

    async fn commit(mut self, commit: UploadCommit) -> Result<ObjectInfo> {
        self.check_held().await?;
        if commit.size != self.end.size {
            return Err(StoreError::UploadSizeMismatch {
                upload_id: self.upload_id.clone(),
                held: self.end.size,
                size: commit.size,
            });
        }
        let objects = self.shared.objects.clone();
        // Marked: no other stream writes, and the sweep keeps it.
        let committing = self.staging.with_state(StagingState::Committing);
        self.revision = objects
            .claim(&self.name, &committing, self.revision)
            .await?
            .ok_or_else(|| self.taken_over())?;
        let latest = objects.staged_end(&self.staging.nuid).await?;
        if (latest.last_seq, latest.size) != (self.end.last_seq, self.end.size) {
            return Err(self.taken_over());
        }
        let (sha256, first_chunk) = self.digest().await?;
        if sha256 != commit.sha256 {
            objects
                .drop_staging(&self.name, &committing, self.revision)
                .await?;
            return Err(StoreError::DigestMismatch {
                upload_id: self.upload_id.clone(),
            });
        }
        let mark = ObjectMark {
            kind: self.object.kind,
            checkpoint_seq: self.object.checkpoint_seq,
            name: self.object.name.clone(),
            size: self.end.size,
            sha256: hex::encode(sha256),
            nuid: self.staging.nuid.clone(),
            chunks: self.end.chunks,
            first_chunk,
            last_chunk: self.end.last_seq,
            committed_at: committed_at(crate::local::journal::commit_time(0)),
        };
        // Still held, and marked again: for a while from now, no stream
        // takes the upload over, so none writes past the object.
        let committing = committing.with_state(StagingState::Committing);
        self.revision = objects
            .claim(&self.name, &committing, self.revision)
            .await?
            .ok_or_else(|| self.taken_over())?;
        let placed = match self.shared.commit_object(&self.object, &mark).await {
            Ok(placed) => placed,
            Err(err) => {
                if !matches!(err, StoreError::Unavailable { .. }) {
                    // Refused, so not in: the upload is open again at
                    // once, for the client to resume or commit again.
                    let open = committing.with_state(StagingState::Open);
                    if let Err(cause) = objects.claim(&self.name, &open, self.revision).await {
                        tracing::debug!(upload = %self.name, %cause, "cannot reopen a refused upload; it opens after the grace");
                    }
                }
                return Err(err);
            }
        };
        let object = match placed {
            Placed::New => mark,
            // A commit retried after its answer was lost: these chunks
            // are the object.
            Placed::Already(existing) if existing.nuid == mark.nuid => existing,
            // The same bytes, committed by another upload: these go.
            Placed::Already(existing) => {
                objects
                    .drop_staging(&self.name, &committing, self.revision)
                    .await?;
                return existing.info();
            }
        };
        objects.publish_meta(&self.object, &object).await;
        if let Err(err) = objects.forget_staging(&self.name, self.revision).await {
            // The sweep finds the key, and the record that holds its
            // chunks, and drops the key alone.
            tracing::warn!(upload = %self.name, cause = %err, "cannot drop a committed upload's key");
        }
        object.info()
    }

    async fn close(self) -> Result<u64> {
        // Every chunk was acknowledged by the stream's quorum when it was
        // written: nothing is left to make durable.
        Ok(self.end.size)
    }
}
