//! Keeps browsers away from the gRPC methods: once the port speaks
//! HTTP/1.1 for the page, a web site the user visits could send a plain
//! `POST` (a form, or `fetch` with `text/plain`, which needs no CORS
//! preflight) to `/baa.logging.v1.LoggingService/…`, and tonic does not
//! look at the content type. So every request that is not for the page
//! must be HTTP/2 with a gRPC content type, which no browser can send to
//! another origin; anything else is answered here and goes no further.

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::{Request, Response, StatusCode, Version, header};
use tonic::body::Body;
use tower::{Layer, Service};

/// Adds [`GrpcOnly`] in front of a service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcOnlyLayer;

impl<S> Layer<S> for GrpcOnlyLayer {
    type Service = GrpcOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcOnly { inner }
    }
}

/// Passes on the page's requests and gRPC calls; refuses the rest.
#[derive(Debug, Clone)]
pub(crate) struct GrpcOnly<S> {
    /// The service behind.
    inner: S,
}

/// Whether `request` is for the page, or a gRPC call over HTTP/2.
fn admitted<B>(request: &Request<B>) -> bool {
    if super::serves(request.uri().path()) {
        return true;
    }
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    grpc && request.version() == Version::HTTP_2
}

/// The answer to a request that is neither.
fn refusal(path: &str) -> Response<Body> {
    // A gRPC method's path is `/package.Service/Method`.
    let method = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(service, _)| service.contains('.'));
    let (status, text) = match method {
        true => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this is a gRPC method: call it with a gRPC client, over HTTP/2 with \
             content-type application/grpc\n",
        ),
        false => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Body::new(text.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    super::add_secure_headers(response.headers_mut());
    response
}

impl<S, B> Service<Request<B>> for GrpcOnly<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match admitted(&request) {
            true => Either::Left(self.inner.call(request)),
            false => Either::Right(ready(Ok(refusal(request.uri().path())))),
        }
    }
}
