//! The supervisor, `ollamad`, and its admin client, `ollamactl`.
//!
//! The supervisor decides which models are in memory and keeps every model's failure to
//! itself: it serves the HTTP and gRPC APIs, keeps the model store, accounts for memory,
//! and spawns one `ollama-runner` child per loaded model. It must not run model code in
//! its own process: everything that touches weights happens in a runner.

pub mod api;
pub mod config;
pub mod devices;
pub mod memory;
pub mod modelfile;
pub mod options;
pub mod runners;
pub mod sched;
pub mod server;
pub mod store;
pub mod template;
pub mod toolcall;
