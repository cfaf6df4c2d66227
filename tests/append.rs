//! Appending: one sequence across channels, idempotent re-sends, several
//! writers at once.

use std::time::Instant;

use baa_logging::pb;
use prost_types::{Struct, Value, value::Kind};
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, event, follow_request, follow_to_end, json_lines, more,
    open, prepare, set_status, stderr, stdout, writer_cursor,
};

/// A struct value from JSON-ish parts.
fn data() -> Struct {
    let value = |kind| Value { kind: Some(kind) };
    Struct {
        fields: [
            ("exitCode".to_owned(), value(Kind::NumberValue(3.0))),
            ("ratio".to_owned(), value(Kind::NumberValue(0.5))),
            ("ok".to_owned(), value(Kind::BoolValue(false))),
            ("none".to_owned(), value(Kind::NullValue(0))),
            ("name".to_owned(), value(Kind::StringValue("ünï ☃".into()))),
            (
                "list".to_owned(),
                value(Kind::ListValue(prost_types::ListValue {
                    values: vec![
                        value(Kind::NumberValue(1.0)),
                        value(Kind::StringValue("two".into())),
                    ],
                })),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

/// Entries of all three channels share one gap-free sequence in arrival
/// order; the server fills createdAt, eventId and renderedLine; the files
/// hold the contract's JSON.
#[tokio::test]
async fn one_sequence_across_all_three_channels() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let response = append(
        &mut client,
        vec![
            open(
                "t",
                "r",
                "w",
                vec![event(
                    1,
                    pb::WorkerLifecycleEventType::WorkerStarted,
                    "go",
                    Some(data()),
                )],
            ),
            more(vec![stdout(2, "out 1\n"), stderr(3, "err 1\n")]),
            more(vec![stdout(4, "out 2\n")]),
            more(vec![event(
                5,
                pb::WorkerLifecycleEventType::WorkerExited,
                "done",
                None,
            )]),
        ],
    )
    .await
    .unwrap();
    let summary = response.summary.unwrap();
    assert_eq!(response.stored_count, 5);
    assert_eq!(response.last_writer_seq, 5);
    assert_eq!(
        (
            summary.total_entries,
            summary.last_seq,
            summary.lifecycle_event_count,
            summary.stdout_chunk_count,
            summary.stderr_chunk_count
        ),
        (6, 6, 3, 2, 1)
    );

    let run_dir = dir.path().join("t/r");
    let worker = json_lines(&run_dir.join("worker.log"));
    let out = json_lines(&run_dir.join("stdout.log"));
    let err = json_lines(&run_dir.join("stderr.log"));
    let seqs = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .map(|line| line["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&worker), [1, 2, 6]);
    assert_eq!(seqs(&out), [3, 5]);
    assert_eq!(seqs(&err), [4]);

    let started = &worker[1];
    assert_eq!(started["type"], "worker_started");
    assert_eq!(started["taskId"], "t");
    assert_eq!(started["stepId"], "step-1");
    assert_eq!(
        started["data"]["exitCode"], 3,
        "integral numbers stay integers"
    );
    assert_eq!(started["data"]["ratio"], 0.5);
    assert_eq!(started["data"]["name"], "ünï ☃");
    assert!(started["data"]["none"].is_null());
    assert_eq!(started["data"]["list"], serde_json::json!([1, "two"]));
    let created_at = started["createdAt"].as_str().unwrap();
    assert_eq!(created_at.len(), 24, "toISOString form: {created_at}");
    assert!(created_at.ends_with('Z'));
    assert!(!started["eventId"].as_str().unwrap().is_empty());
    assert_ne!(started["eventId"], worker[2]["eventId"]);
    let rendered = started["renderedLine"].as_str().unwrap();
    assert!(rendered.starts_with(created_at), "{rendered}");
    assert!(
        rendered.contains("INFO") && rendered.contains("worker_started") && rendered.contains("go")
    );
    assert!(rendered.contains(r#""exitCode":3"#), "{rendered}");
    assert_eq!(out[0]["text"], "out 1\n");
    assert_eq!(out[0]["channel"], "stdout");
    assert_eq!(err[0]["channel"], "stderr");

    // Followers get the same, with structured data round-tripped.
    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(followed.seqs(), [1, 2, 3, 4, 5, 6]);
    let pb::log_entry::Entry::Lifecycle(lifecycle) = followed.entries[1].entry.clone().unwrap()
    else {
        panic!("seq 2 is an event")
    };
    assert_eq!(lifecycle.data.unwrap(), data());
    server.stop().await;
}

/// A client-supplied createdAt is kept, in toISOString form; a bad one is
/// INVALID_ARGUMENT.
#[tokio::test]
async fn created_at_is_kept_and_normalized() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let mut item = stdout(1, "x");
    if let Some(pb::append_item::Payload::Stdout(chunk)) = &mut item.payload {
        chunk.created_at = Some("2026-05-06T09:08:07.5+02:00".into());
    }
    append(&mut client, vec![open("t", "r", "w", vec![item])])
        .await
        .unwrap();
    let out = json_lines(&dir.path().join("t/r/stdout.log"));
    assert_eq!(out[0]["createdAt"], "2026-05-06T07:08:07.500Z");

    let mut bad = stdout(2, "y");
    if let Some(pb::append_item::Payload::Stdout(chunk)) = &mut bad.payload {
        chunk.created_at = Some("last tuesday".into());
    }
    assert_status(
        append(&mut client, vec![open("t", "r", "w", vec![bad])]).await,
        Code::InvalidArgument,
        "RFC 3339",
    );
    server.stop().await;
}

/// Items a run already holds from a writer are skipped and counted, never
/// stored twice; GetWriterCursor tells the writer where it stands.
#[tokio::test]
async fn resent_items_are_skipped_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let first = append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            (1..=5).map(|n| stdout(n, &format!("{n}\n"))).collect(),
        )],
    )
    .await
    .unwrap();
    assert_eq!((first.stored_count, first.duplicate_count), (5, 0));
    let cursor = writer_cursor(&mut client, "t", "r", "w").await;
    assert_eq!((cursor.last_writer_seq, cursor.last_seq), (5, 6));

    // Re-send 3..=8: 3, 4, 5 are held already.
    let second = append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            (3..=8).map(|n| stdout(n, &format!("{n}\n"))).collect(),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        (
            second.stored_count,
            second.duplicate_count,
            second.last_writer_seq
        ),
        (3, 3, 8)
    );
    let texts: Vec<String> = json_lines(&dir.path().join("t/r/stdout.log"))
        .iter()
        .map(|line| line["text"].as_str().unwrap().trim().to_owned())
        .collect();
    assert_eq!(texts, ["1", "2", "3", "4", "5", "6", "7", "8"]);

    // Another writer has its own cursor.
    let other = writer_cursor(&mut client, "t", "r", "w2").await;
    assert_eq!(other.last_writer_seq, 0);
    server.stop().await;
}

/// A writer that skips a writer_seq is refused with FAILED_PRECONDITION
/// naming where to resume; the items before the gap are stored.
#[tokio::test]
async fn a_writer_sequence_gap_is_refused_after_storing_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    assert_status(
        append(
            &mut client,
            vec![open(
                "t",
                "r",
                "w",
                vec![stdout(1, "a"), stdout(2, "b"), stdout(4, "d")],
            )],
        )
        .await,
        Code::FailedPrecondition,
        "re-send from 3",
    );
    let lines = json_lines(&dir.path().join("t/r/stdout.log"));
    assert_eq!(lines.len(), 2);
    server.stop().await;
}

/// An append to a terminal run is FAILED_PRECONDITION and stores nothing.
#[tokio::test]
async fn a_terminal_run_takes_no_more_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    set_status(&mut client, "t", "r", pb::RunStatus::Blocked)
        .await
        .unwrap();
    assert_status(
        append(
            &mut client,
            vec![open("t", "r", "w", vec![stdout(1, "late")])],
        )
        .await,
        Code::FailedPrecondition,
        "terminal",
    );
    assert_eq!(
        std::fs::read(dir.path().join("t/r/stdout.log"))
            .unwrap()
            .len(),
        0
    );
    server.stop().await;
}

/// Four writers append 10,000 entries each to one run at once while three
/// followers, started at different points, each see exactly the sequence
/// numbers from their start to the end, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_writers_and_three_followers_share_one_run() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 10_000;
    const BATCH: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    let total = 1 + WRITERS * PER_WRITER;

    let follower = |from: u64| {
        let server_addr = server.addr;
        tokio::spawn(async move {
            let mut client = baa_logging_client::connect(format!("http://{server_addr}"))
                .await
                .unwrap();
            (
                from,
                follow_to_end(&mut client, follow_request("t", "r", from, false)).await,
            )
        })
    };
    let mut followers = vec![follower(1)];
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server_addr = server.addr;
            tokio::spawn(async move {
                let mut client = baa_logging_client::connect(format!("http://{server_addr}"))
                    .await
                    .unwrap();
                let name = format!("w{writer}");
                let mut messages = Vec::new();
                for start in (1..=PER_WRITER).step_by(BATCH as usize) {
                    let items = (start..start + BATCH)
                        .map(|n| match n % 3 {
                            0 => stderr(n, &format!("{name} err {n}\n")),
                            1 => stdout(n, &format!("{name} out {n}\n")),
                            _ => event(
                                n,
                                pb::WorkerLifecycleEventType::StepPrepared,
                                &format!("{name} {n}"),
                                None,
                            ),
                        })
                        .collect();
                    messages.push(if start == 1 {
                        open("t", "r", &name, items)
                    } else {
                        crate::util::more(items)
                    });
                }
                append(&mut client, messages).await.unwrap()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    followers.push(follower(5_000));
    for writer in writers {
        let response = writer.await.unwrap();
        assert_eq!(response.stored_count, PER_WRITER);
    }
    let elapsed = started.elapsed();
    followers.push(follower(20_000));
    set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    eprintln!(
        "4 writers x {PER_WRITER} entries: {:.0} entries/s ({elapsed:?})",
        (WRITERS * PER_WRITER) as f64 / elapsed.as_secs_f64()
    );

    for follower in followers {
        let (from, followed) = follower.await.unwrap();
        assert!(
            followed.end.is_none(),
            "follower from {from} ended with {:?}",
            followed.end
        );
        let expected: Vec<u64> = (from..=total).collect();
        assert_eq!(followed.seqs(), expected, "follower from {from}");
        assert_eq!(
            followed.states.last().unwrap().status(),
            pb::RunStatus::Completed
        );
    }
    // Each writer's items are in its own order.
    let lines = json_lines(&dir.path().join("t/r/stdout.log"));
    for writer in 0..WRITERS {
        let prefix = format!("w{writer} out ");
        let numbers: Vec<u64> = lines
            .iter()
            .filter_map(|line| {
                line["text"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(&prefix)
                    .map(|n| n.trim().parse().unwrap())
            })
            .collect();
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(numbers.len() as u64, PER_WRITER.div_ceil(3));
    }
    server.stop().await;
}
