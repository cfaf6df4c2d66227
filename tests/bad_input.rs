//! Bad input: a clear status naming the problem, and nothing written.

use baa_logd::ServerConfig;
use baa_logging::{Limits, pb};
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, event, follow_request, metadata, more, open, prepare,
    prepare_request, stdout,
};

/// Ids that are empty, too long, dot names, or hold separators, NUL or
/// control characters are INVALID_ARGUMENT everywhere, and nothing reaches
/// the disk.
#[tokio::test]
async fn bad_ids_are_refused_before_they_touch_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let long = "x".repeat(129);
    let bad = [
        "",
        ".",
        "..",
        ".hidden",
        "../escape",
        "a/b",
        "a\\b",
        "a\0b",
        "a\nb",
        "a\u{1b}b",
        long.as_str(),
    ];
    for id in bad {
        for field in ["task_id", "run_id", "step_id"] {
            let mut input = metadata("task", "run");
            match field {
                "task_id" => input.task_id = id.into(),
                "run_id" => input.run_id = id.into(),
                _ => input.step_id = id.into(),
            }
            assert_status(
                client.prepare_run(prepare_request(input)).await,
                Code::InvalidArgument,
                field,
            );
        }
        assert_status(
            client
                .get_run(pb::GetRunRequest {
                    task_id: id.into(),
                    run_id: "r".into(),
                })
                .await,
            Code::InvalidArgument,
            "task_id",
        );
        assert_status(
            client
                .follow_run(follow_request("t", id, 1, true))
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            "run_id",
        );
    }
    // Only the lock the store took when it opened.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != ".lock")
        .collect();
    assert!(entries.is_empty(), "nothing written: {entries:?}");

    prepare(&mut client, "t", "r").await;
    assert_status(
        append(
            &mut client,
            vec![open("t", "r", "../w", vec![stdout(1, "x")])],
        )
        .await,
        Code::InvalidArgument,
        "writer_id",
    );
    server.stop().await;
}

/// The append stream's protocol: open first and only first, a known run,
/// items with a payload and set enums.
#[tokio::test]
async fn append_streams_must_open_first_and_carry_valid_items() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    assert_status(
        append(&mut client, vec![more(vec![stdout(1, "x")])]).await,
        Code::InvalidArgument,
        "open",
    );
    assert_status(
        append(&mut client, vec![]).await,
        Code::InvalidArgument,
        "open",
    );
    assert_status(
        append(
            &mut client,
            vec![open("t", "r", "w", vec![]), open("t", "r", "w", vec![])],
        )
        .await,
        Code::InvalidArgument,
        "only the first",
    );
    assert_status(
        append(
            &mut client,
            vec![open("t", "missing", "w", vec![stdout(1, "x")])],
        )
        .await,
        Code::NotFound,
        "t/missing",
    );
    assert_status(
        append(
            &mut client,
            vec![open(
                "t",
                "r",
                "w",
                vec![event(
                    1,
                    pb::WorkerLifecycleEventType::Unspecified,
                    "x",
                    None,
                )],
            )],
        )
        .await,
        Code::InvalidArgument,
        "event.type",
    );
    let mut no_level = event(1, pb::WorkerLifecycleEventType::WorkerStarted, "x", None);
    if let Some(pb::append_item::Payload::Event(event)) = &mut no_level.payload {
        event.level = 0;
    }
    assert_status(
        append(&mut client, vec![open("t", "r", "w", vec![no_level])]).await,
        Code::InvalidArgument,
        "event.level",
    );
    assert_status(
        append(
            &mut client,
            vec![open(
                "t",
                "r",
                "w",
                vec![pb::AppendItem {
                    writer_seq: 1,
                    payload: None,
                }],
            )],
        )
        .await,
        Code::InvalidArgument,
        "payload",
    );
    assert_status(
        append(&mut client, vec![open("t", "r", "w", vec![stdout(0, "x")])]).await,
        Code::InvalidArgument,
        "writer_seq",
    );
    // Only the server records `run_prepared`, as seq 1 of every run.
    let prepared = event(
        1,
        pb::WorkerLifecycleEventType::RunPrepared,
        "prepared again",
        None,
    );
    assert_status(
        append(&mut client, vec![open("t", "r", "w", vec![prepared])]).await,
        Code::InvalidArgument,
        "run_prepared event, which only the server records",
    );

    // Items before a bad one are stored; the bad one and the rest are not.
    assert_status(
        append(
            &mut client,
            vec![
                open("t", "r", "w", vec![stdout(1, "good")]),
                more(vec![
                    stdout(2, "good too"),
                    pb::AppendItem {
                        writer_seq: 3,
                        payload: None,
                    },
                    stdout(4, "never"),
                ]),
            ],
        )
        .await,
        Code::InvalidArgument,
        "item 3",
    );
    let lines = crate::util::json_lines(&dir.path().join("t/r/stdout.log"));
    let texts: Vec<_> = lines
        .iter()
        .map(|line| line["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["good", "good too"]);

    let mut request = follow_request("t", "r", 1, true);
    request.channels = vec![0];
    assert_status(
        client.follow_run(request).await.map(|_| ()),
        Code::InvalidArgument,
        "channels",
    );
    assert_status(
        client
            .prepare_run(pb::PrepareRunRequest {
                metadata: None,
                state: None,
            })
            .await,
        Code::InvalidArgument,
        "metadata is required",
    );
    let mut bad_time = metadata("t", "r2");
    bad_time.created_at = "soon".into();
    assert_status(
        client.prepare_run(prepare_request(bad_time)).await,
        Code::InvalidArgument,
        "created_at",
    );
    server.stop().await;
}

/// A message over max_message_bytes and an entry over max_entry_bytes are
/// RESOURCE_EXHAUSTED naming the limit; the server goes on serving.
#[tokio::test]
async fn messages_and_entries_over_the_limits_are_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        limits: Limits {
            max_message_bytes: 64 * 1024,
            max_entry_bytes: 16 * 1024,
            max_data_bytes: 16 * 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let big = "x".repeat(100 * 1024);
    assert_status(
        append(
            &mut client,
            vec![
                open("t", "r", "w", vec![stdout(1, "small")]),
                more(vec![stdout(2, &big)]),
            ],
        )
        .await,
        Code::ResourceExhausted,
        "max_message_bytes (65536)",
    );
    let entry = "y".repeat(20 * 1024);
    assert_status(
        append(
            &mut client,
            vec![open("t", "r", "w", vec![stdout(2, &entry)])],
        )
        .await,
        Code::ResourceExhausted,
        "max_entry_bytes (16384)",
    );
    let lines = crate::util::json_lines(&dir.path().join("t/r/stdout.log"));
    assert_eq!(
        lines.len(),
        1,
        "only the item before the oversized message was stored"
    );
    append(
        &mut client,
        vec![open("t", "r", "w", vec![stdout(2, "fine")])],
    )
    .await
    .unwrap();
    server.stop().await;
}
