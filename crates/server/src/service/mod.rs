//! `GrpcLoggingService`: the `baa.logging.v1.LoggingService` over a
//! [`RunStore`]. Each trait method only unpacks the request, calls its
//! handler with the narrow state that handler needs, and wraps the answer.
//!
//! The handlers live in one file per RPC group: `runs` (prepare, get,
//! list, state), `append` (writers), `follow` (followers), `search`
//! (`SearchRuns`) and `retention` (`CollectRuns`, the periodic pass and
//! its counters). A handler never
//! sees [`GrpcLoggingService`]: it takes the store, the limits, the
//! shutdown token or the counters it uses, so no handler module imports
//! this one and a new RPC's needs are plain in its signature.

mod append;
mod follow;
pub(crate) mod follow_budget;
mod masking;
pub(crate) mod objects;
pub(crate) mod retention;
mod runs;
mod search;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use baa_logging::{pb, pb_server};
use baa_logging_store::RunStore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use self::{
    append::AppendState, follow::FollowState, masking::RunMaskers, retention::RetentionCounters,
};
pub use self::{
    follow::{FollowRunStream, FollowStream},
    objects::DownloadObjectStream,
    search::SearchRunsStream,
};
use crate::{
    config::ServerConfig,
    convert::to_server_info,
    leases::WorkerLeases,
    limits::{AppendRates, Occupancy},
    metrics::Metrics,
    security::{TaskLimit, tasks},
};

/// The gRPC service, generic over the store backend.
#[derive(Debug)]
pub struct GrpcLoggingService<S> {
    /// The store every RPC works on.
    store: Arc<S>,
    /// Limits and sizes.
    config: ServerConfig,
    /// Cancelled when the server shuts down, so that long-lived streams end
    /// and graceful shutdown does not wait for them forever.
    shutdown: CancellationToken,
    /// Open follow streams, per run and in all, against their caps.
    followers: Arc<Occupancy>,
    /// The bytes of follow responses waiting to be sent, against their cap.
    follow_budget: Arc<follow_budget::FollowBudget>,
    /// Uploads and downloads that ended since the server started.
    transfers_ended: Arc<AtomicU64>,
    /// Per-run pacing of appends.
    append_rates: Arc<AppendRates>,
    /// Per-caller pacing and caps of searches.
    searches: search::Searches,
    /// What retention deleted, shared with the periodic pass.
    retention: Arc<RetentionCounters>,
    /// The runs' worker leases, held by append streams and swept by the
    /// task `leases::spawn` starts.
    leases: Arc<WorkerLeases>,
    /// The runs' registered values and the server-wide rules, masked in
    /// everything stored.
    maskers: Arc<RunMaskers>,
}

impl<S: RunStore> GrpcLoggingService<S> {
    /// A service over `store`; its streams end when `shutdown` is cancelled.
    pub fn new(store: Arc<S>, config: ServerConfig, shutdown: CancellationToken) -> Self {
        Self {
            store,
            followers: Arc::new(Occupancy::new(
                "followers",
                "run",
                config.limits.max_followers_per_run,
                config.limits.max_followers,
            )),
            follow_budget: follow_budget::FollowBudget::new(
                config.limits.max_follow_buffer_bytes,
                config.metrics.as_ref().map(Metrics::follow_buffered),
            ),
            transfers_ended: Arc::default(),
            append_rates: Arc::new(AppendRates::new(config.limits.append_rate)),
            searches: search::Searches::new(config.limits.search_rate),
            retention: Arc::new(RetentionCounters::with_metrics(config.metrics.clone())),
            leases: WorkerLeases::new(&config.leases),
            maskers: RunMaskers::new(
                config.masking.rules().unwrap_or_else(|err| {
                    // Settings::load refuses bad rules at start; a
                    // configuration built in code falls back to the
                    // built-in ones rather than to none.
                    tracing::error!(cause = %err, "masking with the built-in rules only");
                    baa_logging_mask::Rules::default_rules()
                }),
                config.masking.hold_back,
                config.metrics.clone(),
            ),
            config,
            shutdown,
        }
    }

    /// What the service serves with.
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// How many follow streams, uploads and downloads ended since the
    /// server started: the streams whose buffers go back to the allocator.
    pub(crate) fn streams_ended(&self) -> impl Fn() -> u64 + Send + 'static {
        let budget = self.follow_budget.clone();
        let transfers = self.transfers_ended.clone();
        move || budget.ended() + transfers.load(Ordering::Relaxed)
    }

    /// What retention deleted since the service started, by the periodic
    /// pass and by `CollectRuns`.
    pub fn retention_counters(&self) -> Arc<RetentionCounters> {
        self.retention.clone()
    }

    /// The runs' worker leases, for the sweeper.
    pub(crate) fn worker_leases(&self) -> Arc<WorkerLeases> {
        self.leases.clone()
    }

    /// What the writer RPCs work with, for a token limited to `tasks`.
    fn append_state<'a>(&'a self, tasks: Option<&'a TaskLimit>) -> AppendState<'a, S> {
        AppendState {
            tasks,
            store: &self.store,
            limits: &self.config.limits,
            rates: &self.append_rates,
            leases: &self.leases,
            shutdown: &self.shutdown,
            maskers: &self.maskers,
        }
    }

    /// What the object RPCs work with, for a token limited to `tasks`.
    fn object_state<'a>(&'a self, tasks: Option<&'a TaskLimit>) -> objects::ObjectState<'a, S> {
        objects::ObjectState {
            store: &self.store,
            tasks,
            idle: self.config.limits.append_idle_timeout,
            shutdown: &self.shutdown,
            metrics: self.config.metrics.as_ref(),
            ended: &self.transfers_ended,
        }
    }

    /// `FollowRun` with its responses as [`pb::FollowRunResponse`]s, for
    /// the web pages, which read them rather than send them on.
    ///
    /// # Errors
    ///
    /// As `FollowRun`.
    pub async fn follow_messages(
        &self,
        request: Request<pb::FollowRunRequest>,
    ) -> Result<Response<FollowStream<pb::FollowRunResponse>>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        follow::follow_run(self.follow_state(), request)
            .await
            .map(Response::new)
    }

    /// What `FollowRun` works with.
    fn follow_state(&self) -> FollowState<'_, S> {
        FollowState {
            store: &self.store,
            followers: &self.followers,
            budget: &self.follow_budget,
            shutdown: &self.shutdown,
            batch_bytes: self.config.follow_batch_bytes,
            metrics: self.config.metrics.as_ref(),
        }
    }
}

#[tonic::async_trait]
impl<S: RunStore> pb_server::logging_service_server::LoggingService for GrpcLoggingService<S> {
    type FollowRunStream = FollowRunStream;
    type SearchRunsStream = SearchRunsStream;
    type DownloadObjectStream = DownloadObjectStream;

    async fn get_server_info(
        &self,
        _request: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::GetServerInfoResponse>, Status> {
        Ok(Response::new(to_server_info(
            &self.config.limits,
            self.leases.lease(),
        )))
    }

    async fn prepare_run(
        &self,
        request: Request<pb::PrepareRunRequest>,
    ) -> Result<Response<pb::PrepareRunResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        let request = request.into_inner();
        let task_id = request
            .metadata
            .as_ref()
            .map_or("", |metadata| &metadata.task_id);
        tasks::check(limit.as_deref(), task_id)?;
        runs::prepare_run(&*self.store, &self.maskers, request)
            .await
            .map(Response::new)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        runs::get_run(&*self.store, request)
            .await
            .map(Response::new)
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        let request = request.into_inner();
        if request.task_id.is_empty() {
            tasks::check_all_tasks(limit.as_deref(), "ListRuns must name a task_id")?;
        }
        tasks::check(limit.as_deref(), &request.task_id)?;
        runs::list_runs(&*self.store, request)
            .await
            .map(Response::new)
    }

    async fn update_run_state(
        &self,
        request: Request<pb::UpdateRunStateRequest>,
    ) -> Result<Response<pb::UpdateRunStateResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        runs::update_run_state(&*self.store, &self.leases, &self.maskers, request)
            .await
            .map(Response::new)
    }

    async fn append_logs(
        &self,
        request: Request<Streaming<pb::AppendLogsRequest>>,
    ) -> Result<Response<pb::AppendLogsResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        append::append_logs(self.append_state(limit.as_deref()), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_writer_cursor(
        &self,
        request: Request<pb::GetWriterCursorRequest>,
    ) -> Result<Response<pb::GetWriterCursorResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        append::get_writer_cursor(&*self.store, request)
            .await
            .map(Response::new)
    }

    async fn follow_run(
        &self,
        request: Request<pb::FollowRunRequest>,
    ) -> Result<Response<Self::FollowRunStream>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        follow::follow_run(self.follow_state(), request)
            .await
            .map(Response::new)
    }

    async fn search_runs(
        &self,
        request: Request<pb::SearchRunsRequest>,
    ) -> Result<Response<Self::SearchRunsStream>, Status> {
        let state =
            search::SearchState::of_call(&self.store, &self.searches, &self.shutdown, &request)?;
        search::search_runs(state, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn collect_runs(
        &self,
        request: Request<pb::CollectRunsRequest>,
    ) -> Result<Response<pb::CollectRunsResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        tasks::check_all_tasks(limit.as_deref(), "CollectRuns spans every task")?;
        let configured = self.config.retention.policy();
        retention::collect_runs(
            &*self.store,
            configured,
            &self.retention,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn upload_object(
        &self,
        request: Request<Streaming<pb::UploadObjectRequest>>,
    ) -> Result<Response<pb::UploadObjectResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        objects::upload_object(self.object_state(limit.as_deref()), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_upload_status(
        &self,
        request: Request<pb::GetUploadStatusRequest>,
    ) -> Result<Response<pb::GetUploadStatusResponse>, Status> {
        let limit = tasks::limit_of(request.extensions());
        objects::get_upload_status(self.object_state(limit.as_deref()), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn download_object(
        &self,
        request: Request<pb::DownloadObjectRequest>,
    ) -> Result<Response<Self::DownloadObjectStream>, Status> {
        let limit = tasks::limit_of(request.extensions());
        objects::download_object(self.object_state(limit.as_deref()), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        objects::list_objects(&*self.store, request)
            .await
            .map(Response::new)
    }

    async fn reserve_checkpoint(
        &self,
        request: Request<pb::ReserveCheckpointRequest>,
    ) -> Result<Response<pb::ReserveCheckpointResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        objects::reserve_checkpoint(&*self.store, request)
            .await
            .map(Response::new)
    }

    async fn commit_checkpoint(
        &self,
        request: Request<pb::CommitCheckpointRequest>,
    ) -> Result<Response<pb::CommitCheckpointResponse>, Status> {
        let request = checked(request, |request| &request.task_id)?;
        objects::commit_checkpoint(&*self.store, request)
            .await
            .map(Response::new)
    }
}

/// The request, once the task it names is one the calling token may touch.
fn checked<T>(request: Request<T>, task_id: impl Fn(&T) -> &String) -> Result<T, Status> {
    let limit = tasks::limit_of(request.extensions());
    let request = request.into_inner();
    tasks::check(limit.as_deref(), task_id(&request))?;
    Ok(request)
}
