//! `baa-logd`, the baa-logging gRPC server: per-run log sessions that
//! workers append to and followers watch, over a [`RunStore`].
//!
//! # Layout
//!
//! - [`run`]: serves the `LoggingService`, the gRPC health service and
//!   server reflection on a listener until a shutdown future completes.
//! - [`GrpcLoggingService`] (`service`): the RPCs, split by group in
//!   `runs` (prepare, get, list, state), `append` (writers) and `follow`
//!   (followers).
//! - `convert`: Protobuf ↔ store types; `status`: store errors → statuses.
//! - [`ServerConfig`]: limits and sizes of the gRPC layer.

mod append;
mod config;
mod convert;
mod follow;
mod runs;
mod service;
mod status;

use std::{future::Future, sync::Arc, time::Duration};

use baa_logging::{FILE_DESCRIPTOR_SET, pb::logging_service_server::LoggingServiceServer};
use baa_logging_store::RunStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::{
    config::ServerConfig,
    service::{FollowRunStream, GrpcLoggingService},
};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The gRPC transport failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves `store` on `listener` until `shutdown` completes, then shuts down
/// gracefully: health turns `NOT_SERVING`, follow streams end with
/// `UNAVAILABLE` and their resume cursor, append streams store what they
/// received and end with `UNAVAILABLE`, and the store writes what it keeps
/// in memory.
///
/// # Errors
///
/// [`ServerError`] when the transport fails.
pub async fn run<S: RunStore>(
    listener: TcpListener,
    store: Arc<S>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let token = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<LoggingServiceServer<GrpcLoggingService<S>>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max_message_bytes = config.max_message_bytes;
    let service = GrpcLoggingService::new(store.clone(), config, token.clone());
    let logging = LoggingServiceServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(usize::MAX);

    let addr = listener.local_addr().ok();
    info!(?addr, "serving");
    let stop = {
        let token = token.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            info!("shutting down");
            health
                .set_not_serving::<LoggingServiceServer<GrpcLoggingService<S>>>()
                .await;
            token.cancel();
        }
    };
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(logging)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
        .await;
    token.cancel();
    if let Err(err) = store.flush().await {
        warn!(cause = %err, "cannot write the store's state on shutdown");
    }
    served?;
    info!("stopped");
    Ok(())
}
