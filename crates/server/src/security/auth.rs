//! The one place where calls are authorized: a tower layer in front of
//! every service, which maps a call's path to the scope it needs and checks
//! the bearer token for it.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{Status, body::Body};
use tower::{Layer, Service};
use tracing::debug;

use baa_logging::pb::logging_service_server::LoggingServiceServer;
use tonic::server::NamedService;
use tonic_health::pb::health_server::HealthServer;

use super::tokens::{Denied, Scope, TokenSet};

/// The health service's name, open to all.
const HEALTH: &str = <HealthServer<()> as NamedService>::NAME;

/// The logging service's name, whose methods are checked one by one.
const LOGGING: &str = <LoggingServiceServer<()> as NamedService>::NAME;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: open to all.
    Nothing,
    /// Any known token.
    AnyToken,
    /// A token with this scope (or `admin`).
    Scope(Scope),
}

/// What a call needs, by its gRPC path.
///
/// Health stays open so that load balancers and probes need no token.
/// The server's limits are for every client; reflection tells the API's
/// shape, which is no secret but still only for readers.
pub(crate) fn required(path: &str) -> Need {
    // The run page checks its own sessions.
    if crate::web::serves(path) {
        return Need::Nothing;
    }
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Need::Scope(Scope::Admin);
    };
    match service {
        HEALTH => Need::Nothing,
        LOGGING => match method {
            "GetServerInfo" => Need::AnyToken,
            "PrepareRun" | "UpdateRunState" | "AppendLogs" | "GetWriterCursor" | "UploadObject"
            | "GetUploadStatus" | "ReserveCheckpoint" | "CommitCheckpoint" => {
                Need::Scope(Scope::Write)
            }
            "GetRun" | "ListRuns" | "FollowRun" | "SearchRuns" | "DownloadObject"
            | "ListObjects" => Need::Scope(Scope::Read),
            "CollectRuns" => Need::Scope(Scope::Admin),
            // Anything added later is refused until it is given a scope.
            _ => Need::Scope(Scope::Admin),
        },
        _ => Need::Scope(Scope::Read),
    }
}

/// Adds [`Authorize`] in front of a service.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    /// The accepted tokens.
    tokens: Arc<TokenSet>,
}

impl AuthLayer {
    /// A layer that accepts `tokens`.
    pub(crate) fn new(tokens: Arc<TokenSet>) -> Self {
        Self { tokens }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The name of the token that authorized a call, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenName(pub(crate) String);

/// Refuses calls without a token for their scope, before they reach the
/// service: `UNAUTHENTICATED` without a known token, `PERMISSION_DENIED`
/// with one that lacks the scope. The token itself is never logged.
#[derive(Debug, Clone)]
pub(crate) struct Authorize<S> {
    /// The service behind.
    inner: S,
    /// The accepted tokens.
    tokens: Arc<TokenSet>,
}

impl<S, B> Service<http::Request<B>> for Authorize<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let need = required(&path);
        if need != Need::Nothing {
            let scope = match need {
                Need::Scope(scope) => Some(scope),
                _ => None,
            };
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            let checked = self
                .tokens
                .check(header, scope)
                .map(|authorized| (TokenName(authorized.name.to_owned()), authorized.tasks));
            match checked {
                Ok((name, tasks)) => {
                    // Rates per caller go by the token's name.
                    request.extensions_mut().insert(name);
                    // The RPC checks the task it touches against the limit.
                    if let Some(tasks) = tasks {
                        request.extensions_mut().insert(tasks);
                    }
                }
                Err(denied) => {
                    let status = match denied {
                        Denied::Unauthenticated(why) => {
                            debug!(%path, why, "call refused: unauthenticated");
                            Status::unauthenticated(match scope {
                                Some(scope) => format!(
                                    "{why}: {path} needs a bearer token with the `{}` scope",
                                    scope.as_str()
                                ),
                                None => format!("{why}: {path} needs a bearer token"),
                            })
                        }
                        Denied::PermissionDenied { token, needs } => {
                            debug!(%path, %token, "call refused: missing scope");
                            Status::permission_denied(format!(
                                "token `{token}` lacks the `{}` scope that {path} needs",
                                needs.as_str()
                            ))
                        }
                    };
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        // The clone that was made ready is the one that takes the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}
