//! The metrics endpoint: plain HTTP/1.1, `GET /metrics` and nothing else,
//! on a listener of its own so that it can stay off the public network
//! while gRPC is on it.

use std::future::Future;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::net::TcpListener;
use tracing::info;

use super::Metrics;

/// Serves `GET /metrics` from `metrics` on `listener` until `shutdown`
/// completes. Any other path is `404 Not Found`.
///
/// Bind the listener first (on port 0 in tests) and read its address; the
/// endpoint answers as soon as this runs.
///
/// # Errors
///
/// The I/O error that stopped the server.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr().ok();
    info!(?addr, "serving metrics at /metrics");
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /metrics`.
async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render().await,
    )
}
