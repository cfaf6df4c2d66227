//! Who may connect and what they may do: TLS (`tls`), bearer tokens with
//! scopes (`tokens`) and task limits (`tasks`), and the layer that checks
//! them on every call (`auth`).

mod auth;
pub(crate) mod tasks;
mod tls;
mod tokens;

use std::sync::Arc;

use tracing::warn;

pub(crate) use self::auth::{AuthLayer, TokenName};
pub use self::{
    tasks::TaskLimit,
    tls::{Tls, TlsError},
    tokens::{Authorized, Denied, Scope, TokenFileError, TokenSet},
};
use crate::Settings;

/// Why the security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The TLS files.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The token file.
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    /// A setting is incomplete or unsafe.
    #[error("{0}")]
    Refused(String),
}

/// TLS and tokens, as configured.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// TLS, when on.
    pub tls: Option<Tls>,
    /// The accepted tokens, when authentication is on.
    pub tokens: Option<Arc<TokenSet>>,
}

impl Security {
    /// Loads the TLS files and the token file the settings name, and
    /// refuses to listen beyond loopback without access control (tokens or
    /// client certificates; TLS alone does not count), unless `insecure`.
    ///
    /// # Errors
    ///
    /// [`SecurityError`] says which file or setting is wrong.
    pub fn from_settings(settings: &Settings) -> Result<Self, SecurityError> {
        let tls = match (&settings.tls.cert, &settings.tls.key) {
            (Some(cert), Some(key)) => {
                Some(Tls::load(cert, key, settings.tls.client_ca.as_deref())?)
            }
            (None, None) if settings.tls.client_ca.is_some() => {
                return Err(SecurityError::Refused(
                    "tls.client_ca needs tls.cert and tls.key too".into(),
                ));
            }
            (None, None) => None,
            _ => {
                return Err(SecurityError::Refused(
                    "TLS needs both tls.cert and tls.key".into(),
                ));
            }
        };
        let tokens = match &settings.token_file {
            Some(path) => Some(Arc::new(TokenSet::load(path)?)),
            None => None,
        };
        // Access control is a token or a client certificate; TLS alone
        // only hides the traffic from who can reach the server anyway.
        let open = tokens.is_none() && settings.tls.client_ca.is_none();
        let remote = !settings.listen.ip().is_loopback();
        if open && remote && !settings.insecure {
            return Err(SecurityError::Refused(format!(
                "refusing to listen on {} without tokens or client certificates: anyone who \
                 can reach it could read and write every run. Configure --token-file and/or \
                 --tls-client-ca (with --tls-cert/--tls-key), listen on a loopback address, \
                 or pass --insecure on a network you trust",
                settings.listen
            )));
        }
        // The run page's own port is plain HTTP: client certificates do not
        // reach it, only tokens do.
        if let Some(web_listen) = settings.web_listen.filter(|_| settings.web.enabled) {
            if tokens.is_none() && !web_listen.ip().is_loopback() && !settings.insecure {
                return Err(SecurityError::Refused(format!(
                    "refusing to serve the run page on {web_listen} without tokens: anyone who \
                     can reach it could read every run. Configure --token-file, serve the page \
                     on a loopback address (behind a reverse proxy), or pass --insecure on a \
                     network you trust"
                )));
            }
        }
        if tokens.is_some() && tls.is_none() && remote {
            warn!(
                listen = %settings.listen,
                "bearer tokens will cross the network in clear text: configure --tls-cert and --tls-key"
            );
        }
        Ok(Self { tls, tokens })
    }

    /// Whether TLS is on.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether calls need a token.
    pub fn tokens_enabled(&self) -> bool {
        self.tokens.is_some()
    }
}
