//! The `baa.logging.v1` protocol of baa-logging: the generated Protobuf
//! types and gRPC stubs, and the constants of the run layout.
//!
//! # Layout
//!
//! - [`pb`]: the generated code for `proto/baa/logging/v1/*.proto`, with the
//!   client (`pb::logging_service_client`) and the server trait
//!   (`pb::logging_service_server`).
//! - [`json`]: structured data between JSON and `google.protobuf.Struct`.
//! - [`codec`]: the stubs' codec, and the buffer size calls start with.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
//! - [`DEFAULT_RUNS_DIRECTORY_NAME`] and [`DEFAULT_RUN_LAYOUT_VERSION`]: the
//!   contract's two constants, and [`Limits`] with the defaults a client
//!   falls back on, from [`config`].

pub mod codec;
pub mod json;

mod encoded;

pub use encoded::EncodedFollowRunResponse;

/// The generated code of the `baa.logging.v1` package.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("baa.logging.v1");
}

/// The server side of `LoggingService` again, over the messages of
/// [`pb`], except that `FollowRun` answers with
/// [`EncodedFollowRunResponse`]s, whose pieces the server shares between
/// followers. Clients decode them as [`pb::FollowRunResponse`].
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb_server {
    include!(concat!(env!("OUT_DIR"), "/shared/baa.logging.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("baa_logging_v1_descriptor");

pub use baa_logging_config::{DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME, Limits};

/// The settings shared by the server, the store and the client, each
/// defined once (the `baa-logging-config` crate).
pub use baa_logging_config as config;
