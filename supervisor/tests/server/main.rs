//! `ollamad` end to end: the real server, runner and models, driven over HTTP and gRPC.

// These tests time real processes on the wall clock and build a child's environment;
// the supervisor's rules (tokio's clock, the config registry) are for its own code.
#![allow(clippy::disallowed_methods)]

mod api;
mod architectures;
mod cancel;
mod config;
mod context;
mod crashes;
mod ctl;
mod ctl_chat;
mod grpc;
mod harness;
mod import;
mod lifecycle;
mod ollama_layout;
mod on_gpu;
mod openai;
mod tools;
