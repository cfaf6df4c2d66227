//! Who reads through the page: with tokens configured, a browser signs in
//! once with a token that has the `read` scope and gets a session cookie
//! instead (`HttpOnly`, `SameSite=Strict`, short-lived, `Secure` over
//! TLS), so that plain links such as the raw download work and the token
//! never appears in a URL, a page or a log.
//!
//! A session is a signed cookie, not server state: `PAYLOAD.MAC`, both
//! base64url, where the payload names the token, holds a keyed fingerprint
//! of the token's digest (never the digest) and an expiry, and the MAC is
//! HMAC-SHA256 under the server's session key. So sessions survive a
//! restart (the key lives in the data directory), and every request checks
//! the token again: removing a token from the token file ends its
//! sessions. Scripts may send `Authorization: Bearer …` instead.

use std::{
    io::Write,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use tonic::{
    Extensions,
    metadata::MetadataMap,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tracing::info;

use baa_logging_store::RunStore;

use super::{Page, problem::Problem};
use crate::security::{Denied, Scope, TaskLimit, TokenName, TokenSet};

/// The session cookie's name.
const COOKIE: &str = "baa_session";

/// A session is renewed when less than this part of its lifetime is left.
const RENEW_BELOW: u32 = 2;

/// The key sessions are signed with: 32 random bytes.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl Default for SessionKey {
    /// A fresh random key: sessions end when the process does.
    ///
    /// # Panics
    ///
    /// When the system has no random source, rather than sign sessions
    /// with a key anyone could guess.
    fn default() -> Self {
        Self::random().expect("the system's random source")
    }
}

impl SessionKey {
    /// A fresh random key.
    fn random() -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|err| std::io::Error::other(err.to_string()))?;
        Ok(Self(key))
    }

    /// The key in `path` (64 hex digits), created with a fresh random key,
    /// readable by the owner only, when there is none; so that sessions
    /// outlive a restart.
    ///
    /// # Errors
    ///
    /// The file cannot be read or written, or holds something else.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .filter(|bytes| bytes.len() == 32)
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{} does not hold a session key (64 hex digits); remove it to make a new one",
                            path.display()
                        ))
                    })?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self(key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random()?;
                let staged = path.with_extension("tmp");
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode_owner_only()
                    .open(&staged)?;
                file.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&staged, path)?;
                Ok(key)
            }
            Err(err) => Err(err),
        }
    }

    /// The MAC of `bytes`.
    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(bytes);
        mac
    }

    /// A keyed fingerprint of a token's digest: what a session holds in
    /// place of the digest.
    fn fingerprint(&self, digest: &[u8; 32]) -> [u8; 16] {
        let mut mac = self.mac(b"baa-logd session token\0");
        mac.update(digest);
        let full = mac.finalize().into_bytes();
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&full[..16]);
        fingerprint
    }
}

/// Opens files readable by their owner only.
trait OwnerOnly {
    /// Sets mode 0600 for a file this creates.
    fn mode_owner_only(&mut self) -> &mut Self;
}

impl OwnerOnly for std::fs::OpenOptions {
    fn mode_owner_only(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// What a session cookie says, before its MAC.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The token's name.
    #[serde(rename = "n")]
    name: String,
    /// The token's digest's fingerprint, base64url.
    #[serde(rename = "f")]
    fingerprint: String,
    /// When it expires, in seconds since the Unix epoch.
    #[serde(rename = "e")]
    expires: u64,
}

/// Signs sessions in and checks them.
#[derive(Debug, Clone)]
pub(super) struct Sessions {
    /// The accepted tokens; none: the server has no tokens and everyone
    /// reads.
    tokens: Option<Arc<TokenSet>>,
    /// The signing key.
    key: SessionKey,
    /// How long a session lasts, renewed while the page is used.
    ttl: Duration,
    /// Whether cookies are sent over TLS only.
    secure: bool,
}

impl Sessions {
    /// Sessions for `tokens`, signed with `key`.
    pub(super) fn new(
        tokens: Option<Arc<TokenSet>>,
        key: SessionKey,
        ttl: Duration,
        secure: bool,
    ) -> Self {
        Self {
            tokens,
            key,
            ttl,
            secure,
        }
    }

    /// Whether reading needs a session.
    fn required(&self) -> bool {
        self.tokens.is_some()
    }

    /// A signed session for the token named `name` with digest `digest`.
    fn issue(&self, name: &str, digest: &[u8; 32]) -> String {
        let claims = Claims {
            name: name.to_owned(),
            fingerprint: URL_SAFE_NO_PAD.encode(self.key.fingerprint(digest)),
            expires: now_secs() + self.ttl.as_secs(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = self.key.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The claims of a well-signed, unexpired session value.
    fn verify(&self, value: &str) -> Option<Claims> {
        let (payload, mac) = value.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.key.mac(payload.as_bytes()).verify_slice(&mac).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.expires > now_secs()).then_some(claims)
    }

    /// The `Set-Cookie` value for `session`, `Secure` when the server or
    /// the proxy in front of it (`X-Forwarded-Proto: https`) speaks TLS.
    fn cookie(&self, session: String, headers: &HeaderMap) -> HeaderValue {
        let cookie = Cookie::build((COOKIE, session))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(self.secure || forwarded_https(headers))
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
            ));
        HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a header value")
    }

    /// The `Set-Cookie` value that removes the session.
    fn removal(&self, headers: &HeaderMap) -> HeaderValue {
        let mut cookie = Cookie::build((COOKIE, ""))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(self.secure || forwarded_https(headers))
            .build();
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a header value")
    }

    /// Who sends `headers`: a bearer token or a session cookie with the
    /// `read` scope, or anyone when the server has no tokens.
    fn reader(&self, headers: &HeaderMap) -> Result<Reader, Problem> {
        let Some(tokens) = &self.tokens else {
            return Ok(Reader::default());
        };
        let denied = |denied: Denied| match denied {
            Denied::Unauthenticated(why) => Problem::unauthenticated(format!("sign in: {why}")),
            Denied::PermissionDenied { token, needs } => Problem::forbidden(format!(
                "token `{token}` lacks the `{}` scope",
                needs.as_str()
            )),
        };
        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            let authorized = tokens
                .check(Some(authorization.as_bytes()), Some(Scope::Read))
                .map_err(denied)?;
            return Ok(Reader::of(authorized.name, authorized.tasks, None));
        }
        let session = session_cookie(headers)
            .ok_or_else(|| Problem::unauthenticated("sign in: no session"))?;
        let claims = self
            .verify(&session)
            .ok_or_else(|| Problem::unauthenticated("sign in: the session has expired"))?;
        let authorized = tokens
            .check_session(
                &claims.name,
                |digest| URL_SAFE_NO_PAD.encode(self.key.fingerprint(digest)) == claims.fingerprint,
                Scope::Read,
            )
            .map_err(denied)?;
        Ok(Reader::of(
            authorized.name,
            authorized.tasks,
            Some(claims.expires),
        ))
    }
}

/// Whether a proxy in front says the browser spoke HTTPS to it.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("https"))
}

/// The session cookie's value in `headers`.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Who reads: the token behind the request and its task limit, to be put
/// on the RPC requests made for it, so that they are checked as that
/// token's gRPC calls are.
#[derive(Debug, Clone, Default)]
pub(super) struct Reader {
    /// The token's name; none without tokens.
    name: Option<String>,
    /// The tasks it may read; all when `None`.
    tasks: Option<Arc<TaskLimit>>,
    /// When its session expires; none for a bearer token or no tokens.
    expires: Option<u64>,
    /// Who is at the other end of the connection, as tonic records it
    /// (plain or TLS), for what goes by the caller's address.
    connection: Extensions,
}

impl Reader {
    /// The reader with token `name`.
    fn of(name: &str, tasks: Option<Arc<TaskLimit>>, expires: Option<u64>) -> Self {
        Self {
            name: Some(name.to_owned()),
            tasks,
            expires,
            connection: Extensions::new(),
        }
    }

    /// The tasks it may read; all when `None`.
    pub(super) fn tasks(&self) -> Option<&Arc<TaskLimit>> {
        self.tasks.as_ref()
    }

    /// An RPC request for this reader as its token, but with no task limit:
    /// for a listing the caller filters by that limit itself.
    pub(super) fn request_unlimited<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.request(message);
        request.extensions_mut().remove::<Arc<TaskLimit>>();
        request
    }

    /// An RPC request for this reader, carrying what the auth layer puts
    /// on a gRPC call with its token.
    pub(super) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request =
            tonic::Request::from_parts(MetadataMap::new(), self.connection.clone(), message);
        if let Some(name) = &self.name {
            request.extensions_mut().insert(TokenName(name.clone()));
        }
        if let Some(tasks) = &self.tasks {
            request.extensions_mut().insert(tasks.clone());
        }
        request
    }
}

impl<S: RunStore> FromRequestParts<Page<S>> for Reader {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        page: &Page<S>,
    ) -> Result<Self, Self::Rejection> {
        let mut reader = page.sessions.reader(&parts.headers)?;
        if let Some(tcp) = parts.extensions.get::<TcpConnectInfo>() {
            reader.connection.insert(tcp.clone());
        }
        if let Some(tls) = parts.extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            reader.connection.insert(tls.clone());
        }
        // The page's own port, served by axum: the peer as tonic records it.
        if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            reader.connection.insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(*peer),
            });
        }
        Ok(reader)
    }
}

/// `GET /api/session`: whether a session is needed and held; renews one
/// that has less than half its lifetime left.
pub(super) async fn status<S: RunStore>(
    State(page): State<Page<S>>,
    headers: HeaderMap,
) -> Response {
    let sessions = &page.sessions;
    let reader = sessions.reader(&headers).ok();
    let body = Json(json!({
        "required": sessions.required(),
        "signedIn": reader.is_some(),
        "token": reader.as_ref().and_then(|reader| reader.name.clone()),
        "serverVersion": env!("CARGO_PKG_VERSION"),
    }));
    let renew = reader
        .as_ref()
        .and_then(|reader| reader.expires)
        .filter(|expires| {
            expires.saturating_sub(now_secs()) < sessions.ttl.as_secs() / u64::from(RENEW_BELOW)
        })
        .and_then(|_| renewal(sessions, &headers));
    match renew {
        Some(cookie) => ([(header::SET_COOKIE, cookie)], body).into_response(),
        None => body.into_response(),
    }
}

/// A fresh cookie for the session in `headers`.
fn renewal(sessions: &Sessions, headers: &HeaderMap) -> Option<HeaderValue> {
    let tokens = sessions.tokens.as_ref()?;
    let claims = sessions.verify(&session_cookie(headers)?)?;
    // Renewing needs the digest, which only the token set holds: find it
    // through the same fingerprint check.
    let digest = std::cell::Cell::new(None);
    tokens
        .check_session(
            &claims.name,
            |candidate| {
                let matches = URL_SAFE_NO_PAD.encode(sessions.key.fingerprint(candidate))
                    == claims.fingerprint;
                if matches {
                    digest.set(Some(*candidate));
                }
                matches
            },
            Scope::Read,
        )
        .ok()?;
    Some(sessions.cookie(sessions.issue(&claims.name, &digest.get()?), headers))
}

/// The body of `POST /api/session`.
#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    /// The token, as for `Authorization: Bearer`.
    token: String,
}

/// `POST /api/session`: exchanges a token with the `read` scope for a
/// session cookie. Only from the page's own origin; the token is never
/// logged.
pub(super) async fn sign_in<S: RunStore>(
    State(page): State<Page<S>>,
    headers: HeaderMap,
    uri: Uri,
    Json(body): Json<SignIn>,
) -> Result<Response, Problem> {
    let sessions = &page.sessions;
    let Some(tokens) = &sessions.tokens else {
        return Err(Problem::invalid(
            "this server has no tokens: there is nothing to sign in to",
        ));
    };
    check_same_origin(&headers, &uri)?;
    let bearer = format!("Bearer {}", body.token.trim());
    let authorized = tokens
        .check(Some(bearer.as_bytes()), Some(Scope::Read))
        .map_err(|denied| match denied {
            Denied::Unauthenticated(_) => Problem::unauthenticated("unknown token"),
            Denied::PermissionDenied { token, .. } => Problem::forbidden(format!(
                "token `{token}` lacks the `read` scope the page needs"
            )),
        })?;
    info!(token = authorized.name, "page session started");
    let digest = TokenSet::digest_of(body.token.trim().as_bytes());
    let cookie = sessions.cookie(sessions.issue(authorized.name, &digest), &headers);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// `DELETE /api/session`: removes the session cookie.
pub(super) async fn sign_out<S: RunStore>(
    State(page): State<Page<S>>,
    headers: HeaderMap,
) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, page.sessions.removal(&headers))],
    )
        .into_response()
}

/// Refuses a request whose `Origin` is not the host it was sent to: a
/// sign-in from another site's page.
fn check_same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), Problem> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = super::request_host(headers, uri).unwrap_or_default();
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, host)| host)
        .unwrap_or_default();
    match !host.is_empty() && origin_host == host {
        true => Ok(()),
        false => Err(Problem::forbidden("sign-in from another origin")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(ttl: Duration) -> Sessions {
        Sessions::new(None, SessionKey::default(), ttl, false)
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_not_once_changed() {
        let sessions = sessions(Duration::from_secs(60));
        let value = sessions.issue("dashboard", &[7; 32]);
        let claims = sessions.verify(&value).expect("a fresh session verifies");
        assert_eq!(claims.name, "dashboard");
        // A different key, a changed payload or MAC: refused.
        assert!(
            self::sessions(Duration::from_secs(60))
                .verify(&value)
                .is_none()
        );
        let (payload, mac) = value.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                name: "admin".into(),
                fingerprint: claims.fingerprint.clone(),
                expires: claims.expires,
            })
            .unwrap(),
        );
        assert!(sessions.verify(&format!("{forged}.{mac}")).is_none());
        assert!(sessions.verify(payload).is_none());
        let expired = self::sessions(Duration::ZERO);
        assert!(
            expired
                .verify(&expired.issue("dashboard", &[7; 32]))
                .is_none()
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let sessions = Sessions::new(None, SessionKey::default(), Duration::from_secs(3600), true);
        let cookie = sessions.cookie("v".into(), &HeaderMap::new());
        let cookie = cookie.to_str().unwrap();
        for part in [
            "baa_session=v",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
    }

    #[test]
    fn a_key_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let first = SessionKey::load_or_create(&path).unwrap();
        let again = SessionKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, again.0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "nonsense").unwrap();
        assert!(SessionKey::load_or_create(&path).is_err());
    }
}
