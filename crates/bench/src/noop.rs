//! The transport ceiling: a `LoggingService` that stores nothing.
//!
//! It reads every `AppendLogs` stream to its end and drops the items, so
//! what a writer measures against it is gRPC, HTTP/2, Protobuf and the
//! loopback alone. For fan-out it relays each append message's items to
//! the run's followers straight from memory (a bounded broadcast, no disk,
//! no JSON), so a follower's latency against it is the transport's floor.
//! It runs as `baa-bench noop-server`, a process of its own like
//! `baa-logd`, so its CPU time and memory are measured the same way.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use baa_logging::pb::{
    self, append_item::Payload, log_entry::Entry, logging_service_server::LoggingServiceServer,
};
use futures::Stream;
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, transport::server::TcpIncoming};

use crate::error::{BenchError, Context, Result};

/// Serves the no-op service on `listen` until SIGTERM or SIGINT, after
/// printing `listening on ADDR`. Each run's relay holds `relay_capacity`
/// append messages for followers that lag; a broadcast channel allocates
/// its slots up front, so this is memory per run.
pub(crate) async fn serve(listen: SocketAddr, relay_capacity: usize) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|err| BenchError::io(format!("cannot listen on {listen}"), err))?;
    let addr = listener
        .local_addr()
        .map_err(|err| BenchError::io("no local address", err))?;
    println!("listening on {addr}");
    let service = LoggingServiceServer::new(NoopService {
        relays: Mutex::default(),
        relay_capacity: relay_capacity.max(1),
    })
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    // With its own listener tonic ignores the builder's `tcp_nodelay`: set
    // it on each accepted socket, as baa-logd does.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop_signal())
        .await
        .context("the no-op server failed")
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}

/// A run's followers, fed from memory.
#[derive(Debug)]
struct Relay {
    /// Each append message's items, as entries.
    entries: broadcast::Sender<Arc<Vec<pb::LogEntry>>>,
    /// The next sequence number.
    next_seq: AtomicU64,
}

/// The service: runs are only relays.
#[derive(Debug)]
struct NoopService {
    /// The runs prepared and not ended, by run id.
    relays: Mutex<HashMap<String, Arc<Relay>>>,
    /// Slots of each relay.
    relay_capacity: usize,
}

impl NoopService {
    /// The relay of `run`, if it is prepared and not ended.
    fn relay(&self, run: &str) -> Option<Arc<Relay>> {
        self.relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(run)
            .cloned()
    }
}

/// What `FollowRun` returns.
type FollowStream = Pin<Box<dyn Stream<Item = Result<pb::FollowRunResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::logging_service_server::LoggingService for NoopService {
    type FollowRunStream = FollowStream;
    type SearchRunsStream = futures::stream::Empty<Result<pb::SearchRunsResponse, Status>>;
    type DownloadObjectStream = futures::stream::Empty<Result<pb::DownloadObjectResponse, Status>>;

    async fn get_server_info(
        &self,
        _request: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::GetServerInfoResponse>, Status> {
        Ok(Response::new(pb::GetServerInfoResponse::default()))
    }

    async fn prepare_run(
        &self,
        request: Request<pb::PrepareRunRequest>,
    ) -> Result<Response<pb::PrepareRunResponse>, Status> {
        let run = request
            .into_inner()
            .metadata
            .map(|metadata| metadata.run_id)
            .unwrap_or_default();
        self.relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(run)
            .or_insert_with(|| {
                Arc::new(Relay {
                    entries: broadcast::channel(self.relay_capacity).0,
                    next_seq: AtomicU64::new(1),
                })
            });
        Ok(Response::new(pb::PrepareRunResponse {
            created: true,
            ..Default::default()
        }))
    }

    async fn get_run(
        &self,
        _request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        Err(Status::unimplemented("the no-op server keeps no runs"))
    }

    async fn list_runs(
        &self,
        _request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        Ok(Response::new(pb::ListRunsResponse::default()))
    }

    async fn update_run_state(
        &self,
        request: Request<pb::UpdateRunStateRequest>,
    ) -> Result<Response<pb::UpdateRunStateResponse>, Status> {
        let request = request.into_inner();
        let terminal = request
            .patch
            .and_then(|patch| patch.status)
            .is_some_and(|status| status >= pb::RunStatus::Completed as i32);
        if terminal {
            // Dropping the sender ends the followers once they drained it.
            self.relays
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&request.run_id);
        }
        Ok(Response::new(pb::UpdateRunStateResponse::default()))
    }

    async fn append_logs(
        &self,
        request: Request<Streaming<pb::AppendLogsRequest>>,
    ) -> Result<Response<pb::AppendLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut relay = None;
        let mut run_id = String::new();
        let mut stored = 0u64;
        let mut last_writer_seq = 0;
        while let Some(message) = stream.message().await? {
            if let Some(open) = message.open {
                relay = self.relay(&open.run_id);
                run_id = open.run_id;
            }
            stored += message.items.len() as u64;
            last_writer_seq = message
                .items
                .last()
                .map_or(last_writer_seq, |item| item.writer_seq);
            if let Some(relay) = relay
                .as_ref()
                .filter(|relay| relay.entries.receiver_count() > 0)
            {
                let first = relay
                    .next_seq
                    .fetch_add(message.items.len() as u64, Ordering::Relaxed);
                let entries = (first..)
                    .zip(message.items)
                    .map(|(seq, item)| to_entry(&run_id, seq, item))
                    .collect();
                let _ = relay.entries.send(Arc::new(entries));
            }
        }
        Ok(Response::new(pb::AppendLogsResponse {
            summary: None,
            stored_count: stored,
            duplicate_count: 0,
            last_writer_seq,
        }))
    }

    async fn search_runs(
        &self,
        _request: Request<pb::SearchRunsRequest>,
    ) -> Result<Response<Self::SearchRunsStream>, Status> {
        Err(Status::unimplemented("the no-op server keeps no runs"))
    }

    async fn collect_runs(
        &self,
        _request: Request<pb::CollectRunsRequest>,
    ) -> Result<Response<pb::CollectRunsResponse>, Status> {
        Err(Status::unimplemented("the no-op server keeps no runs"))
    }

    async fn get_writer_cursor(
        &self,
        _request: Request<pb::GetWriterCursorRequest>,
    ) -> Result<Response<pb::GetWriterCursorResponse>, Status> {
        Ok(Response::new(pb::GetWriterCursorResponse::default()))
    }

    async fn follow_run(
        &self,
        request: Request<pb::FollowRunRequest>,
    ) -> Result<Response<Self::FollowRunStream>, Status> {
        let run = request.into_inner().run_id;
        let relay = self
            .relay(&run)
            .ok_or_else(|| Status::not_found(format!("run `{run}` is not prepared")))?;
        let mut entries = relay.entries.subscribe();
        drop(relay);
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let response = match entries.recv().await {
                    Ok(batch) => Ok(pb::FollowRunResponse {
                        next_seq: batch.last().map_or(0, entry_seq) + 1,
                        entries: batch.as_ref().clone(),
                        state: None,
                    }),
                    Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(missed)) => Err(
                        Status::resource_exhausted(format!("the follower lagged by {missed}")),
                    ),
                };
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn upload_object(
        &self,
        _request: Request<Streaming<pb::UploadObjectRequest>>,
    ) -> Result<Response<pb::UploadObjectResponse>, Status> {
        Err(Status::unimplemented("the no-op server keeps no objects"))
    }

    async fn get_upload_status(
        &self,
        _request: Request<pb::GetUploadStatusRequest>,
    ) -> Result<Response<pb::GetUploadStatusResponse>, Status> {
        Err(Status::unimplemented("the no-op server keeps no objects"))
    }

    async fn download_object(
        &self,
        _request: Request<pb::DownloadObjectRequest>,
    ) -> Result<Response<Self::DownloadObjectStream>, Status> {
        Err(Status::unimplemented("the no-op server keeps no objects"))
    }

    async fn list_objects(
        &self,
        _request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        Err(Status::unimplemented("the no-op server keeps no objects"))
    }

    async fn reserve_checkpoint(
        &self,
        _request: Request<pb::ReserveCheckpointRequest>,
    ) -> Result<Response<pb::ReserveCheckpointResponse>, Status> {
        Err(Status::unimplemented(
            "the no-op server keeps no checkpoints",
        ))
    }

    async fn commit_checkpoint(
        &self,
        _request: Request<pb::CommitCheckpointRequest>,
    ) -> Result<Response<pb::CommitCheckpointResponse>, Status> {
        Err(Status::unimplemented(
            "the no-op server keeps no checkpoints",
        ))
    }
}

/// An appended item as the entry a follower gets, with the same fields
/// baa-logd fills in (run, step, time), so that a response costs the same
/// to encode and to decode as baa-logd's.
fn to_entry(run_id: &str, seq: u64, item: pb::AppendItem) -> pb::LogEntry {
    let (channel, text) = match item.payload {
        Some(Payload::Stderr(chunk)) => (pb::StreamLogChannel::Stderr, chunk.text),
        Some(Payload::Stdout(chunk)) => (pb::StreamLogChannel::Stdout, chunk.text),
        _ => (pb::StreamLogChannel::Stdout, String::new()),
    };
    pb::LogEntry {
        entry: Some(Entry::Chunk(pb::StreamChunkLogEntry {
            task_id: "bench".to_owned(),
            step_id: "step".to_owned(),
            run_id: run_id.to_owned(),
            seq,
            channel: channel.into(),
            created_at: "2026-01-01T00:00:00.000Z".to_owned(),
            text,
        })),
    }
}

/// The sequence number of an entry.
fn entry_seq(entry: &pb::LogEntry) -> u64 {
    match &entry.entry {
        Some(Entry::Chunk(chunk)) => chunk.seq,
        Some(Entry::Lifecycle(event)) => event.seq,
        None => 0,
    }
}
