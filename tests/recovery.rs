//! Restarts: clean ones, crashes with SIGKILL, torn files, and runs
//! written by another program in the same layout.

use std::{io::Write, time::Duration};

use baa_logging::pb;

use crate::util::{
    TestServer, append, entry_seq, entry_text, follow_request, follow_to_end, json_lines, more,
    open, prepare, process::ServerProcess, set_status, stdout, writer_cursor,
};

/// What a run looks like from outside: its summary, state and a writer's
/// cursor.
async fn observe(
    client: &mut baa_logging_client::LoggingClient,
    run: &str,
) -> (pb::LocalRunLogSummary, pb::RunStatus, u64) {
    let got = client
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: run.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let cursor = client
        .get_writer_cursor(pb::GetWriterCursorRequest {
            task_id: "t".into(),
            run_id: run.into(),
            writer_id: "w".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (
        got.summary.unwrap(),
        got.state.unwrap().status(),
        cursor.last_writer_seq,
    )
}

/// After a clean restart every run has its next seq, summary, state and
/// writer cursors back, and appends go on from there.
#[tokio::test]
async fn a_restart_recovers_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for run in ["r1", "r2"] {
        prepare(&mut client, "t", run).await;
        append(
            &mut client,
            vec![open(
                "t",
                run,
                "w",
                (1..=50).map(|n| stdout(n, &n.to_string())).collect(),
            )],
        )
        .await
        .unwrap();
    }
    set_status(&mut client, "t", "r2", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "r2", pb::RunStatus::Completed)
        .await
        .unwrap();
    let before = (
        observe(&mut client, "r1").await,
        observe(&mut client, "r2").await,
    );
    server.stop().await;
    let state_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t/r1/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state_file["lastEventSeq"], 51,
        "shutdown writes lastEventSeq"
    );

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let after = (
        observe(&mut client, "r1").await,
        observe(&mut client, "r2").await,
    );
    assert_eq!(before, after);
    assert_eq!(after.0.0.last_seq, 51);
    assert_eq!(after.0.2, 50);

    let response = append(
        &mut client,
        vec![open(
            "t",
            "r1",
            "w",
            vec![stdout(50, "dup"), stdout(51, "next")],
        )],
    )
    .await
    .unwrap();
    assert_eq!((response.stored_count, response.duplicate_count), (1, 1));
    let followed = follow_to_end(&mut client, follow_request("t", "r1", 1, true)).await;
    assert_eq!(followed.seqs(), (1..=52).collect::<Vec<_>>());
    server.stop().await;
}

/// A commit cut short by a crash (a torn line, and an entry missing in the
/// middle of the last commit) is cut back to its complete, gap-free
/// prefix: nothing torn or out of order is ever served, and the writer's
/// cursor says exactly what the run holds.
#[tokio::test]
async fn a_torn_last_commit_is_cut_back_to_a_gap_free_prefix() {
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
            (1..=3).map(|n| stdout(n, &n.to_string())).collect(),
        )],
    )
    .await
    .unwrap();
    server.stop().await;

    // Forge what a crash in the middle of a commit of seqs 5..=7 (writer
    // items 4..=6) leaves: its journal record, seq 5 in stdout, seq 7 in
    // stderr, seq 6 never written, and a torn line.
    let run_dir = dir.path().join("t/r");
    let len = |name: &str| std::fs::metadata(run_dir.join(name)).unwrap().len();
    let record = serde_json::json!({
        "firstSeq": 5, "lastSeq": 7, "writerId": "w", "writerSeq": 4,
        "counts": [0, 1, 2],
        "offsets": [len("worker.log"), len("stdout.log"), len("stderr.log")],
    });
    let append_to = |name: &str, text: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(run_dir.join(name))
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    };
    append_to("journal.jsonl", &format!("{record}\n"));
    let line = |seq: u64, channel: &str, text: &str| {
        format!(
            r#"{{"taskId":"t","stepId":"step-1","runId":"r","seq":{seq},"channel":"{channel}","createdAt":"2026-01-01T00:00:00.000Z","text":"{text}"}}"#
        )
    };
    append_to(
        "stdout.log",
        &format!(
            "{}\n{}",
            line(5, "stdout", "4"),
            &line(8, "stdout", "torn")[..40]
        ),
    );
    append_to("stderr.log", &format!("{}\n", line(7, "stderr", "6")));

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let (summary, _, cursor) = observe(&mut client, "r").await;
    assert_eq!(summary.last_seq, 5);
    assert_eq!(
        (summary.stdout_chunk_count, summary.stderr_chunk_count),
        (4, 0)
    );
    assert_eq!(cursor, 4, "the writer's item 4 made it, 5 and 6 did not");
    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(followed.seqs(), [1, 2, 3, 4, 5]);
    assert_eq!(
        json_lines(&run_dir.join("stderr.log")).len(),
        0,
        "seq 7 is cut: seq 6 never came"
    );
    assert_eq!(
        json_lines(&run_dir.join("stdout.log")).len(),
        4,
        "the torn line is cut"
    );

    // The writer re-sends from its cursor and the run goes on without a gap.
    append(
        &mut client,
        vec![open("t", "r", "w", vec![stdout(5, "5"), stdout(6, "6")])],
    )
    .await
    .unwrap();
    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(followed.seqs(), (1..=7).collect::<Vec<_>>());
    let texts: Vec<_> = followed.entries.iter().filter_map(entry_text).collect();
    assert_eq!(texts, ["1", "2", "3", "4", "5", "6"]);
    server.stop().await;
}

/// baa-logd killed with SIGKILL in the middle of appends loses nothing it
/// acknowledged; after a restart the writer re-sends from its cursor and
/// the run ends with every item once, in order, and no torn line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_appends_loses_and_duplicates_nothing() {
    const ITEMS: u64 = 200_000;
    const BATCH: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let addr = format!("http://{}", server.addr);
    let mut client = baa_logging_client::connect(addr.clone()).await.unwrap();
    prepare(&mut client, "t", "r").await;

    let send_from = |client: &mut baa_logging_client::LoggingClient, from: u64| {
        let messages: Vec<_> = (from..=ITEMS)
            .step_by(BATCH as usize)
            .map(|start| {
                let items = (start..(start + BATCH).min(ITEMS + 1))
                    .map(|n| stdout(n, &format!("line {n}\n")))
                    .collect();
                if start == from {
                    open("t", "r", "w", items)
                } else {
                    more(items)
                }
            })
            .collect();
        let mut client = client.clone();
        async move { append(&mut client, messages).await }
    };
    let writer = tokio::spawn(send_from(&mut client, 1));
    // Wait until the server acknowledged a good part, then kill it.
    let mut acknowledged = 0;
    for _ in 0..2000 {
        let cursor = writer_cursor(&mut client, "t", "r", "w").await;
        acknowledged = cursor.last_writer_seq;
        if acknowledged >= 20_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        acknowledged > 0 && acknowledged < ITEMS,
        "killed mid-stream (acknowledged {acknowledged})"
    );
    server.kill();
    let broken = writer.await.unwrap();
    assert!(broken.is_err(), "the writer sees its stream break");

    let server = ServerProcess::start(dir.path());
    let mut client = baa_logging_client::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let cursor = writer_cursor(&mut client, "t", "r", "w").await;
    assert!(
        cursor.last_writer_seq >= acknowledged,
        "acknowledged items survive: {} < {acknowledged}",
        cursor.last_writer_seq
    );
    assert_eq!(cursor.last_seq, cursor.last_writer_seq + 1);
    eprintln!(
        "killed after {acknowledged} acknowledged; {} survived",
        cursor.last_writer_seq
    );
    let resent = send_from(&mut client, cursor.last_writer_seq + 1)
        .await
        .unwrap();
    assert_eq!(resent.last_writer_seq, ITEMS);
    assert_eq!(resent.duplicate_count, 0);

    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(followed.entries.len() as u64, ITEMS + 1);
    for (index, entry) in followed.entries.iter().enumerate() {
        assert_eq!(entry_seq(entry), index as u64 + 1);
        if index > 0 {
            assert_eq!(entry_text(entry), Some(format!("line {index}\n").as_str()));
        }
    }
    for name in ["worker.log", "stdout.log", "stderr.log", "journal.jsonl"] {
        json_lines(&dir.path().join("t/r").join(name));
    }
    let status = server.terminate();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status:?}");
}

/// A run directory written by another program in the contract's shape,
/// without the server's journal, is adopted and served, and appends go on
/// after its last seq.
#[tokio::test]
async fn a_run_written_in_the_layout_by_another_program_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("task-x/run-x");
    std::fs::create_dir_all(run_dir.join("checkpoints")).unwrap();
    std::fs::write(
        run_dir.join("meta.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "layoutVersion": "local-run-v1", "taskId": "task-x", "stepId": "s", "stepName": "Step",
            "runId": "run-x", "workerKind": "codex", "attempt": 2, "repoRoot": "/r", "worktreePath": "/r/w",
            "createdAt": "2026-03-04T05:06:07.890Z", "checkpointMode": "git"
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        run_dir.join("state.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "status": "running", "attempt": 2, "startedAt": "2026-03-04T05:06:08.000Z",
            "updatedAt": "2026-03-04T05:06:09.000Z", "lastEventSeq": 3, "checkpointSeq": 0
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        run_dir.join("worker.log"),
        concat!(
            r#"{"taskId":"task-x","stepId":"s","runId":"run-x","seq":1,"channel":"worker","eventId":"e1","type":"worker_started","level":"info","createdAt":"2026-03-04T05:06:08.000Z","message":"started","data":{"pid":42},"renderedLine":"started"}"#,
            "\n"
        ),
    )
    .unwrap();
    std::fs::write(
        run_dir.join("stdout.log"),
        concat!(
            r#"{"taskId":"task-x","stepId":"s","runId":"run-x","seq":2,"channel":"stdout","createdAt":"2026-03-04T05:06:08.100Z","text":"hello\n"}"#,
            "\n",
            r#"{"taskId":"task-x","stepId":"s","runId":"run-x","seq":3,"channel":"stdout","createdAt":"2026-03-04T05:06:08.200Z","text":"world\n"}"#,
            "\n"
        ),
    )
    .unwrap();

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let run = client
        .get_run(pb::GetRunRequest {
            task_id: "task-x".into(),
            run_id: "run-x".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let summary = run.summary.unwrap();
    assert_eq!(
        (
            summary.last_seq,
            summary.lifecycle_event_count,
            summary.stdout_chunk_count
        ),
        (3, 1, 2)
    );
    assert_eq!(run.state.unwrap().status(), pb::RunStatus::Running);

    append(
        &mut client,
        vec![open("task-x", "run-x", "w", vec![stdout(1, "more\n")])],
    )
    .await
    .unwrap();
    let followed = follow_to_end(&mut client, follow_request("task-x", "run-x", 1, true)).await;
    assert_eq!(followed.seqs(), [1, 2, 3, 4]);
    let texts: Vec<_> = followed.entries.iter().filter_map(entry_text).collect();
    assert_eq!(texts, ["hello\n", "world\n", "more\n"]);
    server.stop().await;
}
