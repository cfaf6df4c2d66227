"""Fixtures and helpers of the browser tests: real baa-logd processes, the
baa-log command line, and the system chromium driven by Playwright.

The Rust test `tests/browser.rs` builds the binaries and runs this suite
with their paths in BAA_LOGD_BIN and BAA_LOG_BIN; scripts/browser-setup.sh
installs chromium and the venv. By hand, from the repository root:

    cargo build -p baa-logd -p baa-log
    BAA_LOGD_BIN=target/debug/baa-logd BAA_LOG_BIN=target/debug/baa-log \\
        tests/browser/.venv/bin/python -m pytest -q tests/browser

What a test gets:

- `Server(data_dir, args=())`: one baa-logd process; `.start()`, `.stop()`,
  `.kill()`, `.restart()` (same port, same data), `.addr`, `.url`. Every
  server a test makes is stopped when the test ends, and its stderr is
  shown when the test fails.
- `server`: a started server over a fresh data directory, without tokens;
  `token_server(tmp_path, tokens=...)`: one with a token file.
- `cli(server, *args)`: runs `baa-log --server URL ARGS`;
  `LiveExec(server, task, run)`: a background `baa-log exec` whose command
  prints a line when the test says so (`.line("text")`), then ends
  (`.finish(exit_code)`).
- `browser` (one chromium for the session) and `page` (a fresh context and
  page per test). A page fails its test if the page logged a console error
  or threw an uncaught exception, unless the test allows it with
  `allow_errors(page, pattern)` or `@pytest.mark.allow_console_errors`.
  `shot(page, name)` saves `target/browser/NAME.png`; a failed test's page
  is saved as `target/browser/FAILED-<test>.png`.
- `wait_until(predicate)`: polls with a deadline.

Every wait has a deadline (seconds, at most TEST_TIMEOUT_S for a whole
test), so a broken page or server fails a test instead of hanging the
suite.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

# === Settings ===

# The repository's root: tests/browser/conftest.py is two levels below.
REPO = Path(__file__).resolve().parents[2]
# Where screenshots go; under target/ so that git and cargo clean see them
# as build output.
SHOTS_DIR = REPO / "target" / "browser"
# How long baa-logd may take to print its address: it binds at once, so this
# only matters on a loaded machine.
START_TIMEOUT_S = 15
# How long baa-logd may take to exit after SIGTERM; graceful shutdown ends
# every stream, so more than this is a bug worth a failure.
STOP_TIMEOUT_S = 10
# How long a restart keeps trying to bind the port the server had (the old
# socket may linger for a moment).
REBIND_TIMEOUT_S = 5
# Playwright's default for actions and for `expect` assertions.
ACTION_TIMEOUT_MS = 10_000
# Playwright's default for navigations.
NAVIGATION_TIMEOUT_MS = 15_000
# The most one test may take, fixtures included: a SIGALRM ends it with an
# error, so one hanging test cannot stall the suite (the Rust wrapper has a
# deadline for the whole suite as well).
TEST_TIMEOUT_S = 60

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def pytest_configure(config):
    """Declares the marker and checks the binaries before any test runs."""
    config.addinivalue_line(
        "markers",
        "allow_console_errors(*patterns): console errors and page errors "
        "matching one of these regular expressions (any, without patterns) "
        "do not fail the test",
    )
    for var in ("BAA_LOGD_BIN", "BAA_LOG_BIN"):
        _binary(var, usage_error=True)


def _binary(var, usage_error=False):
    """The path of a binary named by environment variable `var`.

    Fails with what to do when it is unset or not a file.
    """
    path = os.environ.get(var)
    if path and Path(path).is_file():
        return path
    message = (
        f"{var} must name the built binary (it is {path!r}): run the browser "
        "tests with `cargo test --test e2e -- browser`, which builds baa-logd "
        "and baa-log and sets BAA_LOGD_BIN and BAA_LOG_BIN"
    )
    if usage_error:
        raise pytest.UsageError(message)
    raise RuntimeError(message)


def chromium_path():
    """The system chromium ($BAA_CHROMIUM, else `chromium` on PATH)."""
    name = os.environ.get("BAA_CHROMIUM", "chromium")
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run `bash scripts/browser-setup.sh`",
            pytrace=False,
        )
    return path


def wait_until(predicate, timeout=10, interval=0.05, message="condition", page=None):
    """Calls `predicate` until it returns something true and returns that.

    Raises AssertionError naming `message` after `timeout` seconds. Pass
    the `page` when the predicate looks at what its event handlers record:
    Playwright's sync API delivers events only while a Playwright call
    runs, so the wait then sleeps with `page.wait_for_timeout`, not
    `time.sleep`. (For the DOM, prefer `expect(locator)`.)
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        if page is None:
            time.sleep(interval)
        else:
            page.wait_for_timeout(interval * 1000)


# === Process bookkeeping ===

# Every baa-logd and background exec of the running test, so that the
# test's end stops them all (by pid) and a failure report shows their
# stderr. Tests run one at a time, so one list is enough.
_LIVE = []


@pytest.fixture(autouse=True)
def _processes_and_deadline(request):
    """Bounds the test by TEST_TIMEOUT_S and stops its processes after it."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"the test took more than {TEST_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        while _LIVE:
            _LIVE.pop().close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (the page fixture takes a
    screenshot of a failed test) and adds the stderr of the test's
    processes to a failure's report."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        for process in _LIVE:
            report.sections.append(process.report_section())
    return report


def _read_tail(path, limit=20_000):
    """The last `limit` characters of a text file, or a note if it is gone."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        return f"({err})"
    return text if len(text) <= limit else "…" + text[-limit:]


def _stop_pid(proc, grace):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    return proc.returncode


# === baa-logd ===


class Server:
    """A baa-logd process over `data_dir`, on a free port of 127.0.0.1.

    `args` are further flags (e.g. `["--token-file", path]`). stderr goes to
    a file next to the data directory, shown when the test fails. After a
    `restart()` the server has the same address and data, as a restarted
    service has for its clients.
    """

    def __init__(self, data_dir, args=()):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.args = [str(arg) for arg in args]
        # "127.0.0.1:PORT" once started; kept over stop() for restart().
        self.addr = None
        # Secrets by token name, for servers made by token_server().
        self.tokens = {}
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.baa-logd.stderr"
        self._proc = None
        _LIVE.append(self)

    @property
    def url(self):
        """`http://127.0.0.1:PORT`, for baa-log and for the browser."""
        return f"http://{self.addr}"

    @property
    def pid(self):
        """The process id, or None when it is not running."""
        return self._proc.pid if self.running else None

    @property
    def running(self):
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, listen="127.0.0.1:0"):
        """Starts baa-logd on `listen` and waits (bounded) for the line
        `listening on ADDR` on its stdout. Returns self."""
        assert not self.running, "the server is running already"
        with open(self.stderr_path, "a") as stderr:
            stderr.write(f"--- baa-logd start, --listen {listen}\n")
            stderr.flush()
            self._proc = subprocess.Popen(
                [
                    _binary("BAA_LOGD_BIN"),
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    listen,
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                text=True,
            )
        # A thread reads stdout: the first line says where the server
        # listens, and reading on keeps the pipe from filling up.
        lines = queue.Queue()

        def pump(out):
            for line in out:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(self._proc.stdout,), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.kill()
            raise AssertionError(
                f"baa-logd printed no address within {START_TIMEOUT_S} s:\n"
                + _read_tail(self.stderr_path)
            ) from None
        if line is None or not line.startswith("listening on "):
            self.kill()
            raise AssertionError(
                f"baa-logd did not start (first line {line!r}):\n" + _read_tail(self.stderr_path)
            )
        self.addr = line.removeprefix("listening on ").strip()
        return self

    def stop(self):
        """SIGTERM, then waits up to STOP_TIMEOUT_S for a graceful exit;
        returns the exit code. A server that does not stop in time is
        killed and the test fails."""
        if not self.running:
            return self._proc.returncode if self._proc else None
        self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"baa-logd did not exit within {STOP_TIMEOUT_S} s of SIGTERM"
            ) from None

    def kill(self):
        """SIGKILL, as a crash: no graceful shutdown."""
        if self.running:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self):
        """Stops the server and starts it again on the same port over the
        same data directory, retrying the bind for up to REBIND_TIMEOUT_S.
        Returns self."""
        assert self.addr, "restart() needs a server that was started"
        self.stop()
        deadline = time.monotonic() + REBIND_TIMEOUT_S
        while True:
            try:
                return self.start(listen=self.addr)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self):
        """Stops the process by its pid, whatever its state (teardown)."""
        if self._proc is not None:
            _stop_pid(self._proc, grace=5)

    def report_section(self):
        """A (title, text) section for a failure report: the stderr."""
        return (f"baa-logd {self.addr} stderr", _read_tail(self.stderr_path))


# The tokens of `token_server` when a test names none: one per scope.
DEFAULT_TOKENS = [
    {"name": "reader", "secret": "reader-secret-0123456789", "scopes": ["read"]},
    {"name": "writer", "secret": "writer-secret-0123456789", "scopes": ["write"]},
    {"name": "admin", "secret": "admin-secret-0123456789", "scopes": ["admin"]},
]


def write_token_file(path, tokens):
    """Writes a token file (docs/security.md): one `[[tokens]]` table per
    dict of `tokens`, with `name`, `secret` (16 characters or more),
    `scopes` and optionally `tasks`. Returns the path."""
    tables = []
    for token in tokens:
        # A JSON string or list of strings is a valid TOML value.
        lines = ["[[tokens]]"] + [f"{key} = {json.dumps(value)}" for key, value in token.items()]
        tables.append("\n".join(lines))
    Path(path).write_text("\n\n".join(tables) + "\n")
    return Path(path)


def token_server(tmp_path, tokens=None, args=()):
    """A started server that requires tokens: `tokens` (default
    DEFAULT_TOKENS) in a token file. Its `.tokens` maps names to secrets."""
    tokens = DEFAULT_TOKENS if tokens is None else tokens
    path = write_token_file(tmp_path / "tokens.toml", tokens)
    server = Server(tmp_path / "data", args=["--token-file", path, *args])
    server.tokens = {token["name"]: token["secret"] for token in tokens}
    return server.start()


@pytest.fixture
def server(tmp_path):
    """A started baa-logd over a fresh data directory, without tokens."""
    return Server(tmp_path / "data").start()


# === baa-log ===


def _cli_env(server, env, token):
    """The environment of a baa-log process: ours, a spool directory of the
    test's own (not the user's home), a token, and `env` on top."""
    full = {**os.environ, "BAA_LOG_SPOOL_DIR": str(server.data_dir.parent / "spool")}
    full.pop("BAA_LOG_TOKEN", None)
    if token is not None:
        full["BAA_LOG_TOKEN"] = token
    full.update(env or {})
    return full


def cli(server, *args, input=None, check=True, timeout=60, env=None, token=None):
    """Runs `baa-log --server URL ARGS` and returns the CompletedProcess
    (text stdout and stderr).

    `token` is sent as BAA_LOG_TOKEN. With `check`, a non-zero exit fails
    the test, showing both outputs. `timeout` seconds bound it.
    """
    command = [_binary("BAA_LOG_BIN"), "--server", server.url, *map(str, args)]
    result = subprocess.run(
        command,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_cli_env(server, env, token),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
        )
    return result


# The command of LiveExec: copies one FIFO to stdout and one to stderr,
# then exits with the code written to a file.
_LIVE_COMMAND = 'cat "$1" & cat "$2" >&2; wait; read code < "$3"; exit "$code"'


class LiveExec:
    """A background `baa-log exec --task TASK --run RUN --no-pty` whose
    command writes what the test gives it, when the test gives it.

    The command copies two FIFOs to its stdout and stderr, so each
    `line(text)` reaches the server as a chunk at once. `finish(code)` ends
    the command with that exit code and waits for exec (bounded).
    `extra_args` go to exec (e.g. `["--step", "build"]`).
    """

    def __init__(self, server, task, run, extra_args=(), token=None, env=None):
        self.server = server
        self.task = task
        self.run = run
        base = server.data_dir.parent / f"exec-{task}-{run}"
        base.mkdir(parents=True, exist_ok=True)
        self._fifos = {"stdout": base / "stdout.fifo", "stderr": base / "stderr.fifo"}
        for fifo in self._fifos.values():
            os.mkfifo(fifo)
        self._code_file = base / "exit-code"
        self.stdout_path = base / "exec.stdout"
        self.stderr_path = base / "exec.stderr"
        command = [
            _binary("BAA_LOG_BIN"),
            "--server",
            server.url,
            "exec",
            "--task",
            task,
            "--run",
            run,
            "--no-pty",
            *map(str, extra_args),
            "--",
            "sh",
            "-c",
            _LIVE_COMMAND,
            "sh",
            str(self._fifos["stdout"]),
            str(self._fifos["stderr"]),
            str(self._code_file),
        ]
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_cli_env(server, env, token),
            )
        _LIVE.append(self)
        self._writers = {name: self._open_writer(fifo) for name, fifo in self._fifos.items()}

    def _open_writer(self, fifo, timeout=START_TIMEOUT_S):
        """Opens a FIFO for writing once the command opened it for reading
        (ENXIO until then), with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != 6 or time.monotonic() > deadline:  # ENXIO
                    raise AssertionError(
                        f"the exec's command never opened {fifo.name}:\n"
                        + _read_tail(self.stderr_path)
                    ) from err
                if self._proc.poll() is not None:
                    raise AssertionError(
                        f"baa-log exec exited with {self._proc.returncode}:\n"
                        + _read_tail(self.stderr_path)
                    ) from err
                time.sleep(0.02)
                continue
            os.set_blocking(fd, True)
            return fd

    def line(self, text, channel="stdout"):
        """Writes `text` and a newline on `channel` ("stdout"/"stderr")."""
        self.write(text + "\n", channel)

    def write(self, text, channel="stdout"):
        """Writes `text` as it is (no newline added) on `channel`."""
        os.write(self._writers[channel], text.encode())

    def finish(self, exit_code=0, timeout=30):
        """Ends the command with `exit_code` and waits up to `timeout`
        seconds for exec to deliver everything and exit; returns exec's
        exit code."""
        self._code_file.write_text(f"{exit_code}\n")
        for fd in self._writers.values():
            os.close(fd)
        self._writers = {}
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"baa-log exec did not exit within {timeout} s:\n" + _read_tail(self.stderr_path)
            ) from None

    def close(self):
        """Closes the FIFOs and stops exec by its pid (teardown)."""
        for fd in self._writers.values():
            os.close(fd)
        self._writers = {}
        _stop_pid(self._proc, grace=2)

    def report_section(self):
        """A (title, text) section for a failure report: exec's stderr."""
        return (f"baa-log exec {self.task}/{self.run} stderr", _read_tail(self.stderr_path))


# === The browser ===


@pytest.fixture(scope="session")
def browser():
    """One headless system chromium for the whole session."""
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            # As root (CI containers), chromium refuses to start sandboxed.
            args=["--no-sandbox"],
            timeout=30_000,
        )
        yield browser
        browser.close()


# What each live page logged: console errors and uncaught errors, and the
# patterns the test allows, keyed by the page.
_PAGE_ERRORS = {}


def allow_errors(page, *patterns):
    """Lets console errors and page errors matching one of the regular
    expressions `patterns` (every error, without patterns) happen on `page`
    without failing the test: for a test that provokes one on purpose."""
    _PAGE_ERRORS[page]["allowed"].extend(patterns or [".*"])


def page_errors(page):
    """The console errors and uncaught errors `page` logged so far, as
    strings ("console: …" / "pageerror: …")."""
    return list(_PAGE_ERRORS[page]["errors"])


@pytest.fixture
def page(browser, request):
    """A new browser context and page for this test.

    The page records console messages of type error and uncaught
    exceptions; at teardown, any not allowed (see `allow_errors` and the
    `allow_console_errors` marker) fails the test. A failed test's page is
    saved as a screenshot.
    """
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    page = context.new_page()
    state = {"errors": [], "allowed": []}
    _PAGE_ERRORS[page] = state
    marker = request.node.get_closest_marker("allow_console_errors")
    if marker is not None:
        state["allowed"].extend(marker.args or [".*"])

    def on_console(message):
        if message.type == "error":
            where = message.location.get("url", "")
            state["errors"].append(f"console: {message.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: state["errors"].append(f"pageerror: {error}"))
    try:
        yield page
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.failed:
            shot(page, f"FAILED-{_safe_name(request.node.name)}")
        unexpected = [
            error
            for error in state["errors"]
            if not any(re.search(pattern, error) for pattern in state["allowed"])
        ]
        assert not unexpected, "the page logged errors:\n" + "\n".join(unexpected)
    finally:
        del _PAGE_ERRORS[page]
        context.close()


def _safe_name(name):
    """`name` with only characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def shot(page, name):
    """Saves a screenshot of `page` as `target/browser/NAME.png` and
    returns its path."""
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SHOTS_DIR / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), timeout=ACTION_TIMEOUT_MS)
    return path
