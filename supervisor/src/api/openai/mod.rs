//! The OpenAI-compatible API under `/v1`: chat completions, completions, embeddings and
//! models, in the shapes of OpenAI's API reference, so clients built on OpenAI's SDKs
//! work unchanged.
//!
//! Nothing here generates or renders: each route reads OpenAI's request, translates it
//! into the request the matching Ollama route serves (`api::chat::start`,
//! `api::generate::start`, `api::embed::embed_inputs`), and writes the answer in
//! OpenAI's shape from the same events ([`crate::api::reply::Said`]). Errors are the same
//! [`crate::api::ApiError`]s, written as OpenAI's error object (`error.rs`).

mod chat;
mod chat_answer;
mod completions;
mod embeddings;
mod error;
mod models;
mod response;
mod sampling;
mod sse;

pub use chat::chat_completions;
pub use completions::completions;
pub use embeddings::embeddings;
pub use error::OpenAiError;
pub use models::{get as get_model, list as list_models};
