//! The gRPC contracts, compiled once for both sides of every boundary.
//!
//! `runner` is the private supervisor <-> runner protocol (package `ollama.runner.v1`);
//! `ollama` is the public API that `ollamad` serves and `ollamactl` speaks (package
//! `ollama.v1`).
//! This crate holds generated types and the protocol version only; it must not contain
//! behaviour: clients and services live in the crates that use them.

/// The supervisor <-> runner protocol.
#[allow(missing_docs, clippy::all)]
pub mod runner {
    tonic::include_proto!("ollama.runner.v1");
}

/// The runner protocol version both sides must agree on (see `runner.proto`).
///
/// `Shutdown` (and `RUNNER_STATE_STOPPING`) came without a bump: the change is additive.
/// A runner without it answers `UNIMPLEMENTED`, and the supervisor's stop then goes on to
/// SIGTERM as before; an older supervisor never calls it and reads the new state as "not
/// ready". Both are built together anyway, and the handshake still refuses real mismatches.
pub const RUNNER_PROTOCOL_VERSION: u32 = 2;

/// The exit status of a runner whose GPU was lost: nothing it holds can be used again, so
/// it ends, and the supervisor's crash report names the cause.
pub const RUNNER_EXIT_DEVICE_LOST: i32 = 75;

/// The encoded descriptors of `runner.proto`, for gRPC server reflection.
pub const RUNNER_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/runner_descriptor.bin"));

/// The public API of `ollamad` (`ollama.proto`).
#[allow(missing_docs, clippy::all)]
pub mod ollama {
    tonic::include_proto!("ollama.v1");
}

/// The encoded descriptors of `ollama.proto`, for gRPC server reflection.
pub const OLLAMA_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ollama_descriptor.bin"));
