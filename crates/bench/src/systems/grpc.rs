//! `baa-logd` and the transport ceiling over the generated stubs: one
//! `AppendLogs` stream per writer, one `FollowRun` stream per follower.
//!
//! This is the "raw stubs" way of driving baa-logd: the harness builds each
//! `AppendLogsRequest` itself, one per batch of lines that are ready.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use baa_logging::pb::{
    self, append_item::Payload, log_entry::Entry, logging_service_client::LoggingServiceClient,
};
use tempfile::TempDir;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming, transport::Channel};

use super::Delivered;
use crate::{
    error::{BenchError, Context, Result},
    payload::{self, LineShape},
    process::ServerProcess,
};

/// The task id every benchmark run belongs to.
const TASK_ID: &str = "bench";

/// Requests an append stream keeps queued before the writer waits.
const APPEND_QUEUE: usize = 4;

/// A gRPC server started for one phase.
#[derive(Debug)]
pub(crate) struct GrpcSystem {
    /// The process.
    server: ServerProcess,
    /// Its data directory, removed when the phase ends; `None` when the
    /// workload keeps it (or the server stores nothing).
    _data_dir: Option<TempDir>,
    /// Its writers go through the client crate's `RunWriter`, not the raw
    /// stubs.
    pub(crate) via_client: bool,
}

impl GrpcSystem {
    /// Starts `baa-logd` over a fresh data directory.
    pub(crate) async fn start_baa_logd(program: &Path, extra: &[&str]) -> Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("baa-bench-")
            .tempdir()
            .map_err(|err| BenchError::io("cannot create a data directory", err))?;
        let mut args = baa_logd_args(data_dir.path());
        args.extend(extra.iter().map(OsString::from));
        let server = ServerProcess::start(program, args).await?;
        Ok(Self {
            server,
            _data_dir: Some(data_dir),
            via_client: false,
        })
    }

    /// Starts `baa-logd` over `data_dir`, which the caller keeps (a
    /// workload that restarts the server over the same runs), with
    /// `extra` flags after the usual ones.
    pub(crate) async fn start_baa_logd_in(
        program: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<Self> {
        let mut args = baa_logd_args(data_dir);
        args.extend(extra.iter().map(OsString::from));
        let server = ServerProcess::start(program, args).await?;
        Ok(Self {
            server,
            _data_dir: None,
            via_client: false,
        })
    }

    /// The server's address, for a gRPC channel.
    pub(crate) fn url(&self) -> String {
        self.server.url()
    }

    /// Starts the harness's no-op server, its relays holding
    /// `relay_capacity` messages.
    pub(crate) async fn start_noop(bench: &Path, relay_capacity: usize) -> Result<Self> {
        let args = vec![
            "noop-server".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--relay-capacity".into(),
            relay_capacity.to_string().into(),
        ];
        let server = ServerProcess::start(bench, args).await?;
        Ok(Self {
            server,
            _data_dir: None,
            via_client: false,
        })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// A new HTTP/2 connection.
    pub(crate) async fn connect(&self) -> Result<Channel> {
        connect(&self.server.url()).await
    }

    /// Prepares `run` and moves it to `running`.
    pub(crate) async fn prepare_run(&self, channel: Channel, run: &str) -> Result<()> {
        let mut client = client(channel);
        client
            .prepare_run(prepare_request(run))
            .await
            .context(format!("PrepareRun {run}"))?;
        client
            .update_run_state(state_request(run, pb::RunStatus::Running))
            .await
            .context(format!("UpdateRunState {run} running"))?;
        Ok(())
    }

    /// Completes `run`: its followers end once they have every entry.
    pub(crate) async fn end_run(&self, channel: Channel, run: &str) -> Result<()> {
        client(channel)
            .update_run_state(state_request(run, pb::RunStatus::Completed))
            .await
            .context(format!("UpdateRunState {run} completed"))?;
        Ok(())
    }

    /// Stops the server with SIGTERM.
    pub(crate) async fn stop(self) -> Result<()> {
        self.server.terminate().await
    }
}

/// The flags `baa-logd` gets: loopback, a free port, this data directory.
pub(crate) fn baa_logd_args(data_dir: &Path) -> Vec<OsString> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
    ]
}

/// Opens a channel to `url`.
pub(crate) async fn connect(url: &str) -> Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .context("bad url")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .context(format!("cannot connect to {url}"))
}

/// A client on `channel` with no message size limit on replies.
pub(crate) fn client(channel: Channel) -> LoggingServiceClient<Channel> {
    LoggingServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// A `PrepareRun` request for a benchmark run.
pub(crate) fn prepare_request(run: &str) -> pb::PrepareRunRequest {
    pb::PrepareRunRequest {
        metadata: Some(pb::RunMetadataInput {
            task_id: TASK_ID.into(),
            step_id: "step".into(),
            step_name: "bench".into(),
            run_id: run.into(),
            worker_kind: "shell".into(),
            attempt: 1,
            repo_root: "/bench".into(),
            worktree_path: "/bench".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            checkpoint_mode: "none".into(),
            prompt_summary: None,
            command: None,
        }),
        state: Some(pb::RunStateSnapshotInput {
            attempt: 1,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            checkpoint_seq: None,
            summary: None,
        }),
    }
}

/// An `UpdateRunState` request that moves `run` to `status`.
pub(crate) fn state_request(run: &str, status: pb::RunStatus) -> pb::UpdateRunStateRequest {
    pb::UpdateRunStateRequest {
        task_id: TASK_ID.into(),
        run_id: run.into(),
        writer_id: String::new(),
        patch: Some(pb::RunStatePatch {
            status: Some(status.into()),
            ..Default::default()
        }),
    }
}

/// A `FollowRun` request for `run` from its first entry.
pub(crate) fn follow_request(run: &str) -> pb::FollowRunRequest {
    pb::FollowRunRequest {
        task_id: TASK_ID.into(),
        run_id: run.into(),
        from_seq: 1,
        channels: Vec::new(),
        history_only: false,
        ..Default::default()
    }
}

/// A `GetRun` request for a benchmark run.
pub(crate) fn get_run_request(run: &str) -> pb::GetRunRequest {
    pb::GetRunRequest {
        task_id: TASK_ID.into(),
        run_id: run.into(),
    }
}

/// The paths of a run's three channel files, as `GetRun` names them (the
/// harness runs on the server's machine, so they can be read directly).
pub(crate) fn channel_files(targets: Option<&pb::LocalRunLogTargets>) -> Vec<PathBuf> {
    let Some(targets) = targets else {
        return Vec::new();
    };
    [&targets.worker, &targets.stdout, &targets.stderr]
        .into_iter()
        .flatten()
        .map(|target| PathBuf::from(&target.file_path))
        .collect()
}

/// A `SearchRuns` request for the literal `literal` in every run of the
/// benchmark's task, or in `run` alone, stopping after `max_matches`.
pub(crate) fn search_request(
    literal: &str,
    run: Option<&str>,
    max_matches: u32,
) -> pb::SearchRunsRequest {
    pb::SearchRunsRequest {
        pattern: literal.into(),
        literal: true,
        task_id: TASK_ID.into(),
        run_id: run.unwrap_or_default().into(),
        max_matches,
        ..Default::default()
    }
}

// === impl StubsWriter ===

/// One `AppendLogs` stream: each batch of lines is one request.
#[derive(Debug)]
pub(crate) struct StubsWriter {
    /// The stream's requests.
    requests: mpsc::Sender<pb::AppendLogsRequest>,
    /// The call, which answers once the stream is closed.
    call: JoinHandle<Result<pb::AppendLogsResponse, Status>>,
    /// The writer sequence number of the next line.
    next_writer_seq: u64,
}

impl StubsWriter {
    /// Opens the stream and sends its `open` message.
    pub(crate) async fn open(channel: Channel, run: &str, writer_id: &str) -> Result<Self> {
        Self::open_masking(channel, run, writer_id, Vec::new()).await
    }

    /// Opens the stream with an `open` message that registers
    /// `mask_values` for the server to mask.
    pub(crate) async fn open_masking(
        channel: Channel,
        run: &str,
        writer_id: &str,
        mask_values: Vec<String>,
    ) -> Result<Self> {
        let (requests, queue) = mpsc::channel(APPEND_QUEUE);
        let open = pb::AppendLogsRequest {
            open: Some(pb::AppendOpen {
                worker_lease_ms: 0,
                task_id: TASK_ID.into(),
                run_id: run.into(),
                writer_id: writer_id.into(),
            }),
            items: Vec::new(),
            mask_values,
        };
        requests
            .send(open)
            .await
            .map_err(|_| BenchError::Failed("the append queue closed".to_owned()))?;
        let mut client = client(channel);
        let call = tokio::spawn(async move {
            client
                .append_logs(ReceiverStream::new(queue))
                .await
                .map(tonic::Response::into_inner)
        });
        Ok(Self {
            requests,
            call,
            next_writer_seq: 1,
        })
    }

    /// Sends `lines` as one request.
    pub(crate) async fn send(&mut self, lines: Vec<String>) -> Result<()> {
        let items = lines
            .into_iter()
            .map(|text| {
                let writer_seq = self.next_writer_seq;
                self.next_writer_seq += 1;
                pb::AppendItem {
                    writer_seq,
                    payload: Some(Payload::Stdout(pb::StreamChunkInput {
                        text,
                        created_at: None,
                    })),
                }
            })
            .collect();
        if self
            .requests
            .send(pb::AppendLogsRequest {
                open: None,
                items,
                mask_values: Vec::new(),
            })
            .await
            .is_err()
        {
            // The call ended early: its status says why.
            return Err(match (&mut self.call).await {
                Ok(Err(status)) => BenchError::failed("AppendLogs failed", status),
                _ => BenchError::Failed("AppendLogs ended early".to_owned()),
            });
        }
        Ok(())
    }

    /// Sends `lines` payload lines of `shape`, counting them in `sent` as
    /// they go.
    pub(crate) async fn send_lines(
        &mut self,
        lines: u64,
        shape: LineShape,
        sent: &AtomicU64,
    ) -> Result<()> {
        let mut done = 0u64;
        while done < lines {
            let take = (shape.per_batch.max(1) as u64).min(lines - done);
            let now = payload::now_micros();
            let batch = (done..done + take).map(|i| shape.line(now, i)).collect();
            self.send(batch).await?;
            done += take;
            sent.fetch_add(take, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Closes the stream and returns how many lines the server stored.
    pub(crate) async fn finish(self) -> Result<u64> {
        drop(self.requests);
        let response = self
            .call
            .await
            .context("the append task failed")?
            .context("AppendLogs failed")?;
        Ok(response.stored_count)
    }
}

// === impl ClientWriter ===

/// A writer through the client crate's `RunWriter`: the handle workers use,
/// which batches what it is given by size and time (its defaults), on a
/// connection of its own.
#[derive(Debug)]
pub(crate) struct ClientWriter {
    /// The handle.
    writer: baa_logging_client::RunWriter,
    /// Lines handed to it.
    sent: u64,
}

impl ClientWriter {
    /// Connects to `url` and opens a writer named `writer_id` on `run`.
    pub(crate) async fn open(url: &str, run: &str, writer_id: &str) -> Result<Self> {
        let client = baa_logging_client::Client::connect(url.to_owned())
            .await
            .map_err(|err| BenchError::Failed(format!("cannot connect to {url}: {err}")))?;
        let options = baa_logging_client::WriterOptions {
            writer_id: Some(writer_id.to_owned()),
            ..baa_logging_client::WriterOptions::default()
        };
        let writer = client
            .writer(baa_logging_client::RunKey::new(TASK_ID, run), options)
            .await
            .map_err(|err| BenchError::Failed(format!("cannot open a RunWriter: {err}")))?;
        Ok(Self { writer, sent: 0 })
    }

    /// Hands `lines` to the writer, one stdout chunk each.
    pub(crate) async fn send(&mut self, lines: Vec<String>) -> Result<()> {
        for line in lines {
            self.writer
                .stdout(line)
                .await
                .map_err(|err| BenchError::Failed(format!("RunWriter::stdout: {err}")))?;
            self.sent += 1;
        }
        Ok(())
    }

    /// Waits until the server holds every line; returns how many there
    /// were.
    pub(crate) async fn finish(self) -> Result<u64> {
        self.writer
            .flush()
            .await
            .map_err(|err| BenchError::Failed(format!("RunWriter::flush: {err}")))?;
        Ok(self.sent)
    }
}

// === impl GrpcFollower ===

/// One `FollowRun` stream.
#[derive(Debug)]
pub(crate) struct GrpcFollower {
    /// The responses.
    stream: Streaming<pb::FollowRunResponse>,
}

impl GrpcFollower {
    /// Starts following `run` from its first entry.
    pub(crate) async fn open(channel: Channel, run: &str) -> Result<Self> {
        let stream = client(channel)
            .follow_run(follow_request(run))
            .await
            .context(format!("FollowRun {run}"))?
            .into_inner();
        Ok(Self { stream })
    }

    /// The entries of the next response; `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Delivered>>> {
        let Some(response) = self.stream.message().await.context("FollowRun failed")? else {
            return Ok(None);
        };
        Ok(Some(
            response
                .entries
                .into_iter()
                .filter_map(|entry| match entry.entry? {
                    Entry::Chunk(chunk) => Some(Delivered {
                        seq: chunk.seq,
                        text: chunk.text.into_bytes(),
                    }),
                    Entry::Lifecycle(event) => Some(Delivered {
                        seq: event.seq,
                        text: Vec::new(),
                    }),
                })
                .collect(),
        ))
    }
}
