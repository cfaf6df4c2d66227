//! baa-log's stdin carried to the command's terminal.
//!
//! A thread of its own reads stdin: a read of a terminal or a pipe cannot
//! be cancelled, and one on tokio's blocking pool would keep baa-log from
//! exiting until the next keystroke. The thread waits in `poll` on stdin
//! and on a pipe that is closed to stop it, so it reads nothing more once
//! the command is gone. The bytes go to the master from a task.
//!
//! Keystrokes are passed on as they are. Input that is not a terminal (a
//! pipe, a file) is passed on and followed by the terminal's end-of-file
//! character, so that the command reads to its end as it would from the
//! pipe: the line discipline turns that character into end of file.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    unistd::pipe2,
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{master::Master, stdin};

/// The end-of-file character of the command's terminal (VEOF, Ctrl-D) as
/// `pty` leaves it.
const END_OF_FILE: u8 = 0x04;

/// How many reads of stdin may wait for the command's terminal.
const QUEUE: usize = 4;

/// What to send when stdin ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtEnd {
    /// Nothing: a terminal's end is a hangup, not an end of input.
    Nothing,
    /// The terminal's end-of-file character, for input from a pipe or a
    /// file.
    EndOfFile,
}

/// Carries stdin to the command's terminal until dropped.
#[derive(Debug)]
pub(crate) struct Input {
    /// Closed on drop, which wakes the reading thread to stop.
    _stop: OwnedFd,
    /// Writes what was read to the master.
    task: JoinHandle<()>,
}

impl Drop for Input {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts carrying stdin to `master`.
///
/// # Errors
///
/// When the thread or its stop pipe cannot be made.
pub(crate) fn forward(master: Master, at_end: AtEnd) -> io::Result<Input> {
    let (stopped, stop) = pipe2(OFlag::O_CLOEXEC)?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("baa-log-stdin".into())
        .spawn(move || read_stdin(&stopped, &sender))?;
    Ok(Input {
        _stop: stop,
        task: tokio::spawn(write_to(master, receiver, at_end)),
    })
}

/// Reads stdin and sends what it reads until stdin ends, `stopped` is
/// closed at its other end, or nobody takes the bytes any more.
fn read_stdin(stopped: &OwnedFd, sender: &mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = [
            PollFd::new(stdin(), PollFlags::POLLIN),
            PollFd::new(stopped.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].revents().is_some_and(|events| !events.is_empty()) {
            return;
        }
        if fds[0].revents().is_none_or(|events| events.is_empty()) {
            continue;
        }
        match nix::unistd::read(stdin(), &mut buf) {
            // The end, or no stdin to read (closed, unreadable).
            Ok(0) => return,
            Ok(read) => {
                if sender.blocking_send(buf[..read].to_vec()).is_err() {
                    return;
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Writes what stdin gave to the command's terminal, then what `at_end`
/// says.
async fn write_to(master: Master, mut receiver: mpsc::Receiver<Vec<u8>>, at_end: AtEnd) {
    // Whether a line was begun and not ended: end of file then only ends
    // the line, and a second one is needed.
    let mut line_open = false;
    while let Some(bytes) = receiver.recv().await {
        if master.write_all(&bytes).await.is_err() {
            return;
        }
        if let Some(&last) = bytes.last() {
            line_open = last != b'\n';
        }
    }
    if at_end == AtEnd::EndOfFile {
        let end: &[u8] = if line_open {
            &[END_OF_FILE, END_OF_FILE]
        } else {
            &[END_OF_FILE]
        };
        let _ = master.write_all(end).await;
    }
}
