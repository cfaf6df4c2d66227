//! Copying a run's objects from another store during `baa-logd import`:
//! each object's bytes become the chunks of an upload of its own, checked
//! against the object's SHA-256 as they are copied, and the import then
//! commits it with a record on the run's chain.
//!
//! The upload is staged under a key like any other (its id is
//! `import-` and the start of the digest), so that an import that stops
//! part way leaves nothing the sweep does not find.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    Objects,
    staging::{Staging, staging_key},
};
use crate::{
    ObjectReader,
    error::{Result, StoreError},
    jetstream::{chain::Published, record::ObjectMark},
    model::RunKey,
    objects::{ObjectInfo, ObjectRef},
};

impl Objects {
    /// Copies the object `info` of the run `key` (prepared at `origin`),
    /// read by `reader`, into chunks of a new upload; returns what its
    /// record must say, and the revision of the upload's key, which stays
    /// until [`Objects::end_copy`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Damaged`] when the bytes read do not have the
    /// object's SHA-256; those of reading and publishing.
    pub(crate) async fn copy_object(
        &self,
        key: &RunKey,
        origin: u64,
        info: &ObjectInfo,
        reader: &mut impl ObjectReader,
    ) -> Result<(ObjectMark, u64)> {
        let upload_id = copy_id(info);
        let name = staging_key(key, &upload_id);
        let staging = Staging::new(&object_of(key, info), origin);
        // What an import that stopped staged is dropped: it starts again.
        if let Some((earlier, revision)) = self.staging(key, &upload_id).await? {
            self.drop_staging(&name, &earlier, revision).await?;
        }
        let Some(revision) = self.create_staging(&name, &staging).await? else {
            return Err(busy(key, info));
        };
        let mut hasher = Sha256::new();
        let (mut at, mut last_seq, mut chunks, mut first_chunk) = (0u64, 0u64, 0u64, 0u64);
        while at < info.size {
            let want = (info.size - at).min(self.chunk_bytes as u64) as usize;
            let data: Bytes = reader.read_at(at, want).await?;
            hasher.update(&data);
            match self
                .publish_chunk(&staging.nuid, last_seq, at, chunks, data)
                .await?
            {
                Published::Stored(seq) => {
                    if first_chunk == 0 {
                        first_chunk = seq;
                    }
                    last_seq = seq;
                }
                Published::Conflict => return Err(busy(key, info)),
            }
            chunks += 1;
            at += want as u64;
        }
        let sha256: [u8; 32] = hasher.finalize().into();
        if sha256 != info.sha256 {
            let _ = self.drop_staging(&name, &staging, revision).await;
            return Err(StoreError::damaged(
                describe(key, info),
                "does not have the SHA-256 its store recorded; it was not imported",
            ));
        }
        let mark = ObjectMark {
            kind: info.kind,
            checkpoint_seq: info.checkpoint_seq,
            name: info.name.clone(),
            size: info.size,
            sha256: hex::encode(sha256),
            nuid: staging.nuid,
            chunks,
            first_chunk,
            last_chunk: last_seq,
            committed_at: info.modified_at.clone(),
        };
        Ok((mark, revision))
    }

    /// Ends the copy of `info` once its record is in: its meta message,
    /// and its upload's key (at `revision`) dropped.
    pub(crate) async fn end_copy(
        &self,
        key: &RunKey,
        info: &ObjectInfo,
        mark: &ObjectMark,
        revision: u64,
    ) {
        self.publish_meta(&object_of(key, info), mark).await;
        let name = staging_key(key, &copy_id(info));
        if let Err(err) = self.forget_staging(&name, revision).await {
            tracing::warn!(upload = %name, cause = %err, "cannot drop an imported object's key");
        }
    }
}

/// The upload id of an object's copy.
fn copy_id(info: &ObjectInfo) -> String {
    let mut hasher = Sha256::new();
    hasher.update(info.kind.as_str());
    hasher.update(info.checkpoint_seq.to_be_bytes());
    hasher.update(info.name.as_bytes());
    format!("import-{}", &hex::encode(hasher.finalize())[..24])
}

/// The object `info` of `key`.
fn object_of(key: &RunKey, info: &ObjectInfo) -> ObjectRef {
    ObjectRef {
        key: key.clone(),
        kind: info.kind,
        name: info.name.clone(),
        checkpoint_seq: info.checkpoint_seq,
    }
}

/// An object, for messages.
fn describe(key: &RunKey, info: &ObjectInfo) -> String {
    object_of(key, info).to_string()
}

/// The error for an object that another import copies at the same time.
fn busy(key: &RunKey, info: &ObjectInfo) -> StoreError {
    StoreError::Unavailable {
        context: format!("importing {}", describe(key, info)),
        cause: "another import copies the same object; run the import again".to_owned(),
    }
}
