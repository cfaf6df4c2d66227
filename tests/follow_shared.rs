//! Followers that share encoded commits: many followers of one run, at
//! different points, with channel filters and ranges, get exactly what a
//! follower reading the files gets, decoded by the normal client.

use baa_logging::pb;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::util::{
    TestServer, append, event, follow_request, follow_to_end, more, open, prepare, set_status,
    stderr, stdout,
};

/// A follow request from `from_seq`, of `channels` (all when empty), up
/// to `to_seq` (no end when 0).
fn request(from_seq: u64, channels: &[pb::WorkerLogChannel], to_seq: u64) -> pb::FollowRunRequest {
    pb::FollowRunRequest {
        channels: channels.iter().map(|channel| (*channel).into()).collect(),
        to_seq,
        ..follow_request("t", "r", from_seq, false)
    }
}

/// The requests of one wave of followers, for a run whose last entry is
/// `last_seq`.
fn wave(last_seq: u64) -> Vec<pb::FollowRunRequest> {
    use pb::WorkerLogChannel::{Stderr, Stdout, Worker};
    let mut requests = Vec::new();
    for from in [1, last_seq.saturating_sub(2).max(1), last_seq + 1] {
        for _ in 0..4 {
            requests.push(request(from, &[], 0));
        }
        requests.push(request(from, &[Stderr], 0));
        requests.push(request(from, &[Stdout, Worker], 0));
        requests.push(request(from, &[], last_seq + 30));
    }
    requests
}

/// The items of the `round`th append: one to seven, of stdout, stderr or
/// both, some with a lifecycle event, from writer sequence number `next`.
fn items(round: u64, next: u64) -> Vec<pb::AppendItem> {
    (0..round % 7 + 1)
        .map(|index| {
            let seq = next + index;
            let text = format!("round {round} line {index} \"quoted\" \\ é\n");
            match (round % 4, index % 3) {
                (0, _) => stdout(seq, &text),
                (1, _) => stderr(seq, &text),
                (2, 2) => event(
                    seq,
                    pb::WorkerLifecycleEventType::StepCompleted,
                    &text,
                    None,
                ),
                (_, 1) => stderr(seq, &text),
                _ => stdout(seq, &text),
            }
        })
        .collect()
}

/// Opens follow streams for `requests` (their readers are open when this
/// returns) and collects each until it ends.
async fn start(
    server: &TestServer,
    requests: &[pb::FollowRunRequest],
) -> Vec<JoinHandle<Vec<pb::LogEntry>>> {
    let mut followers = Vec::new();
    for request in requests {
        let mut client = server.client().await;
        let mut stream = client
            .follow_run(request.clone())
            .await
            .expect("follow")
            .into_inner();
        followers.push(tokio::spawn(async move {
            let _client = client;
            let mut entries = Vec::new();
            while let Some(response) = stream.next().await {
                entries.extend(response.expect("the stream goes on").entries);
            }
            entries
        }));
    }
    followers
}

/// Live followers that take commits from memory, many at the same point,
/// others mid-commit, filtered or up to a `to_seq`, receive the very
/// entries that followers reading the files after a restart receive.
#[tokio::test]
async fn many_followers_get_what_the_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let mut requests = wave(1);
    let mut followers = start(&server, &requests).await;
    let (mut next, mut last_seq) = (1, 1);
    for burst in 0..4 {
        let mut messages = Vec::new();
        for round in burst * 10..burst * 10 + 10 {
            let batch = items(round, next);
            next += batch.len() as u64;
            last_seq += batch.len() as u64;
            messages.push(match messages.is_empty() {
                true => open("t", "r", "w", batch),
                false => more(batch),
            });
        }
        append(&mut client, messages).await.unwrap();
        let joining = wave(last_seq);
        followers.extend(start(&server, &joining).await);
        requests.extend(joining);
    }
    for status in [pb::RunStatus::Running, pb::RunStatus::Completed] {
        set_status(&mut client, "t", "r", status).await.unwrap();
    }
    let mut live = Vec::new();
    for follower in followers {
        live.push(follower.await.unwrap());
    }
    server.stop().await;

    // After a restart nothing is in memory: the files are read.
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for (request, live) in requests.into_iter().zip(live) {
        let history = pb::FollowRunRequest {
            history_only: true,
            ..request.clone()
        };
        let stored = follow_to_end(&mut client, history).await;
        assert!(stored.end.is_none(), "{:?}", stored.end);
        assert!(!stored.entries.is_empty() || request.from_seq > last_seq);
        assert_eq!(live, stored.entries, "a follower of {request:?}");
    }
    server.stop().await;
}
