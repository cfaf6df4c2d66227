//! End-to-end tests of baa-logd: a real server on `127.0.0.1:0`, real files
//! in a temporary data directory, and gRPC between them. One test binary;
//! helpers in `util`.

mod util;

mod append;
mod artifacts;
mod bad_input;
mod browser;
mod cli;
mod client;
mod cluster;
mod configuration;
mod connections;
mod contracts;
mod disk;
mod failover;
mod follow;
mod follow_shared;
mod integrity;
mod leases;
mod limits;
mod masking;
mod masking_server;
mod metrics;
mod open_files;
mod polyglot;
mod pty;
mod ranges;
mod recovery;
mod retention;
mod runs;
mod search;
mod security;
mod service;
mod slow_followers;
mod spool;
mod startup;
mod sync_commits;
mod web;
