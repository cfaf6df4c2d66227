//! The client crate against a real server: the worker handle's batching,
//! backpressure and reconnection, the output writers, and followers that
//! resume after a restart.

use std::{net::SocketAddr, time::Duration};

use baa_logging::pb;
use baa_logging_client::{
    Client, FollowEvent, FollowOptions, NewRun, RetryPolicy, RunKey, WriterOptions,
};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::util::{TestServer, json_lines, process::ServerProcess};

/// A loopback address with a port nobody listens on right now, for a
/// server that must come back on the same address after a restart.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Follows `key` to its end and returns what came.
async fn follow_all(client: &Client, key: &RunKey) -> Vec<FollowEvent> {
    let events: Vec<_> = client
        .follow(key.clone(), FollowOptions::default())
        .collect()
        .await;
    events
        .into_iter()
        .map(|event| event.expect("no error"))
        .collect()
}

/// The texts of the stdout chunks among `events`.
fn stdout_texts(events: &[FollowEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            FollowEvent::Stdout(chunk) => Some(chunk.text.clone()),
            _ => None,
        })
        .collect()
}

/// Events, stdout and stderr from a handle are stored once each, in the
/// order they were made, with one sequence across channels; `finish`
/// records the final state after all of them.
#[tokio::test]
async fn a_writer_stores_everything_in_order_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.typed_client().await;
    let writer = client
        .prepare_writer(
            NewRun::new("t", "r").step("build", "Build"),
            WriterOptions::default(),
        )
        .await
        .unwrap();
    writer.set_status(pb::RunStatus::Running).await.unwrap();
    let data = json!({
        "nested": { "list": [1, 2.5, null, true, "ünï"], "empty": {} },
        "big": 9_007_199_254_740_991_i64,
    });
    writer
        .event(
            pb::WorkerLifecycleEventType::WorkerStarted,
            pb::LogLevel::Info,
            "go",
            data.clone(),
        )
        .await
        .unwrap();
    for n in 0..1000 {
        if n % 10 == 0 {
            writer.stderr(format!("err {n}\n")).await.unwrap();
        } else {
            writer.stdout(format!("out {n}\n")).await.unwrap();
        }
    }
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), Some("done".into()))
        .await
        .unwrap();
    assert_eq!(finished.summary.total_entries, 1002);
    assert_eq!(finished.summary.stderr_chunk_count, 100);
    assert_eq!(finished.state.status(), pb::RunStatus::Completed);
    assert_eq!(finished.state.exit_code, Some(0));
    assert_eq!(finished.state.last_event_seq, 1002);

    let key = RunKey::new("t", "r");
    let events = follow_all(&client, &key).await;
    let seqs: Vec<u64> = events.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=1002).collect::<Vec<_>>());
    let texts: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => Some(chunk.text.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..1000)
        .map(|n| {
            if n % 10 == 0 {
                format!("err {n}\n")
            } else {
                format!("out {n}\n")
            }
        })
        .collect();
    assert_eq!(texts, expected);
    let FollowEvent::Lifecycle(started) = &events[2] else {
        panic!("the third event is the worker's: {:?}", events[2]);
    };
    let stored = baa_logging::json::from_struct(started.data.clone().unwrap()).unwrap();
    assert_eq!(serde_json::Value::Object(stored), data);
    server.stop().await;
}

/// Errors that retrying cannot cure come back at once, typed: an unknown
/// run, a bad writer id, data that is not an object, text over the limit,
/// and appending to a terminal run.
#[tokio::test]
async fn errors_that_retrying_cannot_cure_come_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.typed_client().await;

    let unknown = client
        .writer(RunKey::new("t", "nope"), WriterOptions::default())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(tonic::Code::NotFound), "{unknown}");

    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let bad_writer = client
        .writer(
            RunKey::new("t", "r"),
            WriterOptions {
                writer_id: Some("../etc".into()),
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad_writer.code(), Some(tonic::Code::InvalidArgument));

    let writer = client
        .writer(RunKey::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    let not_object = writer
        .event(
            pb::WorkerLifecycleEventType::StepPrepared,
            pb::LogLevel::Info,
            "x",
            json!([1, 2]),
        )
        .await
        .unwrap_err();
    assert!(
        not_object.to_string().contains("JSON object"),
        "{not_object}"
    );
    let too_big = writer
        .stdout("x".repeat(2 * 1024 * 1024))
        .await
        .unwrap_err();
    assert!(too_big.to_string().contains("max_entry_bytes"), "{too_big}");
    // Neither stopped the writer.
    writer.stdout("fine\n").await.unwrap();
    writer.flush().await.unwrap();

    client
        .update_run_state(
            &RunKey::new("t", "r"),
            pb::RunStatePatch {
                status: Some(pb::RunStatus::Failed as i32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    writer.stdout("too late\n").await.unwrap();
    let terminal = writer.flush().await.unwrap_err();
    assert_eq!(terminal.code(), Some(tonic::Code::FailedPrecondition));
    // And from then on, every call says so.
    let again = writer.stdout("again\n").await.unwrap_err();
    assert_eq!(again.code(), Some(tonic::Code::FailedPrecondition));
    server.stop().await;
}

/// A worker's handle whose server is killed (SIGKILL) and restarted while
/// it appends loses nothing and duplicates nothing: the stored run ends
/// with every entry once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_carries_on_across_a_server_kill_and_restart() {
    const LINES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let server = ServerProcess::start_on(dir.path(), addr);
    let client = Client::connect(server.url()).await.unwrap();
    let writer = client
        .prepare_writer(
            NewRun::new("t", "r"),
            WriterOptions {
                buffer_bytes: 256 * 1024,
                batch_bytes: 16 * 1024,
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap();
    let producer = {
        let writer = writer.clone();
        tokio::spawn(async move {
            for n in 0..LINES {
                writer.stdout(format!("line {n}\n")).await.unwrap();
            }
        })
    };
    // Kill the server twice while the producer runs.
    let mut server = server;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!producer.is_finished(), "the kill lands while appending");
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server = ServerProcess::start_on(dir.path(), addr);
    }
    producer.await.unwrap();
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    assert_eq!(finished.summary.total_entries as usize, LINES + 1);

    let client = Client::connect(server.url()).await.unwrap();
    let events = follow_all(&client, &RunKey::new("t", "r")).await;
    let expected: Vec<String> = (0..LINES).map(|n| format!("line {n}\n")).collect();
    assert_eq!(stdout_texts(&events), expected);
    let seqs: Vec<u64> = events.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=LINES as u64 + 1).collect::<Vec<_>>());
    json_lines(&dir.path().join("t/r/stdout.log"));
}

/// A follower whose server restarts reconnects by itself and resumes
/// after the last entry it saw: nothing missed, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let server = ServerProcess::start_on(dir.path(), addr);
    let client = Client::connect(server.url()).await.unwrap();
    let writer = client
        .prepare_writer(NewRun::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    for n in 0..100 {
        writer.stdout(format!("before {n}\n")).await.unwrap();
    }
    writer.flush().await.unwrap();

    let mut follow = client.follow(RunKey::new("t", "r"), FollowOptions::default());
    let mut seen = Vec::new();
    while seen.len() < 101 {
        let event = follow.next().await.unwrap().unwrap();
        if event.seq().is_some() {
            seen.push(event);
        }
    }
    // A clean restart first (followers are told to resume), then a kill.
    let status = server.terminate();
    assert!(status.success());
    let server = ServerProcess::start_on(dir.path(), addr);
    for n in 0..100 {
        writer.stdout(format!("between {n}\n")).await.unwrap();
    }
    writer.flush().await.unwrap();
    server.kill();
    let server = ServerProcess::start_on(dir.path(), addr);
    for n in 0..100 {
        writer.stdout(format!("after {n}\n")).await.unwrap();
    }
    writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();

    while let Some(event) = follow.next().await {
        let event = event.expect("the follower rides out both restarts");
        if event.seq().is_some() {
            seen.push(event);
        }
    }
    let seqs: Vec<u64> = seen.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=301).collect::<Vec<_>>());
    let texts = stdout_texts(&seen);
    assert_eq!(texts[100], "between 0\n");
    assert_eq!(texts[299], "after 99\n");
    drop(server);
}

/// When the server stops answering, appends wait once the handle's buffer
/// is full instead of queueing without bound, and go on when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_makes_appends_wait_not_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let client = Client::connect(server.url()).await.unwrap();
    let writer = client
        .prepare_writer(
            NewRun::new("t", "r"),
            WriterOptions {
                buffer_bytes: 64 * 1024,
                batch_bytes: 8 * 1024,
                retry: RetryPolicy {
                    max: Duration::from_millis(100),
                    ..RetryPolicy::default()
                },
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap();
    server.signal("STOP");
    let line = "y".repeat(1000) + "\n";
    let mut accepted = 0;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_millis(500), writer.stdout(line.clone())).await {
            Ok(result) => {
                result.unwrap();
                accepted += 1;
                assert!(accepted < 5_000, "appends never waited");
            }
            Err(_) => break true,
        }
    };
    assert!(stalled);
    // The handle's buffer, its queue and the transport's buffers hold a
    // bounded amount: far less than the 5 MB an unbounded queue would take.
    assert!(accepted < 2_000, "{accepted} lines taken while stalled");
    server.signal("CONT");
    for _ in 0..100 {
        writer.stdout(line.clone()).await.unwrap();
    }
    let summary = writer.flush().await.unwrap();
    // The run_prepared event, what was taken while stalled (the one that
    // timed out was dropped before it was queued), and the last 100.
    assert_eq!(summary.total_entries, 1 + accepted + 100);
}

/// The output writers keep characters split across writes whole and
/// replace bytes that are not UTF-8, keeping the rest of the line.
#[tokio::test]
async fn output_writers_keep_split_characters_and_replace_bad_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.typed_client().await;
    let writer = client
        .prepare_writer(NewRun::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    let text = "héllo wörld — 日本語 😀\n".as_bytes();
    let mut out = writer.async_output_writer(pb::StreamLogChannel::Stdout);
    // Every cut lands inside or next to a multi-byte character.
    for piece in text.chunks(3) {
        out.write_all(piece).await.unwrap();
    }
    out.write_all(b"bad \xff\xfe byte\n").await.unwrap();
    out.write_all("cut at the end \u{20ac}".as_bytes().split_last().unwrap().1)
        .await
        .unwrap();
    out.shutdown().await.unwrap();

    let sync_writer = writer.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut err = sync_writer.output_writer(pb::StreamLogChannel::Stderr);
        for piece in "ß∂ƒ\n".as_bytes().chunks(1) {
            err.write_all(piece).unwrap();
        }
        err.close().unwrap();
    })
    .join()
    .unwrap();
    writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();

    let events = follow_all(&client, &RunKey::new("t", "r")).await;
    let stdout: String = stdout_texts(&events).concat();
    assert_eq!(
        stdout,
        "héllo wörld — 日本語 😀\nbad \u{fffd}\u{fffd} byte\ncut at the end \u{fffd}"
    );
    let stderr: String = events
        .iter()
        .filter_map(|event| match event {
            FollowEvent::Stderr(chunk) => Some(chunk.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stderr, "ß∂ƒ\n");
    server.stop().await;
}

/// The handle learns the server's limits: event data over max_data_bytes
/// is refused at once without stopping the writer, and batches never carry
/// more items than max_batch_entries.
#[tokio::test]
async fn the_writer_keeps_within_the_servers_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        baa_logd::ServerConfig {
            limits: baa_logging::Limits {
                max_data_bytes: 1000,
                max_batch_entries: 10,
                ..baa_logging::Limits::default()
            },
            ..baa_logd::ServerConfig::default()
        },
    )
    .await;
    let client = server.typed_client().await;
    let writer = client
        .prepare_writer(NewRun::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    let big = writer
        .event(
            pb::WorkerLifecycleEventType::StepPrepared,
            pb::LogLevel::Info,
            "",
            json!({ "blob": "x".repeat(2000) }),
        )
        .await
        .unwrap_err();
    assert!(big.to_string().contains("max_data_bytes (1000)"), "{big}");
    for n in 0..500 {
        writer.stdout(format!("{n}\n")).await.unwrap();
    }
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    assert_eq!(finished.summary.stdout_chunk_count, 500);
    server.stop().await;
}

/// A few dozen SIGKILLs of the server while three writers append (two of
/// them to one run): after each restart the writers go on by themselves,
/// and in the end every line each writer sent is stored once, in its
/// order, with no gap in either run's sequence numbers and nothing
/// reported lost. Bounded: about 24 kills, a few seconds.
/// `scripts/kill-loop.sh` runs the same for as long as asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_lose_and_duplicate_nothing_across_a_kill_loop() {
    let kills: u64 = std::env::var("BAA_KILL_LOOP_KILLS")
        .ok()
        .and_then(|kills| kills.parse().ok())
        .unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = ServerProcess::start_on(dir.path(), addr);
    let client = Client::connect(server.url()).await.unwrap();
    let options = |id: &str| WriterOptions {
        writer_id: Some(id.into()),
        buffer_bytes: 256 * 1024,
        batch_bytes: 8 * 1024,
        retry: RetryPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..WriterOptions::default()
    };
    let shared = client
        .prepare_writer(NewRun::new("t", "shared"), options("w1"))
        .await
        .unwrap();
    let second = client
        .writer(RunKey::new("t", "shared"), options("w2"))
        .await
        .unwrap();
    let own = client
        .prepare_writer(NewRun::new("t", "own"), options("w3"))
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = [
        ("w1", shared.clone()),
        ("w2", second.clone()),
        ("w3", own.clone()),
    ]
    .into_iter()
    .map(|(id, writer)| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer.stdout(format!("{id} {sent}\n")).await.unwrap();
                sent += 1;
            }
            sent
        })
    })
    .collect();
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..kills {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        tokio::time::sleep(Duration::from_millis(20 + noise % 60)).await;
        server.kill();
        server = ServerProcess::start_on(dir.path(), addr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for producer in producers {
        sent.push(producer.await.unwrap());
    }
    for writer in [&shared, &second, &own] {
        writer.flush().await.unwrap();
    }
    shared
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    own.finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();

    let client = Client::connect(server.url()).await.unwrap();
    for (run, ids) in [("shared", vec![0, 1]), ("own", vec![2])] {
        let events = follow_all(&client, &RunKey::new("t", run)).await;
        let seqs: Vec<u64> = events.iter().filter_map(FollowEvent::seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{run}: a gap"
        );
        let texts = stdout_texts(&events);
        for index in ids {
            let id = ["w1", "w2", "w3"][index];
            let mine: Vec<&String> = texts.iter().filter(|text| text.starts_with(id)).collect();
            let expected: Vec<String> = (0..sent[index]).map(|n| format!("{id} {n}\n")).collect();
            assert_eq!(mine.len(), expected.len(), "{run}: {id}'s lines");
            assert!(
                mine.iter().zip(&expected).all(|(a, b)| *a == b),
                "{run}: {id} out of order"
            );
        }
    }
    assert!(sent.iter().all(|sent| *sent > 0), "{sent:?}");
}

/// Many producers on one handle (tasks with clones, and a plain thread
/// with an output writer) while the handle's queue and buffer are small
/// enough that they wait for room: every line is stored once, each
/// producer's lines in the order it wrote them, and a flush after a
/// producer's last line finds all of its lines stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_sharing_a_handle_keep_their_order_under_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.typed_client().await;
    let writer = client
        .prepare_writer(
            NewRun::new("t", "r"),
            WriterOptions {
                batch_bytes: 2 * 1024,
                buffer_bytes: 8 * 1024,
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap();
    const LINES: usize = 2_000;
    let mut tasks = Vec::new();
    for producer in 0..4 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..LINES {
                writer.stdout(format!("p{producer} {n}\n")).await.unwrap();
            }
            writer.flush().await.unwrap().stdout_chunk_count
        }));
    }
    let thread_writer = writer.clone();
    let thread = std::thread::spawn(move || {
        use std::io::Write;
        let mut out = thread_writer.output_writer(pb::StreamLogChannel::Stderr);
        for n in 0..LINES {
            out.write_all(format!("t {n}\n").as_bytes()).unwrap();
        }
        out.close().unwrap();
    });
    for task in tasks {
        let stored = task.await.unwrap();
        assert!(stored >= LINES as u64, "a flush returned before its lines");
    }
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    assert_eq!(finished.summary.stdout_chunk_count, 4 * LINES as u64);
    assert_eq!(finished.summary.stderr_chunk_count, LINES as u64);

    let events = follow_all(&client, &RunKey::new("t", "r")).await;
    let mut next = [0usize; 5];
    for event in &events {
        let text = match event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => &chunk.text,
            _ => continue,
        };
        let (who, n) = text.trim_end().split_once(' ').unwrap();
        let index = match who {
            "t" => 4,
            producer => producer[1..].parse().unwrap(),
        };
        assert_eq!(n.parse::<usize>().unwrap(), next[index], "{text:?}");
        next[index] += 1;
    }
    assert_eq!(next, [LINES; 5]);
    server.stop().await;
}

/// A lone line, with nothing after it and no flush, reaches a follower:
/// the handle does not hold a line back until a batch is full.
#[tokio::test]
async fn a_lone_line_goes_out_after_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.typed_client().await;
    let writer = client
        .prepare_writer(NewRun::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    let mut follow = client.follow(RunKey::new("t", "r"), FollowOptions::default());
    writer.stdout("alone\n").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = follow.next().await {
            if let FollowEvent::Stdout(chunk) = event.unwrap() {
                return chunk.text;
            }
        }
        panic!("the follow ended");
    })
    .await
    .expect("the line never came without a flush");
    assert_eq!(seen, "alone\n");
    drop(writer);
    server.stop().await;
}
