//! Generates the `baa.logging.v1` Protobuf and gRPC code from `proto/`.
//!
//! A second pass generates the server side again (`pb_server`, in
//! `shared/`), over the same messages, except that `FollowRun` answers
//! with `EncodedFollowRunResponse`: pieces encoded once and shared between
//! followers. Clients decode it as the `pb::FollowRunResponse` it is.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so a fresh machine
//! builds without a system install.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protos: [PathBuf; 3] = [
        "proto/baa/logging/v1/contracts.proto".into(),
        "proto/baa/logging/v1/logging_service.proto".into(),
        "proto/baa/logging/v1/objects.proto".into(),
    ];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // An object's bytes are decoded as slices of the received buffer, not
    // copied out of it.
    config.bytes([
        ".baa.logging.v1.UploadObjectRequest.data",
        ".baa.logging.v1.DownloadObjectResponse.data",
    ]);
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];
    // Prost's codec, with the buffer calls start with set by the server
    // (see `src/codec.rs`).
    tonic_prost_build::configure()
        .codec_path("crate::codec::TunedCodec")
        .file_descriptor_set_path(out_dir.join("baa_logging_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;

    let shared_dir = out_dir.join("shared");
    std::fs::create_dir_all(&shared_dir)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .codec_path("crate::codec::TunedCodec")
        .build_client(false)
        .out_dir(&shared_dir)
        .extern_path(
            ".baa.logging.v1.FollowRunResponse",
            "crate::EncodedFollowRunResponse",
        )
        .extern_path(".baa.logging.v1", "crate::pb")
        .compile_with_config(config, &protos, &includes)?;
    for proto in protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
