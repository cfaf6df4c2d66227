//! `FollowRun`: history, then live, from the store.
//!
//! A follow stream reads its next batch when the HTTP/2 layer asks for the
//! next response, which it does only when the stream's flow-control window
//! has room (see `follow_budget`). Only a follower that reads at full
//! speed (its responses have grown to full batches) gets one batch read
//! ahead while its last response is sent, and only while the budget has
//! room for it. So a follower that stops reading holds its reader's
//! position, the response it was last handed and at most one batch,
//! whatever the run's size, and the writers never notice. When it is caught up, the stream waits for the
//! run's doorbell. It ends when the run is terminal and everything was
//! sent, when the follower goes away (the stream is dropped), or when the
//! server shuts down (with `UNAVAILABLE` and the cursor to resume from).
//!
//! The gRPC stream sends [`EncodedFollowRunResponse`]s: a whole commit
//! that followers read from memory is encoded once, by the first of them,
//! and its bytes are shared by all (see `convert::to_encoded_follow_response`).
//! The web pages take the same stream as [`pb::FollowRunResponse`]s.

use std::{pin::Pin, sync::Arc};

use baa_logging::{EncodedFollowRunResponse, pb};
use baa_logging_store::{
    ReadFrom, RunReader, RunStore, StoreError,
    model::{ChannelSet, ReadBatch, RunKey},
};
use futures::Stream;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

use super::follow_budget::{BudgetShare, FollowBudget};
use crate::{
    convert::{from_channel, from_timestamp, to_encoded_follow_response, to_follow_response},
    limits::{Occupancy, OccupancyGuard},
    metrics::Metrics,
    status::to_status,
};

/// The response stream of `FollowRun`, as gRPC sends it.
pub type FollowRunStream = FollowStream<EncodedFollowRunResponse>;

/// A response stream of `FollowRun`, of responses of type `M`.
pub type FollowStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// A response of `FollowRun`, as it is made from a batch.
pub(crate) trait FollowResponse: Message + Sized + 'static {
    /// Whether its stream asks the reader for shared commits.
    const SHARES: bool;

    /// The response that sends `batch`.
    fn of(batch: ReadBatch) -> Self;
}

impl FollowResponse for pb::FollowRunResponse {
    const SHARES: bool = false;

    fn of(batch: ReadBatch) -> Self {
        to_follow_response(batch)
    }
}

impl FollowResponse for EncodedFollowRunResponse {
    const SHARES: bool = true;

    fn of(batch: ReadBatch) -> Self {
        to_encoded_follow_response(batch)
    }
}

/// What `FollowRun` works with.
#[derive(Debug)]
pub(crate) struct FollowState<'a, S> {
    /// Where the run is read from.
    pub(crate) store: &'a S,
    /// The follower caps, per run and in all.
    pub(crate) followers: &'a Arc<Occupancy>,
    /// The bytes of responses waiting to be sent, over every follower.
    pub(crate) budget: &'a Arc<FollowBudget>,
    /// Ends every follow stream when the server shuts down.
    pub(crate) shutdown: &'a CancellationToken,
    /// About how many bytes of entries a full response carries.
    pub(crate) batch_bytes: usize,
    /// Where follower lag is observed, when metrics are on.
    pub(crate) metrics: Option<&'a Metrics>,
}

/// `FollowRun`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id, from_seq = request.from_seq))]
pub(crate) async fn follow_run<S: RunStore, M: FollowResponse>(
    state: FollowState<'_, S>,
    request: pb::FollowRunRequest,
) -> Result<FollowStream<M>, Status> {
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
        to_seq: (request.to_seq > 0).then_some(request.to_seq),
        tail: request.tail,
        since: request
            .since
            .map(|since| from_timestamp("since", since))
            .transpose()?,
        until: request
            .until
            .map(|until| from_timestamp("until", until))
            .transpose()?,
    };
    let place = state.followers.enter(&key)?;
    let mut reader = state
        .store
        .open_reader(&key, from)
        .await
        .map_err(to_status)?;
    if M::SHARES {
        reader.share_commits();
    }
    let follow = Follow {
        _place: place,
        reader: Some(reader),
        ahead: None,
        share: state.budget.share(state.batch_bytes),
        shutdown: state.shutdown.clone(),
        cursor: from.from_seq,
        caught_up: false,
        metrics: state.metrics.cloned(),
    };
    // Each read runs in the call's span, so that what it logs names the run.
    let span = tracing::Span::current();
    Ok(Box::pin(futures::stream::unfold(
        Some(follow),
        move |follow| {
            let span = span.clone();
            async move { follow?.next::<M>().instrument(span).await }
        },
    )))
}

/// One follow stream between two responses.
struct Follow<R> {
    /// The follower's place under the caps, held as long as the stream.
    _place: OccupancyGuard,
    /// Where the entries come from; `None` while a read ahead holds it.
    reader: Option<R>,
    /// The batch being read ahead, with the reader.
    ahead: Option<JoinHandle<(R, baa_logging_store::Result<ReadBatch>)>>,
    /// This stream's part of the response budget.
    share: BudgetShare,
    /// Ends the stream when the server shuts down.
    shutdown: CancellationToken,
    /// Where the follower resumes: the `next_seq` of the last response.
    cursor: u64,
    /// The last read found nothing new: wait for the doorbell first.
    caught_up: bool,
    /// Where follower lag is observed, when metrics are on.
    metrics: Option<Metrics>,
}

impl<R> Drop for Follow<R> {
    fn drop(&mut self) {
        // A follower that went needs no batch read ahead, nor its reader's
        // hold on the run.
        if let Some(ahead) = &self.ahead {
            ahead.abort();
        }
    }
}

/// What the stream yields next, and itself when more may follow.
type Next<R, M> = Option<(Result<M, Status>, Option<Follow<R>>)>;

impl<R: RunReader> Follow<R> {
    /// Reads until there is a response to send, the run is done, or the
    /// server shuts down.
    async fn next<M: FollowResponse>(mut self) -> Next<R, M> {
        loop {
            let shutdown = self.shutdown.clone();
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Some((Err(self.unavailable()), None)),
                batch = self.read() => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => return Some((Err(to_status(err)), None)),
            };
            self.caught_up = batch.caught_up;
            let finished = batch.finished;
            let has_entries = !batch.entries.is_empty() || !batch.shared.is_empty();
            if let (Some(metrics), true) = (&self.metrics, has_entries) {
                let sent_to = batch.next_seq.saturating_sub(1);
                metrics.observe_follow_lag(batch.committed_seq.saturating_sub(sent_to));
            }
            if has_entries || batch.state.is_some() {
                self.cursor = batch.next_seq;
                let response = M::of(batch);
                self.share.handed(response.encoded_len());
                if finished {
                    return Some((Ok(response), None));
                }
                if !self.caught_up {
                    self.read_ahead();
                }
                return Some((Ok(response), Some(self)));
            }
            if finished {
                return None;
            }
        }
    }

    /// The next batch, once the doorbell rang when the last read was
    /// caught up.
    async fn read(&mut self) -> baa_logging_store::Result<ReadBatch> {
        if let Some(ahead) = self.ahead.take() {
            self.share.take_ahead();
            let (reader, batch) = ahead
                .await
                .map_err(|err| StoreError::TaskFailed(err.to_string()))?;
            self.reader = Some(reader);
            return batch;
        }
        // Asked for more: the last response was taken, also while the
        // follower now waits, caught up, for as long as the run is quiet.
        self.share.taken();
        let reader = self.reader.as_mut().expect("no read ahead is under way");
        if self.caught_up {
            reader.changed().await;
        }
        let max_bytes = self.share.next_size();
        reader.read(max_bytes).await
    }

    /// Starts reading the next batch while the last response is sent,
    /// when the follower reads at full speed and the budget has room.
    fn read_ahead(&mut self) {
        let Some(max_bytes) = self.share.ahead_size() else {
            return;
        };
        let mut reader = self.reader.take().expect("no read ahead is under way");
        self.ahead = Some(tokio::spawn(
            async move {
                let batch = reader.read(max_bytes).await;
                (reader, batch)
            }
            .in_current_span(),
        ));
    }

    /// The status that ends the stream on shutdown.
    fn unavailable(&self) -> Status {
        Status::unavailable(format!(
            "the server is shutting down; resume with from_seq {}",
            self.cursor
        ))
    }
}
