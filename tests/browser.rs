//! The browser tests: the pytest suite of `tests/browser/` drives the
//! system chromium (through Playwright's Python API) against real
//! `baa-logd` processes, and uses the `baa-log` command line to make runs.
//! This test builds both binaries, runs the suite with their paths in
//! `BAA_LOGD_BIN` and `BAA_LOG_BIN`, and passes when pytest does.
//!
//! chromium and the suite's virtual environment are installed by
//! `scripts/browser-setup.sh`, which the test command runs; without them
//! this test fails and says so. Fixtures and helpers are documented in
//! `tests/browser/conftest.py`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::util::process::{cli_binary, server_binary};

/// How long the whole suite may take. It takes seconds today; each test is
/// bounded by its own deadline too (`TEST_TIMEOUT_S` in conftest.py), so
/// this only catches a suite that grew too slow or a hung interpreter.
const SUITE_TIMEOUT: Duration = Duration::from_secs(150);

/// The repository's root, where pytest runs.
fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with what to do when something the setup script installs is
/// missing.
fn require_installed(found: bool, what: &str) {
    assert!(
        found,
        "{what} is not installed: run `bash scripts/browser-setup.sh`, \
         or the whole test command, `bash scripts/test.sh`"
    );
}

/// Whether `name` is an executable on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// The page tests and the harness's own tests pass against the built
/// `baa-logd` and `baa-log`, in the system chromium.
#[test]
fn the_browser_suite_passes() {
    let python: PathBuf = repo_dir().join("tests/browser/.venv/bin/python");
    require_installed(python.exists(), "the browser tests' virtual environment");
    let chromium = std::env::var("BAA_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    require_installed(
        Path::new(&chromium).is_file() || on_path(&chromium),
        "chromium",
    );

    // pytest's temporary directories (data directories, server stderr)
    // and its output go here, removed when the test ends.
    let scratch = tempfile::tempdir().unwrap();
    let output = scratch.path().join("pytest.out");
    let output_file = std::fs::File::create(&output).unwrap();
    let mut child = Command::new(&python)
        .args(["-m", "pytest", "-q", "tests/browser", "--basetemp"])
        .arg(scratch.path().join("tmp"))
        .current_dir(repo_dir())
        .env("BAA_LOGD_BIN", server_binary())
        .env("BAA_LOG_BIN", cli_binary())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(output_file.try_clone().unwrap())
        .stderr(output_file)
        .spawn()
        .unwrap_or_else(|err| panic!("{} does not start: {err}", python.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SUITE_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report = std::fs::read_to_string(&output).unwrap();
    match status {
        Some(status) if status.success() => print!("{report}"),
        Some(status) => panic!(
            "the browser tests failed ({status}); screenshots of failed pages are in \
             target/browser/:\n{report}"
        ),
        None => panic!("the browser tests took more than {SUITE_TIMEOUT:?}:\n{report}"),
    }
}
