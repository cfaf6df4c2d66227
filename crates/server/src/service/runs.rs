//! The run RPCs: `PrepareRun`, `GetRun`, `ListRuns`, `UpdateRunState`.
//! Each needs the store; those that take text a reader sees mask it first.

use baa_logging::pb;
use baa_logging_store::{
    RunStore,
    model::{RunKey, RunQuery},
};
use tonic::Status;

use crate::{
    convert::{
        from_metadata_input, from_patch, from_state_input, from_status, required,
        to_prepare_response, to_run_page, to_run_response, to_state_response,
    },
    leases::WorkerLeases,
    status::to_status,
};

use super::masking::RunMaskers;

/// The page size when a request sets none.
const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page.
const MAX_PAGE_SIZE: usize = 500;

/// `PrepareRun`. The metadata a reader sees and the first summary are
/// masked with the server-wide rules: no value can be registered before
/// the run exists.
#[tracing::instrument(skip_all, fields(task_id, run_id))]
pub(crate) async fn prepare_run<S: RunStore>(
    store: &S,
    maskers: &RunMaskers,
    request: pb::PrepareRunRequest,
) -> Result<pb::PrepareRunResponse, Status> {
    let mut metadata = from_metadata_input(required("metadata", request.metadata)?);
    let mut state = from_state_input(required("state", request.state)?);
    maskers.mask_metadata(&mut metadata);
    if let Some(summary) = &mut state.summary {
        maskers.mask_with_rules(summary);
    }
    let span = tracing::Span::current();
    span.record("task_id", metadata.task_id.as_str());
    span.record("run_id", metadata.run_id.as_str());
    let prepared = store
        .prepare_run(metadata, state)
        .await
        .map_err(to_status)?;
    if prepared.created {
        tracing::info!("run prepared");
    }
    Ok(to_prepare_response(&prepared))
}

/// `GetRun`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn get_run<S: RunStore>(
    store: &S,
    request: pb::GetRunRequest,
) -> Result<pb::GetRunResponse, Status> {
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let view = store.get_run(&key).await.map_err(to_status)?;
    Ok(to_run_response(&view))
}

/// `ListRuns`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id))]
pub(crate) async fn list_runs<S: RunStore>(
    store: &S,
    request: pb::ListRunsRequest,
) -> Result<pb::ListRunsResponse, Status> {
    let statuses = request
        .statuses
        .iter()
        .map(|status| from_status("statuses", *status))
        .collect::<Result<Vec<_>, _>>()?;
    let page_size = match request.page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    };
    let query = RunQuery {
        task_id: (!request.task_id.is_empty()).then_some(request.task_id),
        statuses,
        page_size,
        page_token: (!request.page_token.is_empty()).then_some(request.page_token),
    };
    let page = store.list_runs(query).await.map_err(to_status)?;
    Ok(to_run_page(page))
}

/// `UpdateRunState`. A request that names its writer goes through
/// [`RunStore::update_state_by`], so that a writer back after its run's
/// worker lease expired can set the final status; the new status starts or
/// ends the run's lease. The summary is masked with the run's registered
/// values and the rules; a terminal status drops the run's values.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id, writer_id = %request.writer_id))]
pub(crate) async fn update_run_state<S: RunStore>(
    store: &S,
    leases: &WorkerLeases,
    maskers: &RunMaskers,
    request: pb::UpdateRunStateRequest,
) -> Result<pb::UpdateRunStateResponse, Status> {
    let mut patch = from_patch(required("patch", request.patch)?)?;
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    if let Some(summary) = &mut patch.summary {
        maskers.mask_for_run(&key, summary);
    }
    let state = match request.writer_id.as_str() {
        "" => store.update_state(&key, patch).await,
        writer_id => store.update_state_by(&key, writer_id, patch).await,
    }
    .map_err(to_status)?;
    leases.moved(&key, state.status);
    if state.status.is_terminal() {
        maskers.forget(&key);
    }
    tracing::info!(status = state.status.as_str(), "run state changed");
    Ok(to_state_response(&state))
}
