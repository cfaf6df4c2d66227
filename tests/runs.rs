//! Preparing, getting, listing runs and moving their state.

use baa_logging::pb;
use tonic::Code;

use crate::util::{
    TestServer, assert_status, json_lines, metadata, metadata_at, prepare, prepare_request,
    set_status,
};

/// Preparing a run creates its directory in the local-run-v1 layout, with
/// meta.json, state.json and the run_prepared event as seq 1.
#[tokio::test]
async fn prepare_creates_the_run_directory_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;

    let prepared = prepare(&mut client, "task-1", "run-1").await;
    assert!(prepared.created);
    let state = prepared.state.unwrap();
    assert_eq!(state.status(), pb::RunStatus::Prepared);
    assert_eq!(state.last_event_seq, 1);
    let session = prepared.session.unwrap();
    assert_eq!(session.next_seq, 2);
    let paths = session.paths.unwrap();
    let run_dir = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("task-1")
        .join("run-1");
    assert_eq!(paths.run_dir, run_dir.to_string_lossy());
    assert_eq!(paths.layout_version, "local-run-v1");
    let worker = session.worker.unwrap();
    assert_eq!(worker.entries.len(), 1);
    assert_eq!(worker.entries[0].seq, 1);
    assert_eq!(
        worker.entries[0].r#type(),
        pb::WorkerLifecycleEventType::RunPrepared
    );

    for name in [
        "meta.json",
        "state.json",
        "worker.log",
        "stdout.log",
        "stderr.log",
    ] {
        assert!(run_dir.join(name).is_file(), "{name} missing");
    }
    for name in ["checkpoints", "artifacts"] {
        assert!(run_dir.join(name).is_dir(), "{name} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["layoutVersion"], "local-run-v1");
    assert_eq!(meta["taskId"], "task-1");
    assert_eq!(meta["promptSummary"], "build it");
    assert!(
        meta.get("command").is_none(),
        "unset optional fields are absent"
    );
    let state_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state_file["status"], "prepared");
    assert!(state_file.get("finishedAt").is_none());
    let lines = json_lines(&run_dir.join("worker.log"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["type"], "run_prepared");
    assert_eq!(lines[0]["channel"], "worker");
    assert_eq!(lines[0]["level"], "info");
    server.stop().await;
}

/// Preparing again with the same metadata returns the run unchanged; with
/// other metadata it is ALREADY_EXISTS.
#[tokio::test]
async fn prepare_is_idempotent_and_refuses_other_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let again = client
        .prepare_run(prepare_request(metadata("t", "r")))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(
        again.session.unwrap().next_seq,
        2,
        "no second run_prepared event"
    );

    let mut other = metadata("t", "r");
    other.step_name = "Deploy".into();
    assert_status(
        client.prepare_run(prepare_request(other)).await,
        Code::AlreadyExists,
        "other metadata",
    );
    server.stop().await;
}

/// GetRun returns metadata, state, summary, paths and targets; an unknown
/// run is NOT_FOUND.
#[tokio::test]
async fn get_run_returns_everything_and_unknown_runs_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let run = client
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: "r".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.metadata.unwrap().step_name, "Build");
    let summary = run.summary.unwrap();
    assert_eq!(
        (
            summary.total_entries,
            summary.last_seq,
            summary.lifecycle_event_count
        ),
        (1, 1, 1)
    );
    let targets = run.targets.unwrap();
    assert!(
        targets
            .stdout
            .unwrap()
            .file_path
            .ends_with("t/r/stdout.log")
    );

    assert_status(
        client
            .get_run(pb::GetRunRequest {
                task_id: "t".into(),
                run_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "t/nope",
    );
    server.stop().await;
}

/// ListRuns goes newest first, filters by task and status, and pages with
/// tokens without skipping or repeating a run.
#[tokio::test]
async fn list_runs_filters_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for (index, (task, run)) in [
        ("a", "r1"),
        ("b", "r2"),
        ("a", "r3"),
        ("b", "r4"),
        ("a", "r5"),
    ]
    .iter()
    .enumerate()
    {
        let created_at = format!("2026-01-0{}T00:00:00Z", index + 1);
        client
            .prepare_run(prepare_request(metadata_at(task, run, &created_at)))
            .await
            .unwrap();
    }
    set_status(&mut client, "a", "r3", pb::RunStatus::Running)
        .await
        .unwrap();

    let list = |task: &str, statuses: Vec<pb::RunStatus>, page_size: u32, token: String| {
        pb::ListRunsRequest {
            task_id: task.into(),
            statuses: statuses.into_iter().map(Into::into).collect(),
            page_size,
            page_token: token,
        }
    };
    let ids = |response: &pb::ListRunsResponse| -> Vec<String> {
        response
            .runs
            .iter()
            .map(|run| run.metadata.as_ref().unwrap().run_id.clone())
            .collect()
    };

    let all = client
        .list_runs(list("", vec![], 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&all), ["r5", "r4", "r3", "r2", "r1"]);
    assert!(all.next_page_token.is_empty());

    let task_a = client
        .list_runs(list("a", vec![], 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&task_a), ["r5", "r3", "r1"]);

    let running = client
        .list_runs(list("", vec![pb::RunStatus::Running], 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&running), ["r3"]);

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_runs(list("", vec![], 2, token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.runs.len() <= 2);
        paged.extend(ids(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ["r5", "r4", "r3", "r2", "r1"]);

    assert_status(
        client.list_runs(list("", vec![], 2, "zz".into())).await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        client
            .list_runs(list("", vec![pb::RunStatus::Unspecified], 2, String::new()))
            .await,
        Code::InvalidArgument,
        "statuses",
    );
    server.stop().await;
}

/// Status moves only prepared → running → terminal; a terminal status is
/// final; finishedAt is set on the terminal move; updatedAt and
/// lastEventSeq are the server's.
#[tokio::test]
async fn state_moves_only_forward_and_terminal_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    assert_status(
        set_status(&mut client, "t", "r", pb::RunStatus::Completed).await,
        Code::FailedPrecondition,
        "cannot move from prepared to completed",
    );
    let running = set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    assert!(running.finished_at.is_none());

    let patched = client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            writer_id: String::new(),
            patch: Some(pb::RunStatePatch {
                status: Some(pb::RunStatus::Failed.into()),
                updated_at: Some("1999-01-01T00:00:00Z".into()),
                last_event_seq: Some(999),
                summary: Some("tests failed".into()),
                exit_code: Some(3),
                checkpoint_seq: Some(0),
                finished_at: None,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(patched.status(), pb::RunStatus::Failed);
    assert_eq!(patched.exit_code, Some(3));
    assert_eq!(patched.summary.as_deref(), Some("tests failed"));
    assert_eq!(patched.last_event_seq, 1, "the server keeps lastEventSeq");
    assert_ne!(
        patched.updated_at, "1999-01-01T00:00:00.000Z",
        "the server keeps updatedAt"
    );
    assert!(patched.finished_at.is_some());

    assert_status(
        set_status(&mut client, "t", "r", pb::RunStatus::Running).await,
        Code::FailedPrecondition,
        "terminal",
    );
    assert_status(
        set_status(&mut client, "t", "r", pb::RunStatus::Unspecified).await,
        Code::InvalidArgument,
        "patch.status",
    );
    let state_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t/r/state.json")).unwrap()).unwrap();
    assert_eq!(state_file["status"], "failed");
    assert_eq!(state_file["exitCode"], 3);
    assert!(state_file["finishedAt"].is_string());
    server.stop().await;
}
