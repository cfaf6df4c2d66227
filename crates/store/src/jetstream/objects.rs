//! Artifacts and checkpoints on the JetStream backend: not stored yet.
//! Every call is refused with [`StoreError::Unsupported`], which clients
//! get as `UNIMPLEMENTED`, and nothing is half-done.

use crate::{
    error::{Result, StoreError},
    model::{RunKey, RunStateSnapshot},
    objects::{
        ObjectInfo, ObjectKind, ObjectListing, ObjectRef, ObjectStore, ObjectUpload, UploadCommit,
        UploadStatus,
    },
};

use super::JetStreamStore;

/// The refusal.
fn unsupported() -> StoreError {
    StoreError::Unsupported(
        "artifacts and checkpoints are not stored on the jetstream backend yet; \
         use the local store for runs that need them"
            .to_owned(),
    )
}

/// An upload on the JetStream backend; none is ever opened.
#[derive(Debug)]
pub struct JetStreamUpload(());

impl ObjectUpload for JetStreamUpload {
    fn size(&self) -> u64 {
        0
    }

    async fn write(&mut self, _offset: u64, _data: bytes::Bytes) -> Result<()> {
        Err(unsupported())
    }

    async fn commit(self, _commit: UploadCommit) -> Result<ObjectInfo> {
        Err(unsupported())
    }

    async fn close(self) -> Result<u64> {
        Err(unsupported())
    }
}

impl ObjectStore for JetStreamStore {
    type Upload = JetStreamUpload;

    async fn open_upload(&self, _object: ObjectRef, _upload_id: &str) -> Result<Self::Upload> {
        Err(unsupported())
    }

    async fn upload_status(&self, _object: ObjectRef, _upload_id: &str) -> Result<UploadStatus> {
        Err(unsupported())
    }

    async fn open_object(&self, _object: ObjectRef) -> Result<(ObjectInfo, std::fs::File)> {
        Err(unsupported())
    }

    async fn list_objects(
        &self,
        _key: &RunKey,
        _kind: Option<ObjectKind>,
    ) -> Result<ObjectListing> {
        Err(unsupported())
    }

    async fn reserve_checkpoint(&self, _key: &RunKey) -> Result<(u64, u64)> {
        Err(unsupported())
    }

    async fn commit_checkpoint(
        &self,
        _key: &RunKey,
        _checkpoint_seq: u64,
    ) -> Result<RunStateSnapshot> {
        Err(unsupported())
    }

    async fn sweep_uploads(&self, _age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}
