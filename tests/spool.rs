//! `baa-log exec` never waits for the server: its output goes through a
//! local spool, the command runs on while the server is stopped (or was
//! never there), and what the server missed is delivered later, by `exec`
//! itself or by `baa-log upload`, each entry exactly once.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::util::{
    json_lines,
    process::{ServerProcess, cli_binary},
};

/// A `baa-log` command against `server`, spooling under `spool`.
fn baa_log(server: &str, spool: &Path) -> Command {
    let mut command = Command::new(cli_binary());
    command
        .env("BAA_LOG_SERVER", server)
        .env("BAA_LOG_SPOOL_DIR", spool)
        .env_remove("BAA_LOG_TOKEN");
    command
}

/// An address nothing listens on.
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address")
}

/// Waits (at most `limit`) until `path` exists.
fn wait_for_file(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `limit`) for `child` to exit, and returns its output.
fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "baa-log did not exit within {limit:?}: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run's stored entries, from its three files, in seq order.
fn stored(data: &Path, task: &str, run: &str) -> Vec<Value> {
    let dir = data.join(task).join(run);
    let mut entries: Vec<Value> = ["worker.log", "stdout.log", "stderr.log"]
        .iter()
        .map(|name| dir.join(name))
        // A channel is written on its first entry.
        .filter(|path| path.exists())
        .flat_map(|path| json_lines(&path))
        .collect();
    entries.sort_by_key(|entry| entry["seq"].as_u64());
    entries
}

/// The text a run stored on `channel`.
fn channel_text(entries: &[Value], channel: &str) -> String {
    entries
        .iter()
        .filter(|entry| entry["channel"] == channel)
        .filter_map(|entry| entry["text"].as_str())
        .collect()
}

/// The lifecycle event types a run stored, in order.
fn event_types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter(|entry| entry["channel"] == "worker")
        .filter_map(|entry| entry["type"].as_str().map(str::to_owned))
        .collect()
}

/// The run's state file.
fn state(data: &Path, task: &str, run: &str) -> Value {
    let text =
        std::fs::read_to_string(data.join(task).join(run).join("state.json")).expect("state.json");
    serde_json::from_str(&text).expect("JSON")
}

/// The spool files under `dir`.
fn spools(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return found;
    };
    for task in tasks.flatten() {
        for file in std::fs::read_dir(task.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(file.path());
        }
    }
    found
}

/// A command in two halves that a test steps through: it prints lines
/// up to `half_at`, touches `half`, waits for `go`, prints the rest up to
/// `total`, touches `done`, then runs `after` (if any).
struct Halves {
    /// Touched after the first half.
    half: PathBuf,
    /// The command goes on once this exists.
    go: PathBuf,
    /// Touched after the second half.
    done: PathBuf,
    /// The command, for `sh -c`.
    script: String,
}

impl Halves {
    /// The command, its files under `dir`.
    fn new(dir: &Path, half_at: u64, total: u64, after: &str) -> Self {
        let (half, go, done) = (dir.join("half"), dir.join("go"), dir.join("done"));
        let mut script = format!(
            "seq -f 'line %.0f' 1 {half_at}; touch {}; \
             while [ ! -e {} ]; do sleep 0.02; done; \
             seq -f 'line %.0f' {} {total}; touch {}",
            half.display(),
            go.display(),
            half_at + 1,
            done.display()
        );
        if !after.is_empty() {
            script = format!("{script}; {after}");
        }
        Self {
            half,
            go,
            done,
            script,
        }
    }
}

/// `n` lines `line <i>` from `from`, as the test commands print them.
fn lines(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("line {i}\n")).collect()
}

/// A command that prints 200,000 lines, the server stopped after the
/// first half: the second half is printed while no server answers (the
/// command ends before the server comes back), and once the server is
/// back every line is stored exactly once and the run completes.
#[test]
fn a_stopped_server_does_not_stop_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spool = dir.path().join("spool");
    let mut server = ServerProcess::start(&data);
    let addr = server.addr;
    let Halves {
        half,
        go,
        done,
        script,
    } = Halves::new(dir.path(), 100000, 200000, "");
    let terminal = std::fs::File::create(dir.path().join("terminal")).unwrap();
    let exec = baa_log(&server.url(), &spool)
        .args([
            "exec",
            "--task",
            "t",
            "--run",
            "big",
            "--delivery-wait",
            "2m",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(terminal)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&half, Duration::from_secs(60));
    server.stop_now();
    std::fs::write(&go, "").unwrap();
    // The second half is printed with no server at all: nothing waits.
    wait_for_file(&done, Duration::from_secs(60));
    let terminal = std::fs::read_to_string(dir.path().join("terminal")).unwrap();
    assert_eq!(
        terminal.len(),
        lines(1, 200_000).len(),
        "the terminal got it all"
    );
    assert!(!spools(&spool).is_empty(), "the output waits in a spool");
    // Long enough for exec to see the server is away and say so.
    std::thread::sleep(Duration::from_secs(1));

    let _server = ServerProcess::start_on(&data, addr);
    let output = wait_with_limit(exec, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("does not answer").count(),
        1,
        "one warning: {stderr}"
    );
    let entries = stored(&data, "t", "big");
    assert_eq!(channel_text(&entries, "stdout"), lines(1, 200_000));
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    assert_eq!(state(&data, "t", "big")["status"], "completed");
    assert!(spools(&spool).is_empty(), "a delivered spool is removed");
}

/// No server at the start: the command runs all the same and exec exits
/// with its code after --delivery-wait, naming the spool; `baa-log upload`
/// prepares the run and delivers the output and the final status once
/// the server is there, and the spool is gone after it.
#[test]
fn no_server_at_start_then_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spool = dir.path().join("spool");
    let addr = free_address();
    let url = format!("http://{addr}");
    let ran = dir.path().join("ran");
    let output = baa_log(&url, &spool)
        .args([
            "exec",
            "--task",
            "t",
            "--run",
            "offline",
            "--delivery-wait",
            "300ms",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(
            "touch {}; echo out; echo err >&2; exit 3",
            ran.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the command's code: {stderr}"
    );
    assert!(ran.exists(), "the command ran");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    let files = spools(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = files[0].display().to_string();
    assert!(
        stderr.contains(&format!("baa-log upload {path}")),
        "{stderr}"
    );

    // Still no server: upload keeps the spool and says so.
    let early = baa_log(&url, &spool)
        .args(["upload", &path, "--timeout", "300ms"])
        .output()
        .unwrap();
    assert_eq!(early.status.code(), Some(1), "{early:?}");
    assert!(files[0].exists());

    let _server = ServerProcess::start_on(&data, addr);
    let upload = baa_log(&url, &spool)
        .args(["upload", &path])
        .output()
        .unwrap();
    assert_eq!(upload.status.code(), Some(0), "{upload:?}");
    assert!(!files[0].exists(), "a delivered spool is removed");
    let entries = stored(&data, "t", "offline");
    assert_eq!(channel_text(&entries, "stdout"), "out\n");
    assert_eq!(channel_text(&entries, "stderr"), "err\n");
    assert_eq!(
        event_types(&entries),
        ["run_prepared", "worker_started", "worker_exited"]
    );
    let state = state(&data, "t", "offline");
    assert_eq!(state["status"], "failed");
    assert_eq!(state["exitCode"], 3);

    let again = baa_log(&url, &spool)
        .args(["upload", &path])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot open spool"));
}

/// An exec killed while the server is away leaves its spool; an upload
/// after the server is back delivers what the run lacks, and the lines
/// delivered before the server went away are not stored twice.
#[test]
fn the_spool_of_a_killed_exec_is_delivered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spool = dir.path().join("spool");
    let mut server = ServerProcess::start(&data);
    let addr = server.addr;
    let Halves {
        half,
        go,
        done,
        script,
    } = Halves::new(dir.path(), 1000, 2000, "exec sleep 60");
    let mut exec = baa_log(&server.url(), &spool)
        .args(["exec", "--task", "t", "--run", "killed", "--", "sh", "-c"])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&half, Duration::from_secs(60));
    // Wait until the server holds the first half, then stop it.
    let start = Instant::now();
    while channel_text(&stored(&data, "t", "killed"), "stdout") != lines(1, 1000) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first half arrives"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop_now();
    std::fs::write(&go, "").unwrap();
    wait_for_file(&done, Duration::from_secs(60));
    // The spool is written as the output comes: give it a moment to read
    // the pipe, then kill exec as a crash would.
    std::thread::sleep(Duration::from_millis(300));
    exec.kill().unwrap();
    exec.wait().unwrap();
    let pid = stored(&data, "t", "killed")
        .iter()
        .find(|entry| entry["type"] == "worker_started")
        .and_then(|entry| entry["data"]["pid"].as_u64())
        .expect("the command's pid");
    let _ = Command::new("kill").arg(pid.to_string()).status();

    let _server = ServerProcess::start_on(&data, addr);
    let files = spools(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    let upload = baa_log(&format!("http://{addr}"), &spool)
        .arg("upload")
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(upload.status.code(), Some(0), "{upload:?}");
    let entries = stored(&data, "t", "killed");
    assert_eq!(channel_text(&entries, "stdout"), lines(1, 2000));
    // The spool holds no final status: the run stays as the worker left it.
    assert_eq!(state(&data, "t", "killed")["status"], "running");
}

/// A spool bounded by --spool-max drops what does not fit, from the run
/// (never from the terminal), and the run marks the place; exec says so.
#[test]
fn a_full_spool_drops_output_and_marks_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spool = dir.path().join("spool");
    let addr = free_address();
    let url = format!("http://{addr}");
    let output = baa_log(&url, &spool)
        .args([
            "exec",
            "--task",
            "t",
            "--run",
            "full",
            "--spool-max",
            "256KiB",
            "--delivery-wait",
            "200ms",
            "--",
            "seq",
            "-f",
            "line %.0f",
            "1",
            "100000",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        lines(1, 100_000),
        "the terminal got it all"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("were not kept"), "{stderr}");
    let files = spools(&spool);
    assert_eq!(files.len(), 1);

    let _server = ServerProcess::start_on(&data, addr);
    let upload = baa_log(&url, &spool)
        .arg("upload")
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(upload.status.code(), Some(0), "{upload:?}");
    let entries = stored(&data, "t", "full");
    let text = channel_text(&entries, "stdout");
    assert!(text.starts_with("line 1\nline 2\n"), "the start is kept");
    assert!(text.len() < 300 * 1024, "{} bytes", text.len());
    assert!(
        text.contains("bytes of output") && text.contains("are missing here"),
        "the place is marked"
    );
    assert_eq!(state(&data, "t", "full")["status"], "completed");
}

/// --fail-closed keeps the strict behaviour: no server, no command (125).
#[test]
fn fail_closed_refuses_to_run_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let output = baa_log(&format!("http://{}", free_address()), dir.path())
        .args(["exec", "--fail-closed", "--task", "t", "--", "touch"])
        .arg(&ran)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert!(!ran.exists());
}

/// A server in this process over `data`, with worker leases of `lease`.
async fn lease_server(data: &Path, lease: Duration) -> crate::util::TestServer {
    use baa_logd::{ServerConfig, settings::Leases};

    crate::util::TestServer::start_with(
        data,
        ServerConfig {
            leases: Leases {
                worker_lease: lease,
                ..Leases::default()
            },
            ..ServerConfig::default()
        },
    )
    .await
}

/// A TCP relay to the server that a test can cut, as a network partition
/// would: open connections are torn down and new ones refused until it is
/// mended.
struct Relay {
    /// Where clients connect.
    addr: SocketAddr,
    /// Whether the relay is cut.
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The connections being relayed.
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    /// A relay to `target`.
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_cut, all) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_cut.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                all.lock().unwrap().push(link.abort_handle());
            }
        });
        Self { addr, cut, links }
    }

    /// Tears down every connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Lets connections through again.
    fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The lease and the spool agree: a worker cut off from the server for
/// longer than the worker lease has its run failed ("worker lost"), and
/// when it gets through again it delivers what it spooled meanwhile and
/// its final status. The run then holds every line once, says in its
/// lifecycle entries what happened, and ends completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_past_its_lease_delivers_its_spool_late() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = lease_server(&data, Duration::from_secs(1)).await;
    let relay = Relay::start(server.addr).await;
    let Halves {
        half,
        go,
        done,
        script,
    } = Halves::new(dir.path(), 1000, 2000, "");
    let exec = baa_log(&format!("http://{}", relay.addr), &dir.path().join("spool"))
        .args(["exec", "--task", "t", "--run", "cut", "--", "sh", "-c"])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = server.client().await;
    let status = |client: &mut baa_logging_client::LoggingClient| {
        let mut client = client.clone();
        async move {
            client
                .get_run(baa_logging::pb::GetRunRequest {
                    task_id: "t".into(),
                    run_id: "cut".into(),
                })
                .await
                .ok()
                .and_then(|run| run.into_inner().run)
                .and_then(|run| run.state)
                .map(|state| state.status())
        }
    };
    let start = Instant::now();
    while !half.exists() || channel_text(&stored(&data, "t", "cut"), "stdout") != lines(1, 1000) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first half arrives"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.cut();
    let start = Instant::now();
    while status(&mut client).await != Some(baa_logging::pb::RunStatus::Failed) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the lease expires"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&go, "").unwrap();
    wait_for_file(&done, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.mend();
    let output =
        tokio::task::spawn_blocking(move || wait_with_limit(exec, Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    let entries = stored(&data, "t", "cut");
    assert_eq!(
        channel_text(&entries, "stdout"),
        lines(1, 2000),
        "every line once"
    );
    let types = event_types(&entries);
    let at = |kind: &str| {
        types
            .iter()
            .position(|t| t == kind)
            .unwrap_or_else(|| panic!("a {kind} entry in {types:?}"))
    };
    assert!(
        at("step_failed") < at("worker_execution_deferred"),
        "{types:?}"
    );
    assert!(
        at("worker_execution_deferred") < at("worker_exited"),
        "{types:?}"
    );
    let lost = entries
        .iter()
        .find(|entry| entry["type"] == "step_failed")
        .unwrap();
    assert_eq!(lost["data"]["reason"], "worker_lease_expired", "{lost}");
    let state = state(&data, "t", "cut");
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["exitCode"], 0);
}

/// A silent command holds its run's lease: exec keeps a stream open and
/// sends heartbeats on it, so the server's idle timeout never closes it,
/// and a run whose command prints nothing for several lease periods (and
/// idle timeouts) still completes, never failed as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_command_keeps_its_lease() {
    use baa_logd::{ServerConfig, settings::Leases};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = crate::util::TestServer::start_with(
        &data,
        ServerConfig {
            leases: Leases {
                worker_lease: Duration::from_secs(1),
                ..Leases::default()
            },
            limits: baa_logging::config::Limits {
                append_idle_timeout: Duration::from_millis(500),
                ..baa_logging::config::Limits::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let url = format!("http://{}", server.addr);
    let spool = dir.path().join("spool");
    let output = tokio::task::spawn_blocking(move || {
        baa_log(&url, &spool)
            .args(["exec", "--task", "t", "--run", "quiet", "--", "sleep", "3"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let entries = stored(&data, "t", "quiet");
    assert_eq!(
        event_types(&entries),
        ["run_prepared", "worker_started", "worker_exited"],
        "no lease expiry"
    );
    assert_eq!(state(&data, "t", "quiet")["status"], "completed");
}

/// A worker that asks for a longer lease (`exec --lease`) keeps its run
/// through a cut longer than the server's lease: the run is not failed,
/// and completes once the worker gets through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_lease_asked_by_the_worker_outlasts_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = lease_server(&data, Duration::from_millis(500)).await;
    let relay = Relay::start(server.addr).await;
    let go = dir.path().join("go");
    let exec = baa_log(&format!("http://{}", relay.addr), &dir.path().join("spool"))
        .args([
            "exec", "--task", "t", "--run", "long", "--lease", "1h", "--",
        ])
        .args(["sh", "-c"])
        .arg(format!(
            "echo before; while [ ! -e {0} ]; do sleep 0.02; done; echo after",
            go.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while channel_text(&stored(&data, "t", "long"), "stdout") != "before\n" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first line arrives"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.cut();
    // Four of the server's leases.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(&data, "t", "long")["status"], "running");
    relay.mend();
    std::fs::write(&go, "").unwrap();
    let output =
        tokio::task::spawn_blocking(move || wait_with_limit(exec, Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let entries = stored(&data, "t", "long");
    assert_eq!(channel_text(&entries, "stdout"), "before\nafter\n");
    assert_eq!(
        event_types(&entries),
        ["run_prepared", "worker_started", "worker_exited"],
        "never failed as lost"
    );
    assert_eq!(state(&data, "t", "long")["status"], "completed");
}
