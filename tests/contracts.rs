//! The JSON files of a run agree with the run-logging contract, both ways:
//! what the server writes has the contract's shapes, and what a TypeScript
//! program using the contract writes is served field for field.

use baa_logging::{
    json,
    pb::{self, append_item::Payload},
};
use prost_types::Struct;
use serde_json::{Value, json};

use crate::util::{
    TestServer, append,
    contract::{
        RUN_METADATA, RUN_STATE_SNAPSHOT, STREAM_CHUNK_LOG_ENTRY, WORKER_LIFECYCLE_LOG_ENTRY,
        assert_shape,
    },
    follow_request, follow_to_end, json_lines, open, prepare, set_status, stderr, stdout,
};

/// A JSON file.
fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("readable")).expect("JSON")
}

// === Protobuf -> the contract's JSON ===

/// The contract's name of a Protobuf enum value: `LOG_LEVEL_INFO` -> `info`.
fn contract_name(proto_name: &str, prefix: &str) -> Value {
    let name = proto_name
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{proto_name} does not start with {prefix}"));
    Value::String(name.to_ascii_lowercase())
}

/// A `google.protobuf.Struct` as a JSON object.
fn struct_json(object: &Struct) -> Value {
    Value::Object(json::from_struct(object.clone()).expect("JSON can carry it"))
}

/// Inserts `value` under `key` when it is set.
fn insert_some(object: &mut Value, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object[key] = value;
    }
}

/// Served metadata in the shape of `meta.json`.
fn metadata_json(metadata: &pb::RunMetadata) -> Value {
    let mut object = json!({
        "layoutVersion": metadata.layout_version, "taskId": metadata.task_id,
        "stepId": metadata.step_id, "stepName": metadata.step_name, "runId": metadata.run_id,
        "workerKind": metadata.worker_kind, "attempt": metadata.attempt,
        "repoRoot": metadata.repo_root, "worktreePath": metadata.worktree_path,
        "createdAt": metadata.created_at, "checkpointMode": metadata.checkpoint_mode,
    });
    insert_some(
        &mut object,
        "promptSummary",
        metadata.prompt_summary.as_ref().map(|v| json!(v)),
    );
    insert_some(
        &mut object,
        "command",
        metadata.command.as_ref().map(|v| json!(v)),
    );
    object
}

/// A served state in the shape of `state.json`.
fn state_json(state: &pb::RunStateSnapshot) -> Value {
    let mut object = json!({
        "status": contract_name(state.status().as_str_name(), "RUN_STATUS_"),
        "attempt": state.attempt, "startedAt": state.started_at, "updatedAt": state.updated_at,
        "lastEventSeq": state.last_event_seq, "checkpointSeq": state.checkpoint_seq,
    });
    insert_some(
        &mut object,
        "finishedAt",
        state.finished_at.as_ref().map(|v| json!(v)),
    );
    insert_some(
        &mut object,
        "summary",
        state.summary.as_ref().map(|v| json!(v)),
    );
    insert_some(&mut object, "exitCode", state.exit_code.map(|v| json!(v)));
    object
}

/// A served entry in the shape of a line of its channel's file.
fn entry_json(entry: &pb::LogEntry) -> Value {
    match entry.entry.as_ref().expect("entry set") {
        pb::log_entry::Entry::Lifecycle(event) => json!({
            "taskId": event.task_id, "stepId": event.step_id, "runId": event.run_id,
            "seq": event.seq,
            "channel": contract_name(event.channel().as_str_name(), "WORKER_LOG_CHANNEL_"),
            "eventId": event.event_id,
            "type": contract_name(event.r#type().as_str_name(), "WORKER_LIFECYCLE_EVENT_TYPE_"),
            "level": contract_name(event.level().as_str_name(), "LOG_LEVEL_"),
            "createdAt": event.created_at, "message": event.message,
            "data": struct_json(event.data.as_ref().expect("data is always set")),
            "renderedLine": event.rendered_line,
        }),
        pb::log_entry::Entry::Chunk(chunk) => json!({
            "taskId": chunk.task_id, "stepId": chunk.step_id, "runId": chunk.run_id,
            "seq": chunk.seq,
            "channel": contract_name(chunk.channel().as_str_name(), "STREAM_LOG_CHANNEL_"),
            "createdAt": chunk.created_at, "text": chunk.text,
        }),
    }
}

// === JSON -> Protobuf ===

/// A lifecycle event item.
fn event(
    writer_seq: u64,
    event_type: pb::WorkerLifecycleEventType,
    level: pb::LogLevel,
    data: Option<Value>,
) -> pb::AppendItem {
    pb::AppendItem {
        writer_seq,
        payload: Some(Payload::Event(pb::WorkerLifecycleEventInput {
            r#type: event_type.into(),
            level: level.into(),
            message: format!("event {writer_seq}"),
            created_at: None,
            data: data.map(|data| json::to_struct(data.as_object().expect("an object"))),
        })),
    }
}

// === tests ===

/// The files of a run written through the API (meta.json, state.json and
/// the three channel files) have the contract's shapes, with every enum by
/// its contract name and optional fields absent until they are set.
#[tokio::test]
async fn the_files_of_a_run_written_through_the_api_have_the_contract_shapes() {
    use pb::{LogLevel as L, WorkerLifecycleEventType as T};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let run_dir = dir.path().join("t/r");

    let meta = read_json(&run_dir.join("meta.json"));
    assert_shape(&RUN_METADATA, &meta, "meta.json");
    assert_eq!(meta["promptSummary"], "build it", "a set optional field");
    assert!(meta.get("command").is_none(), "an unset optional field");
    let state = read_json(&run_dir.join("state.json"));
    assert_shape(&RUN_STATE_SNAPSHOT, &state, "state.json when prepared");
    assert_eq!(state["status"], "prepared");
    for unset in ["finishedAt", "summary", "exitCode"] {
        assert!(state.get(unset).is_none(), "{unset} is absent until set");
    }

    // Every event type a worker sends, at each level in turn, and chunks.
    let sent: [(T, &str, L, &str); 8] = [
        (
            T::CheckpointSlotReserved,
            "checkpoint_slot_reserved",
            L::Debug,
            "debug",
        ),
        (T::WorkerStarted, "worker_started", L::Info, "info"),
        (
            T::WorkerExecutionDeferred,
            "worker_execution_deferred",
            L::Warn,
            "warn",
        ),
        (T::StepPrepared, "step_prepared", L::Error, "error"),
        (T::StepCompleted, "step_completed", L::Debug, "debug"),
        (T::StepFailed, "step_failed", L::Info, "info"),
        (T::StepBlocked, "step_blocked", L::Warn, "warn"),
        (T::WorkerExited, "worker_exited", L::Error, "error"),
    ];
    let data = json!({"list": [1, 2.5, null, true, "ü"], "nested": {"empty": {}, "none": null}});
    let mut items = Vec::new();
    for (index, &(event_type, _, level, _)) in sent.iter().enumerate() {
        let writer_seq = 3 * index as u64;
        items.push(event(
            writer_seq + 1,
            event_type,
            level,
            (index % 2 == 0).then(|| data.clone()),
        ));
        items.push(stdout(writer_seq + 2, "out\n"));
        items.push(stderr(writer_seq + 3, "err\n"));
    }
    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    append(&mut client, vec![open("t", "r", "w", items)])
        .await
        .unwrap();
    // A patch moves checkpointSeq only to a reserved slot; each
    // reservation logs a `checkpoint_slot_reserved` entry after the others.
    const SLOTS: u64 = 4;
    for _ in 0..SLOTS {
        client
            .reserve_checkpoint(pb::ReserveCheckpointRequest {
                task_id: "t".into(),
                run_id: "r".into(),
            })
            .await
            .unwrap();
    }
    client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            writer_id: String::new(),
            patch: Some(pb::RunStatePatch {
                status: Some(pb::RunStatus::Failed.into()),
                summary: Some("it broke".into()),
                exit_code: Some(-1),
                checkpoint_seq: Some(SLOTS),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let state = read_json(&run_dir.join("state.json"));
    assert_shape(&RUN_STATE_SNAPSHOT, &state, "state.json when failed");
    assert_eq!(
        (
            &state["status"],
            &state["summary"],
            &state["exitCode"],
            &state["checkpointSeq"]
        ),
        (&json!("failed"), &json!("it broke"), &json!(-1), &json!(4))
    );
    assert!(state.get("finishedAt").is_some(), "set once terminal");

    let worker = json_lines(&run_dir.join("worker.log"));
    for (index, line) in worker.iter().enumerate() {
        assert_shape(
            &WORKER_LIFECYCLE_LOG_ENTRY,
            line,
            &format!("worker.log line {}", index + 1),
        );
    }
    assert_eq!(worker[0]["type"], "run_prepared");
    for (line, (_, type_name, _, level_name)) in worker[1..].iter().zip(sent) {
        assert_eq!(
            (&line["type"], &line["level"]),
            (&json!(type_name), &json!(level_name))
        );
    }
    assert_eq!(worker[1]["data"], data);
    assert_eq!(
        worker[2]["data"],
        json!({}),
        "data is an empty object when none was sent"
    );
    let mut seqs: Vec<u64> = worker
        .iter()
        .map(|line| line["seq"].as_u64().unwrap())
        .collect();
    for channel in ["stdout", "stderr"] {
        let lines = json_lines(&run_dir.join(format!("{channel}.log")));
        assert_eq!(lines.len(), sent.len());
        for (index, line) in lines.iter().enumerate() {
            assert_shape(
                &STREAM_CHUNK_LOG_ENTRY,
                line,
                &format!("{channel}.log line {}", index + 1),
            );
            assert_eq!(line["channel"], channel);
            seqs.push(line["seq"].as_u64().unwrap());
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=1 + 3 * sent.len() as u64 + SLOTS).collect::<Vec<_>>()
    );
    server.stop().await;
}

/// Run directories as a TypeScript program using the contract writes them
/// (`JSON.stringify` output, no journal, a channel file not yet created)
/// are served field for field: metadata and state with their optional
/// fields set or unset, every entry and structured value, the status
/// filter, and the follow of a terminal run ends by itself.
#[tokio::test]
async fn runs_written_by_a_typescript_program_are_served_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = |seq: u64| json!({"taskId": "conductor", "stepId": "deploy", "seq": seq});
    let line = |seq: u64, fields: Value| {
        let mut object = ctx(seq);
        object["runId"] = json!("run-7");
        object
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        object
    };
    let event = |seq: u64, event_type: &str, level: &str, message: &str, data: Value| {
        line(
            seq,
            json!({
                "channel": "worker", "eventId": format!("evt-{seq}"), "type": event_type, "level": level,
                "createdAt": format!("2026-02-03T04:05:{:02}.000Z", seq), "message": message,
                "data": data, "renderedLine": format!("{event_type} {message}"),
            }),
        )
    };
    let chunk = |seq: u64, channel: &str, text: &str| {
        line(
            seq,
            json!({
                "channel": channel, "createdAt": format!("2026-02-03T04:05:{:02}.500Z", seq), "text": text,
            }),
        )
    };

    // run-7: failed, every optional field set.
    let meta = json!({
        "layoutVersion": "local-run-v1", "taskId": "conductor", "stepId": "deploy",
        "stepName": "Deploy to staging", "runId": "run-7", "workerKind": "codex", "attempt": 3,
        "repoRoot": "/home/ci/repo", "worktreePath": "/home/ci/repo/.wt/deploy",
        "createdAt": "2026-02-03T04:05:00.000Z", "checkpointMode": "git-commit",
        "promptSummary": "Deploy the service ✈", "command": "npm run deploy -- --env=staging",
    });
    let state = json!({
        "status": "failed", "attempt": 3, "startedAt": "2026-02-03T04:05:00.100Z",
        "updatedAt": "2026-02-03T04:05:09.000Z", "finishedAt": "2026-02-03T04:05:09.000Z",
        "lastEventSeq": 7, "checkpointSeq": 3, "summary": "deploy failed: 503", "exitCode": 2,
    });
    let worker = [
        event(
            1,
            "run_prepared",
            "info",
            "run prepared",
            json!({"attempt": 3}),
        ),
        event(3, "worker_started", "debug", "", json!({})),
        event(
            6,
            "step_failed",
            "error",
            "deploy failed:\n503 from \"gateway\"",
            json!({
                "http": {"status": 503, "retryAfter": null, "headers": [["x-id", "ä1"], []]},
                "ratio": 0.75, "big": 1e300, "negative": -12, "ok": false, "emoji": "🚫",
            }),
        ),
        event(
            7,
            "worker_exited",
            "warn",
            "exited",
            json!({"exitCode": 2, "signal": null}),
        ),
    ];
    let out = [chunk(2, "stdout", "deploying…\n"), chunk(4, "stdout", "")];
    let err = [chunk(5, "stderr", "HTTP 503\r\n\tat gateway\n")];
    let run_dir = dir.path().join("conductor/run-7");
    std::fs::create_dir_all(run_dir.join("checkpoints")).unwrap();
    std::fs::create_dir_all(run_dir.join("artifacts")).unwrap();
    let write_lines = |name: &str, lines: &[Value]| {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(run_dir.join(name), text).unwrap();
    };
    // JSON.stringify(value, null, 2), as the contract's writer does.
    std::fs::write(
        run_dir.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap(),
    )
    .unwrap();
    std::fs::write(
        run_dir.join("state.json"),
        serde_json::to_string_pretty(&state).unwrap(),
    )
    .unwrap();
    write_lines("worker.log", &worker);
    write_lines("stdout.log", &out);
    write_lines("stderr.log", &err);

    // run-8: just prepared, no optional field, and no stderr.log yet.
    let meta8 = json!({
        "layoutVersion": "local-run-v1", "taskId": "conductor", "stepId": "deploy",
        "stepName": "Deploy to staging", "runId": "run-8", "workerKind": "shell", "attempt": 1,
        "repoRoot": "/r", "worktreePath": "/r/w", "createdAt": "2026-02-04T00:00:00.000Z",
        "checkpointMode": "none",
    });
    let state8 = json!({
        "status": "prepared", "attempt": 1, "startedAt": "2026-02-04T00:00:00.000Z",
        "updatedAt": "2026-02-04T00:00:00.000Z", "lastEventSeq": 1, "checkpointSeq": 0,
    });
    let run8_dir = dir.path().join("conductor/run-8");
    std::fs::create_dir_all(&run8_dir).unwrap();
    std::fs::write(
        run8_dir.join("meta.json"),
        serde_json::to_string_pretty(&meta8).unwrap(),
    )
    .unwrap();
    std::fs::write(
        run8_dir.join("state.json"),
        serde_json::to_string_pretty(&state8).unwrap(),
    )
    .unwrap();
    let mut prepared8 = event(1, "run_prepared", "info", "run prepared", json!({}));
    prepared8["runId"] = json!("run-8");
    std::fs::write(run8_dir.join("worker.log"), format!("{prepared8}\n")).unwrap();
    std::fs::write(run8_dir.join("stdout.log"), "").unwrap();

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let get = |run: &str| pb::GetRunRequest {
        task_id: "conductor".into(),
        run_id: run.into(),
    };

    let run7 = client
        .get_run(get("run-7"))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(metadata_json(run7.metadata.as_ref().unwrap()), meta);
    assert_eq!(state_json(run7.state.as_ref().unwrap()), state);
    let summary = run7.summary.unwrap();
    assert_eq!(
        (
            summary.last_seq,
            summary.lifecycle_event_count,
            summary.stdout_chunk_count,
            summary.stderr_chunk_count
        ),
        (7, 4, 2, 1)
    );
    let followed = follow_to_end(&mut client, follow_request("conductor", "run-7", 1, false)).await;
    assert!(
        followed.end.is_none(),
        "the follow of a terminal run ends by itself: {:?}",
        followed.end
    );
    let mut written: Vec<Value> = worker.iter().chain(&out).chain(&err).cloned().collect();
    written.sort_by_key(|line| line["seq"].as_u64());
    let served: Vec<Value> = followed.entries.iter().map(entry_json).collect();
    assert_eq!(served, written);
    assert_eq!(state_json(followed.states.last().unwrap()), state);

    let run8 = client
        .get_run(get("run-8"))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(metadata_json(run8.metadata.as_ref().unwrap()), meta8);
    assert_eq!(state_json(run8.state.as_ref().unwrap()), state8);

    let failed = client
        .list_runs(pb::ListRunsRequest {
            task_id: "conductor".into(),
            statuses: vec![pb::RunStatus::Failed.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = failed
        .runs
        .iter()
        .map(|run| run.metadata.as_ref().unwrap().run_id.as_str())
        .collect();
    assert_eq!(ids, ["run-7"]);

    // The missing channel file comes with the first entry of its channel.
    append(
        &mut client,
        vec![open("conductor", "run-8", "w", vec![stderr(1, "late\n")])],
    )
    .await
    .unwrap();
    let lines = json_lines(&run8_dir.join("stderr.log"));
    assert_eq!(
        (lines.len(), &lines[0]["seq"], &lines[0]["text"]),
        (1, &json!(2), &json!("late\n"))
    );
    server.stop().await;
}
