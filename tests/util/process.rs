//! `baa-logd` as a separate process, for tests that kill it.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::OnceLock,
};

/// The path of the `baa-logd` binary, built once per test run.
pub fn server_binary() -> &'static std::path::PathBuf {
    binary()
}

/// The path of the `baa-logd` binary, built once per test run.
fn binary() -> &'static std::path::PathBuf {
    static BINARY: OnceLock<std::path::PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("baa-logd", "baa-logd"))
}

/// The path of the `baa-log` command line, built once per test run.
pub fn cli_binary() -> &'static std::path::PathBuf {
    static BINARY: OnceLock<std::path::PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("baa-log", "baa-log"))
}

/// Builds a binary of the workspace (a no-op when it is fresh).
fn build(package: &str, bin: &str) -> std::path::PathBuf {
    escargot::CargoBuild::new()
        .package(package)
        .bin(bin)
        .current_target()
        .run()
        .unwrap_or_else(|err| panic!("{bin} builds: {err}"))
        .path()
        .to_path_buf()
}

/// A running `baa-logd` process.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl ServerProcess {
    /// Starts `baa-logd` on a free port over `data_dir` and waits until it
    /// listens.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0".parse().expect("an address"))
    }

    /// Starts `baa-logd` on `listen` (to come back on the address clients
    /// know after a restart) and waits until it listens.
    pub fn start_on(data_dir: &Path, listen: SocketAddr) -> Self {
        Self::start_with_args(data_dir, &["--listen", &listen.to_string()])
    }

    /// Starts `baa-logd` over `data_dir` with `args` (which must include
    /// `--listen`) and waits until it listens.
    pub fn start_with_args(data_dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("baa-logd starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("a first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Self { addr, child }
    }

    /// Kills the process at once.
    pub fn stop_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
