//! Following: history then live, filters, slow followers, the end of a run.

use std::time::Duration;

use baa_logging::pb;
use futures::StreamExt;

use crate::util::{
    TestServer, append, entry_seq, entry_text, follow_request, follow_to_end, more, open, prepare,
    set_status, stderr, stdout,
};

/// A follower gets the history, then live entries as they are appended,
/// with no gap and no duplicate at the switch, the state changes, and the
/// end of the stream once the run is terminal.
#[tokio::test]
async fn history_then_live_then_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            (1..=10).map(|n| stdout(n, &n.to_string())).collect(),
        )],
    )
    .await
    .unwrap();

    let mut stream = client
        .follow_run(follow_request("t", "r", 1, false))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first.state.as_ref().unwrap().status(),
        pb::RunStatus::Prepared
    );
    let mut seqs: Vec<u64> = first.entries.iter().map(entry_seq).collect();
    while seqs.len() < 11 {
        let response = stream.next().await.unwrap().unwrap();
        seqs.extend(response.entries.iter().map(entry_seq));
    }
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());

    // Live: each append shows up on the open stream.
    let mut writer = server.client().await;
    for round in 0..3u64 {
        let n = 11 + round;
        append(
            &mut writer,
            vec![open("t", "r", "w", vec![stdout(n, "live")])],
        )
        .await
        .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            response.entries.iter().map(entry_seq).collect::<Vec<_>>(),
            [n + 1]
        );
        assert_eq!(response.next_seq, n + 2);
    }

    set_status(&mut writer, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    let response = stream.next().await.unwrap().unwrap();
    assert_eq!(response.state.unwrap().status(), pb::RunStatus::Running);
    set_status(&mut writer, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    let response = stream.next().await.unwrap().unwrap();
    assert_eq!(response.state.unwrap().status(), pb::RunStatus::Completed);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(
        end.is_none(),
        "the stream ends by itself once the run is terminal: {end:?}"
    );
    server.stop().await;
}

/// A channel filter returns only those channels, and the cursor still
/// moves over the others; history_only ends after the stored entries.
#[tokio::test]
async fn channel_filter_and_history_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            vec![stdout(1, "o1"), stderr(2, "e1"), stdout(3, "o2")],
        )],
    )
    .await
    .unwrap();

    let mut request = follow_request("t", "r", 1, true);
    request.channels = vec![pb::WorkerLogChannel::Stderr.into()];
    let followed = follow_to_end(&mut client, request).await;
    assert!(followed.end.is_none());
    assert_eq!(followed.seqs(), [3]);
    assert_eq!(
        followed.last_next_seq, 5,
        "the cursor passes the other channels' entries"
    );

    let mut request = follow_request("t", "r", 3, true);
    request.channels = vec![
        pb::WorkerLogChannel::Stdout.into(),
        pb::WorkerLogChannel::Worker.into(),
    ];
    let followed = follow_to_end(&mut client, request).await;
    assert_eq!(followed.seqs(), [4]);
    assert_eq!(
        followed
            .entries
            .iter()
            .filter_map(entry_text)
            .collect::<Vec<_>>(),
        ["o2"]
    );

    // From past the end: nothing, and the cursor stays.
    let followed = follow_to_end(&mut client, follow_request("t", "r", 50, true)).await;
    assert!(followed.entries.is_empty());
    assert_eq!(followed.last_next_seq, 50);
    server.stop().await;
}

/// A follower that reads slowly does not hold writers back: they finish
/// while it has read little, and it then catches up from the disk with
/// every entry, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_follower_never_slows_writers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let line = "x".repeat(1000);

    let mut slow = server.client().await;
    let mut stream = slow
        .follow_run(follow_request("t", "r", 1, false))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let mut seen: Vec<u64> = first.entries.iter().map(entry_seq).collect();

    // 20,000 entries of 1 kB: far more than any buffer between the server
    // and the stalled follower.
    let messages = (0..200u64)
        .map(|batch| {
            let items = (1..=100u64)
                .map(|n| stdout(batch * 100 + n, &line))
                .collect();
            if batch == 0 {
                open("t", "r", "w", items)
            } else {
                more(items)
            }
        })
        .collect();
    let stored = tokio::time::timeout(Duration::from_secs(60), append(&mut client, messages))
        .await
        .expect("writers finish while the follower stalls")
        .unwrap();
    assert_eq!(stored.stored_count, 20_000);
    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();

    while let Some(response) = stream.next().await {
        let response = response.unwrap();
        seen.extend(response.entries.iter().map(entry_seq));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(seen, (1..=20_001).collect::<Vec<_>>());
    server.stop().await;
}
