//! `baa-logd`, the baa-logging gRPC server: per-run log sessions that
//! workers append to and followers watch, over a [`RunStore`].
//!
//! # Layout
//!
//! - [`run`]: serves the `LoggingService`, the gRPC health service and
//!   server reflection on a listener until a shutdown future completes.
//! - [`GrpcLoggingService`] (`service`): the RPCs, split by group in
//!   `runs` (prepare, get, list, state), `append` (writers), `follow`
//!   (followers) and `retention` (`CollectRuns`, the periodic pass, and
//!   [`RetentionCounters`]).
//! - `convert`: Protobuf ↔ store types; `status`: store errors → statuses.
//! - [`ServerConfig`]: limits and sizes of the gRPC layer; [`Settings`]
//!   (`settings`): the whole configuration, from a file, the environment
//!   and flags.
//! - [`Security`] (`security`): TLS, bearer tokens and the layer that
//!   checks them on every call.
//! - [`metrics`]: Prometheus metrics ([`Metrics`]) and their HTTP endpoint
//!   ([`metrics::serve`]); `health`: the gRPC health service follows
//!   whether the store can write.

mod append;
mod config;
mod convert;
mod follow;
pub mod health;
mod limits;
pub mod metrics;
mod retention;
mod runs;
pub mod security;
mod service;
pub mod settings;
mod status;

use std::{future::Future, sync::Arc, time::Duration};

use baa_logging::{FILE_DESCRIPTOR_SET, pb::logging_service_server::LoggingServiceServer};
use baa_logging_store::RunStore;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info, warn};

use crate::security::AuthLayer;

pub use crate::{
    config::{FOLLOW_BATCH_BYTES, ServerConfig},
    metrics::Metrics,
    retention::RetentionCounters,
    security::Security,
    service::{FollowRunStream, GrpcLoggingService},
    settings::{LogFormat, Settings},
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
/// gracefully.
///
/// While it serves, the gRPC health service says `NOT_SERVING` whenever the
/// store cannot write, and the calls, streams and runs are counted in
/// [`ServerConfig::metrics`] when it is set. On shutdown, health turns
/// `NOT_SERVING`, follow streams end with
/// `UNAVAILABLE` and their resume cursor, append streams store what they
/// received and end with `UNAVAILABLE`, the periodic retention pass stops,
/// and the store writes what it keeps in memory.
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
    health::set_all(&health, tonic_health::ServingStatus::Serving).await;
    health
        .set_service_status(health::LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    let metrics = config.metrics.clone();
    if let Some(metrics) = &metrics {
        metrics.count_runs_of(&store);
    }
    let health_stop = CancellationToken::new();
    let health_task = tokio::spawn(health::follow_store(
        store.write_health(),
        health.clone(),
        metrics.clone(),
        health_stop.clone(),
    ));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max_message_bytes = config.limits.max_message_bytes;
    let security = config.security.clone();
    let keepalive = (
        config.limits.keepalive_interval,
        config.limits.keepalive_timeout,
    );
    let max_streams = config.limits.max_streams_per_connection;
    let (policy, interval) = (config.retention.policy(), config.retention.interval);
    let service = GrpcLoggingService::new(store.clone(), config, token.clone());
    let periodic = retention::spawn_periodic(
        store.clone(),
        policy,
        interval,
        service.retention_counters(),
        token.clone(),
    );
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
            // Stop following the store first, so that nothing turns the
            // health back to SERVING.
            health_stop.cancel();
            let _ = health_task.await;
            health::set_all(&health, tonic_health::ServingStatus::NotServing).await;
            health
                .set_service_status(health::LIVENESS, tonic_health::ServingStatus::NotServing)
                .await;
            token.cancel();
        }
    };
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(keepalive.0))
        .http2_keepalive_timeout(Some(keepalive.1))
        .max_concurrent_streams(Some(max_streams))
        // Outermost, so that calls refused by the layers below are counted.
        .layer(tower::util::option_layer(
            metrics.as_ref().map(Metrics::rpc_layer),
        ))
        .layer(tower::util::option_layer(
            security.tokens.clone().map(AuthLayer::new),
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(logging);
    let serving = async {
        match &security.tls {
            None => {
                // The builder's `tcp_nodelay` only reaches sockets that tonic
                // accepts itself; with our own listener it is ignored, and
                // Nagle's algorithm would hold a follower's small responses
                // back until the previous segment is acknowledged (up to the
                // peer's 40 ms delayed ACK).
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
            Some(tls) => {
                let watcher = AbortOnDropHandle::new(tokio::spawn(tls.clone().watch()));
                let (incoming, acceptor) = tls_incoming(listener, tls.acceptor());
                let acceptor = AbortOnDropHandle::new(acceptor);
                let served = router.serve_with_incoming_shutdown(incoming, stop).await;
                drop((watcher, acceptor));
                served
            }
        }
    };
    // Graceful shutdown waits for every connection to close, and a stream
    // this server does not end itself (a health Watch, a reflection
    // stream) would hold it open forever: after SHUTDOWN_GRACE the rest
    // are dropped.
    let grace = async {
        token.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = tokio::select! {
        served = serving => served,
        () = grace => {
            warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the shutdown grace; closing them");
            Ok(())
        }
    };
    token.cancel();
    if let Some(periodic) = periodic {
        // A pass under way is let finish: it never leaves a run half-deleted.
        let _ = periodic.await;
    }
    if let Err(err) = store.flush().await {
        warn!(cause = %err, "cannot write the store's state on shutdown");
    }
    served?;
    info!("stopped");
    Ok(())
}

/// How long graceful shutdown waits for open connections once every
/// stream of ours has ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS connections from `listener`: each handshake runs in a task of its
/// own, so that a slow or silent client holds up no other. Returns the
/// stream of finished connections and the accepting task.
fn tls_incoming(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> (
    ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>>,
    tokio::task::JoinHandle<()>,
) {
    let (ready, incoming) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, most likely: wait, then go on.
                    warn!(cause = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => debug!(%peer, cause = %err, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    (ReceiverStream::new(incoming), task)
}
