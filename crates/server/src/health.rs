//! The gRPC health service follows the store: `NOT_SERVING` while the
//! store cannot write (its disk is full or read-only), `SERVING` again once
//! it can. Both the whole server (`""`) and `baa.logging.v1.LoggingService`
//! change together: a server that cannot store logs is of no use to a
//! writer, and a load balancer asks about one or the other.

use baa_logging::pb::logging_service_server::LoggingServiceServer;
use baa_logging_store::WriteHealth;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// The service names whose status follows the store: the whole server
/// and the logging service, by its generated name.
pub(crate) const SERVICES: [&str; 2] = ["", <LoggingServiceServer<()> as NamedService>::NAME];

/// A service name for liveness probes: `SERVING` from start to shutdown,
/// whatever the store says, because restarting a server whose disk is
/// full frees no space.
pub const LIVENESS: &str = "liveness";

/// The health service while the server runs: `SERVING` at start, then
/// following the store, and `NOT_SERVING` for good from [`StoreHealth::stop`].
#[derive(Debug)]
pub(crate) struct StoreHealth {
    /// Where the statuses are set.
    reporter: HealthReporter,
    /// Stops [`follow_store`].
    stop: CancellationToken,
    /// The task running [`follow_store`].
    task: JoinHandle<()>,
}

impl StoreHealth {
    /// Sets [`SERVICES`] and [`LIVENESS`] to `SERVING`, then has
    /// [`SERVICES`] follow the store's write health.
    pub(crate) async fn start(
        reporter: HealthReporter,
        store: watch::Receiver<WriteHealth>,
        metrics: Option<Metrics>,
    ) -> Self {
        set_all(&reporter, ServingStatus::Serving).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow_store(store, reporter.clone(), metrics, stop.clone()));
        Self {
            reporter,
            stop,
            task,
        }
    }

    /// Turns every service `NOT_SERVING`, liveness too. It stops following
    /// the store first, so that nothing turns the health back to `SERVING`.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        set_all(&self.reporter, ServingStatus::NotServing).await;
        self.reporter
            .set_service_status(LIVENESS, ServingStatus::NotServing)
            .await;
    }
}

/// Sets the health of [`SERVICES`] from the store's write health, now and
/// on every change, until `stop` is cancelled or the store stops telling.
async fn follow_store(
    mut store: watch::Receiver<WriteHealth>,
    reporter: HealthReporter,
    metrics: Option<Metrics>,
    stop: CancellationToken,
) {
    let mut serving = true;
    loop {
        let health = store.borrow_and_update().clone();
        let writable = health.is_writable();
        if writable != serving {
            serving = writable;
            match &health {
                WriteHealth::Writable => info!("the store can write again: serving"),
                WriteHealth::NotWritable { reason } => {
                    warn!(%reason, "the store cannot write: not serving");
                }
            }
            set_all(&reporter, status(writable)).await;
        }
        if let Some(metrics) = &metrics {
            metrics.set_store_writable(writable);
        }
        tokio::select! {
            changed = store.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// Sets every one of [`SERVICES`] to `status`.
async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// The health status for a store that can write or cannot.
fn status(writable: bool) -> ServingStatus {
    if writable {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
