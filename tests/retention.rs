//! Retention against a real server and real files: which runs `CollectRuns`
//! and the periodic pass delete, in which order, what they never touch, and
//! `baa-log gc` as a user runs it.
//!
//! Runs are made old without waiting: they finish with a `finished_at` in
//! the past (the patch of `UpdateRunState` takes one), which is the time
//! retention measures age from.

use std::{
    path::Path,
    process::Output,
    sync::Arc,
    time::{Duration, Instant},
};

use baa_logd::{Security, ServerConfig, security::TokenSet, settings::Retention};
use baa_logging::pb;
use baa_logging_client::{ConnectOptions, LoggingClient};
use futures::StreamExt;
use tokio::{process::Command, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, follow_request, metadata_at, more, open, prepare_request,
    process::cli_binary, set_status, stdout, writer_cursor,
};

/// Thirty days, the age most tests collect at.
const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// Long ago: every run created or finished then is older than [`MONTH`].
const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";

/// Prepares a run created long ago, moves it to `running`, and writes
/// `bytes` bytes of stdout to it.
async fn running_run(client: &mut LoggingClient, task: &str, run: &str, bytes: usize) {
    client
        .prepare_run(prepare_request(metadata_at(task, run, LONG_AGO)))
        .await
        .unwrap();
    set_status(client, task, run, pb::RunStatus::Running)
        .await
        .unwrap();
    if bytes > 0 {
        let items = vec![stdout(1, &"x".repeat(bytes))];
        append(client, vec![open(task, run, "w", items)])
            .await
            .unwrap();
    }
}

/// Makes a run `completed`, finished at `finished_at` (RFC 3339), or now
/// when `None`.
async fn finish(client: &mut LoggingClient, task: &str, run: &str, finished_at: Option<&str>) {
    client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: task.into(),
            run_id: run.into(),
            patch: Some(pb::RunStatePatch {
                status: Some(pb::RunStatus::Completed.into()),
                finished_at: finished_at.map(Into::into),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// A run that finished at `finished_at` with `bytes` bytes of stdout.
async fn finished_run(
    client: &mut LoggingClient,
    task: &str,
    run: &str,
    finished_at: Option<&str>,
    bytes: usize,
) {
    running_run(client, task, run, bytes).await;
    finish(client, task, run, finished_at).await;
}

/// Calls `CollectRuns`.
async fn collect(
    client: &mut LoggingClient,
    dry_run: bool,
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
) -> pb::CollectRunsResponse {
    client
        .collect_runs(pb::CollectRunsRequest {
            dry_run,
            max_age: max_age.map(|age| age.try_into().unwrap()),
            max_bytes,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The runs of a reply, as `task/run`, in its order.
fn names(reply: &pb::CollectRunsResponse) -> Vec<String> {
    reply
        .runs
        .iter()
        .map(|run| format!("{}/{}", run.task_id, run.run_id))
        .collect()
}

/// The sum of the sizes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Whether `GetRun` finds the run.
async fn exists(client: &mut LoggingClient, task: &str, run: &str) -> bool {
    let request = pb::GetRunRequest {
        task_id: task.into(),
        run_id: run.into(),
    };
    match client.get_run(request).await {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("GetRun failed: {status:?}"),
    }
}

/// Every run `ListRuns` returns, as `task/run`, sorted.
async fn listed(client: &mut LoggingClient) -> Vec<String> {
    let page = client
        .list_runs(pb::ListRunsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut runs: Vec<String> = page
        .runs
        .iter()
        .map(|run| {
            let metadata = run.metadata.as_ref().unwrap();
            format!("{}/{}", metadata.task_id, metadata.run_id)
        })
        .collect();
    runs.sort();
    runs
}

/// Terminal runs older than the age go, oldest first; a dry run lists the
/// same runs and deletes nothing; afterwards the deleted runs are gone from
/// disk, from GetRun, ListRuns, FollowRun, UpdateRunState and the writer
/// RPCs, while young, running and prepared runs (however old) stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_deletes_old_finished_runs_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    finished_run(&mut client, "t", "b", Some("2020-02-02T00:00:00Z"), 100).await;
    finished_run(&mut client, "t", "a", Some("2020-01-02T00:00:00Z"), 200).await;
    finished_run(&mut client, "u", "c", Some("2020-03-02T00:00:00+01:00"), 0).await;
    finished_run(&mut client, "t", "young", None, 0).await;
    running_run(&mut client, "t", "running", 10).await;
    client
        .prepare_run(prepare_request(metadata_at("t", "prepared", LONG_AGO)))
        .await
        .unwrap();
    let sizes: Vec<u64> = ["t/a", "t/b", "u/c"]
        .iter()
        .map(|run| dir_size(&dir.path().join(run)))
        .collect();
    let everything_before = dir_size(dir.path());

    let would = collect(&mut client, true, Some(MONTH), None).await;
    assert!(would.dry_run);
    assert_eq!(names(&would), ["t/a", "t/b", "u/c"]);
    assert_eq!(
        would.runs.iter().map(|run| run.bytes).collect::<Vec<_>>(),
        sizes
    );
    assert!(
        would
            .runs
            .iter()
            .all(|run| run.reason() == pb::CollectReason::MaxAge
                && run.status() == pb::RunStatus::Completed)
    );
    assert_eq!(would.runs[0].finished_at, "2020-01-02T00:00:00.000Z");
    assert_eq!(would.runs[2].finished_at, "2020-03-01T23:00:00.000Z");
    assert_eq!(would.deleted_bytes, sizes.iter().sum::<u64>());
    assert_eq!(would.total_bytes_before, everything_before);
    assert_eq!(
        would.deleted_runs_since_start, 0,
        "a dry run counts nothing"
    );
    for run in ["t/a", "t/b", "u/c"] {
        assert!(dir.path().join(run).join("meta.json").is_file());
    }
    assert_eq!(listed(&mut client).await.len(), 6);

    let deleted = collect(&mut client, false, Some(MONTH), None).await;
    assert!(!deleted.dry_run);
    assert_eq!(deleted.runs, would.runs, "the dry run told the truth");
    assert_eq!(deleted.deleted_runs_since_start, 3);
    assert_eq!(deleted.deleted_bytes_since_start, would.deleted_bytes);
    assert_eq!(
        deleted.total_bytes_after,
        everything_before - deleted.deleted_bytes
    );
    assert!(!dir.path().join("t/a").exists());
    assert!(!dir.path().join("t/b").exists());
    assert!(
        !dir.path().join("u").exists(),
        "its last run took the task along"
    );
    assert_eq!(dir_size(dir.path()), deleted.total_bytes_after);
    for (task, run) in [("t", "a"), ("t", "b"), ("u", "c")] {
        assert!(!exists(&mut client, task, run).await, "{task}/{run}");
        let follow = client.follow_run(follow_request(task, run, 1, true)).await;
        assert_status(follow, Code::NotFound, run);
        let cursor = client
            .get_writer_cursor(pb::GetWriterCursorRequest {
                task_id: task.into(),
                run_id: run.into(),
                writer_id: "w".into(),
            })
            .await;
        assert_status(cursor, Code::NotFound, run);
        let finished = client
            .update_run_state(pb::UpdateRunStateRequest {
                task_id: task.into(),
                run_id: run.into(),
                patch: Some(pb::RunStatePatch {
                    summary: Some("late".into()),
                    ..Default::default()
                }),
            })
            .await;
        assert_status(finished, Code::NotFound, run);
        let items = vec![stdout(2, "late\n")];
        assert_status(
            append(&mut client, vec![open(task, run, "w", items)]).await,
            Code::NotFound,
            run,
        );
    }
    assert_eq!(
        listed(&mut client).await,
        ["t/prepared", "t/running", "t/young"]
    );

    let again = collect(&mut client, false, Some(MONTH), None).await;
    assert!(again.runs.is_empty(), "nothing more is due");
    assert_eq!(again.deleted_runs_since_start, 3);

    // A deleted run can be prepared again, as a new run.
    let prepared = client
        .prepare_run(prepare_request(metadata_at("t", "a", LONG_AGO)))
        .await
        .unwrap()
        .into_inner();
    assert!(prepared.created);
    server.stop().await;
}

/// Over the byte budget, the oldest terminal runs go until all runs fit,
/// and no more; a budget of 0 takes every terminal run and never a
/// running one, whose bytes still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_budget_deletes_oldest_first_until_everything_fits() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    // Finished in an order that is not the order of creation nor of ids.
    for (run, finished_at) in [
        ("r3", "2024-01-03T00:00:00Z"),
        ("r1", "2024-01-01T00:00:00Z"),
        ("r4", "2024-01-04T00:00:00Z"),
        ("r2", "2024-01-02T00:00:00Z"),
    ] {
        finished_run(&mut client, "t", run, Some(finished_at), 10_000).await;
    }
    running_run(&mut client, "t", "running", 50_000).await;
    let size = |run: &str| dir_size(&dir.path().join("t").join(run));
    let total = dir_size(dir.path());
    let budget = total - size("r1") - size("r2");

    let would = collect(&mut client, true, None, Some(budget)).await;
    assert_eq!(names(&would), ["t/r1", "t/r2"]);
    let deleted = collect(&mut client, false, None, Some(budget)).await;
    assert_eq!(deleted.runs, would.runs);
    assert!(
        deleted
            .runs
            .iter()
            .all(|run| run.reason() == pb::CollectReason::MaxBytes)
    );
    assert_eq!(deleted.total_bytes_before, total);
    assert_eq!(deleted.total_bytes_after, budget);
    assert_eq!(dir_size(dir.path()), budget);
    assert!(
        collect(&mut client, false, None, Some(budget))
            .await
            .runs
            .is_empty()
    );

    let rest = collect(&mut client, false, None, Some(0)).await;
    assert_eq!(names(&rest), ["t/r3", "t/r4"]);
    assert_eq!(rest.total_bytes_after, size("running"));
    assert!(
        rest.total_bytes_after > 50_000,
        "the running run still counts"
    );
    assert_eq!(listed(&mut client).await, ["t/running"]);
    server.stop().await;
}

/// A run that is not terminal is never deleted, and neither is a terminal
/// one with an open stream: an Append stream still open when the run
/// finished, or a Follow stream still sending its history. Each goes once
/// its stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_runs_and_runs_with_open_streams_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        follow_batch_bytes: 16 * 1024,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    running_run(&mut client, "t", "running", 0).await;

    // A writer's stream is open when the run is marked finished.
    running_run(&mut client, "t", "appending", 0).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(open("t", "appending", "w2", vec![stdout(1, "one\n")]))
        .await
        .unwrap();
    let mut writer = server.client().await;
    let appending = tokio::spawn(async move { writer.append_logs(ReceiverStream::new(rx)).await });
    let started = Instant::now();
    while writer_cursor(&mut client, "t", "appending", "w2")
        .await
        .last_writer_seq
        < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the append stream stores"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    finish(&mut client, "t", "appending", Some(LONG_AGO)).await;

    // A follower reads 2 MB of history through a small window, slowly.
    let chunk = "y".repeat(32 * 1024);
    running_run(&mut client, "t", "followed", 0).await;
    let items: Vec<pb::AppendItem> = (1..=64).map(|seq| stdout(seq, &chunk)).collect();
    let mut messages = vec![open("t", "followed", "w", Vec::new())];
    messages.extend(items.chunks(8).map(|items| more(items.to_vec())));
    append(&mut client, messages).await.unwrap();
    finish(&mut client, "t", "followed", Some(LONG_AGO)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let mut slow = pb::logging_service_client::LoggingServiceClient::new(channel);
    let mut follow = slow
        .follow_run(follow_request("t", "followed", 1, false))
        .await
        .unwrap()
        .into_inner();
    let first = follow.next().await.unwrap().unwrap();
    assert!(!first.entries.is_empty());

    let everything = |client: &mut LoggingClient, dry_run| {
        let mut client = client.clone();
        async move { collect(&mut client, dry_run, Some(Duration::ZERO), Some(0)).await }
    };
    let would = everything(&mut client, true).await;
    assert!(would.runs.is_empty(), "{:?}", names(&would));
    assert_eq!(would.kept_open_count, 2);
    let kept = everything(&mut client, false).await;
    assert!(kept.runs.is_empty(), "{:?}", names(&kept));
    assert_eq!(kept.kept_open_count, 2);
    for run in ["running", "appending", "followed"] {
        assert!(exists(&mut client, "t", run).await);
    }

    // The writer closes its stream: the reply comes after the server let go.
    drop(tx);
    let reply = appending.await.unwrap().unwrap().into_inner();
    assert_eq!(reply.stored_count, 1);
    let deleted = everything(&mut client, false).await;
    assert_eq!(names(&deleted), ["t/appending"]);
    assert_eq!(deleted.kept_open_count, 1);

    // The follower goes away: the server notices, then lets go.
    drop(follow);
    let started = Instant::now();
    loop {
        let pass = everything(&mut client, false).await;
        if names(&pass) == ["t/followed"] {
            break;
        }
        assert_eq!(pass.kept_open_count, 1, "{:?}", names(&pass));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower's stream ends"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(exists(&mut client, "t", "running").await);
    assert!(dir.path().join("t/running/meta.json").is_file());
    server.stop().await;
}

/// With a policy configured, the server deletes due runs by itself, every
/// interval, and counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_pass_deletes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        retention: Retention {
            max_age: Some(MONTH),
            max_bytes: None,
            interval: Duration::from_millis(50),
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    running_run(&mut client, "t", "running", 10).await;
    finished_run(&mut client, "t", "young", None, 10).await;
    finished_run(&mut client, "t", "old", Some(LONG_AGO), 10).await;
    let started = Instant::now();
    while exists(&mut client, "t", "old").await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the periodic pass deletes the old run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dir.path().join("t/old").exists());
    assert_eq!(listed(&mut client).await, ["t/running", "t/young"]);
    // The configured policy also serves a pass on demand, and the counters
    // include what the periodic pass deleted.
    let reply = collect(&mut client, true, None, None).await;
    assert!(reply.runs.is_empty());
    assert_eq!(reply.deleted_runs_since_start, 1);
    server.stop().await;
}

/// Without a limit from the request or the configuration, and with a
/// negative age, `CollectRuns` refuses and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_runs_refuses_without_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    finished_run(&mut client, "t", "old", Some(LONG_AGO), 0).await;
    let request = pb::CollectRunsRequest::default();
    assert_status(
        client.collect_runs(request).await,
        Code::FailedPrecondition,
        "max_age",
    );
    let request = pb::CollectRunsRequest {
        max_age: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_status(
        client.collect_runs(request).await,
        Code::InvalidArgument,
        "max_age",
    );
    assert!(exists(&mut client, "t", "old").await);
    server.stop().await;
}

/// `CollectRuns` needs the `admin` scope: a `write` token is refused, an
/// `admin` one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_runs_needs_the_admin_scope() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"workers\"\nscopes = [\"write\", \"read\"]\nsecret = \"write-secret-0123456789\"\n\n\
         [[tokens]]\nname = \"ops\"\nscopes = [\"admin\"]\nsecret = \"admin-secret-0123456789\"\n",
    )
    .unwrap();
    let config = ServerConfig {
        security: Security {
            tls: None,
            tokens: Some(Arc::new(TokenSet::load(&tokens).unwrap())),
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(&dir.path().join("runs"), config).await;
    let connect = |token: &str| ConnectOptions::new(format!("http://{}", server.addr)).token(token);
    let mut writer = connect("write-secret-0123456789").connect().await.unwrap();
    let request = pb::CollectRunsRequest {
        dry_run: true,
        max_bytes: Some(0),
        ..Default::default()
    };
    assert_status(
        writer.collect_runs(request).await,
        Code::PermissionDenied,
        "admin",
    );
    let mut admin = connect("admin-secret-0123456789").connect().await.unwrap();
    assert!(
        collect(&mut admin, true, None, Some(0))
            .await
            .runs
            .is_empty()
    );
    server.stop().await;
}

/// Runs `baa-log` with `args` against `server`.
async fn baa_log(server: &TestServer, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .args(args)
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env_remove("BAA_LOG_TOKEN")
        .output()
        .await
        .expect("baa-log runs")
}

/// `baa-log gc --dry-run` prints the runs due, oldest first, and says that
/// nothing was deleted, which is true; `baa-log gc` then deletes them; and
/// without any limit it fails, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_dry_run_shows_what_would_go_and_gc_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    finished_run(
        &mut client,
        "nightly",
        "second",
        Some("2020-05-02T00:00:00Z"),
        2048,
    )
    .await;
    finished_run(
        &mut client,
        "nightly",
        "first",
        Some("2020-05-01T00:00:00Z"),
        10,
    )
    .await;
    finished_run(&mut client, "nightly", "today", None, 10).await;
    running_run(&mut client, "nightly", "running", 10).await;

    let output = baa_log(&server, &["gc", "--dry-run", "--max-age", "30d"]).await;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for header in ["TASK", "RUN", "STATUS", "FINISHED", "SIZE", "REASON"] {
        assert!(lines[0].contains(header), "{text}");
    }
    assert!(lines[1].starts_with("nightly  first "), "{text}");
    assert!(lines[1].contains("completed") && lines[1].contains("2020-05-01T00:00:00.000Z"));
    assert!(lines[2].starts_with("nightly  second"), "{text}");
    assert!(
        lines[2].contains("KiB") && lines[2].contains("max_age"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("dry run: 2 runs,") && lines[3].contains("nothing was deleted"),
        "{text}"
    );
    assert!(dir.path().join("nightly/first/meta.json").is_file());
    assert!(dir.path().join("nightly/second/meta.json").is_file());

    let output = baa_log(&server, &["gc", "--max-age", "30d"]).await;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.lines().last().unwrap().starts_with("deleted 2 runs,"),
        "{text}"
    );
    assert!(!dir.path().join("nightly/first").exists());
    assert!(!dir.path().join("nightly/second").exists());
    assert_eq!(
        listed(&mut client).await,
        ["nightly/running", "nightly/today"]
    );

    let output = baa_log(&server, &["gc", "--dry-run", "--max-age", "30d"]).await;
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("dry run: no run is due; nothing was deleted"),
        "{text}"
    );

    let output = baa_log(&server, &["gc"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("FAILED_PRECONDITION") && stderr.contains("max_age"),
        "{stderr}"
    );
    server.stop().await;
}
