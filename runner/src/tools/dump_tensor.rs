//! `ollama-runner dump-tensor`: the first values of one tensor, dequantized, as JSON.
//!
//! A debugging aid and the hook for cross-checks against other implementations: the
//! values come from the same dequantization the engine uses.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use gguf::GgufFile;
use kernels::quant::dequantize_row;

/// Arguments of `dump-tensor`.
#[derive(Debug, Args)]
pub struct DumpTensorArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The tensor's name, as `inspect` lists them (e.g. `blk.0.attn_q.weight`).
    #[arg(long)]
    pub name: String,
    /// How many values to print, from the start of the tensor.
    #[arg(long, default_value_t = 16)]
    pub limit: u64,
}

/// Prints the first `limit` dequantized values of the tensor as a JSON array.
pub fn run(args: &DumpTensorArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let values = dump(args)?;
    serde_json::to_writer(&mut *out, &values)?;
    writeln!(out)?;
    Ok(())
}

/// The first `limit` values of the tensor, dequantized to f32.
pub fn dump(args: &DumpTensorArgs) -> anyhow::Result<Vec<f32>> {
    let file = GgufFile::open(&args.model)?;
    let Some(tensor) = file.header().tensor(&args.name) else {
        bail!(
            "{} has no tensor named {:?}; `ollama-runner inspect --model {} --json` lists the types, \
             and tensor names follow llama.cpp's (token_embd.weight, blk.N.attn_q.weight, ...)",
            args.model.display(),
            args.name,
            args.model.display()
        );
    };
    let ty = tensor.ggml_type();
    let block = ty.block_size() as u64;
    let count = args.limit.min(tensor.n_elements());
    let whole = count.div_ceil(block) * block;
    let bytes = ty
        .row_bytes(whole)
        .with_context(|| format!("tensor {} has a size we cannot address", args.name))?;
    let data = file.tensor_data(tensor)?;
    let src = data
        .get(..bytes as usize)
        .with_context(|| format!("tensor {} is shorter than its shape says", args.name))?;
    let mut values = vec![0f32; whole as usize];
    dequantize_row(ty, src, &mut values)
        .with_context(|| format!("cannot dequantize tensor {} of type {ty}", args.name))?;
    values.truncate(count as usize);
    Ok(values)
}
