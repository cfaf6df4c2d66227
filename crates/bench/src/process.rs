//! Servers the harness starts as processes of their own: `baa-logd` (the
//! release build of this workspace) and the harness's own no-op server.
//!
//! Each starts on `127.0.0.1:0` and prints `listening on ADDR` on stdout,
//! which is read to learn the port. A separate process means its CPU time
//! and memory can be read from `/proc` apart from the client's.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::error::{BenchError, Context, Result};

/// A server process; killed when dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The process.
    child: Child,
    /// When `spawn` was called.
    pub(crate) spawned_at: Instant,
    /// When the `listening on` line was read.
    pub(crate) listening_at: Instant,
}

impl ServerProcess {
    /// Starts `program` with `args` and waits for its `listening on` line.
    pub(crate) async fn start(program: &Path, args: Vec<OsString>) -> Result<Self> {
        let program = program.to_path_buf();
        tokio::task::spawn_blocking(move || Self::start_blocking(&program, &args))
            .await
            .context("a start task failed")?
    }

    /// Starts the process; blocking.
    fn start_blocking(program: &Path, args: &[OsString]) -> Result<Self> {
        let spawned_at = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| BenchError::io(format!("cannot start {}", program.display()), err))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|err| BenchError::io("cannot read the server's first line", err))?;
        let listening_at = Instant::now();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| {
                BenchError::Failed(format!(
                    "{} printed {line:?} instead of `listening on ADDR`",
                    program.display()
                ))
            })?
            .parse()
            .context("the server printed a bad address")?;
        Ok(Self {
            addr,
            child,
            spawned_at,
            listening_at,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address for a gRPC channel.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits until the process exited.
    pub(crate) async fn terminate(mut self) -> Result<()> {
        let pid = self.child.id();
        tokio::task::spawn_blocking(move || {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .map_err(|err| BenchError::io("cannot run kill", err))?;
            if !sent.success() {
                return Err(BenchError::Failed(format!("kill -TERM {pid} failed")));
            }
            // A graceful shutdown that hangs must not hang the benchmark.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let exited = self
                    .child
                    .try_wait()
                    .map_err(|err| BenchError::io("cannot wait for the server", err))?;
                if exited.is_some() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(BenchError::Failed(format!(
                        "process {pid} did not stop within 10 s of SIGTERM; killed"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .await
        .context("a stop task failed")?
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the gRPC health service at `url` until it says `SERVING`, polling
/// every millisecond for at most `timeout`.
pub(crate) async fn wait_serving(url: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned()).context("bad url")?;
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel);
            loop {
                let answer = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if let Ok(answer) = answer
                    && answer.into_inner().status == ServingStatus::Serving as i32
                {
                    return Ok(Instant::now());
                }
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Failed(format!(
                "{url} was not SERVING within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Where the programs under test are.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    /// `baa-logd`.
    pub(crate) baa_logd: PathBuf,
    /// This harness, for its `noop-server` subcommand.
    pub(crate) bench: PathBuf,
}

impl Programs {
    /// `baa-logd` from `server_bin`, or built by cargo with the harness's
    /// own profile (release for a real run, as `cargo run --release`
    /// builds the harness).
    pub(crate) fn find(server_bin: Option<PathBuf>) -> Result<Self> {
        let baa_logd = match server_bin {
            Some(path) => path,
            None => cargo_build("baa-logd", "baa-logd")?,
        };
        let bench = std::env::current_exe()
            .map_err(|err| BenchError::io("cannot find the harness's own binary", err))?;
        Ok(Self { baa_logd, bench })
    }
}

/// `baa-log` from `cli_bin`, or built by cargo with the harness's own
/// profile, as `baa-logd` is. Only W8 needs it, so it is built only then.
pub(crate) fn find_cli(cli_bin: Option<PathBuf>) -> Result<PathBuf> {
    match cli_bin {
        Some(path) => Ok(path),
        None => cargo_build("baa-log", "baa-log"),
    }
}

/// Builds `bin` of `package` in this workspace with the harness's own
/// profile and target, and returns its path.
fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    crate::progress::phase(&format!("building {bin}"));
    Ok(escargot::CargoBuild::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .package(package)
        .bin(bin)
        .current_release()
        .current_target()
        .run()
        .context(format!("cannot build {bin}"))?
        .path()
        .to_path_buf())
}
