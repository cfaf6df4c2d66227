//! How `exec` starts the command: with pipes, or in a pseudo-terminal so
//! that it behaves as it does at a terminal; and the streams its output
//! comes on, each with the channel of the run it goes to.
//!
//! - Pipes: stdout and stderr are pipes, stdin is baa-log's own. Programs
//!   see no terminal: most buffer their output in blocks and leave out
//!   colours and progress bars.
//! - A pseudo-terminal: one terminal is the command's stdin, stdout and
//!   stderr, as at a terminal, where build tools (cargo, rustc, git, pip)
//!   check stderr, not stdout, to draw progress. Everything comes out of
//!   one master, so it all goes to the stdout channel, in the order
//!   written.
//! - Split: stdin and stdout share one terminal, stderr has a second one,
//!   so that stderr stays a channel of its own.
//!
//! In a pseudo-terminal the command leads a new session whose controlling
//! terminal is the (first) slave, as a login shell's is; see `terminal`
//! for what baa-log does with its own terminal meanwhile.

use std::{
    io::{self, IsTerminal},
    os::fd::OwnedFd,
    pin::Pin,
    process::{ExitStatus, Stdio},
};

use baa_logging_client::pb;
use nix::{libc, unistd::Pid};
use tokio::{
    io::AsyncRead,
    process::{Child, Command},
};

use crate::terminal::{
    self, Session, pty,
    window::{self, Resizes},
};

/// How the command's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pipes for stdout and stderr; stdin inherited.
    Pipes,
    /// One pseudo-terminal for stdin, stdout and stderr.
    Pty,
    /// One pseudo-terminal for stdin and stdout, another for stderr.
    SplitPty,
}

impl Mode {
    /// The mode the flags ask for; without one, a pseudo-terminal when
    /// baa-log's own stdout is a terminal (someone watches), else pipes.
    pub(crate) fn choose(pty: bool, no_pty: bool, split_pty: bool) -> Self {
        if split_pty {
            Self::SplitPty
        } else if pty {
            Self::Pty
        } else if no_pty || !io::stdout().is_terminal() {
            Self::Pipes
        } else {
            Self::Pty
        }
    }

    /// The mode's name, as the run's `worker_started` event records it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pipes => "pipes",
            Self::Pty => "pty",
            Self::SplitPty => "split-pty",
        }
    }

    /// Whether a Ctrl-C typed at baa-log's terminal reaches the command by
    /// itself, so that a SIGINT to baa-log must not be sent again.
    ///
    /// With pipes, the command is in baa-log's process group, which the
    /// terminal signals as a whole. In a pseudo-terminal it never is: the
    /// command has a session of its own; a Ctrl-C becomes a byte for its
    /// terminal when baa-log's terminal is raw, and otherwise signals
    /// baa-log alone, which must pass it on.
    pub(crate) fn terminal_interrupts_command(self) -> bool {
        self == Self::Pipes && io::stdin().is_terminal()
    }
}

/// What reads one of the command's output streams until it ends.
pub(crate) type Output = Pin<Box<dyn AsyncRead + Send>>;

/// A command started.
pub(crate) struct Spawned {
    /// Its process id, while it runs.
    pub(crate) pid: Option<u32>,
    /// Where signals for it go: its process, or in a pseudo-terminal its
    /// process group, as a terminal signals it.
    pub(crate) signal_target: Option<Pid>,
    /// Its output streams, each with the channel it is stored on.
    pub(crate) outputs: Vec<(pb::StreamLogChannel, Output)>,
    /// The process, to wait for.
    pub(crate) process: Process,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<_> = self.outputs.iter().map(|(channel, _)| channel).collect();
        f.debug_struct("Spawned")
            .field("pid", &self.pid)
            .field("signal_target", &self.signal_target)
            .field("outputs", &channels)
            .field("process", &self.process)
            .finish()
    }
}

/// A command running; see [`Process::wait`].
#[derive(Debug)]
pub(crate) struct Process {
    /// The process.
    child: Child,
    /// What baa-log's terminal does while it runs in a pseudo-terminal.
    session: Option<Session>,
}

impl Process {
    /// Waits until the command exits, then gives baa-log's terminal back
    /// (its mode restored, stdin no longer read). The output streams may
    /// still hold what the command wrote last: read them to their end.
    ///
    /// # Errors
    ///
    /// When the process cannot be waited for.
    pub(crate) async fn wait(mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        drop(self.session.take());
        status
    }
}

/// Why the command did not start.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// The command itself: not found, not executable, ...
    Command(io::Error),
    /// No pseudo-terminal could be set up for it.
    Terminal(io::Error),
}

/// Starts `command` (a program and its arguments) in `mode`.
///
/// # Errors
///
/// When the command cannot start, or its pseudo-terminal cannot be set up.
pub(crate) fn spawn(command: &[String], mode: Mode) -> Result<Spawned, SpawnError> {
    let mut builder = Command::new(&command[0]);
    builder.args(&command[1..]);
    match mode {
        Mode::Pipes => spawn_with_pipes(builder),
        Mode::Pty => spawn_in_pty(builder, false),
        Mode::SplitPty => spawn_in_pty(builder, true),
    }
}

/// Starts the command with pipes for stdout and stderr.
fn spawn_with_pipes(mut builder: Command) -> Result<Spawned, SpawnError> {
    let mut child = builder
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SpawnError::Command)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let pid = child.id();
    Ok(Spawned {
        pid,
        signal_target: pid.and_then(|pid| positive(pid).map(Pid::from_raw)),
        outputs: vec![
            (pb::StreamLogChannel::Stdout, Box::pin(stdout)),
            (pb::StreamLogChannel::Stderr, Box::pin(stderr)),
        ],
        process: Process {
            child,
            session: None,
        },
    })
}

/// Starts the command in a pseudo-terminal; with `split`, its stderr in a
/// second one.
fn spawn_in_pty(mut builder: Command, split: bool) -> Result<Spawned, SpawnError> {
    let has_terminal = io::stdout().is_terminal() || io::stdin().is_terminal();
    // Caught before the size is read, so that no resize is missed.
    let resizes = has_terminal
        .then(Resizes::catch)
        .transpose()
        .map_err(SpawnError::Terminal)?;
    let size = window::initial();
    // Typing is echoed, as by any terminal; piped input is not.
    let typed = terminal::owns_stdin_terminal();
    let main = pty::open(&size, typed).map_err(SpawnError::Terminal)?;
    let errors = split
        .then(|| pty::open(&size, false))
        .transpose()
        .map_err(SpawnError::Terminal)?;
    let slave = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(SpawnError::Terminal)
    };
    builder
        .stdin(slave(&main.slave)?)
        .stdout(slave(&main.slave)?)
        .stderr(slave(&errors.as_ref().unwrap_or(&main).slave)?);
    // SAFETY: between fork and exec only async-signal-safe calls:
    // setsid(2) and ioctl(2).
    unsafe {
        builder.pre_exec(|| {
            nix::unistd::setsid()?;
            // The new session's controlling terminal: stdin's, the first.
            // SAFETY: TIOCSCTTY takes an int; 0 steals from no one.
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = builder.spawn();
    // baa-log's copies of the slaves must go, or the masters never end.
    drop(builder);
    let child = spawned.map_err(SpawnError::Command)?;
    drop(main.slave);
    let errors = errors.map(|pty| pty.master);
    let masters: Vec<_> = [Some(main.master.clone()), errors.clone()]
        .into_iter()
        .flatten()
        .collect();
    let session = Session::start(typed, &main.master, masters, resizes);

    let pid = child.id();
    let mut outputs: Vec<(pb::StreamLogChannel, Output)> =
        vec![(pb::StreamLogChannel::Stdout, Box::pin(main.master))];
    if let Some(errors) = errors {
        outputs.push((pb::StreamLogChannel::Stderr, Box::pin(errors)));
    }
    Ok(Spawned {
        pid,
        // The command leads its process group, as a terminal's foreground
        // job does: signals go to the group.
        signal_target: pid.and_then(|pid| positive(pid).map(|pid| Pid::from_raw(-pid))),
        outputs,
        process: Process {
            child,
            session: Some(session),
        },
    })
}

/// A process id as the signal calls take it; `None` for 0, which would
/// signal baa-log's own process group.
fn positive(pid: u32) -> Option<i32> {
    i32::try_from(pid).ok().filter(|&pid| pid > 0)
}
