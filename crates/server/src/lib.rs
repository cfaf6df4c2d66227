//! `baa-logd`, the baa-logging gRPC server: per-run log sessions that
//! workers append to and followers watch, over a [`RunStore`].
//!
//! # Layout
//!
//! - [`run`] (here): wires the server together in named steps: the
//!   services, the transport (plain or TLS), the shutdown sequence and the
//!   cleanup after serving. `main.rs` only reads flags, binds and calls it.
//! - `service/`: the `LoggingService` RPCs. `service/mod.rs` holds
//!   [`GrpcLoggingService`], whose trait methods only unpack, call a
//!   handler and wrap. The handlers sit in one file per RPC group:
//!   `runs.rs` (prepare, get, list, state), `append.rs` (writers),
//!   `follow.rs` (followers, [`FollowRunStream`]), `search.rs`
//!   (`SearchRuns`, [`SearchRunsStream`]) and `retention.rs`
//!   (`CollectRuns`, the periodic pass, [`RetentionCounters`]). A handler
//!   takes only the state it uses (the store, a small `…State` struct of
//!   references), never the service. **A new RPC** gets a handler in its
//!   group's file (or a new file there) and a three-line trait method.
//! - `convert`: every Protobuf ↔ store conversion, requests in
//!   (`from_*`, checked at the edge) and responses out (`to_*`). **A new
//!   conversion** goes there, not in a handler. `status`: store errors →
//!   statuses, the one place that picks a code.
//! - `limits`: the server's own limits on clients: follower caps
//!   (`Occupancy`) and append pacing (`AppendRates`). **A new limit
//!   check** goes there, with the value in [`ServerConfig::limits`]; the
//!   store enforces the entry limits itself.
//! - [`ServerConfig`] (`config`): what the gRPC layer serves with;
//!   [`Settings`] (`settings`): the whole configuration, from a file, the
//!   environment and flags.
//! - [`Security`] (`security`): TLS, bearer tokens and the layer that
//!   checks them on every call.
//! - [`metrics`]: Prometheus metrics ([`Metrics`]) and their HTTP endpoint
//!   ([`metrics::serve`]); [`health`]: the gRPC health service follows
//!   whether the store can write.
//! - `incoming`: accepting connections, plain or TLS: the
//!   `max_connections` cap, the handshake deadline, and backing off when
//!   descriptors run out.
//! - `scrub`: the background check of stored runs for damage.
//! - `leases`: worker leases: append streams hold their run's, and a
//!   sweeper fails a `running` run whose worker is gone.
//! - `memory`: gives the memory of followers that went back to the system,
//!   and keeps large buffers in the allocator's heaps ([`tune_allocator`]).
//! - `sync`: the one way to take a lock (see below).
//!
//! # Locking
//!
//! Shared state that changes (follower counts, rate buckets, the TLS
//! certificate, the metrics' run counter) sits behind a
//! [`std::sync::Mutex`] or `RwLock`, not tokio's: every critical section is
//! a few lines of bookkeeping, and a lock is **never held across an
//! `.await`** (take what you need, drop the guard, then wait).
//!
//! Every lock is taken through `sync::lock` (and `sync::read`/`write` for
//! an `RwLock`), which recovers a poisoned guard with
//! [`PoisonError::into_inner`](std::sync::PoisonError::into_inner) rather
//! than panicking. A poisoned lock means a holder panicked; no critical
//! section here can leave its data half-updated in a way later callers
//! would misread (each is a counter step, a map insert or remove, or a
//! swap of an `Arc`), so carrying on is safe, while panicking would turn one
//! failed call into every later call failing. Nothing in the crate blocks
//! a runtime thread long enough to need `spawn_blocking`; the store does
//! its own blocking I/O.

mod config;
mod convert;
pub mod health;
mod incoming;
mod leases;
mod limits;
mod memory;
pub mod metrics;
mod scrub;
pub mod security;
mod service;
pub mod settings;
mod status;
mod sync;
mod web;

use std::{future::Future, sync::Arc, time::Duration};

use baa_logging::{FILE_DESCRIPTOR_SET, pb_server::logging_service_server::LoggingServiceServer};
use baa_logging_store::RunStore;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tonic::service::Routes;
use tracing::{info, warn};

use crate::{health::StoreHealth, security::AuthLayer, service::retention};

pub use crate::{
    config::{FOLLOW_BATCH_BYTES, ServerConfig},
    memory::tune_allocator,
    metrics::Metrics,
    security::Security,
    service::{
        DownloadObjectStream, FollowRunStream, FollowStream, GrpcLoggingService, SearchRunsStream,
        retention::RetentionCounters,
    },
    settings::{LogFormat, MaskRule, Masking, Nats, Settings, StoreKind},
    web::{PageOptions, SessionKey},
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
    run_with_page_listener(listener, None, store, config, shutdown).await
}

/// [`run`], with the run page on `page_listener` (plain HTTP/1.1) instead
/// of beside gRPC on `listener`, when given and [`ServerConfig::page`] is
/// set.
///
/// # Errors
///
/// [`ServerError`] when the transport fails.
pub async fn run_with_page_listener<S: RunStore>(
    listener: TcpListener,
    page_listener: Option<TcpListener>,
    store: Arc<S>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let token = CancellationToken::new();
    // Process-wide: the generated stubs' codec reads it as each call starts.
    baa_logging::codec::set_buffer_bytes(config.limits.codec_buffer_bytes);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    if let Some(metrics) = &config.metrics {
        metrics.count_runs_of(&store);
    }
    let health = StoreHealth::start(reporter, store.write_health(), config.metrics.clone()).await;
    let routes = with_reflection(Routes::new(health_service))?;
    let mut transport = Transport::of(&config);
    let scrubbing = scrub::spawn(
        store.clone(),
        config.scrub.clone(),
        config.metrics.clone(),
        token.clone(),
    );
    let page_options = config.page.clone();
    let (logging, service, background) = logging_service(store.clone(), config, &token);
    let apart = page_listener.is_some();
    let page = page_options.map(|options| web::router(service, &options, apart));
    let (beside, apart) = match page_listener {
        Some(page_listener) => (None, page.map(|page| (page_listener, page))),
        None => (page, None),
    };
    // HTTP/1.1 on the gRPC port only for a page served there.
    transport.http1 = beside.is_some();
    let mut routes = routes.add_service(logging);
    let grpc = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = web::merge(grpc, beside);
    let addr = listener.local_addr().ok();
    info!(?addr, "serving");
    let _page_apart = apart.map(|(page_listener, page)| {
        info!(addr = ?page_listener.local_addr().ok(), "serving the run page");
        let stopped = token.clone();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let page = page.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let served = axum::serve(page_listener, page)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(err) = served {
                warn!(cause = %err, "the run page's listener failed");
            }
        }))
    });
    let stop = stop_on(shutdown, health, token.clone());
    let serving = transport.serve(listener, routes, stop);
    let served = with_grace(serving, &token).await;
    if let Some(scrubbing) = scrubbing {
        scrubbing.abort();
    }
    after_serving(&token, background, &*store).await;
    served?;
    info!("stopped");
    Ok(())
}

/// `routes` plus server reflection, v1 and v1alpha, over our descriptors
/// and the health service's.
fn with_reflection(routes: Routes) -> Result<Routes, ServerError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(routes.add_service(reflection).add_service(reflection_alpha))
}

/// The logging service over `store` (as gRPC, and shared for the run
/// page), and its background tasks.
fn logging_service<S: RunStore>(
    store: Arc<S>,
    config: ServerConfig,
    token: &CancellationToken,
) -> (
    LoggingServiceServer<GrpcLoggingService<S>>,
    Arc<GrpcLoggingService<S>>,
    Background,
) {
    let max_message_bytes = config.limits.max_message_bytes;
    let (policy, interval) = (config.retention.policy(), config.retention.interval);
    let abandon_after = config.objects.upload_abandon_after;
    let metrics = config.metrics.clone();
    let service = GrpcLoggingService::new(store.clone(), config, token.clone());
    let sweeper = leases::spawn(
        store.clone(),
        service.worker_leases(),
        metrics,
        token.clone(),
    );
    let uploads = service::objects::spawn_upload_sweep(store.clone(), abandon_after, token.clone());
    let periodic = retention::spawn_periodic(
        store,
        policy,
        interval,
        service.retention_counters(),
        token.clone(),
    );
    memory::spawn_trim(service.streams_ended(), token.clone());
    let service = Arc::new(service);
    let logging = LoggingServiceServer::from_arc(service.clone())
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(usize::MAX);
    (
        logging,
        service,
        Background {
            periodic,
            sweeper,
            uploads,
        },
    )
}

/// The logging service's tasks that run beside the calls.
#[derive(Debug)]
struct Background {
    /// The periodic retention pass, sharing the service's counters; none
    /// when retention sets no limit.
    periodic: Option<JoinHandle<()>>,
    /// The worker lease sweeper; none when leases are off.
    sweeper: Option<JoinHandle<()>>,
    /// The sweep of abandoned uploads.
    uploads: JoinHandle<()>,
}

/// The shutdown sequence: once `shutdown` completes, health turns
/// `NOT_SERVING`, then `token` ends our streams. Completing, it starts
/// the transport's graceful shutdown.
async fn stop_on(
    shutdown: impl Future<Output = ()>,
    health: StoreHealth,
    token: CancellationToken,
) {
    shutdown.await;
    info!("shutting down");
    health.stop().await;
    token.cancel();
}

/// Waits for `serving` to end, but no longer than [`SHUTDOWN_GRACE`] after
/// `token` is cancelled.
///
/// Graceful shutdown waits for every connection to close, and a stream
/// this server does not end itself (a health Watch, a reflection
/// stream) would hold it open forever: after the grace the rest are
/// dropped.
async fn with_grace(
    serving: impl Future<Output = Result<(), tonic::transport::Error>>,
    token: &CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let grace = async {
        token.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serving => served,
        () = grace => {
            warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the shutdown grace; closing them");
            Ok(())
        }
    }
}

/// Cleanup once serving ended: stops what still runs and lets the store
/// write what it keeps in memory.
async fn after_serving<S: RunStore>(token: &CancellationToken, background: Background, store: &S) {
    token.cancel();
    if let Some(sweeper) = background.sweeper {
        // An expiry under way is let finish: the store writes it whole.
        let _ = sweeper.await;
    }
    if let Some(periodic) = background.periodic {
        // A pass under way is let finish: it never leaves a run half-deleted.
        let _ = periodic.await;
    }
    // A sweep under way is let finish: it removes whole uploads only.
    let _ = background.uploads.await;
    if let Err(err) = store.flush().await {
        warn!(cause = %err, "cannot write the store's state on shutdown");
    }
}

// === impl Transport ===

/// How connections are served: HTTP/2 settings, the layers every call
/// passes, and TLS.
#[derive(Debug)]
struct Transport {
    /// How often a connection is pinged, and how long a ping may go
    /// unanswered.
    keepalive: (Duration, Duration),
    /// The most concurrent calls on one connection.
    max_streams: u32,
    /// The HTTP/2 flow-control windows: each call's and each connection's.
    windows: (u32, u32),
    /// The largest HTTP/2 frame the server takes.
    max_frame: u32,
    /// How many connections are let in, and how fast they must speak.
    admission: incoming::Admission,
    /// TLS and tokens.
    security: Security,
    /// Where calls are counted, when metrics are on.
    metrics: Option<Metrics>,
    /// Whether HTTP/1.1 is served too (the run page beside gRPC); otherwise
    /// only HTTP/2.
    http1: bool,
}

impl Transport {
    /// The transport part of `config`.
    fn of(config: &ServerConfig) -> Self {
        Self {
            keepalive: (
                config.limits.keepalive_interval,
                config.limits.keepalive_timeout,
            ),
            max_streams: config.limits.max_streams_per_connection,
            windows: (
                config.limits.stream_window_bytes,
                config.limits.connection_window_bytes,
            ),
            max_frame: config.limits.max_frame_bytes,
            admission: incoming::Admission {
                max_connections: config.limits.max_connections,
                handshake_timeout: config.limits.handshake_timeout,
            },
            security: config.security.clone(),
            metrics: config.metrics.clone(),
            http1: false,
        }
    }

    /// Serves `routes` on `listener`, plain or over TLS, until `stop`
    /// completes and every connection has closed.
    async fn serve(
        self,
        listener: TcpListener,
        routes: Routes,
        stop: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let mut server = tonic::transport::Server::builder()
            // HTTP/1.1 too when the run page is here, for browsers and proxies.
            .accept_http1(self.http1)
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(self.keepalive.0))
            .http2_keepalive_timeout(Some(self.keepalive.1))
            .max_concurrent_streams(Some(self.max_streams))
            .initial_stream_window_size(Some(self.windows.0))
            .initial_connection_window_size(Some(self.windows.1))
            .max_frame_size(Some(self.max_frame))
            // Outermost: what is not the page must be gRPC over HTTP/2, so
            // that no browser can reach a method with a form or a plain POST.
            .layer(web::GrpcOnlyLayer)
            // Next, so that calls refused by the layers below are counted.
            .layer(tower::util::option_layer(
                self.metrics.as_ref().map(Metrics::rpc_layer),
            ))
            .layer(tower::util::option_layer(
                self.security.tokens.clone().map(AuthLayer::new),
            ));
        let router = server.add_routes(routes);
        // Our own accept loop (see `incoming`) sets TCP_NODELAY on every
        // socket: the builder's `tcp_nodelay` only reaches sockets that
        // tonic accepts itself, and Nagle's algorithm would hold a
        // follower's small responses back until the previous segment is
        // acknowledged (up to the peer's 40 ms delayed ACK).
        match &self.security.tls {
            None => {
                let http1 = self.http1;
                let (incoming, accepting) =
                    incoming::incoming(listener, self.admission, move |tcp| {
                        incoming::preface(tcp, http1)
                    });
                let _accepting = AbortOnDropHandle::new(accepting);
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
            Some(tls) => {
                let watcher = AbortOnDropHandle::new(tokio::spawn(tls.clone().watch()));
                let acceptor = tls.acceptor();
                let (incoming, accepting) =
                    incoming::incoming(listener, self.admission, move |tcp| {
                        let accepting = acceptor.accept(tcp);
                        async move {
                            let tls = accepting.await?;
                            // Without `h2` agreed, the client speaks HTTP/1.1.
                            let protocol = match tls.get_ref().1.alpn_protocol() {
                                Some(b"h2") => incoming::Protocol::Http2,
                                _ => incoming::Protocol::Http1,
                            };
                            Ok((tls, protocol))
                        }
                    });
                let accepting = AbortOnDropHandle::new(accepting);
                let served = router.serve_with_incoming_shutdown(incoming, stop).await;
                drop((watcher, accepting));
                served
            }
        }
    }
}

/// How long graceful shutdown waits for open connections once every
/// stream of ours has ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
