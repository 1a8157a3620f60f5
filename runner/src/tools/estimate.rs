//! `ollama-runner estimate`: the memory a model will take with a given context, number
//! of sequences and cache types, from its metadata alone.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use gguf::GgufFile;

use super::cache_args::CacheArgs;
use crate::estimate::{estimate, mib};

/// Arguments of `estimate`.
#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Positions per sequence.
    #[arg(long, default_value_t = 2048)]
    pub num_ctx: usize,
    /// Sequences served at once.
    #[arg(long, default_value_t = 1)]
    pub num_parallel: usize,
    /// Tokens per forward pass.
    #[arg(long, default_value_t = 512)]
    pub num_batch: usize,
    /// Compute threads (they size some scratch).
    #[arg(long, default_value_t = super::default_threads())]
    pub threads: usize,
    /// The K/V cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the estimate.
pub fn run(args: &EstimateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let kv = args
        .cache
        .config(args.num_ctx, args.num_parallel, args.num_batch);
    let e = estimate(&file, &kv, args.threads, args.cache.on_device()?)?;
    if args.json {
        let mut value = serde_json::to_value(e)?;
        value["type_k"] = kv.type_k.name().into();
        value["type_v"] = kv.type_v.name().into();
        value["flash_attention"] = kv.flash_attention.into();
        value["num_ctx"] = kv.num_ctx.into();
        value["num_parallel"] = kv.num_parallel.into();
        value["num_batch"] = kv.num_batch.into();
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} positions × {} sequences, batch {}, K {}, V {}, flash attention {}",
        kv.num_ctx,
        kv.num_parallel,
        kv.num_batch,
        kv.type_k,
        kv.type_v,
        if kv.flash_attention { "on" } else { "off" }
    )?;
    for (name, bytes) in [
        ("weights", e.weights_bytes),
        ("K/V cache", e.kv_bytes),
        ("  keys", e.k_bytes),
        ("  values", e.v_bytes),
        ("compute", e.compute_bytes),
        ("file header", e.header_bytes),
        ("metadata", e.metadata_bytes),
        ("tokenizer", e.tokenizer_bytes),
        ("vectors", e.vectors_bytes),
        ("sampler", e.sampler_bytes),
        ("grammar", e.grammar_bytes),
        ("runtime", e.runtime_bytes),
        ("process", e.process_bytes),
        ("total", e.total_bytes),
        ("device", e.device_bytes),
        ("  weights", e.device_weights_bytes),
        ("  K/V cache", e.device_kv_bytes),
        ("  compute", e.device_compute_bytes),
    ] {
        writeln!(out, "{name:<11} {:>12.1} MiB  ({bytes} bytes)", mib(bytes))?;
    }
    Ok(())
}
