//! A NATS JetStream cluster the harness starts itself for one phase:
//! `size` `nats-server` processes on loopback, each with a configuration,
//! data directory and log of its own in one temporary directory, with
//! `sync_interval: always` or the server's default, killed (by pid) and
//! removed when the phase ends.
//!
//! The binary is `--nats-server-bin` (`$BAA_NATS_SERVER`), or the pinned
//! one `scripts/install-nats-server.sh` installs, which is run to find it.

use std::{
    fmt::Write as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, stream::Config};
use tempfile::TempDir;

use crate::error::{BenchError, Context, Result};

/// How long the servers may take to listen and elect a JetStream leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of each server's log an error quotes.
const LOG_TAIL: usize = 5;

/// How a cluster is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClusterShape {
    /// Servers, each its own process.
    pub(crate) servers: usize,
    /// Replicas of the stream under test.
    pub(crate) replicas: usize,
    /// `sync_interval: always`: a server syncs each write before it
    /// acknowledges it.
    pub(crate) sync_always: bool,
}

/// Running `nats-server` processes; killed when dropped.
#[derive(Debug)]
pub(crate) struct NatsCluster {
    /// Their client ports, in server order.
    ports: Vec<u16>,
    /// The processes.
    children: Vec<Child>,
    /// Configurations, data and logs; removed after the processes.
    dir: TempDir,
}

impl NatsCluster {
    /// Starts a cluster of `shape`, and waits until it takes connections
    /// and can make a stream of `shape.replicas` replicas. A cluster that
    /// does not get there is replaced once by a new one: on a shared
    /// machine one now and then does not form (its logs are kept, and the
    /// progress on stderr says where).
    pub(crate) async fn start(bin: Option<PathBuf>, shape: ClusterShape) -> Result<Self> {
        let bin = match bin {
            Some(bin) => bin,
            None => tokio::task::spawn_blocking(installed_bin)
                .await
                .context("an install task failed")??,
        };
        match Self::start_once(bin.clone(), shape).await {
            Ok(cluster) => Ok(cluster),
            Err(err) => {
                eprintln!("  a NATS cluster did not form, starting another: {err}");
                Self::start_once(bin, shape).await
            }
        }
    }

    /// Starts a cluster of `shape` once.
    async fn start_once(bin: PathBuf, shape: ClusterShape) -> Result<Self> {
        let mut cluster = tokio::task::spawn_blocking(move || Self::spawn(&bin, shape))
            .await
            .context("a start task failed")??;
        cluster.wait_ready(shape.replicas).await?;
        Ok(cluster)
    }

    /// Writes the configurations and starts every server; blocking.
    fn spawn(bin: &Path, shape: ClusterShape) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("baa-bench-nats-")
            .tempdir()
            .map_err(|err| BenchError::io("cannot create a directory for NATS", err))?;
        let ports = free_ports(shape.servers * 2)?;
        let ports: Vec<(u16, u16)> = ports.chunks(2).map(|pair| (pair[0], pair[1])).collect();
        let mut cluster = Self {
            ports: ports.iter().map(|(port, _)| *port).collect(),
            children: Vec::new(),
            dir,
        };
        for (index, (port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("n{}", index + 1);
            let data = cluster.dir.path().join(&name);
            std::fs::create_dir_all(&data)
                .map_err(|err| BenchError::io("cannot create a NATS data directory", err))?;
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, other)| other != cluster_port)
                .map(|(_, other)| format!("\"nats-route://127.0.0.1:{other}\""))
                .collect();
            let sync = if shape.sync_always {
                ", sync_interval: always"
            } else {
                ""
            };
            let mut config = String::new();
            let _ = writeln!(config, "server_name: {name}");
            let _ = writeln!(config, "listen: \"127.0.0.1:{port}\"");
            let _ = writeln!(config, "max_payload: 8MB");
            let _ = writeln!(
                config,
                "jetstream {{ store_dir: {:?}{sync} }}",
                data.display().to_string()
            );
            if shape.servers > 1 {
                let _ = writeln!(
                    config,
                    "cluster {{ name: baa-bench, listen: \"127.0.0.1:{cluster_port}\", routes: [{}] }}",
                    routes.join(", ")
                );
            }
            let config_path = cluster.dir.path().join(format!("{name}.conf"));
            std::fs::write(&config_path, config)
                .map_err(|err| BenchError::io("cannot write a NATS configuration", err))?;
            let log = std::fs::File::create(cluster.dir.path().join(format!("{name}.log")))
                .map_err(|err| BenchError::io("cannot create a NATS log", err))?;
            let log_err = log
                .try_clone()
                .map_err(|err| BenchError::io("cannot create a NATS log", err))?;
            let child = Command::new(bin)
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|err| BenchError::io(format!("cannot start {}", bin.display()), err))?;
            cluster.children.push(child);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for &port in &cluster.ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    cluster.dir.disable_cleanup(true);
                    return Err(BenchError::Failed(format!(
                        "nats-server did not listen on {port}: {}; logs kept in {}",
                        cluster.log_tails(),
                        cluster.dir.path().display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(cluster)
    }

    /// Waits until a stream of `replicas` replicas can be made (the
    /// cluster has a JetStream leader and enough peers), by making one
    /// and deleting it.
    async fn wait_ready(&mut self, replicas: usize) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", self.ports[0]))
            .await
            .context("cannot connect to the NATS cluster")?;
        let context = jetstream::new(client);
        loop {
            let made = context
                .create_stream(Config {
                    name: "BAA_BENCH_PROBE".to_owned(),
                    subjects: vec!["baa-bench-probe".to_owned()],
                    num_replicas: replicas,
                    ..Config::default()
                })
                .await;
            match made {
                Ok(_) => {
                    let _ = context.delete_stream("BAA_BENCH_PROBE").await;
                    return Ok(());
                }
                Err(err) if Instant::now() > deadline => {
                    // The logs say why; they outlive the phase.
                    self.dir.disable_cleanup(true);
                    return Err(BenchError::Failed(format!(
                        "the NATS cluster made no stream of {replicas} replicas within \
                         {READY_TIMEOUT:?}: {err}; logs kept in {}",
                        self.dir.path().display()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The last lines of every server's log, for an error message.
    fn log_tails(&self) -> String {
        (1..=self.ports.len())
            .map(|index| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{index}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join(" | ");
                format!("n{index}: {tail}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The client URLs of the servers, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect()
    }

    /// The servers' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `count` distinct free loopback ports: each is held until all are
/// found, so none is found twice, then released for a server to bind.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|err| BenchError::io("cannot find a free port", err))?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect::<std::io::Result<_>>()
        .map_err(|err| BenchError::io("cannot find a free port", err))
}

/// The pinned `nats-server`, installed by the workspace's script when
/// missing.
fn installed_bin() -> Result<PathBuf> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/install-nats-server.sh"
    );
    let output = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| BenchError::io("cannot run scripts/install-nats-server.sh", err))?;
    if !output.status.success() {
        return Err(BenchError::Failed(
            "scripts/install-nats-server.sh failed".to_owned(),
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}
