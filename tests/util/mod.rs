//! Helpers shared by the end-to-end tests: a real server on `127.0.0.1:0`
//! over a real data directory, in this process or as a `baa-logd` process,
//! and small builders for requests.

#![allow(dead_code, unreachable_pub)]

pub mod contract;
pub mod disk;
pub mod metrics;
pub mod nats_cluster;
pub mod process;

use std::{net::SocketAddr, path::Path, sync::Arc};

use baa_logd::ServerConfig;
use baa_logging::pb::{self, append_item::Payload};
use baa_logging_client::{LoggingClient, connect};
use baa_logging_store::{LocalStore, LocalStoreOptions};
use futures::StreamExt;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, Status};

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server over a data directory, with the default limits.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, ServerConfig::default()).await
    }

    /// Starts a server over a data directory with these limits.
    pub async fn start_with(data_dir: &Path, config: ServerConfig) -> Self {
        // The store enforces the very limits the server reports.
        let options = LocalStoreOptions {
            limits: config.limits.clone(),
            objects: config.objects.limits(),
            ..LocalStoreOptions::new(data_dir)
        };
        let store = LocalStore::open(options).expect("store opens");
        Self::start_with_store(data_dir, store, config).await
    }

    /// Starts a server over a store opened by the test, with these limits.
    pub async fn start_with_store(
        data_dir: &Path,
        store: LocalStore,
        config: ServerConfig,
    ) -> Self {
        let store = Arc::new(store);
        // Bind before spawning, so that the tests need no sleep.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            baa_logd::run(listener, store, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            addr,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new client connection.
    pub async fn client(&self) -> LoggingClient {
        connect(format!("http://{}", self.addr))
            .await
            .expect("connects")
    }

    /// A typed client (the client crate's) of this server.
    pub async fn typed_client(&self) -> baa_logging_client::Client {
        baa_logging_client::Client::connect(format!("http://{}", self.addr))
            .await
            .expect("connects")
    }

    /// Shuts the server down gracefully and waits until it stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.task
            .take()
            .expect("running")
            .await
            .expect("server task");
    }
}

/// Run metadata for a test run.
pub fn metadata(task: &str, run: &str) -> pb::RunMetadataInput {
    metadata_at(task, run, "2026-01-02T03:04:05.000Z")
}

/// Run metadata for a test run created at `created_at`.
pub fn metadata_at(task: &str, run: &str, created_at: &str) -> pb::RunMetadataInput {
    pb::RunMetadataInput {
        task_id: task.into(),
        step_id: "step-1".into(),
        step_name: "Build".into(),
        run_id: run.into(),
        worker_kind: "shell".into(),
        attempt: 1,
        repo_root: "/repo".into(),
        worktree_path: "/repo/.worktrees/step-1".into(),
        created_at: created_at.into(),
        checkpoint_mode: "none".into(),
        prompt_summary: Some("build it".into()),
        command: None,
    }
}

/// Prepares a run and returns the response.
pub async fn prepare(client: &mut LoggingClient, task: &str, run: &str) -> pb::PrepareRunResponse {
    client
        .prepare_run(prepare_request(metadata(task, run)))
        .await
        .expect("prepare")
        .into_inner()
}

/// A prepare request for this metadata.
pub fn prepare_request(metadata: pb::RunMetadataInput) -> pb::PrepareRunRequest {
    pb::PrepareRunRequest {
        metadata: Some(metadata),
        state: Some(pb::RunStateSnapshotInput {
            attempt: 1,
            started_at: "2026-01-02T03:04:06.000Z".into(),
            checkpoint_seq: None,
            summary: None,
        }),
    }
}

/// A stdout item.
pub fn stdout(writer_seq: u64, text: &str) -> pb::AppendItem {
    pb::AppendItem {
        writer_seq,
        payload: Some(Payload::Stdout(pb::StreamChunkInput {
            text: text.into(),
            created_at: None,
        })),
    }
}

/// A stderr item.
pub fn stderr(writer_seq: u64, text: &str) -> pb::AppendItem {
    pb::AppendItem {
        writer_seq,
        payload: Some(Payload::Stderr(pb::StreamChunkInput {
            text: text.into(),
            created_at: None,
        })),
    }
}

/// A lifecycle event item.
pub fn event(
    writer_seq: u64,
    event_type: pb::WorkerLifecycleEventType,
    message: &str,
    data: Option<prost_types::Struct>,
) -> pb::AppendItem {
    pb::AppendItem {
        writer_seq,
        payload: Some(Payload::Event(pb::WorkerLifecycleEventInput {
            r#type: event_type.into(),
            level: pb::LogLevel::Info.into(),
            message: message.into(),
            created_at: None,
            data,
        })),
    }
}

/// The opening message of an append stream.
pub fn open(
    task: &str,
    run: &str,
    writer: &str,
    items: Vec<pb::AppendItem>,
) -> pb::AppendLogsRequest {
    pb::AppendLogsRequest {
        open: Some(pb::AppendOpen {
            worker_lease_ms: 0,
            task_id: task.into(),
            run_id: run.into(),
            writer_id: writer.into(),
        }),
        items,
        mask_values: Vec::new(),
    }
}

/// A later message of an append stream.
pub fn more(items: Vec<pb::AppendItem>) -> pb::AppendLogsRequest {
    pb::AppendLogsRequest {
        open: None,
        items,
        mask_values: Vec::new(),
    }
}

/// Sends these messages as one append stream.
pub async fn append(
    client: &mut LoggingClient,
    messages: Vec<pb::AppendLogsRequest>,
) -> Result<pb::AppendLogsResponse, Status> {
    client
        .append_logs(futures::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

/// What a run holds from a writer.
pub async fn writer_cursor(
    client: &mut LoggingClient,
    task: &str,
    run: &str,
    writer: &str,
) -> pb::GetWriterCursorResponse {
    client
        .get_writer_cursor(pb::GetWriterCursorRequest {
            task_id: task.into(),
            run_id: run.into(),
            writer_id: writer.into(),
        })
        .await
        .expect("a cursor")
        .into_inner()
}

/// Moves a run's state.
pub async fn set_status(
    client: &mut LoggingClient,
    task: &str,
    run: &str,
    status: pb::RunStatus,
) -> Result<pb::RunStateSnapshot, Status> {
    client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: task.into(),
            run_id: run.into(),
            writer_id: String::new(),
            patch: Some(pb::RunStatePatch {
                status: Some(status.into()),
                ..Default::default()
            }),
        })
        .await
        .map(|response| response.into_inner().state.expect("state"))
}

/// A follow request from `from_seq`.
pub fn follow_request(
    task: &str,
    run: &str,
    from_seq: u64,
    history_only: bool,
) -> pb::FollowRunRequest {
    pb::FollowRunRequest {
        task_id: task.into(),
        run_id: run.into(),
        from_seq,
        channels: Vec::new(),
        history_only,
        ..Default::default()
    }
}

/// What a follow stream delivered until it ended.
#[derive(Debug, Default)]
pub struct Followed {
    pub entries: Vec<pb::LogEntry>,
    pub states: Vec<pb::RunStateSnapshot>,
    pub last_next_seq: u64,
    pub end: Option<Status>,
}

impl Followed {
    /// The sequence numbers delivered, in order.
    pub fn seqs(&self) -> Vec<u64> {
        self.entries.iter().map(entry_seq).collect()
    }
}

/// Follows until the stream ends by itself.
pub async fn follow_to_end(client: &mut LoggingClient, request: pb::FollowRunRequest) -> Followed {
    let mut stream = client
        .follow_run(request)
        .await
        .expect("follow")
        .into_inner();
    let mut followed = Followed::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(response) => {
                followed.entries.extend(response.entries);
                followed.states.extend(response.state);
                followed.last_next_seq = response.next_seq;
            }
            Err(status) => {
                followed.end = Some(status);
                break;
            }
        }
    }
    followed
}

/// The sequence number of an entry.
pub fn entry_seq(entry: &pb::LogEntry) -> u64 {
    match entry.entry.as_ref().expect("entry set") {
        pb::log_entry::Entry::Lifecycle(entry) => entry.seq,
        pb::log_entry::Entry::Chunk(entry) => entry.seq,
    }
}

/// The text of a chunk entry.
pub fn entry_text(entry: &pb::LogEntry) -> Option<&str> {
    match entry.entry.as_ref().expect("entry set") {
        pb::log_entry::Entry::Chunk(chunk) => Some(&chunk.text),
        pb::log_entry::Entry::Lifecycle(_) => None,
    }
}

/// Asserts a call failed with `code` and a message containing `needle`.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} does not mention {needle:?}",
        status.message()
    );
}

/// The JSON lines of a file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("readable");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends with a torn line",
        path.display()
    );
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}
