//! `baa-log exec` with the command in a pseudo-terminal: what the command
//! sees (terminals, window sizes, keys) and what the run stores. Real
//! processes against a real server; where baa-log itself must sit at a
//! terminal, the test opens one and plays the user at its master.

use std::{
    fs::File,
    future::Future,
    io::{Read, Write},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    process::{ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use nix::{
    fcntl::{FcntlArg, FdFlag, fcntl},
    libc,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    pty::{OpenptyResult, Winsize, openpty},
    sys::termios::{LocalFlags, OutputFlags, Termios, tcgetattr},
};
use serde_json::Value;
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{
    cli::{baa_log, channel_text, stored_entries, text},
    util::{TestServer, process::cli_binary},
};

/// How long any one run of baa-log may take before the test fails.
const BOUND: Duration = Duration::from_secs(60);

/// `fut`, failing the test when it takes longer than [`BOUND`].
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("baa-log ends in time")
}

/// Runs `baa-log exec --task t --run RUN MODE... -- COMMAND...` with its
/// stdout and stderr piped and no stdin.
async fn exec(server: &TestServer, run: &str, mode: &[&str], command: &[&str]) -> Output {
    let mut args = vec!["exec", "--task", "t", "--run", run];
    args.extend(mode);
    args.push("--");
    args.extend(command);
    // Built (once) before the clock starts.
    cli_binary();
    bounded(baa_log(server, &args)).await
}

/// The stored run's state file.
fn state(server: &TestServer, run: &str) -> Value {
    let path = server.data_dir.join("t").join(run).join("state.json");
    serde_json::from_slice(&std::fs::read(path).expect("a state")).expect("JSON")
}

/// The data of the run's `worker_started` event.
fn started(entries: &[Value]) -> &Value {
    &entries
        .iter()
        .find(|entry| entry["type"] == "worker_started")
        .expect("a worker_started event")["data"]
}

/// A Python program that prints whether its stdout, stderr and stdin are
/// terminals.
const WHICH_ARE_TERMINALS: &str =
    "import sys; print(sys.stdout.isatty(), sys.stderr.isatty(), sys.stdin.isatty())";

/// `--pty` gives the command a terminal for stdin, stdout and stderr even
/// when baa-log's own output is a pipe, and `--no-pty` gives it pipes; the
/// run's `worker_started` event says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_and_no_pty_decide_whether_the_command_sees_terminals() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let command = ["python3", "-c", WHICH_ARE_TERMINALS];

    let output = exec(&server, "pty", &["--pty"], &command).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "True True True\n");
    let entries = stored_entries(&server, "t", "pty");
    assert_eq!(channel_text(&entries, "stdout"), "True True True\n");
    assert_eq!(started(&entries)["stdio"], "pty");

    let output = exec(&server, "pipes", &["--no-pty"], &command).await;
    assert!(output.status.success(), "{output:?}");
    let entries = stored_entries(&server, "t", "pipes");
    assert_eq!(channel_text(&entries, "stdout"), "False False False\n");
    assert_eq!(started(&entries)["stdio"], "pipes");

    // Without a flag and without a terminal of its own: pipes, as before.
    let output = exec(&server, "auto", &[], &command).await;
    assert!(output.status.success(), "{output:?}");
    let entries = stored_entries(&server, "t", "auto");
    assert_eq!(channel_text(&entries, "stdout"), "False False False\n");
    server.stop().await;
}

/// A program that colours its output at a terminal does so in a pty, and
/// the escape sequences are stored; with pipes it writes plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_survive_in_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let listed = tempfile::tempdir().unwrap();
    std::fs::create_dir(listed.path().join("subdir")).unwrap();
    let listed = listed.path().to_str().unwrap();
    let command = ["env", "-u", "LS_COLORS", "ls", "--color=auto", listed];

    let output = exec(&server, "pty", &["--pty"], &command).await;
    assert!(output.status.success(), "{output:?}");
    let stored = channel_text(&stored_entries(&server, "t", "pty"), "stdout");
    assert!(stored.contains("\u{1b}["), "{stored:?}");
    assert!(stored.contains("subdir"), "{stored:?}");

    let output = exec(&server, "pipes", &["--no-pty"], &command).await;
    assert!(output.status.success(), "{output:?}");
    let stored = channel_text(&stored_entries(&server, "t", "pipes"), "stdout");
    assert_eq!(stored, "subdir\n");
    server.stop().await;
}

/// What the command writes is stored as written: a `\n` stays a `\n` (the
/// terminal adds no `\r`), a `\r` it writes is kept, and stderr is on the
/// stdout channel, in the order written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_stores_line_ends_and_carriage_returns_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "printf 'a\\rb\\n'; printf 'to stderr\\n' >&2; printf 'c\\n'";
    let output = exec(&server, "r", &["--pty"], &["sh", "-c", script]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "a\rb\nto stderr\nc\n");
    let entries = stored_entries(&server, "t", "r");
    assert_eq!(channel_text(&entries, "stdout"), "a\rb\nto stderr\nc\n");
    assert_eq!(channel_text(&entries, "stderr"), "");
    server.stop().await;
}

/// `--split-pty` gives stderr a terminal of its own: both are terminals to
/// the command, and each is stored on its own channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_pty_keeps_stderr_on_its_own_channel() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "import sys\n\
        print('out', sys.stdout.isatty(), sys.stdin.isatty(), flush=True)\n\
        print('err', sys.stderr.isatty(), file=sys.stderr)";
    let output = exec(&server, "r", &["--split-pty"], &["python3", "-c", script]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "out True True\n");
    assert!(text(&output.stderr).ends_with("err True\n"), "{output:?}");
    let entries = stored_entries(&server, "t", "r");
    assert_eq!(channel_text(&entries, "stdout"), "out True True\n");
    assert_eq!(channel_text(&entries, "stderr"), "err True\n");
    assert_eq!(started(&entries)["stdio"], "split-pty");
    server.stop().await;
}

/// In a pty the command's exit code is baa-log's and the run's, and a
/// command killed by a signal exits 128 + its number, as with pipes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_keeps_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let output = exec(&server, "seven", &["--pty"], &["sh", "-c", "exit 7"]).await;
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(state(&server, "seven")["status"], "failed");
    assert_eq!(state(&server, "seven")["exitCode"], 7);

    let output = exec(
        &server,
        "killed",
        &["--pty"],
        &["sh", "-c", "kill -TERM $$"],
    )
    .await;
    assert_eq!(output.status.code(), Some(143), "{output:?}");
    assert_eq!(state(&server, "killed")["exitCode"], 143);

    let output = exec(&server, "missing", &["--pty"], &["/no/such/program"]).await;
    assert_eq!(output.status.code(), Some(127), "{output:?}");
    server.stop().await;
}

/// SIGTERM and SIGINT sent to baa-log (not typed at a terminal) reach the
/// command in its pty, which is in a session of its own, and its whole
/// process group: the shell's `sleep` too, so its trap runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_command_gets_the_signals_sent_to_baa_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for (run, signal) in [("term", "TERM"), ("int", "INT")] {
        let script = format!("trap 'echo caught; exit 7' {signal}; echo ready; sleep 30");
        let child = Command::new(cli_binary())
            .args([
                "exec", "--task", "t", "--run", run, "--pty", "--", "sh", "-c", &script,
            ])
            .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let stdout_log = dir.path().join("t").join(run).join("stdout.log");
        for _ in 0..2000 {
            if std::fs::read_to_string(&stdout_log).is_ok_and(|text| text.contains("ready")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = bounded(child.wait_with_output()).await.unwrap();
        assert_eq!(output.status.code(), Some(7), "{signal}: {output:?}");
        let entries = stored_entries(&server, "t", run);
        // The shell may report its `sleep` killed ("Terminated") first.
        let stdout = channel_text(&entries, "stdout");
        assert!(
            stdout.starts_with("ready\n") && stdout.ends_with("caught\n"),
            "{signal}: {stdout:?}"
        );
        assert_eq!(state(&server, run)["exitCode"], 7);
    }
    server.stop().await;
}

/// A large output through the pty arrives whole, its last line included,
/// though the command exits as soon as it has written it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_loses_no_tail_of_a_large_output() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let output = exec(&server, "r", &["--pty"], &["seq", "1", "200000"]).await;
    assert!(output.status.success(), "{output:?}");
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert!(
        text(&output.stdout) == expected,
        "the terminal shows it all"
    );
    let stored = channel_text(&stored_entries(&server, "t", "r"), "stdout");
    assert_eq!(stored.lines().count(), 200_000);
    assert!(stored == expected, "the run holds it all, in order");
    server.stop().await;
}

/// Input that is not a terminal is passed on through the pty and ends:
/// the command reads it all, a last line without its `\n` too, then end of
/// file; it is not echoed into the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_passes_piped_input_on_and_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "import sys; data = sys.stdin.read(); print(repr(data), sys.stdin.isatty())";
    let mut child = Command::new(cli_binary())
        .args([
            "exec", "--task", "t", "--run", "r", "--pty", "--", "python3", "-c", script,
        ])
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo").await.unwrap();
    drop(stdin);
    let output = bounded(child.wait_with_output()).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let entries = stored_entries(&server, "t", "r");
    assert_eq!(channel_text(&entries, "stdout"), "'one\\ntwo' True\n");
    server.stop().await;
}

/// A terminal the test opens for baa-log, as a terminal emulator would:
/// baa-log's stdin, stdout and stderr, and its controlling terminal. The
/// test types and resizes at the master; a thread keeps reading what is
/// shown, so that baa-log never blocks on a full terminal.
struct OuterTerminal {
    /// The test's side.
    master: File,
    /// The slave, kept open to look at its mode.
    slave: OwnedFd,
    /// Everything shown so far.
    screen: Arc<Mutex<Vec<u8>>>,
    /// Tells the reading thread to stop.
    stop: Arc<AtomicBool>,
}

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, Winsize);

impl OuterTerminal {
    /// Opens a terminal of `columns` x `rows`.
    fn open(columns: u16, rows: u16) -> Self {
        let OpenptyResult { master, slave } = openpty(&size(columns, rows), None).unwrap();
        for fd in [&master, &slave] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        }
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (mut reader, shown, stopped) =
            (master.try_clone().unwrap(), screen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) == 0 {
                    continue;
                }
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => shown.lock().unwrap().extend_from_slice(&buf[..read]),
                }
            }
        });
        Self {
            master,
            slave,
            screen,
            stop,
        }
    }

    /// Starts `baa-log ARGS` at this terminal, in a session of its own.
    fn start(&self, server: &TestServer, args: &[&str]) -> tokio::process::Child {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        let mut command = Command::new(cli_binary());
        command
            .args(args)
            .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
            .env_remove("BAA_LOG_TOKEN")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio());
        // SAFETY: only setsid(2) and ioctl(2) between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().expect("baa-log starts")
    }

    /// Waits until `needle` has been shown; fails the test after a while.
    async fn wait_for(&self, needle: &str) {
        for _ in 0..2000 {
            if String::from_utf8_lossy(&self.screen.lock().unwrap()).contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{needle:?} never shown; the screen: {:?}", self.shown());
    }

    /// What was shown so far.
    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Types `keys`.
    fn type_keys(&self, keys: &[u8]) {
        (&self.master).write_all(keys).unwrap();
    }

    /// Resizes the terminal, as a terminal emulator does when its window
    /// is resized: its foreground process group gets SIGWINCH.
    fn resize(&self, columns: u16, rows: u16) {
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { set_window_size(self.master.as_raw_fd(), &size(columns, rows)) }.unwrap();
    }

    /// The terminal's mode now.
    fn mode(&self) -> Termios {
        tcgetattr(self.slave.as_fd()).unwrap()
    }
}

impl Drop for OuterTerminal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A window size.
fn size(columns: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Waits for baa-log to exit, within [`BOUND`].
async fn exit_of(mut child: tokio::process::Child) -> ExitStatus {
    bounded(child.wait()).await.unwrap()
}

/// At a terminal, without a flag, the command runs in a pty: it sees
/// terminals, the window size of baa-log's terminal, and a resize of it;
/// baa-log's terminal is raw (output processing kept) while the command
/// runs, and has its mode back afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_the_command_gets_one_of_the_same_size_and_follows_resizes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let terminal = OuterTerminal::open(111, 33);
    let before = terminal.mode();
    let script = "import os, signal, sys\n\
        print(sys.stdout.isatty(), sys.stderr.isatty(), sys.stdin.isatty())\n\
        size = os.get_terminal_size()\n\
        print('size', size.columns, size.lines)\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n\
        print('ready', flush=True)\n\
        got = signal.sigtimedwait({signal.SIGWINCH}, 30)\n\
        size = os.get_terminal_size()\n\
        print('resized' if got else 'not resized', size.columns, size.lines)";
    let child = terminal.start(
        &server,
        &[
            "exec", "--task", "t", "--run", "r", "--", "python3", "-c", script,
        ],
    );
    terminal.wait_for("ready").await;
    let during = terminal.mode();
    assert!(!during.local_flags.contains(LocalFlags::ICANON), "raw");
    assert!(!during.local_flags.contains(LocalFlags::ECHO), "raw");
    assert!(!during.local_flags.contains(LocalFlags::ISIG), "raw");
    assert!(
        during
            .output_flags
            .contains(OutputFlags::OPOST | OutputFlags::ONLCR),
        "output processing kept"
    );
    terminal.resize(120, 40);
    let status = exit_of(child).await;
    assert!(status.success(), "{status:?}: {}", terminal.shown());

    let entries = stored_entries(&server, "t", "r");
    assert_eq!(
        channel_text(&entries, "stdout"),
        "True True True\nsize 111 33\nready\nresized 120 40\n"
    );
    assert_eq!(started(&entries)["stdio"], "pty");
    let after = terminal.mode();
    assert_eq!(after.local_flags, before.local_flags, "mode restored");
    assert_eq!(after.input_flags, before.input_flags, "mode restored");
    server.stop().await;
}

/// Ctrl-C typed at baa-log's terminal reaches the command through its own
/// terminal, as SIGINT: the command is interrupted, baa-log exits 130, the
/// run is failed with that code, and the terminal has its mode back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_terminal_interrupts_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let terminal = OuterTerminal::open(80, 24);
    let before = terminal.mode();
    let script = "import time; print('ready', flush=True); time.sleep(30); print('slept')";
    let child = terminal.start(
        &server,
        &[
            "exec", "--task", "t", "--run", "r", "--", "python3", "-c", script,
        ],
    );
    terminal.wait_for("ready").await;
    terminal.type_keys(b"\x03");
    let status = exit_of(child).await;
    assert_eq!(status.code(), Some(130), "{}", terminal.shown());

    let entries = stored_entries(&server, "t", "r");
    let stdout = channel_text(&entries, "stdout");
    assert!(stdout.contains("KeyboardInterrupt"), "{stdout:?}");
    assert!(!stdout.contains("slept"), "{stdout:?}");
    assert_eq!(state(&server, "r")["status"], "failed");
    assert_eq!(state(&server, "r")["exitCode"], 130);
    assert_eq!(terminal.mode().local_flags, before.local_flags);
    server.stop().await;
}

/// Keys typed at baa-log's terminal reach the command as typed at its
/// own: a line (Enter sends `\r`, which the command's terminal makes
/// `\n`) is echoed and read, and Ctrl-D ends the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_lines_reach_the_command_and_ctrl_d_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let terminal = OuterTerminal::open(80, 24);
    let script = "import sys\n\
        print('ready', flush=True)\n\
        for line in sys.stdin:\n    print('got', repr(line), flush=True)\n\
        print('end')";
    let child = terminal.start(
        &server,
        &[
            "exec", "--task", "t", "--run", "r", "--", "python3", "-c", script,
        ],
    );
    terminal.wait_for("ready").await;
    terminal.type_keys(b"hello\r");
    terminal.wait_for("got").await;
    terminal.type_keys(b"\x04");
    let status = exit_of(child).await;
    assert!(status.success(), "{status:?}: {}", terminal.shown());
    let stdout = channel_text(&stored_entries(&server, "t", "r"), "stdout");
    assert_eq!(stdout, "ready\nhello\ngot 'hello\\n'\nend\n");
    server.stop().await;
}
