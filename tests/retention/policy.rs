//! What a retention pass deletes: by age, by byte budget, never a run in
//! use, and the periodic pass.

use std::time::{Duration, Instant};

use baa_logd::{ServerConfig, settings::Retention};
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::{
    LONG_AGO, MONTH, collect, dir_size, exists, finish, finished_run, listed, names, running_run,
};
use crate::util::{
    TestServer, append, assert_status, follow_request, metadata_at, more, open, prepare_request,
    stdout, writer_cursor,
};

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
                writer_id: String::new(),
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
    // A run is gone for readers once the pass retires it, a moment before
    // its directory moves to the trash: wait for both.
    while exists(&mut client, "t", "old").await || dir.path().join("t/old").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the periodic pass deletes the old run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed(&mut client).await, ["t/running", "t/young"]);
    // The configured policy also serves a pass on demand, and the counters
    // include what the periodic pass deleted.
    let reply = collect(&mut client, true, None, None).await;
    assert!(reply.runs.is_empty());
    assert_eq!(reply.deleted_runs_since_start, 1);
    server.stop().await;
}
