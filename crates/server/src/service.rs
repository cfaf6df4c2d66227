//! `GrpcLoggingService`: the `baa.logging.v1.LoggingService` over a
//! [`RunStore`]. Each method unpacks and checks its request, calls the
//! store and converts the answer; the RPC groups live in their own files.

use std::{pin::Pin, sync::Arc};

use baa_logging::{DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME, pb};
use baa_logging_store::RunStore;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    append,
    config::ServerConfig,
    follow,
    limits::{AppendRates, Occupancy},
    retention,
    retention::RetentionCounters,
    runs,
};

/// The gRPC service, generic over the store backend.
#[derive(Debug)]
pub struct GrpcLoggingService<S> {
    /// The store every RPC works on.
    pub(crate) store: Arc<S>,
    /// Limits and sizes.
    pub(crate) config: ServerConfig,
    /// Cancelled when the server shuts down, so that long-lived streams end
    /// and graceful shutdown does not wait for them forever.
    pub(crate) shutdown: CancellationToken,
    /// Open follow streams, per run and in all, against their caps.
    pub(crate) followers: Arc<Occupancy>,
    /// Per-run pacing of appends.
    pub(crate) append_rates: Arc<AppendRates>,
    /// What retention deleted, shared with the periodic pass.
    pub(crate) retention: Arc<RetentionCounters>,
}

impl<S: RunStore> GrpcLoggingService<S> {
    /// A service over `store`; its streams end when `shutdown` is cancelled.
    pub fn new(store: Arc<S>, config: ServerConfig, shutdown: CancellationToken) -> Self {
        Self {
            store,
            followers: Arc::new(Occupancy::new(
                "followers",
                config.limits.max_followers_per_run,
                config.limits.max_followers,
            )),
            append_rates: Arc::new(AppendRates::new(config.limits.append_rate)),
            retention: Arc::new(RetentionCounters::with_metrics(config.metrics.clone())),
            config,
            shutdown,
        }
    }

    /// What retention deleted since the service started, by the periodic
    /// pass and by `CollectRuns`.
    pub fn retention_counters(&self) -> Arc<RetentionCounters> {
        self.retention.clone()
    }
}

/// The response stream of `FollowRun`.
pub type FollowRunStream =
    Pin<Box<dyn Stream<Item = Result<pb::FollowRunResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: RunStore> pb::logging_service_server::LoggingService for GrpcLoggingService<S> {
    type FollowRunStream = FollowRunStream;

    async fn get_server_info(
        &self,
        _request: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::GetServerInfoResponse>, Status> {
        Ok(Response::new(pb::GetServerInfoResponse {
            runs_directory_name: DEFAULT_RUNS_DIRECTORY_NAME.to_owned(),
            run_layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            max_message_bytes: self.config.limits.max_message_bytes as u64,
            max_entry_bytes: self.config.limits.max_entry_bytes as u64,
            max_data_bytes: self.config.limits.max_data_bytes as u64,
            max_batch_entries: self.config.limits.max_batch_entries as u64,
        }))
    }

    async fn prepare_run(
        &self,
        request: Request<pb::PrepareRunRequest>,
    ) -> Result<Response<pb::PrepareRunResponse>, Status> {
        runs::prepare_run(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        runs::get_run(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        runs::list_runs(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_run_state(
        &self,
        request: Request<pb::UpdateRunStateRequest>,
    ) -> Result<Response<pb::UpdateRunStateResponse>, Status> {
        runs::update_run_state(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn append_logs(
        &self,
        request: Request<Streaming<pb::AppendLogsRequest>>,
    ) -> Result<Response<pb::AppendLogsResponse>, Status> {
        append::append_logs(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_writer_cursor(
        &self,
        request: Request<pb::GetWriterCursorRequest>,
    ) -> Result<Response<pb::GetWriterCursorResponse>, Status> {
        append::get_writer_cursor(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn follow_run(
        &self,
        request: Request<pb::FollowRunRequest>,
    ) -> Result<Response<Self::FollowRunStream>, Status> {
        follow::follow_run(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn collect_runs(
        &self,
        request: Request<pb::CollectRunsRequest>,
    ) -> Result<Response<pb::CollectRunsResponse>, Status> {
        retention::collect_runs(self, request.into_inner())
            .await
            .map(Response::new)
    }
}
