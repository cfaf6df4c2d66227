//! baa-log's own terminal in raw mode while the command runs in a
//! pseudo-terminal.
//!
//! In raw mode the terminal hands every keystroke over as it comes:
//! Ctrl-C, Ctrl-Z and Ctrl-D become bytes for the command's terminal,
//! whose line discipline makes them SIGINT, SIGTSTP and end of file for
//! the command, as in any terminal; nothing is echoed twice. Output
//! processing stays on, unlike `cfmakeraw`: the command's terminal stores
//! `\n` as written (see `pty`), and this terminal still starts a new line
//! for it.
//!
//! The mode is restored when the guard is dropped: after the command
//! exits, on an error, and while a panic unwinds. SIGTERM and SIGINT do
//! not end baa-log while the command runs (they are passed on to it), so
//! they end in the same place.

use std::io;

use nix::sys::termios::{
    ControlFlags, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios, tcgetattr,
    tcsetattr,
};

use super::stdin;

/// baa-log's stdin terminal in raw mode; dropping it restores the mode it
/// had.
#[derive(Debug)]
pub(crate) struct RawMode {
    /// The mode to go back to.
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on stdin in raw mode, output processing kept.
    ///
    /// # Errors
    ///
    /// When stdin is not a terminal or its mode cannot be set.
    pub(crate) fn enter() -> io::Result<Self> {
        let saved = tcgetattr(stdin())?;
        let mut raw = saved.clone();
        raw.input_flags.remove(
            InputFlags::IGNBRK
                | InputFlags::BRKINT
                | InputFlags::PARMRK
                | InputFlags::ISTRIP
                | InputFlags::INLCR
                | InputFlags::IGNCR
                | InputFlags::ICRNL
                | InputFlags::IXON,
        );
        raw.local_flags.remove(
            LocalFlags::ECHO
                | LocalFlags::ECHONL
                | LocalFlags::ICANON
                | LocalFlags::ISIG
                | LocalFlags::IEXTEN,
        );
        raw.control_flags
            .remove(ControlFlags::CSIZE | ControlFlags::PARENB);
        raw.control_flags.insert(ControlFlags::CS8);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        tcsetattr(stdin(), SetArg::TCSANOW, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Now, not after draining: output held up must not keep the
        // terminal raw.
        let _ = tcsetattr(stdin(), SetArg::TCSANOW, &self.saved);
    }
}
