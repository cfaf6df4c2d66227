//! Accepting connections: one accept loop for plain and TLS listeners,
//! with a cap on open connections, a deadline for each handshake, and a
//! back-off when the process runs out of descriptors.
//!
//! Each accepted socket gets a task of its own for its handshake (the TLS
//! handshake, or on a plain listener the HTTP/2 connection preface), so a
//! slow or silent client holds up no other, and one that has not finished
//! within `handshake_timeout` is closed: without that, idle sockets that
//! never speak would pile up until the descriptors run out. A connection
//! holds one of `max_connections` permits for as long as it is open; past
//! the cap, new sockets are closed at once, and logged at most once per
//! [`LOG_INTERVAL`]. Running out of descriptors (`EMFILE`, `ENFILE`) is
//! logged the same way and waited out with a growing pause, instead of a
//! busy loop on `accept`.
//!
//! HTTP/1.1 (the run page's browsers and proxies) is let in only when the
//! page is served beside gRPC: a plain connection must then send its whole
//! first request head within the handshake deadline, and an HTTP/1.1
//! connection (plain, or TLS without `h2` agreed) on which nothing moves
//! for [`HTTP1_IDLE_TIMEOUT`] is closed, so that idle or trickling sockets
//! cannot hold the `max_connections` permits. HTTP/2 connections are kept
//! alive and checked by HTTP/2 pings instead.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

/// The most often a refused or failed accept is logged.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The HTTP/2 connection preface every gRPC client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long an HTTP/1.1 connection may see no byte either way; the page's
/// event streams send a comment every 15 seconds.
pub(crate) const HTTP1_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest first request head a plain HTTP/1.1 connection may send.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The longest pause between two accepts after running out of
/// descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How connections are let in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    /// The most connections open at once.
    pub(crate) max_connections: usize,
    /// How long a client may take over its handshake.
    pub(crate) handshake_timeout: Duration,
}

/// Accepted connections from `listener`, each past `handshake` (which gets
/// the socket and returns the stream to serve, and whether it speaks
/// HTTP/1.1), as a stream for tonic's `serve_with_incoming`, and the
/// accepting task.
pub(crate) fn incoming<S, H, F>(
    listener: TcpListener,
    admission: Admission,
    handshake: H,
) -> (ReceiverStream<io::Result<Counted<S>>>, JoinHandle<()>)
where
    S: Send + 'static,
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = io::Result<(S, Protocol)>> + Send + 'static,
{
    let (ready, incoming) = mpsc::channel(64);
    let permits = Arc::new(Semaphore::new(admission.max_connections));
    let task = tokio::spawn(async move {
        let mut log = Throttled::default();
        let mut backoff = Duration::ZERO;
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(err) => {
                    // Out of descriptors, most likely: wait it out.
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                    log.warn(|missed| {
                        warn!(cause = %err, missed, "cannot accept connections; backing off")
                    });
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                log.warn(|missed| {
                    warn!(%peer, missed, max_connections = admission.max_connections,
                        "refusing connections: max_connections are open")
                });
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let ready = ready.clone();
            let handshake = handshake(tcp);
            tokio::spawn(async move {
                match tokio::time::timeout(admission.handshake_timeout, handshake).await {
                    Ok(Ok((stream, protocol))) => {
                        let idle = (protocol == Protocol::Http1).then(|| IdleTimer {
                            after: HTTP1_IDLE_TIMEOUT,
                            sleep: Box::pin(tokio::time::sleep(HTTP1_IDLE_TIMEOUT)),
                        });
                        let _ = ready
                            .send(Ok(Counted {
                                stream,
                                _permit: permit,
                                idle,
                            }))
                            .await;
                    }
                    Ok(Err(err)) => debug!(%peer, cause = %err, "handshake failed"),
                    Err(_) => debug!(%peer, "handshake timed out; closing the connection"),
                }
            });
        }
    });
    (ReceiverStream::new(incoming), task)
}

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/2: gRPC, and browsers over TLS.
    Http2,
    /// HTTP/1.1: browsers and proxies, for the run page.
    Http1,
}

/// The plain listener's handshake: waits until the client has sent the
/// HTTP/2 connection preface (without reading it: the server reads it
/// again). Anything else goes on at once to the server, which answers what
/// it does not speak and closes (a TLS client on a plaintext port so
/// learns it at once), except, when `http1`, what starts like an HTTP/1.1
/// request: that is let in only once its whole first request head has
/// come, so that a client cannot hold a connection by sending it slowly.
pub(crate) async fn preface(tcp: TcpStream, http1: bool) -> io::Result<(TcpStream, Protocol)> {
    let mut seen = vec![0u8; MAX_HEAD_BYTES];
    loop {
        tcp.readable().await?;
        let read = match tcp.peek(&mut seen).await {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        };
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let seen = &seen[..read];
        if seen.starts_with(PREFACE) {
            return Ok((tcp, Protocol::Http2));
        }
        let partial_preface = PREFACE.starts_with(seen);
        if !partial_preface {
            // A request line starts with its method, in letters.
            let request = http1 && seen[0].is_ascii_alphabetic();
            if !request {
                let protocol = if http1 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                return Ok((tcp, protocol));
            }
            if memchr::memmem::find(seen, b"\r\n\r\n").is_some() {
                return Ok((tcp, Protocol::Http1));
            }
            if read == MAX_HEAD_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an HTTP/1.1 request head longer than 16 KiB",
                ));
            }
        }
        // Part of a preface or of a request head: wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Closes a connection on which nothing moved for a while.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    /// How long it may be idle.
    after: Duration,
    /// Fires when it has been.
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    /// An error once the timer fired; registers the waker otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "an HTTP/1.1 connection was idle too long",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Something moved: the connection is not idle.
    fn moved(&mut self) {
        let deadline = tokio::time::Instant::now() + self.after;
        self.sleep.as_mut().reset(deadline);
    }
}

/// An accepted connection that holds its place under `max_connections`
/// until it closes.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    /// The connection.
    stream: S,
    /// Its place; released when the connection is dropped.
    _permit: OwnedSemaphorePermit,
    /// For an HTTP/1.1 connection, closes it once idle.
    idle: Option<IdleTimer>,
}

impl<S> Counted<S> {
    /// Counts progress of `n` bytes, or fails an idle connection when
    /// nothing moved.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let Some(idle) = &mut self.idle else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(value)) => {
                if moved(&value) {
                    idle.moved();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Pending => match idle.check(cx) {
                Ok(()) => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
            ready => ready,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        self.progress(cx, polled, |()| moved)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, polled, |written| *written > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(cx, polled, |written| *written > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// A warning logged at most once per [`LOG_INTERVAL`], with how many were
/// left out since the last one.
#[derive(Debug, Default)]
struct Throttled {
    /// When the last one was logged.
    last: Option<Instant>,
    /// How many were left out since.
    missed: u64,
}

impl Throttled {
    /// Logs with `log` (given the count left out) when the interval has
    /// passed, or counts one more left out.
    fn warn(&mut self, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|last| last.elapsed() < LOG_INTERVAL) {
            self.missed += 1;
            return;
        }
        log(self.missed);
        self.missed = 0;
        self.last = Some(Instant::now());
    }
}
