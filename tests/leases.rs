//! Worker leases: a `running` run whose worker is gone fails by itself
//! once no append stream of it has been open for the lease, with a
//! lifecycle entry that says why; a writer that comes back after that may
//! still deliver what it has and set the final status, once.

use std::time::Duration;

use baa_logd::{ServerConfig, settings::Leases};
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use prost_types::value::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, follow_request, follow_to_end, more, open, prepare,
    process::{cli_binary, server_binary},
    set_status, stdout,
};

/// The lease the tests run with.
const LEASE: Duration = Duration::from_secs(1);

/// How long a test waits for what a lease makes happen, at most.
const PATIENCE: Duration = Duration::from_secs(15);

/// A server configuration with worker leases of `lease` (zero: off).
fn with_lease(lease: Duration) -> ServerConfig {
    ServerConfig {
        leases: Leases {
            worker_lease: lease,
            ..Leases::default()
        },
        ..ServerConfig::default()
    }
}

/// A run's current state.
async fn state(client: &mut LoggingClient, task: &str, run: &str) -> pb::RunStateSnapshot {
    client
        .get_run(pb::GetRunRequest {
            task_id: task.into(),
            run_id: run.into(),
        })
        .await
        .expect("the run")
        .into_inner()
        .run
        .and_then(|run| run.state)
        .expect("a state")
}

/// Polls until the run has `status`, for at most [`PATIENCE`].
async fn wait_for(
    client: &mut LoggingClient,
    task: &str,
    run: &str,
    status: pb::RunStatus,
) -> pb::RunStateSnapshot {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = state(client, task, run).await;
        if state.status == status as i32 {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task}/{run} is still {:?}, not {status:?}",
            state.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every entry of a run, read to its end.
async fn entries(client: &mut LoggingClient, task: &str, run: &str) -> Vec<pb::LogEntry> {
    follow_to_end(client, follow_request(task, run, 1, true))
        .await
        .entries
}

/// The lifecycle entries among `entries`.
fn lifecycle(entries: &[pb::LogEntry]) -> Vec<&pb::WorkerLifecycleLogEntry> {
    entries
        .iter()
        .filter_map(|entry| match entry.entry.as_ref() {
            Some(pb::log_entry::Entry::Lifecycle(event)) => Some(event),
            _ => None,
        })
        .collect()
}

/// A field of a lifecycle entry's data, as text (numbers printed).
fn data(event: &pb::WorkerLifecycleLogEntry, field: &str) -> Option<String> {
    let value = event.data.as_ref()?.fields.get(field)?;
    match value.kind.as_ref()? {
        Kind::StringValue(text) => Some(text.clone()),
        Kind::NumberValue(number) => Some(number.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The lifecycle entries of `entries` whose data has `reason`.
fn with_reason<'a>(
    entries: &'a [pb::LogEntry],
    reason: &str,
) -> Vec<&'a pb::WorkerLifecycleLogEntry> {
    lifecycle(entries)
        .into_iter()
        .filter(|event| data(event, "reason").as_deref() == Some(reason))
        .collect()
}

/// Prepares `t/run` and moves it to `running`.
async fn running(client: &mut LoggingClient, run: &str) {
    prepare(client, "t", run).await;
    set_status(client, "t", run, pb::RunStatus::Running)
        .await
        .expect("running");
}

/// Sets the final status of `t/run` as `writer`.
async fn finish_as(
    client: &mut LoggingClient,
    run: &str,
    writer: &str,
    status: pb::RunStatus,
) -> Result<pb::RunStateSnapshot, tonic::Status> {
    client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: "t".into(),
            run_id: run.into(),
            writer_id: writer.into(),
            patch: Some(pb::RunStatePatch {
                status: Some(status.into()),
                exit_code: Some(0),
                ..Default::default()
            }),
        })
        .await
        .map(|response| response.into_inner().state.expect("state"))
}

/// A run whose only append stream is dropped fails once the lease runs
/// out: the state says the worker was lost, the expiry's entry is on the
/// worker channel with its reason, and a follower started before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_stream_dropped_fails_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    let info = client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.worker_lease_ms, 1000);
    running(&mut client, "r").await;
    let mut follower_client = server.client().await;
    let follower = tokio::spawn(async move {
        follow_to_end(&mut follower_client, follow_request("t", "r", 1, false)).await
    });
    let (tx, rx) = mpsc::channel(4);
    tx.send(open("t", "r", "w", vec![stdout(1, "working\n")]))
        .await
        .unwrap();
    let mut writer_client = server.client().await;
    let writer =
        tokio::spawn(async move { writer_client.append_logs(ReceiverStream::new(rx)).await });
    while state(&mut client, "t", "r").await.last_event_seq < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The writer goes away without closing its stream.
    writer.abort();
    drop(tx);
    let failed = wait_for(&mut client, "t", "r", pb::RunStatus::Failed).await;
    assert!(
        failed
            .summary()
            .starts_with("worker lost: no writer for 1s"),
        "{failed:?}"
    );
    assert!(!failed.finished_at().is_empty());
    let stored = entries(&mut client, "t", "r").await;
    let expired = with_reason(&stored, "worker_lease_expired");
    assert_eq!(expired.len(), 1, "{stored:?}");
    let event = expired[0];
    assert_eq!(
        event.r#type,
        pb::WorkerLifecycleEventType::StepFailed as i32
    );
    assert_eq!(event.level, pb::LogLevel::Error as i32);
    assert_eq!(data(event, "leaseMs").as_deref(), Some("1000"));
    assert_eq!(data(event, "lastWriter").as_deref(), Some("w"));
    assert!(
        event.message.starts_with("worker lost"),
        "{}",
        event.message
    );
    let followed = tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("the follower ends")
        .unwrap();
    assert!(followed.end.is_none(), "{followed:?}");
    assert_eq!(
        followed.states.last().map(|state| state.status),
        Some(pb::RunStatus::Failed as i32)
    );
    assert_eq!(followed.entries.len(), stored.len());
    server.stop().await;
}

/// A stream held open with heartbeat messages keeps its run running past
/// several leases; once it closes, the run fails after one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_run_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    running(&mut client, "r").await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(open("t", "r", "w", vec![stdout(1, "start\n")]))
        .await
        .unwrap();
    let mut writer_client = server.client().await;
    let writer =
        tokio::spawn(async move { writer_client.append_logs(ReceiverStream::new(rx)).await });
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tx.send(more(Vec::new())).await.unwrap();
    }
    let alive = state(&mut client, "t", "r").await;
    assert_eq!(alive.status, pb::RunStatus::Running as i32, "{alive:?}");
    drop(tx);
    let response = writer.await.unwrap().expect("the stream ends well");
    assert_eq!(response.into_inner().last_writer_seq, 1);
    wait_for(&mut client, "t", "r", pb::RunStatus::Failed).await;
    server.stop().await;
}

/// `baa-log exec` killed with SIGKILL while its command prints: once the
/// lease runs out the run is failed, with the expiry's entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_fails_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    // The command ends by itself once its output pipe breaks.
    let script = "while true; do echo x; sleep 0.1; done";
    let mut child = tokio::process::Command::new(cli_binary())
        .args([
            "exec", "--task", "t", "--run", "r", "--", "sh", "-c", script,
        ])
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env_remove("BAA_LOG_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout_log = dir.path().join("t/r/stdout.log");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&stdout_log).is_ok_and(|text| text.contains('x')) {
        assert!(tokio::time::Instant::now() < deadline, "no output stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        state(&mut client, "t", "r").await.status,
        pb::RunStatus::Running as i32
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let failed = wait_for(&mut client, "t", "r", pb::RunStatus::Failed).await;
    assert!(failed.summary().starts_with("worker lost"), "{failed:?}");
    let stored = entries(&mut client, "t", "r").await;
    assert_eq!(with_reason(&stored, "worker_lease_expired").len(), 1);
    server.stop().await;
}

/// A run left `running` without a writer across a restart gets a fresh
/// lease from the restart and fails once it runs out; the lease-failed
/// mark survives a second restart, so its writer may still finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_across_a_restart_fails_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), with_lease(Duration::ZERO)).await;
    let mut client = server.client().await;
    running(&mut client, "r").await;
    append(
        &mut client,
        vec![open("t", "r", "w", vec![stdout(1, "a\n")])],
    )
    .await
    .unwrap();
    server.stop().await;

    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    assert_eq!(
        state(&mut client, "t", "r").await.status,
        pb::RunStatus::Running as i32
    );
    wait_for(&mut client, "t", "r", pb::RunStatus::Failed).await;
    let stored = entries(&mut client, "t", "r").await;
    let expired = with_reason(&stored, "worker_lease_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(data(expired[0], "lastWriter"), None);
    server.stop().await;

    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    let late = vec![open("t", "r", "w", vec![stdout(2, "b\n")])];
    append(&mut client, late).await.expect("a late append");
    let done = finish_as(&mut client, "r", "w", pb::RunStatus::Completed)
        .await
        .expect("the final status");
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    server.stop().await;
}

/// A writer cut off past its lease comes back: it appends the rest and
/// sets `completed`, and the run's entries tell the story in order; a
/// writer that never appended, and a second final status, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_back_after_its_lease_delivers_late_and_finishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), with_lease(LEASE)).await;
    let mut client = server.client().await;
    running(&mut client, "r").await;
    append(
        &mut client,
        vec![open("t", "r", "w", vec![stdout(1, "one\n")])],
    )
    .await
    .unwrap();
    wait_for(&mut client, "t", "r", pb::RunStatus::Failed).await;

    let stranger = vec![open("t", "r", "x", vec![stdout(1, "no\n")])];
    assert_status(
        append(&mut client, stranger).await,
        Code::FailedPrecondition,
        "worker lease expired",
    );
    let late = vec![
        open("t", "r", "w", vec![stdout(2, "two\n")]),
        more(vec![stdout(3, "three\n")]),
    ];
    let response = append(&mut client, late).await.expect("a late append");
    assert_eq!(response.last_writer_seq, 3);
    assert_status(
        finish_as(&mut client, "r", "x", pb::RunStatus::Completed).await,
        Code::FailedPrecondition,
        "writer `x` had not",
    );
    assert_status(
        set_status(&mut client, "t", "r", pb::RunStatus::Completed).await,
        Code::FailedPrecondition,
        "names no writer",
    );
    let done = finish_as(&mut client, "r", "w", pb::RunStatus::Completed)
        .await
        .expect("the final status");
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    assert_eq!(done.exit_code, Some(0));
    assert_status(
        finish_as(&mut client, "r", "w", pb::RunStatus::Failed).await,
        Code::FailedPrecondition,
        "terminal",
    );
    // The lease is not held by the finished run any more.
    tokio::time::sleep(LEASE * 2).await;
    let stored = entries(&mut client, "t", "r").await;
    let seqs: Vec<u64> = stored.iter().map(crate::util::entry_seq).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    let story: Vec<(i32, Option<String>)> = lifecycle(&stored)
        .into_iter()
        .map(|event| (event.r#type, data(event, "reason")))
        .collect();
    use pb::WorkerLifecycleEventType as Type;
    let reason = |text: &str| Some(text.to_owned());
    assert_eq!(
        story,
        [
            (Type::RunPrepared as i32, None),
            (Type::StepFailed as i32, reason("worker_lease_expired")),
            (
                Type::WorkerExecutionDeferred as i32,
                reason("worker_returned_late")
            ),
            (Type::StepCompleted as i32, reason("worker_returned_late")),
        ]
    );
    let texts: Vec<&str> = stored.iter().filter_map(crate::util::entry_text).collect();
    assert_eq!(texts, ["one\n", "two\n", "three\n"]);
    let settled = lifecycle(&stored).pop().unwrap();
    assert_eq!(data(settled, "lateEntries").as_deref(), Some("2"));
    let now = state(&mut client, "t", "r").await;
    assert_eq!(now.status, pb::RunStatus::Completed as i32);
    assert_eq!(now.last_event_seq, stored.len() as u64);
    server.stop().await;
}

/// A worker lease that is not a duration stops the server at start with
/// a message naming the setting; `0` and `off` turn leases off.
#[test]
fn a_bad_worker_lease_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |lease: &str| {
        std::process::Command::new(server_binary())
            .args(["--listen", "127.0.0.1:0", "--worker-lease", lease])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--print-config"])
            .output()
            .expect("baa-logd runs")
    };
    let bad = run("abc");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("worker_lease") && stderr.contains("\"abc\""),
        "{stderr}"
    );
    for (lease, shown) in [("500ms", "\"500ms\""), ("0", "\"off\""), ("off", "\"off\"")] {
        let good = run(lease);
        assert!(good.status.success(), "{good:?}");
        let config = String::from_utf8_lossy(&good.stdout);
        assert!(
            config.contains(&format!("worker_lease = {shown}")),
            "{config}"
        );
    }
}
