//! Following a run: its history, then live entries and state changes, as
//! one stream that survives reconnections and ends when the run does.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::SystemTime,
};

use futures::Stream;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    ClientError, RetryPolicy, RunKey,
    backoff::Backoff,
    error::is_retryable_status,
    failover::Link,
    pb::{self, log_entry::Entry},
};

/// Where to start following and what to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The first sequence number; 0 or 1: from the start.
    pub from_seq: u64,
    /// Only these channels; empty: all three.
    pub channels: Vec<pb::WorkerLogChannel>,
    /// End after the entries stored when the follow began.
    pub history_only: bool,
    /// The last sequence number; `None`: no bound.
    pub to_seq: Option<u64>,
    /// Only the last this many selected entries of the range, then live
    /// ones; `Some(0)`: only entries committed from now on. Counted once,
    /// when the follow begins; a reconnection resumes after the last
    /// entry yielded.
    pub tail: Option<u64>,
    /// Only entries the server committed at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries the server committed at or before this time, as
    /// committed when the follow begins.
    pub until: Option<SystemTime>,
    /// How to wait between reconnection attempts.
    pub retry: RetryPolicy,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            from_seq: 1,
            channels: Vec::new(),
            history_only: false,
            to_seq: None,
            tail: None,
            since: None,
            until: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// One thing that happened in a followed run.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent {
    /// A lifecycle event of the worker.
    Lifecycle(pb::WorkerLifecycleLogEntry),
    /// A chunk of standard output.
    Stdout(pb::StreamChunkLogEntry),
    /// A chunk of standard error.
    Stderr(pb::StreamChunkLogEntry),
    /// The run's state, when the follow starts and whenever it changes.
    State(pb::RunStateSnapshot),
}

impl FollowEvent {
    /// The entry's sequence number; `None` for a state change.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Lifecycle(entry) => Some(entry.seq),
            Self::Stdout(entry) | Self::Stderr(entry) => Some(entry.seq),
            Self::State(_) => None,
        }
    }

    /// The entry as a typed event, or `None` for an empty one.
    fn from_entry(entry: pb::LogEntry) -> Option<Self> {
        Some(match entry.entry? {
            Entry::Lifecycle(entry) => Self::Lifecycle(entry),
            Entry::Chunk(chunk) if chunk.channel == pb::StreamLogChannel::Stderr as i32 => {
                Self::Stderr(chunk)
            }
            Entry::Chunk(chunk) => Self::Stdout(chunk),
        })
    }
}

/// The events of a followed run, in order, each once. After a broken
/// connection it reconnects by itself (to the next server, when its
/// client has several and its server failed) and resumes after the last
/// entry it yielded; it ends when the run is terminal and everything was yielded,
/// or with an error retrying cannot cure.
///
/// Dropping it stops the follow.
#[derive(Debug)]
pub struct Follow {
    /// Events from the task.
    events: ReceiverStream<Result<FollowEvent, ClientError>>,
    /// The task, stopped when the stream is dropped.
    task: JoinHandle<()>,
}

impl Follow {
    /// Starts following `key`.
    pub(crate) fn start(link: Link, key: RunKey, options: FollowOptions) -> Self {
        // A few hundred entries: the server sends batches, and a follower
        // that stops reading only holds up its own stream.
        let (sender, receiver) = mpsc::channel(256);
        let task = tokio::spawn(follow(link, key, options, sender));
        Self {
            events: ReceiverStream::new(receiver),
            task,
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Follow {
    type Item = Result<FollowEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

/// Whether two states differ only in what moves with every entry
/// (`last_event_seq`, `updated_at`), so that a reconnection does not
/// report the same state again.
fn same_state(a: &pb::RunStateSnapshot, b: &pb::RunStateSnapshot) -> bool {
    a.status == b.status
        && a.exit_code == b.exit_code
        && a.summary == b.summary
        && a.finished_at == b.finished_at
        && a.checkpoint_seq == b.checkpoint_seq
        && a.attempt == b.attempt
}

/// The follow loop: one FollowRun call after another, from the resume
/// cursor, until the run ends; after a failure of the server, the next
/// call goes to the next server.
async fn follow(
    link: Link,
    key: RunKey,
    options: FollowOptions,
    events: mpsc::Sender<Result<FollowEvent, ClientError>>,
) {
    let mut next_seq = options.from_seq.max(1);
    let mut last_state: Option<pb::RunStateSnapshot> = None;
    let mut backoff = Backoff::new(options.retry);
    // The tail is counted by the first stream that answers; later ones
    // resume after what was yielded.
    let mut tail = options.tail;
    let mut current = link.current();
    loop {
        let request = pb::FollowRunRequest {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
            from_seq: next_seq,
            channels: options
                .channels
                .iter()
                .map(|channel| *channel as i32)
                .collect(),
            history_only: options.history_only,
            to_seq: options.to_seq.unwrap_or(0),
            tail,
            since: options.since.map(prost_types::Timestamp::from),
            until: options.until.map(prost_types::Timestamp::from),
        };
        let status = match current.stub.clone().follow_run(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(response)) => {
                            backoff = Backoff::new(options.retry);
                            tail = None;
                            if let Some(state) = response.state {
                                if !last_state
                                    .as_ref()
                                    .is_some_and(|last| same_state(last, &state))
                                {
                                    last_state = Some(state.clone());
                                    if events.send(Ok(FollowEvent::State(state))).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            for entry in response.entries {
                                let Some(event) = FollowEvent::from_entry(entry) else {
                                    continue;
                                };
                                if event.seq().is_some_and(|seq| seq < next_seq) {
                                    continue;
                                }
                                next_seq = event.seq().map_or(next_seq, |seq| seq + 1);
                                if events.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                            next_seq = next_seq.max(response.next_seq);
                        }
                        Ok(None) => return,
                        Err(status) => break status,
                    }
                }
            }
            Err(status) => status,
        };
        if !is_retryable_status(&status) || !backoff.wait().await {
            let _ = events.send(Err(status.into())).await;
            return;
        }
        current = link.fail_over(&current, &status).await;
    }
}
