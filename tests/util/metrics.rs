//! The metrics endpoint in tests: served on `127.0.0.1:0`, scraped over a
//! plain TCP connection, and read into a map of series.

use std::{collections::HashMap, net::SocketAddr};

use baa_logd::Metrics;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Serves `metrics` on a free port until the test ends; returns where.
pub async fn start_metrics(metrics: Metrics) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(baa_logd::metrics::serve(
        listener,
        metrics,
        std::future::pending(),
    ));
    addr
}

/// Starts a server over `data_dir` with metrics served on a port of their
/// own.
pub async fn start_with_metrics(
    data_dir: &std::path::Path,
    config: baa_logd::ServerConfig,
) -> (super::TestServer, SocketAddr) {
    start_with_store_metrics(baa_logging_store::LocalStoreOptions::new(data_dir), config).await
}

/// Starts a server over a store opened with `options` (`sync_commits`,
/// say), with metrics served on a port of their own.
pub async fn start_with_store_metrics(
    options: baa_logging_store::LocalStoreOptions,
    config: baa_logd::ServerConfig,
) -> (super::TestServer, SocketAddr) {
    let metrics = Metrics::new();
    let data_dir = options.data_dir.clone();
    let store = baa_logging_store::LocalStore::open(baa_logging_store::LocalStoreOptions {
        observer: Some(metrics.store_observer()),
        ..options
    })
    .expect("store opens");
    let metrics_addr = start_metrics(metrics.clone()).await;
    let config = baa_logd::ServerConfig {
        metrics: Some(metrics),
        ..config
    };
    (
        super::TestServer::start_with_store(&data_dir, store, config).await,
        metrics_addr,
    )
}

/// An HTTP/1.1 GET: the status code, the headers (lowercase names) and
/// the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    (code, headers, body.to_owned())
}

/// The series of one scrape, by `name{labels}` as the text format writes
/// them (labels in the order the server writes them).
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    series: HashMap<String, f64>,
}

impl Scrape {
    /// The value of a series, e.g. `baa_logd_runs{status="running"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }

    /// The value of a series, which must be there.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }
}

/// Scrapes `/metrics` at `addr`.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let (code, _, text) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{text}");
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().expect("a number")))
        .collect();
    Scrape { text, series }
}
