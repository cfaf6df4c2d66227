//! Opening a connection to `baa-logd`: the endpoint's timeouts and
//! keepalives, the credentials every request carries, and which of
//! several servers to try first.
//!
//! # Several servers
//!
//! A clustered `baa-logd` runs several stateless nodes in front of one
//! store, each able to serve every run, so a client may be given all of
//! them (`"host1:50051,host2:50051"`). A connection tries them in order,
//! starting from the one that answered last (the first one, before any
//! answered), each with the connect timeout, and takes the first that
//! answers; when none does, the error names every address and why it
//! failed. Ordered rather than random: the list's order is the operator's
//! preference (the nearest node first), a client stays on a node that
//! works instead of spreading its calls over the cluster, and a dead node
//! costs one refused connection (or one connect timeout, when its host is
//! gone) per move, not one per call. A fleet is spread over the nodes by
//! giving its workers the list in different orders, or by a load
//! balancer in front.
//!
//! Moving to the next server when the current one fails is the
//! `failover` module's part.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{ClientError, pb};

/// The generated client over a connection, with the credentials
/// interceptor in front.
pub type LoggingClient =
    pb::logging_service_client::LoggingServiceClient<InterceptedService<Channel, Credentials>>;

/// How to reach a server, or one of several.
///
/// The defaults suit a worker on a network: a 5 s connect timeout, TCP and
/// HTTP/2 keepalives every 30 s (also while idle, so that a follower
/// waiting on a quiet run notices a dead server), and no credentials.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), baa_logging_client::ClientError> {
/// use baa_logging_client::ConnectOptions;
///
/// let client = ConnectOptions::new("http://logs.internal:50051")
///     .token("s3cr3t")
///     .connect()
///     .await?;
/// // A cluster: tried in order, from the node that answered last.
/// let cluster = ConnectOptions::new("logs-1.internal:50051,logs-2.internal:50051");
/// assert_eq!(cluster.addresses().len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    /// The servers, in the order they are tried, never empty; each
    /// `http://host:port`, `https://host:port`, or `host:port` (plain
    /// HTTP/2, or TLS when a CA file or a client certificate is set).
    addresses: Vec<String>,
    /// The index of the address that answered last, where the next
    /// connection starts. Shared by the clones, so that a client that
    /// moved on from a dead server does not make the next connection of
    /// the same program try it first again.
    preferred: Arc<AtomicUsize>,
    /// How long a connection attempt may take.
    connect_timeout: Duration,
    /// How often to ping an HTTP/2 connection, idle or not.
    keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    keepalive_timeout: Duration,
    /// A bearer token sent with every request.
    token: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's.
    ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM), for mutual TLS.
    identity: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("addresses", &self.addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("identity", &self.identity)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for `address` (`http://host:port`), with the defaults.
    /// Several servers are given as a comma-separated list
    /// (`"host1:50051,host2:50051"`); see [`ConnectOptions::with_addresses`].
    pub fn new(address: impl Into<String>) -> Self {
        let address = address.into();
        let addresses: Vec<String> = address
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        match addresses.is_empty() {
            // Nothing to split: the address as given, for the endpoint to
            // refuse with its own words.
            true => Self::with_addresses([address]),
            false => Self::with_addresses(addresses),
        }
    }

    /// Options for several servers of one cluster, each able to serve
    /// every run, with the defaults. A connection tries them in order,
    /// from the one that answered last; the long-lived handles (writers,
    /// followers) move to the next one when theirs fails. With no address
    /// at all, connecting fails with [`ClientError::InvalidAddress`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), baa_logging_client::ClientError> {
    /// use baa_logging_client::{Client, ConnectOptions};
    ///
    /// let options = ConnectOptions::with_addresses(["logs-1:50051", "logs-2:50051"]);
    /// let client = Client::connect_with(&options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_addresses<S: Into<String>>(addresses: impl IntoIterator<Item = S>) -> Self {
        let mut addresses: Vec<String> = addresses.into_iter().map(Into::into).collect();
        if addresses.is_empty() {
            addresses.push(String::new());
        }
        Self {
            addresses,
            preferred: Arc::new(AtomicUsize::new(0)),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            token: None,
            ca_file: None,
            identity: None,
        }
    }

    /// Trusts the CA certificates of a PEM file (instead of the system's)
    /// and speaks TLS, also with an `http://` address.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents a client certificate (PEM chain and key), for servers that
    /// require mutual TLS.
    pub fn client_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Whether the connection uses TLS: an `https://` address (the first,
    /// for a list), a CA file or a client certificate.
    pub fn uses_tls(&self) -> bool {
        self.address_uses_tls(self.address())
    }

    /// Whether a connection to `address` uses TLS.
    fn address_uses_tls(&self, address: &str) -> bool {
        address.starts_with("https://") || self.ca_file.is_some() || self.identity.is_some()
    }

    /// Sends `token` as `authorization: Bearer <token>` with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets how long a connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server address; the first one, for a list.
    pub fn address(&self) -> &str {
        &self.addresses[0]
    }

    /// The server addresses, in the order they are tried.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// Connects now, so that an unreachable server is reported at once:
    /// to the first of the servers that answers, in order from the one that
    /// answered last. The connection is re-established by itself after it
    /// breaks, to the same server; moving to another is what a [`Client`]
    /// made with [`Client::connect_with`] does.
    ///
    /// [`Client`]: crate::Client
    /// [`Client::connect_with`]: crate::Client::connect_with
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`] or [`ClientError::Credentials`];
    /// [`ClientError::Connect`] when the one server cannot be reached,
    /// [`ClientError::Unreachable`] when none of several can.
    pub async fn connect(&self) -> Result<LoggingClient, ClientError> {
        Ok(self.client(self.channel().await?))
    }

    /// Connects to the first server that answers, trying the addresses in
    /// order from `start` (wrapping around), and returns its index with
    /// the client; see [`ConnectOptions::channel_from`].
    pub(crate) async fn connect_from(
        &self,
        start: usize,
    ) -> Result<(usize, LoggingClient), ClientError> {
        let (index, channel) = self.channel_from(start).await?;
        Ok((index, self.client(channel)))
    }

    /// Connects to the first server that answers, trying the addresses in
    /// order from `start` (wrapping around), each with the connect
    /// timeout, and remembers it as the one to start from next time.
    /// Returns its index with the connection.
    ///
    /// Every address is checked before the first is tried, so that a typo
    /// in the list is reported rather than skipped as a dead server.
    async fn channel_from(
        &self,
        start: usize,
    ) -> Result<(usize, InterceptedService<Channel, Credentials>), ClientError> {
        let credentials = self.credentials()?;
        let endpoints = self
            .addresses
            .iter()
            .map(|address| self.endpoint(address))
            .collect::<Result<Vec<_>, _>>()?;
        let count = endpoints.len();
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (start + offset) % count;
            match endpoints[index].connect().await {
                Ok(channel) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((index, InterceptedService::new(channel, credentials)));
                }
                Err(source) => failures.push(ClientError::Connect {
                    address: self.addresses[index].clone(),
                    source,
                }),
            }
        }
        Err(match failures.len() {
            1 => failures.remove(0),
            _ => ClientError::Unreachable { attempts: failures },
        })
    }

    /// Where the next connection starts: the server that answered last.
    pub(crate) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.addresses.len()
    }

    /// Connects now, like [`connect`](Self::connect), and returns the bare
    /// connection with the credentials in front, for the other gRPC
    /// services a server offers beside the `LoggingService` (the standard
    /// health service, reflection). Any generated tonic client takes it:
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use baa_logging_client::ConnectOptions;
    /// use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    ///
    /// let channel = ConnectOptions::new("http://127.0.0.1:50051")
    ///     .token("s3cr3t")
    ///     .channel()
    ///     .await?;
    /// let request = HealthCheckRequest { service: String::new() };
    /// let status = HealthClient::new(channel).check(request).await?.into_inner().status();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`connect`](Self::connect).
    pub async fn channel(&self) -> Result<InterceptedService<Channel, Credentials>, ClientError> {
        Ok(self.channel_from(self.preferred()).await?.1)
    }

    /// Returns a client that connects on its first request, for callers
    /// that would rather wait for a server that is not up yet: to the
    /// server that answered last (the first, before any answered).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`] or [`ClientError::Credentials`].
    pub fn connect_lazy(&self) -> Result<LoggingClient, ClientError> {
        Ok(self.connect_lazy_at(self.preferred())?.1)
    }

    /// A lazy client to the address at `index`, after every address was
    /// checked; returns the index with it.
    pub(crate) fn connect_lazy_at(
        &self,
        index: usize,
    ) -> Result<(usize, LoggingClient), ClientError> {
        let credentials = self.credentials()?;
        let mut endpoints = self
            .addresses
            .iter()
            .map(|address| self.endpoint(address))
            .collect::<Result<Vec<_>, _>>()?;
        let index = index % endpoints.len();
        let channel = endpoints.swap_remove(index).connect_lazy();
        Ok((
            index,
            self.client(InterceptedService::new(channel, credentials)),
        ))
    }

    /// The endpoint of one address, with timeouts, keepalives and TLS.
    fn endpoint(&self, given: &str) -> Result<Endpoint, ClientError> {
        // TLS is chosen by these options, so an `http://` address with a CA
        // file still speaks TLS, to the same host and port. A bare
        // `host:port`, as grpcurl and most tools take it, gets the scheme
        // these options call for.
        let tls = self.address_uses_tls(given);
        let address = match given.strip_prefix("http://") {
            Some(rest) if tls => format!("https://{rest}"),
            _ if !given.contains("://") => match tls {
                true => format!("https://{given}"),
                false => format!("http://{given}"),
            },
            _ => given.to_owned(),
        };
        let mut endpoint =
            Endpoint::from_shared(address).map_err(|source| ClientError::InvalidAddress {
                address: given.to_owned(),
                source,
            })?;
        if tls {
            endpoint = endpoint.tls_config(self.tls_config()?).map_err(|source| {
                ClientError::InvalidAddress {
                    address: given.to_owned(),
                    source,
                }
            })?;
        }
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_keepalive(Some(self.keepalive_interval))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(true))
    }

    /// The TLS settings: the CA file or the system's roots, and the client
    /// certificate if given.
    fn tls_config(&self) -> Result<ClientTlsConfig, ClientError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(path) => config.ca_certificate(Certificate::from_pem(read_pem("ca file", path)?)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(
                read_pem("client certificate", cert)?,
                read_pem("client key", key)?,
            ));
        }
        Ok(config)
    }

    /// The interceptor for the configured credentials.
    fn credentials(&self) -> Result<Credentials, ClientError> {
        let authorization =
            match &self.token {
                None => None,
                Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                    ClientError::Credentials {
                        what: "token",
                        reason: "it holds characters an HTTP header cannot carry".into(),
                    }
                })?),
            };
        Ok(Credentials { authorization })
    }

    /// The generated client over `channel`.
    fn client(&self, channel: InterceptedService<Channel, Credentials>) -> LoggingClient {
        pb::logging_service_client::LoggingServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Reads a PEM file for the TLS settings.
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|err| ClientError::Credentials {
        what,
        reason: format!("cannot read {}: {err}", path.display()),
    })
}

/// Connects to a server at `address` (`http://host:port`, or several
/// separated by commas, the first that answers) with the default
/// [`ConnectOptions`].
///
/// # Errors
///
/// [`ClientError::InvalidAddress`], [`ClientError::Connect`] or
/// [`ClientError::Unreachable`].
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), baa_logging_client::ClientError> {
/// use baa_logging_client::{connect, pb};
///
/// let mut client = connect("http://127.0.0.1:50051").await?;
/// let info = client.get_server_info(pb::GetServerInfoRequest {}).await?;
/// assert_eq!(info.into_inner().run_layout_version, "local-run-v1");
/// # Ok(())
/// # }
/// ```
pub async fn connect(address: impl Into<String>) -> Result<LoggingClient, ClientError> {
    ConnectOptions::new(address).connect().await
}

/// Adds the configured credentials to every request.
#[derive(Clone)]
pub struct Credentials {
    /// The `authorization` header's value, if a token is configured.
    authorization: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A comma-separated list is split and trimmed, empty parts dropped; a
    /// single address stays as it was.
    #[test]
    fn a_list_of_addresses_is_split_on_commas() {
        let options = ConnectOptions::new(" http://a:1 ,b:2,, https://c:3 ");
        assert_eq!(options.addresses(), ["http://a:1", "b:2", "https://c:3"]);
        assert_eq!(options.address(), "http://a:1");
        assert_eq!(
            ConnectOptions::new("http://a:1").addresses(),
            ["http://a:1"]
        );
        assert_eq!(ConnectOptions::new("").addresses(), [""]);
        assert_eq!(ConnectOptions::new(",").addresses(), [","]);
        let empty: [&str; 0] = [];
        assert_eq!(ConnectOptions::with_addresses(empty).addresses(), [""]);
    }

    /// Every address of a list is checked before any is tried, so that a
    /// typo is reported as such and not skipped as a dead server.
    #[tokio::test]
    async fn a_bad_address_in_a_list_is_reported_not_skipped() {
        let err = ConnectOptions::new("127.0.0.1:1,http://bad host:2")
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::InvalidAddress { address, .. } if address == "http://bad host:2"),
            "{err:?}"
        );
    }

    /// The server that answered last is where the next connection
    /// starts, for every clone of the options.
    #[test]
    fn the_preferred_server_is_shared_by_clones() {
        let options = ConnectOptions::new("a:1,b:2,c:3");
        let clone = options.clone();
        options.preferred.store(2, Ordering::Relaxed);
        assert_eq!(clone.preferred(), 2);
    }
}
