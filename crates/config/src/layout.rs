//! The two constants of the run-logging contract that name the on-disk
//! layout. The store builds paths with them and `GetServerInfo` reports
//! them; what the layout holds is the store's `layout` module.

/// The name of the directory that holds all runs by default.
pub const DEFAULT_RUNS_DIRECTORY_NAME: &str = "runs";

/// The version of the run directory layout.
pub const DEFAULT_RUN_LAYOUT_VERSION: &str = "local-run-v1";
