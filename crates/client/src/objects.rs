//! A run's objects from the client: files uploaded into the run's
//! `artifacts/` or a checkpoint slot, resumed from the server's committed
//! offset after a broken connection, downloaded into a local file that a
//! later download resumes, and listed; and the checkpoint slots.
//!
//! An upload reads its file once: the SHA-256 the server checks the
//! object against is computed while the bytes are sent (a resumed upload
//! hashes the part the server holds from the local file first). Its
//! upload id is derived from the object, the file's size and its
//! modification time, so that an upload that a killed process left
//! behind is resumed by the next one for the same file.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::UNIX_EPOCH,
};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tonic::Code;

use crate::{
    Client, ClientError, RetryPolicy, RunKey, backoff::Backoff, error::is_retryable_status, pb,
};

/// The most bytes of data in one upload message.
const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// Room left in an upload message for what is not data: the first one's
/// `open` names the object (a name of up to 1024 bytes, ids of up to 128)
/// and the last one carries the commit.
const UPLOAD_MESSAGE_MARGIN: usize = 4096;

/// Told how a transfer goes: the bytes done (the server's, for an upload;
/// the local file's, for a download) and the object's size.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// One object of a run: which directory, and its path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// `artifacts/` or a checkpoint slot.
    pub kind: pb::ObjectKind,
    /// The path under it, `/`-separated.
    pub name: String,
    /// The checkpoint slot; 0 for an artifact.
    pub checkpoint_seq: u64,
}

impl ObjectName {
    /// The artifact `name` (a path under the run's `artifacts/`).
    pub fn artifact(name: impl Into<String>) -> Self {
        Self {
            kind: pb::ObjectKind::Artifact,
            name: name.into(),
            checkpoint_seq: 0,
        }
    }

    /// The file `name` of checkpoint slot `checkpoint_seq`.
    pub fn checkpoint(checkpoint_seq: u64, name: impl Into<String>) -> Self {
        Self {
            kind: pb::ObjectKind::Checkpoint,
            name: name.into(),
            checkpoint_seq,
        }
    }

    /// The reference the server takes, for the run `key`.
    fn to_ref(&self, key: &RunKey) -> pb::ObjectRef {
        pb::ObjectRef {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
            kind: self.kind.into(),
            name: self.name.clone(),
            checkpoint_seq: self.checkpoint_seq,
        }
    }
}

/// How an upload or download goes.
#[derive(Clone, Default)]
pub struct TransferOptions {
    /// Told after each piece.
    pub progress: Option<Progress>,
    /// How long to wait between attempts after a broken connection; the
    /// default gives up after a minute.
    pub retry: Option<RetryPolicy>,
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("progress", &self.progress.is_some())
            .field("retry", &self.retry)
            .finish()
    }
}

impl TransferOptions {
    /// The retry policy, with a minute's patience by default.
    fn retry(&self) -> RetryPolicy {
        self.retry.unwrap_or(RetryPolicy {
            give_up_after: Some(std::time::Duration::from_secs(60)),
            ..RetryPolicy::default()
        })
    }

    /// Tells the progress callback, if any.
    fn tell(&self, done: u64, size: u64) {
        if let Some(progress) = &self.progress {
            progress(done, size);
        }
    }
}

/// A SHA-256 in hex, for messages.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of a file's first `len` bytes.
async fn hash_prefix(path: &Path, len: u64) -> std::io::Result<Sha256> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        let want = buffer.len().min(left as usize);
        let n = file.read(&mut buffer[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(hasher)
}

impl Client {
    /// Uploads the file at `path` as `object` of the run `key`, resuming
    /// from the bytes the server holds after a broken connection (and
    /// after an earlier upload of the same file that did not finish), and
    /// returns the stored object.
    ///
    /// # Errors
    ///
    /// `ALREADY_EXISTS` when the run holds another object of that name,
    /// `FAILED_PRECONDITION` for a terminal run or a closed checkpoint
    /// slot, `RESOURCE_EXHAUSTED` past a limit, `INVALID_ARGUMENT` for a
    /// bad name; [`ClientError::Io`] when the file cannot be read; the
    /// last error once the retry policy gives up.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: baa_logging_client::Client) -> Result<(), baa_logging_client::ClientError> {
    /// use baa_logging_client::{ObjectName, RunKey, TransferOptions};
    ///
    /// let key = RunKey::new("build", "run-1");
    /// let object = ObjectName::artifact("reports/junit.xml");
    /// let stored = client
    ///     .upload_file(&key, &object, "target/junit.xml".as_ref(), &TransferOptions::default())
    ///     .await?;
    /// println!("{} bytes", stored.size);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn upload_file(
        &self,
        key: &RunKey,
        object: &ObjectName,
        path: &Path,
        options: &TransferOptions,
    ) -> Result<pb::ObjectInfo, ClientError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        let size = meta.len();
        let modified = meta
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        let upload_id = {
            let mut hasher = Sha256::new();
            hasher.update(format!(
                "{key}\n{}\n{}\n{}\n{size}\n{modified}",
                object.kind.as_str_name(),
                object.checkpoint_seq,
                object.name
            ));
            format!("u-{}", &hex(&hasher.finalize())[..32])
        };
        let chunk = self.upload_chunk_bytes().await;
        let mut backoff = Backoff::new(options.retry());
        loop {
            match self
                .upload_attempt(key, object, path, size, &upload_id, chunk, options)
                .await
            {
                Ok(info) => return Ok(info),
                Err(ClientError::Status(status))
                    if is_retryable_status(&status) || status.code() == Code::Aborted =>
                {
                    if !backoff.wait().await {
                        return Err(status.into());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The bytes of data in one upload message: [`UPLOAD_CHUNK_BYTES`], or
    /// less when the server decodes smaller messages (its
    /// `max_message_bytes`, less [`UPLOAD_MESSAGE_MARGIN`] for the rest of
    /// the message). A server that does not say gets the default.
    async fn upload_chunk_bytes(&self) -> usize {
        match self.server_info().await {
            Ok(info) if info.max_message_bytes > 0 => {
                let fits = info
                    .max_message_bytes
                    .saturating_sub(UPLOAD_MESSAGE_MARGIN as u64)
                    .max(1);
                usize::try_from(fits)
                    .map_or(UPLOAD_CHUNK_BYTES, |fits| fits.min(UPLOAD_CHUNK_BYTES))
            }
            _ => UPLOAD_CHUNK_BYTES,
        }
    }

    /// One try of an upload, from the server's committed size, in messages
    /// of `chunk` bytes of data.
    #[allow(clippy::too_many_arguments)]
    async fn upload_attempt(
        &self,
        key: &RunKey,
        object: &ObjectName,
        path: &Path,
        size: u64,
        upload_id: &str,
        chunk: usize,
        options: &TransferOptions,
    ) -> Result<pb::ObjectInfo, ClientError> {
        let reference = object.to_ref(key);
        let status = self
            .stub()
            .get_upload_status(pb::GetUploadStatusRequest {
                object: Some(reference.clone()),
                upload_id: upload_id.to_owned(),
            })
            .await?
            .into_inner();
        if let Some(stored) = status.object.filter(|_| status.complete) {
            let ours = hash_prefix(path, size)
                .await
                .map_err(|err| ClientError::io(path, err))?
                .finalize();
            if stored.size == size && stored.sha256 == ours.as_slice() {
                options.tell(size, size);
                return Ok(stored);
            }
        }
        let offset = status.committed_size;
        if offset > size {
            return Err(ClientError::InvalidInput {
                what: "file",
                reason: format!(
                    "{} is {size} bytes, but the server holds {offset} bytes of its upload: \
                     the file changed while it was uploaded",
                    path.display()
                ),
            });
        }
        let hasher = hash_prefix(path, offset)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|err| ClientError::io(path, err))?;
        options.tell(offset, size);
        let failure: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let source = UploadSource {
            file,
            offset,
            size,
            hasher,
            open: Some(pb::UploadOpen {
                object: Some(reference),
                upload_id: upload_id.to_owned(),
            }),
            chunk,
            done: false,
            failure: failure.clone(),
            options: options.clone(),
        };
        let requests = futures::stream::unfold(source, UploadSource::next).boxed();
        let response = self.stub().upload_object(requests).await;
        if let Some(err) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(ClientError::io(path, err));
        }
        let response = response?.into_inner();
        match response.object.filter(|_| response.committed) {
            Some(stored) => Ok(stored),
            None => Err(tonic::Status::unavailable(format!(
                "the upload stream ended at {} bytes without a commit",
                response.committed_size
            ))
            .into()),
        }
    }

    /// Downloads `object` of the run `key` into the file at `path`, and
    /// returns it. A file already there that is shorter than the object is
    /// taken for the start of an earlier download and resumed; the whole
    /// file is then checked against the object's SHA-256.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an object that is not there; [`ClientError::Io`]
    /// when the file cannot be written; [`ClientError::DigestMismatch`]
    /// when what was written does not have the object's digest.
    pub async fn download_file(
        &self,
        key: &RunKey,
        object: &ObjectName,
        path: &Path,
        options: &TransferOptions,
    ) -> Result<pb::ObjectInfo, ClientError> {
        let mut backoff = Backoff::new(options.retry());
        let mut restarted = false;
        loop {
            match self.download_attempt(key, object, path, options).await {
                Ok(info) => return Ok(info),
                // The local file is longer than the object, or holds other
                // bytes: it is not the start of this object; start over.
                Err(ClientError::Status(status))
                    if status.code() == Code::OutOfRange && !restarted =>
                {
                    restarted = true;
                    truncate(path).await?;
                }
                Err(ClientError::DigestMismatch { .. }) if !restarted => {
                    restarted = true;
                    truncate(path).await?;
                }
                Err(ClientError::Status(status)) if is_retryable_status(&status) => {
                    if !backoff.wait().await {
                        return Err(status.into());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One try of a download, from the local file's length.
    async fn download_attempt(
        &self,
        key: &RunKey,
        object: &ObjectName,
        path: &Path,
        options: &TransferOptions,
    ) -> Result<pb::ObjectInfo, ClientError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        let offset = file
            .metadata()
            .await
            .map_err(|err| ClientError::io(path, err))?
            .len();
        let mut stream = self
            .stub()
            .download_object(pb::DownloadObjectRequest {
                object: Some(object.to_ref(key)),
                offset,
            })
            .await?
            .into_inner();
        // The part already here is hashed first; the rest as it comes, so
        // the file is read back only for a resumed download's start.
        let mut hasher = hash_prefix(path, offset)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        let mut info: Option<pb::ObjectInfo> = None;
        let mut done = offset;
        let received: Result<(), ClientError> = async {
            while let Some(message) = stream.message().await? {
                if let Some(object) = message.object {
                    options.tell(done, object.size);
                    info = Some(object);
                }
                if message.offset != done {
                    return Err(tonic::Status::internal(format!(
                        "the server sent bytes from {} where {done} were expected",
                        message.offset
                    ))
                    .into());
                }
                hasher.update(&message.data);
                file.write_all(&message.data)
                    .await
                    .map_err(|err| ClientError::io(path, err))?;
                done += message.data.len() as u64;
                if let Some(info) = &info {
                    options.tell(done, info.size);
                }
            }
            Ok(())
        }
        .await;
        // What was received is kept (and written out before a retry reads
        // the file's length) even when the stream broke: the next try
        // resumes from it.
        file.sync_all()
            .await
            .map_err(|err| ClientError::io(path, err))?;
        received?;
        let info = info.ok_or_else(|| tonic::Status::internal("the download named no object"))?;
        if done < info.size {
            // The stream ended early without saying why (a server that
            // stopped on the way): the bytes so far are good; resume.
            return Err(tonic::Status::unavailable(format!(
                "the download ended at {done} of {} bytes",
                info.size
            ))
            .into());
        }
        let digest = hasher.finalize();
        if done != info.size || digest.as_slice() != info.sha256 {
            return Err(ClientError::DigestMismatch {
                path: path.to_owned(),
                expected: hex(&info.sha256),
                got: hex(&digest),
            });
        }
        Ok(info)
    }

    /// A run's objects (of `kind`; `Unspecified`: both) and the bytes they
    /// take.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an unknown run.
    pub async fn list_objects(
        &self,
        key: &RunKey,
        kind: pb::ObjectKind,
    ) -> Result<pb::ListObjectsResponse, ClientError> {
        Ok(self
            .stub()
            .list_objects(pb::ListObjectsRequest {
                task_id: key.task_id.clone(),
                run_id: key.run_id.clone(),
                kind: kind.into(),
            })
            .await?
            .into_inner())
    }

    /// Reserves the run's next checkpoint slot and returns it.
    ///
    /// # Errors
    ///
    /// `FAILED_PRECONDITION` for a terminal run.
    pub async fn reserve_checkpoint(&self, key: &RunKey) -> Result<u64, ClientError> {
        Ok(self
            .stub()
            .reserve_checkpoint(pb::ReserveCheckpointRequest {
                task_id: key.task_id.clone(),
                run_id: key.run_id.clone(),
            })
            .await?
            .into_inner()
            .checkpoint_seq)
    }

    /// Makes the reserved slot `checkpoint_seq` the run's checkpoint, and
    /// returns the run's new state.
    ///
    /// # Errors
    ///
    /// `FAILED_PRECONDITION` for a slot not reserved, or not past the
    /// run's checkpoint, or a terminal run.
    pub async fn commit_checkpoint(
        &self,
        key: &RunKey,
        checkpoint_seq: u64,
    ) -> Result<pb::RunStateSnapshot, ClientError> {
        self.stub()
            .commit_checkpoint(pb::CommitCheckpointRequest {
                task_id: key.task_id.clone(),
                run_id: key.run_id.clone(),
                checkpoint_seq,
            })
            .await?
            .into_inner()
            .state
            .ok_or_else(|| tonic::Status::internal("the reply holds no state").into())
    }
}

/// Empties a local file, to download it again from the start.
async fn truncate(path: &Path) -> Result<(), ClientError> {
    tokio::fs::File::create(path)
        .await
        .map(drop)
        .map_err(|err| ClientError::io(path, err))
}

/// The messages of one upload stream, read from the file as the stream
/// is polled, hashed on the way.
struct UploadSource {
    /// The file, at `offset`.
    file: tokio::fs::File,
    /// Where the next message's data starts.
    offset: u64,
    /// The file's size when the upload started.
    size: u64,
    /// The SHA-256 of the bytes before `offset`.
    hasher: Sha256,
    /// The first message's `open`, until it is sent.
    open: Option<pb::UploadOpen>,
    /// The most bytes of data in one message.
    chunk: usize,
    /// The commit was sent.
    done: bool,
    /// Why the file could not be read, if it could not: the stream then
    /// ends without a commit.
    failure: Arc<Mutex<Option<std::io::Error>>>,
    /// The progress callback.
    options: TransferOptions,
}

impl UploadSource {
    /// The next message and the source after it.
    async fn next(mut self) -> Option<(pb::UploadObjectRequest, Self)> {
        if self.done {
            return None;
        }
        let want = (self.size - self.offset).min(self.chunk as u64) as usize;
        let mut data = vec![0; want];
        if let Err(err) = self.file.read_exact(&mut data).await {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
            return None;
        }
        self.hasher.update(&data);
        let offset = self.offset;
        self.offset += want as u64;
        self.options.tell(offset, self.size);
        let commit = (self.offset == self.size).then(|| {
            self.done = true;
            pb::UploadCommit {
                size: self.size,
                sha256: self.hasher.clone().finalize().to_vec(),
            }
        });
        let request = pb::UploadObjectRequest {
            open: self.open.take(),
            offset,
            data,
            commit,
        };
        Some((request, self))
    }
}
