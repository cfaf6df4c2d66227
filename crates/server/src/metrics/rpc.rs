//! The tower layer that counts gRPC calls: one count and one latency
//! observation per call, by service, method and status code, taken when
//! the call ends; and a gauge of the open AppendLogs and FollowRun
//! streams.
//!
//! A call ends when its response ends, which for a stream is long after
//! the handler returned. gRPC sends the status in the trailers, or in the
//! headers when the response is nothing but a status (a call refused at
//! once): so the layer reads the headers when the response starts, wraps
//! the body, and reads the trailers as they pass. A response that is
//! dropped before its status (the client went away) is counted as
//! `CANCELLED`.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use baa_logging::pb::logging_service_server::LoggingServiceServer;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::Frame;
use tonic::{Code, body::Body, server::NamedService};
use tower::{Layer, Service};

use super::{MethodLabels, Metrics, RpcLabels};

/// The methods whose calls are counted as open streams.
pub(super) const STREAM_METHODS: [&str; 2] = ["AppendLogs", "FollowRun"];

/// The service whose streams are counted.
const STREAM_SERVICE: &str = <LoggingServiceServer<()> as NamedService>::NAME;

/// Adds [`RpcMetrics`] in front of a service.
#[derive(Debug, Clone)]
pub(crate) struct RpcMetricsLayer {
    /// Where the calls are counted.
    metrics: Metrics,
}

impl RpcMetricsLayer {
    /// A layer that counts into `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts every call that passes through it.
#[derive(Debug, Clone)]
pub(crate) struct RpcMetrics<S> {
    /// The service behind.
    inner: S,
    /// Where the calls are counted.
    metrics: Metrics,
}

impl<S, B> Service<http::Request<B>> for RpcMetrics<S>
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if crate::web::serves(request.uri().path()) {
            // The run page's requests are not RPCs.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(request));
        }
        let mut call = Call::start(&self.metrics, request.uri().path());
        // The clone that was made ready is the one that takes the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await;
            match &response {
                Ok(response) => {
                    if let Some(code) = grpc_status(response.headers()) {
                        // Nothing but a status: the call ends here.
                        call.end(code);
                    }
                }
                // The transport failed under the call.
                Err(_) => call.end(Code::Unknown),
            }
            response.map(|response| response.map(|body| Body::new(CountedBody { body, call })))
        })
    }
}

/// The status code in a header map: the headers of a response that is
/// only a status, or the trailers of any other.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

// === impl Call ===

/// One call under way; it is counted once, when it ends or is dropped.
#[derive(Debug)]
struct Call {
    /// Where it is counted; `None` once it was.
    metrics: Option<Metrics>,
    /// Its service and method, or `other`.
    service: String,
    method: String,
    /// When the request came.
    started: Instant,
    /// Counted among the open streams.
    stream: Option<&'static str>,
}

impl Call {
    /// A call to `path` starts.
    fn start(metrics: &Metrics, path: &str) -> Self {
        let (service, method) = match path.trim_start_matches('/').split_once('/') {
            Some((service, method)) if metrics.inner.known_paths.contains(path) => {
                (service.to_owned(), method.to_owned())
            }
            _ => ("other".to_owned(), "other".to_owned()),
        };
        let stream = (service == STREAM_SERVICE)
            .then(|| STREAM_METHODS.into_iter().find(|known| *known == method))
            .flatten();
        if let Some(method) = stream {
            metrics
                .inner
                .open_streams
                .get_or_create(&MethodLabels { method })
                .inc();
        }
        Self {
            metrics: Some(metrics.clone()),
            service,
            method,
            started: Instant::now(),
            stream,
        }
    }

    /// The call ended with `code`; later ends are ignored.
    fn end(&mut self, code: Code) {
        let Some(metrics) = self.metrics.take() else {
            return;
        };
        let labels = RpcLabels {
            service: std::mem::take(&mut self.service),
            method: std::mem::take(&mut self.method),
            code: code_name(code),
        };
        metrics.inner.rpc_requests.get_or_create(&labels).inc();
        metrics
            .inner
            .rpc_seconds
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(method) = self.stream {
            metrics
                .inner
                .open_streams
                .get_or_create(&MethodLabels { method })
                .dec();
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// The canonical name of a status code, as gRPC spells it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

// === impl CountedBody ===

/// A response body that ends its call when its trailers pass, when it
/// ends, or when it is dropped.
#[derive(Debug)]
struct CountedBody {
    /// The response.
    body: Body,
    /// The call it answers.
    call: Call,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(Code::Unknown);
                    self.call.end(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.end(Code::Unknown),
            Poll::Ready(None) => self.call.end(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
