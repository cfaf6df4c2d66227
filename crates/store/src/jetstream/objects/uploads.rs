//! Staged uploads: which object each becomes (the `<stream>_UPLOADS`
//! key-value bucket, one key per run and upload id), and the upload
//! handle that writes its chunks and commits it.
//!
//! The key is created once, when the upload first opens, with the token
//! of its chunks' subject; a stream that resumes the upload, through any
//! node, reads it back and goes on after the last chunk. The key goes
//! when the upload is committed, dropped for a wrong digest, or swept.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Objects,
    catalog::committed_at,
    chunks::{StagedEnd, now_secs},
    commit::Placed,
    objects_allowed,
};
use crate::{
    error::{Result, StoreError},
    jetstream::{
        Shared, UseGuard,
        chain::{Published, Tip, unavailable},
        index::latest_values,
        record::ObjectMark,
        subject::{id_of, index_key, token},
    },
    model::RunKey,
    objects::{ObjectInfo, ObjectKind, ObjectRef, ObjectUpload, UploadCommit},
};

/// What a staged upload becomes, as its key holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Staging {
    /// The directory.
    pub(crate) kind: ObjectKind,
    /// The checkpoint slot; 0 for an artifact.
    pub(crate) checkpoint_seq: u64,
    /// The path under the directory.
    pub(crate) name: String,
    /// The token of its chunks' subject.
    pub(crate) nuid: String,
    /// When it was first opened, in seconds since the epoch.
    pub(crate) opened_at: i64,
}

/// The key of upload `upload_id` of `key`: `<task>.<run>.<upload>`, each
/// as its subject token.
fn staging_key(key: &RunKey, upload_id: &str) -> String {
    format!("{}.{}", index_key(key), token(upload_id))
}

/// The run of a staging key.
pub(crate) fn run_of(name: &str) -> Option<RunKey> {
    let mut tokens = name.split('.');
    let (task, run) = (tokens.next()?, tokens.next()?);
    tokens.next()?;
    Some(RunKey {
        task_id: id_of(task)?,
        run_id: id_of(run)?,
    })
}

impl Objects {
    /// The key of upload `upload_id` of `key`.
    pub(crate) fn staging_name(&self, key: &RunKey, upload_id: &str) -> String {
        staging_key(key, upload_id)
    }

    /// Creates the key of upload `upload_id` of `key`.
    pub(crate) async fn put_staging(
        &self,
        key: &RunKey,
        upload_id: &str,
        staging: &Staging,
    ) -> Result<()> {
        let value = Bytes::from(serde_json::to_vec(staging).expect("a staging serializes"));
        self.uploads
            .put(staging_key(key, upload_id), value)
            .await
            .map_err(|err| unavailable(format!("cannot start upload `{upload_id}`"), err))?;
        Ok(())
    }

    /// The staged upload `upload_id` of `key` and its key's revision;
    /// `None` when there is none.
    pub(crate) async fn staging(
        &self,
        key: &RunKey,
        upload_id: &str,
    ) -> Result<Option<(Staging, u64)>> {
        let entry = self
            .uploads
            .entry(staging_key(key, upload_id))
            .await
            .map_err(|err| unavailable(format!("cannot read upload `{upload_id}`"), err))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .and_then(|entry| {
                let staging = serde_json::from_slice(&entry.value).ok()?;
                Some((staging, entry.revision))
            }))
    }

    /// Every staged upload, with its key and revision.
    pub(crate) async fn all_stagings(&self) -> Result<Vec<(String, Staging, u64)>> {
        self.stagings(">").await
    }

    /// The staged uploads whose keys match `filter`.
    async fn stagings(&self, filter: &str) -> Result<Vec<(String, Staging, u64)>> {
        let values = latest_values(&self.uploads, filter, "the staged uploads").await?;
        Ok(values
            .into_iter()
            .filter_map(|(name, value, revision)| {
                let staging = serde_json::from_slice(&value).ok()?;
                Some((name, staging, revision))
            })
            .collect())
    }

    /// The bytes the staged uploads of `key` hold, but `except`'s.
    pub(crate) async fn staged_bytes(&self, key: &RunKey, except: Option<&str>) -> Result<u64> {
        let mut bytes = 0;
        for (_, staging, _) in self.stagings(&format!("{}.>", index_key(key))).await? {
            if Some(staging.nuid.as_str()) != except {
                bytes += self.staged_end(&staging.nuid).await?.size;
            }
        }
        Ok(bytes)
    }

    /// How long nothing was written to a staged upload, in seconds.
    pub(crate) async fn idle_for(&self, staging: &Staging) -> Result<std::time::Duration> {
        let end = self.staged_end(&staging.nuid).await?;
        let touched = end.time.max(staging.opened_at);
        Ok(std::time::Duration::from_secs(
            (now_secs() - touched).max(0) as u64,
        ))
    }

    /// Drops a staged upload: its key (only at `revision` when one is
    /// given, so that an upload opened again meanwhile stays), then its
    /// chunks. Returns whether it was dropped.
    pub(crate) async fn drop_staging(
        &self,
        name: &str,
        staging: &Staging,
        revision: Option<u64>,
    ) -> Result<bool> {
        let purged = match revision {
            Some(revision) => {
                self.uploads
                    .purge_expect_revision(name, Some(revision))
                    .await
            }
            None => self.uploads.purge(name).await,
        };
        if let Err(err) = purged {
            if revision.is_some() {
                tracing::debug!(upload = name, cause = %err, "a staged upload changed; kept");
                return Ok(false);
            }
            return Err(unavailable(format!("cannot drop upload {name}"), err));
        }
        self.purge_chunks(&staging.nuid).await?;
        Ok(true)
    }

    /// Drops every staged upload of `key`.
    pub(crate) async fn drop_stagings(&self, key: &RunKey) -> Result<()> {
        for (name, staging, _) in self.stagings(&format!("{}.>", index_key(key))).await? {
            self.drop_staging(&name, &staging, None).await?;
        }
        Ok(())
    }
}

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
    /// What its key holds.
    staging: Staging,
    /// Where its chunks end.
    end: StagedEnd,
    /// The SHA-256 of its bytes, when this stream saw them all.
    hasher: Option<Sha256>,
    /// The bytes of the run's objects and its other staged uploads, when
    /// it was opened.
    run_bytes: u64,
    /// Keeps the run from this node's retention.
    _guard: UseGuard,
}

impl JetStreamUpload {
    /// Opens (or resumes) the upload `upload_id` of `object`, a run whose
    /// tip is `tip`.
    pub(crate) async fn open(
        shared: Arc<Shared>,
        tip: &Tip,
        object: ObjectRef,
        upload_id: &str,
        guard: UseGuard,
    ) -> Result<Self> {
        objects_allowed(tip, &object)?;
        let objects = &shared.objects;
        let name = staging_key(&object.key, upload_id);
        let staging = loop {
            if let Some((staging, _)) = objects.staging(&object.key, upload_id).await? {
                staging.check_target(&object, upload_id)?;
                break staging;
            }
            let run_uploads = objects
                .stagings(&format!("{}.>", index_key(&object.key)))
                .await?
                .len() as u64;
            if run_uploads >= objects.limits.max_run_uploads {
                return Err(StoreError::TooManyUploads {
                    key: object.key.clone(),
                    max: objects.limits.max_run_uploads,
                });
            }
            let staging = Staging {
                kind: object.kind,
                checkpoint_seq: object.checkpoint_seq,
                name: object.name.clone(),
                nuid: uuid::Uuid::new_v4().simple().to_string(),
                opened_at: now_secs(),
            };
            let value = Bytes::from(serde_json::to_vec(&staging).expect("a staging serializes"));
            match objects.uploads.create(&name, value).await {
                Ok(_) => break staging,
                // Another stream created it first: use that one.
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(unavailable(
                        format!("cannot start upload `{upload_id}`"),
                        err,
                    ));
                }
            }
        };
        let end = objects.staged_end(&staging.nuid).await?;
        let run_bytes = tip.head.run.objects.bytes
            + objects
                .staged_bytes(&object.key, Some(&staging.nuid))
                .await?;
        Ok(Self {
            hasher: (end.size == 0).then(Sha256::new),
            shared,
            object,
            upload_id: upload_id.to_owned(),
            staging,
            end,
            run_bytes,
            _guard: guard,
        })
    }

    /// The error for a stream whose upload another stream wrote to, or
    /// that was committed or swept meanwhile.
    fn taken_over(&self) -> StoreError {
        StoreError::UploadTakenOver {
            upload_id: self.upload_id.clone(),
        }
    }

    /// Drops the staged bytes and the upload's key.
    async fn discard(&self) -> Result<()> {
        let name = staging_key(&self.object.key, &self.upload_id);
        self.shared
            .objects
            .drop_staging(&name, &self.staging, None)
            .await
            .map(|_| ())
    }
}

impl ObjectUpload for JetStreamUpload {
    fn size(&self) -> u64 {
        self.end.size
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> Result<()> {
        if offset != self.end.size {
            return Err(StoreError::UploadOffset {
                upload_id: self.upload_id.clone(),
                expected: self.end.size,
                got: offset,
            });
        }
        let limits = self.shared.objects.limits;
        let size = self.end.size + data.len() as u64;
        if size > limits.max_object_bytes {
            return Err(StoreError::ObjectTooLarge {
                what: format!("object {}", self.object),
                size,
                limit: "max_object_bytes",
                max: limits.max_object_bytes,
            });
        }
        if self.run_bytes + size > limits.max_run_objects_bytes {
            return Err(StoreError::ObjectTooLarge {
                what: format!("the objects of run `{}`", self.object.key),
                size: self.run_bytes + size,
                limit: "max_run_objects_bytes",
                max: limits.max_run_objects_bytes,
            });
        }
        if self.end.last_seq == 0 {
            // The first chunk: the upload must not have been swept since
            // it was opened, or its chunks would belong to nothing.
            let current = self
                .shared
                .objects
                .staging(&self.object.key, &self.upload_id)
                .await?;
            if current.is_none_or(|(staging, _)| staging.nuid != self.staging.nuid) {
                return Err(self.taken_over());
            }
        }
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

    async fn commit(self, commit: UploadCommit) -> Result<ObjectInfo> {
        if commit.size != self.end.size {
            return Err(StoreError::UploadSizeMismatch {
                upload_id: self.upload_id.clone(),
                held: self.end.size,
                size: commit.size,
            });
        }
        let objects = &self.shared.objects;
        // Read back: the bytes are what the bucket holds now, whoever
        // wrote them, and the first chunk's place is known.
        let (sha256, first_chunk) = match (&self.hasher, self.end.size) {
            (_, 0) => (Sha256::digest([]).into(), 0),
            (Some(hasher), _) => {
                let first = objects
                    .chunk_from(&self.staging.nuid, 1)
                    .await?
                    .map_or(0, |chunk| chunk.seq);
                (hasher.clone().finalize().into(), first)
            }
            (None, size) => objects.hash_staged(&self.staging.nuid, size).await?,
        };
        let latest = objects.staged_end(&self.staging.nuid).await?;
        if (latest.last_seq, latest.size) != (self.end.last_seq, self.end.size) {
            return Err(self.taken_over());
        }
        if sha256 != commit.sha256 {
            self.discard().await?;
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
        let placed = self.shared.commit_object(&self.object, &mark).await?;
        let name = staging_key(&self.object.key, &self.upload_id);
        match &placed {
            Placed::New => {
                objects.publish_meta(&self.object, &mark).await;
                if let Err(err) = objects.uploads.purge(&name).await {
                    tracing::warn!(upload = %name, cause = %err, "cannot drop a committed upload's key");
                }
            }
            // A commit retried after its answer was lost: these chunks
            // are the object.
            Placed::Already(existing) if existing.nuid == mark.nuid => {
                let _ = objects.uploads.purge(&name).await;
            }
            // The same bytes, committed by another upload: these go.
            Placed::Already(_) => self.discard().await?,
        }
        match placed {
            Placed::New => mark.info(),
            Placed::Already(existing) => existing.info(),
        }
    }

    async fn close(self) -> Result<u64> {
        // Every chunk was acknowledged by the stream's quorum when it was
        // written: nothing is left to make durable.
        Ok(self.end.size)
    }
}
