//! The model runner: one process per loaded model.
//!
//! It owns a model's weights (memory-mapped from the GGUF file), its K/V cache and its
//! compute context, and serves the supervisor over a private Unix socket. It must not
//! decide what is loaded or when (that is the supervisor's job), nor hold any state that
//! outlives its process.

pub use gguf;

pub mod engine;
pub mod estimate;
pub mod inspect;
pub mod kvcache;
pub mod model;
pub mod service;
pub mod tools;

pub mod sample;
pub mod tokenizer;
