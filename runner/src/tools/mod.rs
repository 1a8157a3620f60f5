//! The debugging tools of `ollama-runner`, one module per subcommand.

pub mod dump_tensor;
pub mod generate;
pub mod perplexity;
pub mod tokenize;
