//! The one place where store errors become gRPC statuses, through a small
//! set of codes. Storage failures are logged with their cause; the client
//! gets what kind of failure it was, never a server path.

use baa_logging_store::StoreError;
use tonic::Status;
use tracing::error;

/// The status a client gets for a store error.
pub(crate) fn to_status(err: StoreError) -> Status {
    match err {
        StoreError::InvalidArgument(message) => Status::invalid_argument(message),
        err @ StoreError::RunNotFound(_) => Status::not_found(err.to_string()),
        StoreError::AlreadyExists(message) => Status::already_exists(message),
        StoreError::FailedPrecondition(message) => Status::failed_precondition(message),
        StoreError::ResourceExhausted(message) => Status::resource_exhausted(message),
        StoreError::ShuttingDown => Status::unavailable("the server is shutting down"),
        StoreError::Io { context, source } => {
            error!(%context, cause = %source, "storage failure");
            Status::internal(format!(
                "the server could not store or read the run ({}); nothing was half-written; see the server log",
                source.kind()
            ))
        }
        StoreError::Corrupt(message) => {
            error!(cause = %message, "corrupt run files");
            Status::internal("the run's files on the server are damaged; see the server log")
        }
    }
}
