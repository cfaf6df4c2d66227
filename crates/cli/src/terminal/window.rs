//! Window sizes. The command's terminal starts at the size of baa-log's
//! own (its stdout's, else its stdin's) and follows it: on SIGWINCH the new
//! size is set on the master, and the kernel signals the command in turn.
//! Without a terminal of its own, baa-log gives the command `COLUMNS` x
//! `LINES` when set, else 80 x 24.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use nix::{libc, pty::Winsize};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::master::Master;

nix::ioctl_read_bad!(
    /// TIOCGWINSZ: a terminal's window size.
    #[allow(unreachable_pub, reason = "the macro makes it pub")]
    get_window_size,
    libc::TIOCGWINSZ,
    Winsize
);
nix::ioctl_write_ptr_bad!(
    /// TIOCSWINSZ: sets a terminal's window size; on a master, the kernel
    /// sends SIGWINCH to the foreground of its slave.
    #[allow(unreachable_pub, reason = "the macro makes it pub")]
    set_window_size,
    libc::TIOCSWINSZ,
    Winsize
);

/// The size when nothing says otherwise, as terminals start.
const DEFAULT: (u16, u16) = (80, 24);

/// The size of baa-log's own terminal: its stdout's, else its stdin's;
/// `None` when neither is a terminal (or one says it has no size).
pub(crate) fn outer() -> Option<Winsize> {
    [io::stdout().as_fd(), io::stdin().as_fd()]
        .into_iter()
        .find_map(|fd| {
            let mut size = blank();
            // SAFETY: TIOCGWINSZ writes one winsize, which `size` is.
            unsafe { get_window_size(fd.as_raw_fd(), &mut size) }.ok()?;
            (size.ws_col > 0 && size.ws_row > 0).then_some(size)
        })
}

/// The size to start the command's terminal with: baa-log's terminal's,
/// else `COLUMNS` x `LINES`, else 80 x 24.
pub(crate) fn initial() -> Winsize {
    outer().unwrap_or_else(|| {
        let from_env = |name: &str, default: u16| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.trim().parse::<u16>().ok())
                .filter(|&value| value > 0)
                .unwrap_or(default)
        };
        Winsize {
            ws_col: from_env("COLUMNS", DEFAULT.0),
            ws_row: from_env("LINES", DEFAULT.1),
            ..blank()
        }
    })
}

/// Sets the window size of a pseudo-terminal, through its master.
///
/// # Errors
///
/// When the terminal is gone.
pub(crate) fn set(master: &Master, size: &Winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize, which `size` is.
    unsafe { set_window_size(master.as_fd().as_raw_fd(), size) }?;
    Ok(())
}

/// A size of zero, to be filled in.
fn blank() -> Winsize {
    Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Resizes of baa-log's terminal, caught from before its size is first
/// read, so that none falls between that read and the command's start.
#[derive(Debug)]
pub(crate) struct Resizes {
    /// SIGWINCH deliveries.
    signal: Signal,
}

impl Resizes {
    /// Starts catching SIGWINCH.
    ///
    /// # Errors
    ///
    /// When the signal cannot be caught.
    pub(crate) fn catch() -> io::Result<Self> {
        Ok(Self {
            signal: signal(SignalKind::window_change())?,
        })
    }

    /// Copies each new size of baa-log's terminal to the command's
    /// terminals, until aborted.
    pub(crate) async fn follow(mut self, masters: Vec<Master>) {
        while self.signal.recv().await.is_some() {
            let Some(size) = outer() else { continue };
            for master in &masters {
                // A terminal already gone has no size to keep.
                let _ = set(master, &size);
            }
        }
    }
}
