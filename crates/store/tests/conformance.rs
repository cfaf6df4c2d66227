//! The local store against the conformance suite: every check of
//! `baa_logging_store::conformance`, each on a fresh data directory, once
//! as it is opened by default and once with `sync_commits` (`--sync`),
//! whose commits are synced in groups and announced to followers after.

use baa_logging_store::{
    Limits, LocalStore, LocalStoreOptions,
    conformance::{self, Backend},
};

/// A local store in a temporary directory of its own, with or without
/// `sync_commits`.
struct Local {
    /// The data directory's parent.
    dir: tempfile::TempDir,
    /// Whether commits are synced.
    sync: bool,
}

impl Local {
    fn new(sync: bool) -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            sync,
        }
    }
}

impl Backend for Local {
    type Store = LocalStore;

    async fn open(&self, limits: Limits) -> LocalStore {
        LocalStore::open(LocalStoreOptions {
            limits,
            sync_commits: self.sync,
            ..LocalStoreOptions::new(self.dir.path().join("runs"))
        })
        .expect("the store opens")
    }
}

/// One test per check and mode, named after the check, in the modules
/// `unsynced` and `synced`.
macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        mod unsynced {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    conformance::$check(&Local::new(false)).await;
                }
            )*
        }
        mod synced {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    conformance::$check(&Local::new(true)).await;
                }
            )*
        }
    };
}

checks!(
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
