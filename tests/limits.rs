//! Limits that protect the server: each refused with `RESOURCE_EXHAUSTED`
//! naming the limit and its value (or, for the write rate, paced), with the
//! server up and other runs unaffected.

use std::time::{Duration, Instant};

use baa_logd::ServerConfig;
use baa_logging::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, follow_request, open, prepare, stdout, writer_cursor,
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
        max_batch_entries: 10,
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
        max_followers_per_run: 2,
        max_followers: 3,
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
        append_idle_timeout: Duration::from_millis(300),
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
        append_rate: 200,
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
