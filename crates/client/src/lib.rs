//! A client for `baa-logd`: a connection with sensible timeouts and
//! keepalives, and the generated stubs of `baa.logging.v1`.
//!
//! # Examples
//!
//! ```no_run
//! # async fn example() -> Result<(), baa_logging_client::ClientError> {
//! use baa_logging_client::{connect, pb};
//!
//! let mut client = connect("http://127.0.0.1:50051").await?;
//! let info = client.get_server_info(pb::GetServerInfoRequest {}).await?;
//! assert_eq!(info.into_inner().run_layout_version, "local-run-v1");
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

pub use baa_logging::pb;
use tonic::transport::{Channel, Endpoint};

/// The generated client over a connection.
pub type LoggingClient = pb::logging_service_client::LoggingServiceClient<Channel>;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a valid URI.
    #[error("invalid server address `{address}`: {source}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server could not be reached.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address given.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error.
    #[error("the server answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// Connects to a server at `address` (`http://host:port`), with a 5 s
/// connect timeout, TCP keepalive, and HTTP/2 keepalive pings every 30 s,
/// also while idle, so that a dead server is noticed on long follows.
///
/// # Errors
///
/// [`ClientError::InvalidAddress`] or [`ClientError::Connect`].
pub async fn connect(address: impl Into<String>) -> Result<LoggingClient, ClientError> {
    let address = address.into();
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|source| ClientError::InvalidAddress {
            address: address.clone(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect { address, source })?;
    Ok(LoggingClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}
