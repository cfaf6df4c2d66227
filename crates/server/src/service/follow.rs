//! `FollowRun`: history, then live, from the store.
//!
//! Each follower gets a task that reads batches from a [`RunReader`] and
//! sends them into a small bounded channel. When the follower reads slowly
//! the channel fills and the task waits: it holds its read buffers and one
//! batch, nothing more, and the writers never notice. When it is caught up
//! it waits for the run's doorbell. It stops when the run is terminal and
//! everything was sent, when the follower goes away, or when the server
//! shuts down (with `UNAVAILABLE` and the cursor to resume from).

use std::{pin::Pin, sync::Arc};

use baa_logging::pb;
use baa_logging_store::{
    ReadFrom, RunReader, RunStore,
    model::{ChannelSet, RunKey},
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

use crate::{
    convert::{from_channel, to_follow_response},
    limits::{Occupancy, OccupancyGuard},
    metrics::Metrics,
    status::to_status,
};

/// Responses waiting for a follower, per follower.
const FOLLOW_BUFFER: usize = 2;

/// The response stream of `FollowRun`.
pub type FollowRunStream =
    Pin<Box<dyn Stream<Item = Result<pb::FollowRunResponse, Status>> + Send>>;

/// What `FollowRun` works with.
#[derive(Debug)]
pub(crate) struct FollowState<'a, S> {
    /// Where the run is read from.
    pub(crate) store: &'a S,
    /// The follower caps, per run and in all.
    pub(crate) followers: &'a Arc<Occupancy>,
    /// Ends every follow stream when the server shuts down.
    pub(crate) shutdown: &'a CancellationToken,
    /// About how many bytes of entries one response carries.
    pub(crate) batch_bytes: usize,
    /// Where follower lag is observed, when metrics are on.
    pub(crate) metrics: Option<&'a Metrics>,
}

/// `FollowRun`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id, from_seq = request.from_seq))]
pub(crate) async fn follow_run<S: RunStore>(
    state: FollowState<'_, S>,
    request: pb::FollowRunRequest,
) -> Result<FollowRunStream, Status> {
    let channels = request
        .channels
        .iter()
        .map(|channel| from_channel("channels", *channel))
        .collect::<Result<Vec<_>, _>>()?;
    let key = RunKey {
        task_id: request.task_id,
        run_id: request.run_id,
    };
    let from = ReadFrom {
        from_seq: request.from_seq.max(1),
        channels: ChannelSet::of(&channels),
        history_only: request.history_only,
    };
    let place = state.followers.enter(&key)?;
    let reader = state
        .store
        .open_reader(&key, from)
        .await
        .map_err(to_status)?;
    let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
    // In the call's span, so that what the pump logs names the run.
    tokio::spawn(
        pump(
            place,
            reader,
            tx,
            state.shutdown.clone(),
            state.batch_bytes,
            state.metrics.cloned(),
        )
        .in_current_span(),
    );
    Ok(Box::pin(responses(
        rx,
        state.shutdown.clone(),
        from.from_seq,
    )))
}

/// The responses the pump sends, until the server shuts down: then the
/// stream ends at once with `UNAVAILABLE` and the cursor of the last
/// response delivered, even when responses were still waiting.
fn responses(
    rx: mpsc::Receiver<Result<pb::FollowRunResponse, Status>>,
    shutdown: CancellationToken,
    from_seq: u64,
) -> impl Stream<Item = Result<pb::FollowRunResponse, Status>> + Send {
    futures::stream::unfold(Some((rx, shutdown, from_seq)), |state| async move {
        let (mut rx, shutdown, cursor) = state?;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Some((
                Err(Status::unavailable(format!(
                    "the server is shutting down; resume with from_seq {cursor}"
                ))),
                None,
            )),
            message = rx.recv() => match message {
                Some(Ok(response)) => {
                    let cursor = response.next_seq;
                    Some((Ok(response), Some((rx, shutdown, cursor))))
                }
                Some(Err(status)) => Some((Err(status), None)),
                None => None,
            },
        }
    })
}

/// Reads batches and sends them until the stream is done; the follower
/// counts against the caps (`_place`) as long as this runs.
async fn pump<R: RunReader>(
    _place: OccupancyGuard,
    mut reader: R,
    tx: mpsc::Sender<Result<pb::FollowRunResponse, Status>>,
    shutdown: CancellationToken,
    batch_bytes: usize,
    metrics: Option<Metrics>,
) {
    loop {
        let batch = match reader.read(batch_bytes).await {
            Ok(batch) => batch,
            Err(err) => {
                let _ = tx.send(Err(to_status(err))).await;
                return;
            }
        };
        let (caught_up, finished) = (batch.caught_up, batch.finished);
        if let (Some(metrics), false) = (&metrics, batch.entries.is_empty()) {
            let sent_to = batch.next_seq.saturating_sub(1);
            metrics.observe_follow_lag(batch.committed_seq.saturating_sub(sent_to));
        }
        if !batch.entries.is_empty() || batch.state.is_some() {
            tokio::select! {
                sent = tx.send(Ok(to_follow_response(batch))) => if sent.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
        if finished {
            return;
        }
        if caught_up {
            tokio::select! {
                () = reader.changed() => {}
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    }
}
