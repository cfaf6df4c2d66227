//! The settings of baa-logging that more than one crate reads, each
//! defined once: its name, its default, its documentation and its check.
//!
//! The server's configuration file, its flags' help, `--print-config`, the
//! store, `GetServerInfo` and the client's fallbacks all read the values
//! here; none of them writes a default of its own. This crate depends on
//! nothing of baa-logging, so that the client never links the server or
//! the store through it.
//!
//! # Layout
//!
//! - [`limits`]: [`Limits`], what the server takes from a client, and
//!   the `DEFAULT_*` constant of each limit.
//! - [`layout`]: the run layout's two contract constants.
//! - [`ids`]: the rule task, run, step and writer ids follow, which the
//!   store enforces and clients that make up ids check first.
//!
//! # Where a new setting goes
//!
//! A limit that clients must know about (a size they must keep to) or that
//! the store enforces is a field of [`Limits`] with a `DEFAULT_` constant
//! and a check in [`Limits::sanitize`]; the server's `Settings` and its
//! flags pick it up from there (a flag of its own is one line in the
//! `LimitArgs` of the server's `main.rs`). A setting only the server reads (an address, a
//! file, retention) is a field of the server's `Settings`.

pub mod ids;
pub mod layout;
pub mod limits;

pub use layout::{DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME};
pub use limits::{InvalidLimit, Limits};
