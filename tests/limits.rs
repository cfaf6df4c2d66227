//! Limits that protect the server: each refused with `RESOURCE_EXHAUSTED`
//! naming the limit and its value (or, for the write rate, paced), with the
//! server up and other runs unaffected.

use std::time::{Duration, Instant};

use baa_logd::ServerConfig;
use baa_logging::{Limits, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use baa_logging_client::connect;

use crate::util::{
    TestServer, append, assert_status, event, follow_request, open, prepare,
    process::ServerProcess, stdout, writer_cursor,
};

/// A server over a fresh directory with `config`.
async fn server(config: ServerConfig) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), config).await;
    (dir, server)
}

/// A message with more items than `max_batch_entries` is refused whole,
/// naming the limit; the stream's earlier messages are kept.
#[tokio::test]
async fn a_batch_over_max_batch_entries_is_refused_by_name() {
    let (_dir, server) = server(ServerConfig {
        limits: Limits {
            max_batch_entries: 10,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let small: Vec<_> = (1..=10).map(|n| stdout(n, "ok\n")).collect();
    let big: Vec<_> = (11..=21).map(|n| stdout(n, "too many\n")).collect();
    let result = append(
        &mut client,
        vec![open("t", "r", "w", small), crate::util::more(big)],
    )
    .await;
    assert_status(result, Code::ResourceExhausted, "max_batch_entries (10)");
    let cursor = writer_cursor(&mut client, "t", "r", "w").await;
    assert_eq!(cursor.last_writer_seq, 10, "the first message was stored");
    server.stop().await;
}

/// Followers over `max_followers_per_run` or `max_followers` are refused by
/// name; a follower that goes away frees its place; other runs are
/// unaffected by one run's cap.
#[tokio::test]
async fn followers_over_their_caps_are_refused_by_name() {
    let (_dir, server) = server(ServerConfig {
        limits: Limits {
            max_followers_per_run: 2,
            max_followers: 3,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    for run in ["a", "b", "c"] {
        prepare(&mut client, "t", run).await;
    }
    let open_follow = |run: &'static str| {
        let mut client = client.clone();
        async move { client.follow_run(follow_request("t", run, 1, false)).await }
    };
    let a1 = open_follow("a").await.unwrap();
    let _a2 = open_follow("a").await.unwrap();
    let third = open_follow("a").await;
    assert_status(third, Code::ResourceExhausted, "max_followers_per_run (2)");
    let _b1 = open_follow("b").await.unwrap();
    let fourth = open_follow("c").await;
    assert_status(fourth, Code::ResourceExhausted, "max_followers (3)");
    drop(a1);
    // The place frees once the server notices the stream is gone.
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(stream) = open_follow("c").await {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed follower frees its place");
    server.stop().await;
}

/// An Append stream that sends nothing for `append_idle_timeout` is closed
/// with `DEADLINE_EXCEEDED`; what it sent is kept.
#[tokio::test]
async fn an_idle_append_stream_is_closed_and_keeps_what_it_sent() {
    let (_dir, server) = server(ServerConfig {
        limits: Limits {
            append_idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(open(
        "t",
        "r",
        "w",
        vec![stdout(1, "one\n"), stdout(2, "two\n")],
    ))
    .await
    .unwrap();
    // The sender stays open and silent.
    let result = client
        .append_logs(ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner);
    assert_status(result, Code::DeadlineExceeded, "append_idle_timeout");
    drop(tx);
    let run = client
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: "r".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.run.unwrap().summary.unwrap().stdout_chunk_count, 2);
    server.stop().await;
}

/// Writers of a run over `append_rate` are slowed down to it, not refused:
/// every entry is stored, and it takes at least as long as the rate says.
#[tokio::test]
async fn a_run_over_its_append_rate_is_paced_not_refused() {
    let (_dir, server) = server(ServerConfig {
        limits: Limits {
            append_rate: 200,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let started = Instant::now();
    // 200 go at once (the burst), the next 300 take 1.5 s at 200 a second.
    let messages = (0..50)
        .map(|batch| {
            let items = (1..=10).map(|n| stdout(batch * 10 + n, "x\n")).collect();
            if batch == 0 {
                open("t", "r", "w", items)
            } else {
                crate::util::more(items)
            }
        })
        .collect();
    let response = append(&mut client, messages).await.unwrap();
    assert_eq!(response.stored_count, 500);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "paced: {:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// What `GetServerInfo` reports is what the server and its store enforce,
/// in the `baa-logd` binary with limits from its flags: an entry, event
/// data and a batch exactly at each limit are stored, one byte or item
/// over is refused naming the limit.
#[tokio::test]
async fn server_info_reports_the_limits_the_store_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_args(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-entry-bytes",
            "1000",
            "--max-data-bytes",
            "300",
            "--max-batch-entries",
            "7",
        ],
    );
    let mut client = connect(server.url()).await.unwrap();
    let info = client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            info.max_entry_bytes,
            info.max_data_bytes,
            info.max_batch_entries
        ),
        (1000, 300, 7)
    );
    assert_eq!(
        info.max_message_bytes,
        Limits::default().max_message_bytes as u64
    );
    let entry_limit = info.max_entry_bytes as usize;
    let data_limit = info.max_data_bytes as usize;
    prepare(&mut client, "t", "r").await;

    let at_limit: Vec<_> = (1..=info.max_batch_entries)
        .map(|n| stdout(n, &"x".repeat(entry_limit)))
        .collect();
    append(&mut client, vec![open("t", "r", "w", at_limit)])
        .await
        .unwrap();
    let over = vec![stdout(8, &"x".repeat(entry_limit + 1))];
    let result = append(&mut client, vec![open("t", "r", "w", over)]).await;
    assert_status(result, Code::ResourceExhausted, "max_entry_bytes (1000)");

    // `{"k":"…"}` is 8 bytes of JSON around the value.
    let data = |len: usize| {
        let mut data = prost_types::Struct::default();
        data.fields.insert(
            "k".into(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("d".repeat(len - 8))),
            },
        );
        Some(data)
    };
    let started = pb::WorkerLifecycleEventType::WorkerStarted;
    let at_limit = vec![event(8, started, "at", data(data_limit))];
    append(&mut client, vec![open("t", "r", "w", at_limit)])
        .await
        .unwrap();
    let over = vec![event(9, started, "over", data(data_limit + 1))];
    let result = append(&mut client, vec![open("t", "r", "w", over)]).await;
    assert_status(result, Code::ResourceExhausted, "max_data_bytes (300)");

    let too_many: Vec<_> = (9..=9 + info.max_batch_entries)
        .map(|n| stdout(n, "y"))
        .collect();
    let result = append(&mut client, vec![open("t", "r", "w", too_many)]).await;
    assert_status(result, Code::ResourceExhausted, "max_batch_entries (7)");
    assert_eq!(
        writer_cursor(&mut client, "t", "r", "w")
            .await
            .last_writer_seq,
        8
    );
}
