//! Opening a connection to `baa-logd`: the endpoint's timeouts and
//! keepalives, and the credentials every request carries.

use std::{
    path::{Path, PathBuf},
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

/// How to reach a server.
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
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    /// `http://host:port`, `https://host:port`, or `host:port` (plain
    /// HTTP/2, or TLS when a CA file or a client certificate is set).
    address: String,
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
            .field("address", &self.address)
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
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
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

    /// Whether the connection uses TLS: an `https://` address, a CA file or
    /// a client certificate.
    pub fn uses_tls(&self) -> bool {
        self.address.starts_with("https://") || self.ca_file.is_some() || self.identity.is_some()
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

    /// The server address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connects now, so that an unreachable server is reported at once.
    /// The connection is re-established by itself after it breaks.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`], [`ClientError::Connect`] or
    /// [`ClientError::Credentials`].
    pub async fn connect(&self) -> Result<LoggingClient, ClientError> {
        Ok(self.client(self.channel().await?))
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
    /// [`ClientError::InvalidAddress`], [`ClientError::Connect`] or
    /// [`ClientError::Credentials`].
    pub async fn channel(&self) -> Result<InterceptedService<Channel, Credentials>, ClientError> {
        let credentials = self.credentials()?;
        let channel = self
            .endpoint()?
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                address: self.address.clone(),
                source,
            })?;
        Ok(InterceptedService::new(channel, credentials))
    }

    /// Returns a client that connects on its first request, for callers
    /// that would rather wait for a server that is not up yet.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`] or [`ClientError::Credentials`].
    pub fn connect_lazy(&self) -> Result<LoggingClient, ClientError> {
        let credentials = self.credentials()?;
        let channel = self.endpoint()?.connect_lazy();
        Ok(self.client(InterceptedService::new(channel, credentials)))
    }

    /// The endpoint with timeouts, keepalives and TLS.
    fn endpoint(&self) -> Result<Endpoint, ClientError> {
        // TLS is chosen by these options, so an `http://` address with a CA
        // file still speaks TLS, to the same host and port. A bare
        // `host:port`, as grpcurl and most tools take it, gets the scheme
        // these options call for.
        let address = match self.address.strip_prefix("http://") {
            Some(rest) if self.uses_tls() => format!("https://{rest}"),
            _ if !self.address.contains("://") => match self.uses_tls() {
                true => format!("https://{}", self.address),
                false => format!("http://{}", self.address),
            },
            _ => self.address.clone(),
        };
        let mut endpoint =
            Endpoint::from_shared(address).map_err(|source| ClientError::InvalidAddress {
                address: self.address.clone(),
                source,
            })?;
        if self.uses_tls() {
            endpoint = endpoint.tls_config(self.tls_config()?).map_err(|source| {
                ClientError::InvalidAddress {
                    address: self.address.clone(),
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

/// Connects to a server at `address` (`http://host:port`) with the default
/// [`ConnectOptions`].
///
/// # Errors
///
/// [`ClientError::InvalidAddress`] or [`ClientError::Connect`].
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
