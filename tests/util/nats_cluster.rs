//! A NATS JetStream cluster on loopback for tests: real `nats-server`
//! processes, each with its own data directory and ports, stopped by pid
//! when the cluster is dropped.
//!
//! The binary is `$BAA_NATS_SERVER`, or the pinned one that
//! `scripts/install-nats-server.sh` installs (it is run here when the
//! binary is missing). The servers sync every write before they
//! acknowledge it (`sync_interval: always`), as deployments should.
//!
//! Std only, so that the store crate's tests use it too.

#![allow(dead_code, unreachable_pub)]

use std::{
    fmt::Write as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// One server of the cluster.
#[derive(Debug)]
struct Node {
    /// Its name (`n1`, `n2`...), as JetStream reports leaders.
    name: String,
    /// Its client port.
    port: u16,
    /// Its configuration file.
    config: PathBuf,
    /// The process, while it runs.
    child: Option<Child>,
}

/// A cluster of `nats-server` processes.
#[derive(Debug)]
pub struct NatsCluster {
    /// Where configurations, data and logs are.
    dir: tempfile::TempDir,
    /// The binary.
    bin: PathBuf,
    /// The servers.
    nodes: Vec<Node>,
}

/// A free loopback port (released at once; the servers bind it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The workspace root.
fn workspace_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("scripts/install-nats-server.sh").exists() {
        assert!(dir.pop(), "the workspace root is above the crate");
    }
    dir
}

/// The `nats-server` binary, installed when missing (once per process:
/// tests that start clusters at the same time share one installation).
pub fn nats_server_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_or_install).clone()
}

/// `$BAA_NATS_SERVER`, or the pinned binary, installed now if missing.
fn find_or_install() -> PathBuf {
    if let Some(bin) = std::env::var_os("BAA_NATS_SERVER") {
        return PathBuf::from(bin);
    }
    let root = workspace_root();
    let output = Command::new("bash")
        .arg(root.join("scripts/install-nats-server.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs scripts/install-nats-server.sh");
    assert!(
        output.status.success(),
        "scripts/install-nats-server.sh failed: the cluster tests need nats-server"
    );
    PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
}

impl NatsCluster {
    /// Starts `size` servers clustered on loopback, and waits until each
    /// takes connections.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bin = nats_server_bin();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(index, (port, cluster_port))| {
                let name = format!("n{}", index + 1);
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|(_, other)| other != cluster_port)
                    .map(|(_, other)| format!("\"nats-route://127.0.0.1:{other}\""))
                    .collect();
                let data = dir.path().join(&name);
                std::fs::create_dir_all(&data).expect("a data directory");
                let mut config = String::new();
                writeln!(config, "server_name: {name}").unwrap();
                writeln!(config, "listen: \"127.0.0.1:{port}\"").unwrap();
                writeln!(config, "max_payload: 8MB").unwrap();
                writeln!(
                    config,
                    "jetstream {{ store_dir: {:?}, sync_interval: always }}",
                    data.display().to_string()
                )
                .unwrap();
                if size > 1 {
                    writeln!(
                        config,
                        "cluster {{ name: baa, listen: \"127.0.0.1:{cluster_port}\", routes: [{}] }}",
                        routes.join(", ")
                    )
                    .unwrap();
                }
                let path = dir.path().join(format!("{name}.conf"));
                std::fs::write(&path, config).expect("a configuration file");
                Node {
                    name,
                    port: *port,
                    config: path,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { dir, bin, nodes };
        for index in 0..size {
            cluster.spawn(index);
        }
        for index in 0..size {
            cluster.wait_listening(index);
        }
        cluster
    }

    /// Starts server `index` from its configuration.
    fn spawn(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", node.name)))
            .expect("a log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        node.child = Some(child);
    }

    /// Waits until server `index` takes connections.
    fn wait_listening(&self, index: usize) {
        let port = self.nodes[index].port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen on {port}; see {}",
                self.nodes[index].name,
                self.log_path(index).display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URLs of every server.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The client URLs, comma-separated, as `--nats-url` takes them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The pid of server `index`, while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes[index].child.as_ref().map(Child::id)
    }

    /// Kills server `index` with SIGKILL, by pid.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("the server is reaped");
        }
    }

    /// Starts server `index` again, on its data directory, and waits until
    /// it takes connections.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.wait_listening(index);
    }

    /// Server `index`'s log file.
    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.nodes[index].name))
    }

    /// The directory of the cluster's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Server `index`'s monitoring-free view of whether it runs.
    pub fn is_running(&mut self, index: usize) -> bool {
        match self.nodes[index].child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}
