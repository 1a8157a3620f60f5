//! The model runner: one process per loaded model.
//!
//! It owns a model's weights (memory-mapped from the GGUF file), its K/V cache and its
//! compute context, and serves the supervisor over a private Unix socket. It must not
//! decide what is loaded or when (that is the supervisor's job), nor hold any state that
//! outlives its process.
//!
//! What it shares with the supervisor (the architectures' hyper-parameters, the sizes of
//! the cache and the buffers, the memory estimate, the checks of a load's options, the
//! logging setup) lives in the `plan` crate, which the supervisor links instead of this
//! one; the cache and the buffers here are allocated by that crate's arithmetic.

pub use gguf;
pub use plan;

pub mod engine;
pub mod grammar;
pub mod h2_authority;
pub mod import;
/// What a model will take in memory (the `plan` crate's, shared with the supervisor).
pub use plan::estimate;
pub mod inspect;
pub mod kvcache;
pub mod model;
pub mod service;
pub mod tools;

pub mod sample;
pub mod tokenizer;
