//! The page's files, built into the binary from `crates/server/web/`
//! (`rust-embed`, embedding in debug builds too): `index.html` for every
//! page route, the rest under `/assets/`.

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

/// The files of `crates/server/web/`, but for its README.
#[derive(RustEmbed)]
#[folder = "web/"]
#[exclude = "*.md"]
struct Files;

/// `GET /` and `GET /runs/{taskId}/{runId}`: the page's one HTML shell. It
/// holds no data; the scripts fetch it.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/{file}`.
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    if file == "index.html" {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(&file, &headers)
}

/// `name` with its type and an `ETag`, or `304 Not Modified` when the
/// browser holds it already. Files are revalidated on every load, so that
/// a new server version is never mixed with an old script.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Files::get(name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let etag = HeaderValue::from_str(&etag).expect("hex is a header value");
    let cache = HeaderValue::from_static("no-cache");
    if cached {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        file.data,
    )
        .into_response()
}

/// The media type of a file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
