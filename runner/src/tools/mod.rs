//! The debugging tools of `ollama-runner`, one module per subcommand.

pub mod bench;
pub mod cache_args;
pub mod convert;
pub mod dequantize;
pub mod devices;
pub mod dump_tensor;
pub mod estimate;
pub mod generate;
pub mod perplexity;
pub mod serve;
pub mod tokenize;

/// Threads the tools use unless told: every core (as a load does).
pub use plan::load::default_threads;
