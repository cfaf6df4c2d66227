//! The one place where store errors become gRPC statuses, through a small
//! set of codes. Storage failures are logged with their cause; the client
//! gets what kind of failure it was, never a server path.
//!
//! Two storage failures are the machine's, not the request's, and get a
//! status of their own so that a writer can tell them apart: a full disk
//! (or quota) is `RESOURCE_EXHAUSTED`, a read-only file system is
//! `UNAVAILABLE`. The failed write was undone in either case, and the
//! same call works once the operator has made room.

use std::io::ErrorKind;

use baa_logging_store::StoreError;
use tonic::Status;
use tracing::{error, warn};

/// The status a client gets for a store error.
pub(crate) fn to_status(err: StoreError) -> Status {
    match err {
        StoreError::InvalidId { .. }
        | StoreError::InvalidTime { .. }
        | StoreError::InvalidPageToken { .. }
        | StoreError::ZeroWriterSeq
        | StoreError::ReservedEvent { .. }
        | StoreError::FinishedAtWithoutTerminalStatus
        | StoreError::InvalidObjectName { .. }
        | StoreError::InvalidSlot(_) => Status::invalid_argument(err.to_string()),
        StoreError::RunNotFound(_) | StoreError::ObjectNotFound(_) => {
            Status::not_found(err.to_string())
        }
        StoreError::MetadataMismatch(_) | StoreError::ObjectExists(_) => {
            Status::already_exists(err.to_string())
        }
        StoreError::UploadOffset { .. } => Status::out_of_range(err.to_string()),
        StoreError::UploadTakenOver { .. } => Status::aborted(err.to_string()),
        StoreError::DigestMismatch { .. } => Status::data_loss(err.to_string()),
        StoreError::UploadSizeMismatch { .. }
        | StoreError::UploadConflict { .. }
        | StoreError::SlotNotReserved { .. }
        | StoreError::CheckpointClosed { .. }
        | StoreError::CheckpointMovedBack { .. }
        | StoreError::SlotsExhausted { .. }
        | StoreError::UnsafePath { .. }
        | StoreError::WriterSeqGap { .. }
        | StoreError::WritersLost { .. }
        | StoreError::Terminal { .. }
        | StoreError::LeaseLapsed { .. }
        | StoreError::BadTransition { .. } => Status::failed_precondition(err.to_string()),
        StoreError::TooLarge { .. }
        | StoreError::ObjectTooLarge { .. }
        | StoreError::TooManyUploads { .. }
        | StoreError::NoRoom { .. } => Status::resource_exhausted(err.to_string()),
        StoreError::Unavailable { context, cause } => {
            warn!(%context, %cause, "the store's engine is unavailable");
            Status::unavailable(format!(
                "{context}: {cause}; retry, here or on another node"
            ))
        }
        StoreError::Unsupported(what) => Status::unimplemented(what),
        err @ StoreError::DataLoss { .. } => {
            warn!(cause = %err, "damaged entries not served");
            Status::data_loss(err.to_string())
        }
        StoreError::Io { context, source }
            if matches!(
                source.kind(),
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded
            ) =>
        {
            warn!(%context, cause = %source, "storage failure: the disk is full");
            Status::resource_exhausted(
                "the server's disk is full: the write that failed was undone, nothing is \
                 half-written; retry once the server has room again (its health says SERVING)",
            )
        }
        StoreError::Io { context, source } if source.kind() == ErrorKind::ReadOnlyFilesystem => {
            warn!(%context, cause = %source, "storage failure: the file system is read-only");
            Status::unavailable(
                "the server's data directory is read-only: the write that failed was undone, \
                 nothing is half-written; retry later",
            )
        }
        StoreError::Io { context, source } => {
            error!(%context, cause = %source, "storage failure");
            Status::internal(format!(
                "the server could not store or read the run ({}); nothing was half-written; see the server log",
                source.kind()
            ))
        }
        err @ StoreError::Broken { .. } => {
            error!(cause = %err, "a run takes no writes");
            Status::internal(
                "the server could not undo a failed write of the run; it takes no writes until \
                 the server restarts; see the server log",
            )
        }
        // Only opening a store finds its directory locked; an RPC never does.
        err @ (StoreError::TaskFailed(_) | StoreError::Locked { .. }) => {
            error!(cause = %err, "storage failure");
            Status::internal(
                "the server could not store or read the run (a task failed); nothing was \
                 half-written; see the server log",
            )
        }
        err @ StoreError::Damaged { .. } => {
            error!(cause = %err, "corrupt run files");
            Status::internal("the run's files on the server are damaged; see the server log")
        }
    }
}
