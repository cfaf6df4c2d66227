//! A pseudo-terminal for the command, set up so that what the command
//! writes is stored as it wrote it.
//!
//! A terminal's output processing turns each `\n` into `\r\n` (ONLCR);
//! the run would then hold `\r\n` where the program wrote `\n`. It is
//! turned off here, on the command's side: a `\n` stays a `\n`, and a `\r`
//! the program writes (a progress bar redrawing its line) is kept as is.
//! baa-log's own terminal keeps its output processing, raw mode or not,
//! so the same bytes still start new lines on the screen.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
};

use nix::{
    fcntl::{FcntlArg, FdFlag, fcntl},
    pty::{OpenptyResult, Winsize, openpty},
    sys::termios::{LocalFlags, OutputFlags, SetArg, tcgetattr, tcsetattr},
};

use super::master::Master;

/// A pseudo-terminal: the master stays with baa-log, the slave becomes the
/// command's stdin, stdout or stderr.
#[derive(Debug)]
pub(crate) struct Pty {
    /// baa-log's side.
    pub(crate) master: Master,
    /// The command's side. baa-log must close its copy once the command
    /// has started: the master reports the end of the output only when no
    /// process holds the slave any more.
    pub(crate) slave: OwnedFd,
}

/// Opens a pseudo-terminal of `size`; `echo` says whether it echoes its
/// input. It echoes when someone types (as a terminal does, so the typing
/// shows and is stored with the output), and not when input comes from a
/// pipe or a file, which would otherwise be stored as if the command had
/// written it.
///
/// # Errors
///
/// When the system has no pseudo-terminal to give, or refuses to set it up.
pub(crate) fn open(size: &Winsize, echo: bool) -> io::Result<Pty> {
    let OpenptyResult { master, slave } = openpty(size, None)?;
    // openpty leaves both inheritable; the command gets the slave as its
    // stdin, stdout or stderr, and nothing else.
    for fd in [&master, &slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let mut termios = tcgetattr(slave.as_fd())?;
    termios.output_flags.remove(OutputFlags::ONLCR);
    termios.local_flags.set(LocalFlags::ECHO, echo);
    tcsetattr(slave.as_fd(), SetArg::TCSANOW, &termios)?;
    Ok(Pty {
        master: Master::new(master)?,
        slave,
    })
}
