//! The JetStream store against the conformance suite: every check of
//! `baa_logging_store::conformance`, on a real three-server NATS cluster
//! on loopback, each check on a stream of its own with three replicas.
//!
//! One test runs every check in turn, so that the cluster starts once.

#[path = "../../../tests/util/nats_cluster.rs"]
mod nats_cluster;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use baa_logging_store::{
    JetStreamOptions, JetStreamStore, Limits,
    conformance::{self, Backend},
};
use nats_cluster::NatsCluster;

/// Streams get names of their own.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// A stream of its own on the cluster.
struct JetStream {
    /// The cluster's URLs.
    urls: Vec<String>,
    /// The stream.
    stream: String,
}

impl JetStream {
    fn new(cluster: &NatsCluster) -> Self {
        Self {
            urls: cluster.urls(),
            stream: format!("CONFORMANCE_{}", STREAMS.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl Backend for JetStream {
    type Store = JetStreamStore;

    async fn open(&self, limits: Limits) -> JetStreamStore {
        JetStreamStore::open(JetStreamOptions {
            stream: self.stream.clone(),
            limits,
            connect_timeout: Duration::from_secs(30),
            ..JetStreamOptions::new(self.urls.clone())
        })
        .await
        .expect("the store opens")
    }
}

/// Runs each named check on a fresh stream, saying which one runs.
macro_rules! run_checks {
    ($cluster:expr, $($check:ident),* $(,)?) => {
        $(
            eprintln!("conformance check: {}", stringify!($check));
            conformance::$check(&JetStream::new($cluster)).await;
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_check_on_a_three_server_cluster() {
    let cluster = NatsCluster::start(3);
    run_checks!(
        &cluster,
        one_gap_free_seq_across_channels,
        resending_stores_each_item_once,
        items_over_a_limit_are_refused_after_the_ones_before,
        a_writer_cannot_append_run_prepared,
        reads_from_any_cursor_and_channel,
        follow_goes_live_and_ends_with_the_run,
        reads_tails_and_bounds,
        searches_lines_with_context,
        prepare_is_idempotent,
        bad_ids_are_refused_before_anything_is_stored,
        runs_are_listed_newest_first_by_page,
        state_moves_only_forward,
        retention_takes_only_terminal_runs_nobody_uses,
        an_expired_lease_fails_a_running_run_once,
        a_returning_writer_delivers_late_and_finishes_once,
        objects_round_trip_by_any_range,
        an_upload_resumes_from_what_the_store_holds,
        a_name_keeps_the_bytes_it_was_committed_with,
        checkpoint_slots_are_reserved_then_committed_forward,
    );
}
