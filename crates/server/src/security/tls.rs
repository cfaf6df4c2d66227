//! TLS with rustls: a certificate that can be replaced while the server
//! runs, and optional client certificates (mutual TLS).
//!
//! The certificate and key are read again on SIGHUP and whenever either
//! file's modification time changes (checked every few seconds), so that a
//! renewed certificate is picked up without a restart and without dropping
//! a connection. A reload that fails keeps the old certificate and logs why.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::sync::{read, write};

/// How often the certificate files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// The server's TLS setup.
#[derive(Clone)]
pub struct Tls {
    /// Accepts TLS connections.
    acceptor: TlsAcceptor,
    /// The certificate in use, replaced on reload.
    resolver: Arc<ReloadingCert>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.resolver.cert_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key, and the client CAs if given.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid file, or a key that does not fit.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let provider = Arc::new(default_provider());
        let resolver = Arc::new(ReloadingCert {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
            stamp: RwLock::new(stamp(cert, key)),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError(err.to_string()))?;
        let builder = match client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|err| TlsError(format!("{}: {err}", path.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| TlsError(format!("{}: {err}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        // gRPC runs on HTTP/2; the run page's browsers and proxies may
        // speak HTTP/1.1. HTTP/2 first, so that clients offering both get it.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    /// Accepts TLS connections.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the certificate and key again; keeps the old ones on failure.
    pub fn reload(&self) {
        self.resolver.reload();
    }

    /// Reloads on SIGHUP and when the files change, until dropped.
    pub(crate) async fn watch(self) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(err) => {
                warn!(cause = %err, "cannot listen for SIGHUP; certificates reload on change only");
                None
            }
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                Some(()) = async { match &mut hangup { Some(signal) => signal.recv().await, None => None } } => {
                    info!("SIGHUP: reloading the TLS certificate");
                    self.reload();
                }
                _ = tick.tick() => {
                    let now = stamp(&self.resolver.cert_path, &self.resolver.key_path);
                    let changed = *read(&self.resolver.stamp) != now;
                    if changed {
                        info!("the TLS certificate files changed: reloading");
                        self.reload();
                    }
                }
            }
        }
    }
}

/// Serves the current certificate to every handshake.
struct ReloadingCert {
    /// The chain's file.
    cert_path: PathBuf,
    /// The key's file.
    key_path: PathBuf,
    /// The certificate served now.
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last loaded.
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files again.
    fn reload(&self) {
        *write(&self.stamp) = stamp(&self.cert_path, &self.key_path);
        match certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                *write(&self.current) = Arc::new(key);
                info!(cert = %self.cert_path.display(), "TLS certificate loaded");
            }
            Err(err) => warn!(cause = %err, "keeping the previous TLS certificate"),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.current).clone())
    }
}

/// The modification times of the two files.
fn stamp(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

/// A certificate chain and its key, checked to fit together.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| TlsError(format!("{}: {err}", key.display())))?;
    let provider = default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|err| TlsError(format!("{} and {}: {err}", cert.display(), key.display())))?;
    Ok(certified)
}

/// The certificates of a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsError(format!("{}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}
