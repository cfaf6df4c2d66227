//! Clients given several servers: a connection takes the first that
//! answers, and writers, followers, unary calls and `baa-log` move to the
//! next server when theirs dies, resuming from their cursors.
//!
//! Two local-store servers cannot share a data directory at once (it is
//! locked), so a failover here is: server A on directory D, a port
//! reserved for B, clients given [A, B]; A killed with SIGKILL, then B
//! started on D at its port. The clients must find B themselves.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use baa_logging::pb;
use baa_logging_client::{
    Client, ClientError, ConnectOptions, FollowEvent, FollowOptions, NewRun, RetryPolicy, RunKey,
    WriterOptions,
};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::util::{
    TestServer,
    process::{ServerProcess, cli_binary},
};

/// A loopback address with a port nobody listens on right now: for a
/// dead server, or one that starts there later.
fn reserve_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Retries quick enough for a test, and given up after a while, so that a
/// client that never finds the second server fails the test instead of
/// hanging it.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        give_up_after: Some(Duration::from_secs(20)),
    }
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

/// A writer and a follower given [A, B] go on across A's death: the
/// writer keeps writing and the follower keeps reading once B serves the
/// same store, every line the writer was given is stored once with
/// gap-free sequence numbers, and the follower saw every entry once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_follower_move_to_the_next_server_when_theirs_dies() {
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(dir.path());
    let b = reserve_addr();
    let options = ConnectOptions::with_addresses([a.url(), format!("http://{b}")]);
    let client = Client::connect_with(&options).await.unwrap();
    let key = RunKey::new("t", "r");
    let writer = client
        .prepare_writer(
            NewRun::new("t", "r"),
            WriterOptions {
                buffer_bytes: 256 * 1024,
                batch_bytes: 8 * 1024,
                retry: quick_retry(),
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap();
    // The follower has a client of its own, so that it must move by
    // itself rather than ride on the writer's move.
    let follower_client = Client::connect_with(&options).await.unwrap();
    let mut follow = follower_client.follow(
        key.clone(),
        FollowOptions {
            retry: quick_retry(),
            ..FollowOptions::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let producer = {
        let writer = writer.clone();
        let stop = stop.clone();
        let taken = taken.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writer.stdout(format!("line {sent}\n")).await.unwrap();
                sent += 1;
                taken.store(sent, Ordering::Relaxed);
                if sent % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            sent
        })
    };
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = follow.next().await {
            let event = event.expect("the follower rides out the move");
            if event.seq().is_some() {
                seen.push(event);
            }
        }
        seen
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!producer.is_finished(), "the kill lands while appending");
    a.kill();
    // Long enough for both to find A gone and B not there yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = ServerProcess::start_on(dir.path(), b);
    let at_restart = taken.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = producer.await.unwrap();
    assert!(
        sent > at_restart,
        "the writer kept writing once B served: {at_restart} lines before, {sent} in all"
    );
    let finished = writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .expect("the writer finishes on B");
    assert_eq!(finished.summary.total_entries, sent + 1);
    let seen = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the follower ends with the run")
        .unwrap();

    let expected: Vec<String> = (0..sent).map(|n| format!("line {n}\n")).collect();
    let seqs: Vec<u64> = seen.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=sent + 1).collect::<Vec<_>>(), "the follower");
    assert_eq!(stdout_texts(&seen), expected, "the follower");

    let fresh = Client::connect(b.url()).await.unwrap();
    let stored: Vec<FollowEvent> = fresh
        .follow(key, FollowOptions::default())
        .map(|event| event.expect("no error"))
        .filter(|event| std::future::ready(event.seq().is_some()))
        .collect()
        .await;
    let seqs: Vec<u64> = stored.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=sent + 1).collect::<Vec<_>>(), "the stored run");
    assert_eq!(stdout_texts(&stored), expected, "the stored run");
}

/// A client given a dead address first connects to the live one behind
/// it; one given only dead addresses names each and why; a unary call
/// whose server died moves to the next server by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_takes_the_first_server_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dead = reserve_addr();
    let live = TestServer::start(dir.path()).await;
    let options = ConnectOptions::new(format!("http://{dead}, http://{}", live.addr));
    assert_eq!(options.addresses().len(), 2);
    let client = Client::connect_with(&options).await.unwrap();
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let run = client.get_run(&RunKey::new("t", "r")).await.unwrap();
    assert_eq!(run.metadata.unwrap().run_id, "r");
    // The generated stub too, and a bare host:port.
    let mut stub = ConnectOptions::new(format!("{dead},{}", live.addr))
        .connect()
        .await
        .unwrap();
    stub.get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap();
    live.stop().await;

    let other = reserve_addr();
    let err = ConnectOptions::new(format!("{dead},{other}"))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&dead.to_string()) && message.contains(&other.to_string()),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");

    // A unary call on a client whose server was killed goes to the next.
    let a = ServerProcess::start(dir.path());
    let b = reserve_addr();
    let client = Client::connect_with(&ConnectOptions::with_addresses([
        a.url(),
        format!("http://{b}"),
    ]))
    .await
    .unwrap();
    client.get_run(&RunKey::new("t", "r")).await.unwrap();
    a.kill();
    let _b = ServerProcess::start_on(dir.path(), b);
    let run = client.get_run(&RunKey::new("t", "r")).await.unwrap();
    assert_eq!(run.metadata.unwrap().run_id, "r");
    let state = client
        .update_run_state(
            &RunKey::new("t", "r"),
            pb::RunStatePatch {
                status: Some(pb::RunStatus::Running as i32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(state.status, pb::RunStatus::Running as i32);
}

/// `baa-log --server DEAD,LIVE` works: exec logs to the live server and
/// cat reads it back; and `baa-log follow` given [A, B] follows a run to
/// its end across A's death, every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baa_log_takes_a_list_of_servers_and_moves_along_it() {
    let dir = tempfile::tempdir().unwrap();
    let spools = tempfile::tempdir().unwrap();
    let dead = reserve_addr();
    let a = ServerProcess::start(dir.path());
    let baa_log = |servers: String| {
        let mut command = tokio::process::Command::new(cli_binary());
        command
            .env("BAA_LOG_SERVER", servers)
            .env("BAA_LOG_SPOOL_DIR", spools.path())
            .env_remove("BAA_LOG_TOKEN");
        command
    };
    let dead_first = format!("http://{dead},{}", a.url());
    let exec = baa_log(dead_first.clone())
        .args(["exec", "--no-pty", "--task", "t", "--run", "e", "--"])
        .args(["sh", "-c", "echo one; echo two"])
        .output()
        .await
        .unwrap();
    assert_eq!(exec.status.code(), Some(0), "{exec:?}");
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(!stderr.contains("does not answer"), "{stderr}");
    let cat = baa_log(String::new())
        .args(["--server", &dead_first, "cat", "t/e"])
        .output()
        .await
        .unwrap();
    assert_eq!(cat.status.code(), Some(0), "{cat:?}");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "one\ntwo\n");

    let b = reserve_addr();
    let list = format!("{},http://{b}", a.url());
    let client = Client::connect_with(&ConnectOptions::new(list.clone()))
        .await
        .unwrap();
    let writer = client
        .prepare_writer(
            NewRun::new("t", "f"),
            WriterOptions {
                retry: quick_retry(),
                ..WriterOptions::default()
            },
        )
        .await
        .unwrap();
    for n in 0..50 {
        writer.stdout(format!("before {n}\n")).await.unwrap();
    }
    writer.flush().await.unwrap();
    let mut follow = baa_log(list)
        .args(["follow", "t/f"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let mut printed = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&printed).contains("before 49\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buffer))
            .await
            .expect("follow prints the history")
            .unwrap();
        assert!(read > 0, "follow ended early");
        printed.extend_from_slice(&buffer[..read]);
    }
    a.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _b = ServerProcess::start_on(dir.path(), b);
    for n in 0..50 {
        writer.stdout(format!("after {n}\n")).await.unwrap();
    }
    writer
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), async {
        stdout.read_to_end(&mut printed).await.unwrap();
        follow.wait_with_output().await.unwrap()
    })
    .await
    .expect("follow ends with the run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&printed);
    let lines: Vec<&str> = printed
        .lines()
        .filter(|line| line.starts_with("before ") || line.starts_with("after "))
        .collect();
    let expected: Vec<String> = (0..50)
        .map(|n| format!("before {n}"))
        .chain((0..50).map(|n| format!("after {n}")))
        .collect();
    assert_eq!(lines, expected);
}

/// `baa-log exec` given [A, B] whose server A dies while the command
/// writes: its writer moves to B once B serves the same store, and the
/// run holds every line of the command once, with gap-free sequence
/// numbers, and its final status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_moves_to_the_next_server_when_its_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let spools = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(dir.path());
    let b = reserve_addr();
    let script = "for i in $(seq 1 300); do echo \"line $i\"; sleep 0.005; done";
    let mut exec = tokio::process::Command::new(cli_binary())
        .env("BAA_LOG_SERVER", format!("{},http://{b}", a.url()))
        .env("BAA_LOG_SPOOL_DIR", spools.path())
        .env_remove("BAA_LOG_TOKEN")
        .args(["exec", "--no-pty", "--delivery-wait", "20s"])
        .args(["--task", "t", "--run", "x", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = exec.stdout.take().unwrap();
    let mut printed = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&printed).contains("line 50\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buffer))
            .await
            .expect("the command writes")
            .unwrap();
        assert!(read > 0, "exec ended early");
        printed.extend_from_slice(&buffer[..read]);
    }
    a.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = ServerProcess::start_on(dir.path(), b);
    let output = tokio::time::timeout(Duration::from_secs(60), async {
        stdout.read_to_end(&mut printed).await.unwrap();
        exec.wait_with_output().await.unwrap()
    })
    .await
    .expect("exec ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("is not all stored"), "{stderr}");

    let client = Client::connect(b.url()).await.unwrap();
    let key = RunKey::new("t", "x");
    let stored: Vec<FollowEvent> = client
        .follow(key.clone(), FollowOptions::default())
        .map(|event| event.expect("no error"))
        .filter(|event| std::future::ready(event.seq().is_some()))
        .collect()
        .await;
    let seqs: Vec<u64> = stored.iter().filter_map(FollowEvent::seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    let expected: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    assert_eq!(stdout_texts(&stored).concat(), expected);
    let state = client.get_run(&key).await.unwrap().state.unwrap();
    assert_eq!(state.status, pb::RunStatus::Completed as i32);
}

/// A state change whose server died before answering is sent again to
/// the next server; when the repeat is refused because the run already
/// holds the change (a final status is final), the client answers with
/// that state, as the first send may have applied it. A repeat refused
/// for a run that holds something else is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_sent_again_after_a_move_is_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(dir.path());
    let b = reserve_addr();
    let options = ConnectOptions::with_addresses([a.url(), format!("http://{b}")]);
    let client = Client::connect_with(&options).await.unwrap();
    let key = RunKey::new("t", "done");
    client.prepare_run(NewRun::new("t", "done")).await.unwrap();
    let completed = pb::RunStatePatch {
        status: Some(pb::RunStatus::Completed as i32),
        exit_code: Some(0),
        ..Default::default()
    };
    let failed = pb::RunStatePatch {
        status: Some(pb::RunStatus::Failed as i32),
        ..Default::default()
    };
    for status in [pb::RunStatus::Running, pb::RunStatus::Completed] {
        let patch = pb::RunStatePatch {
            status: Some(status as i32),
            exit_code: (status == pb::RunStatus::Completed).then_some(0),
            ..Default::default()
        };
        client.update_run_state(&key, patch).await.unwrap();
    }
    // On one server, a second final status is refused.
    let err = client
        .update_run_state(&key, completed.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");

    // Both clients still call through A, which is gone: the change goes
    // to B, which refuses it as the run is completed already, with the
    // exit code asked for: the first send counts as applied.
    let other = Client::connect_with(&options).await.unwrap();
    a.kill();
    let _b = ServerProcess::start_on(dir.path(), b);
    let state = client
        .update_run_state(&key, completed.clone())
        .await
        .expect("the repeat finds the change applied");
    assert_eq!(state.status, pb::RunStatus::Completed as i32);
    assert_eq!(state.exit_code, Some(0));

    // A change the run does not hold stays refused after a move too.
    let err = other.update_run_state(&key, failed).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
}
