//! Followers that stop reading: what the server holds for them is bounded
//! per follower and in all, and given back when they go.

use std::time::Duration;

use baa_logd::ServerConfig;
use baa_logging::Limits;
use baa_logging::pb::{self, logging_service_client::LoggingServiceClient};

use crate::util::{
    append, follow_request, follow_to_end, metrics::scrape, metrics::start_with_metrics, more,
    open, prepare, stdout,
};

/// The smallest response a follower gets (`follow_budget`).
const MIN_RESPONSE_BYTES: f64 = 16.0 * 1024.0;

/// The gauge of response bytes handed out and not yet taken.
const BUFFERED: &str = "baa_logd_follow_buffered_bytes";

/// Fifty followers of a 4 MiB run on one connection with small HTTP/2
/// windows never read: the response bytes waiting for them stay within the
/// configured cap plus a minimal response each (without the budget, each
/// would hold full 256 KiB batches), a follower that does read still gets
/// every entry in order, and everything is given back when they go.
#[tokio::test]
async fn followers_that_never_read_hold_a_bounded_amount() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 256 * 1024;
    let config = ServerConfig {
        limits: Limits {
            max_follow_buffer_bytes: cap,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, metrics_addr) = start_with_metrics(dir.path(), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "big").await;
    let line = "x".repeat(100);
    let batches: Vec<pb::AppendLogsRequest> = (0..40u64)
        .map(|batch| {
            let items = (1..=1000)
                .map(|n| stdout(batch * 1000 + n, &line))
                .collect();
            match batch {
                0 => open("t", "big", "w", items),
                _ => more(items),
            }
        })
        .collect();
    append(&mut client, batches).await.unwrap();
    let stored = 40_000 + 1;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_connection_window_size(256 * 1024)
        .initial_stream_window_size(32 * 1024)
        .connect()
        .await
        .unwrap();
    let followers = 50usize;
    let mut streams = Vec::new();
    for _ in 0..followers {
        let mut follower = LoggingServiceClient::new(channel.clone());
        let stream = follower
            .follow_run(follow_request("t", "big", 1, true))
            .await
            .unwrap()
            .into_inner();
        streams.push(stream);
    }
    let held = steady(metrics_addr).await;
    let bound = cap as f64 + followers as f64 * 2.0 * MIN_RESPONSE_BYTES;
    assert!(held > 0.0, "the followers were handed nothing");
    assert!(held <= bound, "{held} bytes held, over {bound}");

    // Meanwhile a follower on another connection reads every entry, in
    // order, once. (On the stalled connection it could not: the entries
    // sent to streams that are never read fill the connection's HTTP/2
    // window, which is the client's to give back.)
    let history = follow_to_end(&mut client, follow_request("t", "big", 1, true)).await;
    assert_eq!(history.seqs(), (1..=stored).collect::<Vec<_>>());

    drop(streams);
    let mut released = scrape(metrics_addr).await.value(BUFFERED);
    for _ in 0..100 {
        if released == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        released = scrape(metrics_addr).await.value(BUFFERED);
    }
    assert_eq!(
        released, 0.0,
        "bytes still counted after the followers went"
    );
}

/// The gauge once it reads 0, or after a bounded wait.
async fn released(metrics_addr: std::net::SocketAddr) -> f64 {
    let mut held = scrape(metrics_addr).await.value(BUFFERED);
    for _ in 0..100 {
        if held == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        held = scrape(metrics_addr).await.value(BUFFERED);
    }
    held
}

/// The gauge once it has stopped moving (bounded wait).
async fn steady(metrics_addr: std::net::SocketAddr) -> f64 {
    let mut last = -1.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = scrape(metrics_addr).await.value(BUFFERED);
        if now == last && now > 0.0 {
            return now;
        }
        last = now;
    }
    last
}

/// A follower that took its response and waits, caught up, for a quiet
/// run holds nothing of the budget meanwhile.
#[tokio::test]
async fn a_caught_up_follower_holds_nothing_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (server, metrics_addr) = start_with_metrics(dir.path(), ServerConfig::default()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "quiet").await;
    let items = (1..=100).map(|n| stdout(n, "a line")).collect();
    append(&mut client, vec![open("t", "quiet", "w", items)])
        .await
        .unwrap();
    let mut stream = client
        .follow_run(follow_request("t", "quiet", 1, false))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first response");
    assert_eq!(first.next_seq, 102);
    assert_eq!(
        released(metrics_addr).await,
        0.0,
        "a waiting follower still counts its response"
    );
    drop(stream);
}
