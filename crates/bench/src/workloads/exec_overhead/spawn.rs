//! One timed run of a program, its output drained by the harness: into a
//! pipe, or onto a pseudo-terminal the harness opens.
//!
//! The clock runs from just before the spawn to the later of the
//! program's exit and the end of its output (end of file on the pipe, or
//! `EIO` on the terminal's master once every holder of the slave side has
//! closed it), so it covers everything the program and its children did.
//! Opening the terminal is not timed. The same two moments are also
//! read on the system's monotonic clock, which a program can read too, so
//! that W8 can set the command's own start and end between them.
//!
//! On a terminal the program gets the slave side as stdin, stdout and
//! stderr, as a program started from a shell does, but not as its
//! controlling terminal (no new session): `isatty` holds, the window
//! size can be read, and no signal comes from the terminal. The kernel's
//! default line discipline stays on, so every `\n` reaches the master as
//! `\r\n`, as it reaches a terminal emulator.
//!
//! CPU time is the harness's `RUSAGE_CHILDREN` before and after: the
//! program's and that of every descendant it waited for (the command
//! under `baa-log exec`). Nothing else the harness starts ends meanwhile,
//! since W8 runs alone and its server lives until the end.

use std::{
    ffi::OsString,
    fs::File,
    io::Read,
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    time::Instant,
};

use nix::{
    errno::Errno,
    pty::{Winsize, openpty},
    sys::resource::{UsageWho, getrusage},
};

use crate::{
    error::{BenchError, Context, Result},
    print_lines::monotonic_secs,
};

/// How much of the drained output is read at once.
const READ_BYTES: usize = 256 * 1024;

/// How much of a program's stderr is kept, for an error message.
const STDERR_KEPT: usize = 16 * 1024;

/// Where the program's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Stdout into a pipe the harness drains (stderr into another);
    /// stdin is `/dev/null`.
    Pipe,
    /// Stdin, stdout and stderr on a pseudo-terminal whose master the
    /// harness drains.
    Terminal,
}

impl Output {
    /// The name in the report.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Pipe => "pipe",
            Self::Terminal => "terminal",
        }
    }
}

/// What the harness read from the program's stdout (with a terminal, its
/// stdout and stderr together).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Drained {
    /// Bytes, `\r` left out (a terminal adds one before every `\n`).
    pub(super) bytes: u64,
    /// Newlines.
    pub(super) lines: u64,
}

/// One timed run.
#[derive(Debug)]
pub(super) struct Finished {
    /// From before the spawn to the exit and the end of the output.
    pub(super) secs: f64,
    /// The monotonic clock just before the spawn, seconds.
    pub(super) spawned_at: f64,
    /// The monotonic clock at the exit and the end of the output, seconds.
    pub(super) ended_at: f64,
    /// CPU time of the program and the descendants it waited for.
    pub(super) cpu_secs: f64,
    /// How it ended.
    pub(super) status: ExitStatus,
    /// Its output, as drained.
    pub(super) drained: Drained,
    /// The start of its stderr, when it went to a pipe of its own.
    pub(super) stderr: String,
}

/// Runs `program` with `args` and the variables `envs` added to the
/// harness's environment, its output on `output`, and times it.
pub(super) async fn timed(
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    output: Output,
) -> Result<Finished> {
    tokio::task::spawn_blocking(move || timed_blocking(&program, &args, &envs, output))
        .await
        .context("a timed run failed")?
}

/// [`timed`]; blocking.
fn timed_blocking(
    program: &std::path::Path,
    args: &[OsString],
    envs: &[(OsString, OsString)],
    output: Output,
) -> Result<Finished> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .envs(envs.iter().cloned());
    let cannot_start =
        |err: std::io::Error| BenchError::io(format!("cannot start {}", program.display()), err);
    let cpu_before = children_cpu_secs()?;
    let (spawned_at, start, mut child, drain, stderr) = match output {
        Output::Pipe => {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let spawned_at = monotonic_secs()?;
            let start = Instant::now();
            let mut child = command.spawn().map_err(cannot_start)?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let stderr = child.stderr.take().expect("stderr is piped");
            let drain = std::thread::spawn(move || drain(stdout));
            let stderr = std::thread::spawn(move || keep_start(stderr));
            (spawned_at, start, child, drain, Some(stderr))
        }
        Output::Terminal => {
            let terminal = open_terminal()?;
            let slave = |fd: &OwnedFd| {
                fd.try_clone()
                    .map(Stdio::from)
                    .map_err(|err| BenchError::io("cannot duplicate the terminal", err))
            };
            command
                .stdin(slave(&terminal.slave)?)
                .stdout(slave(&terminal.slave)?)
                .stderr(Stdio::from(terminal.slave));
            let spawned_at = monotonic_secs()?;
            let start = Instant::now();
            let child = command.spawn().map_err(cannot_start);
            // The command holds the harness's copies of the slave side;
            // the master reads EIO only once every copy is closed.
            drop(command);
            let child = child?;
            let master = File::from(terminal.master);
            let drain = std::thread::spawn(move || drain(master));
            (spawned_at, start, child, drain, None)
        }
    };
    let status = child
        .wait()
        .map_err(|err| BenchError::io("cannot wait for the program", err))?;
    let drained = drain
        .join()
        .map_err(|_| BenchError::Failed("the drain thread panicked".into()))??;
    let secs = start.elapsed().as_secs_f64();
    let ended_at = monotonic_secs()?;
    let cpu_secs = children_cpu_secs()? - cpu_before;
    let stderr = match stderr {
        Some(thread) => thread
            .join()
            .map_err(|_| BenchError::Failed("the stderr thread panicked".into()))?,
        None => String::new(),
    };
    Ok(Finished {
        secs,
        spawned_at,
        ended_at,
        cpu_secs,
        status,
        drained,
        stderr,
    })
}

/// A new pseudo-terminal, 200 columns by 50 rows.
fn open_terminal() -> Result<nix::pty::OpenptyResult> {
    let size = Winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    openpty(&size, None).context("cannot open a pseudo-terminal")
}

/// Reads `from` to its end as fast as it can, counting bytes and lines.
/// `EIO` is the end too: a terminal's master reads it once the slave side
/// is closed everywhere, after what was written to it.
fn drain(mut from: impl Read) -> Result<Drained> {
    let mut buf = vec![0u8; READ_BYTES];
    let mut drained = Drained::default();
    loop {
        let read = match from.read(&mut buf) {
            Ok(0) => return Ok(drained),
            Ok(read) => read,
            Err(err) if err.raw_os_error() == Some(Errno::EIO as i32) => return Ok(drained),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(BenchError::io("cannot read the program's output", err)),
        };
        let (mut lines, mut returns) = (0u64, 0u64);
        for byte in &buf[..read] {
            lines += u64::from(*byte == b'\n');
            returns += u64::from(*byte == b'\r');
        }
        drained.lines += lines;
        drained.bytes += read as u64 - returns;
    }
}

/// Reads `from` to its end and keeps its first bytes, as text.
fn keep_start(mut from: impl Read) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(read) = from.read(&mut buf) {
        if read == 0 {
            break;
        }
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..read.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// User and system CPU seconds of the harness's children that ended and
/// were waited for, their own waited-for children included.
fn children_cpu_secs() -> Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage failed")?;
    let secs = |time: nix::sys::time::TimeVal| time.tv_sec() as f64 + time.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}
