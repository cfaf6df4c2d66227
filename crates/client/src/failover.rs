//! Moving between servers: the connection a [`Client`](crate::Client) and
//! its handles share, and the step that replaces it with one to the next
//! server when the current one fails.
//!
//! A [`Link`] holds the current connection and, when it was made from
//! [`ConnectOptions`] with several addresses, how to make another. Every
//! user of the link (the client's unary calls, a writer's session, a
//! follower) takes a [`Current`] snapshot, calls through it, and after a
//! call failed because the server is gone (see
//! [`is_server_failure`](crate::error::is_server_failure)) hands the
//! snapshot back to [`Link::fail_over`]. That connects to the next server
//! that answers, in the list's order after the failed one (the failed one
//! itself last, as it may be back), and makes it the link's current
//! connection for every user. Resuming is the caller's part and unchanged
//! by the move: a writer asks the new server for its writer cursor and
//! sends the rest, a follower asks from its next sequence number, so the
//! cluster's shared store makes nothing lost and nothing twice.
//!
//! Moves are numbered (`generation`): when several users saw the same
//! server fail, the first moves and the others find the link moved past
//! the snapshot they hand back, and take the new connection instead of
//! moving again. A link with one address never moves: its connection
//! re-establishes itself to that address, as a single-server client always
//! did.

use std::sync::{Arc, Mutex, PoisonError};

use tracing::{debug, info};

use crate::{ConnectOptions, LoggingClient, error::is_server_failure};

/// The connection a client and its handles share, and how to move it to
/// another server. Cloning it is cheap and shares it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Shared by the clones.
    shared: Arc<Shared>,
}

/// The shared part of a [`Link`].
#[derive(Debug)]
struct Shared {
    /// How to reach the servers; `None` for a link over a stub given by
    /// the caller, which cannot move.
    options: Option<ConnectOptions>,
    /// The connection in use. A `std` mutex held for one clone or one
    /// assignment; see the crate's `# Locking` section.
    current: Mutex<Current>,
    /// Held while a move connects, so that users that saw the same failure
    /// wait for the first one's move instead of making their own. An async
    /// mutex, as it is held across the connection attempts; nothing else
    /// waits on it.
    moving: tokio::sync::Mutex<()>,
}

/// One state of a [`Link`]: the connection to call through, and which
/// move made it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The generated client over the connection.
    pub(crate) stub: LoggingClient,
    /// How many moves the link had made when this connection became
    /// current.
    generation: u64,
    /// The index of its server in the options' addresses.
    index: usize,
}

impl Current {
    /// Whether `other` is the same connection: no move between them.
    pub(crate) fn same_as(&self, other: &Current) -> bool {
        self.generation == other.generation
    }
}

impl Link {
    /// A link over a stub the caller made, which never moves.
    pub(crate) fn fixed(stub: LoggingClient) -> Self {
        Self::new(None, 0, stub)
    }

    /// A link over `stub`, a connection to the server at `index` of
    /// `options`, which moves through the others when that one fails.
    pub(crate) fn over(options: ConnectOptions, index: usize, stub: LoggingClient) -> Self {
        Self::new(Some(options), index, stub)
    }

    /// A link at its first connection.
    fn new(options: Option<ConnectOptions>, index: usize, stub: LoggingClient) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                current: Mutex::new(Current {
                    stub,
                    generation: 0,
                    index,
                }),
                moving: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The connection in use now.
    pub(crate) fn current(&self) -> Current {
        // A poisoned slot is whole; see the crate's `# Locking` section.
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The generated client over the connection in use now.
    pub(crate) fn stub(&self) -> LoggingClient {
        self.current().stub
    }

    /// How many servers besides the current one a move can try.
    pub(crate) fn others(&self) -> usize {
        self.shared
            .options
            .as_ref()
            .map_or(0, |options| options.addresses().len() - 1)
    }

    /// After a call through `seen` failed with `status`: when the status
    /// says the server is gone and the link has other servers, moves to
    /// the next one that answers, unless another user moved the link since
    /// `seen` already. Returns the connection to call through next, which
    /// is `seen`'s when there was nowhere to move (no other server, or
    /// none answered; the caller waits and tries again, as it would with
    /// one server).
    pub(crate) async fn fail_over(&self, seen: &Current, status: &tonic::Status) -> Current {
        let Some(options) = &self.shared.options else {
            return self.current();
        };
        if options.addresses().len() < 2 || !is_server_failure(status) {
            return self.current();
        }
        let _moving = self.shared.moving.lock().await;
        let current = self.current();
        if current.generation != seen.generation {
            // Another user saw the failure first and moved.
            return current;
        }
        let failed = &options.addresses()[current.index];
        match options.connect_from(current.index + 1).await {
            Ok((index, stub)) => {
                let next = Current {
                    stub,
                    generation: current.generation + 1,
                    index,
                };
                info!(
                    from = %failed,
                    to = %options.addresses()[index],
                    cause = %status.message(),
                    "the server failed; moved to the next one"
                );
                *self
                    .shared
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = next.clone();
                next
            }
            Err(err) => {
                debug!(from = %failed, cause = %err, "no other server answered");
                current
            }
        }
    }
}
