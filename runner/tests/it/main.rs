//! Integration tests of the runner crate: the `ollama-runner` binary and the GGUF reader
//! on the real test models (fetched by `scripts/fetch-models`).

mod bert;
mod devices_cli;
mod embeddings;
mod estimate;
mod fast_numerics;
mod gemma3;
mod gemma3_import;
mod generate_refs;
mod grpcio_client;
mod import;
mod inspect_cli;
mod int_dot_gpu;
mod kld;
mod kv_perplexity;
mod llama_import;
mod memory;
mod memory_gpu;
mod nomic_bert;
mod on_gpu;
mod perplexity_refs;
mod real_models;
mod repacked;
mod runner_service;
mod served;
mod structured;
mod support;
mod synthetic;
mod tokenizer_refs;
mod tools_cli;
