//! The object RPCs: `UploadObject`, `GetUploadStatus`, `DownloadObject`,
//! `ListObjects`, `ReserveCheckpoint` and `CommitCheckpoint`. The store
//! stages, verifies and places the bytes (see
//! `baa_logging_store::objects`); these handlers read the streams, check
//! the task against the caller's token, and count the bytes.
//!
//! An upload stream that breaks, times out or meets the shutdown keeps
//! what it staged (fsynced), so that the client resumes it from
//! `GetUploadStatus`. A download reads the object in 1 MiB pieces on the
//! blocking pool, a few pieces ahead of the connection at most.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use baa_logging::pb;
use baa_logging_store::{
    ObjectReader, ObjectUpload, RunStore, model::RunKey, objects::UploadCommit,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, info};

use crate::{
    convert::{from_object_kind_filter, from_object_ref, from_sha256, to_object_info, to_state},
    metrics::Metrics,
    security::{TaskLimit, tasks},
    status::to_status,
};

/// The most bytes of one `DownloadObject` response.
const DOWNLOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// The responses a download reads ahead of its connection.
const DOWNLOAD_READ_AHEAD: usize = 4;

/// The response stream of `DownloadObject`: the pieces its producer sends,
/// then the status it left when it stopped before the end.
///
/// The producer cannot send that status through the channel when the
/// channel is full (a client that reads slowly, at shutdown): the stream
/// would end with `OK` after fewer bytes than the object has. So the
/// status waits beside the channel, and comes once the channel is drained.
#[derive(Debug)]
pub struct DownloadObjectStream {
    /// The pieces, a few ahead of the connection at most.
    pieces: ReceiverStream<Result<pb::DownloadObjectResponse, Status>>,
    /// Set by the producer before it ends: `None` when every piece (or
    /// its own error) went into the channel. It starts as an error, so a
    /// producer that died on the way does not end the stream with `OK`.
    ending: Arc<Mutex<Option<Status>>>,
    /// The ending status was given.
    ended: bool,
}

impl Stream for DownloadObjectStream {
    type Item = Result<pb::DownloadObjectResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut self.pieces).poll_next(cx)) {
            Some(item) => Poll::Ready(Some(item)),
            None => {
                self.ended = true;
                let ending = self
                    .ending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Poll::Ready(ending.map(Err))
            }
        }
    }
}

/// What the object RPCs work with.
#[derive(Debug)]
pub(crate) struct ObjectState<'a, S> {
    /// Where objects are kept.
    pub(crate) store: &'a Arc<S>,
    /// The tasks the calling token may touch, when it is limited.
    pub(crate) tasks: Option<&'a TaskLimit>,
    /// How long an upload stream may send nothing.
    pub(crate) idle: Duration,
    /// Ends uploads and downloads when the server shuts down.
    pub(crate) shutdown: &'a CancellationToken,
    /// Where bytes in and out are counted, when metrics are on.
    pub(crate) metrics: Option<&'a Metrics>,
    /// Counts the uploads and downloads that ended, for the task that hands
    /// freed memory back.
    pub(crate) ended: &'a Arc<AtomicU64>,
}

/// Counts one transfer as ended when it is dropped, however it ends.
struct CountEnd(Arc<AtomicU64>);

impl Drop for CountEnd {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// `UploadObject`.
#[tracing::instrument(skip_all, fields(task_id, run_id, upload_id))]
pub(crate) async fn upload_object<S: RunStore>(
    state: ObjectState<'_, S>,
    mut stream: Streaming<pb::UploadObjectRequest>,
) -> Result<pb::UploadObjectResponse, Status> {
    let _ended = CountEnd(state.ended.clone());
    let Some(mut first) = next_message(&state, &mut stream).await? else {
        return Err(Status::invalid_argument(
            "the upload stream is empty: its first message MUST carry open",
        ));
    };
    let open = first.open.take().ok_or_else(|| {
        Status::invalid_argument("the first message of an upload stream MUST carry open")
    })?;
    let object = from_object_ref("open.object", open.object)?;
    tasks::check(state.tasks, &object.key.task_id)?;
    if open.upload_id.is_empty() {
        return Err(Status::invalid_argument("open.upload_id is required"));
    }
    let span = tracing::Span::current();
    span.record("task_id", object.key.task_id.as_str());
    span.record("run_id", object.key.run_id.as_str());
    span.record("upload_id", open.upload_id.as_str());
    let mut upload = state
        .store
        .open_upload(object, &open.upload_id)
        .await
        .map_err(to_status)?;
    debug!(offset = upload.size(), "upload opened");
    let mut request = first;
    loop {
        let len = request.data.len() as u64;
        let offset = request.offset;
        let data = std::mem::take(&mut request.data);
        let commit = request.commit.take();
        // While these bytes are written, the next message is read: the
        // stream's window is released as it is read, so the client keeps
        // sending while the disk works. The last message is not waited for.
        let (written, next) = if commit.is_none() {
            write_reading_on(&state, &mut upload, offset, data, &mut stream).await
        } else {
            (write_piece(&mut upload, offset, data).await, None)
        };
        if let Err(err) = written {
            return Err(closing(upload, to_status(err)).await);
        }
        if len > 0
            && let Some(metrics) = state.metrics
        {
            metrics.record_object_received(len);
        }
        if let Some(commit) = commit {
            let sha256 = match from_sha256("commit.sha256", &commit.sha256) {
                Ok(sha256) => sha256,
                Err(status) => return Err(closing(upload, status).await),
            };
            let info = upload
                .commit(UploadCommit {
                    size: commit.size,
                    sha256,
                })
                .await
                .map_err(to_status)?;
            info!(name = %info.name, size = info.size, "object committed");
            return Ok(pb::UploadObjectResponse {
                committed_size: info.size,
                committed: true,
                object: Some(to_object_info(&info)),
            });
        }
        request = match next {
            Some(Ok(Some(request))) if request.open.is_some() => {
                return Err(closing(
                    upload,
                    Status::invalid_argument(
                        "only the first message of an upload stream carries open",
                    ),
                )
                .await);
            }
            Some(Ok(Some(request))) => request,
            Some(Ok(None)) | None => {
                let committed_size = upload.close().await.map_err(to_status)?;
                return Ok(pb::UploadObjectResponse {
                    committed_size,
                    committed: false,
                    object: None,
                });
            }
            Some(Err(status)) => return Err(closing(upload, status).await),
        };
    }
}

/// Writes one message's data while the next message is read. A failed
/// write answers at once, without waiting for a message that may be long
/// in coming; otherwise the next message (or why there is none) comes
/// with the result.
async fn write_reading_on<S>(
    state: &ObjectState<'_, S>,
    upload: &mut impl ObjectUpload,
    offset: u64,
    data: bytes::Bytes,
    stream: &mut Streaming<pb::UploadObjectRequest>,
) -> (
    baa_logging_store::Result<()>,
    Option<Result<Option<pb::UploadObjectRequest>, Status>>,
) {
    let write = write_piece(upload, offset, data);
    let read = next_message(state, stream);
    tokio::pin!(write, read);
    let mut next = None;
    let written = loop {
        tokio::select! {
            written = &mut write => break written,
            message = &mut read, if next.is_none() => next = Some(message),
        }
    };
    if written.is_err() {
        return (written, None);
    }
    let next = match next {
        Some(next) => next,
        None => read.await,
    };
    (written, Some(next))
}

/// Writes one message's data; a message without data (an `open` or a
/// commit alone) writes nothing, whatever its offset.
async fn write_piece(
    upload: &mut impl ObjectUpload,
    offset: u64,
    data: bytes::Bytes,
) -> baa_logging_store::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    upload.write(offset, data).await
}

/// Ends an upload with `status`, keeping what it staged for a resume.
async fn closing(upload: impl ObjectUpload, status: Status) -> Status {
    if let Err(err) = upload.close().await {
        debug!(cause = %err, "cannot sync an upload that ended with an error");
    }
    status
}

/// The next message of an upload stream; `None` at its end.
async fn next_message<S>(
    state: &ObjectState<'_, S>,
    stream: &mut Streaming<pb::UploadObjectRequest>,
) -> Result<Option<pb::UploadObjectRequest>, Status> {
    tokio::select! {
        message = stream.message() => message,
        () = state.shutdown.cancelled() => Err(Status::unavailable(
            "the server is shutting down; what the upload sent is staged: ask GetUploadStatus \
             and resume from its committed_size",
        )),
        () = tokio::time::sleep(state.idle) => Err(Status::deadline_exceeded(format!(
            "no message for {} (append_idle_timeout); what the upload sent is staged: ask \
             GetUploadStatus and resume from its committed_size",
            humantime::format_duration(state.idle)
        ))),
    }
}

/// `GetUploadStatus`.
#[tracing::instrument(skip_all, fields(upload_id = %request.upload_id))]
pub(crate) async fn get_upload_status<S: RunStore>(
    state: ObjectState<'_, S>,
    request: pb::GetUploadStatusRequest,
) -> Result<pb::GetUploadStatusResponse, Status> {
    let object = from_object_ref("object", request.object)?;
    tasks::check(state.tasks, &object.key.task_id)?;
    if request.upload_id.is_empty() {
        return Err(Status::invalid_argument("upload_id is required"));
    }
    let status = state
        .store
        .upload_status(object, &request.upload_id)
        .await
        .map_err(to_status)?;
    Ok(pb::GetUploadStatusResponse {
        committed_size: status.committed_size,
        complete: status.complete.is_some(),
        object: status.complete.as_ref().map(to_object_info),
        existing: status.existing.as_ref().map(to_object_info),
    })
}

/// `DownloadObject`.
#[tracing::instrument(skip_all)]
pub(crate) async fn download_object<S: RunStore>(
    state: ObjectState<'_, S>,
    request: pb::DownloadObjectRequest,
) -> Result<DownloadObjectStream, Status> {
    let object = from_object_ref("object", request.object)?;
    tasks::check(state.tasks, &object.key.task_id)?;
    let (info, reader) = state.store.open_object(object).await.map_err(to_status)?;
    if request.offset > info.size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end of the object ({} bytes)",
            request.offset, info.size
        )));
    }
    let (tx, rx) = mpsc::channel(DOWNLOAD_READ_AHEAD);
    let shutdown = state.shutdown.clone();
    let metrics = state.metrics.cloned();
    let first = to_object_info(&info);
    let ending = Arc::new(Mutex::new(Some(Status::unavailable(
        "the download stopped before the end of the object; download again from the bytes received",
    ))));
    let left = ending.clone();
    let counted = CountEnd(state.ended.clone());
    let offset = request.offset;
    let size = info.size;
    tokio::spawn(async move {
        let end = send_object(reader, offset, size, first, tx, shutdown, metrics).await;
        // Before the sender is dropped (on return), so the stream finds
        // it once it has the last piece.
        *left.lock().unwrap_or_else(PoisonError::into_inner) = end;
        drop(counted);
    });
    Ok(DownloadObjectStream {
        pieces: ReceiverStream::new(rx),
        ending,
        ended: false,
    })
}

/// Sends the object `reader` reads from `offset` to `size` in pieces, the
/// first with `info`, until the receiver goes away or the server shuts
/// down. Returns the status the stream must end with: `None` when every
/// piece, or the error that stopped it, is in the channel.
async fn send_object(
    mut reader: impl ObjectReader,
    mut offset: u64,
    size: u64,
    info: pb::ObjectInfo,
    tx: mpsc::Sender<Result<pb::DownloadObjectResponse, Status>>,
    shutdown: CancellationToken,
    metrics: Option<Metrics>,
) -> Option<Status> {
    let mut info = Some(info);
    loop {
        let want = (size - offset).min(DOWNLOAD_CHUNK_BYTES as u64) as usize;
        let message = match reader.read_at(offset, want).await {
            Ok(data) => Ok(pb::DownloadObjectResponse {
                object: info.take(),
                offset,
                data,
            }),
            Err(err @ baa_logging_store::StoreError::Unavailable { .. }) => {
                tracing::warn!(cause = %err, "cannot read an object");
                Err(Status::unavailable(format!(
                    "{err}; download again from offset {offset}"
                )))
            }
            Err(err @ baa_logging_store::StoreError::ObjectNotFound(_)) => {
                Err(Status::not_found(format!("{err}: its run was deleted")))
            }
            Err(err) => {
                tracing::error!(cause = %err, "cannot read an object");
                Err(Status::internal(
                    "the server could not read the object; see the server log",
                ))
            }
        };
        let failed = message.is_err();
        tokio::select! {
            sent = tx.send(message) => if sent.is_err() { return None },
            () = shutdown.cancelled() => {
                return Some(Status::unavailable(format!(
                    "the server is shutting down; download again from offset {offset}"
                )));
            }
        }
        if failed {
            return None;
        }
        if let Some(metrics) = &metrics {
            metrics.record_object_sent(want as u64);
        }
        offset += want as u64;
        if offset >= size {
            return None;
        }
    }
}

/// `ListObjects`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn list_objects<S: RunStore>(
    store: &S,
    request: pb::ListObjectsRequest,
) -> Result<pb::ListObjectsResponse, Status> {
    let kind = from_object_kind_filter(request.kind)?;
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let listing = store.list_objects(&key, kind).await.map_err(to_status)?;
    Ok(pb::ListObjectsResponse {
        objects: listing.objects.iter().map(to_object_info).collect(),
        total_bytes: listing.total_bytes,
    })
}

/// `ReserveCheckpoint`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn reserve_checkpoint<S: RunStore>(
    store: &S,
    request: pb::ReserveCheckpointRequest,
) -> Result<pb::ReserveCheckpointResponse, Status> {
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let (checkpoint_seq, seq) = store.reserve_checkpoint(&key).await.map_err(to_status)?;
    info!(checkpoint_seq, "checkpoint slot reserved");
    Ok(pb::ReserveCheckpointResponse {
        checkpoint_seq,
        seq,
    })
}

/// `CommitCheckpoint`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id, checkpoint_seq = request.checkpoint_seq))]
pub(crate) async fn commit_checkpoint<S: RunStore>(
    store: &S,
    request: pb::CommitCheckpointRequest,
) -> Result<pb::CommitCheckpointResponse, Status> {
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let state = store
        .commit_checkpoint(&key, request.checkpoint_seq)
        .await
        .map_err(to_status)?;
    info!("checkpoint committed");
    Ok(pb::CommitCheckpointResponse {
        state: Some(to_state(&state)),
    })
}

/// Starts the sweep of abandoned uploads: every `after / 4` (at least a
/// second, at most ten minutes), uploads nothing wrote to for `after`,
/// and those of terminal runs, are dropped. Stops at `shutdown`.
pub(crate) fn spawn_upload_sweep<S: RunStore>(
    store: Arc<S>,
    after: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match store.sweep_uploads(after).await {
                Ok(0) => {}
                Ok(swept) => info!(swept, "dropped abandoned uploads"),
                Err(err) => tracing::warn!(cause = %err, "the sweep of abandoned uploads failed"),
            }
        }
    })
}
