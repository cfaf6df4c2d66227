//! The master side of a pseudo-terminal, read and written without
//! blocking a thread.
//!
//! Once no process holds the slave any more (the command and whatever it
//! started have exited), reading the master fails with EIO after the last
//! byte written to the slave has been read. Here that EIO is the end of
//! the output, as the end of a pipe is: nothing the command wrote before
//! it exited is lost.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, OFlag, fcntl},
};
use tokio::io::{AsyncRead, ReadBuf, unix::AsyncFd};

/// The master of a pseudo-terminal; clones share it. Reading gives what
/// the command writes; writing is what the command reads.
#[derive(Debug, Clone)]
pub(crate) struct Master {
    /// The descriptor, non-blocking, registered with the runtime.
    fd: Arc<AsyncFd<File>>,
}

impl Master {
    /// Takes over a master descriptor.
    ///
    /// # Errors
    ///
    /// When it cannot be made non-blocking or registered with the runtime
    /// (which must be running).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the File owns the descriptor, which stays open and the
        // same until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(File::from(fd)) }?;
        Ok(Self { fd: Arc::new(fd) })
    }

    /// Writes all of `bytes`, waiting while the terminal's input queue is
    /// full (the command reads no faster).
    ///
    /// # Errors
    ///
    /// When the terminal is gone.
    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| fd.get_ref().write(bytes)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(written)) => bytes = &bytes[written..],
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

impl AsFd for Master {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl AsyncRead for Master {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match ready.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(read)) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // No process holds the slave and all was read: the end.
                Ok(Err(err)) if err.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => {}
            }
        }
    }
}
