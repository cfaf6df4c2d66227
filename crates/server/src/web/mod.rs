//! The run page: HTML, scripts and a small JSON and server-sent events API
//! for browsers, served by `baa-logd` itself next to gRPC (or on an address
//! of its own), so that reading a run needs nothing but a browser.
//!
//! Every data route calls the logging service's own RPC handlers with a
//! request that carries the reader's token, so the page sees exactly what
//! a gRPC client with that token sees: the same task limits, rates,
//! follower caps and errors. Nothing here reads the store directly.
//!
//! - `assets`: the page's files, built into the binary.
//! - `session`: signing in with a token for a session cookie; the
//!   [`Reader`](session::Reader) every data route takes.
//! - `api`: runs, a run, a page of entries, search (JSON).
//! - `follow`: a run's entries live, as server-sent events.
//! - `raw`: the stored output as plain text, for download.
//! - `objects`: a run's artifacts and checkpoints, listed and downloaded.
//! - `json`: the JSON shapes; `problem`: errors as JSON.
//!
//! Every response carries a strict Content-Security-Policy (no inline
//! script or style, nothing from elsewhere, no framing), `nosniff` and no
//! referrer: log text is untrusted, and the page only ever puts it in the
//! DOM as text.

mod api;
mod assets;
mod follow;
mod guard;
mod json;
mod objects;
mod problem;
mod raw;
mod session;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Request, StatusCode, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use baa_logging_store::RunStore;

pub(crate) use self::guard::GrpcOnlyLayer;
pub use self::session::SessionKey;
use self::session::Sessions;
use crate::GrpcLoggingService;

/// The Content-Security-Policy of every response.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// What the page's routes share.
#[derive(Debug)]
pub(crate) struct Page<S> {
    /// The logging service whose handlers answer.
    service: Arc<GrpcLoggingService<S>>,
    /// Who may read.
    sessions: Sessions,
    /// How often an idle event stream sends a comment.
    keep_alive: Duration,
}

impl<S> Clone for Page<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            sessions: self.sessions.clone(),
            keep_alive: self.keep_alive,
        }
    }
}

/// What the page is served with.
#[derive(Debug, Clone)]
pub struct PageOptions {
    /// The key session cookies are signed with.
    pub session_key: SessionKey,
    /// How long a session lasts; the page renews it while in use.
    pub session_ttl: Duration,
    /// Without tokens, the host names (beside IP addresses and `localhost`)
    /// the page answers to: a guard against DNS rebinding, by which a web
    /// site could read a server on the visitor's loopback.
    pub allowed_hosts: Vec<String>,
}

impl Default for PageOptions {
    fn default() -> Self {
        Self {
            session_key: SessionKey::default(),
            session_ttl: Duration::from_secs(60 * 60),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The page's routes over `service`; `apart` when they are served on
/// their own plain-HTTP address rather than beside gRPC.
pub(crate) fn router<S: RunStore>(
    service: Arc<GrpcLoggingService<S>>,
    options: &PageOptions,
    apart: bool,
) -> Router {
    let security = &service.config().security;
    let sessions = Sessions::new(
        security.tokens.clone(),
        options.session_key.clone(),
        options.session_ttl,
        // The page's own port is plain HTTP: its cookies are `Secure` only
        // behind a proxy that says the browser speaks HTTPS.
        security.tls_enabled() && !apart,
    );
    let hosts = match security.tokens_enabled() {
        true => None,
        false => Some(Arc::new(options.allowed_hosts.clone())),
    };
    let page = Page {
        service,
        sessions,
        keep_alive: Duration::from_secs(15),
    };
    Router::new()
        .route("/", get(assets::index))
        .route("/runs/{task}/{run}", get(assets::index))
        .route("/runs/{task}/{run}/raw", get(raw::raw::<S>))
        .route(
            "/runs/{task}/{run}/objects/{kind}/{*name}",
            get(objects::download::<S>),
        )
        .route("/assets/{file}", get(assets::asset))
        .route(
            "/api/session",
            get(session::status::<S>)
                .post(session::sign_in::<S>)
                .delete(session::sign_out::<S>),
        )
        .route("/api/runs", get(api::list::<S>))
        .route("/api/runs/{task}/{run}", get(api::run::<S>))
        .route("/api/runs/{task}/{run}/entries", get(api::entries::<S>))
        .route("/api/runs/{task}/{run}/objects", get(objects::list::<S>))
        .route("/api/runs/{task}/{run}/search", get(api::search::<S>))
        .route("/api/runs/{task}/{run}/follow", get(follow::follow::<S>))
        .with_state(page)
        .layer(middleware::from_fn(move |request, next| {
            check_host(hosts.clone(), request, next)
        }))
        .layer(middleware::from_fn(secure_headers))
}

/// The host a request was sent to, without its port: `Host`, or over
/// HTTP/2 the URI's authority.
pub(crate) fn request_host(headers: &axum::http::HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            uri.authority()
                .map(|authority| authority.as_str().to_owned())
        })
}

/// Whether the page answers requests sent to `host` (with its port) when
/// the server has no tokens: IP addresses, `localhost`, and `allowed`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal, `[::1]:port`.
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// Without tokens, answers only requests sent to an allowed host (see
/// [`PageOptions::allowed_hosts`]); with tokens, sessions guard the page.
async fn check_host(
    allowed: Option<Arc<Vec<String>>>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    if let Some(allowed) = allowed {
        let host = request_host(request.headers(), request.uri()).unwrap_or_default();
        if !host_allowed(&host, &allowed) {
            return problem::Problem::forbidden(format!(
                "this server answers the page at an IP address or localhost; to reach it as \
                 {host:?}, add that name to web.allowed_hosts (or configure tokens)"
            ))
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether a request path is the page's rather than a gRPC method's
/// (`/package.Service/Method`): the auth and metrics layers leave these to
/// the page, which checks its own sessions.
pub(crate) fn serves(path: &str) -> bool {
    path == "/"
        || path == "/favicon.ico"
        || ["/runs/", "/api/", "/assets/"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Adds the security headers to every response, and keeps the API's
/// answers out of caches.
async fn secure_headers(request: Request<axum::body::Body>, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    add_secure_headers(response.headers_mut());
    if api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The security headers every response of the page carries.
fn add_secure_headers(headers: &mut axum::http::HeaderMap) {
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
}

/// Any other path that is not a gRPC call: `404 Not Found`; a gRPC call to
/// an unknown method: `UNIMPLEMENTED`, as tonic answers.
pub(crate) async fn fallback(request: Request<axum::body::Body>) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let mut response = (StatusCode::NOT_FOUND, "not found\n").into_response();
    add_secure_headers(response.headers_mut());
    response
}

/// A route with the page's routes merged in, its fallback answering both
/// gRPC and browsers.
pub(crate) fn merge(grpc: Router, page: Option<Router>) -> Router {
    let merged = match page {
        Some(page) => grpc.merge(page),
        None => grpc,
    };
    merged.fallback(fallback)
}
