//! Which object each staged upload becomes: the `<stream>_UPLOADS`
//! key-value bucket, one key per run and upload id.
//!
//! The key's revision is who may write the upload: each stream that opens
//! (or resumes) it rewrites the key by compare-and-set and checks, before
//! each write, that the key is still at the revision it wrote. So a later
//! stream takes the upload over from an earlier one, whichever nodes they
//! are on; a commit marks the key `committing` the same way, and the sweep
//! marks it `dropping` before it removes anything, so neither can act on
//! an upload that another stream opened meanwhile.
//!
//! A key goes with a stream purge of its subject, which leaves no marker
//! behind in the bucket.

use async_nats::jetstream::{kv, stream::RawMessageErrorKind};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Objects, chunks::now_secs};
use crate::{
    error::{Result, StoreError},
    jetstream::{
        chain::unavailable,
        index::latest_values,
        record::ObjectMark,
        subject::{id_of, index_key, token},
    },
    model::RunKey,
    objects::{ObjectKind, ObjectRef},
};

/// Where a staged upload is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StagingState {
    /// Open to writes by the stream that wrote the key last.
    #[default]
    Open,
    /// Being committed: its record may be in or not.
    Committing,
    /// Being removed.
    Dropping,
}

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
    /// The stream sequence of the run's `Prepared` record: which run of
    /// those ids the upload is for.
    pub(crate) origin: u64,
    /// When a stream last opened it, in seconds since the epoch.
    pub(crate) opened_at: i64,
    /// Where it is.
    #[serde(default)]
    pub(crate) state: StagingState,
}

impl Staging {
    /// A new upload of `object`, for the run whose `Prepared` record is
    /// at `origin`.
    pub(crate) fn new(object: &ObjectRef, origin: u64) -> Self {
        Self {
            kind: object.kind,
            checkpoint_seq: object.checkpoint_seq,
            name: object.name.clone(),
            nuid: uuid::Uuid::new_v4().simple().to_string(),
            origin,
            opened_at: now_secs(),
            state: StagingState::Open,
        }
    }

    /// The same upload in `state`; opened or committed now, it counts as
    /// touched now, so the sweep leaves it for as long as an idle one.
    pub(crate) fn with_state(&self, state: StagingState) -> Self {
        Self {
            state,
            opened_at: match state {
                StagingState::Dropping => self.opened_at,
                _ => now_secs(),
            },
            ..self.clone()
        }
    }

    /// Whether `marks`, a run's objects, hold these chunks: the upload
    /// was committed, and only its key is left.
    pub(crate) fn committed_in(&self, marks: &[ObjectMark]) -> bool {
        marks.iter().any(|mark| mark.nuid == self.nuid)
    }

    /// Whether it stages bytes for the run prepared at `origin`, whose
    /// objects are `marks`: not a key left by a commit, by a drop, or by
    /// an earlier run of these ids.
    pub(crate) fn is_live(&self, origin: u64, marks: &[ObjectMark]) -> bool {
        self.origin == origin && self.state != StagingState::Dropping && !self.committed_in(marks)
    }

    /// Refuses an upload id that stages another object.
    pub(crate) fn check_target(&self, object: &ObjectRef, upload_id: &str) -> Result<()> {
        if self.kind == object.kind
            && self.checkpoint_seq == object.checkpoint_seq
            && self.name == object.name
        {
            return Ok(());
        }
        Err(StoreError::UploadConflict {
            upload_id: upload_id.to_owned(),
            other: format!(
                "{}: {} {}{}",
                object.key,
                self.kind.as_str(),
                match self.checkpoint_seq {
                    0 => String::new(),
                    seq => format!("{seq}/"),
                },
                self.name
            ),
        })
    }
}

/// The key of upload `upload_id` of `key`: `<task>.<run>.<upload>`, each
/// as its subject token.
pub(crate) fn staging_key(key: &RunKey, upload_id: &str) -> String {
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

/// A staging as stored: its key, what it holds, its revision.
pub(crate) type StoredStaging = (String, Staging, u64);

impl Objects {
    /// The staged upload `upload_id` of `key` and its key's revision;
    /// `None` when there is none.
    ///
    /// Read from the bucket stream's leader, not by a direct get that any
    /// replica may answer: a stream checks its own claim this way, and a
    /// replica behind the leader would answer with the key before it.
    /// A value that does not parse is not an upload this build staged:
    /// it is removed, and the upload starts afresh.
    pub(crate) async fn staging(
        &self,
        key: &RunKey,
        upload_id: &str,
    ) -> Result<Option<(Staging, u64)>> {
        let name = staging_key(key, upload_id);
        let subject = format!("{}{name}", self.uploads.prefix);
        let message = match self
            .uploads
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => {
                return Ok(None);
            }
            Err(err) => {
                return Err(unavailable(
                    format!("cannot read upload `{upload_id}`"),
                    err,
                ));
            }
        };
        if message.headers.get("KV-Operation").is_some() {
            return Ok(None);
        }
        match serde_json::from_slice(&message.payload) {
            Ok(staging) => Ok(Some((staging, message.sequence))),
            Err(err) => {
                tracing::warn!(upload = %name, cause = %err, "removing an upload key that does not parse");
                self.forget_staging(&name, message.sequence).await?;
                Ok(None)
            }
        }
    }

    /// Creates the key `name`; `None` when it exists already.
    pub(crate) async fn create_staging(
        &self,
        name: &str,
        staging: &Staging,
    ) -> Result<Option<u64>> {
        match self.uploads.create(name, encode(staging)).await {
            Ok(revision) => Ok(Some(revision)),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(unavailable(format!("cannot start upload {name}"), err)),
        }
    }

    /// Rewrites the key `name` to `staging` if it is still at `revision`;
    /// returns its new revision, `None` when another stream wrote it or it
    /// is gone.
    pub(crate) async fn claim(
        &self,
        name: &str,
        staging: &Staging,
        revision: u64,
    ) -> Result<Option<u64>> {
        match self.uploads.update(name, encode(staging), revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(err) => Err(unavailable(format!("cannot change upload {name}"), err)),
        }
    }

    /// Removes the key `name` as it was at `revision`, leaving no marker:
    /// a later write of the key (another stream opened the upload again)
    /// stays.
    pub(crate) async fn forget_staging(&self, name: &str, revision: u64) -> Result<()> {
        self.uploads
            .stream
            .purge()
            .filter(format!("{}{name}", self.uploads.prefix))
            .sequence(revision + 1)
            .await
            .map_err(|err| unavailable(format!("cannot drop upload {name}"), err))?;
        Ok(())
    }

    /// Drops a staged upload whose key is at `revision`: marks it
    /// `dropping`, then removes its chunks, then its key. Returns false,
    /// having done nothing, when another stream wrote the key meanwhile.
    pub(crate) async fn drop_staging(
        &self,
        name: &str,
        staging: &Staging,
        revision: u64,
    ) -> Result<bool> {
        let dropping = staging.with_state(StagingState::Dropping);
        let revision = match staging.state {
            // Marked already (a drop that stopped part way): go on.
            StagingState::Dropping => revision,
            _ => match self.claim(name, &dropping, revision).await? {
                Some(revision) => revision,
                None => return Ok(false),
            },
        };
        self.purge_chunks(&staging.nuid).await?;
        self.forget_staging(name, revision).await?;
        Ok(true)
    }

    /// Every staged upload, with its key and revision.
    pub(crate) async fn all_stagings(&self) -> Result<Vec<StoredStaging>> {
        self.stagings(">").await
    }

    /// The staged uploads of `key`.
    pub(crate) async fn run_stagings(&self, key: &RunKey) -> Result<Vec<StoredStaging>> {
        self.stagings(&format!("{}.>", index_key(key))).await
    }

    /// The staged uploads whose keys match `filter`.
    async fn stagings(&self, filter: &str) -> Result<Vec<StoredStaging>> {
        let values = latest_values(&self.uploads, filter, "the staged uploads").await?;
        Ok(values
            .into_iter()
            .filter_map(|(name, value, revision)| {
                let staging = serde_json::from_slice(&value).ok()?;
                Some((name, staging, revision))
            })
            .collect())
    }

    /// The bytes the staged uploads of the run `key` (prepared at
    /// `origin`, with the objects `marks`) hold, but those of chunks
    /// `except`.
    pub(crate) async fn staged_bytes(
        &self,
        key: &RunKey,
        origin: u64,
        marks: &[ObjectMark],
        except: Option<&str>,
    ) -> Result<u64> {
        let mut bytes = 0;
        for (_, staging, _) in self.run_stagings(key).await? {
            if staging.is_live(origin, marks) && Some(staging.nuid.as_str()) != except {
                bytes += self.staged_end(&staging.nuid).await?.size;
            }
        }
        Ok(bytes)
    }

    /// How long nothing opened or wrote to a staged upload.
    pub(crate) async fn idle_for(&self, staging: &Staging) -> Result<std::time::Duration> {
        let end = self.staged_end(&staging.nuid).await?;
        let touched = end.time.max(staging.opened_at);
        Ok(std::time::Duration::from_secs(
            (now_secs() - touched).max(0) as u64,
        ))
    }

    /// Drops the staged uploads of a run that retention deletes (prepared
    /// at `origin`, or before): not those of a run prepared again since.
    pub(crate) async fn drop_stagings(&self, key: &RunKey, origin: u64) -> Result<()> {
        for (name, staging, revision) in self.run_stagings(key).await? {
            if staging.origin <= origin {
                self.drop_staging(&name, &staging, revision).await?;
            }
        }
        Ok(())
    }
}

/// A staging as its key's value.
fn encode(staging: &Staging) -> Bytes {
    Bytes::from(serde_json::to_vec(staging).expect("a staging serializes"))
}
