//! Artifacts and checkpoints on the JetStream backend.
//!
//! # Design
//!
//! - **Bytes** live in a JetStream object store bucket, `<stream>_OBJECTS`
//!   (its stream is `OBJ_<stream>_OBJECTS`, with the run stream's
//!   replicas), as the chunks of one subject per upload,
//!   `$O.<bucket>.C.<nuid>` (`chunks`).
//! - **An upload is staged where its object will be.** Each write
//!   publishes its bytes as chunks, each with its offset and CRC-32C in
//!   headers, by compare-and-set on the subject's last chunk. A stream
//!   that resumes the upload, through any node, goes on after the last
//!   chunk stored, and two streams writing one upload cannot interleave:
//!   the second to write is refused (`UploadTakenOver`). What each upload
//!   becomes is in the `<stream>_UPLOADS` key-value bucket, by run and
//!   upload id (`uploads`).
//! - **A commit** checks the size and SHA-256, then publishes a record on
//!   the run's chain naming the object: its chunks, size and digest
//!   (`commit`). The object exists once that record is in, and the
//!   chain's compare-and-set decides as it does for entries: a terminal
//!   run, a closed or unreserved slot, a name that other bytes hold are
//!   refused, whichever node changed the run last. Then an object store
//!   meta message is written, so that `nats object get` reads it too.
//! - **Listing.** Each object record names the one before it, so a run's
//!   objects are a list from its tip back (`catalog`), which each node
//!   caches and extends.
//! - **Checkpoint slots** are reserved by a record with the
//!   `checkpoint_slot_reserved` entry, and committed by a state record;
//!   each record's head carries the open slots.
//! - **Retention** purges a deleted run's chunks and staged uploads before
//!   its records, and the sweep removes uploads left idle or of runs that
//!   ended.

mod catalog;
mod chunks;
mod commit;
mod import;
mod staging;
mod uploads;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, kv, stream};

pub(crate) use self::catalog::last_object_record;
use self::{catalog::Listing, staging::run_of};
pub use self::{chunks::JetStreamObjectReader, uploads::JetStreamUpload};
use super::{JetStreamStore, chain::Tip, open_bucket, retry_setup};
use crate::{
    error::{Result, StoreError},
    ids::check_id,
    model::{RunKey, RunStateSnapshot},
    objects::{
        ObjectInfo, ObjectKind, ObjectLimits, ObjectListing, ObjectRef, ObjectStore, UploadStatus,
    },
};

/// The largest chunk, in bytes, when the servers take larger messages:
/// a client's upload message of 1 MiB is one chunk, one replicated
/// publish (512 KiB chunks uploaded about a fifth slower in W10).
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// The objects bucket, the uploads bucket and what this node knows of
/// them.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    /// The JetStream context.
    js: jetstream::Context,
    /// The bucket's stream.
    stream: jetstream::stream::Stream,
    /// The bucket's name.
    bucket: String,
    /// Which object each staged upload becomes.
    uploads: kv::Store,
    /// The largest chunk.
    chunk_bytes: usize,
    /// The limits on a run's objects.
    limits: ObjectLimits,
    /// Each run's objects as this node last listed them.
    listings: Arc<Mutex<HashMap<RunKey, Listing>>>,
}

impl Objects {
    /// Opens the buckets of the stream `stream_name`, creating them when
    /// they do not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the servers refuse them for
    /// `patience`.
    pub(crate) async fn open(
        js: &jetstream::Context,
        stream_name: &str,
        replicas: usize,
        patience: Duration,
        limits: ObjectLimits,
        max_payload: usize,
    ) -> Result<Self> {
        let bucket = format!("{stream_name}_OBJECTS");
        // The stream an object store bucket has, as every NATS client
        // makes it: chunks and meta messages, rollups for the meta.
        let config = stream::Config {
            name: format!("OBJ_{bucket}"),
            subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            ..stream::Config::default()
        };
        let stream = retry_setup("create the objects bucket", patience, || {
            js.get_or_create_stream(config.clone())
        })
        .await?;
        let uploads = kv::Config {
            bucket: format!("{stream_name}_UPLOADS"),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..kv::Config::default()
        };
        let uploads = open_bucket(js, uploads, patience).await?;
        Ok(Self {
            js: js.clone(),
            stream,
            bucket,
            uploads,
            chunk_bytes: max_payload.min(MAX_CHUNK_BYTES),
            limits,
            listings: Arc::default(),
        })
    }
}

/// Refuses objects for a run that is terminal or being imported, and, for
/// a checkpoint object, a slot that is not reserved or is closed.
fn objects_allowed(tip: &Tip, object: &ObjectRef) -> Result<()> {
    let head = &tip.head.run;
    let key = &object.key;
    if head.state.status.is_terminal() {
        return Err(StoreError::Terminal {
            key: key.clone(),
            status: head.state.status,
            refused: crate::error::Refused::Objects,
        });
    }
    super::writes::importing(head, key)?;
    if object.kind == ObjectKind::Checkpoint {
        open_slot(key, tip, object.checkpoint_seq)?;
    }
    Ok(())
}

/// Refuses a checkpoint slot at or before the run's checkpoint, or never
/// reserved.
fn open_slot(key: &RunKey, tip: &Tip, checkpoint_seq: u64) -> Result<()> {
    let head = &tip.head.run;
    let current = head.state.checkpoint_seq;
    if checkpoint_seq <= current {
        return Err(StoreError::CheckpointClosed {
            key: key.clone(),
            checkpoint_seq,
            current,
        });
    }
    super::writes::check_reserved(key, head, checkpoint_seq)
}

/// Checks the ids an object names.
fn check_object(object: &ObjectRef) -> Result<()> {
    check_id("task_id", &object.key.task_id)?;
    check_id("run_id", &object.key.run_id)?;
    object.check()
}

impl ObjectStore for JetStreamStore {
    type Upload = JetStreamUpload;
    type Download = JetStreamObjectReader;

    async fn open_upload(&self, object: ObjectRef, upload_id: &str) -> Result<JetStreamUpload> {
        check_object(&object)?;
        check_id("upload_id", upload_id)?;
        // This node's retention leaves the run alone meanwhile; the
        // others' need not be told, since a terminal run, the only kind
        // retention deletes, takes no object.
        let guard = self.enter_here(&object.key);
        let tip = self.fresh_tip(&object.key).await?;
        JetStreamUpload::open(self.shared.clone(), &tip, object, upload_id, guard).await
    }

    async fn upload_status(&self, object: ObjectRef, upload_id: &str) -> Result<UploadStatus> {
        check_object(&object)?;
        check_id("upload_id", upload_id)?;
        let tip = self.fresh_tip(&object.key).await?;
        let marks = self.shared.objects_at(&object.key, &tip).await?;
        let existing = self
            .shared
            .find_mark(&tip, &object)
            .await?
            .map(|mark| mark.info())
            .transpose()?;
        let objects = &self.shared.objects;
        let staged = match objects.staging(&object.key, upload_id).await? {
            // A key left by a commit whose record is in, by a drop, or by
            // an earlier run of these ids stages nothing.
            Some((staging, _)) if staging.is_live(tip.origin(), &marks) => {
                staging.check_target(&object, upload_id)?;
                Some(objects.staged_end(&staging.nuid).await?.size)
            }
            _ => None,
        };
        Ok(UploadStatus {
            committed_size: staged.unwrap_or(0),
            complete: existing.clone().filter(|_| staged.is_none()),
            existing,
        })
    }

    async fn open_object(&self, object: ObjectRef) -> Result<(ObjectInfo, JetStreamObjectReader)> {
        check_object(&object)?;
        let tip = self.fresh_tip(&object.key).await?;
        let mark = self
            .shared
            .find_mark(&tip, &object)
            .await?
            .ok_or_else(|| StoreError::ObjectNotFound(object.to_string()))?;
        let info = mark.info()?;
        let reader = JetStreamObjectReader::new(self.shared.objects.clone(), object, mark);
        Ok((info, reader))
    }

    async fn list_objects(&self, key: &RunKey, kind: Option<ObjectKind>) -> Result<ObjectListing> {
        let tip = self.fresh_tip(key).await?;
        let marks = self.shared.objects_at(key, &tip).await?;
        let mut objects = marks
            .iter()
            .filter(|mark| kind.is_none_or(|kind| kind == mark.kind))
            .map(|mark| mark.info())
            .collect::<Result<Vec<_>>>()?;
        objects.sort_by(|a, b| {
            (a.kind, a.checkpoint_seq, &a.name).cmp(&(b.kind, b.checkpoint_seq, &b.name))
        });
        let staged = self
            .shared
            .objects
            .staged_bytes(key, tip.origin(), &marks, None)
            .await?;
        Ok(ObjectListing {
            objects,
            total_bytes: tip.head.run.objects.bytes + staged,
        })
    }

    async fn reserve_checkpoint(&self, key: &RunKey) -> Result<(u64, u64)> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        self.shared.reserve_checkpoint(key).await
    }

    async fn commit_checkpoint(
        &self,
        key: &RunKey,
        checkpoint_seq: u64,
    ) -> Result<RunStateSnapshot> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        self.shared.commit_checkpoint(key, checkpoint_seq).await
    }

    async fn sweep_uploads(&self, age: Duration) -> Result<u64> {
        let mut swept = 0;
        for (name, staging, revision) in self.shared.objects.all_stagings().await? {
            match self.sweep_one(&name, &staging, revision, age).await {
                Ok(true) => swept += 1,
                Ok(false) => {}
                Err(err) => tracing::warn!(upload = %name, cause = %err, "cannot sweep an upload"),
            }
        }
        Ok(swept)
    }
}

impl JetStreamStore {
    /// Drops the staged upload under the key `name` if nothing opened or
    /// wrote to it for `age`, or its run ended or is gone; only the key,
    /// when a record holds its chunks (a commit that stopped before it
    /// dropped the key). Returns whether it was dropped.
    async fn sweep_one(
        &self,
        name: &str,
        staging: &staging::Staging,
        revision: u64,
        age: Duration,
    ) -> Result<bool> {
        let objects = &self.shared.objects;
        let Some(key) = run_of(name) else {
            return Ok(false);
        };
        let tip = self.shared.chains.tip(&key).await?.filter(Tip::exists);
        if let Some(tip) = &tip
            && tip.origin() == staging.origin
        {
            let marks = self.shared.objects_at(&key, tip).await?;
            if staging.committed_in(&marks) {
                objects.forget_staging(name, revision).await?;
                return Ok(true);
            }
        }
        // A run being imported carries its source's state, often terminal:
        // its copies are swept only when idle.
        let ended = tip.as_ref().is_none_or(|tip| {
            tip.origin() != staging.origin
                || (tip.head.run.state.status.is_terminal() && !tip.head.run.importing)
        });
        if ended || objects.idle_for(staging).await? >= age {
            return objects.drop_staging(name, staging, revision).await;
        }
        Ok(false)
    }
}
