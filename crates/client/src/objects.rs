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
//! behind is resumed by the next one for the same file. Objects are never
//! replaced, so an upload asks first whether its name is taken: by the
//! same content it is done, by other content it fails before it sends a
//! byte.

use std::{
    io::{Read, Seek, Write},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::UNIX_EPOCH,
};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_util::bytes::Bytes;
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

    /// The object for people: `artifact NAME`, `checkpoint N file NAME`.
    fn describe(&self) -> String {
        match self.kind {
            pb::ObjectKind::Checkpoint => {
                format!("checkpoint {} file {}", self.checkpoint_seq, self.name)
            }
            _ => format!("artifact {}", self.name),
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
    /// `ALREADY_EXISTS` when the run holds another object of that name
    /// (learnt from `GetUploadStatus`, before a byte of the file is sent;
    /// an object of that name with the file's size and SHA-256 is success),
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
        let mut offset_retried = false;
        loop {
            // A retry after a failure of the server goes to the next one;
            // the upload resumes from what the store committed.
            let seen = self.link().current();
            match self
                .upload_attempt(key, object, path, size, &upload_id, chunk, options)
                .await
            {
                Ok(info) => return Ok(info),
                // The server took a piece of the last stream after it told
                // this one where to start: ask again, once.
                Err(ClientError::Status(status))
                    if status.code() == Code::OutOfRange && !offset_retried =>
                {
                    offset_retried = true;
                }
                Err(ClientError::Status(status))
                    if is_retryable_status(&status) || status.code() == Code::Aborted =>
                {
                    if !backoff.wait().await {
                        return Err(status.into());
                    }
                    self.link().fail_over(&seen, &status).await;
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
        // Objects are never replaced: a name that is taken is settled
        // here, before a byte is sent, not refused at the commit.
        if let Some(stored) = taken_by(&status) {
            return settle_taken_name(key, object, path, size, stored, options).await;
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
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| ClientError::io(path, err))?
            .into_std()
            .await;
        options.tell(offset, size);
        // The file is read and hashed on the blocking pool, a few pieces
        // ahead of the connection, so that neither waits for the other.
        let (pieces, received) = mpsc::channel(PIECES_IN_FLIGHT);
        let reading = PieceReader {
            file,
            offset,
            size,
            hasher,
            chunk,
        };
        tokio::task::spawn_blocking(move || reading.run(&pieces));
        let failure: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let source = UploadSource {
            pieces: received,
            size,
            open: Some(pb::UploadOpen {
                object: Some(reference),
                upload_id: upload_id.to_owned(),
            }),
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
            let seen = self.link().current();
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
                    self.link().fail_over(&seen, &status).await;
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
        let file = tokio::fs::OpenOptions::new()
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
        // the file is read back only for a resumed download's start. The
        // pieces are written and hashed on the blocking pool, while the
        // next ones arrive.
        let hasher = hash_prefix(path, offset)
            .await
            .map_err(|err| ClientError::io(path, err))?;
        let (pieces, received) = mpsc::channel(PIECES_IN_FLIGHT);
        let writing = PieceWriter {
            file: file.into_std().await,
            offset,
            hasher,
        };
        let writer = tokio::task::spawn_blocking(move || writing.run(received));
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
                let len = message.data.len() as u64;
                if pieces.send(message.data).await.is_err() {
                    // The writer stopped on an error, which it returns.
                    break;
                }
                done += len;
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
        drop(pieces);
        let hasher = writer
            .await
            .map_err(std::io::Error::other)
            .and_then(|written| written)
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

/// The object already in place under the name an upload takes, from its
/// status: `existing`, or from a server that does not send it, the object
/// it calls `complete`.
fn taken_by(status: &pb::GetUploadStatusResponse) -> Option<pb::ObjectInfo> {
    status
        .existing
        .clone()
        .or_else(|| status.object.clone().filter(|_| status.complete))
}

/// The end of an upload whose name is taken by `stored`: when the file
/// at `path` (`size` bytes) is the same content (an earlier upload of it
/// that committed, its answer lost, or another worker's), that is success,
/// as a retried commit is; otherwise `ALREADY_EXISTS`, without a byte
/// sent. The file is hashed only when the sizes agree.
async fn settle_taken_name(
    key: &RunKey,
    object: &ObjectName,
    path: &Path,
    size: u64,
    stored: pb::ObjectInfo,
    options: &TransferOptions,
) -> Result<pb::ObjectInfo, ClientError> {
    if stored.size == size {
        let ours = hash_prefix(path, size)
            .await
            .map_err(|err| ClientError::io(path, err))?
            .finalize();
        if stored.sha256 == ours.as_slice() {
            options.tell(size, size);
            return Ok(stored);
        }
    }
    Err(tonic::Status::already_exists(format!(
        "{} of {key} exists already with other content ({} bytes, sha256 {}): objects are \
         never replaced, so {} ({size} bytes) was not sent; upload it under another name",
        object.describe(),
        stored.size,
        hex(&stored.sha256),
        path.display()
    ))
    .into())
}

/// Empties a local file, to download it again from the start.
async fn truncate(path: &Path) -> Result<(), ClientError> {
    tokio::fs::File::create(path)
        .await
        .map(drop)
        .map_err(|err| ClientError::io(path, err))
}

/// The pieces of a transfer between the connection and the blocking
/// pool, at most: 4 MiB of 1 MiB pieces.
const PIECES_IN_FLIGHT: usize = 4;

/// One piece of an upload, read and hashed.
struct Piece {
    /// Where its data starts in the file.
    offset: u64,
    /// Its bytes.
    data: Bytes,
    /// The whole file's SHA-256, on the last piece.
    sha256: Option<Vec<u8>>,
}

/// Reads an upload's file in pieces and hashes them, on the blocking pool.
struct PieceReader {
    /// The file to upload.
    file: std::fs::File,
    /// Where the next piece starts.
    offset: u64,
    /// The file's size when the upload started: what is uploaded.
    size: u64,
    /// The SHA-256 of the bytes before `offset`.
    hasher: Sha256,
    /// The most bytes of one piece.
    chunk: usize,
}

impl PieceReader {
    /// Sends the pieces from `offset` to `size` (at least one: an empty
    /// rest is one empty piece, with the digest), or the error that
    /// stopped the reading; stops early when the upload is gone. A piece is
    /// hashed on a thread of its own while the next one is read.
    fn run(mut self, pieces: &mpsc::Sender<std::io::Result<Piece>>) {
        if let Err(err) = self.file.seek(std::io::SeekFrom::Start(self.offset)) {
            let _ = pieces.blocking_send(Err(err));
            return;
        }
        std::thread::scope(|scope| {
            // Taken by the last piece, after which the loop ends.
            let mut hashing = Some(Hashing::start(scope, self.hasher.clone()));
            loop {
                let want = (self.size - self.offset).min(self.chunk as u64);
                // Into memory that is not zeroed first.
                let mut data = Vec::with_capacity(want as usize);
                let piece = match (&mut self.file).take(want).read_to_end(&mut data) {
                    Ok(got) if got as u64 == want => {
                        let data = Bytes::from(data);
                        let offset = self.offset;
                        self.offset += want;
                        let hasher = hashing.as_mut().expect("hashing until the last piece");
                        hasher.add(&data);
                        let sha256 = if self.offset == self.size {
                            let hasher = hashing.take().expect("hashing until the last piece");
                            Some(hasher.finish().map(|hasher| hasher.finalize().to_vec()))
                        } else {
                            None
                        };
                        sha256.transpose().map(|sha256| Piece {
                            offset,
                            data,
                            sha256,
                        })
                    }
                    Ok(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was uploaded",
                    )),
                    Err(err) => Err(err),
                };
                let stop = !matches!(&piece, Ok(piece) if piece.sha256.is_none());
                if pieces.blocking_send(piece).is_err() || stop {
                    return;
                }
            }
        });
    }
}

/// Writes a download's pieces to its file and hashes them, on the blocking
/// pool.
struct PieceWriter {
    /// The local file, opened to append.
    file: std::fs::File,
    /// Its length before the first piece.
    offset: u64,
    /// The SHA-256 of what the file held before.
    hasher: Sha256,
}

impl PieceWriter {
    /// Writes every piece until the channel closes, syncs the file, and
    /// returns the hash of all it holds; or the first error, after which
    /// it writes nothing more (the channel is dropped, which tells the
    /// sender). Pieces are hashed on a thread of their own while they are
    /// written.
    fn run(mut self, mut pieces: mpsc::Receiver<Bytes>) -> std::io::Result<Sha256> {
        let mut written = self.offset;
        let mut written_back = written;
        std::thread::scope(|scope| {
            let mut hashing = Hashing::start(scope, self.hasher);
            while let Some(data) = pieces.blocking_recv() {
                hashing.add(&data);
                self.file.write_all(&data)?;
                written += data.len() as u64;
                // The pages go to the disk as they are written, not all at
                // the final sync.
                if written - written_back >= WRITEBACK_EVERY {
                    start_writeback(&self.file, written_back, written - written_back);
                    written_back = written;
                }
            }
            self.file.sync_all()?;
            hashing.finish()
        })
    }
}

/// A running SHA-256 fed with pieces, computed on a thread of its own
/// (both a piece's hash and its copy cost about a memory copy's time), or
/// in turn where no thread can be started.
struct Hashing<'scope> {
    /// The pieces for the thread, which holds the hasher.
    queue: Option<std::sync::mpsc::SyncSender<Bytes>>,
    /// The thread; it returns the hasher once the queue closes.
    thread: Option<std::thread::ScopedJoinHandle<'scope, Sha256>>,
    /// The hasher, when there is no thread.
    in_turn: Option<Sha256>,
}

impl<'scope> Hashing<'scope> {
    /// Starts hashing after `hasher`'s bytes, on a thread of `scope`.
    fn start<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, hasher: Sha256) -> Self {
        let (queue, received) = std::sync::mpsc::sync_channel::<Bytes>(PIECES_IN_FLIGHT);
        let start = hasher.clone();
        let thread = std::thread::Builder::new()
            .name("baa-log-hash".to_owned())
            .spawn_scoped(scope, move || {
                let mut hasher = hasher;
                for data in received {
                    hasher.update(&data);
                }
                hasher
            });
        match thread {
            Ok(thread) => Self {
                queue: Some(queue),
                thread: Some(thread),
                in_turn: None,
            },
            Err(_) => Self {
                queue: None,
                thread: None,
                in_turn: Some(start),
            },
        }
    }

    /// Adds the next piece.
    fn add(&mut self, data: &Bytes) {
        if let Some(hasher) = &mut self.in_turn {
            hasher.update(data);
        } else if let Some(queue) = &self.queue
            && queue.send(data.clone()).is_err()
        {
            // The thread is gone; `finish` says so.
            self.queue = None;
        }
    }

    /// The hasher, once every piece is in it.
    fn finish(mut self) -> std::io::Result<Sha256> {
        if let Some(hasher) = self.in_turn.take() {
            return Ok(hasher);
        }
        let complete = self.queue.take().is_some();
        match self.thread.take().map(std::thread::ScopedJoinHandle::join) {
            Some(Ok(hasher)) if complete => Ok(hasher),
            _ => Err(std::io::Error::other("the hashing thread failed")),
        }
    }
}

/// Write-back of a download's file is started every this many bytes.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts writing `len` bytes of `file` from `offset` to the disk, without
/// waiting (a hint; the final sync makes them durable and reports errors).
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;

        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range(2) takes a descriptor, which `file` keeps
        // open for the call, and integers; it touches no memory of ours.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// The messages of one upload stream: the pieces as they are read, the
/// first with `open`, the last with the commit.
struct UploadSource {
    /// The pieces, from the reader.
    pieces: mpsc::Receiver<std::io::Result<Piece>>,
    /// The file's size when the upload started.
    size: u64,
    /// The first message's `open`, until it is sent.
    open: Option<pb::UploadOpen>,
    /// Why the file could not be read, if it could not: the stream then
    /// ends without a commit.
    failure: Arc<Mutex<Option<std::io::Error>>>,
    /// The progress callback.
    options: TransferOptions,
}

impl UploadSource {
    /// The next message and the source after it.
    async fn next(mut self) -> Option<(pb::UploadObjectRequest, Self)> {
        let piece = match self.pieces.recv().await? {
            Ok(piece) => piece,
            Err(err) => {
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                return None;
            }
        };
        self.options.tell(piece.offset, self.size);
        let request = pb::UploadObjectRequest {
            open: self.open.take(),
            offset: piece.offset,
            data: piece.data,
            commit: piece.sha256.map(|sha256| pb::UploadCommit {
                size: self.size,
                sha256,
            }),
        };
        Some((request, self))
    }
}
