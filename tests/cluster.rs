//! Several `baa-logd` nodes on one NATS JetStream cluster (`--store
//! jetstream`): real `nats-server` processes and real `baa-logd`
//! processes on loopback, killed with SIGKILL by pid.
//!
//! What must hold after every fault: each line a writer had acknowledged
//! is in its run exactly once, each run's `seq` is gap-free, each follower
//! got every entry once and in order, and a restarted NATS server caught
//! up with the stream.
//!
//! The waits are bounded (leader elections take seconds), and the loops
//! are short so the suite stays quick; `scripts/cluster-faults.sh` runs
//! the same tests over and over.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use baa_logging::pb::{self, log_entry::Entry};
use tokio::task::JoinSet;

use crate::util::{
    self, Followed, follow_request, follow_to_end, more, nats_cluster::NatsCluster, open,
    process::ServerProcess, set_status, stdout,
};

/// Streams get names of their own, so tests never share one.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// How long a test waits for the cluster to settle after a fault.
const SETTLE: Duration = Duration::from_secs(60);

/// A cluster of NATS servers and the baa-logd nodes on it.
struct Cluster {
    /// The NATS servers.
    nats: NatsCluster,
    /// The stream.
    stream: String,
    /// Each node's scratch directory (session keys live there).
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Three NATS servers and a stream name of the test's own.
    fn start() -> Self {
        Self {
            nats: NatsCluster::start(3),
            stream: format!(
                "CLUSTER_{}_{}",
                std::process::id(),
                STREAMS.fetch_add(1, Ordering::Relaxed)
            ),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Starts a baa-logd node on the cluster, named `name`.
    fn node(&self, name: &str) -> ServerProcess {
        self.node_on(name, "127.0.0.1:0")
    }

    /// Starts a baa-logd node on the cluster at `listen`.
    fn node_on(&self, name: &str, listen: &str) -> ServerProcess {
        self.node_with(name, listen, "off")
    }

    /// Starts a baa-logd node on the cluster at `listen` with this worker
    /// lease.
    fn node_with(&self, name: &str, listen: &str, lease: &str) -> ServerProcess {
        let data_dir = self.dir.path().join(name);
        std::fs::create_dir_all(&data_dir).expect("a node directory");
        let urls = self.nats.url_list();
        ServerProcess::start_with_args(
            &data_dir,
            &[
                "--listen",
                listen,
                "--store",
                "jetstream",
                "--nats-url",
                &urls,
                "--nats-stream",
                &self.stream,
                "--nats-replicas",
                "3",
                "--worker-lease",
                lease,
            ],
        )
    }

    /// The name of the server that leads the stream now.
    async fn stream_leader(&self) -> String {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(leader) = self
                .stream_info()
                .await
                .and_then(|info| info.cluster?.leader)
            {
                return leader;
            }
            assert!(Instant::now() < deadline, "the stream has no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stream's info, from any server that answers.
    async fn stream_info(&self) -> Option<async_nats::jetstream::stream::Info> {
        let addresses: Vec<async_nats::ServerAddr> = self
            .nats
            .urls()
            .iter()
            .map(|url| url.parse().expect("a server address"))
            .collect();
        let client = async_nats::connect(addresses).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&self.stream).await.ok()?;
        Some(stream.cached_info().clone())
    }

    /// Waits until every replica of the stream is current, with no lag.
    async fn wait_caught_up(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let current = self
                .stream_info()
                .await
                .and_then(|info| info.cluster)
                .is_some_and(|cluster| {
                    cluster.leader.is_some()
                        && cluster.replicas.len() == 2
                        && cluster
                            .replicas
                            .iter()
                            .all(|replica| replica.current && replica.lag.unwrap_or(0) == 0)
                });
            if current {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stream's replicas did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A client of a node.
async fn client(node: &ServerProcess) -> baa_logging_client::LoggingClient {
    baa_logging_client::ConnectOptions::new(node.url())
        .connect()
        .await
        .expect("a client connects")
}

/// A retention pass through `client` that deletes every finished run.
async fn collect_finished(
    client: &mut baa_logging_client::LoggingClient,
) -> pb::CollectRunsResponse {
    client
        .collect_runs(pb::CollectRunsRequest {
            dry_run: false,
            max_age: Some(prost_types::Duration::default()),
            max_bytes: None,
        })
        .await
        .expect("a retention pass")
        .into_inner()
}

/// Prepares `task/run` through `node` and moves it to running.
async fn running_run(node: &ServerProcess, task: &str, run: &str) {
    let mut client = client(node).await;
    util::prepare(&mut client, task, run).await;
    set_status(&mut client, task, run, pb::RunStatus::Running)
        .await
        .expect("the run starts");
}

/// The text of line `n` of `writer`.
fn line(writer: &str, n: u64) -> String {
    format!("{writer} line {n}\n")
}

/// Appends `lines` lines as `writer` of `task/run`, in batches of `batch`,
/// through the first node of `nodes` that answers, moving to the next one
/// when a call fails and re-sending from the writer's cursor there.
/// Returns the last writer sequence number a node acknowledged.
async fn write_lines(
    nodes: Vec<String>,
    task: String,
    run: String,
    writer: String,
    lines: u64,
    batch: u64,
) -> u64 {
    let deadline = Instant::now() + SETTLE * 2;
    let mut acknowledged = 0u64;
    let mut node = 0usize;
    while acknowledged < lines {
        assert!(Instant::now() < deadline, "{writer} could not write");
        let address = &nodes[node % nodes.len()];
        let attempt = async {
            let mut client = baa_logging_client::ConnectOptions::new(address.clone())
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await
                .map_err(|err| err.to_string())?;
            let cursor = client
                .get_writer_cursor(pb::GetWriterCursorRequest {
                    task_id: task.clone(),
                    run_id: run.clone(),
                    writer_id: writer.clone(),
                })
                .await
                .map_err(|status| status.to_string())?
                .into_inner();
            let from = cursor.last_writer_seq + 1;
            let to = (from + batch - 1).min(lines);
            let items = (from..=to).map(|n| stdout(n, &line(&writer, n))).collect();
            let half: Vec<pb::AppendItem> = (to + 1..=(to + batch).min(lines))
                .map(|n| stdout(n, &line(&writer, n)))
                .collect();
            let mut messages = vec![open(&task, &run, &writer, items)];
            if !half.is_empty() {
                messages.push(more(half));
            }
            let response = util::append(&mut client, messages)
                .await
                .map_err(|status| status.to_string())?;
            Ok::<u64, String>(response.last_writer_seq)
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(last)) => {
                assert!(last >= acknowledged, "an acknowledgement went back");
                acknowledged = last;
            }
            Ok(Err(_)) | Err(_) => {
                node += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acknowledged
}

/// Follows `task/run` through `node` until it ends, resuming from the
/// last `seq` it got when the stream breaks.
async fn follow_all(nodes: Vec<String>, task: String, run: String) -> Vec<pb::LogEntry> {
    let deadline = Instant::now() + SETTLE * 3;
    let mut entries: Vec<pb::LogEntry> = Vec::new();
    let mut node = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "the follower of {task}/{run} did not finish"
        );
        let address = nodes[node % nodes.len()].clone();
        let from_seq = entries.last().map_or(1, |entry| util::entry_seq(entry) + 1);
        let connected = baa_logging_client::ConnectOptions::new(address)
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        let Ok(mut client) = connected else {
            node += 1;
            continue;
        };
        let followed: Followed =
            follow_to_end(&mut client, follow_request(&task, &run, from_seq, false)).await;
        entries.extend(followed.entries);
        match followed.end {
            None => return entries,
            Some(_) => {
                node += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Checks that `entries` are a gap-free `seq` from 1, and that each of
/// `writers` wrote lines 1 to its acknowledged count exactly once, in
/// order (and nothing past what it sent).
fn check_run(entries: &[pb::LogEntry], acknowledged: &BTreeMap<String, u64>, sent: u64) {
    let seqs: Vec<u64> = entries.iter().map(util::entry_seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "one gap-free seq");
    let mut lines: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for entry in entries {
        if let Some(Entry::Chunk(chunk)) = &entry.entry {
            let (writer, n) = chunk
                .text
                .trim_end()
                .split_once(" line ")
                .expect("a line of the test");
            lines
                .entry(writer.to_owned())
                .or_default()
                .push(n.parse().expect("a number"));
        }
    }
    for (writer, acked) in acknowledged {
        let got = lines.get(writer).cloned().unwrap_or_default();
        let count = got.len() as u64;
        assert!(
            count >= *acked && count <= sent,
            "{writer}: {count} lines, {acked} acknowledged"
        );
        assert_eq!(
            got,
            (1..=count).collect::<Vec<_>>(),
            "{writer}'s lines once, in order"
        );
    }
}

/// Finishes `task/run` through any of `nodes`.
async fn finish(nodes: &[String], task: &str, run: &str) {
    for attempt in 0..50 {
        let node = &nodes[attempt % nodes.len()];
        let Ok(mut client) = baa_logging_client::ConnectOptions::new(node.clone())
            .connect()
            .await
        else {
            continue;
        };
        if set_status(&mut client, task, run, pb::RunStatus::Completed)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{task}/{run} could not be finished");
}

/// What several nodes share: a run prepared through one is appended to
/// through two others by two writers at once, followed live through a
/// third, listed and read back through each, with one gap-free `seq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_share_runs_with_one_sequence() {
    let cluster = Cluster::start();
    let nodes = [cluster.node("a"), cluster.node("b"), cluster.node("c")];
    running_run(&nodes[0], "t", "shared").await;
    let follower = tokio::spawn(follow_all(
        vec![nodes[2].url()],
        "t".into(),
        "shared".into(),
    ));
    let mut writers = JoinSet::new();
    for (index, writer) in ["w1", "w2"].into_iter().enumerate() {
        writers.spawn(write_lines(
            vec![nodes[index].url()],
            "t".into(),
            "shared".into(),
            writer.into(),
            200,
            20,
        ));
    }
    let mut acknowledged = BTreeMap::new();
    for (index, done) in writers.join_all().await.into_iter().enumerate() {
        acknowledged.insert(format!("w{}", index + 1), done);
    }
    finish(&[nodes[1].url()], "t", "shared").await;
    let followed = follower.await.expect("the follower");
    check_run(&followed, &acknowledged, 200);
    assert_eq!(followed.len(), 1 + 400, "run_prepared and every line");
    for node in &nodes {
        let mut client = client(node).await;
        let runs = client
            .list_runs(pb::ListRunsRequest::default())
            .await
            .expect("a listing")
            .into_inner()
            .runs;
        assert_eq!(runs.len(), 1, "every node lists the run");
        let state = runs[0].state.as_ref().expect("a state");
        assert_eq!(state.status(), pb::RunStatus::Completed);
        let read = follow_to_end(&mut client, follow_request("t", "shared", 1, true)).await;
        assert_eq!(read.seqs(), (1..=401).collect::<Vec<_>>());
    }
}

/// The stream leader is killed with SIGKILL while four writers append
/// through two nodes and followers read through a third; then it comes
/// back and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_loses_no_acknowledged_line() {
    let mut cluster = Cluster::start();
    let nodes = [cluster.node("a"), cluster.node("b"), cluster.node("c")];
    let runs = ["r1", "r2"];
    for run in runs {
        running_run(&nodes[0], "t", run).await;
    }
    let followers: Vec<_> = runs
        .iter()
        .map(|run| tokio::spawn(follow_all(vec![nodes[2].url()], "t".into(), (*run).into())))
        .collect();
    const LINES: u64 = 400;
    let mut writers = JoinSet::new();
    for index in 0..4 {
        let run = runs[index % 2];
        let writer = format!("w{index}");
        let through = vec![nodes[index / 2].url(), nodes[1 - index / 2].url()];
        writers.spawn(async move {
            let done =
                write_lines(through, "t".into(), run.into(), writer.clone(), LINES, 10).await;
            (run, writer, done)
        });
    }
    // Kill the leader once the writers are under way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = cluster.stream_leader().await;
    let index = cluster.nats.index_of(&leader).expect("a server of ours");
    cluster.nats.kill(index);
    let mut acknowledged: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for (run, writer, done) in writers.join_all().await {
        acknowledged.entry(run).or_default().insert(writer, done);
    }
    for run in runs {
        finish(&[nodes[0].url(), nodes[1].url()], "t", run).await;
    }
    for (run, follower) in runs.iter().zip(followers) {
        let followed = follower.await.expect("a follower");
        check_run(&followed, &acknowledged[run], LINES);
        assert_eq!(followed.len() as u64, 1 + 2 * LINES, "{run}: every line");
    }
    cluster.nats.restart(index);
    cluster.wait_caught_up().await;
    // Every node reads the same runs back once the server is back.
    for node in &nodes {
        let mut client = client(node).await;
        for run in runs {
            let read = follow_to_end(&mut client, follow_request("t", run, 1, true)).await;
            assert_eq!(read.seqs().len() as u64, 1 + 2 * LINES);
        }
    }
}

/// A baa-logd node is killed with SIGKILL in the middle of appends; its
/// writers move to another node, and the node comes back on its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_node_mid_append_loses_no_acknowledged_line() {
    let cluster = Cluster::start();
    let victim = cluster.node("a");
    let victim_addr = victim.addr;
    let other = cluster.node("b");
    running_run(&other, "t", "r").await;
    let follower = tokio::spawn(follow_all(vec![other.url()], "t".into(), "r".into()));
    const LINES: u64 = 600;
    let mut writers = JoinSet::new();
    for writer in ["w1", "w2"] {
        writers.spawn(write_lines(
            vec![victim.url(), other.url()],
            "t".into(),
            "r".into(),
            writer.into(),
            LINES,
            10,
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill();
    let mut acknowledged = BTreeMap::new();
    for (index, done) in writers.join_all().await.into_iter().enumerate() {
        acknowledged.insert(format!("w{}", index + 1), done);
    }
    // The killed node comes back on its address and serves the run.
    let back = cluster.node_on("a", &victim_addr.to_string());
    finish(&[back.url()], "t", "r").await;
    let followed = follower.await.expect("the follower");
    check_run(&followed, &acknowledged, LINES);
    assert_eq!(followed.len() as u64, 1 + 2 * LINES);
    let mut client = client(&back).await;
    let read = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(read.seqs().len() as u64, 1 + 2 * LINES);
}

/// A writer's stream is open on one node: the other nodes, whose own
/// leases run out, leave the run alone. Once that node is killed, the
/// run fails a lease later, once, with one lease-expired entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_held_on_one_node_is_kept_by_the_others() {
    let cluster = Cluster::start();
    let holder = cluster.node_with("a", "127.0.0.1:0", "4s");
    let others = [
        cluster.node_with("b", "127.0.0.1:0", "4s"),
        cluster.node_with("c", "127.0.0.1:0", "4s"),
    ];
    running_run(&holder, "t", "held").await;
    // The stream stays open: its sender is kept until the end.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(open("t", "held", "w", vec![stdout(1, "working\n")]))
        .await
        .expect("the stream takes a message");
    let mut holder_client = client(&holder).await;
    let stream = tokio::spawn(async move {
        holder_client
            .append_logs(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    // Two and a half leases long, the run stays running on every node.
    // (Leases of 4 s leave room for a busy machine to renew late.)
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut reader = client(&others[0]).await;
    let run = reader
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: "held".into(),
        })
        .await
        .expect("the run")
        .into_inner();
    let status = run.run.and_then(|run| run.state).expect("a state").status();
    assert_eq!(status, pb::RunStatus::Running, "no node failed a held run");
    holder.kill();
    drop(sender);
    let _ = stream.await;
    let deadline = Instant::now() + SETTLE;
    let followed = loop {
        let read = follow_to_end(&mut reader, follow_request("t", "held", 1, true)).await;
        let failed = read
            .states
            .last()
            .is_some_and(|state| state.status() == pb::RunStatus::Failed);
        if failed {
            break read;
        }
        assert!(
            Instant::now() < deadline,
            "the run was not failed after its holder died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expiries = followed
        .entries
        .iter()
        .filter(|entry| match &entry.entry {
            Some(Entry::Lifecycle(event)) => event.message.contains("lease"),
            _ => false,
        })
        .count();
    assert_eq!(expiries, 1, "one node failed the run, once");
}

/// `baa-log exec` given two nodes of the cluster: the node it writes
/// through is killed with SIGKILL while the command runs, its writer
/// moves to the other node, which was up all along, and the run holds
/// every line once, in order, and its final status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_moves_to_another_node_when_its_node_dies() {
    use tokio::io::AsyncReadExt;

    let cluster = Cluster::start();
    let first = cluster.node("a");
    let second = cluster.node("b");
    let spools = tempfile::tempdir().expect("a spool directory");
    let script = "for i in $(seq 1 300); do echo \"line $i\"; sleep 0.005; done";
    let mut exec = tokio::process::Command::new(crate::util::process::cli_binary())
        .env(
            "BAA_LOG_SERVER",
            format!("{},{}", first.url(), second.url()),
        )
        .env("BAA_LOG_SPOOL_DIR", spools.path())
        .env_remove("BAA_LOG_TOKEN")
        .args(["exec", "--no-pty", "--delivery-wait", "30s"])
        .args(["--task", "t", "--run", "x", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("baa-log starts");
    let mut stdout = exec.stdout.take().expect("piped");
    let mut printed = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&printed).contains("line 50\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buffer))
            .await
            .expect("the command writes")
            .expect("a read");
        assert!(read > 0, "exec ended early");
        printed.extend_from_slice(&buffer[..read]);
    }
    first.kill();
    let output = tokio::time::timeout(SETTLE, async {
        stdout.read_to_end(&mut printed).await.expect("a read");
        exec.wait_with_output().await.expect("exec ends")
    })
    .await
    .expect("exec ends in time");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut client = client(&second).await;
    let read = follow_to_end(&mut client, follow_request("t", "x", 1, true)).await;
    let seqs = read.seqs();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    let text: String = read
        .entries
        .iter()
        .filter_map(|entry| match &entry.entry {
            Some(Entry::Chunk(chunk)) => Some(chunk.text.as_str()),
            _ => None,
        })
        .collect();
    let expected: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected, "every line once, in order");
    let state = read.states.last().expect("a state");
    assert_eq!(state.status(), pb::RunStatus::Completed);
}

/// `baa-logd import` moves runs from a local data directory into the
/// cluster: the same entries with the same `seq`, the state, and each
/// writer's cursor, so a writer that goes on through a node re-sends
/// nothing twice; a second import leaves the runs as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_moves_local_runs_into_the_cluster() {
    let cluster = Cluster::start();
    let local_dir = tempfile::tempdir().expect("a data directory");
    let local = ServerProcess::start(local_dir.path());
    running_run(&local, "t", "done").await;
    running_run(&local, "t", "going").await;
    let mut local_client = client(&local).await;
    for run in ["done", "going"] {
        let items = (1..=50).map(|n| stdout(n, &line("w", n))).collect();
        util::append(&mut local_client, vec![open("t", run, "w", items)])
            .await
            .expect("an append");
    }
    let report = crate::artifacts::random_file(&local_dir.path().join("report.bin"), 1_300_000, 7);
    let commit = Some((report.len() as u64, crate::artifacts::sha256(&report)));
    crate::artifacts::upload(
        &mut local_client,
        crate::artifacts::upload_messages(
            crate::artifacts::artifact("t", "done", "report.bin"),
            "k",
            &report,
            0,
            commit,
        ),
    )
    .await
    .expect("an artifact");
    set_status(&mut local_client, "t", "done", pb::RunStatus::Completed)
        .await
        .expect("finished");
    let before = follow_to_end(&mut local_client, follow_request("t", "done", 1, true)).await;
    local.kill();

    let import = || {
        std::process::Command::new(crate::util::process::server_binary())
            .args([
                "--store",
                "jetstream",
                "--nats-url",
                &cluster.nats.url_list(),
            ])
            .args(["--nats-stream", &cluster.stream, "import", "--from"])
            .arg(local_dir.path())
            .output()
            .expect("baa-logd import runs")
    };
    let first = import();
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("2 runs: 2 copied, 0 not copied"), "{said}");

    let node = cluster.node("a");
    let mut client = client(&node).await;
    let after = follow_to_end(&mut client, follow_request("t", "done", 1, true)).await;
    assert_eq!(
        after.entries, before.entries,
        "the same entries, seq for seq"
    );
    assert_eq!(
        after.states.last().map(pb::RunStateSnapshot::status),
        Some(pb::RunStatus::Completed)
    );
    let cursor = util::writer_cursor(&mut client, "t", "going", "w").await;
    assert_eq!(cursor.last_writer_seq, 50, "the writer's cursor came along");
    assert!(
        said.contains("t/done: copied, 51 entries, 1 objects"),
        "{said}"
    );
    let typed = baa_logging_client::Client::connect(node.url())
        .await
        .expect("a client");
    let copy = local_dir.path().join("copy.bin");
    typed
        .download_file(
            &baa_logging_client::RunKey::new("t", "done"),
            &baa_logging_client::ObjectName::artifact("report.bin"),
            &copy,
            &baa_logging_client::TransferOptions::default(),
        )
        .await
        .expect("the artifact came along");
    assert!(std::fs::read(&copy).expect("the copy") == report);
    let items = (1..=60).map(|n| stdout(n, &line("w", n))).collect();
    let response = util::append(&mut client, vec![open("t", "going", "w", items)])
        .await
        .expect("the writer goes on");
    assert_eq!(response.last_writer_seq, 60);
    finish(&[node.url()], "t", "going").await;
    let going = follow_to_end(&mut client, follow_request("t", "going", 1, true)).await;
    let acknowledged = BTreeMap::from([("w".to_owned(), 60)]);
    check_run(&going.entries, &acknowledged, 60);

    let second = import();
    let said = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.status.success(), "{said}");
    assert!(said.contains("2 runs: 0 copied, 0 not copied"), "{said}");

    // Deleted from the cluster by retention, the runs can be imported
    // again, over what the deletion left.
    let collected = collect_finished(&mut client).await;
    assert_eq!(collected.runs.len(), 2, "both finished runs are deleted");
    let third = import();
    let said = String::from_utf8_lossy(&third.stdout).into_owned();
    assert!(third.status.success(), "{said}");
    assert!(said.contains("2 runs: 2 copied, 0 not copied"), "{said}");
    let again = follow_to_end(&mut client, follow_request("t", "done", 1, true)).await;
    assert_eq!(again.entries, before.entries, "the same entries once more");
}

/// An upload staged through one node resumes through another after the
/// first is killed, from the offset the second reports; the object comes
/// back whole through any node, is an object of the cluster's object
/// store with its digest, takes checkpoints, and goes with its run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_resumes_through_another_node_and_goes_with_its_run() {
    use baa_logging_client::{Client, ObjectName, TransferOptions};
    use base64::Engine;

    use crate::artifacts::{artifact, random_file, sha256, status, upload, upload_messages};

    let cluster = Cluster::start();
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    running_run(&a, "t", "r").await;
    let dir = tempfile::tempdir().expect("a directory");
    let bytes = random_file(&dir.path().join("model.bin"), 6 << 20, 16);
    let object = artifact("t", "r", "model.bin");
    let half = 3 << 20;

    // Half of it through `a`, which then dies with the stream open.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut through_a = client(&a).await;
    let call = tokio::spawn(async move {
        through_a
            .upload_object(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for message in upload_messages(object.clone(), "k", &bytes[..half], 0, None) {
        tx.send(message).await.expect("the stream is open");
    }
    let mut through_b = client(&b).await;
    let deadline = Instant::now() + SETTLE;
    while status(&mut through_b, object.clone(), "k")
        .await
        .committed_size
        < half as u64
    {
        assert!(
            Instant::now() < deadline,
            "node b never saw the staged bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    let _ = call.await;
    let listed = through_b
        .list_objects(pb::ListObjectsRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            ..Default::default()
        })
        .await
        .expect("a listing")
        .into_inner();
    assert!(
        listed.objects.is_empty(),
        "no part of the object is visible"
    );

    // The rest through `b`, from the offset it reports.
    let offset = status(&mut through_b, object.clone(), "k")
        .await
        .committed_size;
    assert_eq!(offset, half as u64);
    let commit = Some((bytes.len() as u64, sha256(&bytes)));
    let done = upload(
        &mut through_b,
        upload_messages(object, "k", &bytes, offset as usize, commit),
    )
    .await
    .expect("the upload resumes through b");
    assert!(done.committed);

    let c = cluster.node("c");
    let typed = Client::connect(c.url()).await.expect("a client");
    let key = baa_logging_client::RunKey::new("t", "r");
    let copy = dir.path().join("copy.bin");
    let info = typed
        .download_file(
            &key,
            &ObjectName::artifact("model.bin"),
            &copy,
            &TransferOptions::default(),
        )
        .await
        .expect("a download through c");
    assert_eq!(info.size, bytes.len() as u64);
    assert!(std::fs::read(&copy).expect("the copy") == bytes);

    // NATS clients see an object of the bucket, with its digest.
    let addresses: Vec<async_nats::ServerAddr> = cluster
        .nats
        .urls()
        .iter()
        .map(|url| url.parse().expect("a server address"))
        .collect();
    let js = async_nats::jetstream::new(async_nats::connect(addresses).await.expect("connects"));
    let bucket = format!("{}_OBJECTS", cluster.stream);
    let objects = js
        .get_stream(format!("OBJ_{bucket}"))
        .await
        .expect("the bucket's stream");
    let meta_subject = format!(
        "$O.{bucket}.M.{}",
        base64::engine::general_purpose::URL_SAFE.encode("t/r/artifacts/model.bin")
    );
    let meta = objects
        .get_last_raw_message_by_subject(&meta_subject)
        .await
        .expect("the object's meta message");
    let meta: serde_json::Value = serde_json::from_slice(&meta.payload).expect("JSON");
    assert_eq!(meta["size"], bytes.len());
    let digest = base64::engine::general_purpose::URL_SAFE.encode(sha256(&bytes));
    assert_eq!(meta["digest"], format!("SHA-256={digest}"));

    // A checkpoint through c, then the run ends and retention takes it
    // with its objects.
    let slot = typed.reserve_checkpoint(&key).await.expect("a slot");
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, b"{\"step\":3}").expect("a file");
    typed
        .upload_file(
            &key,
            &ObjectName::checkpoint(slot, "state.json"),
            &state_file,
            &TransferOptions::default(),
        )
        .await
        .expect("a checkpoint object");
    let state = typed
        .commit_checkpoint(&key, slot)
        .await
        .expect("the checkpoint commits");
    assert_eq!(state.checkpoint_seq, slot);
    finish(&[c.url()], "t", "r").await;
    let collected = collect_finished(&mut client(&c).await).await;
    assert_eq!(collected.runs.len(), 1);
    let left = objects
        .clone()
        .info()
        .await
        .expect("the bucket's stream")
        .state
        .messages;
    assert_eq!(left, 0, "the run's chunks and meta messages are gone");
}
