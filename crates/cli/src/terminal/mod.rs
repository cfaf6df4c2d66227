//! The terminal side of `exec`: the pseudo-terminals a command runs in, and
//! what baa-log does with its own terminal meanwhile.
//!
//! A command in a pseudo-terminal is in a session of its own, with the
//! pseudo-terminal as its controlling terminal. Its line discipline, not
//! baa-log's terminal, turns Ctrl-C into SIGINT and Ctrl-Z into SIGTSTP,
//! so keystrokes must reach it as bytes: baa-log's terminal goes into raw
//! mode, its stdin is carried to the command's terminal, and its window
//! size is copied there and followed.
//!
//! # Layout
//!
//! - `pty`: a pseudo-terminal opened for the command, set up so that what
//!   the command writes comes out as it wrote it.
//! - `master`: its master side, read and written without blocking; the
//!   end of the command's output is the end of reading it.
//! - `raw_mode`: baa-log's own terminal in raw mode, restored when dropped.
//! - `input`: baa-log's stdin carried to the command's terminal.
//! - `window`: window sizes, copied from baa-log's terminal and followed.

pub(crate) mod input;
pub(crate) mod master;
pub(crate) mod pty;
pub(crate) mod raw_mode;
pub(crate) mod window;

use std::{io::IsTerminal, os::fd::BorrowedFd};

use tokio::task::JoinHandle;

use self::{
    input::{AtEnd, Input},
    master::Master,
    raw_mode::RawMode,
    window::Resizes,
};

/// What baa-log does with its own terminal while a command runs in a
/// pseudo-terminal: carrying its stdin over, following its window size,
/// raw mode. Dropping it undoes all three, the mode last, so that no
/// keystroke is read in raw mode once the command is gone.
#[derive(Debug)]
pub(crate) struct Session {
    /// Carries stdin to the command's terminal, if anything does.
    input: Option<Input>,
    /// Copies resizes of baa-log's terminal to the command's.
    resizes: Option<JoinHandle<()>>,
    /// Restores baa-log's terminal when dropped; `None` when it was left
    /// as it was.
    raw_mode: Option<RawMode>,
}

impl Session {
    /// Starts it for a command that has started in a pseudo-terminal:
    /// stdin goes to `input_to`, keystrokes in raw mode when `typed` (see
    /// [`owns_stdin_terminal`]); resizes caught by `resizes` go to each of
    /// `masters`. What fails here costs the command its input or its
    /// window size, not its run: it is told, and the command goes on.
    pub(crate) fn start(
        typed: bool,
        input_to: &Master,
        masters: Vec<Master>,
        resizes: Option<Resizes>,
    ) -> Self {
        let raw_mode = if typed {
            RawMode::enter()
                .map_err(|err| warn("cannot put the terminal in raw mode", &err))
                .ok()
        } else {
            None
        };
        // A terminal in the background is left alone; anything else is
        // read to its end.
        let input = if typed || !std::io::stdin().is_terminal() {
            let at_end = if typed {
                AtEnd::Nothing
            } else {
                AtEnd::EndOfFile
            };
            input::forward(input_to.clone(), at_end)
                .map_err(|err| warn("cannot pass stdin on", &err))
                .ok()
        } else {
            None
        };
        Self {
            input,
            resizes: resizes.map(|resizes| tokio::spawn(resizes.follow(masters))),
            raw_mode,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.input.take());
        if let Some(resizes) = self.resizes.take() {
            resizes.abort();
        }
        drop(self.raw_mode.take());
    }
}

/// Whether baa-log may use its stdin's terminal: stdin is a terminal and
/// baa-log is in its foreground. A background job that read it or changed
/// its mode would be stopped by SIGTTIN or SIGTTOU, so in the background
/// the terminal is left alone and the command gets no input.
pub(crate) fn owns_stdin_terminal() -> bool {
    let stdin = stdin();
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(stdin).is_ok_and(|group| group == nix::unistd::getpgrp())
}

/// Tells the user about a failure that leaves the command running.
fn warn(what: &str, err: &std::io::Error) {
    eprintln!("baa-log: {what}: {err}");
}

/// baa-log's stdin, borrowed for calls that take a descriptor.
pub(crate) fn stdin() -> BorrowedFd<'static> {
    // SAFETY: descriptor 0 is open for as long as the process runs: the
    // standard library opens /dev/null there if it was closed at start,
    // and baa-log never closes it.
    unsafe { BorrowedFd::borrow_raw(nix::libc::STDIN_FILENO) }
}
